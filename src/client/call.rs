//! One call's life: its correlation id, the state that caller and reader decide together,
//! and what the reader keeps while the call is out.

use crate::wire::TraceParent;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Sender;
use uuid::Uuid;

use crate::error::Result;

/// Where a caller's reply (or the reason there is none) is sent: one slot per call.
pub(super) type ReplySender = Sender<Result<Vec<u8>>>;

/// Whether a call's request has gone out, decided once by whichever of caller and reader
/// gets there first, so a caller that gives up can say truthfully whether it was sent.
///
/// `Queued` until the reader publishes it (`Sent`), then `Confirmed` once the broker confirms
/// taking it (with publisher confirms), unless the caller gives up first (`Abandoned`). A
/// caller that gives up later also marks it `Abandoned`, so a call whose publish failed is not
/// put back for the next connection. A call to be sent again goes back to `Queued` (idempotent,
/// after a loss) or to `Refused` (idempotent, refused by the broker, waiting to go again).
/// Apart from that state, it remembers whether a request of this call may already have reached
/// a server (one went out on a connection that was then lost), which a call given up later
/// must not deny. Shared by the caller's [`PendingReply`](super::PendingReply) and the
/// reader's [`OutgoingCall`].
#[derive(Clone, Debug)]
pub(super) struct CallState(Arc<StateCell>);

#[derive(Debug)]
struct StateCell {
    state: AtomicU8,
    maybe_run: AtomicBool,
}

const QUEUED: u8 = 0;
const SENT: u8 = 1;
const CONFIRMED: u8 = 2;
const REFUSED: u8 = 3;
const ABANDONED: u8 = 4;

/// How far a call got before its caller gave up; see [`CallState::abandon`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum GaveUp {
    /// The request was not sent, and never will be.
    Unsent,
    /// Sent, but the broker has not confirmed taking it.
    Sent,
    /// Sent and confirmed by the broker (or sent, with confirms off).
    Confirmed,
    /// Refused by the broker, and waiting to be sent again.
    Refused,
    /// Waiting to be sent again, but an earlier request of this call went out on a connection
    /// that was lost: a server may have run it.
    MaybeRun,
}

impl CallState {
    pub(super) fn new() -> Self {
        CallState(Arc::new(StateCell {
            state: AtomicU8::new(QUEUED),
            maybe_run: AtomicBool::new(false),
        }))
    }

    fn swap(&self, from: u8, to: u8) -> bool {
        self.0
            .state
            .compare_exchange(from, to, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// Reader: claims the call for publishing; false if its caller has already given up.
    pub(super) fn claim(&self) -> bool {
        self.swap(QUEUED, SENT) || self.swap(REFUSED, SENT)
    }

    /// Reader: the publish failed (nothing went out); true if the call is queued again, false
    /// if its caller gave up meanwhile.
    pub(super) fn unclaim(&self) -> bool {
        self.swap(SENT, QUEUED)
    }

    /// Reader: the connection was lost with the request out, and the call is to go again on
    /// the next one; false if its caller gave up meanwhile. From now on a server may have run
    /// it.
    pub(super) fn requeue_after_loss(&self) -> bool {
        self.0.maybe_run.store(true, Ordering::SeqCst);
        self.swap(SENT, QUEUED) || self.swap(CONFIRMED, QUEUED)
    }

    /// An earlier request of this call went out on a connection that was then lost.
    pub(super) fn maybe_run(&self) -> bool {
        self.0.maybe_run.load(Ordering::SeqCst)
    }

    /// Reader: the broker refused the request, which is to go again; false if its caller gave
    /// up meanwhile.
    pub(super) fn refused(&self) -> bool {
        self.swap(SENT, REFUSED)
    }

    /// Reader: the broker confirmed taking the request.
    pub(super) fn confirm(&self) {
        self.swap(SENT, CONFIRMED);
    }

    /// Reader: not yet sent (or to be sent again) and not given up.
    pub(super) fn is_queued(&self) -> bool {
        matches!(self.0.state.load(Ordering::SeqCst), QUEUED | REFUSED)
    }

    /// Caller: gives the call up, and says how far it got. A request not sent yet never will
    /// be; one already sent (or being published right now) is marked given up all the same.
    pub(super) fn abandon(&self) -> GaveUp {
        match self.0.state.swap(ABANDONED, Ordering::SeqCst) {
            QUEUED | REFUSED if self.maybe_run() => GaveUp::MaybeRun,
            QUEUED => GaveUp::Unsent,
            SENT => GaveUp::Sent,
            CONFIRMED => GaveUp::Confirmed,
            REFUSED => GaveUp::Refused,
            // Already given up (a drop after `wait`): nothing more to say.
            _ => GaveUp::Confirmed,
        }
    }
}

/// A call on its way out, and filed while it is out: kept whole until it is answered, so that
/// an idempotent call can be sent again.
pub(super) struct OutgoingCall {
    pub(super) correlation_id: String,
    /// Shared with the publish in flight, so the call can be filed before it goes out.
    pub(super) body: Arc<[u8]>,
    pub(super) deadline: Instant,
    pub(super) reply: ReplySender,
    pub(super) state: CallState,
    /// May be sent again with the same `correlation_id` (see
    /// [`CallOptions::idempotent`](super::CallOptions::idempotent)).
    pub(super) idempotent: bool,
    /// Times it was published so far.
    pub(super) attempts: u32,
    /// The caller's trace context, sent with every attempt.
    pub(super) traceparent: Option<TraceParent>,
}

impl OutgoingCall {
    /// Still worth sending: the caller waits and its deadline has not passed.
    pub(super) fn is_live(&self, now: Instant) -> bool {
        self.deadline > now && self.state.is_queued()
    }
}

/// Makes each call's `correlation_id`: a UUID v4 whose first half is random per client and
/// whose second half counts the client's calls. So an id never repeats within a client (a
/// late reply can never be taken for a newer call's), and a call costs no system call for
/// fresh randomness.
pub(super) struct CorrelationIds {
    client: [u8; 8],
    calls: AtomicU64,
}

impl CorrelationIds {
    pub(super) fn new() -> Self {
        let random = Uuid::new_v4().into_bytes();
        let mut client = [0; 8];
        client.copy_from_slice(&random[..8]);
        CorrelationIds {
            client,
            calls: AtomicU64::new(0),
        }
    }

    pub(super) fn next(&self) -> String {
        let call = self.calls.fetch_add(1, Ordering::Relaxed);
        let mut bytes = [0; 16];
        bytes[..8].copy_from_slice(&self.client);
        bytes[8..].copy_from_slice(&call.to_be_bytes());
        // Sets the version bits (4 of the random half, leaving 60) and the variant bits (the
        // count's top two, which would take 2^62 calls to reach).
        uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correlation_ids_are_distinct_uuid_v4s() {
        let ids = CorrelationIds::new();
        let made: Vec<String> = (0..1000).map(|_| ids.next()).collect();
        let distinct: std::collections::HashSet<&String> = made.iter().collect();
        assert_eq!(distinct.len(), made.len());
        for id in &made {
            let parsed = Uuid::parse_str(id).unwrap();
            assert_eq!(parsed.get_version_num(), 4, "{id}");
            assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122, "{id}");
        }
        // Another client's ids differ in their random half.
        assert_ne!(CorrelationIds::new().next()[..18], made[0][..18]);
    }
}
