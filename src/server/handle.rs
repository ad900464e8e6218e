//! The server's handle: start it, watch it, stop it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::options::ServerOptions;
use super::request::Handler;
use super::supervisor::{ReadySignal, Supervisor};
use crate::error::{BrokerError, BrokerErrorKind, Error, Result};
use crate::metrics::{LatencyHistogram, LatencyRecorder};
use crate::reconnect::Brokers;
use crate::util::bump;
use crate::wire::ErrorCode;

/// Asks a running [`RpcServer`] to stop gracefully. Cloneable and `Send`, so a signal handler
/// thread or another part of the program can hold one.
#[derive(Debug, Clone)]
pub struct StopHandle {
    /// Dropping the sender wakes every receiver at once: a broadcast with no message.
    signal: Arc<Mutex<Option<Sender<()>>>>,
}

impl StopHandle {
    fn new() -> (StopHandle, Receiver<()>) {
        let (tx, rx) = crossbeam_channel::bounded(0);
        let handle = StopHandle {
            signal: Arc::new(Mutex::new(Some(tx))),
        };
        (handle, rx)
    }

    /// Stops taking new requests; requests already received are finished, replied to and
    /// acked, then the connection is closed. Returns at once; [`RpcServer::wait`] waits.
    pub fn stop(&self) {
        self.signal.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// A running RPC server.
///
/// ```no_run
/// use fib_rpc::{FibonacciHandler, RpcServer, ServerOptions};
///
/// let server = RpcServer::start(
///     "amqp://guest:guest@localhost:5672/%2f",
///     ServerOptions::default(),
///     FibonacciHandler::default(),
/// )?;
/// let stop = server.stop_handle(); // e.g. for a signal handler
/// # stop.stop();
/// server.wait()?; // until stopped
/// # Ok::<(), fib_rpc::Error>(())
/// ```
#[derive(Debug)]
pub struct RpcServer {
    stop: StopHandle,
    supervisor: Option<JoinHandle<Result<()>>>,
    /// Disconnects when the supervisor thread ends, so waiting can be bounded.
    finished: Receiver<()>,
    /// Never gets a message: disconnects when the workers first consume (then `is_ready` is
    /// set) or when the supervisor ends before that.
    ready: Receiver<()>,
    /// Set by the supervisor once the workers consume.
    is_ready: Arc<AtomicBool>,
    queue: String,
    workers: usize,
    stop_timeout: Duration,
    stats: Arc<ServerCounters>,
}

/// A snapshot of a server's counters, from [`RpcServer::stats`]. Every counter only grows,
/// except [`in_progress`](Self::in_progress).
///
/// Every request received ends in exactly one outcome: answered ([`ok`](Self::ok)), answered
/// with an error reply (by code: [`bad_request`](Self::bad_request),
/// [`out_of_range`](Self::out_of_range), [`internal`](Self::internal),
/// [`other_code`](Self::other_code)), or dropped unanswered ([`expired`](Self::expired),
/// [`no_reply_to`](Self::no_reply_to), [`poison`](Self::poison)). A request redelivered
/// after a connection loss counts again. The one exception: a request whose reply could not
/// be published (the channel or connection failed while publishing it) is received with no
/// outcome; it comes back after the reconnection and counts again there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerStats {
    /// Requests received (redeliveries included).
    pub received: u64,
    /// Replies published (answers and error replies).
    pub replied: u64,
    /// Error replies among them.
    pub error_replies: u64,
    /// Requests answered with a result.
    pub ok: u64,
    /// Error replies with code `bad_request`.
    pub bad_request: u64,
    /// Error replies with code `out_of_range`.
    pub out_of_range: u64,
    /// Error replies with code `internal` (including handler panics and oversized replies).
    pub internal: u64,
    /// Error replies with any other code (a handler's own).
    pub other_code: u64,
    /// Requests dropped unread because their caller's deadline had passed.
    pub expired: u64,
    /// Requests without `reply_to`, dropped: there is nowhere to answer.
    pub no_reply_to: u64,
    /// Requests dropped because they kept coming back: answering them broke the connection
    /// or channel each time.
    pub poison: u64,
    /// Times the server connected again after losing its connection.
    pub reconnects: u64,
    /// Requests being handled right now: received, not yet answered or dropped.
    pub in_progress: u64,
    /// How long answered requests took, from receipt to the reply being published
    /// (the handler's time plus the server's own).
    pub handling: LatencyHistogram,
}

/// The live counters behind [`ServerStats`], shared with the supervisor and workers.
#[derive(Debug, Default)]
pub(super) struct ServerCounters {
    pub(super) received: AtomicU64,
    pub(super) replied: AtomicU64,
    pub(super) error_replies: AtomicU64,
    pub(super) expired: AtomicU64,
    pub(super) no_reply_to: AtomicU64,
    pub(super) poison: AtomicU64,
    pub(super) reconnects: AtomicU64,
    pub(super) ok: AtomicU64,
    pub(super) bad_request: AtomicU64,
    pub(super) out_of_range: AtomicU64,
    pub(super) internal: AtomicU64,
    pub(super) other_code: AtomicU64,
    pub(super) in_progress: AtomicU64,
    pub(super) handling: LatencyRecorder,
    /// The broker of the current connection (password masked), while connected.
    pub(super) broker: std::sync::Mutex<Option<String>>,
}

impl ServerStats {
    /// Every request outcome by name, with its count: `ok`, then the error replies by code
    /// (`bad_request`, `out_of_range`, `internal`, `other`), then the requests dropped
    /// unanswered (`expired`, `poison`, `no_reply_to`). The names are those an exporter or a
    /// log line uses.
    ///
    /// ```
    /// let stats = fib_rpc::ServerStats::default();
    /// let names: Vec<&str> = stats.outcomes().iter().map(|(name, _)| *name).collect();
    /// assert_eq!(names[..2], ["ok", "bad_request"]);
    /// assert_eq!(stats.outcomes().iter().map(|(_, n)| n).sum::<u64>(), 0);
    /// ```
    pub fn outcomes(&self) -> [(&'static str, u64); 8] {
        [
            ("ok", self.ok),
            ("bad_request", self.bad_request),
            ("out_of_range", self.out_of_range),
            ("internal", self.internal),
            ("other", self.other_code),
            ("expired", self.expired),
            ("poison", self.poison),
            ("no_reply_to", self.no_reply_to),
        ]
    }
}

impl ServerCounters {
    /// Counts a request as in progress until the returned guard is dropped.
    pub(super) fn in_progress(&self) -> InProgress<'_> {
        bump(&self.in_progress);
        InProgress(&self.in_progress)
    }

    /// Counts a reply published `took` after its request was received.
    pub(super) fn answered(&self, code: Option<&ErrorCode>, took: Duration) {
        bump(&self.replied);
        bump(match code {
            None => &self.ok,
            Some(ErrorCode::BadRequest) => &self.bad_request,
            Some(ErrorCode::OutOfRange) => &self.out_of_range,
            Some(ErrorCode::Internal) => &self.internal,
            Some(_) => &self.other_code,
        });
        if code.is_some() {
            bump(&self.error_replies);
        }
        self.handling.record(took);
    }

    fn broker(&self) -> Option<String> {
        self.broker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn snapshot(&self) -> ServerStats {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        ServerStats {
            received: get(&self.received),
            replied: get(&self.replied),
            error_replies: get(&self.error_replies),
            expired: get(&self.expired),
            no_reply_to: get(&self.no_reply_to),
            poison: get(&self.poison),
            reconnects: get(&self.reconnects),
            ok: get(&self.ok),
            bad_request: get(&self.bad_request),
            out_of_range: get(&self.out_of_range),
            internal: get(&self.internal),
            other_code: get(&self.other_code),
            in_progress: get(&self.in_progress),
            handling: self.handling.snapshot(),
        }
    }
}

/// Reads a running [`RpcServer`]'s counters and connection state from any thread, e.g. for
/// a metrics endpoint or periodic logging. Cloneable and `Send`, like [`StopHandle`]; it
/// keeps nothing alive but the counters (the last snapshot stays readable after the server
/// stopped).
///
/// ```no_run
/// use fib_rpc::{FibonacciHandler, RpcServer, ServerOptions};
///
/// let server = RpcServer::start(
///     "amqp://guest:guest@localhost:5672/%2f",
///     ServerOptions::default(),
///     FibonacciHandler::default(),
/// )?;
/// let stats = server.stats_handle();
/// std::thread::spawn(move || loop {
///     std::thread::sleep(std::time::Duration::from_secs(60));
///     eprintln!("answered {} so far", stats.stats().ok);
/// });
/// server.wait()?;
/// # Ok::<(), fib_rpc::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct StatsHandle {
    counters: Arc<ServerCounters>,
}

impl StatsHandle {
    /// A snapshot of the server's counters, as [`RpcServer::stats`].
    pub fn stats(&self) -> ServerStats {
        self.counters.snapshot()
    }

    /// The broker the server is connected to now, as [`RpcServer::broker`]; `None` while it
    /// is not connected (and once it has stopped).
    pub fn broker(&self) -> Option<String> {
        self.counters.broker()
    }
}

/// Holds one request in [`ServerStats::in_progress`].
pub(super) struct InProgress<'a>(&'a AtomicU64);

impl Drop for InProgress<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl RpcServer {
    /// Connects, makes sure the queue exists, and starts the workers. Returns once every worker
    /// is consuming, so requests sent after this are served (with
    /// [`ServerOptions::lazy_start`], at once: see there). From then on the server outlives
    /// the broker: when the connection is lost it reconnects with backoff, declares the queue
    /// again if it is gone, and resumes. Only [`stop`](Self::stop) or a [`StopHandle`] ends it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a malformed URL or unusable options;
    /// [`Error::Connect`] if the broker cannot be reached or refuses us;
    /// [`Error::Broker`] if it refuses to set up the queue or a consumer.
    pub fn start(url: &str, options: ServerOptions, handler: impl Handler) -> Result<RpcServer> {
        Self::start_failover(&[url], options, handler)
    }

    /// Like [`start`](Self::start), with several brokers tried in turn (for example the nodes
    /// of a cluster), first on starting and again whenever the connection is lost.
    pub fn start_failover<S: AsRef<str>>(
        urls: &[S],
        options: ServerOptions,
        handler: impl Handler,
    ) -> Result<RpcServer> {
        let brokers = Brokers::parse(urls)?;
        options.check()?;
        let (stop, stop_rx) = StopHandle::new();
        let (ready_tx, ready_rx) = crossbeam_channel::bounded(0);
        let is_ready = Arc::new(AtomicBool::new(false));
        let ready_signal = ReadySignal {
            flag: Arc::clone(&is_ready),
            wake: ready_tx,
        };
        let lazy = options.lazy_start;
        let (finished_tx, finished) = crossbeam_channel::bounded::<()>(0);
        // Connecting is bounded by the connect timeout; the rest is a few AMQP round trips
        // per worker.
        let setup_bound = options
            .connect
            .timeout
            .saturating_mul(u32::try_from(urls.len()).unwrap_or(u32::MAX))
            .saturating_add(Duration::from_secs(10));
        let broker = brokers.current().to_string(); // redacted
        let stats = Arc::new(ServerCounters::default());
        let last_failure = Arc::new(Mutex::new(None));
        let mut server = RpcServer {
            stop,
            supervisor: None,
            finished,
            ready: ready_rx,
            is_ready,
            queue: options.queue.clone(),
            workers: options.workers,
            stop_timeout: options.stop_timeout,
            stats: Arc::clone(&stats),
        };
        let supervisor = Supervisor::new(
            brokers,
            options,
            handler,
            stats,
            Arc::clone(&last_failure),
            stop_rx,
        );
        let thread = std::thread::Builder::new()
            .name("fib-rpc-server".into())
            .spawn(move || {
                let _finished = finished_tx; // dropped when this thread ends
                supervisor.run(ready_signal)
            })
            .map_err(Error::Io)?;
        server.supervisor = Some(thread);
        if lazy {
            return Ok(server);
        }
        server.await_start(setup_bound, broker, &last_failure)
    }

    /// Waits, up to `setup_bound`, until the supervisor reports that the workers consume.
    fn await_start(
        mut self,
        setup_bound: Duration,
        broker: String,
        last_failure: &Mutex<Option<String>>,
    ) -> Result<RpcServer> {
        match self.ready.recv_timeout(setup_bound) {
            Ok(()) | Err(RecvTimeoutError::Disconnected)
                if self.is_ready.load(Ordering::SeqCst) =>
            {
                Ok(self)
            }
            // The supervisor failed before it was ready; its result says why.
            Ok(()) | Err(RecvTimeoutError::Disconnected) => match self.join_within(setup_bound) {
                Err(err) => Err(err),
                Ok(()) => Err(Error::Closed),
            },
            Err(RecvTimeoutError::Timeout) => {
                // The broker stalls mid-setup. Ask the supervisor to stop and leave it: it ends
                // when setup fails or finishes; waiting here too would double the bound.
                self.stop.stop();
                drop(self.supervisor.take());
                let why = match last_failure
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take()
                {
                    Some(why) => format!(
                        "server setup did not finish within {setup_bound:?}; last failure: {why}"
                    ),
                    None => format!("server setup did not finish within {setup_bound:?}"),
                };
                Err(Error::Connect {
                    broker,
                    cause: BrokerError::other(BrokerErrorKind::Unreachable, why),
                })
            }
        }
    }

    /// Waits up to `timeout` until the server consumes its queue: at once after a plain
    /// [`start`](Self::start), which returns only then; with
    /// [`ServerOptions::lazy_start`], once the broker is reachable and the workers consume.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] if the server is not consuming yet; [`Error::Closed`] if it ended
    /// before it ever was (a stop, or the brokers refused it: [`wait`](Self::wait) returns
    /// why).
    ///
    /// ```no_run
    /// use fib_rpc::{FibonacciHandler, RpcServer, ServerOptions};
    /// use std::time::Duration;
    ///
    /// let server = RpcServer::start(
    ///     "amqp://guest:guest@localhost:5672/%2f",
    ///     ServerOptions::default().lazy_start(true),
    ///     FibonacciHandler::default(),
    /// )?;
    /// while let Err(fib_rpc::Error::Timeout { .. }) = server.wait_ready(Duration::from_secs(1)) {
    ///     eprintln!("waiting for the broker...");
    /// }
    /// # Ok::<(), fib_rpc::Error>(())
    /// ```
    pub fn wait_ready(&self, timeout: Duration) -> Result<()> {
        if self.is_ready.load(Ordering::SeqCst) {
            return Ok(());
        }
        // Nothing is ever sent: the supervisor drops its sender when ready or when it ends.
        let woken = self.ready.recv_timeout(timeout);
        if self.is_ready.load(Ordering::SeqCst) {
            return Ok(());
        }
        match woken {
            Err(RecvTimeoutError::Timeout) => Err(Error::Timeout {
                waited: timeout,
                consumers: None,
            }),
            Ok(()) | Err(RecvTimeoutError::Disconnected) => Err(Error::Closed),
        }
    }

    /// A handle that stops this server from any thread.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// The queue this server consumes.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The number of worker threads.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// The broker this server is connected to now (its URL, password masked), or `None`
    /// while it is not connected. With several URLs, the one that answered.
    pub fn broker(&self) -> Option<String> {
        self.stats.broker()
    }

    /// A snapshot of this server's counters.
    pub fn stats(&self) -> ServerStats {
        self.stats.snapshot()
    }

    /// A handle that reads this server's counters and connection state from any thread, also
    /// after the server itself has moved into [`wait`](Self::wait).
    pub fn stats_handle(&self) -> StatsHandle {
        StatsHandle {
            counters: Arc::clone(&self.stats),
        }
    }

    /// Serves until the server stops, which is what a server's main thread is for: after a
    /// [`StopHandle::stop`] it returns `Ok(())` once in-flight requests are answered. Losing
    /// the broker does not end it (the server reconnects).
    pub fn wait(mut self) -> Result<()> {
        match self.supervisor.take() {
            Some(thread) => thread.join().unwrap_or_else(|_| Err(panicked())),
            None => Ok(()),
        }
    }

    /// Stops gracefully and waits up to the configured stop timeout; see
    /// [`stop_timeout`](Self::stop_timeout).
    pub fn stop(self) -> Result<()> {
        let timeout = self.stop_timeout;
        self.stop_timeout(timeout)
    }

    /// Stops gracefully (see [`StopHandle::stop`]) and waits at most `timeout` for in-flight
    /// requests to be answered and the connection to close. If that takes longer (a handler
    /// still running, a broker that does not answer) it returns [`Error::Timeout`] and leaves
    /// the threads to finish on their own.
    pub fn stop_timeout(mut self, timeout: Duration) -> Result<()> {
        self.stop.stop();
        self.join_within(timeout)
    }

    fn join_within(&mut self, timeout: Duration) -> Result<()> {
        let Some(thread) = self.supervisor.take() else {
            return Ok(());
        };
        match self.finished.recv_timeout(timeout) {
            Err(RecvTimeoutError::Disconnected) => {
                thread.join().unwrap_or_else(|_| Err(panicked()))
            }
            _ => {
                log::warn!("not stopped within {timeout:?}; leaving it to finish");
                Err(Error::Timeout {
                    waited: timeout,
                    consumers: None,
                })
            }
        }
    }
}

impl Drop for RpcServer {
    /// Stops gracefully, waiting at most the stop timeout (see [`RpcServer::stop_timeout`]).
    fn drop(&mut self) {
        self.stop.stop();
        if let Err(err) = self.join_within(self.stop_timeout) {
            log::warn!("{err}");
        }
    }
}

fn panicked() -> Error {
    Error::Io(std::io::Error::other("fib-rpc server thread panicked"))
}
