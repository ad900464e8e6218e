//! A worker thread: its own channel, consumer and prefetch window. It runs the handler on
//! each request, publishes the reply, and acks once the broker confirms the reply (see
//! [`Acks`]).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use amiquip::{Channel, Confirm, Consumer, ConsumerMessage, ConsumerOptions, Delivery, Publish};
use crossbeam_channel::{select, Receiver, Sender};

use super::acks::{AckError, Acks, CONFIRM_TIMEOUT};
use super::handle::ServerCounters;
use super::redeliveries::Redeliveries;
use super::request::{Handler, Request};
use crate::error::{Error, Result};
use crate::util::bump;
use crate::wire::{self, ErrorCode};

/// How a worker ended.
pub(super) enum WorkerEnd {
    /// Told to stop, drained.
    Stopped,
    /// The channel or connection failed (with the AMQP client's error, when it gave one).
    Lost(Option<amiquip::Error>),
}

/// One worker: its own channel and consumer.
pub(super) struct Worker<H> {
    pub(super) channel: Channel,
    pub(super) queue: String,
    pub(super) handler: Arc<H>,
    pub(super) stop: Receiver<()>,
    pub(super) max_reply_bytes: usize,
    pub(super) deadline_grace: Duration,
    pub(super) stats: Arc<ServerCounters>,
    pub(super) redeliveries: Arc<Redeliveries>,
    /// Most requests answered before one ack covers them all; see [`Acks`].
    pub(super) ack_batch: usize,
    /// The channel's publisher confirms, when they are on.
    pub(super) confirms: Option<Receiver<Confirm>>,
}

impl<H: Handler> Worker<H> {
    pub(super) fn run(self, consuming: Sender<Result<()>>) -> WorkerEnd {
        let consumer = match self
            .channel
            .basic_consume(self.queue.as_str(), ConsumerOptions::default())
        {
            Ok(consumer) => consumer,
            Err(err) => {
                let _ = consuming.send(Err(Error::amqp(err)));
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
        let mut acks = Acks::new(
            self.confirms.clone(),
            self.ack_batch,
            Arc::clone(&self.redeliveries),
        );
        let confirms = acks.confirms();
        let no_confirms = crossbeam_channel::never();
        loop {
            // Confirms already here are read without waiting; see `Acks::next_wait`.
            if let Err(err) = acks
                .take_confirms()
                .and_then(|()| Ok(acks.settle(consumer)?))
            {
                return lost(err);
            }
            let (wake_on_confirm, wait) = acks.next_wait(Instant::now());
            let confirm_arm = if wake_on_confirm {
                &confirms
            } else {
                &no_confirms
            };
            let done = select! {
                recv(self.stop) -> _ => return self.drain(consumer, acks),
                recv(consumer.receiver()) -> message => match message {
                    Ok(ConsumerMessage::Delivery(delivery)) => {
                        self.serve_one(consumer, delivery, &mut acks)
                    }
                    Ok(ConsumerMessage::ServerCancelled) => {
                        // The channel still works: ack what was answered, or it comes back if
                        // the queue survives (usually it was deleted).
                        let _ = acks.flush_all(consumer);
                        return ended(Ok(ConsumerMessage::ServerCancelled));
                    }
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

    /// Graceful stop: cancel the consumer, then answer what the broker had already sent us
    /// (at most the prefetch window), and ack once the replies are confirmed. amiquip queues
    /// `ClientCancelled` behind those deliveries.
    fn drain(&self, consumer: &Consumer<'_>, mut acks: Acks) -> WorkerEnd {
        if let Err(err) = acks.flush(consumer).and_then(|()| consumer.cancel()) {
            return WorkerEnd::Lost(Some(err));
        }
        loop {
            match consumer.receiver().recv() {
                Ok(ConsumerMessage::Delivery(delivery)) => {
                    if let Err(err) = self.serve_one(consumer, delivery, &mut acks) {
                        return lost(err);
                    }
                }
                Ok(ConsumerMessage::ClientCancelled) => {
                    return match acks.flush_all(consumer) {
                        Ok(()) => WorkerEnd::Stopped,
                        Err(err) => lost(err),
                    };
                }
                other => return ended(other),
            }
        }
    }

    /// Runs the handler, publishes the reply, and files the request to be acked once the reply
    /// is confirmed: a server (or broker node) that fails before the ack leaves the request to
    /// be redelivered to another server (at least once; the client drops a second answer).
    ///
    /// Dropped unanswered, but acked: requests without `reply_to` (nowhere to answer) and
    /// requests whose caller's deadline ([`DEADLINE_HEADER`](crate::wire::DEADLINE_HEADER))
    /// has passed, and requests that keep coming back (see [`Redeliveries`]).
    fn serve_one(
        &self,
        consumer: &Consumer<'_>,
        delivery: Delivery,
        acks: &mut Acks,
    ) -> Result<(), AckError> {
        // No ack is held across a redelivered request: everything before it is acked first,
        // and it is acked before the next. A redelivered request may be one whose reply breaks
        // the connection (see [`Redeliveries`]); requests still unacked at each such loss
        // would come back with it every time, be marked with it, and be dropped as poison.
        let redelivered = delivery.redelivered;
        if redelivered {
            acks.flush_all(consumer)?;
        }
        self.answer(delivery, acks)?;
        if redelivered {
            acks.flush_all(consumer)?;
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
    fn run_handler(&self, request: &Request) -> (Vec<u8>, Option<ErrorCode>) {
        let outcome = catch_unwind(AssertUnwindSafe(|| self.handler.handle(request)));
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
                log::error!(
                    "fib-rpc server: handler panicked on {}: {what}",
                    wire::preview(request.body())
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

/// Why acking failed, as the worker's end.
fn lost(err: AckError) -> WorkerEnd {
    match err {
        AckError::Broker(err) => WorkerEnd::Lost(Some(err)),
        AckError::ConfirmsGone => WorkerEnd::Lost(None),
        AckError::Unconfirmed => {
            log::error!(
                "fib-rpc server: a reply was not confirmed by the broker within {} s; giving \
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
