//! Redelivered requests run alone on their session.
//!
//! A redelivered request may be one whose reply breaks the connection (see
//! [`Redeliveries`](super::redeliveries::Redeliveries)). Every request whose reply went out
//! shortly before a loss is marked as a possible cause, so while a redelivered request is
//! answered, no other request of the session may be answered or wait unacked: the
//! redelivered one waits until every other request taken so far is acked, runs, is acked,
//! and only then do the others go on. Requests taken meanwhile wait unstarted (they are
//! never marked: nothing was replied). Handlers can be slow, so the wait for the others is
//! bounded by [`QUIET_TIMEOUT`]: past it, the redelivered request runs alongside them like any
//! other, rather than hold the session longer (or end it).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a redelivered request waits for the session's other requests to be acked before
/// it runs alongside them instead of alone. Replies are confirmed and acked within
/// milliseconds, so this is about handlers still running: a slow one must not hold the
/// session (every idle worker waits meanwhile) nor end it.
pub(super) const QUIET_TIMEOUT: Duration = Duration::from_secs(5);

/// The session's turn-taking, shared by its workers and its supervisor.
#[derive(Debug, Default)]
pub(super) struct Turns {
    state: Mutex<State>,
    changed: Condvar,
    /// Mirrors `State::alone`, read without the lock on the workers' hot path.
    alone: AtomicBool,
    /// The session ended by a failure, not a stop: waiting for confirms is pointless.
    lost: AtomicBool,
    /// A graceful stop cancelled the consumer: its stream ending is not a failure.
    draining: AtomicBool,
}

#[derive(Debug, Default)]
struct State {
    /// Requests taken and not yet acked.
    open: usize,
    /// A redelivered request runs (or waits to run) alone.
    alone: bool,
    /// The session ends: nobody starts anything more.
    closing: bool,
}

/// Whether a first-time request may start.
pub(super) enum Turn {
    /// Started: counted as open until acked.
    Go,
    /// A redelivered request runs alone: send what you hold to be acked, then
    /// [`Turns::wait_turn`].
    Wait,
    /// The session ends: leave the request unstarted (it goes back to the queue).
    Closing,
}

impl Turns {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True while a redelivered request waits to run, or runs, alone: workers send their
    /// settled requests to be acked at once.
    pub(super) fn is_alone(&self) -> bool {
        self.alone.load(Ordering::Relaxed)
    }

    /// A first-time request asks to start.
    pub(super) fn try_start(&self) -> Turn {
        let mut state = self.lock();
        if state.closing {
            Turn::Closing
        } else if state.alone {
            Turn::Wait
        } else {
            state.open += 1;
            Turn::Go
        }
    }

    /// Waits until no request runs alone; false if the session ends first. Bounded by the
    /// redelivered request's own bounds: [`QUIET_TIMEOUT`], its handler and
    /// [`CONFIRM_TIMEOUT`] waits.
    ///
    /// [`CONFIRM_TIMEOUT`]: super::acks::CONFIRM_TIMEOUT
    pub(super) fn wait_turn(&self) -> bool {
        let mut state = self.lock();
        while state.alone && !state.closing {
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        !state.closing
    }

    /// A redelivered request asks to run alone: waits for any other one running alone, then
    /// takes the session. False if the session ends first. The caller must
    /// [`leave`](Alone) it.
    pub(super) fn start_alone(&self) -> Option<Alone<'_>> {
        let mut state = self.lock();
        while state.alone && !state.closing {
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        if state.closing {
            return None;
        }
        state.alone = true;
        state.open += 1;
        self.alone.store(true, Ordering::Relaxed);
        Some(Alone { turns: self })
    }

    /// The supervisor acked (or requeued) this many requests.
    pub(super) fn acked(&self, count: usize) {
        if count == 0 {
            return;
        }
        let mut state = self.lock();
        state.open = state.open.saturating_sub(count);
        if state.alone {
            self.changed.notify_all();
        }
    }

    /// The session ends (`lost`: by a failure): every wait returns.
    pub(super) fn close(&self, lost: bool) {
        self.lost.store(lost, Ordering::Relaxed);
        self.lock().closing = true;
        self.changed.notify_all();
    }

    /// A graceful stop is about to cancel the consumer.
    pub(super) fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// True once a graceful stop cancelled (or is cancelling) the consumer.
    pub(super) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// True once the session ended by a failure.
    pub(super) fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }
}

/// A redelivered request's turn alone; ends when dropped.
pub(super) struct Alone<'a> {
    turns: &'a Turns,
}

/// How a wait for the session to go quiet ended.
pub(super) enum Quiet {
    /// At most the requested number of requests are open.
    Yes,
    /// The session ends.
    Closing,
    /// The deadline passed first.
    TimedOut,
}

impl Alone<'_> {
    /// The session's other requests taken and not yet acked.
    pub(super) fn others(&self) -> usize {
        self.turns.lock().open.saturating_sub(1)
    }

    /// Waits until at most `open` requests of the session are unacked (this one included
    /// while it is).
    pub(super) fn wait_quiet(&self, open: usize, deadline: Instant) -> Quiet {
        let mut state = self.turns.lock();
        loop {
            if state.closing {
                return Quiet::Closing;
            }
            if state.open <= open {
                return Quiet::Yes;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Quiet::TimedOut;
            }
            state = self
                .turns
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl Drop for Alone<'_> {
    fn drop(&mut self) {
        let mut state = self.turns.lock();
        state.alone = false;
        self.turns.alone.store(false, Ordering::Relaxed);
        self.turns.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::{Quiet, Turn, Turns};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    #[test]
    fn a_redelivered_request_waits_for_the_open_ones_and_holds_the_others() {
        let turns = Arc::new(Turns::default());
        assert!(matches!(turns.try_start(), Turn::Go));
        let alone = turns.start_alone().unwrap();
        assert!(turns.is_alone());
        assert!(matches!(turns.try_start(), Turn::Wait));
        let soon = Instant::now() + Duration::from_millis(20);
        assert!(matches!(alone.wait_quiet(1, soon), Quiet::TimedOut));
        turns.acked(1);
        assert!(matches!(alone.wait_quiet(1, soon), Quiet::Yes));
        let waiter = {
            let turns = Arc::clone(&turns);
            std::thread::spawn(move || turns.wait_turn())
        };
        turns.acked(1);
        assert!(matches!(alone.wait_quiet(0, soon), Quiet::Yes));
        drop(alone);
        assert!(waiter.join().unwrap());
        assert!(!turns.is_alone());
        assert!(matches!(turns.try_start(), Turn::Go));
    }

    #[test]
    fn closing_ends_every_wait() {
        let turns = Arc::new(Turns::default());
        let alone = turns.start_alone().unwrap();
        let waiter = {
            let turns = Arc::clone(&turns);
            std::thread::spawn(move || turns.wait_turn())
        };
        turns.close(false);
        assert!(!waiter.join().unwrap());
        let later = Instant::now() + Duration::from_secs(5);
        assert!(matches!(alone.wait_quiet(0, later), Quiet::Closing));
        drop(alone);
        assert!(turns.start_alone().is_none());
        assert!(matches!(turns.try_start(), Turn::Closing));
    }
}
