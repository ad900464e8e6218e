//! A load harness for the fault tests: caller threads share one client and keep calling while
//! a test breaks something, and every call is recorded so the test can check afterwards that
//! each one ended in time, with the right answer or an expected kind of error, and how long
//! the service took to come back.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fib_rpc::fib;
use fib_rpc::{ClientStats, Error, FibonacciRpcClient};

/// How late after its deadline a call may end: thread wake-ups on a busy two-core box.
pub const MARGIN: Duration = Duration::from_secs(1);

/// Large `n` are drawn from `BIG_N_FROM..BIG_N_FROM + BIG_N_SPAN`: each takes a server a few
/// milliseconds, so some calls are in flight a while, and they rarely repeat, so a server's
/// result cache cannot answer them for free.
const BIG_N_FROM: u64 = 20_000;
const BIG_N_SPAN: u64 = 30_001;
/// Small `n` cycle through `0..SMALL_N`.
const SMALL_N: u64 = 400;

/// How a load runs.
#[derive(Debug, Clone, Copy)]
pub struct LoadConfig {
    /// Caller threads sharing the client.
    pub callers: usize,
    /// Each call's deadline, from when it starts.
    pub per_call: Duration,
    /// Pause between one caller's calls, so the load does not starve the broker of CPU.
    pub pause: Duration,
    /// One call in this many asks for a large `n`; 2 keeps the servers so busy that they
    /// hold requests whenever a fault strikes.
    pub big_every: u64,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            callers: 8,
            per_call: Duration::from_secs(5),
            pause: Duration::from_millis(2),
            big_every: 8,
        }
    }
}

/// How one call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The right answer.
    Right,
    /// An answer that is not fib(n): what it was, in short.
    Wrong(String),
    /// A typed error: its kind (variant name) and message.
    Failed(&'static str, String),
}

/// One call, as a caller thread saw it.
#[derive(Debug, Clone)]
pub struct CallRecord {
    pub caller: usize,
    pub n: u64,
    pub started: Instant,
    pub deadline: Instant,
    pub ended: Instant,
    pub outcome: Outcome,
}

impl CallRecord {
    pub fn took(&self) -> Duration {
        self.ended - self.started
    }

    pub fn is_right(&self) -> bool {
        self.outcome == Outcome::Right
    }

    /// The error's kind, if the call failed.
    pub fn failure(&self) -> Option<&'static str> {
        match self.outcome {
            Outcome::Failed(kind, _) => Some(kind),
            _ => None,
        }
    }
}

/// The variant name of `err`, for counting failures by kind.
pub fn kind(err: &Error) -> &'static str {
    match err {
        Error::ConnectionLost { .. } => "ConnectionLost",
        Error::NotConnected { .. } => "NotConnected",
        Error::Timeout { .. } => "Timeout",
        Error::Unconfirmed { .. } => "Unconfirmed",
        Error::RequestRefused { .. } => "RequestRefused",
        Error::NoServer { .. } => "NoServer",
        Error::Remote(_) => "Remote",
        Error::InvalidReply(_) => "InvalidReply",
        Error::Closed => "Closed",
        Error::Connect { .. } => "Connect",
        Error::InvalidArgument(_) => "InvalidArgument",
        Error::Broker(_) => "Broker",
        Error::Io(_) => "Io",
        _ => "other",
    }
}

/// The `n` a caller asks for in its `index`th call: mostly small, every few a large one,
/// callers out of step with each other.
fn pick_n(caller: usize, index: u64, big_every: u64) -> u64 {
    let caller = caller as u64;
    if (index + caller).is_multiple_of(big_every) {
        BIG_N_FROM + (index * 7_919 + caller * 3_331) % BIG_N_SPAN
    } else {
        (index * 7 + caller * 13) % SMALL_N
    }
}

/// A load in progress. [`finish`](Self::finish) stops it and hands over the records.
pub struct Load {
    config: LoadConfig,
    began: Instant,
    records: Arc<Mutex<Vec<CallRecord>>>,
    /// Per caller: when its current call started, in nanoseconds after `began` plus one;
    /// 0 between calls. Shows calls stuck in flight while the load runs.
    current: Arc<Vec<AtomicU64>>,
    stopping: Arc<AtomicBool>,
    /// Disconnects once every caller thread has ended, so finishing can be bounded.
    callers_done: crossbeam_channel::Receiver<()>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    /// Starts `config.callers` threads calling through `client` until finished.
    pub fn start(client: &Arc<FibonacciRpcClient>, config: LoadConfig) -> Load {
        let began = Instant::now();
        let records = Arc::new(Mutex::new(Vec::new()));
        let current: Arc<Vec<AtomicU64>> =
            Arc::new((0..config.callers).map(|_| AtomicU64::new(0)).collect());
        let stopping = Arc::new(AtomicBool::new(false));
        let (done_tx, callers_done) = crossbeam_channel::bounded::<()>(0);
        let threads = (0..config.callers)
            .map(|caller| {
                let client = Arc::clone(client);
                let records = Arc::clone(&records);
                let current = Arc::clone(&current);
                let stopping = Arc::clone(&stopping);
                let done = done_tx.clone();
                std::thread::Builder::new()
                    .name(format!("load-caller-{caller}"))
                    .spawn(move || {
                        let _done = done; // dropped when this caller ends
                        let mut index = 0;
                        while !stopping.load(Ordering::SeqCst) {
                            let n = pick_n(caller, index, config.big_every);
                            index += 1;
                            let started = Instant::now();
                            let deadline = started + config.per_call;
                            let since_began = (started - began).as_nanos() as u64 + 1;
                            current[caller].store(since_began, Ordering::SeqCst);
                            let result = client.call_deadline(n, deadline);
                            let ended = Instant::now();
                            current[caller].store(0, Ordering::SeqCst);
                            let outcome = match result {
                                // Computed here: no server's word is taken for it.
                                Ok(answer) if answer == fib(n) => Outcome::Right,
                                Ok(answer) => Outcome::Wrong(short(&answer.to_string())),
                                Err(err) => Outcome::Failed(kind(&err), err.full_message()),
                            };
                            records.lock().unwrap().push(CallRecord {
                                caller,
                                n,
                                started,
                                deadline,
                                ended,
                                outcome,
                            });
                            std::thread::sleep(config.pause);
                        }
                    })
                    .unwrap()
            })
            .collect();
        Load {
            config,
            began,
            records,
            current,
            stopping,
            callers_done,
            threads,
        }
    }

    /// Waits until `count` calls have been answered right (the load is running smoothly);
    /// panics after `within`.
    pub fn warm_up(&self, count: usize, within: Duration) {
        let warmed = super::eventually(within, || {
            self.records
                .lock()
                .unwrap()
                .iter()
                .filter(|call| call.is_right())
                .count()
                >= count
        });
        assert!(
            warmed,
            "load did not warm up: {:?}",
            self.records.lock().unwrap().last()
        );
    }

    /// Calls in flight right now that started more than `age` ago.
    pub fn waiting_longer_than(&self, age: Duration) -> usize {
        let now = (Instant::now() - self.began).as_nanos() as u64 + 1;
        let age = age.as_nanos() as u64;
        self.current
            .iter()
            .map(|started| started.load(Ordering::SeqCst))
            .filter(|&started| started != 0 && now.saturating_sub(started) > age)
            .count()
    }

    /// Waits up to `within` for a call that started at or after `since` to be answered right;
    /// true if one was.
    pub fn wait_recovered(&self, since: Instant, within: Duration) -> bool {
        super::eventually(within, || {
            self.records
                .lock()
                .unwrap()
                .iter()
                .any(|call| call.started >= since && call.is_right())
        })
    }

    /// Stops the callers after their current call and returns every call's record. Panics
    /// if a caller is still inside a call well past that call's deadline: a hang.
    pub fn finish(mut self) -> Run {
        self.stopping.store(true, Ordering::SeqCst);
        let bound = self.config.per_call + self.config.pause + Duration::from_secs(2);
        let ended = matches!(
            self.callers_done.recv_timeout(bound),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected)
        );
        assert!(
            ended,
            "{} calls did not return within {bound:?} of the load stopping although their \
             deadline was {:?}: the client hangs",
            self.waiting_longer_than(self.config.per_call),
            self.config.per_call
        );
        for thread in std::mem::take(&mut self.threads) {
            thread.join().expect("caller thread panicked");
        }
        let mut records = std::mem::take(&mut *self.records.lock().unwrap());
        records.sort_by_key(|call| call.started);
        Run {
            began: self.began,
            records,
        }
    }
}

impl Drop for Load {
    /// A test that fails mid-load must not leave its callers running into the next test.
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
    }
}

/// The first characters of a long answer, for messages.
fn short(text: &str) -> String {
    let head: String = text.chars().take(40).collect();
    format!("{head}... ({} digits)", text.len())
}

/// Every call of a finished load, with the checks the fault tests share.
pub struct Run {
    pub began: Instant,
    pub records: Vec<CallRecord>,
}

impl Run {
    pub fn calls(&self) -> usize {
        self.records.len()
    }

    pub fn right(&self) -> usize {
        self.records.iter().filter(|call| call.is_right()).count()
    }

    pub fn failed(&self) -> Vec<&CallRecord> {
        self.records
            .iter()
            .filter(|call| call.failure().is_some())
            .collect()
    }

    /// Failed calls counted by error kind.
    pub fn failed_by_kind(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for kind in self.records.iter().filter_map(CallRecord::failure) {
            *counts.entry(kind).or_insert(0) += 1;
        }
        counts
    }

    /// Time from `since` until the first call started at or after it was answered right.
    pub fn recovery(&self, since: Instant) -> Option<Duration> {
        self.records
            .iter()
            .filter(|call| call.started >= since && call.is_right())
            .map(|call| call.ended - since)
            .min()
    }

    /// The longest call, however it ended.
    pub fn slowest(&self) -> Duration {
        self.records
            .iter()
            .map(CallRecord::took)
            .max()
            .unwrap_or_default()
    }

    /// Prints the one-line summary for `fault` (recovery measured from `since`) and the
    /// counters of the client and servers involved, then returns the summary line.
    pub fn report(
        &self,
        fault: &str,
        since: Instant,
        client: &ClientStats,
        servers: &[(&str, String)],
    ) -> String {
        let failed = self
            .failed_by_kind()
            .iter()
            .map(|(kind, count)| format!("{kind}: {count}"))
            .collect::<Vec<_>>()
            .join(", ");
        let recovery = match self.recovery(since) {
            Some(recovery) => format!("{}", recovery.as_millis()),
            None => "none".to_owned(),
        };
        let line = format!(
            "FAULT {fault}: calls={}, ok={}, failed={{{failed}}}, recovery={recovery} ms, \
             slowest={} ms",
            self.calls(),
            self.right(),
            self.slowest().as_millis()
        );
        eprintln!("{line}");
        eprintln!(
            "    client: reconnects={}, discarded_replies={}, {client:?}",
            client.reconnects, client.discarded_replies
        );
        for (name, stats) in servers {
            eprintln!("    {name}: {stats}");
        }
        let latest = self
            .records
            .iter()
            .max_by_key(|call| call.ended.saturating_duration_since(call.deadline));
        if let Some(call) = latest.filter(|call| call.ended > call.deadline) {
            eprintln!(
                "    latest past its deadline: {} ms, {:?}",
                (call.ended - call.deadline).as_millis(),
                call.outcome
            );
        }
        line
    }

    /// No answer was wrong.
    pub fn assert_answers_right(&self) {
        let wrong: Vec<_> = self
            .records
            .iter()
            .filter(|call| matches!(call.outcome, Outcome::Wrong(_)))
            .collect();
        assert!(wrong.is_empty(), "wrong answers: {wrong:#?}");
    }

    /// Every call ended no later than `margin` after its deadline.
    pub fn assert_within_deadlines(&self, margin: Duration) {
        let late: Vec<_> = self
            .records
            .iter()
            .filter(|call| call.ended > call.deadline + margin)
            .collect();
        assert!(
            late.is_empty(),
            "{} calls ended more than {margin:?} after their deadline: {late:#?}",
            late.len()
        );
    }

    /// Every failure is of one of the `allowed` kinds.
    pub fn assert_failures_only(&self, allowed: &[&str]) {
        let unexpected: Vec<_> = self
            .failed()
            .into_iter()
            .filter(|call| !allowed.contains(&call.failure().unwrap()))
            .collect();
        assert!(
            unexpected.is_empty(),
            "failures other than {allowed:?}: {unexpected:#?}"
        );
    }

    /// Recovery from `since` took less than `bound`, and it lasted: no call started after
    /// `since + bound` failed.
    pub fn assert_recovered_within(&self, since: Instant, bound: Duration) {
        match self.recovery(since) {
            Some(recovery) => assert!(recovery < bound, "recovery took {recovery:?}"),
            None => panic!(
                "no call started after the fault was answered; last calls: {:#?}",
                &self.records[self.records.len().saturating_sub(8)..]
            ),
        }
        let late_failures: Vec<_> = self
            .failed()
            .into_iter()
            .filter(|call| call.started > since + bound)
            .collect();
        assert!(
            late_failures.is_empty(),
            "calls failed well after recovery: {late_failures:#?}"
        );
    }

    /// The client's counters agree with what the callers saw: one result per call, none
    /// counted twice.
    pub fn assert_counted_by(&self, client: &ClientStats) {
        let failures = self.failed_by_kind();
        let count = |kind| failures.get(kind).copied().unwrap_or(0) as u64;
        assert_eq!(client.calls, self.calls() as u64, "{client:?}");
        assert_eq!(client.ok, self.right() as u64, "{client:?}");
        assert_eq!(
            client.timeouts,
            count("Timeout") + count("Unconfirmed"),
            "{client:?}"
        );
        assert_eq!(
            client.connection_lost,
            count("ConnectionLost"),
            "{client:?}"
        );
        assert_eq!(client.not_connected, count("NotConnected"), "{client:?}");
    }
}
