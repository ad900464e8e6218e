//! A worker thread. The workers of a session take requests from one shared consumer (an
//! idle worker takes the next; a busy one takes none), run the handler, and publish each
//! reply on their own channel. Once the broker confirms a reply (see [`Acks`]) the request
//! goes to the supervisor, which acks it on the consuming channel (see
//! [`Ledger`](super::ledger::Ledger)).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use amiquip::{Channel, Confirm, ConsumerMessage, Delivery, Publish};
use crossbeam_channel::{select, Receiver, Sender};

use super::acks::{AckError, Acks, Settled, CONFIRM_TIMEOUT, LOSS_GRACE};
use super::handle::ServerCounters;
use super::redeliveries::Redeliveries;
use super::request::{Handler, ReplyBody, Request};
use super::turns::{Quiet, Turn, Turns, QUIET_TIMEOUT};
use crate::util::{bump, is_disconnected};
use crate::wire::{self, ErrorCode};

/// How a worker ended.
pub(super) enum WorkerEnd {
    /// Told to stop, drained.
    Stopped,
    /// The channel or connection failed (with the AMQP client's error, when it gave one).
    Lost(Option<amiquip::Error>),
}

/// One worker: the session's shared consumer, and its own channel for replies.
pub(super) struct Worker<H> {
    /// Publishes the replies (with the worker's publisher confirms).
    pub(super) channel: Channel,
    /// The session's consumer, shared by its workers.
    pub(super) deliveries: Receiver<ConsumerMessage>,
    /// Where settled requests go to be acked: the supervisor.
    pub(super) settled: Sender<Vec<Settled>>,
    pub(super) turns: Arc<Turns>,
    pub(super) handler: Arc<H>,
    /// Disconnects when the session failed: take nothing more. (A graceful stop ends the
    /// shared consumer instead, once the requests already delivered are taken.)
    pub(super) stop: Receiver<()>,
    pub(super) max_reply_bytes: usize,
    pub(super) deadline_grace: Duration,
    pub(super) stats: Arc<ServerCounters>,
    pub(super) redeliveries: Arc<Redeliveries>,
    /// Most requests settled before they are handed on together; see [`Acks`].
    pub(super) ack_batch: usize,
    /// The channel's publisher confirms, when they are on.
    pub(super) confirms: Option<Receiver<Confirm>>,
}

impl<H: Handler> Worker<H> {
    pub(super) fn run(self) -> WorkerEnd {
        let end = self.serve();
        if matches!(end, WorkerEnd::Stopped) {
            let _ = self.channel.close();
        }
        end
    }

    fn serve(&self) -> WorkerEnd {
        let mut acks = Acks::new(
            self.confirms.clone(),
            self.ack_batch,
            Arc::clone(&self.redeliveries),
        );
        let confirms = acks.confirms();
        let no_confirms = crossbeam_channel::never();
        loop {
            // Checked first: once the session failed, take nothing more.
            if is_disconnected(&self.stop) {
                return self.drain(acks);
            }
            let hurry = self.turns.is_alone();
            // Confirms already here are read without waiting; see `Acks::next_wait`.
            if let Err(err) = acks
                .take_confirms()
                .and_then(|()| acks.settle(&self.settled, hurry))
            {
                return lost(err);
            }
            let (wake_on_confirm, wait) = acks.next_wait(Instant::now(), hurry);
            let confirm_arm = if wake_on_confirm {
                &confirms
            } else {
                &no_confirms
            };
            let done = select! {
                recv(self.stop) -> _ => return self.drain(acks),
                recv(self.deliveries) -> message => match message {
                    Ok(ConsumerMessage::Delivery(delivery)) => {
                        self.serve_one(delivery, &mut acks)
                    }
                    Ok(ConsumerMessage::ServerCancelled) => {
                        // The channels still work: hand on what was answered, or it comes
                        // back if the queue survives (usually it was deleted).
                        let _ = acks.flush_all(&self.settled);
                        return ended(Ok(ConsumerMessage::ServerCancelled));
                    }
                    Ok(ConsumerMessage::ClientCancelled) => return self.drain(acks),
                    // The stream ends after the cancel (to the other workers).
                    Err(_) if self.turns.is_draining() => return self.drain(acks),
                    other => return ended(other),
                },
                recv(confirm_arm) -> confirm => match confirm {
                    Ok(confirm) => {
                        acks.confirmed(confirm);
                        Ok(())
                    }
                    Err(_) => Err(AckError::ConfirmsGone),
                },
                default(wait) => match acks.confirm_deadline() {
                    Some(at) if at <= Instant::now() => Err(AckError::Unconfirmed),
                    _ => Ok(()),
                },
            };
            if let Err(err) = done {
                return lost(err);
            }
        }
    }

    /// The session ends. After a graceful stop (the consumer's stream ended once the requests
    /// the broker had sent were taken, all answered), wait for the confirms and hand
    /// everything on to be acked; after a failure, just hand on what is settled.
    fn drain(&self, mut acks: Acks) -> WorkerEnd {
        if self.turns.is_lost() {
            // The supervisor acks what is settled; the rest comes back. The consuming channel
            // may still work (the loss was another channel, or a confirm timeout), so replies
            // whose confirms are on their way get a moment: their requests need not run again.
            let _ = acks.flush_within(&self.settled, LOSS_GRACE);
            return WorkerEnd::Stopped;
        }
        match acks.flush_all(&self.settled) {
            Ok(()) => WorkerEnd::Stopped,
            Err(err) => lost(err),
        }
    }

    /// Runs the handler, publishes the reply, and files the request to be acked once the reply
    /// is confirmed: a server (or broker node) that fails before the ack leaves the request to
    /// be redelivered to another server (at least once; the client drops a second answer).
    ///
    /// Dropped unanswered, but acked: requests without `reply_to` (nowhere to answer) and
    /// requests whose caller's deadline ([`DEADLINE_HEADER`](crate::wire::DEADLINE_HEADER))
    /// has passed, and requests that keep coming back (see [`Redeliveries`]).
    ///
    /// A redelivered request runs alone on the session (see [`Turns`]); a first-time request
    /// taken meanwhile waits for it, unstarted. A request left unstarted because the session
    /// ends goes back to the queue when the consuming channel closes.
    fn serve_one(&self, delivery: Delivery, acks: &mut Acks) -> Result<(), AckError> {
        if delivery.redelivered {
            return self.serve_alone(delivery, acks);
        }
        loop {
            match self.turns.try_start() {
                Turn::Go => return Ok(self.answer(delivery, acks)?),
                Turn::Closing => return Ok(()),
                Turn::Wait => {
                    // The redelivered request waits for everything answered to be acked.
                    acks.flush_all(&self.settled)?;
                    if !self.turns.wait_turn() {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// A redelivered request: once every other request of the session is acked, answer it
    /// alone and see it acked before anything else starts.
    ///
    /// Other requests may still be in their handlers, for as long as those take: the wait for
    /// them is bounded by [`QUIET_TIMEOUT`], after which the redelivered request runs
    /// alongside them like any other (a handler that is merely slow is no reason to end the
    /// session). Only a reply left unconfirmed ends it, and each worker bounds its own
    /// replies' confirms by [`CONFIRM_TIMEOUT`].
    fn serve_alone(&self, delivery: Delivery, acks: &mut Acks) -> Result<(), AckError> {
        acks.flush_all(&self.settled)?;
        let Some(alone) = self.turns.start_alone() else {
            return Ok(());
        };
        // Wakes the supervisor: requests held behind a gap are acked at once now.
        self.settled
            .send(Vec::new())
            .map_err(|_| AckError::ConfirmsGone)?;
        match alone.wait_quiet(1, Instant::now() + QUIET_TIMEOUT) {
            Quiet::Yes => {}
            Quiet::Closing => return Ok(()),
            Quiet::TimedOut => {
                log::warn!(
                    "a redelivered request runs alongside others: {} still unanswered after \
                     {} s",
                    alone.others(),
                    QUIET_TIMEOUT.as_secs()
                );
                // Counted as open, as a started request is, until acked.
                drop(alone);
                return Ok(self.answer(delivery, acks)?);
            }
        }
        self.answer(delivery, acks)?;
        acks.flush_all(&self.settled)?;
        // Nothing else started meanwhile, so only this request is open, and the supervisor
        // acks it as soon as it gets it; bounded all the same.
        match alone.wait_quiet(0, Instant::now() + CONFIRM_TIMEOUT) {
            Quiet::Yes | Quiet::Closing => {}
            Quiet::TimedOut => log::warn!(
                "a redelivered request was not acked within {} s; the others go on",
                CONFIRM_TIMEOUT.as_secs()
            ),
        }
        Ok(())
    }

    /// Answers one request, or drops it; either way files it with `acks`.
    fn answer(&self, mut delivery: Delivery, acks: &mut Acks) -> amiquip::Result<()> {
        bump(&self.stats.received);
        let _in_progress = self.stats.in_progress();
        // The body and properties move into the request; `delivery` keeps what acking needs.
        let received = Instant::now();
        let request = Request::from_delivery(&mut delivery, SystemTime::now(), received);
        let Some(reply_to) = request.reply_to() else {
            bump(&self.stats.no_reply_to);
            log::warn!("{} dropped: it has no reply_to", request.describe());
            acks.dropped(delivery);
            return Ok(());
        };
        if let Some(late) = request.late_by().filter(|late| *late > self.deadline_grace) {
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
                "{} dropped unread: its caller's deadline passed {:.3} s ago (if that looks \
                 wrong, check the clocks: see deadline_grace)",
                request.describe(),
                late.as_secs_f64()
            );
            acks.dropped(delivery);
            return Ok(());
        }
        let key = Redeliveries::key(reply_to, request.correlation_id(), request.body());
        if request.redelivered() && self.redeliveries.is_poison(key) {
            bump(&self.stats.poison);
            log::error!(
                "{} (reply_to {reply_to:?}) dropped: the connection or channel was lost {} \
                 times while answering it",
                request.describe(),
                Redeliveries::MAX_LOSSES
            );
            acks.dropped(delivery);
            return Ok(());
        }
        let (body, error_code) = self.run_handler(&request);
        let properties = wire::reply::properties(
            request.correlation_id().map(str::to_owned),
            error_code.as_ref(),
        );
        self.redeliveries.replying(key);
        self.channel.basic_publish(
            "",
            Publish {
                body: &body,
                routing_key: reply_to.to_owned(),
                mandatory: false,
                immediate: false,
                properties,
            },
        )?;
        if let Some(code) = &error_code {
            log::debug!(
                "error reply {} to {}: {}",
                code.as_str(),
                request.describe(),
                String::from_utf8_lossy(&body)
            );
        }
        acks.replied(delivery, key);
        self.stats.answered(error_code.as_ref(), received.elapsed());
        Ok(())
    }

    /// The reply body, and an error code for error replies. Oversized replies and panics
    /// become `internal` error replies.
    fn run_handler(&self, request: &Request) -> (ReplyBody, Option<ErrorCode>) {
        let outcome = super::panics::in_handler(|| {
            catch_unwind(AssertUnwindSafe(|| self.handler.reply(request)))
        });
        match outcome {
            Ok(Ok(reply)) if reply.len() > self.max_reply_bytes => {
                log::error!(
                    "reply of {} bytes to {} is above the limit of {} bytes",
                    reply.len(),
                    request.describe(),
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
                let at = super::panics::take_location()
                    .map(|location| format!(" at {location}"))
                    .unwrap_or_default();
                log::error!("handler panicked on {}: {what}{at}", request.describe());
                let message = format!("the handler failed: {what}");
                (self.fit(message.into_bytes()), Some(ErrorCode::Internal))
            }
        }
    }
}

impl<H> Worker<H> {
    /// Cuts an error message to the reply limit, so an error reply can never be the message
    /// that breaks the channel.
    fn fit(&self, mut message: Vec<u8>) -> ReplyBody {
        message.truncate(self.max_reply_bytes);
        message.into()
    }
}

/// Why acking failed, as the worker's end.
fn lost(err: AckError) -> WorkerEnd {
    match err {
        AckError::Broker(err) => WorkerEnd::Lost(Some(err)),
        AckError::ConfirmsGone => WorkerEnd::Lost(None),
        AckError::Unconfirmed => {
            log::error!(
                "a reply was not confirmed by the broker within {} s; giving \
                 the connection up so its requests come back",
                CONFIRM_TIMEOUT.as_secs()
            );
            WorkerEnd::Lost(None)
        }
    }
}

/// Maps a consumer's end-of-stream to why the worker ended.
fn ended(message: std::result::Result<ConsumerMessage, crossbeam_channel::RecvError>) -> WorkerEnd {
    match message {
        Ok(ConsumerMessage::ServerClosedConnection(err))
        | Ok(ConsumerMessage::ServerClosedChannel(err)) => WorkerEnd::Lost(Some(err)),
        Ok(ConsumerMessage::ServerCancelled) => {
            log::error!("the broker cancelled our consumer (queue deleted?)");
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
