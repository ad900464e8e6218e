//! Small helpers the client and the server both lean on.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use amiquip::{Consumer, ConsumerMessage};
use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};

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

/// Cancels `consumer` and waits, up to `within`, until amiquip's I/O thread has said so on the
/// consumer's receiver. Deliveries that arrive meanwhile are dropped, so call this only when
/// nobody wants them any more.
///
/// Why not just drop the consumer: amiquip returns from `cancel` as soon as the broker's
/// cancel-ok arrives and only then sends `ClientCancelled` to the receiver. A consumer dropped
/// in between makes that send fail, and the failure ends the connection's I/O thread
/// (`EventLoopClientDropped`), so the connection can no longer be closed cleanly.
pub(crate) fn cancel_consumer(consumer: &Consumer<'_>, within: Duration) -> amiquip::Result<()> {
    consumer.cancel()?;
    let until = Instant::now() + within;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match consumer.receiver().recv_timeout(left) {
            Ok(ConsumerMessage::Delivery(_)) => continue,
            // ClientCancelled, or the stream ended otherwise, or the I/O thread is gone.
            Ok(_) | Err(RecvTimeoutError::Disconnected) => return Ok(()),
            Err(RecvTimeoutError::Timeout) => {
                log::warn!(
                    "amiquip did not confirm a consumer's cancel within {within:?}; \
                     the connection may not close cleanly"
                );
                return Ok(());
            }
        }
    }
}
