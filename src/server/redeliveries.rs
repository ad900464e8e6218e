//! Poison requests: the ones whose reply breaks the connection every time.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Which requests were being answered when this server lost its connection or a channel.
///
/// A request comes back once when a server dies holding it. One whose *reply* breaks the
/// connection or channel (RabbitMQ 3.10 answers a malformed direct reply-to address with
/// 541 INTERNAL_ERROR; a reply above the broker's `max_message_size` gets a channel error)
/// comes back every time, since the ack never lands: it would go round forever. So each loss
/// marks the requests whose replies went out in the second before it, and a redelivered
/// request marked [`Self::MAX_LOSSES`] times is acked and dropped unanswered (answering is
/// what breaks). Requests merely waiting in a prefetch window are never marked. Bounded;
/// shared by all workers and connections of a server.
#[derive(Debug, Default)]
pub(super) struct Redeliveries {
    log: Mutex<RedeliveryLog>,
}

#[derive(Debug, Default)]
struct RedeliveryLog {
    /// Recent replies, oldest first: when they were published, and for which request.
    replied: VecDeque<(Instant, u64)>,
    /// Losses each request was marked for.
    marked: HashMap<u64, u32>,
}

impl Redeliveries {
    pub(super) const MAX_LOSSES: u32 = 3;
    /// How long before a loss a reply counts as its possible cause.
    const WINDOW: Duration = Duration::from_secs(1);
    const RECENT_REPLIES: usize = 4096;
    const MARKED: usize = 65_536;

    fn lock(&self) -> std::sync::MutexGuard<'_, RedeliveryLog> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes that the reply to `request` is about to be published.
    pub(super) fn replying(&self, request: u64) {
        let mut log = self.lock();
        if log.replied.len() == Self::RECENT_REPLIES {
            log.replied.pop_front();
        }
        log.replied.push_back((Instant::now(), request));
    }

    /// The connection or a channel was lost at `at`: marks the requests answered just before.
    pub(super) fn lost(&self, at: Instant) {
        let mut log = self.lock();
        let RedeliveryLog { replied, marked } = &mut *log;
        let since = at.checked_sub(Self::WINDOW).unwrap_or(at);
        for (_, request) in replied.drain(..).filter(|(when, _)| *when >= since) {
            mark(marked, request);
        }
    }

    /// The broker refused the reply to `request` (publisher `basic.nack`), which sends the
    /// request back to the queue: counted like a loss, so that a reply refused every time
    /// cannot send its request round forever.
    pub(super) fn refused(&self, request: u64) {
        mark(&mut self.lock().marked, request);
    }

    /// True for a request that was being answered at [`Self::MAX_LOSSES`] losses.
    pub(super) fn is_poison(&self, request: u64) -> bool {
        self.lock()
            .marked
            .get(&request)
            .is_some_and(|losses| *losses >= Self::MAX_LOSSES)
    }

    /// What identifies a request across redeliveries.
    pub(super) fn key(reply_to: &str, correlation_id: Option<&str>, body: &[u8]) -> u64 {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (reply_to, correlation_id, body).hash(&mut hasher);
        hasher.finish()
    }
}

/// Counts one more loss against `request`, forgetting all marks first when there are too
/// many, so memory stays bounded.
fn mark(marked: &mut HashMap<u64, u32>, request: u64) {
    if marked.len() >= Redeliveries::MARKED {
        marked.clear();
    }
    *marked.entry(request).or_default() += 1;
}
