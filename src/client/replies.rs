//! Who takes replies off the reply consumer: the reader thread, or a lone waiting caller.
//!
//! The reader thread demultiplexes replies to waiting callers, each through the caller's own
//! one-slot channel. That costs a thread hand-off per reply (the reader wakes, then wakes the
//! caller), which with many callers is paid back by the reader taking many replies per
//! wake-up. A caller waiting alone gains nothing from it, so it takes replies off the
//! consumer itself (it *pumps*): the first caller to start waiting while nobody else waits
//! pumps, hands any reply that is not its own to its caller exactly as the reader would, and
//! stops when its own reply is in. The reader pumps whenever some waiting caller does not.
//!
//! Whoever takes a message that ends the reply stream (the channel closed, the consumer
//! cancelled) leaves it here for the reader and wakes it, so the reader learns of the end
//! whoever saw it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use amiquip::{ConsumerMessage, Delivery};
use crossbeam_channel::{Receiver, Sender};

use super::handle::Shared;
use crate::util::bump;
use crate::wire;

/// The reply consumer's stream, and who is taking from it.
pub(super) struct ReplyStream {
    /// The current session's number and reply consumer, while connected.
    current: Mutex<Option<(u64, Receiver<ConsumerMessage>)>>,
    /// Callers waiting for a reply right now, pumping or not.
    waiting_callers: AtomicUsize,
    /// A caller is pumping.
    caller_pumps: AtomicBool,
    /// The reader takes replies off the stream (or is about to).
    reader_pumps: AtomicBool,
    /// Wakes the reader: a caller waits that nobody pumps for, or the stream ended.
    wake: Sender<()>,
    /// How the stream ended, when a caller saw it end: the message that ended it, or `None`
    /// when it just stopped (the connection died).
    ended: Mutex<Option<Option<ConsumerMessage>>>,
}

impl ReplyStream {
    /// A stream, and the receiver that wakes the reader.
    pub(super) fn new() -> (Self, Receiver<()>) {
        let (wake, woken) = crossbeam_channel::bounded(1);
        let stream = ReplyStream {
            current: Mutex::new(None),
            waiting_callers: AtomicUsize::new(0),
            caller_pumps: AtomicBool::new(false),
            reader_pumps: AtomicBool::new(true),
            wake,
            ended: Mutex::new(None),
        };
        (stream, woken)
    }

    /// Reader: session `session`'s reply consumer starts (`Some`), or the session stops
    /// (`None`).
    pub(super) fn set_current(&self, session: u64, replies: Option<Receiver<ConsumerMessage>>) {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        *current = replies.map(|replies| (session, replies));
        // What ended an earlier session is no news to this one.
        self.ended.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// Reader: how the stream ended, if a caller saw it end.
    pub(super) fn take_ended(&self) -> Option<Option<ConsumerMessage>> {
        self.ended.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Reader, before it waits: decides whether to take replies this time, and says so to the
    /// callers. It does when a caller waits that is not pumping.
    pub(super) fn reader_should_pump(&self) -> bool {
        // Stored before the count is read, as a caller counts itself before reading this
        // flag: either the reader sees that caller, or the caller sees the reader is not
        // pumping and wakes it.
        self.reader_pumps.store(false, Ordering::SeqCst);
        let callers = self.waiting_callers.load(Ordering::SeqCst);
        let pumping = usize::from(self.caller_pumps.load(Ordering::SeqCst));
        let pump = callers > pumping;
        if pump {
            self.reader_pumps.store(true, Ordering::SeqCst);
        }
        pump
    }

    /// Reader: nobody waits, so nobody takes replies; the reader may take them (late replies,
    /// replies to calls sent and not yet waited for) without stealing anyone's.
    pub(super) fn nobody_waits(&self) -> bool {
        self.waiting_callers.load(Ordering::SeqCst) == 0
    }

    /// Caller: starts waiting. Returns the stream to pump, and its session's number, when
    /// this caller waits alone.
    pub(super) fn start_waiting(&self) -> Option<(u64, Receiver<ConsumerMessage>)> {
        if self.waiting_callers.fetch_add(1, Ordering::SeqCst) == 0 {
            let current = self
                .current
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            if current.is_some() {
                self.caller_pumps.store(true, Ordering::SeqCst);
                return current;
            }
        }
        self.need_reader();
        None
    }

    /// Caller: stops pumping (the stream ended) but keeps waiting: the reader takes over.
    pub(super) fn stop_pumping(&self) {
        self.caller_pumps.store(false, Ordering::SeqCst);
        self.need_reader();
    }

    /// Caller: stops waiting, pumping or not.
    pub(super) fn stop_waiting(&self, pumped: bool) {
        if pumped {
            self.caller_pumps.store(false, Ordering::SeqCst);
        }
        self.waiting_callers.fetch_sub(1, Ordering::SeqCst);
    }

    /// Wakes the reader. A caller does so to have it read the confirms that came in (a lone
    /// caller's requests do not wake it: see the reader's `CONFIRM_LINGER`). A wake-up already
    /// pending is enough, so this never blocks.
    pub(super) fn wake_reader(&self) {
        let _ = self.wake.try_send(());
    }

    /// Makes sure the reader takes replies: wakes it unless it already does.
    fn need_reader(&self) {
        if !self.reader_pumps.load(Ordering::SeqCst) {
            self.wake_reader();
        }
    }

    /// Caller: session `session`'s stream ended, with `message` (the channel closed, the
    /// consumer cancelled) or without one (the connection died): left for the reader, which
    /// is woken, unless the reader has moved on to another session already.
    pub(super) fn ended(&self, session: u64, message: Option<ConsumerMessage>) {
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.as_ref().is_some_and(|(now, _)| *now == session) {
            *self.ended.lock().unwrap_or_else(|e| e.into_inner()) = Some(message);
            self.wake_reader();
        }
    }
}

/// Hands a reply to the caller waiting for its `correlation_id`, or drops and counts it. Run
/// by whoever took the reply off the stream: the reader or a pumping caller.
pub(super) fn deliver(shared: &Shared, delivery: Delivery) {
    // Whoever it was for, a reply proves that a server consumes the queue.
    shared.watch.saw_reply();
    let caller = delivery
        .properties
        .correlation_id()
        .as_deref()
        .and_then(|id| shared.outbox.take_pending(id));
    let delivered = match caller {
        // Fails only if the caller stopped waiting (timed out) meanwhile.
        Some(caller) => {
            let reply = wire::reply::decode(delivery.properties.headers().as_ref(), delivery.body);
            caller.reply.send(reply).is_ok()
        }
        None => false,
    };
    if !delivered {
        bump(&shared.counters.discarded_replies);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream_of(session: u64) -> (ReplyStream, Receiver<()>, Sender<ConsumerMessage>) {
        let (stream, woken) = ReplyStream::new();
        let (tx, rx) = crossbeam_channel::unbounded();
        stream.set_current(session, Some(rx));
        (stream, woken, tx)
    }

    #[test]
    fn the_first_caller_to_wait_pumps_and_the_reader_stays_out() {
        let (stream, woken, _tx) = stream_of(1);
        assert!(!stream.reader_should_pump()); // nobody waits
        let (session, _replies) = stream.start_waiting().expect("alone: pumps");
        assert_eq!(session, 1);
        assert!(woken.try_recv().is_err(), "the reader is not needed");
        assert!(!stream.reader_should_pump());
        stream.stop_waiting(true);
        assert!(stream.nobody_waits());
    }

    #[test]
    fn a_second_caller_waits_on_the_reader_and_wakes_it_if_it_is_not_pumping() {
        let (stream, woken, _tx) = stream_of(1);
        assert!(!stream.reader_should_pump());
        assert!(stream.start_waiting().is_some());
        assert!(stream.start_waiting().is_none(), "one pump at a time");
        assert!(woken.try_recv().is_ok(), "the reader was woken");
        assert!(stream.reader_should_pump());
        // While the reader pumps, a third caller does not wake it again.
        assert!(stream.start_waiting().is_none());
        assert!(woken.try_recv().is_err());
        // The pump leaves: the reader still pumps for the two others.
        stream.stop_waiting(true);
        assert!(stream.reader_should_pump());
        stream.stop_waiting(false);
        stream.stop_waiting(false);
        assert!(!stream.reader_should_pump());
    }

    #[test]
    fn without_a_session_nobody_pumps_and_the_reader_is_asked() {
        let (stream, woken) = ReplyStream::new();
        assert!(!stream.reader_should_pump());
        assert!(stream.start_waiting().is_none());
        assert!(woken.try_recv().is_ok());
        assert!(stream.reader_should_pump());
    }

    #[test]
    fn a_pump_that_sees_the_stream_end_hands_over_to_the_reader() {
        let (stream, woken, tx) = stream_of(3);
        assert!(!stream.reader_should_pump());
        let (session, _replies) = stream.start_waiting().unwrap();
        drop(tx);
        stream.ended(session, None);
        stream.stop_pumping();
        assert!(woken.try_recv().is_ok());
        assert!(matches!(stream.take_ended(), Some(None)));
        assert!(stream.reader_should_pump(), "the caller still waits");
        stream.stop_waiting(false);
    }

    #[test]
    fn the_end_of_an_earlier_session_is_ignored() {
        let (stream, woken, _tx) = stream_of(4);
        stream.ended(3, Some(ConsumerMessage::ClientCancelled));
        assert!(stream.take_ended().is_none());
        assert!(woken.try_recv().is_err());
        stream.ended(4, Some(ConsumerMessage::ClientCancelled));
        assert!(stream.take_ended().is_some());
    }
}
