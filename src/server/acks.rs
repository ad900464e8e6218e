//! When a worker's requests may be acked: only once each reply is safely with the broker.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use std::sync::Arc;

use amiquip::{Confirm, Delivery};
use crossbeam_channel::{Receiver, Sender};

use super::redeliveries::Redeliveries;

/// How long a worker waits for the broker to confirm a reply before it gives the connection
/// up (the requests then come back to be answered again). Confirms take microseconds to
/// milliseconds; this bounds a broker that has stopped answering without closing the socket.
pub(super) const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// How long, after the session was lost, a worker still waits for confirms already on their
/// way: the consuming channel may still work (the loss was another channel, or a timeout), and
/// a request whose reply is confirmed and acked in time does not run again. A dead connection
/// ends the wait at once.
pub(super) const LOSS_GRACE: Duration = Duration::from_secs(1);

/// How long a worker lets its replies' confirms (and requests it holds settled) wait before it
/// wakes just for them, while it holds fewer than a batch. A worker reads the confirms that
/// have arrived whenever it wakes for its next request, so sequential calls spend no wake-up
/// on confirms; an idle worker hands its requests to be acked this long after its last reply
/// at most. With a batch or more held it wakes for confirms at once: the session's prefetch
/// window must not fill up with requests waiting only for their ack, or the broker stops
/// sending more.
const CONFIRM_LINGER: Duration = Duration::from_millis(5);

/// A request done with, handed to the session's supervisor to be acked (see
/// [`Ledger`](super::ledger::Ledger)).
pub(super) struct Settled {
    pub(super) delivery: Delivery,
    /// The broker refused its reply: requeue it instead.
    pub(super) refused: bool,
}

/// A worker's requests that are done with but not yet handed on to be acked, oldest first.
///
/// A request is acked only once its reply is confirmed by the broker (publisher confirms on
/// the worker's own channel), so a reply lost in a broker or node failure leaves its request
/// unacked and it comes back to be answered again: at least once, end to end. Replies are
/// pipelined: the worker goes on to the next request while earlier confirms are on their way.
/// A reply the broker refuses (`basic.nack`) sends its request back to the queue at once, and
/// counts against it as a loss does (see [`Redeliveries`]).
/// Requests dropped unanswered (expired, no `reply_to`, poison) need no confirm.
///
/// Settled requests are handed to the supervisor (which acks them on the session's consuming
/// channel) in batches: when the run reaches `batch`, or once the oldest has waited
/// [`CONFIRM_LINGER`]. So an idle server has acked everything within milliseconds, and the
/// supervisor wakes once per batch.
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
    /// When it was filed (its reply published, or it was dropped).
    filed: Instant,
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
    /// The channel's confirms stopped (its connection died), or the session's supervisor no
    /// longer takes settled requests (the session ended).
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
        let now = Instant::now();
        let state = match self.confirms {
            Some(_) => Reply::Unconfirmed(self.published, now),
            None => Reply::Settled,
        };
        self.waiting.push_back(Waiting {
            delivery,
            state,
            key,
            filed: now,
        });
    }

    /// Files a request dropped without a reply.
    pub(super) fn dropped(&mut self, delivery: Delivery) {
        self.waiting.push_back(Waiting {
            delivery,
            state: Reply::Settled,
            key: 0,
            filed: Instant::now(),
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

    /// When the oldest request held settled is handed on even without a full batch.
    fn hand_on_at(&self) -> Option<Instant> {
        self.waiting
            .front()
            .filter(|front| !matches!(front.state, Reply::Unconfirmed(..)))
            .map(|front| front.filed + CONFIRM_LINGER)
    }

    /// What the worker waits for next, besides its requests: whether to wake for a confirm
    /// (only once the oldest unconfirmed reply has lingered [`CONFIRM_LINGER`], or at once in
    /// a `hurry`), and how long to wait at most (until that, until requests held settled are
    /// due to be handed on, or until [`CONFIRM_TIMEOUT`] runs out).
    pub(super) fn next_wait(&self, now: Instant, hurry: bool) -> (bool, Duration) {
        let lingers = self.waiting.len() < self.batch && !hurry;
        let (wake_on_confirm, until) = match self.oldest_unconfirmed() {
            None => (false, now + CONFIRM_TIMEOUT),
            Some(published) if lingers && now < published + CONFIRM_LINGER => {
                (false, published + CONFIRM_LINGER)
            }
            Some(published) => (true, published + CONFIRM_TIMEOUT),
        };
        let until = match self.hand_on_at() {
            Some(due) => until.min(due),
            None => until,
        };
        (wake_on_confirm, until.saturating_duration_since(now))
    }

    /// Hands the settled requests at the front on to be acked (and refused ones to be
    /// requeued) when batching allows: the run is a batch long, the oldest has waited
    /// [`CONFIRM_LINGER`], or in a `hurry`. Handing on wakes the supervisor, so under load
    /// it wakes once per batch, and a sequential caller costs it no wake-up per call.
    pub(super) fn settle(
        &mut self,
        to: &Sender<Vec<Settled>>,
        hurry: bool,
    ) -> Result<(), AckError> {
        let run = self
            .waiting
            .iter()
            .take_while(|waiting| waiting.state == Reply::Settled)
            .count();
        let refused_next = self
            .waiting
            .get(run)
            .is_some_and(|waiting| waiting.state == Reply::Refused);
        let due = self.hand_on_at().is_some_and(|due| due <= Instant::now());
        if run >= self.batch || refused_next || (run > 0 && (hurry || due)) {
            self.flush(to)?;
        }
        Ok(())
    }

    /// Hands on every settled and refused request at the front, up to the first reply still
    /// unconfirmed.
    pub(super) fn flush(&mut self, to: &Sender<Vec<Settled>>) -> Result<(), AckError> {
        let mut batch = Vec::new();
        while let Some(front) = self.waiting.front() {
            let refused = match front.state {
                Reply::Unconfirmed(..) => break,
                Reply::Settled => false,
                Reply::Refused => true,
            };
            let Some(done) = self.waiting.pop_front() else {
                break;
            };
            if refused {
                log::warn!(
                    "the broker refused a reply (basic.nack); its request goes \
                     back to the queue"
                );
                self.redeliveries.refused(done.key);
            }
            batch.push(Settled {
                delivery: done.delivery,
                refused,
            });
        }
        if batch.is_empty() {
            return Ok(());
        }
        to.send(batch).map_err(|_| AckError::ConfirmsGone)
    }

    /// Hands on what is settled, waiting at most `bound` for the confirms still missing;
    /// what is not confirmed by then stays (its request comes back).
    pub(super) fn flush_within(
        &mut self,
        to: &Sender<Vec<Settled>>,
        bound: Duration,
    ) -> Result<(), AckError> {
        let until = Instant::now() + bound;
        let confirms = self.confirms();
        self.take_confirms()?;
        loop {
            self.flush(to)?;
            let Some(deadline) = self.confirm_deadline() else {
                return Ok(());
            };
            match confirms.recv_deadline(deadline.min(until)) {
                Ok(confirm) => self.confirmed(confirm),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => return Ok(()),
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    return Err(AckError::ConfirmsGone)
                }
            }
        }
    }

    /// Waits (at most [`CONFIRM_TIMEOUT`] per reply) until every reply is confirmed, and
    /// hands everything on.
    pub(super) fn flush_all(&mut self, to: &Sender<Vec<Settled>>) -> Result<(), AckError> {
        let confirms = self.confirms();
        loop {
            self.flush(to)?;
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
