//! Two one-liners the client and the server both lean on.

use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_channel::{Receiver, TryRecvError};

/// Adds one to a statistics counter. Relaxed: counters are read as a snapshot and order
/// nothing else.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// True once every sender of `channel` is gone: how "closed" and "stop" are broadcast to
/// any number of threads without sending anything.
pub(crate) fn is_disconnected(channel: &Receiver<()>) -> bool {
    matches!(channel.try_recv(), Err(TryRecvError::Disconnected))
}
