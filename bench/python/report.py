#!/usr/bin/env python
"""Turns the raw results of one scripts/bench.sh run into its table and results.json.

Usage: report.py RUN_DIR RESULTS_JSON [KEY=VALUE ...]

RUN_DIR holds what bench.sh measured, one file per measurement (see bench.sh); a file
NAME.na instead of NAME.json says why that measurement is missing. A throughput measurement
is repeated once per round: with the setting rounds=R, its runs are NAME.1.json ...
NAME.R.json (without it, the one run NAME.json). For a client run NAME measured for CPU,
NAME.cpu.json holds the broker's and the server's CPU ticks over the run and NAME.time the
client's GNU time line (`%e %U %S %w %c`); the Java peer's runs (java_seq, java_64) carry
their own "cpu" instead, taken over their measured phase. KEY=VALUE pairs are the run's
settings, stored under "run" in RESULTS_JSON. Prints first the table of goals (issue 15:
seven ratios, each fib-rpc's figure against a peer's), then the detailed table: for each
throughput measurement the median of its runs, their range, and the ratio of medians; the
ratio within each round too. Standard library only.
"""
import json
import os
import statistics
import sys

MB = 1_000_000  # sizes and memory are compared in MB = 10^6 bytes (stricter than MiB)
MIB = 1 << 20


def load(run_dir, name):
    """The JSON object in NAME.json, or None (the reason then goes to NAME.na)."""
    path = os.path.join(run_dir, name + '.json')
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except ValueError as err:
        with open(os.path.join(run_dir, name + '.na'), 'w') as f:
            f.write(f'not JSON: {err}')
        return None


def why_missing(run_dir, name, default='missing'):
    path = os.path.join(run_dir, name + '.na')
    if os.path.exists(path):
        with open(path) as f:
            return f.read().strip() or default
    return default


def read_number(run_dir, name):
    path = os.path.join(run_dir, name + '.txt')
    if not os.path.exists(path):
        return None
    with open(path) as f:
        text = f.read().strip()
    return int(text) if text.lstrip('-').isdigit() else None


def read_cpu(run_dir, name):
    """The CPU a run cost, as measured by bench.sh's measured_step: wall seconds, broker and
    server CPU seconds (from ticks), the client's CPU seconds and context switches (from
    GNU time); each None when not measured. None when the run was not measured at all."""
    path = os.path.join(run_dir, name + '.cpu.json')
    if not os.path.exists(path):
        return None
    with open(path) as f:
        cpu = json.load(f)
    tick = 1 / cpu['clk_tck']
    seconds = lambda ticks: ticks * tick if ticks is not None else None
    out = {'wall_s': cpu['ended'] - cpu['started'], 'clk_tck': cpu['clk_tck'],
           'broker_ticks': cpu['broker_ticks'], 'server_ticks': cpu['server_ticks'],
           'broker_s': seconds(cpu['broker_ticks']),
           'server_s': seconds(cpu['server_ticks']),
           'client_s': None, 'client_user_s': None, 'client_sys_s': None,
           'client_voluntary_cs': None, 'client_involuntary_cs': None}
    time_path = os.path.join(run_dir, name + '.time')
    if os.path.exists(time_path):
        with open(time_path) as f:
            lines = [line for line in f.read().splitlines() if line.strip()]
        # The last line is the format's; GNU time may write a status line before it.
        fields = lines[-1].split() if lines else []
        try:
            _, user, system, voluntary, involuntary = fields
            out.update(client_user_s=float(user), client_sys_s=float(system),
                       client_s=float(user) + float(system),
                       client_voluntary_cs=int(voluntary),
                       client_involuntary_cs=int(involuntary))
        except ValueError:
            pass
    return out


def java_cpu(run, clk_tck):
    """read_cpu's figures for a run of bench/java/RpcBench.java, which takes them itself over
    its measured phase (its "cpu": wall seconds, the JVM's CPU seconds, the broker's and the
    server's ticks); None when the run is missing or did not measure."""
    cpu = run.get('cpu') if run else None
    if not cpu:
        return None
    seconds = lambda ticks: ticks / clk_tck if ticks is not None and clk_tck else None
    return {'wall_s': cpu['wall_s'], 'clk_tck': clk_tck,
            'broker_ticks': cpu['broker_ticks'], 'server_ticks': cpu['server_ticks'],
            'broker_s': seconds(cpu['broker_ticks']), 'server_s': seconds(cpu['server_ticks']),
            'client_s': cpu['client_cpu_s'], 'client_user_s': None, 'client_sys_s': None,
            'client_voluntary_cs': None, 'client_involuntary_cs': None}


def num(value, digits=0):
    if value is None:
        return 'n/a'
    return f'{value:,.{digits}f}'


def ratio_text(ratio):
    return 'n/a' if ratio is None else f'{ratio:.2f}x'


def spread(values):
    """A measurement over its runs (one figure per round, None where a run is missing): the
    median, min and max of the figures present, and the figures in round order."""
    present = [value for value in values if value is not None]
    return {'median': statistics.median(present) if present else None,
            'min': min(present, default=None), 'max': max(present, default=None),
            'runs': list(values)}


def by_round(ours, theirs):
    """Ours / theirs within each round; None where either is missing (or theirs is 0)."""
    return [o / t if o is not None and t else None for o, t in zip(ours, theirs)]


def with_range(values, fmt):
    """The median formatted, then (min–max) when there are several runs; None when none."""
    s = spread(values)
    if s['median'] is None:
        return None
    if sum(value is not None for value in values) < 2:
        return fmt(s['median'])
    return f'{fmt(s["median"])} ({num(s["min"])}–{num(s["max"])})'


def rounds_text(ratios):
    return ' '.join('n/a' if ratio is None else f'{ratio:.2f}' for ratio in ratios)


class Table:
    def __init__(self):
        self.rows = []
        self.checks = {}

    def add(self, measure, ours, reference, ratio, target, met, rounds='-'):
        self.rows.append([measure, ours, reference, ratio, target, met, rounds])

    def compare(self, key, measure, ours, theirs, fmt, op, goal, why_ours=None, why_theirs=None):
        """A row comparing ours with theirs: ratio ours/theirs, met when `ratio op goal`.
        Ours and theirs are single figures, or lists of one figure per round: then the cells
        show each median with its range, the ratio is median / median, and the last column
        the ratio within each round. A missing side shows "n/a (why)"."""
        check, rounds = {}, '-'
        if isinstance(ours, list):
            ratios = by_round(ours, theirs)
            check = {'ours_runs': ours, 'reference_runs': theirs, 'ratio_by_round': ratios}
            rounds = rounds_text(ratios)
            ours_cell, theirs_cell = with_range(ours, fmt), with_range(theirs, fmt)
            ours, theirs = spread(ours)['median'], spread(theirs)['median']
        else:
            ours_cell = fmt(ours) if ours is not None else None
            theirs_cell = fmt(theirs) if theirs is not None else None
        ratio = ours / theirs if ours is not None and theirs else None
        met = None if ratio is None else (ratio >= goal if op == '>=' else ratio <= goal)
        self.checks[key] = dict({'ours': ours, 'reference': theirs, 'ratio': ratio,
                                 'target': f'{op} {goal}x', 'met': met}, **check)
        cell = lambda text, why: text if text is not None else f'n/a ({why or "failed"})'
        self.add(measure, cell(ours_cell, why_ours), cell(theirs_cell, why_theirs),
                 ratio_text(ratio), f'{"≥" if op == ">=" else "≤"} {goal}x',
                 'n/a' if met is None else 'yes' if met else 'NO', rounds)

    def limit(self, key, measure, value, fmt, limit, limit_text):
        met = None if value is None else value <= limit
        self.checks[key] = {'ours': value, 'limit': limit, 'met': met}
        self.add(measure, fmt(value) if value is not None else 'n/a', '-',
                 f'{value / limit:.2f}x limit' if value is not None else 'n/a', limit_text,
                 'n/a' if met is None else 'yes' if met else 'NO')

    def info(self, measure, ours, reference, ratio=None, rounds='-'):
        self.add(measure, ours, reference, ratio_text(ratio), '-', '-', rounds)

    def render(self):
        return render(['measure', 'fib-rpc', 'reference', 'ratio', 'target', 'met',
                       'ratio by round'], self.rows)

    def render_goals(self):
        """The goals' order of columns: the ratio of medians, then the ratio in each round,
        then the goal and whether it is met."""
        return render(['goal: fib-rpc vs peer', 'fib-rpc', 'peer', 'ratio', 'ratio by round',
                       'goal', 'met'],
                      [[row[0], row[1], row[2], row[3], row[6], row[4], row[5]]
                       for row in self.rows])


def render(header, rows):
    """A text table: the first column left-aligned, the others right-aligned."""
    widths = [max(len(str(row[i])) for row in [header] + rows) for i in range(len(header))]
    lines = []
    for index, row in enumerate([header] + rows):
        cells = [str(cell).ljust(width) if i == 0 else str(cell).rjust(width)
                 for i, (cell, width) in enumerate(zip(row, widths))]
        lines.append(' | '.join(cells).rstrip())
        if index == 0:
            lines.append('-+-'.join('-' * width for width in widths))
    return '\n'.join(lines)


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    run_dir, results_path = argv[1], argv[2]
    settings = dict(arg.split('=', 1) for arg in argv[3:])
    # Each throughput measurement ran once per round: NAME.1 ... NAME.R (NAME alone without
    # a rounds setting).
    rounds = int(settings['rounds']) if settings.get('rounds') else None
    stems = lambda name: [name] if rounds is None else [f'{name}.{r}'
                                                        for r in range(1, rounds + 1)]

    throughput = ['ours_seq', 'ours_64', 'ours_seq_direct', 'ours_64_direct',
                  'ours_seq_noconfirms', 'ours_64_noconfirms', 'py_seq',
                  'py4_1', 'py4_2', 'py4_3', 'py4_4', 'floor', 'floor_on_ours', 'floor_seq',
                  'java_seq', 'java_64']
    raw = {name: [load(run_dir, stem) for stem in stems(name)] for name in throughput}
    raw.update({name: load(run_dir, name)
                for name in ['hf_ours', 'hf_py', 'fib_speed', 'gmp', 'cold_big_n']})

    def why_runs(name, group=None):
        """Why a measurement run once per round is missing: GROUP.na or NAME.na (it was not
        run at all), else the first round's NAME.R.na."""
        for stem in ([group] if group else []) + [name] + stems(name):
            if os.path.exists(os.path.join(run_dir, stem + '.na')):
                return why_missing(run_dir, stem)
        return 'missing'

    # The server's peak RSS, read after each round's 64-caller run: a high-water mark, so the
    # last reading is the peak over all the rounds before it.
    raw['serve_vmhwm_kib_by_round'] = [read_number(run_dir, stem)
                                       for stem in stems('serve_vmhwm_kib')]
    raw['serve_vmhwm_kib'] = next((kib for kib in reversed(raw['serve_vmhwm_kib_by_round'])
                                   if kib is not None), None)
    raw['binary_bytes'] = read_number(run_dir, 'binary_bytes')
    raw['stripped_bytes'] = read_number(run_dir, 'stripped_bytes')
    raw['stripped_links_libssl'] = read_number(run_dir, 'stripped_links_libssl')
    raw['serve_exit_status'] = read_number(run_dir, 'serve_exit_status')
    # Where the time goes (row 9): the runs measured for CPU, in the order shown.
    cpu_runs = [('ours_64', '64 callers (ours)'),
                ('ours_64_direct', '64 callers (ours), --reply-to direct'),
                ('ours_64_noconfirms', '64 callers (ours), --no-confirms (client and server)'),
                ('floor_on_ours', '64 in flight: bare amiquip client on `fib-rpc serve`'),
                ('floor', '64 in flight: bare amiquip pair (floor)'),
                ('ours_seq', '1 caller (ours)'),
                ('ours_seq_direct', '1 caller (ours), --reply-to direct'),
                ('ours_seq_noconfirms', '1 caller (ours), --no-confirms (client and server)'),
                ('floor_seq', '1 in flight: bare amiquip pair'),
                ('java_64', '64 threads: Java RpcClient (one, shared), direct reply-to'),
                ('java_seq', '1 thread: Java RpcClient, direct reply-to')]
    raw['cpu'] = {name: [read_cpu(run_dir, stem) for stem in stems(name)]
                  for name, _ in cpu_runs if not name.startswith('java_')}
    clk_tck = int(settings['clk_tck']) if settings.get('clk_tck', '').isdigit() else None
    for name in ('java_seq', 'java_64'):
        raw['cpu'][name] = [java_cpu(run, clk_tck) for run in raw[name]]
    raw['broker_idle'] = read_cpu(run_dir, 'broker_idle')

    def get(name, key):
        """NAME's figure KEY in each round (None where missing)."""
        return [run.get(key) if run else None for run in raw[name]]

    # 2's reference: the four tutorial clients' sum, in each round.
    py4 = [raw[f'py4_{i}'] for i in range(1, 5)]
    py4_sum = [round(sum(run['calls_per_s'] for run in runs), 1) if all(runs) else None
               for runs in zip(*py4)]
    raw['py4_sum_calls_per_s'] = py4_sum

    # The medians (and ranges) of every throughput measurement, for results.json.
    medians = {}
    for name in throughput:
        keys = [key for key in ('ok_per_s', 'calls_per_s', 'p50_us', 'p99_us')
                if any(run and run.get(key) is not None for run in raw[name])]
        if keys:
            medians[name] = {key: spread(get(name, key)) for key in keys}
    medians['py4_sum'] = {'calls_per_s': spread(py4_sum)}

    table = Table()
    per_s = lambda v: f'{v:,.0f}/s'
    us = lambda v: f'{v:,.0f} µs'
    ms = lambda v: f'{v:,.1f} ms'

    def info_ratio(key, measure, ours, theirs, fmt=per_s):
        """An informational row, no target: ours against theirs, one figure each per round."""
        ratios = by_round(ours, theirs)
        ours_median, theirs_median = spread(ours)['median'], spread(theirs)['median']
        ratio = (ours_median / theirs_median
                 if ours_median is not None and theirs_median else None)
        table.info(measure, with_range(ours, fmt) or 'n/a', with_range(theirs, fmt) or 'n/a',
                   ratio, rounds_text(ratios))
        table.checks[key] = {'ours': ours_median, 'reference': theirs_median, 'ratio': ratio,
                             'ours_runs': ours, 'reference_runs': theirs,
                             'ratio_by_round': ratios}

    # 1. One caller, sequential. Ours is ok/s (successful calls), as the tutorial client
    # counts only correct answers.
    table.compare('seq_calls_per_s', '1 caller, fib(10) calls/s vs tutorial pair',
                  get('ours_seq', 'ok_per_s'), get('py_seq', 'calls_per_s'), per_s, '>=', 1.8)
    info_ratio('seq_p50_us', '1 caller, fib(10) p50 latency', get('ours_seq', 'p50_us'),
               get('py_seq', 'p50_us'), us)

    # 8. The bare amiquip pair with 1 in flight.
    table.compare('seq_vs_floor_seq', '1 caller, calls/s vs 1 in flight: bare amiquip pair',
                  get('ours_seq', 'ok_per_s'), get('floor_seq', 'calls_per_s'), per_s, '>=',
                  0.9)

    # 2. 64 callers sharing one client.
    table.compare('c64_vs_python', '64 callers, calls/s vs 4 tutorial clients (sum)',
                  get('ours_64', 'ok_per_s'), py4_sum, per_s, '>=', 8)
    table.compare('c64_vs_floor', '64 callers, calls/s vs bare amiquip (64 in flight)',
                  get('ours_64', 'ok_per_s'), get('floor', 'calls_per_s'), per_s, '>=', 0.70)
    # The clients alone: the bare amiquip client on our server, first against the floor pair
    # (which compares the servers), then ours against it (both on our server).
    info_ratio('bare_client_on_serve_vs_floor',
               '64 in flight: bare amiquip client on our `fib-rpc serve` vs on its echo server',
               get('floor_on_ours', 'calls_per_s'), get('floor', 'calls_per_s'))
    table.compare('c64_vs_bare_client',
                  '64 callers (ours) vs bare amiquip client, both on `fib-rpc serve`**',
                  get('ours_64', 'ok_per_s'), get('floor_on_ours', 'calls_per_s'), per_s, '>=',
                  0.70)

    # 11. The RabbitMQ Java client's own RpcClient on the same `fib-rpc serve`: one thread,
    # and 64 threads sharing one client.
    table.compare('seq_vs_java', '1 caller, calls/s vs Java RpcClient, 1 thread†',
                  get('ours_seq', 'ok_per_s'), get('java_seq', 'ok_per_s'), per_s, '>=', 2,
                  why_runs('ours_seq'), why_runs('java_seq', 'java'))
    info_ratio('seq_p50_vs_java', '1 caller, p50 latency vs Java RpcClient, 1 thread†',
               get('ours_seq', 'p50_us'), get('java_seq', 'p50_us'), us)
    table.compare('c64_vs_java', '64 callers, calls/s vs Java RpcClient, 64 threads†',
                  get('ours_64', 'ok_per_s'), get('java_64', 'ok_per_s'), per_s, '>=', 2,
                  why_runs('ours_64'), why_runs('java_64', 'java'))

    # 3. Cold process, both against our fib-rpc serve.
    hf_mean = lambda name: raw[name]['results'][0]['mean'] * 1000 if raw[name] else None
    table.compare('cold_call_ms', 'cold `call 1000` process, mean ms vs tutorial client*',
                  hf_mean('hf_ours'), hf_mean('hf_py'), ms, '<=', 0.06,
                  why_missing(run_dir, 'hf'), why_missing(run_dir, 'hf'))

    # 4. fib(10^6): our example against gmpy2, total_ms, for the same n.
    ours_fib, gmp = raw['fib_speed'], raw['gmp']
    ours_total = ours_fib.get('total_ms') if ours_fib else None
    gmp_total = gmp.get('total_ms') if gmp else None
    why_ours, why_gmp = why_missing(run_dir, 'fib_speed'), why_missing(run_dir, 'gmp')
    if ours_fib and gmp and (ours_fib.get('n'), ours_fib.get('digits')) != (
            gmp.get('n'), gmp.get('digits')):
        why_ours = why_gmp = 'n or digits differ'
        ours_total = gmp_total = None
    table.compare('fib_1e6_total_ms', 'fib(10^6) compute+format, total ms vs gmpy2',
                  ours_total, gmp_total, ms, '<=', 2, why_ours, why_gmp)

    # 12. A cold `fib-rpc call N` process for N just above 10^6 (a fresh N each run, so the
    # server computes every one), median wall time, against gmpy2 computing and formatting
    # fib(10^6) in-process (row 4's figure: the best of its runs).
    big = raw['cold_big_n']
    big_median = big.get('median_ms') if big else None
    why_big, why_big_gmp = why_missing(run_dir, 'cold_big_n'), why_gmp
    if big and gmp and gmp.get('n') != big.get('base_n'):
        why_big = why_big_gmp = f'gmpy2 ran n = {gmp.get("n")}, not {big.get("base_n")}'
        big_median = None
    big_gmp = gmp_total if big_median is not None else None
    table.compare('cold_big_n_ms', 'cold `call N` (N just above 10^6), median ms vs gmpy2‡',
                  big_median, big_gmp, ms, '<=', 2.5, why_big, why_big_gmp)

    # 5, 6: absolute limits, in MB = 10^6 bytes.
    rss = raw['serve_vmhwm_kib'] * 1024 if raw['serve_vmhwm_kib'] is not None else None
    table.limit('serve_peak_rss_bytes', 'serve peak RSS (VmHWM) after the 64-caller runs', rss,
                lambda b: f'{b:,} B = {b / MB:.2f} MB', 8 * MB, '≤ 8 MB')
    table.limit('stripped_binary_bytes', 'stripped binary, default features (no TLS)',
                raw['stripped_bytes'], lambda b: f'{b:,} B = {b / MB:.2f} MB', 2 * MB,
                '≤ 2 MB')

    # 7. Direct reply-to, when fib-rpc has --reply-to: against our default.
    direct = settings.get('reply_to_option') == 'yes'
    if direct:
        for name, label in [('seq', '1 caller'), ('64', '64 callers')]:
            info_ratio(f'direct_{name}_vs_default',
                       f'{label}, calls/s (direct reply-to) vs default',
                       get(f'ours_{name}_direct', 'ok_per_s'), get(f'ours_{name}', 'ok_per_s'))

    # 10. What publisher confirms cost: ours as usual (confirms on, both sides) against
    # --no-confirms on both sides, on a second `fib-rpc serve --no-confirms`. No target: the
    # goal is a cost of at most 10% (on / off >= 0.90x).
    confirms = settings.get('confirms_option') == 'yes'
    for name, label in [('seq', '1 caller'), ('64', '64 callers')]:
        info_ratio(f'confirms_{name}_on_vs_off',
                   f'{label}, calls/s, publisher confirms on vs off***',
                   get(f'ours_{name}', 'ok_per_s'), get(f'ours_{name}_noconfirms', 'ok_per_s'))

    # The goals (issue 15): the seven ratios that say whether fib-rpc is where it should be,
    # each computed as in the detailed table below.
    goals = Table()
    seq, c64 = get('ours_seq', 'ok_per_s'), get('ours_64', 'ok_per_s')
    goals.compare('seq_vs_tutorial', '1 caller, fib(10) calls/s vs tutorial Python pair',
                  seq, get('py_seq', 'calls_per_s'), per_s, '>=', 1.8, why_runs('ours_seq'),
                  why_runs('py_seq'))
    goals.compare('seq_vs_floor_seq', '1 caller vs bare amiquip pair, 1 in flight', seq,
                  get('floor_seq', 'calls_per_s'), per_s, '>=', 0.9, why_runs('ours_seq'),
                  why_runs('floor_seq'))
    goals.compare('seq_vs_java', '1 caller vs Java RpcClient, 1 thread', seq,
                  get('java_seq', 'ok_per_s'), per_s, '>=', 2, why_runs('ours_seq'),
                  why_runs('java_seq', 'java'))
    goals.compare('c64_vs_floor', '64 callers vs bare amiquip pair, 64 in flight', c64,
                  get('floor', 'calls_per_s'), per_s, '>=', 0.7, why_runs('ours_64'),
                  why_runs('floor'))
    goals.compare('c64_vs_java', '64 callers vs Java RpcClient shared by 64 threads', c64,
                  get('java_64', 'ok_per_s'), per_s, '>=', 2, why_runs('ours_64'),
                  why_runs('java_64', 'java'))
    goals.compare('cold_call_1000', 'cold `call 1000` process vs tutorial client, mean',
                  hf_mean('hf_ours'), hf_mean('hf_py'), ms, '<=', 0.06,
                  why_missing(run_dir, 'hf'), why_missing(run_dir, 'hf'))
    goals.compare('cold_call_big_n', 'cold `call N`, N ~ 10^6 fresh, median vs gmpy2',
                  big_median, big_gmp, ms, '<=', 2.5, why_big, why_big_gmp)

    runs = len(stems('ours_seq'))
    seconds = settings.get('seconds_per_run', '?')
    met = [check['met'] for check in goals.checks.values()]
    out = ['Goals', goals.render_goals(),
           f'{sum(m is True for m in met)} of {len(met)} goals met'
           + (f', {sum(m is None for m in met)} not measured' if None in met else '')
           + '. Calls/s: successful calls, median over the rounds; ratio: fib-rpc / peer '
           '(median / median); the rows are explained under the detailed table.',
           '', 'Details', table.render()]
    if runs > 1:
        out.append(f'Throughput and p50 rows: the median of {runs} runs of {seconds} s each, '
                   '(min–max) after it; the runs are interleaved by round (every measurement '
                   'once per round).')
        out.append('ratio: median / median; ratio by round: ours / reference within each '
                   'round, in round order.')
    else:
        out.append(f'Throughput and p50 rows: one run of {seconds} s each.')
    out.append('* both cold processes call fib(1000) on our running `fib-rpc serve` (the '
               "tutorial's recursive server cannot compute it); hyperfine mean wall time.")
    out.append('** the clients alone: `fib-rpc bench --callers 64` and the bare amiquip client '
               '(64 in flight, counting the answer 55) against the same `fib-rpc serve`.')
    out.append('Throughput: successful calls/s, fib(10) throughout. MB = 10^6 bytes '
               '(2 MB = 2,000,000 B; 2 MiB would be 2,097,152 B).')
    out.append("† bench/java/RpcBench.java: the RabbitMQ Java client's own RpcClient "
               f'({settings.get("amqp_client", "?")}, {settings.get("java", "?")}), one on '
               'one channel, direct reply-to, shared by 1 or 64 threads calling '
               'stringCall("10") (ok when "55") on our `fib-rpc serve`; each run after '
               f'{settings.get("java_warmup_s", "?")} s of uncounted warm-up (JIT).')
    out.append(f'‡ {settings.get("big_n_runs", "?")} cold `fib-rpc call N` processes (after '
               f'{settings.get("big_n_warmup", "?")} uncounted), each with a fresh N from '
               f'{settings.get("big_n_base", "?")} + 1..{settings.get("big_n_span", "?")}, '
               'so our server\'s result cache never answers; every output checked against '
               'gmpy2; wall time, median. Against gmp_fib.py\'s fib(10^6) computed and '
               'formatted in-process (best of its runs; row "fib(10^6)").')
    if not direct:
        out.append('Direct reply-to: not available (`fib-rpc --help` does not mention '
                   '--reply-to); not run.')
    if confirms:
        out.append('*** confirms on: rows "1 caller" and "64 callers" above (`fib-rpc serve`, '
                   '`fib-rpc bench`); off: `fib-rpc bench --no-confirms` on a second `fib-rpc '
                   'serve --no-confirms`. Ratio on / off; no target (goal: cost ≤ 10%, '
                   'ratio ≥ 0.90x).')
    else:
        out.append('*** publisher confirms off: not available (`fib-rpc serve --help` or '
                   '`fib-rpc bench --help` does not mention --no-confirms); not run.')

    # 9. Where the time goes: CPU per successful call, by process, over all the rounds (total
    # CPU time / total successful calls).
    cpu_per_call = {}
    cpu_rows = []
    for name, label in cpu_runs:
        measured = [(cpu, run) for cpu, run in zip(raw['cpu'][name], raw[name])
                    if cpu is not None and run is not None]
        if not measured:
            continue
        calls = sum(run['ok'] if 'ok' in run else run['calls'] for _, run in measured)

        def summed(key):
            values = [cpu[key] for cpu, _ in measured]
            return None if None in values else sum(values)

        per_call = lambda seconds: seconds * 1e6 / calls if seconds is not None and calls else None
        parts = {part: per_call(summed(f'{part}_s')) for part in ('broker', 'server', 'client')}
        total = sum(parts.values()) if None not in parts.values() and calls else None
        voluntary, involuntary = summed('client_voluntary_cs'), summed('client_involuntary_cs')
        switches = ((voluntary + involuntary) / calls
                    if voluntary is not None and involuntary is not None and calls else None)
        broker_s, wall_s = summed('broker_s'), summed('wall_s')
        broker_busy = broker_s / wall_s if broker_s is not None and wall_s else None
        cpu_per_call[name] = dict(parts, total=total, calls=calls, runs=len(measured),
                                  client_cs=switches, broker_cores=broker_busy)
        if switches is not None:
            cpu_per_call[name].update(client_voluntary_cs=voluntary / calls,
                                      client_involuntary_cs=involuntary / calls)
        cpu_rows.append([label, num(calls), num(parts['broker'], 1), num(parts['server'], 1),
                         num(parts['client'], 1), num(total, 1),
                         'n/a' if switches is None else
                         f'{switches:.1f} ({voluntary / calls:.1f} + {involuntary / calls:.1f})',
                         'n/a' if broker_busy is None else f'{broker_busy * 100:.0f}%'])
    if cpu_rows:
        out.append('')
        out.append('Where the time goes: CPU time per successful call (µs), utime+stime '
                   + (f'summed over the {runs} runs of each measurement / their successful '
                      'calls summed' if runs > 1 else 'over each run / its successful calls'))
        out.append(render(['run', 'ok calls', 'broker', 'server', 'client', 'total',
                           'client cs/call (vol + invol)', 'broker busy'], cpu_rows))
        idle = raw['broker_idle']
        idle_text = ('n/a' if not idle or idle['broker_s'] is None else
                     f'{idle["broker_s"] / idle["wall_s"] * 100:.1f}% of a core')
        out.append(f'broker: the whole beam.smp process (pid {settings.get("broker_pid", "?")}; '
                   'shared, so others\' work counts too; idle before the runs: '
                   f'{idle_text}); busy: its CPU time / the runs\' wall time (100% = one core).')
        out.append('server: `fib-rpc serve`, or the bare echo server for the floor pair; '
                   'client: the bench or floor client process (GNU time %U+%S); cs: its '
                   'context switches, voluntary (%w) + involuntary (%c). Java RpcClient '
                   "rows: the JVM's CPU (all its threads, JIT and GC too), the broker's and "
                   "the server's, each over the measured phase only (not the JVM's start nor "
                   'its warm-up); no context switches.')

    # Raw figures, every run.
    out.append('')
    out.append('Raw figures' + (f', round by round ({runs} rounds)' if runs > 1 else ''))

    def bench_text(r):
        errors = ', '.join(f'{k} {v}' for k, v in r['errors'].items()) or 'none'
        return (f'{r["calls"]:,} calls, {r["ok"]:,} ok, errors: {errors}; '
                f'{r["ok_per_s"]:,.0f} ok/s; p50 {num(r["p50_us"])} µs, p90 {num(r["p90_us"])}'
                f' µs, p99 {num(r["p99_us"])} µs, max {num(r["max_us"])} µs; '
                f'reconnects {r["reconnects"]}')

    def py_text(r):
        return (f'{r["calls"]:,} calls, {r["calls_per_s"]:,.0f}/s, '
                f'p50 {r["p50_us"]:,} µs, p99 {r["p99_us"]:,} µs')

    def java_text(r):
        errors = ', '.join(f'{k} {v}' for k, v in r['errors'].items()) or 'none'
        return (f'{r["calls"]:,} calls, {r["ok"]:,} ok, errors: {errors}; '
                f'{r["ok_per_s"]:,.0f} ok/s; p50 {num(r["p50_us"])} µs, p90 {num(r["p90_us"])}'
                f' µs, p99 {num(r["p99_us"])} µs, max {num(r["max_us"])} µs; after '
                f'{r["warmup_s"]:g} s of warm-up ({r["warmup_ok"]:,} ok, '
                f'{r["warmup_failed"]:,} failed)')

    def floor_text(r):
        return f'{r["calls"]:,} calls, {r["calls_per_s"]:,.0f}/s, {r["in_flight"]} in flight'

    def run_lines(label, name, text):
        """One line per round (on the label's line when there is only one)."""
        shown = [text(run) if run else f'n/a ({why_missing(run_dir, stem)})'
                 for run, stem in zip(raw[name], stems(name))]
        if runs == 1:
            out.append(f'  {label}: {shown[0]}')
            return
        out.append(f'  {label}:')
        for r, line in enumerate(shown, 1):
            out.append(f'    round {r}: {line}')

    run_lines('fib-rpc bench --callers 1', 'ours_seq', bench_text)
    run_lines('fib-rpc bench --callers 64', 'ours_64', bench_text)
    if direct:
        run_lines('--reply-to direct, 1 caller', 'ours_seq_direct', bench_text)
        run_lines('--reply-to direct, 64 callers', 'ours_64_direct', bench_text)
    if confirms:
        run_lines('--no-confirms, 1 caller', 'ours_seq_noconfirms', bench_text)
        run_lines('--no-confirms, 64 callers', 'ours_64_noconfirms', bench_text)
    run_lines('tutorial client, alone', 'py_seq', py_text)
    for i in range(1, 5):
        run_lines(f'tutorial client {i} of 4', f'py4_{i}', py_text)
    out.append('  4 tutorial clients, sum: ' + ', '.join(f'{num(s)}/s' for s in py4_sum))
    run_lines('amiquip floor pair', 'floor', floor_text)
    run_lines('amiquip floor pair, 1 in flight', 'floor_seq', floor_text)
    run_lines('amiquip floor client on fib-rpc serve', 'floor_on_ours', floor_text)
    run_lines('Java RpcClient, 1 thread', 'java_seq', java_text)
    run_lines('Java RpcClient, 64 threads', 'java_64', java_text)
    for label, name in [('hyperfine fib-rpc call 1000', 'hf_ours'),
                        ('hyperfine tutorial client 1000', 'hf_py')]:
        r = raw[name]
        if r:
            r = r['results'][0]
            out.append(f'  {label}: mean {r["mean"] * 1000:.1f} ± {r["stddev"] * 1000:.1f} ms, '
                       f'median {r["median"] * 1000:.1f} ms, min {r["min"] * 1000:.1f} ms, '
                       f'max {r["max"] * 1000:.1f} ms, {len(r["times"])} runs')
        else:
            out.append(f'  {label}: n/a ({why_missing(run_dir, "hf")})')
    if big:
        out.append(f'  cold fib-rpc call N: median {big["median_ms"]:,.1f} ms, mean '
                   f'{big["mean_ms"]:,.1f} ms, min {big["min_ms"]:,.1f} ms, max '
                   f'{big["max_ms"]:,.1f} ms, {big["runs"]} runs (+{big["warmup"]} warm-up), '
                   f'N from {min(big["ns"]):,} to {max(big["ns"]):,}, at least '
                   f'{big["digits_min"]:,} digits, {big["verified"]} outputs checked')
    else:
        out.append(f'  cold fib-rpc call N: n/a ({why_missing(run_dir, "cold_big_n")})')
    for label, name in [('fib_speed', 'fib_speed'), ('gmp_fib.py', 'gmp')]:
        r = raw[name]
        out.append(f'  {label}: ' + (json.dumps(r) if r else
                                     f'n/a ({why_missing(run_dir, name)})'))
    if raw['serve_vmhwm_kib'] is not None:
        out.append(f'  fib-rpc serve VmHWM: {raw["serve_vmhwm_kib"]:,} kB (KiB) = '
                   f'{rss:,} B = {rss / MB:.2f} MB = {rss / MIB:.2f} MiB' +
                   ('' if runs == 1 else '; after each round\'s 64-caller run: ' +
                    ', '.join(f'{num(kib)} kB' for kib in raw['serve_vmhwm_kib_by_round'])))
    if raw['stripped_bytes'] is not None:
        b, u = raw['stripped_bytes'], raw['binary_bytes']
        links = {0: 'no', None: '?'}.get(raw['stripped_links_libssl'], 'YES')
        out.append(f'  fib-rpc binary: {u:,} B unstripped; stripped {b:,} B = {b / MB:.3f} MB '
                   f'= {b / MIB:.3f} MiB; links libssl: {links}')
    if raw['serve_exit_status'] is not None:
        out.append(f'  fib-rpc serve exit status after SIGTERM: {raw["serve_exit_status"]}')
    out.append('  run: ' + ', '.join(f'{k} {v}' for k, v in settings.items()))

    os.makedirs(os.path.dirname(os.path.abspath(results_path)), exist_ok=True)
    with open(results_path, 'w') as f:
        json.dump({'run': settings, 'goals': goals.checks, 'checks': table.checks,
                   'medians': medians,
                   'cpu_per_call_us': cpu_per_call, 'raw': raw}, f, indent=2)
        f.write('\n')
    out.append(f'  raw results: {results_path}')
    print('\n'.join(out))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
