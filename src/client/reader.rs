//! The reader thread: it owns the AMQP connection. It sets up each session (channels, reply
//! consumer, confirms), hands replies to the callers waiting for them (unless a lone caller
//! takes its own: see [`replies`](super::replies)), reads confirms and returns, sends
//! idempotent requests again when they may have been lost, and reconnects after a loss.
//! Callers publish their requests themselves through the [`Outbox`], except with direct
//! reply-to, where the reader publishes them.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use amiquip::{
    Channel, Confirm, Connection, Consumer, ConsumerMessage, ConsumerOptions, QueueDeclareOptions,
    Return,
};
use crossbeam_channel::{select, Receiver, RecvError, Sender, TryRecvError};

use super::call::OutgoingCall;
use super::handle::Shared;
use super::options::{ClientOptions, ReplyTo, DIRECT_REPLY_TO};
use super::outbox::SessionOut;
use super::probe::{declare_passive, ChannelAsk, ProbeFailed, Seen};
use super::replies::deliver;
use crate::connect::ConnectSettings;
use crate::error::{BrokerError, BrokerErrorKind, Error, NoServerReason, Result};
use crate::reconnect::{Backoff, Brokers};
use crate::util::{bump, is_disconnected};

/// How often the reader thread forgets calls whose callers have stopped waiting.
const SWEEP_INTERVAL: Duration = Duration::from_millis(500);

/// How long the reader waits for amiquip to confirm that the reply consumer is cancelled,
/// after the broker already has (microseconds in practice; the bound is for a dying I/O thread).
const CONSUMER_CANCEL_WAIT: Duration = Duration::from_secs(1);

/// How long an idempotent request the broker refused waits before it goes again; doubled at
/// each refusal of the same call, up to [`MAX_RESEND_DELAY`].
const RESEND_DELAY: Duration = Duration::from_millis(50);
const MAX_RESEND_DELAY: Duration = Duration::from_secs(1);

/// How long the reader then lets the calls in flight finish before it reconnects.
const STALE_CHANNEL_DRAIN: Duration = Duration::from_secs(2);

/// How long the reader lets a request's confirm wait before it wakes just to read it. Replies
/// and new calls wake the reader anyway, and it reads the confirms that have arrived each time,
/// so a steady stream of calls spends no wake-up on confirms; a refusal is noticed within this.
///
/// A lone caller publishes its request and takes its reply without the reader (see
/// [`replies`](super::replies)), so the reader, asleep, does not know of its request; a
/// confirm must not wake it either, or every sequential call would cost the reader a
/// wake-up. That caller wakes the reader instead once its reply has taken this long (or half
/// its time to the deadline, if shorter): see [`confirm_watch`].
pub(super) const CONFIRM_LINGER: Duration = Duration::from_millis(5);

/// How the reader watches for confirms while it waits.
#[derive(Debug, PartialEq, Eq)]
enum ConfirmWatch {
    /// It wakes for the next confirm.
    Wake,
    /// It does not wake for a confirm, but reads those that came after this long.
    After(Duration),
    /// It does not wake for a confirm; those that came are read when it wakes for something
    /// else.
    AtNextWake,
}

/// How the reader watches for confirms, given its oldest request not yet confirmed, and
/// whether it takes replies for waiting callers this time.
///
/// A request it knows of is given [`CONFIRM_LINGER`] to be confirmed before the reader wakes
/// just for that. With nothing unconfirmed, a reader that takes replies wakes for those
/// anyway, and for confirms too (a refusal is then noticed at once). One that does not is
/// asleep while a lone caller publishes and takes its reply, and does not wake for its
/// confirm: that caller wakes it if the reply is slow, and the periodic sweep wakes it
/// meanwhile.
fn confirm_watch(oldest_unconfirmed: Option<Instant>, now: Instant, pumps: bool) -> ConfirmWatch {
    match oldest_unconfirmed {
        Some(oldest) if now < oldest + CONFIRM_LINGER => {
            ConfirmWatch::After(oldest + CONFIRM_LINGER - now)
        }
        Some(_) => ConfirmWatch::Wake,
        None if pumps => ConfirmWatch::Wake,
        None => ConfirmWatch::AtNextWake,
    }
}

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
    /// Calls for the reader to publish: all of them with direct reply-to; otherwise those of
    /// callers that found others waiting (see `outbox`).
    commands: Receiver<OutgoingCall>,
    /// Wakes the reader when a caller waits that nobody takes replies for, or a caller saw the
    /// reply stream end.
    woken: Receiver<()>,
    /// The probe thread's requests for a side channel on the current connection.
    channel_asks: Receiver<ChannelAsk>,
    /// Disconnects when the owner starts closing the client.
    closed: Receiver<()>,
    shared: Arc<Shared>,
    /// Idempotent calls the broker refused, each to go again at its time.
    resends: Vec<(Instant, OutgoingCall)>,
    /// Publisher confirms on requests ([`ClientOptions::publisher_confirms`]).
    confirms: bool,
    /// Calls require a server ([`ClientOptions::require_server`]): probe once on setting up.
    require_server: bool,
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
        woken: Receiver<()>,
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
            woken,
            channel_asks,
            closed,
            shared,
            resends: Vec::new(),
            confirms: options.publisher_confirms,
            require_server: options.require_server,
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
                    // No session: it waits for the next.
                    Ok(call) => {
                        let _ = self.shared.outbox.submit(call, None);
                    }
                    Err(_) => return false,
                },
                recv(self.closed) -> _ => return false,
                // No connection to open a side channel on: the probe finds nothing.
                recv(self.channel_asks) -> ask => if let Ok(ask) = ask {
                    let _ = ask.send(Err(ProbeFailed::NotConnected));
                },
                recv(sweep) -> _ => self.forget_expired(Instant::now()),
                default(until - now) => {}
            }
        }
    }

    /// Opens the channels, the reply consumer and the listeners for returns and confirms, and
    /// only then sends the calls that waited for a connection. Serves callers until shutdown
    /// or loss.
    fn run_session(
        &mut self,
        connection: &mut Connection,
        ready: &mut Option<Sender<Result<()>>>,
    ) -> Result<SessionEnd> {
        let mut channel = connection.open_channel(None).map_err(Error::amqp)?;
        if self.require_server {
            channel = self.first_probe(connection, channel)?;
        }
        // Requests go out on a channel of their own, which callers publish on from their own
        // threads; with direct reply-to, they must go out on the channel that consumes the
        // replies, the reader's own.
        let publisher = match self.reply_to {
            ReplyTo::ExclusiveQueue => Some(connection.open_channel(None).map_err(Error::amqp)?),
            ReplyTo::Direct => None,
        };
        let out = publisher.as_ref().unwrap_or(&channel);
        let returns = out.listen_for_returns().map_err(Error::amqp)?;
        // Listening first, so that no confirm arrives unheard.
        let confirms = match self.confirms {
            true => {
                let confirms = out.listen_for_publisher_confirms().map_err(Error::amqp)?;
                // No round trip: a channel's methods are taken in order, so every publish on
                // it comes after this; should it fail, the broker closes the channel, and
                // that says so.
                out.enable_publisher_confirms_nowait()
                    .map_err(Error::amqp)?;
                confirms
            }
            false => crossbeam_channel::never(),
        };
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
            log::warn!("reconnected to {}", self.brokers.current());
        }
        let direct = publisher.is_none().then_some(&channel);
        self.shared
            .replies
            .set_current(self.sessions, Some(consumer.receiver().clone()));
        let began = self
            .shared
            .outbox
            .begin_session(SessionOut::new(publisher, reply_to, self.confirms), direct);
        self.shared
            .set_connected(self.brokers.current().to_string(), self.sessions);
        if let Some(ready) = ready.take() {
            let _ = ready.send(Ok(()));
        }
        let end = match began {
            Ok(()) => self.serve(connection, direct, &consumer, &returns, &confirms),
            // Replies already here still reach their callers.
            Err(cause) => SessionEnd::Lost {
                cause: self.drain_for_reason(&consumer).or(Some(cause)),
                told: false,
            },
        };
        // From here on calls wait for the next session.
        let publisher = self.shared.outbox.end_session();
        // Closing the publishing channel, cancelling the consumer and dropping the channel
        // below wait for the broker. When the reason is already known, tell the callers first.
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
        drop(publisher);
        // On a lost connection this fails at once; the reason is already known.
        self.cancel_consumer(&consumer);
        self.shared.replies.set_current(self.sessions, None);
        self.shared.connected.store(false, Ordering::SeqCst);
        Ok(end)
    }

    /// Cancels the reply consumer and waits, up to [`CONSUMER_CANCEL_WAIT`], until amiquip's
    /// I/O thread has said so: on the consumer's receiver, or to a caller taking replies, who
    /// leaves the news with [`ReplyStream`](super::replies::ReplyStream). See
    /// [`cancel_consumer`](crate::util::cancel_consumer) for why it waits.
    fn cancel_consumer(&mut self, consumer: &Consumer<'_>) {
        if let Err(err) = consumer.cancel() {
            log::debug!("cancelling the reply consumer: {err}");
            return;
        }
        let until = Instant::now() + CONSUMER_CANCEL_WAIT;
        loop {
            if self.shared.replies.take_ended().is_some() {
                return;
            }
            let left = until.saturating_duration_since(Instant::now());
            select! {
                recv(consumer.receiver()) -> message => match message {
                    // A reply that came meanwhile still reaches its caller.
                    Ok(ConsumerMessage::Delivery(delivery)) => deliver(&self.shared, delivery),
                    // ClientCancelled, or the stream ended otherwise, or the I/O thread is gone.
                    _ => return,
                },
                recv(self.woken) -> _ => {}
                default(left) => {
                    log::warn!(
                        "amiquip did not confirm the reply consumer's cancel within \
                         {CONSUMER_CANCEL_WAIT:?}; the connection may not close cleanly"
                    );
                    return;
                }
            }
        }
    }

    /// The session's main loop. `direct` is the channel to publish on for callers when they
    /// cannot publish themselves (direct reply-to).
    fn serve(
        &mut self,
        connection: &mut Connection,
        direct: Option<&Channel>,
        consumer: &Consumer<'_>,
        returns: &Receiver<Return>,
        confirms: &Receiver<Confirm>,
    ) -> SessionEnd {
        let lost = |cause| SessionEnd::Lost { cause, told: false };
        let sweep = crossbeam_channel::tick(SWEEP_INTERVAL);
        let no_confirms = crossbeam_channel::never();
        let no_replies = crossbeam_channel::never();
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
            // A caller taking replies saw the stream end.
            if let Some(message) = self.shared.replies.take_ended() {
                return lost(message.and_then(close_reason));
            }
            let now = Instant::now();
            let (oldest_unconfirmed, refused_at) = self.shared.outbox.reader_view();
            // A stale session ends as soon as its calls in flight are done, or at the bound.
            let stale_until = refused_at.map(|at| at + STALE_CHANNEL_DRAIN);
            if stale_until.is_some_and(|until| self.shared.outbox.no_calls_out() || now >= until) {
                return lost(Some(BrokerError::other(
                    BrokerErrorKind::Rejected,
                    "the broker refused every request lately (the channel may be stale)",
                )));
            }
            // Replies are taken off by a lone waiting caller itself, and by the reader only
            // when some caller waits that does not take them: see `replies`.
            let pump = self.shared.replies.reader_should_pump();
            let (confirm_arm, linger) = match confirm_watch(oldest_unconfirmed, now, pump) {
                ConfirmWatch::After(linger) => (&no_confirms, linger),
                ConfirmWatch::Wake => (confirms, Duration::from_secs(3600)),
                ConfirmWatch::AtNextWake => (&no_confirms, Duration::from_secs(3600)),
            };
            let linger = stale_until.map_or(linger, |until| linger.min(until - now));
            let resend = match self.resends.iter().map(|(at, _)| *at).min() {
                Some(at) => crossbeam_channel::at(at),
                None => crossbeam_channel::never(),
            };
            let replies = match pump {
                true => consumer.receiver(),
                false => &no_replies,
            };
            select! {
                recv(self.commands) -> call => match call {
                    Ok(call) => {
                        if let Err(cause) = self.publish_handed(call, direct) {
                            // Replies already here still reach their callers.
                            return lost(self.drain_for_reason(consumer).or(Some(cause)));
                        }
                    }
                    // Every handle is gone: the client was dropped.
                    Err(_) => return SessionEnd::Shutdown,
                },
                recv(self.closed) -> _ => return SessionEnd::Shutdown,
                recv(replies) -> message => {
                    if let Err(cause) = self.take_replies(message, consumer) {
                        return lost(cause);
                    }
                }
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
                    if let Err(cause) = self.resend_due(direct) {
                        return lost(self.drain_for_reason(consumer).or(Some(cause)));
                    }
                }
                recv(self.woken) -> _ => {}
                recv(self.channel_asks) -> ask => if let Ok(ask) = ask {
                    self.open_side_channel(connection, ask);
                },
                recv(sweep) -> _ => {
                    // Nobody waits, so nobody takes replies: those to calls not waited for
                    // yet (before their callers are forgotten below: a reply that came in time
                    // is kept for a caller who collects it late) and late ones are taken
                    // here, so they do not pile up.
                    if self.shared.replies.nobody_waits() {
                        if let Err(cause) = self.take_replies(Err(RecvError), consumer) {
                            return lost(cause);
                        }
                    }
                    self.forget_expired(Instant::now());
                }
                default(linger) => {}
            }
        }
    }

    /// Publishes `first` and every call already handed in behind it. On failure the rest wait
    /// for the next connection.
    fn publish_handed(
        &mut self,
        first: OutgoingCall,
        direct: Option<&Channel>,
    ) -> std::result::Result<(), BrokerError> {
        let handed = std::iter::once(first).chain(self.commands.try_iter());
        self.shared.outbox.submit_all(handed, direct)
    }

    /// Hands `first` and every reply already behind it to their callers. `Err(RecvError)`
    /// as `first` just takes what is there. An `Err` back means the stream ended, with the
    /// broker's reason when it gave one.
    fn take_replies(
        &mut self,
        first: std::result::Result<ConsumerMessage, RecvError>,
        consumer: &Consumer<'_>,
    ) -> std::result::Result<(), Option<BrokerError>> {
        match first {
            Ok(ConsumerMessage::Delivery(delivery)) => deliver(&self.shared, delivery),
            Ok(other) => return Err(close_reason(other)),
            // A real end of the stream shows up again below.
            Err(RecvError) => {}
        }
        loop {
            match consumer.receiver().try_recv() {
                Ok(ConsumerMessage::Delivery(delivery)) => deliver(&self.shared, delivery),
                Ok(other) => return Err(close_reason(other)),
                Err(TryRecvError::Empty) => return Ok(()),
                Err(TryRecvError::Disconnected) => return Err(None),
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

    /// The broker confirmed taking requests (`basic.ack`), or refused them (`basic.nack`).
    fn confirmed(&mut self, confirm: Confirm) {
        for call in self.shared.outbox.confirmed(confirm) {
            self.refused(call);
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
    /// channel lives, while a new connection is served at once. So after two refusals in a row
    /// with no request taken in between, the [`Outbox`](super::outbox::Outbox) marks the
    /// session stale: new calls wait, the calls in flight get up to [`STALE_CHANNEL_DRAIN`] to
    /// be answered, and the reader reconnects.
    fn refused(&mut self, call: OutgoingCall) {
        bump(&self.shared.counters.refusals);
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

    /// Publishes the refused calls whose pause is over (a call whose caller gave up meanwhile
    /// is dropped by the publish). On failure the rest go on the next connection.
    fn resend_due(&mut self, direct: Option<&Channel>) -> std::result::Result<(), BrokerError> {
        let now = Instant::now();
        let (due, later) = std::mem::take(&mut self.resends)
            .into_iter()
            .partition::<Vec<_>, _>(|(at, _)| *at <= now);
        self.resends = later;
        let due = due.into_iter().map(|(_, call)| call);
        self.shared.outbox.submit_all(due, direct)
    }

    /// After the channel closed: deliver the replies still buffered and return the broker's
    /// reason for the close, if it gave one (or if a caller taking replies saw it).
    fn drain_for_reason(&mut self, consumer: &Consumer<'_>) -> Option<BrokerError> {
        if let Some(message) = self.shared.replies.take_ended() {
            return message.and_then(close_reason);
        }
        self.take_replies(Err(RecvError), consumer).err().flatten()
    }

    /// The broker returned a mandatory request: no queue is bound to the routing key.
    fn fail_returned(&mut self, returned: Return) {
        bump(&self.shared.counters.returns);
        let caller = returned
            .properties
            .correlation_id()
            .as_deref()
            .and_then(|id| self.shared.outbox.take_pending(id));
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
        self.shared.outbox.forget_expired(now);
        self.resends.retain(|(_, call)| call.is_live(now));
    }

    /// The connection was lost with calls published and unanswered: their outcome is unknown.
    /// Idempotent calls with time left go again, same `correlation_id`, on the next connection
    /// (so do refused calls waiting to go again); the others fail with
    /// [`Error::ConnectionLost`]. Calls not sent yet stay queued for the next connection.
    fn pending_lost(&mut self, cause: &Option<BrokerError>) {
        let now = Instant::now();
        let mut again = Vec::new();
        for call in self.shared.outbox.take_all_pending() {
            if call.idempotent && call.deadline > now && call.state.requeue_after_loss() {
                again.push(call);
            } else {
                let _ = call.reply.send(Err(Error::ConnectionLost {
                    cause: cause.clone(),
                }));
            }
        }
        for (_, call) in self.resends.drain(..) {
            if call.is_live(now) {
                again.push(call);
            }
        }
        self.shared.outbox.requeue(again);
    }

    /// The client is closing: fails every call, published, waiting or still in the queue.
    fn fail_everything(&mut self) {
        let outbox = &self.shared.outbox;
        for call in outbox
            .take_all_pending()
            .into_iter()
            .chain(outbox.take_all_waiting())
            .chain(self.resends.drain(..).map(|(_, call)| call))
        {
            let _ = call.reply.send(Err(Error::Closed));
        }
        while let Ok(call) = self.commands.try_recv() {
            let _ = call.reply.send(Err(Error::Closed));
        }
    }
}

/// Clears `Shared::connected` and sets `Shared::reader_ended` when the reader thread ends,
/// however it ends (a panic included), so `is_connected` never reports a dead client as
/// healthy and waiting callers stop waiting for it.
struct DisconnectedOnExit(Arc<Shared>);

impl Drop for DisconnectedOnExit {
    fn drop(&mut self) {
        self.0.connected.store(false, Ordering::SeqCst);
        self.0.reader_ended.store(true, Ordering::SeqCst);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_young_request_gets_its_linger_and_an_old_one_wakes_the_reader() {
        let now = Instant::now();
        let published = now - Duration::from_millis(2);
        assert_eq!(
            confirm_watch(Some(published), now, false),
            ConfirmWatch::After(CONFIRM_LINGER - Duration::from_millis(2))
        );
        let old = now - CONFIRM_LINGER;
        assert_eq!(confirm_watch(Some(old), now, false), ConfirmWatch::Wake);
        assert_eq!(confirm_watch(Some(old), now, true), ConfirmWatch::Wake);
    }

    #[test]
    fn with_nothing_unconfirmed_only_a_reader_taking_replies_wakes_for_confirms() {
        let now = Instant::now();
        assert_eq!(confirm_watch(None, now, true), ConfirmWatch::Wake);
        // A lone caller's confirms do not wake the reader.
        assert_eq!(confirm_watch(None, now, false), ConfirmWatch::AtNextWake);
    }
}
