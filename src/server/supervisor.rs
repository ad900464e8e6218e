//! The supervisor thread: owns the server's connection and its workers, and gets a new
//! connection when one is lost.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use amiquip::{
    AmqpValue, Channel, Confirm, Connection, Consumer, ConsumerMessage, ConsumerOptions, Delivery,
    FieldTable, QueueDeclareOptions,
};
use crossbeam_channel::{select, Receiver, RecvTimeoutError, Sender};

use super::acks::Settled;
use super::handle::ServerCounters;
use super::ledger::{Act, Ledger};
use super::options::{QueueKind, ServerOptions};
use super::redeliveries::Redeliveries;
use super::request::Handler;
use super::turns::Turns;
use super::worker::{Worker, WorkerEnd};
use crate::connect::{is_generic, more_specific, ConnectSettings};
use crate::error::{Error, Result};
use crate::reconnect::{Backoff, Brokers};
use crate::util::{bump, cancel_consumer, is_disconnected};

/// Owns the connection and the workers, and gets a new connection when one is lost.
pub(super) struct Supervisor<H> {
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
    /// Told to stop; workers drained.
    Stopped,
    /// The connection or a channel failed (with the AMQP client's error, when it gave one).
    Lost(Option<amiquip::Error>),
}

impl<H: Handler> Supervisor<H> {
    pub(super) fn new(
        brokers: Brokers,
        options: ServerOptions,
        handler: H,
        stats: Arc<ServerCounters>,
        last_failure: Arc<Mutex<Option<String>>>,
        stop: Receiver<()>,
    ) -> Self {
        Supervisor {
            brokers,
            settings: options.connect.clone(),
            backoff: Backoff::from_settings(options.backoff),
            options,
            handler: Arc::new(handler),
            stats,
            redeliveries: Arc::new(Redeliveries::default()),
            last_failure,
            stop,
        }
    }

    /// Serves, reconnecting after every loss, until stopped. The first connection is special:
    /// if it fails, the server ends with the error (which `start` reports) instead of
    /// retrying; with `lazy_start`, only if the brokers refused us.
    pub(super) fn run(mut self, ready: ReadySignal) -> Result<()> {
        let mut ready = Some(ready);
        let mut connections = 0u64;
        loop {
            let attempt = self
                .brokers
                .connect_round(&self.settings, || is_disconnected(&self.stop));
            let mut connection = match attempt {
                Ok(connection) => connection,
                Err(err) if ready.is_some() && !self.waits_for(&err) => return Err(err),
                Err(_) if is_disconnected(&self.stop) => return Ok(()),
                Err(err) => {
                    log::warn!("{}; retrying", err.full_message());
                    self.note_failure(err.full_message());
                    if !self.pause() {
                        return Ok(());
                    }
                    continue;
                }
            };
            if is_disconnected(&self.stop) {
                return connection.close().map_err(Error::amqp);
            }
            let started = Instant::now();
            let served = self.serve_connection(&mut connection, &mut ready, &mut connections);
            let broker = self
                .stats
                .broker
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            let broker = broker.unwrap_or_else(|| self.brokers.current().to_string());
            let closed = connection.close();
            let lost = match served {
                Ok(Served::Stopped) => return closed.map_err(Error::amqp),
                // A refusal while setting up the first time is for `start` to report; losing
                // the connection meanwhile is not (a poison request can do that): retry.
                Err(err) if ready.is_some() && !is_connection_loss(&err) => return Err(err),
                Err(err) => {
                    // This broker accepts connections but cannot serve us: try the next first.
                    self.brokers.skip_current();
                    format!("setting up on {broker}: {}", err.full_message())
                }
                // After a socket failure, closing returns the AMQP client's own error.
                Ok(Served::Lost(seen)) => match more_specific(seen, closed.err()) {
                    Some(cause) => format!("connection to {broker} lost: {cause}"),
                    None => format!("connection to {broker} lost"),
                },
            };
            log::error!("{lost}; reconnecting");
            self.note_failure(lost);
            if started.elapsed() >= self.backoff.max() {
                self.backoff.reset();
            }
            if !self.pause() {
                return Ok(());
            }
        }
    }

    /// Whether to wait for a broker that failed the first connection: only with
    /// `lazy_start`, and not when it refused us (waiting would not change that).
    fn waits_for(&self, err: &Error) -> bool {
        self.options.lazy_start && !err.is_refused_connection()
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

    /// Makes sure the queue exists, starts the session (see [`Session`]), reports ready the
    /// first time, and acks what the workers settle until told to stop or the session fails.
    /// Errors are setup failures.
    fn serve_connection(
        &self,
        connection: &mut Connection,
        ready: &mut Option<ReadySignal>,
        sessions: &mut u64,
    ) -> Result<Served> {
        ensure_queue(connection, &self.options.queue, self.options.declare_as)?;
        // The workers' reply channels first, so that nothing is consumed if one cannot open.
        let mut replies = Vec::with_capacity(self.options.workers);
        for _ in 0..self.options.workers {
            replies.push(self.open_reply_channel(connection)?);
        }
        let window = u16::try_from(self.options.workers)
            .unwrap_or(u16::MAX)
            .saturating_mul(self.options.prefetch);
        let intake = connection.open_channel(None).map_err(Error::amqp)?;
        let consumer = intake
            .qos(0, window, false)
            .and_then(|()| {
                intake.basic_consume(self.options.queue.as_str(), ConsumerOptions::default())
            })
            .map_err(Error::amqp)?;
        let turns = Arc::new(Turns::default());
        let (settled_tx, settled) = crossbeam_channel::unbounded();
        let crew = match self.start_crew(replies, consumer.receiver(), &settled_tx, &turns) {
            Ok(crew) => crew,
            Err(err) => {
                let _ = cancel_consumer(&consumer, CANCEL_BOUND);
                return Err(err);
            }
        };
        drop(settled_tx);
        log::info!(
            "{} workers consuming {:?}",
            crew.workers.len(),
            self.options.queue
        );
        *sessions += 1;
        let broker = self.brokers.current().to_string(); // password masked
        if *sessions > 1 {
            bump(&self.stats.reconnects);
            log::warn!("reconnected to {broker}");
        }
        *self.stats.broker.lock().unwrap_or_else(|e| e.into_inner()) = Some(broker);
        if let Some(ready) = ready.take() {
            ready.fire();
        }
        let mut session = Session {
            intake: &intake,
            ledger: Ledger::new(usize::from(self.options.prefetch)),
            turns,
            settled,
        };
        let served = self.run_session(&mut session, &consumer, crew);
        // Give amiquip time to report the cancel before the consumer goes (see
        // `cancel_consumer`); on a dead connection this fails at once.
        let _ = cancel_consumer(&consumer, CANCEL_BOUND);
        drop(consumer);
        if matches!(served, Served::Stopped) {
            let _ = intake.close();
        }
        Ok(served)
    }

    /// Acks what the workers settle until told to stop or a worker ends on its own.
    ///
    /// A graceful stop cancels the consumer: the workers answer the requests the broker had
    /// already sent (at most the session's prefetch window), and end when the consumer's
    /// stream does. After a failure they answer nothing more.
    fn run_session(
        &self,
        session: &mut Session<'_>,
        consumer: &Consumer<'_>,
        mut crew: Crew,
    ) -> Served {
        let mut failed = loop {
            select! {
                recv(self.stop) -> _ => break None,
                // Before the stop, a worker ending on its own is a failure.
                recv(crew.ended) -> _ => {
                    crew.running -= 1;
                    break Some(None);
                }
                recv(session.settled) -> batch => match batch {
                    Ok(batch) => {
                        if let Err(err) = session.file(batch) {
                            break Some(Some(err));
                        }
                    }
                    Err(_) => break Some(None),
                },
            }
        };
        if failed.is_none() {
            session.turns.drain();
            if let Err(err) = consumer.cancel() {
                failed = Some(Some(err));
            }
        }
        let mut end = SessionEnd {
            failed,
            at: Instant::now(),
        };
        if end.failed.is_some() {
            crew.lose(&session.turns);
        }
        let turns = Arc::clone(&session.turns);
        let settled = session.settled.clone();
        crew.wait_out(&turns, &settled, &mut end, |batch| session.file(batch));
        let SessionEnd {
            mut failed,
            at: ended_at,
        } = end;
        let stopped_all = join_workers(crew.workers);
        // Everything settled is acked, even after a loss: answered and confirmed requests need
        // not come back (on a dead connection this fails harmlessly).
        while let Ok(batch) = session.settled.try_recv() {
            let _ = session.file(batch);
        }
        if let Err(err) = session.ack(true) {
            failed = failed.or(Some(Some(err)));
        }
        match failed.or(stopped_all) {
            None => Served::Stopped,
            Some(seen) => {
                self.redeliveries.lost(ended_at);
                Served::Lost(seen)
            }
        }
    }

    /// Starts every worker on the shared consumer. If one cannot start, stops the others and
    /// returns why.
    fn start_crew(
        &self,
        replies: Vec<(Channel, Option<Receiver<Confirm>>)>,
        deliveries: &Receiver<ConsumerMessage>,
        settled: &Sender<Vec<Settled>>,
        turns: &Arc<Turns>,
    ) -> Result<Crew> {
        let (stop, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let (ended_tx, ended) = crossbeam_channel::unbounded::<bool>();
        let mut crew = Crew {
            workers: Vec::with_capacity(replies.len()),
            running: 0,
            stop: Some(stop),
            ended,
        };
        for (index, (channel, confirms)) in replies.into_iter().enumerate() {
            let worker = Worker {
                channel,
                deliveries: deliveries.clone(),
                settled: settled.clone(),
                turns: Arc::clone(turns),
                handler: Arc::clone(&self.handler),
                stop: stop_rx.clone(),
                max_reply_bytes: self.options.max_reply_bytes,
                deadline_grace: self.options.deadline_grace,
                stats: Arc::clone(&self.stats),
                redeliveries: Arc::clone(&self.redeliveries),
                ack_batch: usize::from(self.options.prefetch / 2).max(1),
                confirms,
            };
            let ended = ended_tx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("fib-rpc-worker-{index}"))
                .spawn(move || {
                    let mut signal = EndedSignal::new(ended);
                    let end = worker.run();
                    signal.lost = !matches!(end, WorkerEnd::Stopped);
                    end
                });
            match spawned {
                Ok(thread) => {
                    crew.workers.push(thread);
                    crew.running += 1;
                }
                Err(err) => {
                    crew.lose(turns);
                    join_workers(crew.workers);
                    return Err(Error::Io(err));
                }
            }
        }
        Ok(crew)
    }

    /// Opens a worker's channel for its replies, with publisher confirms when they are on.
    fn open_reply_channel(
        &self,
        connection: &mut Connection,
    ) -> Result<(Channel, Option<Receiver<Confirm>>)> {
        let confirms = self.options.publisher_confirms;
        connection
            .open_channel(None)
            .and_then(|channel| {
                // Listening first, so no confirm can arrive unheard.
                let confirms = match confirms {
                    true => {
                        let confirms = channel.listen_for_publisher_confirms()?;
                        channel.enable_publisher_confirms()?;
                        Some(confirms)
                    }
                    false => None,
                };
                Ok((channel, confirms))
            })
            .map_err(Error::amqp)
    }
}

/// How long the supervisor waits for amiquip to report its consumer cancelled.
const CANCEL_BOUND: Duration = Duration::from_secs(5);

/// One connection's consuming side: the channel the workers' requests arrive on, and what is
/// needed to ack them there.
///
/// The session's workers share one consumer (an idle worker takes the next request, so none
/// waits behind a slow one while another worker is idle) and answer on their own channels.
/// The supervisor owns the consuming channel and its consumer (amiquip's `Channel` cannot be
/// shared between threads, and a consumer cannot leave the thread of its channel) and acks
/// there what the workers settle, in tag order (see [`Ledger`]).
struct Session<'a> {
    intake: &'a Channel,
    ledger: Ledger<Delivery>,
    turns: Arc<Turns>,
    settled: Receiver<Vec<Settled>>,
}

impl Session<'_> {
    /// Files settled requests, and the ones that arrived meanwhile, then acks what it may. An
    /// empty batch is a redelivered request asking for everything settled to be acked.
    fn file(&mut self, batch: Vec<Settled>) -> amiquip::Result<()> {
        let mut next = Some(batch);
        while let Some(batch) = next {
            for settled in batch {
                let tag = settled.delivery.delivery_tag();
                self.ledger.settled(tag, settled.delivery, settled.refused);
            }
            next = self.settled.try_recv().ok();
        }
        self.ack(self.turns.is_alone())
    }

    /// Acks (and requeues) what the ledger allows; `everything` settled if asked.
    fn ack(&mut self, everything: bool) -> amiquip::Result<()> {
        let (acts, finished) = self.ledger.acts(everything);
        for act in acts {
            match act {
                Act::AckThrough(delivery) => delivery.ack_multiple(self.intake)?,
                Act::Ack(delivery) => delivery.ack(self.intake)?,
                Act::Requeue(delivery) => delivery.nack(self.intake, true)?,
            }
        }
        self.turns.acked(finished);
        Ok(())
    }
}

/// Tells everyone waiting for the server to consume, at once: the flag says it does, and
/// dropping the sender wakes every receiver. The supervisor ending without firing it wakes them
/// too, with the flag still down.
pub(super) struct ReadySignal {
    pub(super) flag: Arc<AtomicBool>,
    pub(super) wake: Sender<()>,
}

impl ReadySignal {
    fn fire(self) {
        self.flag.store(true, Ordering::SeqCst);
        drop(self.wake);
    }
}

/// The workers serving one connection, and the signals between them and the supervisor.
struct Crew {
    workers: Vec<JoinHandle<WorkerEnd>>,
    /// Workers that have not reported their end yet.
    running: usize,
    /// The workers stop when this is dropped (taken).
    stop: Option<Sender<()>>,
    /// Gets a message when any worker ends: true when it ended by a failure (or a panic).
    ended: Receiver<bool>,
}

impl Crew {
    /// The session is lost: every wait on its turns returns, and the workers take nothing
    /// more and end.
    fn lose(&mut self, turns: &Turns) {
        turns.close(true);
        self.stop = None;
    }

    /// Waits until every worker has ended, filing what they settle meanwhile. A failure
    /// meanwhile (a worker lost its channel, or acking failed) is noted in `end` and loses the
    /// session at once, as it would before the stop: nobody waits for the acks of requests
    /// that will never be acked.
    fn wait_out(
        &mut self,
        turns: &Turns,
        settled: &Receiver<Vec<Settled>>,
        end: &mut SessionEnd,
        mut file: impl FnMut(Vec<Settled>) -> amiquip::Result<()>,
    ) {
        let mut settled = settled.clone();
        while self.running > 0 {
            let failure = select! {
                recv(self.ended) -> lost => {
                    self.running -= 1;
                    lost.unwrap_or(true).then_some(None)
                }
                recv(settled) -> batch => match batch {
                    Ok(batch) => file(batch).err().map(Some),
                    // Every worker is gone; their end signals follow.
                    Err(_) => {
                        settled = crossbeam_channel::never();
                        None
                    }
                },
            };
            if let Some(seen) = failure {
                if end.failed.is_none() {
                    end.at = Instant::now();
                    self.lose(turns);
                }
                end.failed = end.failed.take().or(Some(seen));
            }
        }
    }
}

/// How a session is ending.
struct SessionEnd {
    /// By a failure (with the AMQP client's error, when it gave one), if it is one.
    failed: Option<Option<amiquip::Error>>,
    /// When it failed, or when the stop began.
    at: Instant,
}

/// Whether a setup error means the connection went away (rather than the broker refusing
/// something we asked).
fn is_connection_loss(err: &Error) -> bool {
    match err {
        Error::Broker(err) => err.amqp_error().is_some_and(|err| {
            is_generic(err) || matches!(err, amiquip::Error::ServerClosedConnection { .. })
        }),
        _ => false,
    }
}

/// Tells the supervisor that a worker ended, however it ended (a panic included), by sending
/// when dropped: whether it ended by a failure.
struct EndedSignal {
    to: Sender<bool>,
    /// Until the worker says otherwise, it failed (a panic leaves it so).
    lost: bool,
}

impl EndedSignal {
    fn new(to: Sender<bool>) -> Self {
        EndedSignal { to, lost: true }
    }
}

impl Drop for EndedSignal {
    fn drop(&mut self) {
        let _ = self.to.send(self.lost);
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
                log::error!("a worker thread panicked");
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
    let probe = connection.open_channel(None).map_err(Error::amqp)?;
    match probe.queue_declare_passive(queue) {
        Ok(_) => {
            let _ = probe.close();
            return Ok(());
        }
        Err(amiquip::Error::ServerClosedChannel {
            code: NOT_FOUND, ..
        }) => {}
        Err(err) => return Err(Error::amqp(err)),
    }
    let declare = connection.open_channel(None).map_err(Error::amqp)?;
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
            log::info!("declared {kind:?} queue {queue:?}");
            let _ = declare.close();
            Ok(())
        }
        Err(amiquip::Error::ServerClosedChannel {
            code: PRECONDITION_FAILED,
            ..
        }) => {
            // Another process declared it first, with other arguments; make sure it exists.
            connection
                .open_channel(None)
                .and_then(|channel| channel.queue_declare_passive(queue).map(drop))
                .map_err(Error::amqp)?;
            Ok(())
        }
        Err(err) => Err(Error::amqp(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::{Crew, EndedSignal, SessionEnd};
    use crate::server::turns::{Quiet, Turn, Turns};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    #[test]
    fn a_worker_lost_during_a_drain_releases_the_others_at_once() {
        let turns = Arc::new(Turns::default());
        let (stop, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let (ended_tx, ended) = crossbeam_channel::unbounded();
        let (_settled_tx, settled) = crossbeam_channel::unbounded();
        let mut crew = Crew {
            workers: Vec::new(),
            running: 2,
            stop: Some(stop),
            ended,
        };
        // Worker A holds a request; worker B runs a redelivered one alone, waiting for it.
        assert!(matches!(turns.try_start(), Turn::Go));
        let b = {
            let turns = Arc::clone(&turns);
            let signal = EndedSignal::new(ended_tx.clone());
            std::thread::spawn(move || {
                let mut signal = signal;
                let alone = turns.start_alone().unwrap();
                let quiet = alone.wait_quiet(1, Instant::now() + Duration::from_secs(20));
                signal.lost = false;
                matches!(quiet, Quiet::Closing)
            })
        };
        while !turns.is_alone() {
            std::thread::sleep(Duration::from_millis(1));
        }
        // A graceful stop is draining when worker A loses its channel.
        turns.drain();
        let started = Instant::now();
        drop(EndedSignal::new(ended_tx));
        let mut end = SessionEnd {
            failed: None,
            at: started,
        };
        crew.wait_out(&turns, &settled, &mut end, |_| Ok(()));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "B waited it out"
        );
        assert!(matches!(end.failed, Some(None)), "the session failed");
        assert!(b.join().unwrap(), "B's wait ended with the session");
        assert!(
            crate::util::is_disconnected(&stop_rx),
            "the workers were stopped"
        );
        assert!(matches!(turns.try_start(), Turn::Closing));
    }

    #[test]
    fn workers_that_drain_normally_end_the_session_as_stopped() {
        let turns = Turns::default();
        let (stop, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let (ended_tx, ended) = crossbeam_channel::unbounded();
        let (_settled_tx, settled) = crossbeam_channel::unbounded();
        let mut crew = Crew {
            workers: Vec::new(),
            running: 2,
            stop: Some(stop),
            ended,
        };
        turns.drain();
        for _ in 0..2 {
            let mut signal = EndedSignal::new(ended_tx.clone());
            signal.lost = false;
        }
        let mut end = SessionEnd {
            failed: None,
            at: Instant::now(),
        };
        crew.wait_out(&turns, &settled, &mut end, |_| Ok(()));
        assert!(end.failed.is_none());
        assert!(!crate::util::is_disconnected(&stop_rx));
        assert!(matches!(turns.try_start(), Turn::Go));
    }
}
