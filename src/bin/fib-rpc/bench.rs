//! `fib-rpc bench`: C threads share one client and call back to back; prints throughput,
//! latency percentiles and failed calls by kind.
//!
//! Every answer is checked against fib(n) computed here, so a wrong answer is counted as an
//! error (`wrong_answer`), not as a fast call. The client reconnects by itself, so a broker
//! restart during a run shows up as failed calls and a `reconnects` count, not as the end.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use fib_rpc::{ClientOptions, ClientStats, FibonacciRpcClient};

use crate::args::{BenchArgs, BenchLength, Global};
use crate::exit::{Class, Failure};

/// Progress appears on a terminal only for runs longer than this.
const PROGRESS_AFTER: Duration = Duration::from_secs(2);
/// With `--seconds S`, calls still unanswered this long after S end as timeouts, so the run
/// ends by S plus this, whatever `--timeout` is.
const END_GRACE: Duration = Duration::from_secs(2);

/// What the caller threads share.
struct Shared<'a> {
    client: &'a FibonacciRpcClient,
    n: u64,
    expected: &'a str,
    length: BenchLength,
    timeout: Duration,
    started: Instant,
    /// Calls claimed so far (for `--calls`).
    claimed: AtomicU64,
    /// Calls finished so far (for the progress line).
    finished: AtomicU64,
}

/// What one caller thread saw.
#[derive(Default)]
struct Tally {
    /// Latency of each successful call, in microseconds.
    ok_latencies_us: Vec<u64>,
    errors: BTreeMap<&'static str, u64>,
}

/// The whole run's figures, as printed.
struct Report {
    callers: usize,
    /// Calls the client counted as started: counted apart from the outcomes below.
    n: u64,
    calls: u64,
    ok: u64,
    errors: BTreeMap<&'static str, u64>,
    elapsed: Duration,
    /// p50, p90, p99, max of successful calls (µs); `None` when no call succeeded.
    latency_us: Option<[u64; 4]>,
    /// The client's own counters at the end.
    client: ClientStats,
}

pub fn run(global: &Global, args: BenchArgs) -> Result<(), Failure> {
    let options = ClientOptions::default()
        .queue(global.queue.as_str())
        .timeout(args.timeout)
        .heartbeat(global.heartbeat)
        .reply_to(global.reply_to.unwrap_or_default())
        .idempotent(args.retry)
        .publisher_confirms(args.confirms)
        .require_server(args.require_server)
        .connection_name(format!("fib-rpc bench (pid {})", std::process::id()));
    let client = FibonacciRpcClient::connect_failover(&global.urls, options)?;
    let expected = fib_rpc::fib(args.n).to_string();

    let shared = Shared {
        client: &client,
        n: args.n,
        expected: &expected,
        length: args.length,
        timeout: args.timeout,
        started: Instant::now(),
        claimed: AtomicU64::new(0),
        finished: AtomicU64::new(0),
    };
    let tallies = std::thread::scope(|scope| -> std::io::Result<Vec<Tally>> {
        let (stop_progress, progress_stop_rx) = crossbeam_channel::bounded::<()>(0);
        let progress = if std::io::stderr().is_terminal() {
            let shared = &shared;
            Some(
                std::thread::Builder::new()
                    .name("fib-rpc-progress".into())
                    .spawn_scoped(scope, move || show_progress(&progress_stop_rx, shared))?,
            )
        } else {
            None
        };
        let mut callers = Vec::with_capacity(args.callers);
        for index in 0..args.callers {
            let shared = &shared;
            callers.push(
                std::thread::Builder::new()
                    .name(format!("fib-rpc-bench-{index}"))
                    .spawn_scoped(scope, move || call_repeatedly(shared))?,
            );
        }
        let tallies = callers
            .into_iter()
            .map(|caller| caller.join().expect("bench caller panicked"))
            .collect();
        drop(stop_progress);
        if let Some(progress) = progress {
            let _ = progress.join();
        }
        Ok(tallies)
    })?;
    let elapsed = shared.started.elapsed();
    let stats = client.rpc().stats();
    client.close();

    let report = Report::new(&args, tallies, elapsed, stats);
    print!("{}", report.table(&global.queue));
    if args.json {
        println!("{}", report.json());
    }
    match report.failure() {
        Some(failure) if !args.keep_going => Err(failure),
        _ => Ok(()),
    }
}

/// One caller's loop: claim a call (or check the clock), call, record.
fn call_repeatedly(shared: &Shared<'_>) -> Tally {
    let mut tally = Tally::default();
    loop {
        let more = match shared.length {
            BenchLength::Calls(total) => shared.claimed.fetch_add(1, Ordering::Relaxed) < total,
            BenchLength::Time(duration) => shared.started.elapsed() < duration,
        };
        if !more {
            return tally;
        }
        let call_started = Instant::now();
        let deadline = match shared.length {
            BenchLength::Calls(_) => call_started + shared.timeout,
            BenchLength::Time(duration) => {
                (call_started + shared.timeout).min(shared.started + duration + END_GRACE)
            }
        };
        let outcome = shared.client.call_decimal_deadline(shared.n, deadline);
        let latency_us = call_started.elapsed().as_micros() as u64;
        match outcome {
            Ok(digits) if digits == shared.expected => tally.ok_latencies_us.push(latency_us),
            Ok(_) => *tally.errors.entry("wrong_answer").or_default() += 1,
            Err(err) => *tally.errors.entry(Class::of(&err).name()).or_default() += 1,
        }
        shared.finished.fetch_add(1, Ordering::Relaxed);
    }
}

/// Once a second after the first [`PROGRESS_AFTER`], rewrites one stderr line with the calls
/// so far; clears it when the run ends.
fn show_progress(stop: &Receiver<()>, shared: &Shared<'_>) {
    let mut shown = false;
    let mut wait = PROGRESS_AFTER;
    while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(wait) {
        wait = Duration::from_secs(1);
        let calls = shared.finished.load(Ordering::Relaxed);
        let secs = shared.started.elapsed().as_secs_f64();
        eprint!(
            "\r\x1b[K{secs:6.1} s  {calls} calls  {:.0} calls/s",
            calls as f64 / secs
        );
        shown = true;
    }
    if shown {
        eprint!("\r\x1b[K");
    }
}

impl Report {
    fn new(
        args: &BenchArgs,
        tallies: Vec<Tally>,
        elapsed: Duration,
        client: ClientStats,
    ) -> Report {
        let mut latencies = Vec::new();
        let mut errors = BTreeMap::new();
        for tally in tallies {
            latencies.extend(tally.ok_latencies_us);
            for (kind, count) in tally.errors {
                *errors.entry(kind).or_default() += count;
            }
        }
        latencies.sort_unstable();
        let ok = latencies.len() as u64;
        let latency_us = (!latencies.is_empty()).then(|| {
            [
                percentile(&latencies, 50.0),
                percentile(&latencies, 90.0),
                percentile(&latencies, 99.0),
                latencies[latencies.len() - 1],
            ]
        });
        Report {
            callers: args.callers,
            n: args.n,
            calls: client.calls,
            ok,
            errors,
            elapsed,
            latency_us,
            client,
        }
    }

    fn calls_per_s(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn ok_per_s(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn failed(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Why the run fails, if any call failed or answered wrongly: the most frequent kind of
    /// failure gives the exit code (a wrong answer is a plain failure, 1).
    fn failure(&self) -> Option<Failure> {
        let (kind, _) = self
            .errors
            .iter()
            .filter(|(_, count)| **count > 0)
            .max_by_key(|(_, count)| **count)?;
        let class = Class::ALL
            .into_iter()
            .find(|class| class.name() == *kind)
            .unwrap_or(Class::Failure);
        let kinds: Vec<String> = self
            .errors
            .iter()
            .map(|(kind, count)| format!("{kind} {count}"))
            .collect();
        Some(Failure::new(
            class,
            format!(
                "bench: {} of {} calls failed ({}); --keep-going to exit 0 anyway",
                self.failed(),
                self.ok + self.failed(),
                kinds.join(", ")
            ),
        ))
    }

    fn table(&self, queue: &str) -> String {
        let mut text = format!(
            "fib-rpc bench: fib({}), {} caller{} sharing one client, queue {queue:?}\n",
            self.n,
            self.callers,
            if self.callers == 1 { "" } else { "s" }
        );
        let mut row =
            |label: &str, value: String| text.push_str(&format!("  {label:<22}{value}\n"));
        row("calls", self.calls.to_string());
        row("ok", self.ok.to_string());
        row("errors", self.failed().to_string());
        for (kind, count) in &self.errors {
            row(&format!("  {kind}"), count.to_string());
        }
        row("elapsed", format!("{:.3} s", self.elapsed.as_secs_f64()));
        row("calls/s", format!("{:.0}", self.calls_per_s()));
        row("ok/s", format!("{:.0}", self.ok_per_s()));
        row(
            "latency (ok)",
            match self.latency_us {
                Some([p50, p90, p99, max]) => format!(
                    "p50 {}  p90 {}  p99 {}  max {}",
                    millis(p50),
                    millis(p90),
                    millis(p99),
                    millis(max)
                ),
                None => "no successful call".into(),
            },
        );
        let client = &self.client;
        row(
            "client",
            format!(
                "reconnects {}  retries {}  late/unknown replies {}  returned {}",
                client.reconnects, client.retries, client.discarded_replies, client.returns
            ),
        );
        text
    }

    /// One line of JSON, written by hand: the keys are fixed ASCII names.
    fn json(&self) -> String {
        let errors: Vec<String> = self
            .errors
            .iter()
            .map(|(kind, count)| format!("\"{kind}\":{count}"))
            .collect();
        let [p50, p90, p99, max] = match self.latency_us {
            Some(values) => values.map(|us| us.to_string()),
            None => std::array::from_fn(|_| "null".to_owned()),
        };
        format!(
            "{{\"calls\":{},\"ok\":{},\"errors\":{{{}}},\"calls_per_s\":{:.1},\"ok_per_s\":{:.1},\
             \"p50_us\":{p50},\
             \"p90_us\":{p90},\"p99_us\":{p99},\"max_us\":{max},\"callers\":{},\"n\":{},\
             \"elapsed_s\":{:.3},\"discarded_replies\":{},\"reconnects\":{},\"retries\":{},\"returns\":{}}}",
            self.calls,
            self.ok,
            errors.join(","),
            self.calls_per_s(),
            self.ok_per_s(),
            self.callers,
            self.n,
            self.elapsed.as_secs_f64(),
            self.client.discarded_replies,
            self.client.reconnects,
            self.client.retries,
            self.client.returns,
        )
    }
}

/// Nearest-rank percentile of sorted, non-empty `values`.
fn percentile(values: &[u64], percent: f64) -> u64 {
    let rank = (percent / 100.0 * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

fn millis(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&values, 50.0), 50);
        assert_eq!(percentile(&values, 90.0), 90);
        assert_eq!(percentile(&values, 99.0), 99);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[1, 2], 50.0), 1);
    }
}
