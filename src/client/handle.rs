//! The client's handle: what callers hold and call through, and the pending reply they wait
//! on.

use crate::wire::TraceParent;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use amiquip::ConsumerMessage;
use crossbeam_channel::{
    select, Receiver, RecvError, RecvTimeoutError, Select, Sender, TryRecvError,
};

use super::call::{CallState, CorrelationIds, GaveUp, OutgoingCall};
use super::options::{CallOptions, ClientOptions, ReplyTo};
use super::outbox::Outbox;
use super::probe::{kick_at, Prober, QueueStatus, Watch};
use super::reader::{Reader, CONFIRM_LINGER};
use super::replies::{deliver, ReplyStream};
use super::stats::{ClientStats, Counters};
use crate::connect::deadline_after;
use crate::error::{BrokerError, BrokerErrorKind, Error, Result};
use crate::reconnect::Brokers;

/// How often a waiting caller looks whether the client is closing or its reader has ended.
/// Closing wakes waiting callers at once through their reply channels when the reader is
/// well; this bounds the wait when it is stuck.
const WATCH_EVERY: Duration = Duration::from_millis(50);

/// State shared by callers and the reader thread.
pub(super) struct Shared {
    pub(super) counters: Arc<Counters>,
    /// True while a session (connection, reply consumer) is up.
    pub(super) connected: AtomicBool,
    /// Why the last connection attempt failed or the last connection ended; given to calls
    /// that time out unsent.
    last_error: Mutex<Option<Arc<Error>>>,
    /// The broker of the current session (password masked), while connected.
    broker: Mutex<Option<String>>,
    /// The current session's number (1 for the first connection), once connected.
    pub(super) session: AtomicU64,
    /// What the client knows of whether a server consumes its queue.
    pub(super) watch: Watch,
    /// Where requests go out, and which are out.
    pub(super) outbox: Outbox,
    /// Who takes replies off the reply consumer.
    pub(super) replies: ReplyStream,
    /// Set when `close()` starts: the same news as the close signal, readable without
    /// touching a channel every waiting caller would share.
    pub(super) closing: AtomicBool,
    /// Set when the reader thread ends, however it ends.
    pub(super) reader_ended: AtomicBool,
}

impl Shared {
    pub(super) fn set_disconnected(&self, why: Error) {
        self.connected.store(false, Ordering::SeqCst);
        *self.broker.lock().unwrap_or_else(|e| e.into_inner()) = None;
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(why));
    }

    pub(super) fn set_connected(&self, broker: String, session: u64) {
        *self.broker.lock().unwrap_or_else(|e| e.into_inner()) = Some(broker);
        self.session.store(session, Ordering::SeqCst);
        self.connected.store(true, Ordering::SeqCst);
    }

    pub(super) fn last_error(&self) -> Option<Arc<Error>> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
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
                "reader thread did not stop within {bound:?}; \
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
/// let client = RpcClient::connect_with(
///     "amqp://guest:guest@localhost:5672/%2f",
///     ClientOptions::default().queue("echo"),
/// )?;
/// let reply: Vec<u8> = client.call(b"hello")?;
/// # Ok::<(), fib_rpc::Error>(())
/// ```
pub struct RpcClient {
    /// Calls for the reader to publish (see `outbox` for which).
    commands: Sender<OutgoingCall>,
    shared: Arc<Shared>,
    /// The one shutdown signal: its receivers (the reader's, the probe's) see it disconnect
    /// when `close()` starts (or the client is dropped). The reader stops, new calls fail at
    /// once, and waiting callers (which read `Shared::closing`) stop even if the reader is
    /// stuck.
    close_signal: Mutex<Option<Sender<()>>>,
    reader: Mutex<Option<ReaderHandle>>,
    options: ClientOptions,
    ids: CorrelationIds,
    /// Asks the broker whether a server consumes the queue (see `probe`).
    prober: Prober,
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
    /// Connects to the broker at `url` (`amqp://user:password@host:port/vhost`) with the
    /// default options: the tutorial's queue `rpc_queue` and a [`DEFAULT_TIMEOUT`] per call.
    /// See [`connect_with`](Self::connect_with).
    ///
    /// [`DEFAULT_TIMEOUT`]: crate::DEFAULT_TIMEOUT
    pub fn connect(url: &str) -> Result<RpcClient> {
        Self::connect_with(url, ClientOptions::default())
    }

    /// Connects to the broker at `url`, sets up the reply consumer (see
    /// [`ClientOptions::reply_to`]) and starts the reader thread.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a malformed URL or unusable options;
    /// [`Error::Connect`] when the broker cannot be reached within the connect timeout
    /// (unless [`ClientOptions::lazy_connect`]). Once connected, the client reconnects by
    /// itself.
    pub fn connect_with(url: &str, options: ClientOptions) -> Result<RpcClient> {
        Self::connect_failover(&[url], options)
    }

    /// Like [`connect_with`](Self::connect_with), with several brokers (for example the nodes of a
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
        options.check()?;
        let first_broker = brokers.current().to_string(); // redacted
        let (replies, woken) = ReplyStream::new();
        let counters = Arc::new(Counters::default());
        let shared = Arc::new(Shared {
            counters: Arc::clone(&counters),
            connected: AtomicBool::new(false),
            last_error: Mutex::new(None),
            broker: Mutex::new(None),
            session: AtomicU64::new(0),
            watch: Watch::new(),
            outbox: Outbox::new(options.queue.clone(), counters),
            replies,
            closing: AtomicBool::new(false),
            reader_ended: AtomicBool::new(false),
        });
        let (commands, command_rx) = crossbeam_channel::unbounded::<OutgoingCall>();
        let (channel_asks, channel_ask_rx) = crossbeam_channel::unbounded();
        let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
        let (finished_tx, finished) = crossbeam_channel::bounded::<()>(0);
        let (close_signal, closed) = crossbeam_channel::bounded::<()>(0);
        let reader = Reader::new(
            brokers,
            &options,
            command_rx,
            woken,
            channel_ask_rx,
            closed.clone(),
            Arc::clone(&shared),
        );
        let thread = std::thread::Builder::new()
            .name("fib-rpc-client".into())
            .spawn(move || {
                let _finished = finished_tx; // dropped when this thread ends
                reader.run(ready_tx);
            })
            .map_err(Error::Io)?;
        let handle = ReaderHandle { thread, finished };

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
                prober: Prober::new(
                    options.queue.clone(),
                    Arc::clone(&shared),
                    channel_asks,
                    closed.clone(),
                ),
                shared,
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
                Err(Error::Connect {
                    broker: first_broker,
                    cause: BrokerError::other(
                        BrokerErrorKind::Unreachable,
                        format!("broker did not finish setup within {setup_bound:?}"),
                    ),
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
    /// deadline ([`Error::Unconfirmed`] if the broker never took the request),
    /// [`Error::NoServer`] at once if no queue has the configured name (or, with
    /// [`ClientOptions::require_server`], if no server consumes it),
    /// [`Error::RequestRefused`] at once if the broker refuses the request, or
    /// [`Error::ConnectionLost`] at once if the connection dies meanwhile. An idempotent call
    /// ([`ClientOptions::idempotent`]) is sent again instead of failing with the last two.
    pub fn call_deadline(&self, body: &[u8], deadline: Instant) -> Result<Vec<u8>> {
        self.send(body, deadline)?.wait()
    }

    /// Sends `body` with this call's own settings (deadline, idempotency) and waits for the
    /// reply; ends as [`call_deadline`](Self::call_deadline) describes.
    pub fn call_with(&self, body: &[u8], options: CallOptions) -> Result<Vec<u8>> {
        self.send_with(body, options)?.wait()
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
    /// let client = RpcClient::connect("amqp://guest:guest@localhost:5672/%2f")?;
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
        self.send_with(body, CallOptions::new().deadline(deadline))
    }

    /// Like [`send`](Self::send), with this call's own settings (deadline, idempotency).
    pub fn send_with(&self, body: &[u8], options: CallOptions) -> Result<PendingReply<'_>> {
        let counters = &self.shared.counters;
        counters.calls.fetch_add(1, Ordering::Relaxed);
        let deadline = options
            .deadline
            .unwrap_or_else(|| deadline_after(self.options.timeout));
        let idempotent = options
            .idempotent
            .or(self.options.idempotent)
            .unwrap_or(false);
        let require_server = options
            .require_server
            .unwrap_or(self.options.require_server);
        let sent = self.send_inner(
            body,
            deadline,
            idempotent,
            require_server,
            options.traceparent,
        );
        if let Err(err) = &sent {
            counters.record_error(err);
        }
        sent
    }

    fn send_inner(
        &self,
        body: &[u8],
        deadline: Instant,
        idempotent: bool,
        require_server: bool,
        traceparent: Option<TraceParent>,
    ) -> Result<PendingReply<'_>> {
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
                consumers: None,
            });
        }
        if require_server {
            self.prober.check(deadline)?;
        }
        // "Forever" is a century: far enough, and safe to add to clocks.
        let deadline = deadline.min(deadline_after(Duration::MAX));
        let (reply, reply_rx) = crossbeam_channel::bounded(1);
        let state = CallState::new();
        let call = OutgoingCall {
            correlation_id: self.ids.next(),
            body: Arc::from(body),
            deadline,
            reply,
            state: state.clone(),
            idempotent,
            attempts: 0,
            traceparent,
        };
        // With nobody else waiting, published from this thread (see `outbox`); kept for the
        // next connection if there is none, or if publishing fails (the connection is going,
        // which the reader will see).
        let alone = self.shared.replies.nobody_waits();
        if alone && self.options.reply_to == ReplyTo::ExclusiveQueue {
            let _ = self.shared.outbox.submit(call, None);
        } else if self.commands.send(call).is_err() {
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
        self.shared.closing.load(Ordering::SeqCst)
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

    /// The broker this client is connected to now (its URL, password masked), or `None` while
    /// it is not connected. With several URLs, the one that answered.
    pub fn broker(&self) -> Option<String> {
        if !self.is_connected() {
            return None;
        }
        self.shared
            .broker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Asks the broker about the server queue: how many servers consume it and how many
    /// requests wait in it. Always a fresh answer (a passive `queue.declare` on a side
    /// channel, shared with any other thread asking at the same moment), waiting at most
    /// `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::NoServer`] with [`NoServerReason::NoQueue`] when the broker has no such queue;
    /// [`Error::NotConnected`] while the client reconnects; [`Error::Timeout`] when the broker
    /// does not answer within `timeout`; [`Error::Broker`] when it fails the request;
    /// [`Error::Closed`] once the client is closed.
    ///
    /// ```no_run
    /// use fib_rpc::{Error, NoServerReason, RpcClient};
    /// use std::time::Duration;
    ///
    /// let client = RpcClient::connect("amqp://guest:guest@localhost:5672/%2f")?;
    /// match client.queue_status(Duration::from_secs(2)) {
    ///     Ok(status) if status.consumers > 0 => println!("{} server(s) up", status.consumers),
    ///     Ok(status) => println!("no server; {} request(s) waiting", status.messages),
    ///     Err(Error::NoServer { reason: NoServerReason::NoQueue, .. }) => println!("no queue"),
    ///     Err(err) => return Err(err),
    /// }
    /// # Ok::<(), fib_rpc::Error>(())
    /// ```
    ///
    /// [`NoServerReason::NoQueue`]: crate::NoServerReason::NoQueue
    pub fn queue_status(&self, timeout: Duration) -> Result<QueueStatus> {
        self.prober.status(timeout)
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
        self.shared.closing.store(true, Ordering::SeqCst);
        self.close_signal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let reader = self.reader.lock().unwrap_or_else(|e| e.into_inner()).take();
        let bound = self
            .options
            .connect
            .timeout
            .saturating_add(Duration::from_secs(1));
        if let Some(reader) = reader {
            reader.join_within(bound);
        }
        self.prober.join_within(bound);
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
    state: CallState,
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
        self.client
            .shared
            .counters
            .record(&result, self.started.elapsed());
        result
    }

    fn wait_inner(&self) -> Result<Vec<u8>> {
        let client = self.client;
        // Two stretches: until the kick (a call still waiting then starts a probe, so that a
        // timeout can say whether anybody was consuming without waiting for one), then until
        // the deadline. A call answered before the kick costs nothing more.
        let kick_at = kick_at(self.started, self.deadline);
        let mut kicked = false;
        // A caller taking its own reply wakes the reader to read the confirms once that reply
        // is slow: so a refusal is noticed, and a timeout knows whether the broker took the
        // request.
        let confirms_due = confirms_due(self.started, self.deadline);
        let mut confirms_asked = !client.options.publisher_confirms;
        // Waiting alone, this caller takes replies off the consumer itself (see `replies`).
        let mut waiting = Waiting::start(&client.shared);
        let answer = loop {
            // Checked between waits rather than waited on: a channel every waiting caller
            // selects on costs each of them a lock on every wait.
            if client.shared.closing.load(Ordering::SeqCst) {
                // Closed by its owner: stop waiting, whatever the reader is doing (and make
                // sure it does not send the request later).
                break Some(self.reply.try_recv().unwrap_or_else(|_| {
                    self.abandon();
                    Err(Error::Closed)
                }));
            }
            if client.shared.reader_ended.load(Ordering::SeqCst) {
                // The reader ended without seeing our call; it may have answered just before.
                break self.reply.try_recv().ok();
            }
            let now = Instant::now();
            if !kicked && now >= kick_at {
                kicked = true;
                if now < self.deadline {
                    client.prober.kick();
                }
            }
            if !confirms_asked && now >= confirms_due {
                confirms_asked = true;
                // A reader taking replies for this caller reads confirms anyway.
                if waiting.stream().is_some() {
                    client.shared.replies.wake_reader();
                }
            }
            let mut until = if kicked { self.deadline } else { kick_at };
            if !confirms_asked {
                until = until.min(confirms_due);
            }
            let wait = until.saturating_duration_since(now).min(WATCH_EVERY);
            let waited = match waiting.stream() {
                Some(replies) => select! {
                    recv(self.reply) -> answer => Ok(answer),
                    // Ours, or another caller's, handed on: ours then comes on `self.reply`.
                    recv(replies) -> message => {
                        waiting.take(message);
                        continue;
                    }
                    default(wait) => Err(()),
                },
                // Not `recv_timeout` (nor `select!` with one arm, which becomes it): that spins
                // and yields before it blocks, which with many callers on two cores doubled
                // the context switches. `Select` blocks at once.
                None => {
                    let mut select = Select::new();
                    select.recv(&self.reply);
                    match select.select_timeout(wait) {
                        Ok(ready) => Ok(ready.recv(&self.reply)),
                        Err(_) => Err(()),
                    }
                }
            };
            match waited {
                // `Err` here means the reader dropped our call unanswered: expired, or stopping.
                Ok(answer) => break answer.ok(),
                // A reply that lands exactly at the deadline still counts.
                Err(()) if kicked && Instant::now() >= self.deadline => {
                    break self.reply.try_recv().ok();
                }
                Err(()) => {}
            }
        };
        drop(waiting);
        match answer {
            Some(result) => result,
            None if client.shared.reader_ended.load(Ordering::SeqCst) => Err(client.gone_error()),
            None => Err(self.give_up()),
        }
    }

    /// Stops the reader from sending the request if it has not yet; says how far it got.
    fn abandon(&self) -> GaveUp {
        self.state.abandon()
    }

    /// The deadline passed without an answer. If the reader has not sent the request yet,
    /// it never will (the claim below stops it), and the caller learns why it was not sent;
    /// if the broker never confirmed taking it, the caller learns that.
    fn give_up(&self) -> Error {
        let waited = self.started.elapsed();
        let shared = &self.client.shared;
        match self.abandon() {
            GaveUp::Unsent if !shared.connected.load(Ordering::SeqCst) => Error::NotConnected {
                waited,
                last_error: shared.last_error(),
            },
            GaveUp::Sent if self.client.options.publisher_confirms => Error::Unconfirmed { waited },
            GaveUp::Refused => Error::RequestRefused {
                queue: self.client.options.queue.clone(),
            },
            // Sent before a connection loss, and not again since: the outcome is unknown.
            GaveUp::MaybeRun if !shared.connected.load(Ordering::SeqCst) => {
                Error::ConnectionLost { cause: None }
            }
            // Whether anybody was there to answer, from what is known by now: never a probe
            // after the deadline (the call kicked one before it, if it was still waiting).
            _ => Error::Timeout {
                waited,
                consumers: self.client.prober.consumers_known(),
            },
        }
    }
}

/// When a caller taking its own reply wakes the reader to read the confirms, if the reply has
/// not come: after the reader's [`CONFIRM_LINGER`], or half-way to the deadline when that is
/// sooner, so the reader has time to read them before the caller gives up.
fn confirms_due(started: Instant, deadline: Instant) -> Instant {
    let half_way = started + deadline.saturating_duration_since(started) / 2;
    half_way.min(started + CONFIRM_LINGER)
}

/// A caller waiting for its reply, counted as such while this lives; when it waits alone, it
/// takes replies off the reply consumer itself (see [`replies`](super::replies)).
struct Waiting<'a> {
    shared: &'a Shared,
    /// The stream this caller takes replies from, and its session's number.
    pumping: Option<(u64, Receiver<ConsumerMessage>)>,
}

impl<'a> Waiting<'a> {
    fn start(shared: &'a Shared) -> Self {
        Waiting {
            pumping: shared.replies.start_waiting(),
            shared,
        }
    }

    /// The reply stream to take from, while this caller pumps.
    fn stream(&self) -> Option<&Receiver<ConsumerMessage>> {
        self.pumping.as_ref().map(|(_, stream)| stream)
    }

    /// Hands `first`, and every reply already behind it, to its caller (this one included);
    /// stops pumping, and tells the reader, when the stream has ended.
    fn take(&mut self, first: std::result::Result<ConsumerMessage, RecvError>) {
        let mut next = first.map_err(|_| TryRecvError::Disconnected);
        loop {
            match next {
                Ok(ConsumerMessage::Delivery(delivery)) => deliver(self.shared, delivery),
                Ok(other) => return self.ended(Some(other)),
                Err(TryRecvError::Disconnected) => return self.ended(None),
                Err(TryRecvError::Empty) => return,
            }
            next = match self.stream() {
                Some(stream) => stream.try_recv(),
                None => return,
            };
        }
    }

    fn ended(&mut self, message: Option<ConsumerMessage>) {
        if let Some((session, _)) = self.pumping.take() {
            self.shared.replies.ended(session, message);
            self.shared.replies.stop_pumping();
        }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.shared.replies.stop_waiting(self.pumping.is_some());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirms_are_asked_for_after_the_linger_or_half_way_to_a_close_deadline() {
        let started = Instant::now();
        let far = started + Duration::from_secs(30);
        assert_eq!(confirms_due(started, far), started + CONFIRM_LINGER);
        let close = started + Duration::from_millis(4);
        assert_eq!(
            confirms_due(started, close),
            started + Duration::from_millis(2)
        );
        assert_eq!(confirms_due(started, started), started);
    }
}
