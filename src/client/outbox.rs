//! The publishing side of a client, shared by its callers and its reader thread: where a
//! call's request goes out, which calls are out, and which wait for a connection.
//!
//! With an exclusive reply queue, requests go out on a channel of their own, behind
//! [`Outbox`]'s lock, so any thread can publish: a caller with nobody else waiting publishes
//! its request itself, with no thread hand-off on the way out. When others wait, callers hand
//! their calls to the reader thread, which is awake for their replies anyway and publishes
//! every call it finds at once, so a crowd costs fewer wake-ups (of the reader and of amiquip's
//! I/O thread) than each caller publishing alone would. With direct reply-to the broker wants
//! requests published on the channel that consumes the replies, which only the reader thread
//! may touch (amiquip's `Channel` is not `Sync`, and its `Consumer` borrows it), so there the
//! reader publishes them all.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use amiquip::{Channel, Confirm, Publish};

use super::call::OutgoingCall;
use super::confirms::ConfirmTags;
use super::stats::Counters;
use crate::error::BrokerError;
use crate::util::bump;
use crate::wire;

/// Refusals in a row, with no request taken in between, after which the session is taken for
/// stale and replaced; see [`Outbox::confirmed`].
const STALE_AFTER_REFUSALS: u32 = 2;

/// What callers and the reader share to send requests.
pub(super) struct Outbox {
    /// The server queue: every request's routing key.
    queue: String,
    /// The session to publish on, and the calls waiting for one. Held while publishing, so
    /// requests go out in the order their confirm tags are counted.
    state: Mutex<OutboxState>,
    counters: Arc<Counters>,
    /// Published calls by `correlation_id`, until answered, refused, returned or given up.
    /// Locked after `state` when both are needed, never before.
    pending: Mutex<HashMap<String, OutgoingCall>>,
}

#[derive(Default)]
struct OutboxState {
    /// The current session, while connected.
    session: Option<SessionOut>,
    /// Calls made while disconnected (in order), and idempotent calls to be sent again after
    /// a loss: sent first on the next connection.
    waiting: VecDeque<OutgoingCall>,
}

/// One session's publishing state.
pub(super) struct SessionOut {
    /// The channel callers publish on; `None` when the reader publishes on its own channel
    /// (direct reply-to).
    channel: Option<Channel>,
    reply_to: String,
    /// Publisher confirms are on: requests are numbered for them.
    confirms: bool,
    /// Published requests awaiting their confirm.
    tags: ConfirmTags,
    /// Requests refused in a row, with none taken in between.
    refusal_streak: u32,
    /// When this session was found stale: it is to be replaced, and calls wait for the next.
    refused_at: Option<Instant>,
}

impl SessionOut {
    /// A session whose requests go out on `channel` (from callers' threads), or, with `None`,
    /// on the channel the reader passes to each publish.
    pub(super) fn new(channel: Option<Channel>, reply_to: String, confirms: bool) -> Self {
        SessionOut {
            channel,
            reply_to,
            confirms,
            tags: ConfirmTags::default(),
            refusal_streak: 0,
            refused_at: None,
        }
    }
}

impl Outbox {
    pub(super) fn new(queue: String, counters: Arc<Counters>) -> Self {
        Outbox {
            queue,
            state: Mutex::new(OutboxState::default()),
            counters,
            pending: Mutex::new(HashMap::new()),
        }
    }

    fn state(&self) -> MutexGuard<'_, OutboxState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pending(&self) -> MutexGuard<'_, HashMap<String, OutgoingCall>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes `call` on the current session, or keeps it for the next one when there is
    /// none (or the current one is being replaced). `direct` is the reader's own channel,
    /// for a session without a channel of its own.
    ///
    /// An `Err` means publishing failed: the connection is going, and the call waits for the
    /// next one, unsent.
    pub(super) fn submit(
        &self,
        call: OutgoingCall,
        direct: Option<&Channel>,
    ) -> Result<(), BrokerError> {
        self.submit_all(std::iter::once(call), direct)
    }

    /// Publishes `calls` in order, as [`submit`](Self::submit) does, taking the lock once. If
    /// one fails, it and the rest wait for the next connection, in order.
    pub(super) fn submit_all(
        &self,
        calls: impl IntoIterator<Item = OutgoingCall>,
        direct: Option<&Channel>,
    ) -> Result<(), BrokerError> {
        self.publish_all(&mut self.state(), calls, direct)
    }

    /// Starts publishing on `session`: first the calls that waited for it, in order, before
    /// any caller can publish on it.
    pub(super) fn begin_session(
        &self,
        session: SessionOut,
        direct: Option<&Channel>,
    ) -> Result<(), BrokerError> {
        let mut state = self.state();
        state.session = Some(session);
        let waited = std::mem::take(&mut state.waiting);
        self.publish_all(&mut state, waited, direct)
    }

    fn publish_all(
        &self,
        state: &mut OutboxState,
        calls: impl IntoIterator<Item = OutgoingCall>,
        direct: Option<&Channel>,
    ) -> Result<(), BrokerError> {
        let mut calls = calls.into_iter();
        while let Some(call) = calls.next() {
            if let Err(err) = self.publish(state, call, direct) {
                // The failed call went back first; the rest follow it.
                state.waiting.extend(calls);
                return Err(err);
            }
        }
        Ok(())
    }

    /// Stops publishing: later calls wait for the next session. Returns the session's own
    /// channel, for the reader to close outside the lock.
    pub(super) fn end_session(&self) -> Option<Channel> {
        self.state()
            .session
            .take()
            .and_then(|session| session.channel)
    }

    /// Publishes one request and files its caller, unless the caller has already given up.
    /// If publishing fails (the connection is gone, so nothing left), the call goes back to
    /// the front of `waiting`, unsent, for the next connection. The request's properties,
    /// deadline included, are the wire module's ([`wire::request::properties`]).
    fn publish(
        &self,
        state: &mut OutboxState,
        mut call: OutgoingCall,
        direct: Option<&Channel>,
    ) -> Result<(), BrokerError> {
        let remaining = call.deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() || !call.state.is_queued() {
            return Ok(()); // the caller has given up; dropping `reply` tells it
        }
        let Some(session) = state.session.as_mut().filter(|s| s.refused_at.is_none()) else {
            // Not connected, or this session is being replaced: the call waits for the next.
            state.waiting.push_back(call);
            return Ok(());
        };
        let Some(channel) = session.channel.as_ref().or(direct) else {
            state.waiting.push_back(call);
            return Ok(());
        };
        if !call.state.claim() {
            return Ok(());
        }
        let properties = wire::request::properties(
            &session.reply_to,
            &call.correlation_id,
            remaining,
            call.traceparent.as_ref(),
        );
        let body = std::sync::Arc::clone(&call.body);
        let correlation_id = call.correlation_id.clone();
        call.attempts += 1;
        let retry = call.attempts > 1;
        // Filed before it goes out, so that a reply, however quick, finds its caller.
        self.pending().insert(correlation_id.clone(), call);
        let publish = Publish {
            body: &body,
            routing_key: self.queue.clone(),
            mandatory: true,
            immediate: false,
            properties,
        };
        if let Err(err) = channel.basic_publish("", publish) {
            // Unless its caller gave up meanwhile, the call waits for the next connection.
            if let Some(mut call) = self.pending().remove(&correlation_id) {
                call.attempts -= 1;
                if call.state.unclaim() {
                    state.waiting.push_front(call);
                }
            }
            return Err(BrokerError::amqp(err));
        }
        if session.confirms {
            session.tags.published(&correlation_id, Instant::now());
        }
        if retry {
            bump(&self.counters.retries);
        }
        Ok(())
    }

    /// The broker confirmed taking requests (`basic.ack`), or refused them (`basic.nack`):
    /// marks the taken ones, and hands back the refused ones. Two refusals in a row with no
    /// request taken in between mark the session stale (see
    /// the reader's `refused`).
    pub(super) fn confirmed(&self, confirm: Confirm) -> Vec<OutgoingCall> {
        let (payload, taken) = match confirm {
            Confirm::Ack(payload) => (payload, true),
            Confirm::Nack(payload) => (payload, false),
        };
        let mut state = self.state();
        let Some(session) = state.session.as_mut() else {
            return Vec::new();
        };
        let ids = session.tags.take(payload);
        let mut pending = self.pending();
        let mut refused = Vec::new();
        for correlation_id in ids {
            if taken {
                session.refusal_streak = 0;
                if let Some(call) = pending.get(&correlation_id) {
                    call.state.confirm();
                }
            } else if let Some(call) = pending.remove(&correlation_id) {
                session.refusal_streak += 1;
                if session.refusal_streak >= STALE_AFTER_REFUSALS {
                    session.refused_at.get_or_insert_with(Instant::now);
                }
                refused.push(call);
            }
        }
        refused
    }

    /// What the reader needs to know before it waits: when the oldest request not yet
    /// confirmed was published, and when the current session was found stale, if it was.
    pub(super) fn reader_view(&self) -> (Option<Instant>, Option<Instant>) {
        match self.state().session.as_ref() {
            Some(session) => (session.tags.oldest(), session.refused_at),
            None => (None, None),
        }
    }

    /// Takes out the call waiting for this reply (or returned request), if any.
    pub(super) fn take_pending(&self, correlation_id: &str) -> Option<OutgoingCall> {
        self.pending().remove(correlation_id)
    }

    pub(super) fn no_calls_out(&self) -> bool {
        self.pending().is_empty()
    }

    /// Every call out, taken out: the connection they went out on is gone.
    pub(super) fn take_all_pending(&self) -> Vec<OutgoingCall> {
        self.pending().drain().map(|(_, call)| call).collect()
    }

    /// Every call waiting for a connection, taken out.
    pub(super) fn take_all_waiting(&self) -> Vec<OutgoingCall> {
        self.state().waiting.drain(..).collect()
    }

    /// Puts calls at the back of the queue for the next connection.
    pub(super) fn requeue(&self, calls: impl IntoIterator<Item = OutgoingCall>) {
        self.state().waiting.extend(calls);
    }

    /// Forgets calls whose callers have stopped waiting, so their entries do not pile up when
    /// no reply ever comes (the broker expired the request).
    pub(super) fn forget_expired(&self, now: Instant) {
        self.pending().retain(|_, call| call.deadline > now);
        self.state().waiting.retain(|call| call.is_live(now));
    }
}
