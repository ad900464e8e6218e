#!/usr/bin/env python3
"""Times cold `fib-rpc call N` processes for big N, a fresh N each run, for scripts/bench.sh.

Usage: cold_big_n.py FIB_RPC QUEUE RUNS WARMUP [BASE_N] [SPAN]
       (defaults: BASE_N = 1000000, SPAN = 10000)

Runs `FIB_RPC --queue QUEUE call N` WARMUP + RUNS times, one process after the other, each
with its own N = BASE_N + k, the offsets k drawn at random from 1..SPAN without repeats, so
that no N is asked twice and the server's result cache never answers (hyperfine cannot vary
the argument from run to run, hence this loop). Each run's wall time, from starting the
process to its exit, is taken with time.perf_counter; the first WARMUP runs are not counted.
Every run must exit 0, and afterwards every run's output is checked against gmpy2's
str(fib(N)) (GMP's mpz_fib_ui, then mpz_get_str), byte for byte with the newline `call`
ends it with; a failed call or a wrong number exits 1. Prints one JSON line: the counted
runs' N and wall times in ms, their median, mean, min and max, and how many outputs were
checked. Needs gmpy2.
"""

import json
import random
import statistics
import subprocess
import sys
import time

import gmpy2

# One call must finish within this many seconds (fib(10^6) takes well under one).
CALL_BOUND_S = 120


def main():
    if not 5 <= len(sys.argv) <= 7:
        print(__doc__, file=sys.stderr)
        return 2
    fib_rpc, queue = sys.argv[1], sys.argv[2]
    runs, warmup = int(sys.argv[3]), int(sys.argv[4])
    base = int(sys.argv[5]) if len(sys.argv) > 5 else 1_000_000
    span = int(sys.argv[6]) if len(sys.argv) > 6 else 10_000
    if runs < 1 or warmup < 0 or span < runs + warmup:
        print('cold_big_n: need RUNS >= 1, WARMUP >= 0, SPAN >= RUNS + WARMUP', file=sys.stderr)
        return 2
    ns = [base + k for k in random.sample(range(1, span + 1), runs + warmup)]
    outputs, times_ms = [], []
    for n in ns:
        started = time.perf_counter()
        done = subprocess.run([fib_rpc, '--queue', queue, 'call', str(n)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=CALL_BOUND_S)
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            print(f'cold_big_n: `call {n}` exited {done.returncode}: '
                  f'{done.stderr.decode(errors="replace").strip()}', file=sys.stderr)
            return 1
        outputs.append(done.stdout)
        times_ms.append(elapsed * 1e3)
    # Checked after the timing, so that computing the expected numbers does not run between
    # the timed processes.
    for n, output in zip(ns, outputs):
        expected = str(gmpy2.fib(n)).encode() + b'\n'
        if output != expected:
            print(f'cold_big_n: `call {n}` printed {len(output)} bytes that are not fib({n}) '
                  f'({len(expected) - 1} digits)', file=sys.stderr)
            return 1
    counted_ns, counted = ns[warmup:], times_ms[warmup:]
    print(json.dumps({
        'base_n': base,
        'ns': counted_ns,
        'digits_min': min(len(output) - 1 for output in outputs[warmup:]),
        'times_ms': [round(ms, 3) for ms in counted],
        'median_ms': round(statistics.median(counted), 3),
        'mean_ms': round(statistics.fmean(counted), 3),
        'min_ms': round(min(counted), 3),
        'max_ms': round(max(counted), 3),
        'runs': runs,
        'warmup': warmup,
        'verified': len(outputs),
    }, separators=(',', ':')))
    return 0


if __name__ == '__main__':
    sys.exit(main())
