//! Which requests of a session may be acked, by delivery tag.
//!
//! The workers of a session share one consumer, so they finish its deliveries in any order.
//! One `basic.ack` with `multiple` acks every delivery up to its tag, so it may be sent only
//! over a run of settled deliveries with nothing still being answered in between. Delivery
//! tags on a channel with one consumer are consecutive from 1, so a tag not settled yet is a
//! request still being answered (or held), and the run stops there.

use std::collections::BTreeMap;

/// The settled deliveries of one session (`T` is the delivery), by tag, not yet acked.
pub(super) struct Ledger<T> {
    /// Every tag up to this one is acked (or requeued).
    done_through: u64,
    /// Settled tags above `done_through`, after a gap.
    entries: BTreeMap<u64, Entry<T>>,
    /// Most settled deliveries held behind a gap (a request still being answered) before
    /// they are acked one by one, so a slow request cannot fill the prefetch window with
    /// requests that wait only for their ack.
    hold: usize,
}

enum Entry<T> {
    /// Answered and confirmed, or dropped: to be acked.
    Settled(T),
    /// Its reply was refused: to be requeued.
    Refused(T),
    /// Acked (or requeued) on its own, ahead of the tags before it.
    Done,
}

/// What to tell the broker, in this order.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Act<T> {
    /// `basic.ack` with `multiple`: this delivery and every unacked one before it.
    AckThrough(T),
    /// `basic.ack` of this delivery alone.
    Ack(T),
    /// `basic.nack` with `requeue` of this delivery alone.
    Requeue(T),
}

impl<T> Ledger<T> {
    pub(super) fn new(hold: usize) -> Self {
        Ledger {
            done_through: 0,
            entries: BTreeMap::new(),
            hold: hold.max(1),
        }
    }

    /// Files a settled delivery; `refused` when its reply was refused.
    pub(super) fn settled(&mut self, tag: u64, delivery: T, refused: bool) {
        debug_assert!(tag > self.done_through && !self.entries.contains_key(&tag));
        let entry = match refused {
            true => Entry::Refused(delivery),
            false => Entry::Settled(delivery),
        };
        self.entries.insert(tag, entry);
    }

    /// True when nothing filed is waiting for its ack.
    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.entries
            .values()
            .all(|entry| matches!(entry, Entry::Done))
    }

    /// What to send now, and how many deliveries that finishes. The settled run after the
    /// last acked tag goes in one ack; deliveries settled behind a gap wait for it, unless
    /// there are [`hold`](Self::new) of them or `everything` is asked for.
    pub(super) fn acts(&mut self, everything: bool) -> (Vec<Act<T>>, usize) {
        let mut acts = Vec::new();
        let mut finished = 0;
        let mut last = None;
        while let Some(entry) = self.entries.remove(&(self.done_through + 1)) {
            self.done_through += 1;
            match entry {
                Entry::Settled(delivery) => {
                    last = Some(delivery);
                    finished += 1;
                }
                Entry::Refused(delivery) => {
                    acts.extend(last.take().map(Act::AckThrough));
                    acts.push(Act::Requeue(delivery));
                    finished += 1;
                }
                Entry::Done => {}
            }
        }
        acts.extend(last.map(Act::AckThrough));
        let held = self
            .entries
            .values()
            .filter(|entry| !matches!(entry, Entry::Done))
            .count();
        if held > 0 && (everything || held >= self.hold) {
            for entry in self.entries.values_mut() {
                match std::mem::replace(entry, Entry::Done) {
                    Entry::Settled(delivery) => acts.push(Act::Ack(delivery)),
                    Entry::Refused(delivery) => acts.push(Act::Requeue(delivery)),
                    Entry::Done => continue,
                }
                finished += 1;
            }
        }
        (acts, finished)
    }
}

#[cfg(test)]
mod tests {
    use super::{Act, Ledger};

    fn settle(ledger: &mut Ledger<u64>, tags: &[u64]) {
        for &tag in tags {
            ledger.settled(tag, tag, false);
        }
    }

    #[test]
    fn a_contiguous_run_is_one_ack() {
        let mut ledger = Ledger::new(8);
        settle(&mut ledger, &[2, 1, 3]);
        assert_eq!(ledger.acts(false), (vec![Act::AckThrough(3)], 3));
        assert!(ledger.is_empty());
        settle(&mut ledger, &[4]);
        assert_eq!(ledger.acts(false), (vec![Act::AckThrough(4)], 1));
    }

    #[test]
    fn nothing_is_acked_over_a_request_still_being_answered() {
        let mut ledger = Ledger::new(8);
        settle(&mut ledger, &[1, 3, 4]); // 2 is still being answered
        assert_eq!(ledger.acts(false), (vec![Act::AckThrough(1)], 1));
        assert!(!ledger.is_empty());
        settle(&mut ledger, &[2]);
        assert_eq!(ledger.acts(false), (vec![Act::AckThrough(4)], 3));
    }

    #[test]
    fn requests_held_behind_a_slow_one_are_acked_alone_at_the_limit() {
        let mut ledger = Ledger::new(2);
        settle(&mut ledger, &[2]);
        assert_eq!(ledger.acts(false), (vec![], 0));
        settle(&mut ledger, &[3]);
        assert_eq!(ledger.acts(false), (vec![Act::Ack(2), Act::Ack(3)], 2));
        settle(&mut ledger, &[5]);
        assert_eq!(ledger.acts(false), (vec![], 0));
        assert_eq!(ledger.acts(true), (vec![Act::Ack(5)], 1));
        // The slow one ends: the run goes past the ones already acked, to the last unacked.
        settle(&mut ledger, &[1, 6]);
        assert_eq!(ledger.acts(false), (vec![Act::AckThrough(1)], 1));
        settle(&mut ledger, &[4]);
        assert_eq!(ledger.acts(false), (vec![Act::AckThrough(6)], 2));
        assert!(ledger.is_empty());
    }

    #[test]
    fn a_refused_reply_is_requeued_between_acks() {
        let mut ledger = Ledger::new(8);
        settle(&mut ledger, &[1, 2]);
        ledger.settled(3, 3, true);
        settle(&mut ledger, &[4]);
        assert_eq!(
            ledger.acts(false),
            (
                vec![Act::AckThrough(2), Act::Requeue(3), Act::AckThrough(4)],
                4
            )
        );
        ledger.settled(6, 6, true);
        assert_eq!(ledger.acts(true), (vec![Act::Requeue(6)], 1));
        settle(&mut ledger, &[5]);
        assert_eq!(ledger.acts(false), (vec![Act::AckThrough(5)], 1));
    }
}
