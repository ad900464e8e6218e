//! The calling side: a byte-level [`RpcClient`] and the typed [`FibonacciRpcClient`] on top.
//!
//! # How a call travels
//!
//! amiquip's channel and consumer cannot be shared between threads, so one **reader thread**
//! (`fib-rpc-client`) owns the connection, the channel, the reply queue's consumer and the
//! listener for returned (unroutable) messages. A caller:
//!
//! 1. makes a fresh UUID v4 `correlation_id` and a one-slot reply channel,
//! 2. hands `(correlation_id, body, deadline, reply sender)` to the reader over a crossbeam
//!    channel; the reader publishes the request and files the sender under the id,
//! 3. waits on its reply channel until its deadline.
//!
//! The reader matches each reply by `correlation_id` and hands it to exactly that caller.
//! Replies nobody waits for (unknown ids, duplicates, answers after a timeout) are dropped and
//! counted in [`ClientStats::discarded_replies`]. If the connection dies, every pending caller
//! is told at once with [`Error::ConnectionLost`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use amiquip::{
    AmqpProperties, AmqpValue, Channel, Connection, ConsumerMessage, ConsumerOptions, Delivery,
    Publish, QueueDeclareOptions, Return,
};
use crossbeam_channel::{select, Receiver, RecvTimeoutError, Sender};
use num_bigint::BigUint;
use uuid::Uuid;

use crate::broker::{BrokerUrl, ConnectSettings};
use crate::error::{Error, Result};
use crate::wire::{self, ErrorCode, RemoteError, DEFAULT_QUEUE, ERROR_HEADER};

/// How often the reader thread forgets calls whose callers have stopped waiting.
const SWEEP_INTERVAL: Duration = Duration::from_millis(500);

/// Settings for [`RpcClient`] and [`FibonacciRpcClient`].
///
/// ```
/// use fib_rpc::ClientOptions;
/// use std::time::Duration;
///
/// let options = ClientOptions::default()
///     .queue("fib_requests")
///     .timeout(Duration::from_secs(5));
/// assert_eq!(options.get_timeout(), Duration::from_secs(5));
/// ```
#[derive(Debug, Clone)]
pub struct ClientOptions {
    queue: String,
    timeout: Duration,
    connect_timeout: Duration,
    heartbeat_secs: u16,
    connection_name: String,
}

impl Default for ClientOptions {
    /// The tutorial's queue (`rpc_queue`), a 30 s call timeout, a 10 s connect timeout and 15 s
    /// heartbeats.
    fn default() -> Self {
        ClientOptions {
            queue: DEFAULT_QUEUE.to_owned(),
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            heartbeat_secs: 15,
            connection_name: "fib-rpc client".to_owned(),
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

    /// Bound on connecting (TCP and AMQP handshake) and on closing (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// AMQP heartbeat interval in seconds (default 15; 0 turns heartbeats off). A silently
    /// dead TCP path is noticed after about two intervals.
    pub fn heartbeat(mut self, seconds: u16) -> Self {
        self.heartbeat_secs = seconds;
        self
    }

    /// Name shown for the connection in RabbitMQ's tools (the `information` client property).
    pub fn connection_name(mut self, name: impl Into<String>) -> Self {
        self.connection_name = name.into();
        self
    }

    /// The configured call timeout.
    pub fn get_timeout(&self) -> Duration {
        self.timeout
    }

    /// The configured server queue.
    pub fn get_queue(&self) -> &str {
        &self.queue
    }
}

/// A snapshot of a client's counters, from [`RpcClient::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientStats {
    /// Calls started.
    pub calls: u64,
    /// Calls that returned a reply.
    pub ok: u64,
    /// Calls answered with an error reply.
    pub remote_errors: u64,
    /// Calls that timed out.
    pub timeouts: u64,
    /// Calls the broker returned as unroutable (no server queue).
    pub no_server: u64,
    /// Calls that failed because the connection was lost or the client was closed.
    pub connection_lost: u64,
    /// Calls that failed otherwise (invalid reply, invalid argument).
    pub other_errors: u64,
    /// Replies that matched no waiting call (unknown id, duplicate, or after a timeout) and
    /// were dropped.
    pub discarded_replies: u64,
}

#[derive(Default)]
struct Counters {
    calls: AtomicU64,
    ok: AtomicU64,
    remote_errors: AtomicU64,
    timeouts: AtomicU64,
    no_server: AtomicU64,
    connection_lost: AtomicU64,
    other_errors: AtomicU64,
    discarded_replies: AtomicU64,
}

impl Counters {
    fn record<T>(&self, result: &Result<T>) {
        let counter = match result {
            Ok(_) => &self.ok,
            Err(Error::Remote(_)) => &self.remote_errors,
            Err(Error::Timeout { .. }) => &self.timeouts,
            Err(Error::NoServer { .. }) => &self.no_server,
            Err(Error::ConnectionLost { .. } | Error::Closed) => &self.connection_lost,
            Err(_) => &self.other_errors,
        };
        counter.fetch_add(1, Ordering::Relaxed);
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
            other_errors: get(&self.other_errors),
            discarded_replies: get(&self.discarded_replies),
        }
    }
}

/// Why the reader thread stopped; read by callers who find it gone.
#[derive(Clone)]
enum Ended {
    Closed,
    Lost(Option<Arc<amiquip::Error>>),
}

impl Ended {
    fn error(&self) -> Error {
        match self {
            Ended::Closed => Error::Closed,
            Ended::Lost(cause) => Error::connection_lost(cause),
        }
    }
}

/// State shared by callers and the reader thread.
struct Shared {
    counters: Counters,
    ended: Mutex<Option<Ended>>,
}

impl Shared {
    /// The error for a caller who found the reader thread gone.
    fn gone_error(&self) -> Error {
        match &*self.ended.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(ended) => ended.error(),
            None => Error::ConnectionLost { cause: None },
        }
    }
}

type ReplySender = Sender<Result<Vec<u8>>>;

/// What callers ask of the reader thread.
enum Command {
    Call(OutgoingCall),
    Shutdown,
}

struct OutgoingCall {
    correlation_id: String,
    body: Vec<u8>,
    deadline: Instant,
    reply: ReplySender,
}

/// A call the reader has published and is waiting to answer.
struct PendingCall {
    deadline: Instant,
    reply: ReplySender,
}

/// The reader thread's handle, joined on close.
struct ReaderHandle {
    thread: JoinHandle<()>,
    /// Disconnects when the thread ends, so closing can wait with a bound.
    finished: Receiver<()>,
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
    reader: Mutex<Option<ReaderHandle>>,
    options: ClientOptions,
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
    /// Connects to the broker at `url` (`amqp://user:password@host:port/vhost`), declares an
    /// exclusive reply queue and starts the reader thread. Fails with [`Error::Connect`] when
    /// the broker cannot be reached within the connect timeout.
    pub fn connect(url: &str, options: ClientOptions) -> Result<RpcClient> {
        let url = BrokerUrl::parse(url)?;
        if options.timeout.is_zero() {
            return Err(Error::InvalidArgument(
                "call timeout must be above zero".into(),
            ));
        }
        let shared = Arc::new(Shared {
            counters: Counters::default(),
            ended: Mutex::new(None),
        });
        let (commands, command_rx) = crossbeam_channel::unbounded();
        let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
        let (finished_tx, finished) = crossbeam_channel::bounded::<()>(0);
        let reader = Reader {
            settings: ConnectSettings {
                timeout: options.connect_timeout,
                heartbeat_secs: options.heartbeat_secs,
                name: options.connection_name.clone(),
            },
            url: url.clone(),
            queue: options.queue.clone(),
            commands: command_rx,
            shared: Arc::clone(&shared),
            pending: HashMap::new(),
        };
        let thread = std::thread::Builder::new()
            .name("fib-rpc-client".into())
            .spawn(move || {
                let _finished = finished_tx; // dropped when this thread ends
                reader.run(ready_tx);
            })
            .map_err(Error::Io)?;
        let handle = ReaderHandle { thread, finished };

        // Setup is connect (bounded by connect_timeout) plus three quick AMQP round trips.
        let setup_bound = options.connect_timeout + Duration::from_secs(5);
        match ready_rx.recv_timeout(setup_bound) {
            Ok(Ok(())) => Ok(RpcClient {
                commands,
                shared,
                reader: Mutex::new(Some(handle)),
                options,
            }),
            Ok(Err(err)) => {
                let _ = handle.thread.join(); // it has already returned
                Err(err)
            }
            Err(_) => {
                // The broker accepted us but stalls; leave the thread to end on its own
                // (heartbeats bound it) rather than block the caller further.
                let _ = commands.send(Command::Shutdown);
                Err(Error::Connect {
                    broker: url.to_string(),
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
        self.call_deadline(body, Instant::now() + timeout)
    }

    /// Sends `body` and waits for the reply until `deadline`.
    ///
    /// Ends with the reply, [`Error::Remote`] for an error reply, [`Error::Timeout`] at the
    /// deadline, [`Error::NoServer`] at once if no queue has the configured name, or
    /// [`Error::ConnectionLost`] at once if the connection dies meanwhile.
    pub fn call_deadline(&self, body: &[u8], deadline: Instant) -> Result<Vec<u8>> {
        let counters = &self.shared.counters;
        counters.calls.fetch_add(1, Ordering::Relaxed);
        let result = self.call_inner(body, deadline);
        counters.record(&result);
        result
    }

    fn call_inner(&self, body: &[u8], deadline: Instant) -> Result<Vec<u8>> {
        let started = Instant::now();
        if deadline <= started {
            return Err(Error::Timeout {
                waited: Duration::ZERO,
            });
        }
        let (reply, reply_rx) = crossbeam_channel::bounded(1);
        let call = OutgoingCall {
            correlation_id: Uuid::new_v4().to_string(),
            body: body.to_vec(),
            deadline,
            reply,
        };
        if self.commands.send(Command::Call(call)).is_err() {
            return Err(self.shared.gone_error());
        }
        match reply_rx.recv_deadline(deadline) {
            Ok(result) => result,
            Err(RecvTimeoutError::Timeout) => Err(Error::Timeout {
                waited: started.elapsed(),
            }),
            // The reader dropped our request without answering: it has stopped.
            Err(RecvTimeoutError::Disconnected) => Err(self.shared.gone_error()),
        }
    }

    /// A snapshot of this client's counters.
    pub fn stats(&self) -> ClientStats {
        self.shared.counters.snapshot()
    }

    /// The options this client was made with.
    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// Closes the connection and stops the reader thread. Calls still waiting fail with
    /// [`Error::Closed`]; later calls too. Waits at most the connect timeout for the broker to
    /// acknowledge the close. Dropping the client does the same.
    pub fn close(&self) {
        let Some(handle) = self.reader.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        let _ = self.commands.send(Command::Shutdown);
        // `finished` disconnects when the thread returns; join only then, so a broker that
        // never answers the close cannot hang us.
        let bound = self.options.connect_timeout + Duration::from_secs(1);
        if let Err(RecvTimeoutError::Disconnected) = handle.finished.recv_timeout(bound) {
            let _ = handle.thread.join();
        } else {
            log::warn!("fib-rpc client: reader thread did not stop within {bound:?}; leaving it");
        }
    }
}

impl Drop for RpcClient {
    fn drop(&mut self) {
        self.close();
    }
}

/// What ended a connection session of the reader thread.
enum SessionEnd {
    Shutdown,
    Lost(Option<Arc<amiquip::Error>>),
}

/// The reader thread's state. It alone touches the AMQP connection.
struct Reader {
    url: BrokerUrl,
    settings: ConnectSettings,
    queue: String,
    commands: Receiver<Command>,
    shared: Arc<Shared>,
    pending: HashMap<String, PendingCall>,
}

impl Reader {
    fn run(mut self, ready: Sender<Result<()>>) {
        let mut connection = match self.url.connect(&self.settings) {
            Ok(connection) => connection,
            Err(err) => {
                let _ = ready.send(Err(err));
                return;
            }
        };
        let end = match self.run_session(&mut connection, ready) {
            Ok(end) => end,
            Err(_) => return, // setup failed; the error went to the constructor
        };
        let ended = match end {
            SessionEnd::Shutdown => {
                if let Err(err) = connection.close() {
                    log::debug!("fib-rpc client: closing the connection: {err}");
                }
                Ended::Closed
            }
            SessionEnd::Lost(cause) => {
                // After a socket failure the consumer only sees a closed channel; the AMQP
                // client's own error (the real cause) comes out of closing the connection.
                let closed = connection.close().err().map(Arc::new);
                let cause = cause.or(closed);
                match &cause {
                    Some(err) => log::warn!("fib-rpc client: connection lost: {err}"),
                    None => log::warn!("fib-rpc client: connection lost"),
                }
                Ended::Lost(cause)
            }
        };
        self.finish(ended);
    }

    /// Opens the channel, reply queue, consumer and return listener, reports readiness, then
    /// serves callers until shutdown or connection loss.
    fn run_session(
        &mut self,
        connection: &mut Connection,
        ready: Sender<Result<()>>,
    ) -> std::result::Result<SessionEnd, ()> {
        let setup = (|| -> Result<_> {
            let channel = connection.open_channel(None)?;
            let returns = channel.listen_for_returns()?;
            Ok((channel, returns))
        })();
        let (channel, returns) = match setup {
            Ok(parts) => parts,
            Err(err) => {
                let _ = ready.send(Err(err));
                return Err(());
            }
        };
        let reply_queue = match channel.queue_declare(
            "",
            QueueDeclareOptions {
                exclusive: true,
                ..QueueDeclareOptions::default()
            },
        ) {
            Ok(queue) => queue,
            Err(err) => {
                let _ = ready.send(Err(err.into()));
                return Err(());
            }
        };
        let consumer = match reply_queue.consume(ConsumerOptions {
            no_ack: true,
            exclusive: true,
            ..ConsumerOptions::default()
        }) {
            Ok(consumer) => consumer,
            Err(err) => {
                let _ = ready.send(Err(err.into()));
                return Err(());
            }
        };
        let reply_to = reply_queue.name().to_owned();
        let _ = ready.send(Ok(()));

        let sweep = crossbeam_channel::tick(SWEEP_INTERVAL);
        loop {
            select! {
                recv(self.commands) -> command => match command {
                    Ok(Command::Call(call)) => {
                        if let Err(err) = self.publish(&channel, &reply_to, call) {
                            return Ok(SessionEnd::Lost(Some(Arc::new(err))));
                        }
                    }
                    Ok(Command::Shutdown) | Err(_) => return Ok(SessionEnd::Shutdown),
                },
                recv(consumer.receiver()) -> message => match message {
                    Ok(ConsumerMessage::Delivery(delivery)) => self.deliver(delivery),
                    Ok(ConsumerMessage::ServerClosedConnection(err))
                    | Ok(ConsumerMessage::ServerClosedChannel(err)) => {
                        return Ok(SessionEnd::Lost(Some(Arc::new(err))));
                    }
                    // The reply queue was deleted under us, or the channel was closed.
                    Ok(_) | Err(_) => return Ok(SessionEnd::Lost(None)),
                },
                recv(returns) -> returned => match returned {
                    Ok(returned) => self.fail_returned(returned),
                    Err(_) => return Ok(SessionEnd::Lost(None)),
                },
                recv(sweep) -> _ => self.forget_expired(Instant::now()),
            }
        }
    }

    /// Publishes one request and files its caller. The request's `expiration` is the time the
    /// caller will still wait, so the broker drops it rather than have a server compute an
    /// answer nobody reads.
    fn publish(
        &mut self,
        channel: &Channel,
        reply_to: &str,
        call: OutgoingCall,
    ) -> amiquip::Result<()> {
        let remaining = call.deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Ok(()); // the caller has already given up
        }
        let expiration_ms = remaining.as_millis().max(1);
        let properties = AmqpProperties::default()
            .with_reply_to(reply_to.to_owned())
            .with_correlation_id(call.correlation_id.clone())
            .with_expiration(expiration_ms.to_string());
        let publish = Publish {
            body: &call.body,
            routing_key: self.queue.clone(),
            mandatory: true,
            immediate: false,
            properties,
        };
        if let Err(err) = channel.basic_publish("", publish) {
            let _ = call.reply.send(Err(Error::ConnectionLost { cause: None }));
            return Err(err);
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
            Some(caller) => caller.reply.send(decode_reply(delivery)).is_ok(),
            None => false,
        };
        if !delivered {
            self.shared
                .counters
                .discarded_replies
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The broker returned a mandatory request: no queue is bound to the routing key.
    fn fail_returned(&mut self, returned: Return) {
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

    /// Fails every pending and queued call with the reason the reader stopped, and records it
    /// for callers who arrive later.
    fn finish(mut self, ended: Ended) {
        *self.shared.ended.lock().unwrap_or_else(|e| e.into_inner()) = Some(ended.clone());
        for (_, call) in self.pending.drain() {
            let _ = call.reply.send(Err(ended.error()));
        }
        while let Ok(command) = self.commands.try_recv() {
            if let Command::Call(call) = command {
                let _ = call.reply.send(Err(ended.error()));
            }
        }
    }
}

/// Turns a reply into the call's result: an error reply (with [`ERROR_HEADER`]) becomes
/// [`Error::Remote`], anything else is the answer.
fn decode_reply(delivery: Delivery) -> Result<Vec<u8>> {
    let code = delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|headers| headers.get(ERROR_HEADER));
    match code {
        None => Ok(delivery.body),
        Some(code) => {
            let code = match code {
                AmqpValue::LongString(text) => ErrorCode::parse(text),
                AmqpValue::ByteArray(bytes) => ErrorCode::parse(&String::from_utf8_lossy(bytes)),
                other => ErrorCode::Other(format!("{other:?}")),
            };
            Err(Error::Remote(RemoteError::new(
                code,
                String::from_utf8_lossy(&delivery.body),
            )))
        }
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

    /// Returns fib(`n`), waiting up to the configured timeout.
    pub fn call(&self, n: u64) -> Result<BigUint> {
        self.call_deadline(n, Instant::now() + self.rpc.options.timeout)
    }

    /// Returns fib(`n`), waiting until `deadline`.
    pub fn call_deadline(&self, n: u64, deadline: Instant) -> Result<BigUint> {
        let digits = self.call_decimal_deadline(n, deadline)?;
        Ok(BigUint::parse_bytes(digits.as_bytes(), 10).expect("checked to be decimal digits"))
    }

    /// Returns fib(`n`) as the server sent it, in decimal, checked to be digits only. Cheaper
    /// than [`call`](Self::call) for huge `n` when the caller only prints the number.
    pub fn call_decimal_deadline(&self, n: u64, deadline: Instant) -> Result<String> {
        let reply = self.rpc.call_deadline(n.to_string().as_bytes(), deadline)?;
        if reply.is_empty() || !reply.iter().all(u8::is_ascii_digit) {
            return Err(Error::InvalidReply(format!(
                "expected fib({n}) in decimal, got {}",
                wire::preview(&reply)
            )));
        }
        Ok(String::from_utf8(reply).expect("ASCII digits are UTF-8"))
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
