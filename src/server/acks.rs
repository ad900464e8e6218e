//! When a worker acks its requests: only once each reply is safely with the broker.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use std::sync::Arc;

use amiquip::{Confirm, Consumer, Delivery};
use crossbeam_channel::Receiver;

use super::redeliveries::Redeliveries;

/// How long a worker waits for the broker to confirm a reply before it gives the connection
/// up (the requests then come back to be answered again). Confirms take microseconds to
/// milliseconds; this bounds a broker that has stopped answering without closing the socket.
pub(super) const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a worker lets its replies' confirms wait before it wakes just to read them, while
/// it holds fewer than a batch of unacked requests. A worker reads the confirms that have
/// arrived whenever it wakes for its next request, so sequential calls spend no wake-up on
/// confirms; an idle worker acks this long after its last reply. With a batch or more unacked
/// it wakes for confirms at once: its prefetch window must not fill up with requests waiting
/// only for their ack, or the broker stops sending it more.
const CONFIRM_LINGER: Duration = Duration::from_millis(5);

/// A worker's requests that are done with but not yet acked, oldest first.
///
/// A request is acked only once its reply is confirmed by the broker (publisher confirms on
/// the worker's channel), so a reply lost in a broker or node failure leaves its request
/// unacked and it comes back to be answered again: at least once, end to end. Replies are
/// pipelined: the worker goes on to the next request while earlier confirms are on their way.
/// A reply the broker refuses (`basic.nack`) sends its request back to the queue at once, and
/// counts against it as a loss does (see [`Redeliveries`]).
/// Requests dropped unanswered (expired, no `reply_to`, poison) need no confirm, but they wait
/// their turn so that one `basic.ack` with `multiple` never covers an unconfirmed reply.
///
/// Acks are batched: a ready run is acked with one `basic.ack` (`multiple`) when the worker's
/// prefetch buffer is empty or the run reaches `batch`. So an idle worker has acked everything,
/// and under load the broker sees one ack per batch.
///
/// With confirms off ([`ServerOptions::publisher_confirms`](crate::ServerOptions)), a reply
/// counts as confirmed once published.
pub(super) struct Acks {
    waiting: VecDeque<Waiting>,
    /// Publishes so far on this channel: the next reply's confirm tag is this plus one.
    published: u64,
    confirms: Option<Receiver<Confirm>>,
    /// Most requests one ack may cover.
    batch: usize,
    redeliveries: Arc<Redeliveries>,
}

struct Waiting {
    delivery: Delivery,
    state: Reply,
    /// The request's [`Redeliveries::key`] (0 for requests dropped unanswered).
    key: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Reply {
    /// Confirmed, or nothing was published: may be acked.
    Settled,
    /// Published with this confirm tag, at this time; not confirmed yet.
    Unconfirmed(u64, Instant),
    /// The broker refused the reply: the request goes back to the queue.
    Refused,
}

/// What ended a wait for confirms.
pub(super) enum AckError {
    /// The channel or connection failed.
    Broker(amiquip::Error),
    /// The channel's confirms stopped (its connection died).
    ConfirmsGone,
    /// A reply was not confirmed within [`CONFIRM_TIMEOUT`].
    Unconfirmed,
}

impl From<amiquip::Error> for AckError {
    fn from(err: amiquip::Error) -> Self {
        AckError::Broker(err)
    }
}

impl Acks {
    pub(super) fn new(
        confirms: Option<Receiver<Confirm>>,
        batch: usize,
        redeliveries: Arc<Redeliveries>,
    ) -> Self {
        Acks {
            waiting: VecDeque::new(),
            published: 0,
            confirms,
            batch: batch.max(1),
            redeliveries,
        }
    }

    /// The channel's confirms, or a channel that never delivers when confirms are off.
    pub(super) fn confirms(&self) -> Receiver<Confirm> {
        self.confirms
            .clone()
            .unwrap_or_else(crossbeam_channel::never)
    }

    /// Files a request (its [`Redeliveries::key`]) whose reply was just published.
    pub(super) fn replied(&mut self, delivery: Delivery, key: u64) {
        self.published += 1;
        let state = match self.confirms {
            Some(_) => Reply::Unconfirmed(self.published, Instant::now()),
            None => Reply::Settled,
        };
        self.waiting.push_back(Waiting {
            delivery,
            state,
            key,
        });
    }

    /// Files a request dropped without a reply.
    pub(super) fn dropped(&mut self, delivery: Delivery) {
        self.waiting.push_back(Waiting {
            delivery,
            state: Reply::Settled,
            key: 0,
        });
    }

    /// Applies one confirm from the broker.
    pub(super) fn confirmed(&mut self, confirm: Confirm) {
        let (payload, to) = match confirm {
            Confirm::Ack(payload) => (payload, Reply::Settled),
            Confirm::Nack(payload) => (payload, Reply::Refused),
        };
        for waiting in &mut self.waiting {
            if let Reply::Unconfirmed(tag, _) = waiting.state {
                let covered = if payload.multiple {
                    tag <= payload.delivery_tag
                } else {
                    tag == payload.delivery_tag
                };
                if covered {
                    waiting.state = to;
                }
            }
        }
    }

    /// When the oldest unconfirmed reply was published, if there is one.
    fn oldest_unconfirmed(&self) -> Option<Instant> {
        self.waiting.iter().find_map(|waiting| match waiting.state {
            Reply::Unconfirmed(_, at) => Some(at),
            _ => None,
        })
    }

    /// When the oldest unconfirmed reply has waited too long, if there is one.
    pub(super) fn confirm_deadline(&self) -> Option<Instant> {
        self.oldest_unconfirmed().map(|at| at + CONFIRM_TIMEOUT)
    }

    /// Applies the confirms that have arrived, without waiting for more.
    pub(super) fn take_confirms(&mut self) -> Result<(), AckError> {
        loop {
            let next = match &self.confirms {
                Some(confirms) => confirms.try_recv(),
                None => return Ok(()),
            };
            match next {
                Ok(confirm) => self.confirmed(confirm),
                Err(crossbeam_channel::TryRecvError::Empty) => return Ok(()),
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    return Err(AckError::ConfirmsGone)
                }
            }
        }
    }

    /// What the worker waits for next, besides its requests: whether to wake for a confirm
    /// (only once the oldest unconfirmed reply has lingered [`CONFIRM_LINGER`]), and how long
    /// to wait at most (until that, or until [`CONFIRM_TIMEOUT`] runs out).
    pub(super) fn next_wait(&self, now: Instant) -> (bool, Duration) {
        let lingers = self.waiting.len() < self.batch;
        match self.oldest_unconfirmed() {
            None => (false, CONFIRM_TIMEOUT),
            Some(published) if lingers && now < published + CONFIRM_LINGER => {
                (false, published + CONFIRM_LINGER - now)
            }
            Some(published) => (
                true,
                (published + CONFIRM_TIMEOUT).saturating_duration_since(now),
            ),
        }
    }

    /// Acks the settled requests at the front (and requeues refused ones) when batching
    /// allows: the prefetch buffer is empty or the run is long enough.
    pub(super) fn settle(&mut self, consumer: &Consumer<'_>) -> amiquip::Result<()> {
        let run = self
            .waiting
            .iter()
            .take_while(|waiting| waiting.state == Reply::Settled)
            .count();
        let refused_next = self
            .waiting
            .get(run)
            .is_some_and(|waiting| waiting.state == Reply::Refused);
        if run >= self.batch || refused_next || consumer.receiver().is_empty() {
            self.flush(consumer)?;
        }
        Ok(())
    }

    /// Acks every settled request at the front and requeues every refused one, up to the first
    /// reply still unconfirmed.
    pub(super) fn flush(&mut self, consumer: &Consumer<'_>) -> amiquip::Result<()> {
        let mut last_settled = None;
        while let Some(front) = self.waiting.front() {
            match front.state {
                Reply::Unconfirmed(..) => break,
                Reply::Settled => last_settled = self.waiting.pop_front().map(|w| w.delivery),
                Reply::Refused => {
                    if let Some(last) = last_settled.take() {
                        consumer.ack_multiple(last)?;
                    }
                    if let Some(refused) = self.waiting.pop_front() {
                        log::warn!(
                            "fib-rpc server: the broker refused a reply (basic.nack); \
                             its request goes back to the queue"
                        );
                        self.redeliveries.refused(refused.key);
                        consumer.nack(refused.delivery, true)?;
                    }
                }
            }
        }
        match last_settled {
            Some(last) => consumer.ack_multiple(last),
            None => Ok(()),
        }
    }

    /// Waits (at most [`CONFIRM_TIMEOUT`] per reply) until every reply is confirmed, and acks
    /// everything.
    pub(super) fn flush_all(&mut self, consumer: &Consumer<'_>) -> Result<(), AckError> {
        let confirms = self.confirms();
        loop {
            self.flush(consumer)?;
            let Some(deadline) = self.confirm_deadline() else {
                return Ok(());
            };
            match confirms.recv_deadline(deadline) {
                Ok(confirm) => self.confirmed(confirm),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    return Err(AckError::Unconfirmed)
                }
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    return Err(AckError::ConfirmsGone)
                }
            }
        }
    }
}
