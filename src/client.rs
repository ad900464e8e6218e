//! The calling side: a byte-level [`RpcClient`] and the typed [`FibonacciRpcClient`] on top.
//!
//! # How a call travels
//!
//! amiquip's channel and consumer cannot be shared between threads, so one **reader thread**
//! (`fib-rpc-client`) owns the connection, the channel, the reply consumer (of an exclusive
//! reply queue, or of direct reply-to: see [`ReplyTo`]) and the listener for returned
//! (unroutable) messages. A caller:
//!
//! 1. makes a fresh `correlation_id` (a UUID v4, never repeated within the client) and a
//!    one-slot reply channel,
//! 2. hands `(correlation_id, body, deadline, reply sender)` to the reader over a crossbeam
//!    channel; the reader publishes the request and files the sender under the id,
//! 3. waits on its reply channel until its deadline.
//!
//! The reader matches each reply by `correlation_id` and hands it to exactly that caller.
//! Replies nobody waits for (unknown ids, duplicates, answers after a timeout) are dropped and
//! counted in [`ClientStats::discarded_replies`].
//!
//! # When the connection drops
//!
//! Calls already published fail at once with [`Error::ConnectionLost`]: the server may or may
//! not have run them. The reader then reconnects, trying each broker URL in turn with capped,
//! jittered exponential backoff between rounds, and sets up a new reply consumer (and reply
//! queue) **before** it publishes anything on the new connection. Calls made meanwhile wait
//! for it within their own deadlines; one whose deadline passes first fails with
//! [`Error::NotConnected`] and was never sent.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use amiquip::{
    AmqpProperties, AmqpValue, Channel, Connection, Consumer, ConsumerMessage, ConsumerOptions,
    Delivery, FieldTable, Publish, QueueDeclareOptions, Return,
};
use crossbeam_channel::{select, Receiver, RecvTimeoutError, Sender, TryRecvError};
use num_bigint::BigUint;
use uuid::Uuid;

use crate::broker::{check_settings, deadline_after, is_generic, ConnectSettings};
use crate::error::{Error, Result};
use crate::reconnect::{Backoff, BackoffSettings, Brokers};
use crate::util::{bump, cancel_consumer, is_disconnected};
use crate::wire::{self, DEADLINE_HEADER, DEFAULT_QUEUE};

/// How often the reader thread forgets calls whose callers have stopped waiting.
const SWEEP_INTERVAL: Duration = Duration::from_millis(500);

/// How long the reader waits for amiquip to confirm that the reply consumer is cancelled,
/// after the broker already has (microseconds in practice; the bound is for a dying I/O thread).
const CONSUMER_CANCEL_WAIT: Duration = Duration::from_secs(1);

/// Settings for [`RpcClient`] and [`FibonacciRpcClient`].
///
/// ```
/// use fib_rpc::ClientOptions;
/// use std::time::Duration;
///
/// let options = ClientOptions::default()
///     .queue("fib_requests")
///     .timeout(Duration::from_secs(5))
///     .heartbeat(5)
///     .reconnect_backoff(Duration::from_millis(50), Duration::from_secs(2));
/// ```
#[derive(Debug, Clone)]
pub struct ClientOptions {
    queue: String,
    timeout: Duration,
    connect: ConnectSettings,
    backoff: BackoffSettings,
    lazy_connect: bool,
    max_request_bytes: usize,
    reply_to: ReplyTo,
}

/// Where a client receives its replies; see [`ClientOptions::reply_to`].
///
/// ```
/// use fib_rpc::{ClientOptions, ReplyTo};
///
/// let options = ClientOptions::default().reply_to(ReplyTo::Direct);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ReplyTo {
    /// An exclusive, server-named queue declared on each connection, as in the tutorial.
    /// The broker deletes it when the connection closes.
    #[default]
    ExclusiveQueue,
    /// RabbitMQ's direct reply-to (`amq.rabbitmq.reply-to`): replies go straight to this
    /// client's channel without a queue, so nothing is declared or deleted per connection.
    /// RabbitMQ-only; a reply to a client that has gone is dropped by the broker.
    Direct,
}

/// The pseudo-queue a client consumes (no-ack) to use direct reply-to.
pub(crate) const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";

impl Default for ClientOptions {
    /// The tutorial's queue (`rpc_queue`), a 30 s call timeout, a 10 s connect timeout, 15 s
    /// heartbeats, reconnection backoff from 100 ms doubling up to 5 s, connecting before
    /// `connect` returns, and requests of at most 16 MiB.
    fn default() -> Self {
        ClientOptions {
            queue: DEFAULT_QUEUE.to_owned(),
            timeout: Duration::from_secs(30),
            connect: ConnectSettings::named("fib-rpc client"),
            backoff: BackoffSettings::default(),
            lazy_connect: false,
            max_request_bytes: 16 << 20,
            reply_to: ReplyTo::default(),
        }
    }
}

impl ClientOptions {
    /// The server queue requests are routed to (default `rpc_queue`).
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = queue.into();
        self
    }

    /// How long [`RpcClient::call`] waits for a reply (default 30 s). Per-call deadlines are
    /// available through [`RpcClient::call_deadline`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Bound on each connection attempt (TCP and AMQP handshake) and on closing (default
    /// 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect.timeout = timeout;
        self
    }

    /// AMQP heartbeat interval in seconds (default 15, at least 1). A silently dead TCP path
    /// is noticed after about two intervals; the client then reconnects.
    pub fn heartbeat(mut self, seconds: u16) -> Self {
        self.connect.heartbeat_secs = seconds;
        self
    }

    /// Wait between reconnection rounds: `initial` after the first failure, doubling up to
    /// `max`, each wait jittered between half and all of its step (default 100 ms to 5 s).
    /// A round tries every broker URL once.
    pub fn reconnect_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff = BackoffSettings { initial, max };
        self
    }

    /// When `true`, [`RpcClient::connect`] returns at once and the client connects in the
    /// background, retrying with backoff; calls wait for the connection within their
    /// deadlines. For services that may start before the broker. Default `false`: `connect`
    /// returns [`Error::Connect`] when no broker can be reached on the first round, which
    /// is what a script or a misconfigured URL wants to hear.
    pub fn lazy_connect(mut self, lazy: bool) -> Self {
        self.lazy_connect = lazy;
        self
    }

    /// Name shown for the connection in RabbitMQ's tools (the `information` client property).
    pub fn connection_name(mut self, name: impl Into<String>) -> Self {
        self.connect.name = name.into();
        self
    }

    /// Largest request body a call may send (default 16 MiB). Larger calls fail with
    /// [`Error::InvalidArgument`] before anything is sent: a message above the broker's
    /// `max_message_size` would make it close the channel that every caller shares.
    pub fn max_request_bytes(mut self, bytes: usize) -> Self {
        self.max_request_bytes = bytes;
        self
    }

    /// Where replies come back (default [`ReplyTo::ExclusiveQueue`]). Both work with any
    /// tutorial-style server.
    pub fn reply_to(mut self, reply_to: ReplyTo) -> Self {
        self.reply_to = reply_to;
        self
    }
}

/// A snapshot of a client's counters, from [`RpcClient::stats`]. Every counter only grows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientStats {
    /// Calls started. A call given up by dropping its [`PendingReply`] unwaited is counted
    /// here and in no outcome below.
    pub calls: u64,
    /// Calls that returned a reply.
    pub ok: u64,
    /// Calls answered with an error reply.
    pub remote_errors: u64,
    /// Calls that were sent but got no reply by their deadline.
    pub timeouts: u64,
    /// Calls the broker returned as unroutable (no server queue).
    pub no_server: u64,
    /// Calls that failed because the connection dropped while they were pending (outcome
    /// unknown) or because the client was closed.
    pub connection_lost: u64,
    /// Calls never sent because the client was reconnecting until their deadline.
    pub not_connected: u64,
    /// Calls that failed otherwise (invalid reply, invalid argument).
    pub other_errors: u64,
    /// Replies that matched no waiting call (late after a timeout, unknown id, or a
    /// duplicate) and were dropped.
    pub discarded_replies: u64,
    /// Requests the broker returned as unroutable (`basic.return`), whether or not their
    /// caller still waited.
    pub returns: u64,
    /// Times the client connected again after losing its connection.
    pub reconnects: u64,
}

#[derive(Default)]
struct Counters {
    calls: AtomicU64,
    ok: AtomicU64,
    remote_errors: AtomicU64,
    timeouts: AtomicU64,
    no_server: AtomicU64,
    connection_lost: AtomicU64,
    not_connected: AtomicU64,
    other_errors: AtomicU64,
    discarded_replies: AtomicU64,
    returns: AtomicU64,
    reconnects: AtomicU64,
}

impl Counters {
    fn record<T>(&self, result: &Result<T>) {
        match result {
            Ok(_) => bump(&self.ok),
            Err(err) => self.record_error(err),
        }
    }

    fn record_error(&self, err: &Error) {
        bump(match err {
            Error::Remote(_) => &self.remote_errors,
            Error::Timeout { .. } => &self.timeouts,
            Error::NoServer { .. } => &self.no_server,
            Error::ConnectionLost { .. } | Error::Closed => &self.connection_lost,
            Error::NotConnected { .. } => &self.not_connected,
            _ => &self.other_errors,
        });
    }

    fn snapshot(&self) -> ClientStats {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        ClientStats {
            calls: get(&self.calls),
            ok: get(&self.ok),
            remote_errors: get(&self.remote_errors),
            timeouts: get(&self.timeouts),
            no_server: get(&self.no_server),
            connection_lost: get(&self.connection_lost),
            not_connected: get(&self.not_connected),
            other_errors: get(&self.other_errors),
            discarded_replies: get(&self.discarded_replies),
            returns: get(&self.returns),
            reconnects: get(&self.reconnects),
        }
    }
}

/// State shared by callers and the reader thread.
struct Shared {
    counters: Counters,
    /// True while a session (connection, reply consumer) is up.
    connected: AtomicBool,
    /// Why the last connection attempt failed or the last connection ended; given to calls
    /// that time out unsent.
    last_error: Mutex<Option<Arc<Error>>>,
}

impl Shared {
    fn set_disconnected(&self, why: Error) {
        self.connected.store(false, Ordering::SeqCst);
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(why));
    }

    fn set_connected(&self) {
        self.connected.store(true, Ordering::SeqCst);
    }

    fn last_error(&self) -> Option<Arc<Error>> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

type ReplySender = Sender<Result<Vec<u8>>>;

/// What callers ask of the reader thread.
enum Command {
    Call(OutgoingCall),
    Shutdown,
}

/// Where a call stands, decided once by whichever of caller and reader gets there first, so
/// a caller that gives up can say truthfully whether its request was sent.
const QUEUED: u8 = 0;
const SENT: u8 = 1;
const ABANDONED: u8 = 2;

struct OutgoingCall {
    correlation_id: String,
    body: Vec<u8>,
    deadline: Instant,
    reply: ReplySender,
    /// [`QUEUED`] until the reader publishes it ([`SENT`]) or the caller gives up first
    /// ([`ABANDONED`]). A caller that gives up later also sets [`ABANDONED`], so a call whose
    /// publish failed is not put back for the next connection.
    state: Arc<AtomicU8>,
}

impl OutgoingCall {
    /// Claims the call for publishing; false if its caller has already given up.
    fn claim(&self) -> bool {
        self.state
            .compare_exchange(QUEUED, SENT, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// Still worth sending: the caller waits and its deadline has not passed.
    fn is_live(&self, now: Instant) -> bool {
        self.deadline > now && self.state.load(Ordering::SeqCst) == QUEUED
    }
}

/// A call the reader has published and is waiting to answer.
struct PendingCall {
    deadline: Instant,
    reply: ReplySender,
}

/// The reader thread, joined on close.
struct ReaderHandle {
    thread: JoinHandle<()>,
    /// Disconnects when the thread ends, so joining can be bounded.
    finished: Receiver<()>,
}

impl ReaderHandle {
    /// Joins the thread if it ends within `bound`; otherwise leaves it to end on its own (it
    /// is stuck in an AMQP operation that heartbeats will end) and says so.
    fn join_within(self, bound: Duration) {
        match self.finished.recv_timeout(bound) {
            Err(RecvTimeoutError::Disconnected) => {
                let _ = self.thread.join();
            }
            _ => log::warn!(
                "fib-rpc client: reader thread did not stop within {bound:?}; \
                 it will end when the broker answers or heartbeats time out"
            ),
        }
    }
}

/// A byte-level RPC client: sends a request body to the server queue and returns the reply
/// body. Share one client between threads (`&RpcClient` or `Arc<RpcClient>`); it is
/// `Send + Sync`.
///
/// ```no_run
/// use fib_rpc::{ClientOptions, RpcClient};
///
/// let client = RpcClient::connect(
///     "amqp://guest:guest@localhost:5672/%2f",
///     ClientOptions::default().queue("echo"),
/// )?;
/// let reply: Vec<u8> = client.call(b"hello")?;
/// # Ok::<(), fib_rpc::Error>(())
/// ```
pub struct RpcClient {
    commands: Sender<Command>,
    shared: Arc<Shared>,
    /// Disconnects when the reader thread ends: wakes callers whose request it never saw.
    reader_finished: Receiver<()>,
    /// Disconnects when `close()` starts: new calls fail at once, and waiting callers wake
    /// even if the reader is stuck.
    closed: Receiver<()>,
    close_signal: Mutex<Option<Sender<()>>>,
    reader: Mutex<Option<ReaderHandle>>,
    options: ClientOptions,
    ids: CorrelationIds,
}

/// Makes each call's `correlation_id`: a UUID v4 whose first half is random per client and
/// whose second half counts the client's calls. So an id never repeats within a client (a
/// late reply can never be taken for a newer call's), and a call costs no system call for
/// fresh randomness.
struct CorrelationIds {
    client: [u8; 8],
    calls: AtomicU64,
}

impl CorrelationIds {
    fn new() -> Self {
        let random = Uuid::new_v4().into_bytes();
        let mut client = [0; 8];
        client.copy_from_slice(&random[..8]);
        CorrelationIds {
            client,
            calls: AtomicU64::new(0),
        }
    }

    fn next(&self) -> String {
        let call = self.calls.fetch_add(1, Ordering::Relaxed);
        let mut bytes = [0; 16];
        bytes[..8].copy_from_slice(&self.client);
        bytes[8..].copy_from_slice(&call.to_be_bytes());
        // Sets the version bits (4 of the random half, leaving 60) and the variant bits (the
        // count's top two, which would take 2^62 calls to reach).
        uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .to_string()
    }
}

impl std::fmt::Debug for RpcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcClient")
            .field("queue", &self.options.queue)
            .field("stats", &self.stats())
            .finish()
    }
}

impl RpcClient {
    /// Connects to the broker at `url` (`amqp://user:password@host:port/vhost`), sets up the
    /// reply consumer (see [`ClientOptions::reply_to`]) and starts the reader thread. Fails
    /// with [`Error::Connect`] when the broker cannot be reached within the connect timeout
    /// (unless [`ClientOptions::lazy_connect`]). Once connected, the client reconnects by
    /// itself.
    pub fn connect(url: &str, options: ClientOptions) -> Result<RpcClient> {
        Self::connect_failover(&[url], options)
    }

    /// Like [`connect`](Self::connect), with several brokers (for example the nodes of a
    /// cluster): each is tried in turn, first on connecting and again whenever the connection
    /// is lost, starting with the one that worked last.
    ///
    /// ```no_run
    /// use fib_rpc::{ClientOptions, RpcClient};
    ///
    /// let client = RpcClient::connect_failover(
    ///     &["amqp://app:secret@rabbit-1/%2f", "amqp://app:secret@rabbit-2/%2f"],
    ///     ClientOptions::default(),
    /// )?;
    /// # Ok::<(), fib_rpc::Error>(())
    /// ```
    pub fn connect_failover<S: AsRef<str>>(
        urls: &[S],
        options: ClientOptions,
    ) -> Result<RpcClient> {
        let brokers = Brokers::parse(urls)?;
        let settings = options.connect.clone();
        check_settings(&settings)?;
        options.backoff.check()?;
        if options.timeout.is_zero() {
            return Err(Error::InvalidArgument(
                "call timeout must be above zero".into(),
            ));
        }
        wire::check_queue_name(&options.queue)?;
        let first_broker = brokers.current().to_string(); // redacted
        let shared = Arc::new(Shared {
            counters: Counters::default(),
            connected: AtomicBool::new(false),
            last_error: Mutex::new(None),
        });
        let (commands, command_rx) = crossbeam_channel::unbounded();
        let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
        let (finished_tx, finished) = crossbeam_channel::bounded::<()>(0);
        let (close_signal, closed) = crossbeam_channel::bounded::<()>(0);
        let reader = Reader {
            brokers,
            settings,
            backoff: Backoff::from_settings(options.backoff),
            lazy: options.lazy_connect,
            queue: options.queue.clone(),
            reply_to: options.reply_to,
            commands: command_rx,
            closed: closed.clone(),
            shared: Arc::clone(&shared),
            pending: HashMap::new(),
            waiting: VecDeque::new(),
            sessions: 0,
        };
        let thread = std::thread::Builder::new()
            .name("fib-rpc-client".into())
            .spawn(move || {
                let _finished = finished_tx; // dropped when this thread ends
                let _disconnected = DisconnectedOnExit(Arc::clone(&reader.shared));
                reader.run(ready_tx);
            })
            .map_err(Error::Io)?;
        let handle = ReaderHandle {
            thread,
            finished: finished.clone(),
        };

        // Setup is a round of connection attempts (each bounded by connect_timeout) plus
        // three quick AMQP round trips. Lazy clients report ready at once.
        let setup_bound = options
            .connect
            .timeout
            .saturating_mul(u32::try_from(urls.len()).unwrap_or(u32::MAX))
            .saturating_add(Duration::from_secs(5));
        match ready_rx.recv_timeout(setup_bound) {
            Ok(Ok(())) => Ok(RpcClient {
                commands,
                shared,
                reader_finished: finished,
                closed,
                close_signal: Mutex::new(Some(close_signal)),
                reader: Mutex::new(Some(handle)),
                options,
                ids: CorrelationIds::new(),
            }),
            Ok(Err(err)) => {
                handle.join_within(options.connect.timeout);
                Err(err)
            }
            Err(_) => {
                // The broker accepted us but stalls: stop waiting; the thread ends on its own.
                drop(close_signal);
                let _ = commands.send(Command::Shutdown);
                Err(Error::Connect {
                    broker: first_broker,
                    source: format!("broker did not finish setup within {setup_bound:?}").into(),
                })
            }
        }
    }

    /// Sends `body` and waits for the reply, up to the configured timeout.
    pub fn call(&self, body: &[u8]) -> Result<Vec<u8>> {
        self.call_timeout(body, self.options.timeout)
    }

    /// Sends `body` and waits for the reply, up to `timeout`.
    pub fn call_timeout(&self, body: &[u8], timeout: Duration) -> Result<Vec<u8>> {
        self.call_deadline(body, deadline_after(timeout))
    }

    /// Sends `body` and waits for the reply until `deadline`.
    ///
    /// Ends with the reply, [`Error::Remote`] for an error reply, [`Error::Timeout`] at the
    /// deadline, [`Error::NoServer`] at once if no queue has the configured name, or
    /// [`Error::ConnectionLost`] at once if the connection dies meanwhile.
    pub fn call_deadline(&self, body: &[u8], deadline: Instant) -> Result<Vec<u8>> {
        self.send(body, deadline)?.wait()
    }

    /// Sends `body` without waiting for the reply, so one thread can keep many calls in flight
    /// (pipelining). [`PendingReply::wait`] collects the reply; it ends as
    /// [`call_deadline`](Self::call_deadline) describes.
    ///
    /// Fails at once, without sending, when the client is closed or the request is too large.
    ///
    /// ```no_run
    /// use fib_rpc::{ClientOptions, RpcClient};
    /// use std::time::{Duration, Instant};
    ///
    /// let client = RpcClient::connect("amqp://guest:guest@localhost:5672/%2f", ClientOptions::default())?;
    /// let deadline = Instant::now() + Duration::from_secs(5);
    /// // Send all three before waiting for any: they are computed concurrently.
    /// let pending: Vec<_> = [b"10", b"20", b"30"]
    ///     .iter()
    ///     .map(|body| client.send(*body, deadline))
    ///     .collect::<Result<_, _>>()?;
    /// for reply in pending {
    ///     println!("{}", String::from_utf8_lossy(&reply.wait()?));
    /// }
    /// # Ok::<(), fib_rpc::Error>(())
    /// ```
    pub fn send(&self, body: &[u8], deadline: Instant) -> Result<PendingReply<'_>> {
        let counters = &self.shared.counters;
        counters.calls.fetch_add(1, Ordering::Relaxed);
        let sent = self.send_inner(body, deadline);
        if let Err(err) = &sent {
            counters.record_error(err);
        }
        sent
    }

    fn send_inner(&self, body: &[u8], deadline: Instant) -> Result<PendingReply<'_>> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        if body.len() > self.options.max_request_bytes {
            return Err(Error::InvalidArgument(format!(
                "request of {} bytes is above the client's limit of {} bytes",
                body.len(),
                self.options.max_request_bytes
            )));
        }
        let started = Instant::now();
        if deadline <= started {
            return Err(Error::Timeout {
                waited: Duration::ZERO,
            });
        }
        // "Forever" is a century: far enough, and safe to add to clocks.
        let deadline = deadline.min(deadline_after(Duration::MAX));
        let (reply, reply_rx) = crossbeam_channel::bounded(1);
        let state = Arc::new(AtomicU8::new(QUEUED));
        let call = OutgoingCall {
            correlation_id: self.ids.next(),
            body: body.to_vec(),
            deadline,
            reply,
            state: Arc::clone(&state),
        };
        if self.commands.send(Command::Call(call)).is_err() {
            return Err(self.gone_error());
        }
        Ok(PendingReply {
            client: self,
            reply: reply_rx,
            state,
            started,
            deadline,
        })
    }

    /// True once `close()` has started.
    fn is_closed(&self) -> bool {
        is_disconnected(&self.closed)
    }

    /// The error for a caller who found the reader thread gone: closed by its owner, or
    /// (which should not happen) ended by a panic.
    fn gone_error(&self) -> Error {
        if self.is_closed() {
            Error::Closed
        } else {
            Error::ConnectionLost { cause: None }
        }
    }

    /// A snapshot of this client's counters; cheap enough to read at any time.
    pub fn stats(&self) -> ClientStats {
        self.shared.counters.snapshot()
    }

    /// True while the client has a working connection; false while it reconnects.
    pub fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::SeqCst)
    }

    /// The server queue this client calls.
    pub fn queue(&self) -> &str {
        &self.options.queue
    }

    /// The default call timeout.
    pub fn timeout(&self) -> Duration {
        self.options.timeout
    }

    /// Closes the connection and stops the reader thread. Calls still waiting fail with
    /// [`Error::Closed`], and so do later ones. Dropping the client does the same.
    ///
    /// Waits at most the connect timeout for the broker to acknowledge the close; if it does
    /// not, the reader thread is left to end on its own (heartbeats bound it) and `close`
    /// returns anyway. If another thread is already closing the client, returns at once.
    pub fn close(&self) {
        self.close_signal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let reader = self.reader.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(reader) = reader {
            let _ = self.commands.send(Command::Shutdown);
            reader.join_within(
                self.options
                    .connect
                    .timeout
                    .saturating_add(Duration::from_secs(1)),
            );
        }
    }
}

impl Drop for RpcClient {
    fn drop(&mut self) {
        self.close();
    }
}

/// A call sent with [`RpcClient::send`] whose reply has not been collected yet.
///
/// Dropping it gives up the call: if the request has not been sent yet (say, the client is
/// reconnecting) it never will be; a reply that still comes is discarded (and counted in
/// [`ClientStats::discarded_replies`]).
#[must_use = "the reply is only read by `wait`"]
pub struct PendingReply<'client> {
    client: &'client RpcClient,
    reply: Receiver<Result<Vec<u8>>>,
    /// Shared with the reader: whether the request was sent.
    state: Arc<AtomicU8>,
    started: Instant,
    deadline: Instant,
}

impl Drop for PendingReply<'_> {
    /// A call given up unwaited is not sent if it has not been yet (say, while reconnecting).
    fn drop(&mut self) {
        self.abandon();
    }
}

impl std::fmt::Debug for PendingReply<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingReply")
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl PendingReply<'_> {
    /// When this call gives up waiting.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Waits for the reply until the call's deadline; see [`RpcClient::call_deadline`].
    pub fn wait(self) -> Result<Vec<u8>> {
        self.wait_and_check(Ok)
    }

    /// Waits for the reply and passes it through `check` before the call is counted, so a
    /// reply the typed client rejects counts as an error, not as ok.
    pub(crate) fn wait_and_check<T>(self, check: impl FnOnce(Vec<u8>) -> Result<T>) -> Result<T> {
        let result = self.wait_inner().and_then(check);
        self.client.shared.counters.record(&result);
        result
    }

    fn wait_inner(&self) -> Result<Vec<u8>> {
        let client = self.client;
        let answer = select! {
            // `Err` here means the reader dropped our call unanswered: expired, or stopping.
            recv(self.reply) -> answer => answer.ok(),
            // The reader ended without seeing our call; it may have answered just before.
            recv(client.reader_finished) -> _ => self.reply.try_recv().ok(),
            // Closed by its owner: stop waiting, whatever the reader is doing (and make sure it
            // does not send the request later).
            recv(client.closed) -> _ => Some(self.reply.try_recv().unwrap_or_else(|_| {
                self.abandon();
                Err(Error::Closed)
            })),
            // A reply that lands exactly at the deadline still counts.
            default(self.deadline.saturating_duration_since(Instant::now())) => {
                self.reply.try_recv().ok()
            }
        };
        match answer {
            Some(result) => result,
            None if client.reader_finished.try_recv() == Err(TryRecvError::Disconnected) => {
                Err(client.gone_error())
            }
            None => Err(self.give_up()),
        }
    }

    /// Stops the reader from sending the request if it has not yet; true if it had not.
    /// If it has (or is publishing it right now), marks the call given up all the same, so
    /// a publish that fails does not put it back for the next connection.
    fn abandon(&self) -> bool {
        let swap = |from| {
            self.state
                .compare_exchange(from, ABANDONED, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        };
        swap(QUEUED) || {
            swap(SENT);
            false
        }
    }

    /// The deadline passed without an answer. If the reader has not sent the request yet,
    /// it never will (the claim below stops it), and the caller learns why it was not sent.
    fn give_up(&self) -> Error {
        let waited = self.started.elapsed();
        let unsent = self.abandon();
        let shared = &self.client.shared;
        if unsent && !shared.connected.load(Ordering::SeqCst) {
            Error::NotConnected {
                waited,
                last_error: shared.last_error(),
            }
        } else {
            Error::Timeout { waited }
        }
    }
}

/// The reader thread's state. It alone touches the AMQP connection.
struct Reader {
    brokers: Brokers,
    settings: ConnectSettings,
    backoff: Backoff,
    /// Report ready before the first connection (see [`ClientOptions::lazy_connect`]).
    lazy: bool,
    queue: String,
    reply_to: ReplyTo,
    commands: Receiver<Command>,
    /// Disconnects when the owner starts closing the client.
    closed: Receiver<()>,
    shared: Arc<Shared>,
    /// Published calls by `correlation_id`.
    pending: HashMap<String, PendingCall>,
    /// Calls received while disconnected, in order; sent first on the next connection.
    waiting: VecDeque<OutgoingCall>,
    /// Sessions set up so far; every one after the first is a reconnection.
    sessions: u64,
}

/// How a session (one connection's life) ended.
enum SessionEnd {
    /// The owner closed the client.
    Shutdown,
    /// The connection or channel failed, with the AMQP client's error when there is one.
    /// Pending calls have been told when `told` is true.
    Lost {
        cause: Option<Arc<amiquip::Error>>,
        told: bool,
    },
}

impl Reader {
    /// Connects, serves, and reconnects after losses until the client is closed. The first
    /// outcome goes to `ready`: the constructor waits for it (unless lazy).
    fn run(mut self, ready: Sender<Result<()>>) {
        let mut ready = Some(ready);
        if self.lazy {
            let _ = ready.take().map(|ready| ready.send(Ok(())));
        }
        let mut pause = None;
        loop {
            if let Some(delay) = pause.take() {
                if !self.wait_while_disconnected(delay) {
                    break;
                }
            }
            let attempt = self
                .brokers
                .connect_round(&self.settings, || is_disconnected(&self.closed));
            let mut connection = match attempt {
                Ok(connection) if is_disconnected(&self.closed) => {
                    let _ = connection.close();
                    break;
                }
                Ok(connection) => connection,
                Err(err) => {
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(Err(err));
                        return;
                    }
                    if is_disconnected(&self.closed) {
                        break;
                    }
                    log::warn!("fib-rpc client: {err}; retrying");
                    self.shared.set_disconnected(err);
                    pause = Some(self.backoff.next_delay());
                    continue;
                }
            };
            let started = Instant::now();
            let end = match self.run_session(&mut connection, &mut ready) {
                Ok(end) => end,
                Err(err) => {
                    let _ = connection.close();
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(Err(err));
                        return;
                    }
                    log::warn!("fib-rpc client: setting up after reconnecting: {err}; retrying");
                    // This broker accepts connections but cannot serve us: try the next first.
                    self.brokers.skip_current();
                    self.shared.set_disconnected(err);
                    pause = Some(self.backoff.next_delay());
                    continue;
                }
            };
            match end {
                SessionEnd::Shutdown => {
                    if let Err(err) = connection.close() {
                        log::debug!("fib-rpc client: closing the connection: {err}");
                    }
                    break;
                }
                SessionEnd::Lost { cause, told } => {
                    // After a socket failure only closing tells the real cause (quick: the
                    // I/O thread has already ended). After a clean broker close, closing just
                    // tidies up.
                    let closed = connection.close().err().map(Arc::new);
                    let cause = match cause {
                        Some(cause) if !is_generic(&cause) => Some(cause),
                        seen => closed.or(seen),
                    };
                    if !told {
                        self.fail_pending(&cause);
                    }
                    let lost = Error::connection_lost(&cause);
                    log::warn!("fib-rpc client: {lost}; reconnecting");
                    // For calls that time out unsent: a reason, not "outcome unknown".
                    self.shared.set_disconnected(Error::Connect {
                        broker: self.brokers.current().to_string(),
                        source: match &cause {
                            Some(cause) => format!("connection lost: {cause}").into(),
                            None => "connection lost".into(),
                        },
                    });
                    // A connection that lived a while starts the backoff over; one that keeps
                    // dying at once keeps backing off.
                    if started.elapsed() >= self.backoff.max() {
                        self.backoff.reset();
                    }
                    pause = Some(self.backoff.next_delay());
                }
            }
        }
        self.fail_everything();
    }

    /// Between connection attempts: queues calls for the next connection, forgets the ones
    /// whose callers gave up, and returns false as soon as the client is closed.
    fn wait_while_disconnected(&mut self, delay: Duration) -> bool {
        let until = Instant::now() + delay;
        let sweep = crossbeam_channel::tick(SWEEP_INTERVAL);
        loop {
            let now = Instant::now();
            if now >= until {
                return true;
            }
            select! {
                recv(self.commands) -> command => match command {
                    Ok(Command::Call(call)) => self.waiting.push_back(call),
                    Ok(Command::Shutdown) | Err(_) => return false,
                },
                recv(self.closed) -> _ => return false,
                recv(sweep) -> _ => {
                    let now = Instant::now();
                    self.waiting.retain(|call| call.is_live(now));
                }
                default(until - now) => {}
            }
        }
    }

    /// Opens the channel, return listener and reply consumer, and only then sends
    /// the calls that waited for a connection. Serves callers until shutdown or loss.
    fn run_session(
        &mut self,
        connection: &mut Connection,
        ready: &mut Option<Sender<Result<()>>>,
    ) -> Result<SessionEnd> {
        let channel = connection.open_channel(None)?;
        let returns = channel.listen_for_returns()?;
        // Replies are never acked: an unanswered caller gains nothing from a redelivery.
        let no_ack = ConsumerOptions {
            no_ack: true,
            exclusive: true,
            ..ConsumerOptions::default()
        };
        let (consumer, reply_to) = match self.reply_to {
            ReplyTo::ExclusiveQueue => {
                let queue = channel.queue_declare(
                    "",
                    QueueDeclareOptions {
                        exclusive: true,
                        ..QueueDeclareOptions::default()
                    },
                )?;
                (queue.consume(no_ack)?, queue.name().to_owned())
            }
            // Consumed before anything is published on this channel, as the broker requires.
            ReplyTo::Direct => (
                channel.basic_consume(DIRECT_REPLY_TO, no_ack)?,
                DIRECT_REPLY_TO.to_owned(),
            ),
        };

        log::debug!(
            "fib-rpc client: connected to {}; replies come to {reply_to:?}",
            self.brokers.current()
        );
        self.sessions += 1;
        if self.sessions > 1 {
            bump(&self.shared.counters.reconnects);
            log::warn!("fib-rpc client: reconnected to {}", self.brokers.current());
        }
        self.shared.set_connected();
        if let Some(ready) = ready.take() {
            let _ = ready.send(Ok(()));
        }
        let end = self.serve(&channel, &consumer, &returns, &reply_to);
        // Cancelling the consumer and dropping the channel below wait for the broker. When
        // the reason is already known, tell the callers first.
        let end = match end {
            SessionEnd::Shutdown => {
                self.fail_everything();
                SessionEnd::Shutdown
            }
            SessionEnd::Lost { cause, .. } => {
                let told = cause.as_deref().is_some_and(|cause| !is_generic(cause));
                if told {
                    self.fail_pending(&cause);
                }
                SessionEnd::Lost { cause, told }
            }
        };
        // On a lost connection this fails at once; the reason is already known.
        if let Err(err) = cancel_consumer(&consumer, CONSUMER_CANCEL_WAIT) {
            log::debug!("fib-rpc client: cancelling the reply consumer: {err}");
        }
        self.shared.connected.store(false, Ordering::SeqCst);
        Ok(end)
    }

    /// The session's main loop.
    fn serve(
        &mut self,
        channel: &Channel,
        consumer: &Consumer<'_>,
        returns: &Receiver<Return>,
        reply_to: &str,
    ) -> SessionEnd {
        let lost = |cause| SessionEnd::Lost { cause, told: false };
        while let Some(call) = self.waiting.pop_front() {
            if is_disconnected(&self.closed) {
                self.waiting.push_front(call);
                return SessionEnd::Shutdown;
            }
            if let Err(cause) = self.publish(channel, reply_to, call) {
                return lost(self.drain_for_reason(consumer).or(Some(cause)));
            }
        }
        let sweep = crossbeam_channel::tick(SWEEP_INTERVAL);
        loop {
            select! {
                recv(self.commands) -> command => match command {
                    Ok(Command::Call(call)) => {
                        if let Err(cause) = self.publish(channel, reply_to, call) {
                            // Replies already here still reach their callers.
                            return lost(self.drain_for_reason(consumer).or(Some(cause)));
                        }
                    }
                    Ok(Command::Shutdown) | Err(_) => return SessionEnd::Shutdown,
                },
                recv(self.closed) -> _ => return SessionEnd::Shutdown,
                recv(consumer.receiver()) -> message => match message {
                    Ok(ConsumerMessage::Delivery(delivery)) => self.deliver(delivery),
                    Ok(other) => return lost(close_reason(other)),
                    Err(_) => return lost(None),
                },
                recv(returns) -> returned => match returned {
                    Ok(returned) => self.fail_returned(returned),
                    // The channel closed; the consumer holds the reason, behind any replies.
                    Err(_) => return lost(self.drain_for_reason(consumer)),
                },
                recv(sweep) -> _ => self.forget_expired(Instant::now()),
            }
        }
    }

    /// Publishes one request and files its caller, unless the caller has already given up.
    /// If publishing fails (the connection is gone, so nothing left), the call goes back to
    /// the front of `waiting`, unsent, for the next connection.
    ///
    /// The request carries its deadline twice: as `expiration` (the milliseconds the caller
    /// will still wait, capped at ~49 days, the broker's timer range), so the broker drops it
    /// while queued, and as the [`DEADLINE_HEADER`] (Unix time in ms), so a server that
    /// receives it late drops it too, rather than compute an answer nobody reads.
    fn publish(
        &mut self,
        channel: &Channel,
        reply_to: &str,
        call: OutgoingCall,
    ) -> std::result::Result<(), Arc<amiquip::Error>> {
        let remaining = call.deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() || !call.claim() {
            return Ok(()); // the caller has given up; dropping `reply` tells it
        }
        let expiration_ms = remaining.as_millis().clamp(1, u128::from(u32::MAX));
        let mut headers = FieldTable::default();
        let deadline = SystemTime::now().checked_add(remaining);
        if let Some(deadline) = deadline.and_then(wire::unix_millis) {
            headers.insert(DEADLINE_HEADER.into(), AmqpValue::LongLongInt(deadline));
        }
        let properties = AmqpProperties::default()
            .with_reply_to(reply_to.to_owned())
            .with_correlation_id(call.correlation_id.clone())
            .with_expiration(expiration_ms.to_string())
            .with_headers(headers);
        let publish = Publish {
            body: &call.body,
            routing_key: self.queue.clone(),
            mandatory: true,
            immediate: false,
            properties,
        };
        if let Err(err) = channel.basic_publish("", publish) {
            // Unless its caller gave up meanwhile, the call waits for the next connection.
            let unclaimed =
                call.state
                    .compare_exchange(SENT, QUEUED, Ordering::SeqCst, Ordering::SeqCst);
            if unclaimed.is_ok() {
                self.waiting.push_front(call);
            }
            return Err(Arc::new(err));
        }
        self.pending.insert(
            call.correlation_id,
            PendingCall {
                deadline: call.deadline,
                reply: call.reply,
            },
        );
        Ok(())
    }

    /// Hands a reply to the caller waiting for its `correlation_id`, or drops and counts it.
    fn deliver(&mut self, delivery: Delivery) {
        let caller = delivery
            .properties
            .correlation_id()
            .as_deref()
            .and_then(|id| self.pending.remove(id));
        let delivered = match caller {
            // Fails only if the caller stopped waiting (timed out) meanwhile.
            Some(caller) => {
                let reply =
                    wire::decode_reply(delivery.properties.headers().as_ref(), delivery.body);
                caller.reply.send(reply).is_ok()
            }
            None => false,
        };
        if !delivered {
            bump(&self.shared.counters.discarded_replies);
        }
    }

    /// After the channel closed: deliver the replies still buffered and return the broker's
    /// reason for the close, if it gave one.
    fn drain_for_reason(&mut self, consumer: &Consumer<'_>) -> Option<Arc<amiquip::Error>> {
        loop {
            match consumer.receiver().try_recv() {
                Ok(ConsumerMessage::Delivery(delivery)) => self.deliver(delivery),
                Ok(other) => return close_reason(other),
                Err(_) => return None,
            }
        }
    }

    /// The broker returned a mandatory request: no queue is bound to the routing key.
    fn fail_returned(&mut self, returned: Return) {
        bump(&self.shared.counters.returns);
        let caller = returned
            .properties
            .correlation_id()
            .as_deref()
            .and_then(|id| self.pending.remove(id));
        if let Some(caller) = caller {
            let _ = caller.reply.send(Err(Error::NoServer {
                queue: returned.routing_key,
            }));
        }
    }

    /// Drops calls whose callers have timed out, so their entries do not pile up when no reply
    /// ever comes (the broker expired the request).
    fn forget_expired(&mut self, now: Instant) {
        self.pending.retain(|_, call| call.deadline > now);
    }

    /// Fails every published call: their outcome is unknown. Calls not sent yet stay queued
    /// for the next connection.
    fn fail_pending(&mut self, cause: &Option<Arc<amiquip::Error>>) {
        for (_, call) in self.pending.drain() {
            let _ = call.reply.send(Err(Error::connection_lost(cause)));
        }
    }

    /// The client is closing: fails every call, published, waiting or still in the queue.
    fn fail_everything(&mut self) {
        for (_, call) in self.pending.drain() {
            let _ = call.reply.send(Err(Error::Closed));
        }
        for call in self.waiting.drain(..) {
            let _ = call.reply.send(Err(Error::Closed));
        }
        while let Ok(command) = self.commands.try_recv() {
            if let Command::Call(call) = command {
                let _ = call.reply.send(Err(Error::Closed));
            }
        }
    }
}

/// Clears [`Shared::connected`] when the reader thread ends, however it ends (a panic
/// included), so `is_connected` never reports a dead client as healthy.
struct DisconnectedOnExit(Arc<Shared>);

impl Drop for DisconnectedOnExit {
    fn drop(&mut self) {
        self.0.connected.store(false, Ordering::SeqCst);
    }
}

/// The broker's reason for ending a consumer's stream, if the message carries one.
fn close_reason(message: ConsumerMessage) -> Option<Arc<amiquip::Error>> {
    match message {
        ConsumerMessage::ServerClosedConnection(err)
        | ConsumerMessage::ServerClosedChannel(err) => Some(Arc::new(err)),
        ConsumerMessage::ServerCancelled => {
            log::warn!("fib-rpc client: the broker cancelled the reply consumer");
            None
        }
        _ => None,
    }
}

/// The tutorial's `FibonacciRpcClient`, done properly: `call(n)` returns fib(n) exactly.
///
/// It is `Send + Sync`; many threads can call through one client at once.
///
/// ```no_run
/// let client = fib_rpc::FibonacciRpcClient::connect("amqp://guest:guest@localhost:5672/%2f")?;
/// let value: num_bigint::BigUint = client.call(30)?;
/// assert_eq!(value, 832_040u32.into());
/// # Ok::<(), fib_rpc::Error>(())
/// ```
#[derive(Debug)]
pub struct FibonacciRpcClient {
    rpc: RpcClient,
}

impl FibonacciRpcClient {
    /// Connects with the tutorial's defaults: queue `rpc_queue`, and the default options
    /// (30 s call timeout).
    pub fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, ClientOptions::default())
    }

    /// Connects with the given options.
    pub fn connect_with(url: &str, options: ClientOptions) -> Result<Self> {
        Ok(FibonacciRpcClient {
            rpc: RpcClient::connect(url, options)?,
        })
    }

    /// Connects with the given options to the first broker of `urls` that answers, and fails
    /// over between them later; see [`RpcClient::connect_failover`].
    pub fn connect_failover<S: AsRef<str>>(urls: &[S], options: ClientOptions) -> Result<Self> {
        Ok(FibonacciRpcClient {
            rpc: RpcClient::connect_failover(urls, options)?,
        })
    }

    /// Returns fib(`n`), waiting up to the configured timeout.
    pub fn call(&self, n: u64) -> Result<BigUint> {
        self.call_deadline(n, deadline_after(self.rpc.options.timeout))
    }

    /// Returns fib(`n`), waiting until `deadline`.
    pub fn call_deadline(&self, n: u64, deadline: Instant) -> Result<BigUint> {
        self.send(n, deadline)?.wait()
    }

    /// Returns fib(`n`) in decimal as the server sent it, waiting up to the configured timeout.
    /// Cheaper than [`call`](Self::call) for huge `n` when the caller only prints the number.
    pub fn call_decimal(&self, n: u64) -> Result<String> {
        self.call_decimal_deadline(n, deadline_after(self.rpc.options.timeout))
    }

    /// Returns fib(`n`) in decimal as the server sent it, checked to be digits only, waiting
    /// until `deadline`.
    pub fn call_decimal_deadline(&self, n: u64, deadline: Instant) -> Result<String> {
        self.send(n, deadline)?.wait_decimal()
    }

    /// Asks for fib(`n`) without waiting for the answer, so one thread can keep many calls in
    /// flight; see [`RpcClient::send`].
    ///
    /// ```no_run
    /// use std::time::{Duration, Instant};
    ///
    /// let client = fib_rpc::FibonacciRpcClient::connect("amqp://guest:guest@localhost:5672/%2f")?;
    /// let deadline = Instant::now() + Duration::from_secs(5);
    /// let pending = (0..100).map(|n| client.send(n, deadline)).collect::<Result<Vec<_>, _>>()?;
    /// for (n, answer) in pending.into_iter().enumerate() {
    ///     println!("fib({n}) = {}", answer.wait_decimal()?);
    /// }
    /// # Ok::<(), fib_rpc::Error>(())
    /// ```
    pub fn send(&self, n: u64, deadline: Instant) -> Result<PendingFib<'_>> {
        Ok(PendingFib {
            n,
            reply: self.rpc.send(n.to_string().as_bytes(), deadline)?,
        })
    }

    /// The byte-level client underneath, for its stats and options.
    pub fn rpc(&self) -> &RpcClient {
        &self.rpc
    }

    /// Closes the connection; see [`RpcClient::close`].
    pub fn close(&self) {
        self.rpc.close();
    }
}

/// A Fibonacci call sent with [`FibonacciRpcClient::send`] whose answer has not been collected
/// yet.
#[derive(Debug)]
#[must_use = "the answer is only read by `wait` or `wait_decimal`"]
pub struct PendingFib<'client> {
    n: u64,
    reply: PendingReply<'client>,
}

impl PendingFib<'_> {
    /// The `n` this call asked for.
    pub fn n(&self) -> u64 {
        self.n
    }

    /// Waits for fib(`n`) until the call's deadline.
    pub fn wait(self) -> Result<BigUint> {
        let digits = self.wait_decimal()?;
        Ok(BigUint::parse_bytes(digits.as_bytes(), 10).expect("checked to be decimal digits"))
    }

    /// Waits for fib(`n`) in decimal as the server sent it, checked to be digits only.
    pub fn wait_decimal(self) -> Result<String> {
        let n = self.n;
        self.reply
            .wait_and_check(|reply| wire::check_decimal_reply(n, reply))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correlation_ids_are_distinct_uuid_v4s() {
        let ids = CorrelationIds::new();
        let made: Vec<String> = (0..1000).map(|_| ids.next()).collect();
        let distinct: std::collections::HashSet<&String> = made.iter().collect();
        assert_eq!(distinct.len(), made.len());
        for id in &made {
            let parsed = Uuid::parse_str(id).unwrap();
            assert_eq!(parsed.get_version_num(), 4, "{id}");
            assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122, "{id}");
        }
        // Another client's ids differ in their random half.
        assert_ne!(CorrelationIds::new().next()[..18], made[0][..18]);
    }
}
