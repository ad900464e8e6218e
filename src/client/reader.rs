//! The reader thread: it alone touches the AMQP connection. It publishes callers' requests,
//! hands each reply to the caller waiting for its `correlation_id`, sends idempotent requests
//! again when they may have been lost, and reconnects after a loss.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use amiquip::{
    Channel, Confirm, Connection, Consumer, ConsumerMessage, ConsumerOptions, Delivery, Publish,
    QueueDeclareOptions, Return,
};
use crossbeam_channel::{select, Receiver, Sender};

use super::call::OutgoingCall;
use super::confirms::ConfirmTags;
use super::handle::Shared;
use super::options::{ClientOptions, ReplyTo, DIRECT_REPLY_TO};
use super::probe::{declare_passive, ChannelAsk, ProbeFailed, Seen};
use crate::connect::ConnectSettings;
use crate::error::{BrokerError, BrokerErrorKind, Error, NoServerReason, Result};
use crate::reconnect::{Backoff, Brokers};
use crate::util::{bump, cancel_consumer, is_disconnected};
use crate::wire;

/// How often the reader thread forgets calls whose callers have stopped waiting.
const SWEEP_INTERVAL: Duration = Duration::from_millis(500);

/// How long the reader waits for amiquip to confirm that the reply consumer is cancelled,
/// after the broker already has (microseconds in practice; the bound is for a dying I/O thread).
const CONSUMER_CANCEL_WAIT: Duration = Duration::from_secs(1);

/// How long an idempotent request the broker refused waits before it goes again; doubled at
/// each refusal of the same call, up to [`MAX_RESEND_DELAY`].
const RESEND_DELAY: Duration = Duration::from_millis(50);
const MAX_RESEND_DELAY: Duration = Duration::from_secs(1);

/// Refusals in a row, with no request taken in between, after which the reader takes its
/// channel for stale and replaces the connection; see [`Reader::refused`].
const STALE_AFTER_REFUSALS: u32 = 2;

/// How long the reader then lets the calls in flight finish before it reconnects.
const STALE_CHANNEL_DRAIN: Duration = Duration::from_secs(2);

/// How long the reader lets a request's confirm wait before it wakes just to read it. Replies
/// and new calls wake the reader anyway, and it reads the confirms that have arrived each time,
/// so a steady stream of calls spends no wake-up on confirms; a refusal is noticed within this.
const CONFIRM_LINGER: Duration = Duration::from_millis(5);

/// The reader thread's state. It alone touches the AMQP connection.
pub(super) struct Reader {
    brokers: Brokers,
    settings: ConnectSettings,
    backoff: Backoff,
    /// Report ready before the first connection (see
    /// [`ClientOptions::lazy_connect`](crate::ClientOptions::lazy_connect)).
    lazy: bool,
    queue: String,
    reply_to: ReplyTo,
    commands: Receiver<OutgoingCall>,
    /// The probe thread's requests for a side channel on the current connection.
    channel_asks: Receiver<ChannelAsk>,
    /// Disconnects when the owner starts closing the client.
    closed: Receiver<()>,
    shared: Arc<Shared>,
    /// Published calls by `correlation_id`.
    pending: HashMap<String, OutgoingCall>,
    /// Calls received while disconnected, in order, and idempotent calls to be sent again
    /// after a loss; sent first on the next connection.
    waiting: VecDeque<OutgoingCall>,
    /// Idempotent calls the broker refused, each to go again at its time.
    resends: Vec<(Instant, OutgoingCall)>,
    /// Publisher confirms on requests ([`ClientOptions::publisher_confirms`]).
    confirms: bool,
    /// Calls require a server ([`ClientOptions::require_server`]): probe once on setting up.
    require_server: bool,
    /// This session's published requests awaiting their confirm.
    tags: ConfirmTags,
    /// Requests refused in a row in this session, with none taken in between.
    refusal_streak: u32,
    /// When this session was found stale (see [`Reader::refused`]): it is to be replaced.
    refused_at: Option<Instant>,
    /// Sessions set up so far; every one after the first is a reconnection.
    sessions: u64,
}

/// What the reader does after a connection (or an attempt at one) ends.
enum Next {
    /// Wait out the backoff, then connect again.
    Retry,
    /// The client is closed, or its constructor was told that connecting failed.
    Stop,
}

/// How a session (one connection's life) ended.
enum SessionEnd {
    /// The owner closed the client.
    Shutdown,
    /// The connection or channel failed, with the AMQP client's error when there is one.
    /// Pending calls have been told when `told` is true.
    Lost {
        cause: Option<BrokerError>,
        told: bool,
    },
}

impl Reader {
    pub(super) fn new(
        brokers: Brokers,
        options: &ClientOptions,
        commands: Receiver<OutgoingCall>,
        channel_asks: Receiver<ChannelAsk>,
        closed: Receiver<()>,
        shared: Arc<Shared>,
    ) -> Self {
        Reader {
            brokers,
            settings: options.connect.clone(),
            backoff: Backoff::from_settings(options.backoff),
            lazy: options.lazy_connect,
            queue: options.queue.clone(),
            reply_to: options.reply_to,
            commands,
            channel_asks,
            closed,
            shared,
            pending: HashMap::new(),
            waiting: VecDeque::new(),
            resends: Vec::new(),
            confirms: options.publisher_confirms,
            require_server: options.require_server,
            tags: ConfirmTags::default(),
            refusal_streak: 0,
            refused_at: None,
            sessions: 0,
        }
    }

    /// Connects, serves, and reconnects after losses until the client is closed. The first
    /// outcome goes to `ready`: the constructor waits for it (unless lazy).
    pub(super) fn run(mut self, ready: Sender<Result<()>>) {
        let _disconnected = DisconnectedOnExit(Arc::clone(&self.shared));
        let mut ready = Some(ready);
        if self.lazy {
            let _ = ready.take().map(|ready| ready.send(Ok(())));
        }
        while let Next::Retry = self.one_connection(&mut ready) {
            let delay = self.backoff.next_delay();
            if !self.wait_while_disconnected(delay) {
                break;
            }
        }
        self.fail_everything();
    }

    /// Connects once and serves until that connection ends; says whether to try again.
    fn one_connection(&mut self, ready: &mut Option<Sender<Result<()>>>) -> Next {
        let attempt = self
            .brokers
            .connect_round(&self.settings, || is_disconnected(&self.closed));
        let mut connection = match attempt {
            Ok(connection) if is_disconnected(&self.closed) => {
                let _ = connection.close();
                return Next::Stop;
            }
            Ok(connection) => connection,
            Err(err) => return self.not_connected(err, ready, ""),
        };
        let started = Instant::now();
        match self.run_session(&mut connection, ready) {
            Ok(SessionEnd::Shutdown) => {
                if let Err(err) = connection.close() {
                    log::debug!("closing the connection: {err}");
                }
                Next::Stop
            }
            Ok(SessionEnd::Lost { cause, told }) => {
                self.after_loss(connection, cause, told, started);
                Next::Retry
            }
            Err(err) => {
                let _ = connection.close();
                // This broker accepts connections but cannot serve us: try the next first.
                self.brokers.skip_current();
                self.not_connected(err, ready, "setting up after reconnecting: ")
            }
        }
    }

    /// Connecting or setting up failed: the constructor hears of it the first time (unless
    /// lazy); later, calls hear of it if they time out unsent, and the reader tries again.
    fn not_connected(
        &mut self,
        err: Error,
        ready: &mut Option<Sender<Result<()>>>,
        doing: &str,
    ) -> Next {
        if let Some(ready) = ready.take() {
            let _ = ready.send(Err(err));
            return Next::Stop;
        }
        if is_disconnected(&self.closed) {
            return Next::Stop;
        }
        log::warn!("{doing}{}; retrying", err.full_message());
        self.shared.set_disconnected(err);
        Next::Retry
    }

    /// A session ended by a loss: fails its calls in flight (unless done already), and
    /// records why for the calls that will wait for the next connection.
    fn after_loss(
        &mut self,
        connection: Connection,
        cause: Option<BrokerError>,
        told: bool,
        started: Instant,
    ) {
        // After a socket failure only closing tells the real cause (quick: the I/O thread has
        // already ended). After a clean broker close, closing just tidies up.
        let closed = connection.close().err().map(BrokerError::amqp);
        let cause = match cause {
            Some(cause) if !cause.is_generic() => Some(cause),
            seen => closed.or(seen),
        };
        if !told {
            self.pending_lost(&cause);
        }
        log::warn!(
            "connection to {} lost{}; reconnecting",
            self.brokers.current(),
            cause
                .as_ref()
                .map(|cause| format!(": {cause}"))
                .unwrap_or_default()
        );
        // For calls that time out unsent: a reason, not "outcome unknown".
        let why = match &cause {
            Some(cause) => cause.context("connection lost"),
            None => BrokerError::other(BrokerErrorKind::Unreachable, "connection lost"),
        };
        self.shared.set_disconnected(Error::Connect {
            broker: self.brokers.current().to_string(),
            cause: why,
        });
        // A connection that lived a while starts the backoff over; one that keeps dying at
        // once keeps backing off.
        if started.elapsed() >= self.backoff.max() {
            self.backoff.reset();
        }
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
                recv(self.commands) -> call => match call {
                    Ok(call) => self.waiting.push_back(call),
                    Err(_) => return false,
                },
                recv(self.closed) -> _ => return false,
                // No connection to open a side channel on: the probe finds nothing.
                recv(self.channel_asks) -> ask => if let Ok(ask) = ask {
                    let _ = ask.send(Err(ProbeFailed::NotConnected));
                },
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
        let mut channel = connection.open_channel(None).map_err(Error::amqp)?;
        if self.require_server {
            channel = self.first_probe(connection, channel)?;
        }
        let returns = channel.listen_for_returns().map_err(Error::amqp)?;
        // Listening first, so that no confirm arrives unheard.
        let confirms = match self.confirms {
            true => {
                let confirms = channel
                    .listen_for_publisher_confirms()
                    .map_err(Error::amqp)?;
                channel.enable_publisher_confirms().map_err(Error::amqp)?;
                confirms
            }
            false => crossbeam_channel::never(),
        };
        self.tags = ConfirmTags::default();
        self.refusal_streak = 0;
        self.refused_at = None;
        // Replies are never acked: an unanswered caller gains nothing from a redelivery.
        let no_ack = ConsumerOptions {
            no_ack: true,
            exclusive: true,
            ..ConsumerOptions::default()
        };
        let (consumer, reply_to) = match self.reply_to {
            ReplyTo::ExclusiveQueue => {
                let queue = channel
                    .queue_declare(
                        "",
                        QueueDeclareOptions {
                            exclusive: true,
                            ..QueueDeclareOptions::default()
                        },
                    )
                    .map_err(Error::amqp)?;
                let consumer = queue.consume(no_ack).map_err(Error::amqp)?;
                (consumer, queue.name().to_owned())
            }
            // Consumed before anything is published on this channel, as the broker requires.
            ReplyTo::Direct => (
                channel
                    .basic_consume(DIRECT_REPLY_TO, no_ack)
                    .map_err(Error::amqp)?,
                DIRECT_REPLY_TO.to_owned(),
            ),
        };

        log::debug!(
            "connected to {}; replies come to {reply_to:?}",
            self.brokers.current()
        );
        self.sessions += 1;
        if self.sessions > 1 {
            bump(&self.shared.counters.reconnects);
            log::warn!(
                "reconnected to {}; sending {} call(s) that waited",
                self.brokers.current(),
                self.waiting.len()
            );
        }
        self.shared
            .set_connected(self.brokers.current().to_string(), self.sessions);
        if let Some(ready) = ready.take() {
            let _ = ready.send(Ok(()));
        }
        let end = self.serve(
            connection, &channel, &consumer, &returns, &confirms, &reply_to,
        );
        // Cancelling the consumer and dropping the channel below wait for the broker. When
        // the reason is already known, tell the callers first.
        let end = match end {
            SessionEnd::Shutdown => {
                self.fail_everything();
                SessionEnd::Shutdown
            }
            SessionEnd::Lost { cause, .. } => {
                let told = cause.as_ref().is_some_and(|cause| !cause.is_generic());
                if told {
                    self.pending_lost(&cause);
                }
                SessionEnd::Lost { cause, told }
            }
        };
        // On a lost connection this fails at once; the reason is already known.
        if let Err(err) = cancel_consumer(&consumer, CONSUMER_CANCEL_WAIT) {
            log::debug!("cancelling the reply consumer: {err}");
        }
        self.shared.connected.store(false, Ordering::SeqCst);
        Ok(end)
    }

    /// The session's main loop.
    fn serve(
        &mut self,
        connection: &mut Connection,
        channel: &Channel,
        consumer: &Consumer<'_>,
        returns: &Receiver<Return>,
        confirms: &Receiver<Confirm>,
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
        let no_confirms = crossbeam_channel::never();
        loop {
            // Confirms already here are read without waiting: see `CONFIRM_LINGER`.
            loop {
                match confirms.try_recv() {
                    Ok(confirm) => self.confirmed(confirm),
                    Err(crossbeam_channel::TryRecvError::Empty) => break,
                    Err(crossbeam_channel::TryRecvError::Disconnected) => {
                        return lost(self.drain_for_reason(consumer))
                    }
                }
            }
            let now = Instant::now();
            // A stale session ends as soon as its calls in flight are done, or at the bound.
            let stale_until = self.refused_at.map(|at| at + STALE_CHANNEL_DRAIN);
            if stale_until.is_some_and(|until| self.pending.is_empty() || now >= until) {
                return lost(Some(BrokerError::other(
                    BrokerErrorKind::Rejected,
                    "the broker refused every request lately (the channel may be stale)",
                )));
            }
            let (confirm_arm, linger) = match self.tags.oldest() {
                Some(oldest) if now < oldest + CONFIRM_LINGER => {
                    (&no_confirms, oldest + CONFIRM_LINGER - now)
                }
                // Nothing to linger for: the sweep wakes the reader meanwhile.
                _ => (confirms, Duration::from_secs(3600)),
            };
            let linger = stale_until.map_or(linger, |until| linger.min(until - now));
            let resend = match self.resends.iter().map(|(at, _)| *at).min() {
                Some(at) => crossbeam_channel::at(at),
                None => crossbeam_channel::never(),
            };
            select! {
                recv(self.commands) -> call => match call {
                    Ok(call) => {
                        if let Err(cause) = self.publish(channel, reply_to, call) {
                            // Replies already here still reach their callers.
                            return lost(self.drain_for_reason(consumer).or(Some(cause)));
                        }
                    }
                    // Every handle is gone: the client was dropped.
                    Err(_) => return SessionEnd::Shutdown,
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
                recv(confirm_arm) -> confirm => match confirm {
                    Ok(confirm) => self.confirmed(confirm),
                    Err(_) => return lost(self.drain_for_reason(consumer)),
                },
                recv(resend) -> _ => {
                    if let Err(cause) = self.resend_due(channel, reply_to) {
                        return lost(self.drain_for_reason(consumer).or(Some(cause)));
                    }
                }
                recv(self.channel_asks) -> ask => if let Ok(ask) = ask {
                    self.open_side_channel(connection, ask);
                },
                recv(sweep) -> _ => self.forget_expired(Instant::now()),
                default(linger) => {}
            }
        }
    }

    /// While setting up a session for calls that require a server: probes the queue once on
    /// the new channel, before it is used for anything, so that the first call finds the
    /// answer waiting (one round trip per connection, instead of a side channel, the probe
    /// thread and two round trips on the first call). A missing queue makes the broker close
    /// the channel (404): then a fresh one is opened, so the channel calls use never carries
    /// a probe's risk. Returns the channel to use.
    fn first_probe(&mut self, connection: &mut Connection, channel: Channel) -> Result<Channel> {
        match declare_passive(&channel, &self.queue, &self.shared.watch) {
            Ok(Seen::Queue(_)) => return Ok(channel),
            Ok(Seen::NoQueue) => {}
            Err(err) => log::debug!("probing queue {:?}: {err}", self.queue),
        }
        drop(channel);
        connection.open_channel(None).map_err(Error::amqp)
    }

    /// Opens a side channel on this connection for the probe thread (one quick round trip;
    /// the probe itself runs on the probe thread). A failure here means the connection is
    /// going: the reply consumer will say so.
    fn open_side_channel(&mut self, connection: &mut Connection, ask: ChannelAsk) {
        let opened = connection
            .open_channel(None)
            .map(|channel| (self.sessions, channel))
            .map_err(|err| ProbeFailed::Broker(BrokerError::amqp(err)));
        let _ = ask.send(opened);
    }

    /// Publishes one request and files its caller, unless the caller has already given up.
    /// If publishing fails (the connection is gone, so nothing left), the call goes back to
    /// the front of `waiting`, unsent, for the next connection. The request's properties,
    /// deadline included, are the wire module's ([`wire::request::properties`]).
    fn publish(
        &mut self,
        channel: &Channel,
        reply_to: &str,
        mut call: OutgoingCall,
    ) -> std::result::Result<(), BrokerError> {
        let remaining = call.deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() || !call.state.is_queued() {
            return Ok(()); // the caller has given up; dropping `reply` tells it
        }
        if self.refused_at.is_some() {
            // This session is being replaced (see `refused`): the call waits for the next.
            self.waiting.push_back(call);
            return Ok(());
        }
        if !call.state.claim() {
            return Ok(());
        }
        let publish = Publish {
            body: &call.body,
            routing_key: self.queue.clone(),
            mandatory: true,
            immediate: false,
            properties: wire::request::properties(
                reply_to,
                &call.correlation_id,
                remaining,
                call.traceparent.as_ref(),
            ),
        };
        if let Err(err) = channel.basic_publish("", publish) {
            // Unless its caller gave up meanwhile, the call waits for the next connection.
            if call.state.unclaim() {
                self.waiting.push_front(call);
            }
            return Err(BrokerError::amqp(err));
        }
        if self.confirms {
            self.tags.published(&call.correlation_id, Instant::now());
        }
        call.attempts += 1;
        if call.attempts > 1 {
            bump(&self.shared.counters.retries);
        }
        self.pending.insert(call.correlation_id.clone(), call);
        Ok(())
    }

    /// The broker confirmed taking requests (`basic.ack`), or refused them (`basic.nack`).
    fn confirmed(&mut self, confirm: Confirm) {
        let (payload, taken) = match confirm {
            Confirm::Ack(payload) => (payload, true),
            Confirm::Nack(payload) => (payload, false),
        };
        for correlation_id in self.tags.take(payload) {
            if taken {
                self.refusal_streak = 0;
                if let Some(call) = self.pending.get(&correlation_id) {
                    call.state.confirm();
                }
            } else if let Some(call) = self.pending.remove(&correlation_id) {
                self.refused(call);
            }
        }
    }

    /// The broker refused a request: an idempotent call goes again after a short pause if its
    /// deadline leaves time for it; any other call fails at once with
    /// [`Error::RequestRefused`].
    ///
    /// A call whose earlier request went out on a lost connection fails with
    /// [`Error::ConnectionLost`] instead: a server may have run that one.
    ///
    /// A refusal is usually the queue's own (a length limit with `reject-publish`). But on
    /// RabbitMQ 3.10 a channel that first published to a quorum queue while the queue's leader
    /// was down (its node had just died) refuses every later publish to it, for as long as the
    /// channel lives, while a new connection is served at once. So after
    /// [`STALE_AFTER_REFUSALS`] refusals in a row with no request taken in between, the session
    /// is replaced: new calls wait, the calls in flight get up to [`STALE_CHANNEL_DRAIN`] to be
    /// answered, and the reader reconnects.
    fn refused(&mut self, call: OutgoingCall) {
        bump(&self.shared.counters.refusals);
        self.refusal_streak += 1;
        if self.refusal_streak >= STALE_AFTER_REFUSALS {
            self.refused_at.get_or_insert_with(Instant::now);
        }
        let doublings = call.attempts.saturating_sub(1).min(8);
        let delay = RESEND_DELAY
            .saturating_mul(1 << doublings)
            .min(MAX_RESEND_DELAY);
        let at = Instant::now() + delay;
        if call.idempotent && at < call.deadline && call.state.refused() {
            log::debug!(
                "the broker refused request {}; sending it again in {delay:?}",
                call.correlation_id
            );
            self.resends.push((at, call));
        } else if call.state.maybe_run() {
            let _ = call.reply.send(Err(Error::ConnectionLost {
                cause: Some(BrokerError::other(
                    BrokerErrorKind::Rejected,
                    "the broker refused the request when it was sent again",
                )),
            }));
        } else {
            let _ = call.reply.send(Err(Error::RequestRefused {
                queue: self.queue.clone(),
            }));
        }
    }

    /// Publishes the refused calls whose pause is over (unless their callers gave up).
    fn resend_due(
        &mut self,
        channel: &Channel,
        reply_to: &str,
    ) -> std::result::Result<(), BrokerError> {
        let now = Instant::now();
        let (due, later) = std::mem::take(&mut self.resends)
            .into_iter()
            .partition::<Vec<_>, _>(|(at, _)| *at <= now);
        self.resends = later;
        let mut due = due.into_iter().map(|(_, call)| call);
        while let Some(call) = due.next() {
            if call.is_live(now) {
                if let Err(err) = self.publish(channel, reply_to, call) {
                    // The connection is gone: the rest go on the next one.
                    self.waiting.extend(due);
                    return Err(err);
                }
            }
        }
        Ok(())
    }

    /// Hands a reply to the caller waiting for its `correlation_id`, or drops and counts it.
    fn deliver(&mut self, delivery: Delivery) {
        // Whoever it was for, a reply proves that a server consumes the queue.
        self.shared.watch.saw_reply();
        let caller = delivery
            .properties
            .correlation_id()
            .as_deref()
            .and_then(|id| self.pending.remove(id));
        let delivered = match caller {
            // Fails only if the caller stopped waiting (timed out) meanwhile.
            Some(caller) => {
                let reply =
                    wire::reply::decode(delivery.properties.headers().as_ref(), delivery.body);
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
    fn drain_for_reason(&mut self, consumer: &Consumer<'_>) -> Option<BrokerError> {
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
                reason: NoServerReason::NoQueue,
            }));
        }
    }

    /// Drops calls whose callers have timed out, so their entries do not pile up when no reply
    /// ever comes (the broker expired the request).
    fn forget_expired(&mut self, now: Instant) {
        self.pending.retain(|_, call| call.deadline > now);
        self.resends.retain(|(_, call)| call.is_live(now));
    }

    /// The connection was lost with calls published and unanswered: their outcome is unknown.
    /// Idempotent calls with time left go again, same `correlation_id`, on the next connection
    /// (so do refused calls waiting to go again); the others fail with
    /// [`Error::ConnectionLost`]. Calls not sent yet stay queued for the next connection.
    fn pending_lost(&mut self, cause: &Option<BrokerError>) {
        let now = Instant::now();
        for (_, call) in self.pending.drain() {
            if call.idempotent && call.deadline > now && call.state.requeue_after_loss() {
                self.waiting.push_back(call);
            } else {
                let _ = call.reply.send(Err(Error::ConnectionLost {
                    cause: cause.clone(),
                }));
            }
        }
        for (_, call) in self.resends.drain(..) {
            if call.is_live(now) {
                self.waiting.push_back(call);
            }
        }
    }

    /// The client is closing: fails every call, published, waiting or still in the queue.
    fn fail_everything(&mut self) {
        for (_, call) in self.pending.drain() {
            let _ = call.reply.send(Err(Error::Closed));
        }
        for call in self
            .waiting
            .drain(..)
            .chain(self.resends.drain(..).map(|(_, call)| call))
        {
            let _ = call.reply.send(Err(Error::Closed));
        }
        while let Ok(call) = self.commands.try_recv() {
            let _ = call.reply.send(Err(Error::Closed));
        }
    }
}

/// Clears `Shared::connected` when the reader thread ends, however it ends (a panic
/// included), so `is_connected` never reports a dead client as healthy.
struct DisconnectedOnExit(Arc<Shared>);

impl Drop for DisconnectedOnExit {
    fn drop(&mut self) {
        self.0.connected.store(false, Ordering::SeqCst);
    }
}

/// The broker's reason for ending a consumer's stream, if the message carries one.
fn close_reason(message: ConsumerMessage) -> Option<BrokerError> {
    match message {
        ConsumerMessage::ServerClosedConnection(err)
        | ConsumerMessage::ServerClosedChannel(err) => Some(BrokerError::amqp(err)),
        ConsumerMessage::ServerCancelled => {
            log::warn!("the broker cancelled the reply consumer");
            None
        }
        _ => None,
    }
}
