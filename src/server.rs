//! The serving side: a generic [`RpcServer`] that runs a [`Handler`] on worker threads, and
//! the Fibonacci service ([`FibonacciHandler`]) as its default use.
//!
//! # Threads
//!
//! A supervisor thread (`fib-rpc-server`) owns the AMQP connection. Each worker thread
//! (`fib-rpc-worker-N`) owns one channel with its own consumer and prefetch window, so a slow
//! request holds up only its own worker, and the broker spreads requests across workers and
//! across server processes on the same queue.
//!
//! # Per request
//!
//! The worker runs the handler, publishes the reply to `reply_to` with the request's
//! `correlation_id`, and only then acks, so a server that dies mid-request leaves the request
//! to be redelivered to another server: at least once, and the client drops a second answer.
//! Bad input and handler panics become error replies (see [`wire`](mod@crate::wire)), acked
//! like answers, so nothing is requeued in a loop. A request whose caller's deadline has
//! passed is acked and dropped without running the handler. While more requests are already
//! waiting, one ack covers several answered ones (up to half the prefetch window); an idle
//! worker has acked all it answered.
//!
//! # When the broker goes away
//!
//! The supervisor notices when any worker's channel or the connection fails, stops the other
//! workers (their unacked requests go back to the queue), and reconnects with capped,
//! jittered exponential backoff, trying each broker URL in turn. It declares the queue again
//! if the broker lost it, and resumes. Only a stop request ends the server.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::num::NonZeroUsize;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use amiquip::{
    AmqpProperties, AmqpValue, Channel, Connection, Consumer, ConsumerMessage, ConsumerOptions,
    Delivery, FieldTable, Publish, QueueDeclareOptions,
};
use crossbeam_channel::{select, Receiver, RecvTimeoutError, Sender};

use crate::broker::{check_settings, is_generic, more_specific, ConnectSettings};
use crate::cache::{CacheStats, ResultCache, DEFAULT_CACHE_BYTES, MIN_CACHED_N};
use crate::error::{Error, Result};
use crate::fib::fib_decimal;
use crate::reconnect::{Backoff, BackoffSettings, Brokers};
use crate::util::{bump, is_disconnected};
use crate::wire::{self, ErrorCode, RemoteError, DEFAULT_QUEUE, ERROR_HEADER};

/// The largest `n` the Fibonacci service computes unless told otherwise.
///
/// fib(1,000,000) has 208,988 digits and takes a worker about 11 ms on two cores, 20 ms on
/// one; a limit keeps one request from occupying a worker for long (fib(10⁷): about 0.3 s on
/// two cores, 0.6 s on one, and a 2 MB reply).
pub const DEFAULT_MAX_N: u64 = 1_000_000;

/// Serves one request: the request body in, the reply body out, or an error reply.
///
/// Implemented for closures, so a service can be a one-liner:
///
/// ```
/// use fib_rpc::{Handler, RemoteError};
///
/// let shout = |request: &[u8]| -> Result<Vec<u8>, RemoteError> {
///     Ok(request.to_ascii_uppercase())
/// };
/// assert_eq!(shout.handle(b"hi").unwrap(), b"HI");
/// ```
///
/// A handler may panic; the panic becomes an `internal` error reply and the worker goes on.
pub trait Handler: Send + Sync + 'static {
    /// Computes the reply to `request`.
    fn handle(&self, request: &[u8]) -> Result<Vec<u8>, RemoteError>;
}

impl<F> Handler for F
where
    F: Fn(&[u8]) -> Result<Vec<u8>, RemoteError> + Send + Sync + 'static,
{
    fn handle(&self, request: &[u8]) -> Result<Vec<u8>, RemoteError> {
        self(request)
    }
}

/// The tutorial's service: the request is `n` in decimal, the reply fib(n) in decimal.
///
/// Results for `n` of 1,000 and up are kept in a bounded LRU cache
/// ([`DEFAULT_CACHE_BYTES`] unless set with
/// [`cache_bytes`](Self::cache_bytes)), so a request redelivered after a server died, or
/// asked again, is not computed twice. Requests for the same `n` that arrive while it is being
/// computed (on other workers) wait for that result instead of computing it too, also when
/// the cache is off. Clones share the cache.
///
/// ```
/// use fib_rpc::{FibonacciHandler, Handler};
///
/// let service = FibonacciHandler::new(100_000);
/// assert_eq!(service.handle(b"30").unwrap(), b"832040");
/// assert!(service.handle(b"100001").is_err());
/// let first = service.handle(b"50000").unwrap();
/// assert_eq!(service.handle(b"50000").unwrap(), first);
/// assert_eq!(service.cache_stats().hits, 1);
/// ```
#[derive(Debug, Clone)]
pub struct FibonacciHandler {
    max_n: u64,
    cache: ResultCache,
}

impl FibonacciHandler {
    /// A handler that refuses `n` above `max_n` with an `out_of_range` error reply.
    pub fn new(max_n: u64) -> Self {
        FibonacciHandler {
            max_n,
            cache: ResultCache::new(DEFAULT_CACHE_BYTES),
        }
    }

    /// Bounds the result cache to `bytes` of decimal digits; 0 turns it off.
    pub fn cache_bytes(mut self, bytes: usize) -> Self {
        self.cache = ResultCache::new(bytes);
        self
    }

    /// The largest `n` this handler computes.
    pub fn max_n(&self) -> u64 {
        self.max_n
    }

    /// How the result cache is doing.
    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }
}

impl Default for FibonacciHandler {
    /// Limited to [`DEFAULT_MAX_N`].
    fn default() -> Self {
        Self::new(DEFAULT_MAX_N)
    }
}

impl Handler for FibonacciHandler {
    fn handle(&self, request: &[u8]) -> Result<Vec<u8>, RemoteError> {
        let n = wire::parse_n(request, self.max_n)?;
        if n < MIN_CACHED_N {
            return Ok(fib_decimal(n).into_bytes());
        }
        let digits = self
            .cache
            .get_or_compute(n, || fib_decimal(n).into_bytes().into());
        Ok(digits.to_vec())
    }
}

/// What kind of queue the server declares when the queue does not exist yet. An existing
/// queue is always used as it is, whatever its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum QueueKind {
    /// Classic, non-durable: what the tutorial declares.
    #[default]
    Classic,
    /// Durable quorum queue: survives broker restarts and, in a cluster, node failures.
    DurableQuorum,
}

/// Settings for [`RpcServer`].
///
/// ```
/// use fib_rpc::{QueueKind, ServerOptions};
///
/// let options = ServerOptions::default()
///     .queue("fib_requests")
///     .workers(4)
///     .prefetch(8)
///     .declare_as(QueueKind::DurableQuorum);
/// ```
#[derive(Debug, Clone)]
pub struct ServerOptions {
    queue: String,
    workers: usize,
    prefetch: u16,
    declare_as: QueueKind,
    connect: ConnectSettings,
    stop_timeout: Duration,
    max_reply_bytes: usize,
    backoff: BackoffSettings,
    deadline_grace: Duration,
}

/// Unacknowledged requests the broker may push to each worker ahead of time.
///
/// Measured (`examples/prefetch_bench.rs`, README): a window of 1 leaves a worker idle for a
/// broker round trip after every reply; throughput on one server grows up to ~32, but each slot
/// is also a request a slow server can park behind its own work while another server idles, and
/// from 32 up a slow server on the same queue hoards nearly everything. 8 keeps most of the
/// throughput and bounds that.
pub const DEFAULT_PREFETCH: u16 = 8;

impl Default for ServerOptions {
    /// Queue `rpc_queue` (declared classic if absent), one worker per CPU,
    /// [`DEFAULT_PREFETCH`], 10 s connect timeout, 15 s heartbeats, 30 s stop timeout, replies
    /// of at most 64 MiB, reconnection backoff from 100 ms doubling up to 5 s.
    fn default() -> Self {
        ServerOptions {
            queue: DEFAULT_QUEUE.to_owned(),
            workers: std::thread::available_parallelism().map_or(2, NonZeroUsize::get),
            prefetch: DEFAULT_PREFETCH,
            declare_as: QueueKind::Classic,
            connect: ConnectSettings::named("fib-rpc server"),
            stop_timeout: Duration::from_secs(30),
            max_reply_bytes: 64 << 20,
            backoff: BackoffSettings::default(),
            deadline_grace: Duration::from_secs(1),
        }
    }
}

impl ServerOptions {
    /// The queue to serve (default `rpc_queue`).
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = queue.into();
        self
    }

    /// Number of worker threads, each with its own channel (default: number of CPUs).
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers;
        self
    }

    /// Per-worker prefetch window (default [`DEFAULT_PREFETCH`]).
    pub fn prefetch(mut self, prefetch: u16) -> Self {
        self.prefetch = prefetch;
        self
    }

    /// The kind of queue to declare if the queue does not exist (default classic).
    pub fn declare_as(mut self, kind: QueueKind) -> Self {
        self.declare_as = kind;
        self
    }

    /// Bound on connecting (TCP and AMQP handshake), default 10 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect.timeout = timeout;
        self
    }

    /// AMQP heartbeat interval in seconds (default 15, at least 1).
    pub fn heartbeat(mut self, seconds: u16) -> Self {
        self.connect.heartbeat_secs = seconds;
        self
    }

    /// How long [`RpcServer::stop`] and dropping a server wait for in-flight requests and the
    /// broker's close before leaving the threads to finish on their own (default 30 s).
    pub fn stop_timeout(mut self, timeout: Duration) -> Self {
        self.stop_timeout = timeout;
        self
    }

    /// Largest reply the server publishes (default 64 MiB). A larger reply is replaced by an
    /// `internal` error reply: publishing it could exceed the broker's `max_message_size`, which
    /// closes the channel and requeues the request to fail again.
    pub fn max_reply_bytes(mut self, bytes: usize) -> Self {
        self.max_reply_bytes = bytes;
        self
    }

    /// Wait between reconnection rounds after the broker went away: `initial` after the
    /// first failure, doubling up to `max`, each wait jittered between half and all of its
    /// step (default 100 ms to 5 s). A round tries every broker URL once.
    pub fn reconnect_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff = BackoffSettings { initial, max };
        self
    }

    /// How late past its caller's deadline ([`DEADLINE_HEADER`](crate::wire::DEADLINE_HEADER))
    /// a request may arrive and still be served (default 1 s). The deadline is the client's
    /// wall clock, so this is the clock difference between machines the server tolerates
    /// before it starts dropping requests someone still waits for.
    pub fn deadline_grace(mut self, grace: Duration) -> Self {
        self.deadline_grace = grace;
        self
    }

    /// Name shown for the connection in RabbitMQ's tools.
    pub fn connection_name(mut self, name: impl Into<String>) -> Self {
        self.connect.name = name.into();
        self
    }
}

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
    queue: String,
    workers: usize,
    stop_timeout: Duration,
    stats: Arc<ServerCounters>,
}

/// A snapshot of a server's counters, from [`RpcServer::stats`]. Every counter only grows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerStats {
    /// Requests received (redeliveries included).
    pub received: u64,
    /// Replies published (answers and error replies).
    pub replied: u64,
    /// Error replies among them.
    pub error_replies: u64,
    /// Requests dropped unread because their caller's deadline had passed.
    pub expired: u64,
    /// Requests without `reply_to`, dropped: there is nowhere to answer.
    pub no_reply_to: u64,
    /// Requests dropped because they kept coming back: answering them broke the connection
    /// or channel each time.
    pub poison: u64,
    /// Times the server connected again after losing its connection.
    pub reconnects: u64,
}

#[derive(Debug, Default)]
struct ServerCounters {
    received: AtomicU64,
    replied: AtomicU64,
    error_replies: AtomicU64,
    expired: AtomicU64,
    no_reply_to: AtomicU64,
    poison: AtomicU64,
    reconnects: AtomicU64,
}

impl RpcServer {
    /// Connects, makes sure the queue exists, and starts the workers. Returns once every worker
    /// is consuming, so requests sent after this are served; fails with [`Error::Connect`] if
    /// the broker cannot be reached. From then on the server outlives the broker: when the
    /// connection is lost it reconnects with backoff, declares the queue again if it is gone,
    /// and resumes. Only [`stop`](Self::stop) or a [`StopHandle`] ends it.
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
        let settings = options.connect.clone();
        check_settings(&settings)?;
        options.backoff.check()?;
        wire::check_queue_name(&options.queue)?;
        if options.workers == 0 {
            return Err(Error::InvalidArgument("workers must be at least 1".into()));
        }
        if options.prefetch == 0 {
            return Err(Error::InvalidArgument(
                "prefetch must be at least 1 (0 would mean unlimited)".into(),
            ));
        }
        let (stop, stop_rx) = StopHandle::new();
        let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
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
            queue: options.queue.clone(),
            workers: options.workers,
            stop_timeout: options.stop_timeout,
            stats: Arc::clone(&stats),
        };
        let supervisor = Supervisor {
            brokers,
            settings,
            backoff: Backoff::from_settings(options.backoff),
            stats,
            redeliveries: Arc::new(Redeliveries::default()),
            last_failure: Arc::clone(&last_failure),
            options,
            handler: Arc::new(handler),
            stop: stop_rx,
        };
        let thread = std::thread::Builder::new()
            .name("fib-rpc-server".into())
            .spawn(move || {
                let _finished = finished_tx; // dropped when this thread ends
                supervisor.run(ready_tx)
            })
            .map_err(Error::Io)?;
        server.supervisor = Some(thread);
        match ready_rx.recv_timeout(setup_bound) {
            Ok(()) => Ok(server),
            // The supervisor failed before it was ready; its result says why.
            Err(RecvTimeoutError::Disconnected) => match server.join_within(setup_bound) {
                Err(err) => Err(err),
                Ok(()) => Err(Error::Closed),
            },
            Err(RecvTimeoutError::Timeout) => {
                // The broker stalls mid-setup. Ask the supervisor to stop and leave it: it ends
                // when setup fails or finishes; waiting here too would double the bound.
                server.stop.stop();
                drop(server.supervisor.take());
                Err(Error::Connect {
                    broker,
                    source: match last_failure.lock().unwrap_or_else(|e| e.into_inner()).take() {
                        Some(why) => format!(
                            "server setup did not finish within {setup_bound:?}; last failure: {why}"
                        ),
                        None => format!("server setup did not finish within {setup_bound:?}"),
                    }
                    .into(),
                })
            }
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

    /// A snapshot of this server's counters.
    pub fn stats(&self) -> ServerStats {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let counters = &self.stats;
        ServerStats {
            received: get(&counters.received),
            replied: get(&counters.replied),
            error_replies: get(&counters.error_replies),
            expired: get(&counters.expired),
            no_reply_to: get(&counters.no_reply_to),
            poison: get(&counters.poison),
            reconnects: get(&counters.reconnects),
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
                log::warn!("fib-rpc server: not stopped within {timeout:?}; leaving it to finish");
                Err(Error::Timeout { waited: timeout })
            }
        }
    }
}

impl Drop for RpcServer {
    /// Stops gracefully, waiting at most the stop timeout (see [`RpcServer::stop_timeout`]).
    fn drop(&mut self) {
        self.stop.stop();
        if let Err(err) = self.join_within(self.stop_timeout) {
            log::warn!("fib-rpc server: {err}");
        }
    }
}

fn panicked() -> Error {
    Error::Io(std::io::Error::other("fib-rpc server thread panicked"))
}

/// How a worker ended.
enum WorkerEnd {
    /// Told to stop, drained.
    Stopped,
    /// The channel or connection failed (with the AMQP client's error, when it gave one).
    Lost(Option<amiquip::Error>),
}

/// Owns the connection and the workers, and gets a new connection when one is lost.
struct Supervisor<H> {
    brokers: Brokers,
    settings: ConnectSettings,
    options: ServerOptions,
    backoff: Backoff,
    handler: Arc<H>,
    stats: Arc<ServerCounters>,
    redeliveries: Arc<Redeliveries>,
    /// Why the last connection or setup failed, for `start` to report if it gives up.
    last_failure: Arc<Mutex<Option<String>>>,
    /// Disconnects when the owner asks the server to stop.
    stop: Receiver<()>,
}

/// How one connection's life ended.
enum Served {
    /// Told to stop; workers drained. Carries the result of closing the connection.
    Stopped,
    /// The connection or a channel failed (with the AMQP client's error, when it gave one).
    Lost(Option<amiquip::Error>),
}

impl<H: Handler> Supervisor<H> {
    /// Serves, reconnecting after every loss, until stopped. The first connection is special:
    /// if it fails, `start` reports the error instead of retrying.
    fn run(mut self, ready: Sender<()>) -> Result<()> {
        let mut ready = Some(ready);
        let mut connections = 0u64;
        loop {
            let attempt = self
                .brokers
                .connect_round(&self.settings, || is_disconnected(&self.stop));
            let mut connection = match attempt {
                Ok(connection) => connection,
                Err(err) if ready.is_some() => return Err(err),
                Err(_) if is_disconnected(&self.stop) => return Ok(()),
                Err(err) => {
                    log::warn!("fib-rpc server: {err}; retrying");
                    self.note_failure(err.to_string());
                    if !self.pause() {
                        return Ok(());
                    }
                    continue;
                }
            };
            if is_disconnected(&self.stop) {
                return connection.close().map_err(Error::from);
            }
            let started = Instant::now();
            let served = self.serve_connection(&mut connection, &mut ready, &mut connections);
            let closed = connection.close();
            let lost = match served {
                Ok(Served::Stopped) => return closed.map_err(Error::from),
                // A refusal while setting up the first time is for `start` to report; losing
                // the connection meanwhile is not (a poison request can do that): retry.
                Err(err) if ready.is_some() && !is_connection_loss(&err) => return Err(err),
                Err(err) => {
                    // This broker accepts connections but cannot serve us: try the next first.
                    self.brokers.skip_current();
                    format!("setting up: {err}")
                }
                // After a socket failure, closing returns the AMQP client's own error.
                Ok(Served::Lost(seen)) => match more_specific(seen, closed.err()) {
                    Some(cause) => format!("connection to broker lost: {cause}"),
                    None => "connection to broker lost".to_owned(),
                },
            };
            log::error!("fib-rpc server: {lost}; reconnecting");
            self.note_failure(lost);
            if started.elapsed() >= self.backoff.max() {
                self.backoff.reset();
            }
            if !self.pause() {
                return Ok(());
            }
        }
    }

    fn note_failure(&self, why: String) {
        *self.last_failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
    }

    /// Waits out the next backoff step; false if told to stop meanwhile.
    fn pause(&mut self) -> bool {
        let delay = self.backoff.next_delay();
        !matches!(
            self.stop.recv_timeout(delay),
            Err(RecvTimeoutError::Disconnected)
        )
    }

    /// Makes sure the queue exists, starts the workers on their own channels, reports ready
    /// the first time, and waits until told to stop or a worker ends on its own (connection
    /// trouble). Errors are setup failures.
    fn serve_connection(
        &self,
        connection: &mut Connection,
        ready: &mut Option<Sender<()>>,
        sessions: &mut u64,
    ) -> Result<Served> {
        ensure_queue(connection, &self.options.queue, self.options.declare_as)?;
        // Workers stop when this sender is dropped.
        let (worker_stop, worker_stop_rx) = crossbeam_channel::bounded::<()>(0);
        let (ended_tx, ended_rx) = crossbeam_channel::unbounded::<()>();
        let (consuming_tx, consuming_rx) = crossbeam_channel::unbounded();
        let mut workers = Vec::with_capacity(self.options.workers);
        let mut started = Ok(());
        for index in 0..self.options.workers {
            let spawned = connection
                .open_channel(None)
                .and_then(|channel| {
                    channel.qos(0, self.options.prefetch, false)?;
                    Ok(channel)
                })
                .map_err(Error::from)
                .and_then(|channel| {
                    let worker = Worker {
                        channel,
                        queue: self.options.queue.clone(),
                        handler: Arc::clone(&self.handler),
                        stop: worker_stop_rx.clone(),
                        max_reply_bytes: self.options.max_reply_bytes,
                        deadline_grace: self.options.deadline_grace,
                        stats: Arc::clone(&self.stats),
                        redeliveries: Arc::clone(&self.redeliveries),
                        ack_batch: usize::from(self.options.prefetch / 2).max(1),
                    };
                    let (ended_tx, consuming_tx) = (ended_tx.clone(), consuming_tx.clone());
                    std::thread::Builder::new()
                        .name(format!("fib-rpc-worker-{index}"))
                        .spawn(move || {
                            let _ended = EndedSignal(ended_tx);
                            worker.run(consuming_tx)
                        })
                        .map_err(Error::Io)
                });
            match spawned {
                Ok(thread) => workers.push(thread),
                Err(err) => {
                    started = Err(err);
                    break;
                }
            }
        }
        drop(consuming_tx);
        // Each worker reports once it consumes (Ok) or could not (Err).
        for _ in 0..workers.len() {
            match consuming_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(err)) => started = started.and(Err(err)),
                Err(_) => break,
            }
        }
        if let Err(err) = started {
            let failed_at = Instant::now();
            drop(worker_stop);
            join_workers(workers);
            // Workers that did start may have answered something that broke the connection.
            self.redeliveries.lost(failed_at);
            return Err(err);
        }
        log::info!(
            "fib-rpc server: {} workers consuming {:?}",
            workers.len(),
            self.options.queue
        );
        *sessions += 1;
        if *sessions > 1 {
            bump(&self.stats.reconnects);
            log::warn!("fib-rpc server: reconnected to {}", self.brokers.current());
        }
        if let Some(ready) = ready.take() {
            let _ = ready.send(());
        }

        drop(ended_tx);
        select! {
            recv(self.stop) -> _ => {}
            recv(ended_rx) -> _ => {}
        }
        // Before joining: a worker may take a while to finish its request.
        let ended_at = Instant::now();
        drop(worker_stop);
        Ok(match join_workers(workers) {
            None => Served::Stopped,
            Some(seen) => {
                self.redeliveries.lost(ended_at);
                Served::Lost(seen)
            }
        })
    }
}

/// Whether a setup error means the connection went away (rather than the broker refusing
/// something we asked).
fn is_connection_loss(err: &Error) -> bool {
    match err {
        Error::Amqp(err) => {
            is_generic(err) || matches!(err, amiquip::Error::ServerClosedConnection { .. })
        }
        _ => false,
    }
}

/// Which requests were being answered when this server lost its connection or a channel.
///
/// A request comes back once when a server dies holding it. One whose *reply* breaks the
/// connection or channel (RabbitMQ 3.10 answers a malformed direct reply-to address with
/// 541 INTERNAL_ERROR; a reply above the broker's `max_message_size` gets a channel error)
/// comes back every time, since the ack never lands: it would go round forever. So each loss
/// marks the requests whose replies went out in the second before it, and a redelivered
/// request marked [`Self::MAX_LOSSES`] times is acked and dropped unanswered (answering is
/// what breaks). Requests merely waiting in a prefetch window are never marked. Bounded;
/// shared by all workers and connections of a server.
#[derive(Debug, Default)]
struct Redeliveries {
    log: Mutex<RedeliveryLog>,
}

#[derive(Debug, Default)]
struct RedeliveryLog {
    /// Recent replies, oldest first: when they were published, and for which request.
    replied: VecDeque<(Instant, u64)>,
    /// Losses each request was marked for.
    marked: HashMap<u64, u32>,
}

impl Redeliveries {
    const MAX_LOSSES: u32 = 3;
    /// How long before a loss a reply counts as its possible cause.
    const WINDOW: Duration = Duration::from_secs(1);
    const RECENT_REPLIES: usize = 4096;
    const MARKED: usize = 65_536;

    fn lock(&self) -> std::sync::MutexGuard<'_, RedeliveryLog> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes that the reply to `request` is about to be published.
    fn replying(&self, request: u64) {
        let mut log = self.lock();
        if log.replied.len() == Self::RECENT_REPLIES {
            log.replied.pop_front();
        }
        log.replied.push_back((Instant::now(), request));
    }

    /// The connection or a channel was lost at `at`: marks the requests answered just before.
    fn lost(&self, at: Instant) {
        let mut log = self.lock();
        let log = &mut *log;
        if log.marked.len() >= Self::MARKED {
            log.marked.clear();
        }
        let since = at.checked_sub(Self::WINDOW).unwrap_or(at);
        for &(_, request) in log.replied.iter().filter(|(when, _)| *when >= since) {
            *log.marked.entry(request).or_default() += 1;
        }
        log.replied.clear();
    }

    /// True for a request that was being answered at [`Self::MAX_LOSSES`] losses.
    fn is_poison(&self, request: u64) -> bool {
        self.lock()
            .marked
            .get(&request)
            .is_some_and(|losses| *losses >= Self::MAX_LOSSES)
    }

    /// What identifies a request across redeliveries.
    fn key(reply_to: &str, correlation_id: Option<&str>, body: &[u8]) -> u64 {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (reply_to, correlation_id, body).hash(&mut hasher);
        hasher.finish()
    }
}

/// Tells the supervisor that a worker ended, however it ended (a panic included), by sending
/// when dropped.
struct EndedSignal(Sender<()>);

impl Drop for EndedSignal {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

/// Joins every worker. Returns `None` if all stopped as asked, otherwise `Some` of the first
/// AMQP error any of them saw (`Some(None)` when none gave one).
fn join_workers(workers: Vec<JoinHandle<WorkerEnd>>) -> Option<Option<amiquip::Error>> {
    let mut lost = false;
    let mut first_error = None;
    for worker in workers {
        match worker.join() {
            Ok(WorkerEnd::Stopped) => {}
            Ok(WorkerEnd::Lost(err)) => {
                lost = true;
                first_error = first_error.or(err);
            }
            Err(_) => {
                log::error!("fib-rpc server: a worker thread panicked");
                lost = true;
            }
        }
    }
    lost.then_some(first_error)
}

/// Uses the queue if it exists, whatever its kind and arguments; declares it only if absent.
///
/// A passive declare of a missing queue closes the channel (404), so each attempt gets its own
/// channel. Two servers may race to declare; the loser's 406 (exists with other arguments) is
/// fine because the queue now exists.
fn ensure_queue(connection: &mut Connection, queue: &str, kind: QueueKind) -> Result<()> {
    const NOT_FOUND: u16 = 404;
    const PRECONDITION_FAILED: u16 = 406;
    let probe = connection.open_channel(None)?;
    match probe.queue_declare_passive(queue) {
        Ok(_) => {
            let _ = probe.close();
            return Ok(());
        }
        Err(amiquip::Error::ServerClosedChannel {
            code: NOT_FOUND, ..
        }) => {}
        Err(err) => return Err(err.into()),
    }
    let declare = connection.open_channel(None)?;
    let options = match kind {
        QueueKind::Classic => QueueDeclareOptions::default(),
        QueueKind::DurableQuorum => {
            let mut arguments = FieldTable::default();
            arguments.insert(
                "x-queue-type".into(),
                AmqpValue::LongString("quorum".into()),
            );
            QueueDeclareOptions {
                durable: true,
                arguments,
                ..QueueDeclareOptions::default()
            }
        }
    };
    match declare.queue_declare(queue, options) {
        Ok(_) => {
            log::info!("fib-rpc server: declared {kind:?} queue {queue:?}");
            let _ = declare.close();
            Ok(())
        }
        Err(amiquip::Error::ServerClosedChannel {
            code: PRECONDITION_FAILED,
            ..
        }) => {
            // Another process declared it first, with other arguments; make sure it exists.
            connection
                .open_channel(None)?
                .queue_declare_passive(queue)?;
            Ok(())
        }
        Err(err) => Err(err.into()),
    }
}

/// One worker: its own channel and consumer.
struct Worker<H> {
    channel: Channel,
    queue: String,
    handler: Arc<H>,
    stop: Receiver<()>,
    max_reply_bytes: usize,
    deadline_grace: Duration,
    stats: Arc<ServerCounters>,
    redeliveries: Arc<Redeliveries>,
    /// Most requests answered before one ack covers them all; see [`Acks`].
    ack_batch: usize,
}

/// Requests answered but not yet acked, acked together with one `basic.ack` (`multiple`).
///
/// A worker defers an ack only while its next request is already waiting in its prefetch
/// buffer, and for at most `ack_batch` requests: under load that saves the broker most ack
/// frames, and an idle worker has acked everything. An answered request not yet acked when the
/// connection dies comes back once more; the client drops the second answer, as after any
/// loss.
///
/// No ack is deferred across a redelivered request: the acks pending are sent before it is
/// answered, and its own right after. A redelivered request may be one whose reply breaks the
/// connection (see [`Redeliveries`]); were the acks of the requests answered before it still
/// pending, they would come back with it at every loss, be marked with it, and be dropped as
/// poison with it.
struct Acks {
    /// The latest answered request: acking it with `multiple` acks every one before it.
    last: Option<Delivery>,
    deferred: usize,
    /// Most requests one ack may cover.
    batch: usize,
}

impl Acks {
    fn new(batch: usize) -> Self {
        Acks {
            last: None,
            deferred: 0,
            batch,
        }
    }

    /// Files an answered request; acks it and those before it unless more are waiting.
    fn add(&mut self, consumer: &Consumer<'_>, delivery: Delivery) -> amiquip::Result<()> {
        let redelivered = delivery.redelivered;
        self.last = Some(delivery);
        self.deferred += 1;
        if redelivered || self.deferred >= self.batch || consumer.receiver().is_empty() {
            self.flush(consumer)?;
        }
        Ok(())
    }

    fn flush(&mut self, consumer: &Consumer<'_>) -> amiquip::Result<()> {
        self.deferred = 0;
        match self.last.take() {
            Some(last) => consumer.ack_multiple(last),
            None => Ok(()),
        }
    }
}

impl<H: Handler> Worker<H> {
    fn run(self, consuming: Sender<Result<()>>) -> WorkerEnd {
        let consumer = match self
            .channel
            .basic_consume(self.queue.as_str(), ConsumerOptions::default())
        {
            Ok(consumer) => consumer,
            Err(err) => {
                let _ = consuming.send(Err(err.into()));
                return WorkerEnd::Stopped;
            }
        };
        let _ = consuming.send(Ok(()));
        let end = self.serve(&consumer);
        drop(consumer);
        if matches!(end, WorkerEnd::Stopped) {
            let _ = self.channel.close();
        }
        end
    }

    fn serve(&self, consumer: &Consumer<'_>) -> WorkerEnd {
        let mut acks = Acks::new(self.ack_batch);
        loop {
            let message = select! {
                recv(self.stop) -> _ => return self.drain(consumer, acks),
                recv(consumer.receiver()) -> message => message,
            };
            match message {
                Ok(ConsumerMessage::Delivery(delivery)) => {
                    if let Err(err) = self.serve_one(consumer, delivery, &mut acks) {
                        return WorkerEnd::Lost(Some(err));
                    }
                }
                Ok(ConsumerMessage::ServerCancelled) => {
                    // The channel still works: ack what was answered, or it comes back if the
                    // queue survives (usually it was deleted).
                    let _ = acks.flush(consumer);
                    return ended(Ok(ConsumerMessage::ServerCancelled));
                }
                other => return ended(other),
            }
        }
    }

    /// Graceful stop: cancel the consumer, then answer what the broker had already sent us
    /// (at most the prefetch window). amiquip queues `ClientCancelled` behind those deliveries.
    fn drain(&self, consumer: &Consumer<'_>, mut acks: Acks) -> WorkerEnd {
        if let Err(err) = acks.flush(consumer).and_then(|()| consumer.cancel()) {
            return WorkerEnd::Lost(Some(err));
        }
        loop {
            match consumer.receiver().recv() {
                Ok(ConsumerMessage::Delivery(delivery)) => {
                    if let Err(err) = self.serve_one(consumer, delivery, &mut acks) {
                        return WorkerEnd::Lost(Some(err));
                    }
                }
                Ok(ConsumerMessage::ClientCancelled) => {
                    return match acks.flush(consumer) {
                        Ok(()) => WorkerEnd::Stopped,
                        Err(err) => WorkerEnd::Lost(Some(err)),
                    };
                }
                other => return ended(other),
            }
        }
    }

    /// Runs the handler, publishes the reply, and only then acks: a server that dies before
    /// the ack leaves the request to be redelivered to another server (at least once; the
    /// client drops a second answer).
    ///
    /// Dropped unanswered, but acked: requests without `reply_to` (nowhere to answer) and
    /// requests whose caller's deadline ([`DEADLINE_HEADER`](crate::wire::DEADLINE_HEADER))
    /// has passed, and requests that keep coming back (see [`Redeliveries`]).
    fn serve_one(
        &self,
        consumer: &Consumer<'_>,
        delivery: Delivery,
        acks: &mut Acks,
    ) -> amiquip::Result<()> {
        if delivery.redelivered {
            acks.flush(consumer)?; // see `Acks`
        }
        let mut ack = |delivery| acks.add(consumer, delivery);
        bump(&self.stats.received);
        let properties = &delivery.properties;
        let Some(reply_to) = properties.reply_to().clone() else {
            bump(&self.stats.no_reply_to);
            log::warn!(
                "fib-rpc server: request without reply_to dropped (correlation_id {:?}, body {})",
                properties.correlation_id(),
                wire::preview(&delivery.body)
            );
            return ack(delivery);
        };
        let late = wire::past_deadline(properties.headers().as_ref(), SystemTime::now());
        if let Some(late) = late.filter(|late| *late > self.deadline_grace) {
            let expired = self.stats.expired.fetch_add(1, Ordering::Relaxed) + 1;
            // Far later than any queue or prefetch delay: more likely the clocks disagree.
            // Said at the 1st, 2nd, 4th, 8th... such drop, so it is seen but cannot flood.
            let level = if late > Duration::from_secs(60) && expired.is_power_of_two() {
                log::Level::Warn
            } else {
                log::Level::Debug
            };
            log::log!(
                level,
                "fib-rpc server: request {} dropped unread: its caller's deadline passed \
                 {:.3} s ago (if that looks wrong, check the clocks: see deadline_grace)",
                wire::preview(&delivery.body),
                late.as_secs_f64()
            );
            return ack(delivery);
        }
        let correlation_id = properties.correlation_id().clone();
        let key = Redeliveries::key(&reply_to, correlation_id.as_deref(), &delivery.body);
        if delivery.redelivered && self.redeliveries.is_poison(key) {
            bump(&self.stats.poison);
            log::error!(
                "fib-rpc server: request {} (reply_to {reply_to:?}) dropped: the connection or \
                 channel was lost {} times while answering it",
                wire::preview(&delivery.body),
                Redeliveries::MAX_LOSSES
            );
            return ack(delivery);
        }
        let (body, error_code) = self.run_handler(&delivery.body);
        let mut properties = AmqpProperties::default();
        if let Some(id) = correlation_id {
            properties = properties.with_correlation_id(id);
        }
        if let Some(code) = &error_code {
            let mut headers = FieldTable::default();
            headers.insert(
                ERROR_HEADER.into(),
                AmqpValue::LongString(code.as_str().into()),
            );
            properties = properties.with_headers(headers);
        }
        self.redeliveries.replying(key);
        self.channel.basic_publish(
            "",
            Publish {
                body: &body,
                routing_key: reply_to,
                mandatory: false,
                immediate: false,
                properties,
            },
        )?;
        bump(&self.stats.replied);
        if error_code.is_some() {
            bump(&self.stats.error_replies);
        }
        ack(delivery)
    }

    /// The reply body, and an error code for error replies. Oversized replies and panics
    /// become `internal` error replies.
    fn run_handler(&self, request: &[u8]) -> (Vec<u8>, Option<ErrorCode>) {
        let outcome = catch_unwind(AssertUnwindSafe(|| self.handler.handle(request)));
        match outcome {
            Ok(Ok(reply)) if reply.len() > self.max_reply_bytes => {
                log::error!(
                    "fib-rpc server: reply of {} bytes to {} is above the limit of {} bytes",
                    reply.len(),
                    wire::preview(request),
                    self.max_reply_bytes
                );
                let message = format!(
                    "the reply ({} bytes) is above this server's limit of {} bytes",
                    reply.len(),
                    self.max_reply_bytes
                );
                (self.fit(message.into_bytes()), Some(ErrorCode::Internal))
            }
            Ok(Ok(reply)) => (reply, None),
            Ok(Err(refusal)) => (self.fit(refusal.message.into_bytes()), Some(refusal.code)),
            Err(panic) => {
                let what = panic_message(panic.as_ref());
                log::error!(
                    "fib-rpc server: handler panicked on {}: {what}",
                    wire::preview(request)
                );
                let message = format!("the handler failed: {what}");
                (self.fit(message.into_bytes()), Some(ErrorCode::Internal))
            }
        }
    }
}

impl<H> Worker<H> {
    /// Cuts an error message to the reply limit, so an error reply can never be the message
    /// that breaks the channel.
    fn fit(&self, mut message: Vec<u8>) -> Vec<u8> {
        message.truncate(self.max_reply_bytes);
        message
    }
}

/// Maps a consumer's end-of-stream to why the worker ended.
fn ended(message: std::result::Result<ConsumerMessage, crossbeam_channel::RecvError>) -> WorkerEnd {
    match message {
        Ok(ConsumerMessage::ServerClosedConnection(err))
        | Ok(ConsumerMessage::ServerClosedChannel(err)) => WorkerEnd::Lost(Some(err)),
        Ok(ConsumerMessage::ServerCancelled) => {
            log::error!("fib-rpc server: the broker cancelled our consumer (queue deleted?)");
            WorkerEnd::Lost(None)
        }
        Ok(_) => WorkerEnd::Stopped,
        // The connection's I/O thread ended: the socket died.
        Err(_) => WorkerEnd::Lost(None),
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "panic with a non-text payload".to_owned()
    }
}
