//! Which published request each publisher confirm is about.

use std::collections::BTreeMap;
use std::time::Instant;

use amiquip::ConfirmPayload;

/// The requests published on one channel and not yet confirmed, by confirm tag.
///
/// With publisher confirms on, the broker numbers a channel's publishes from 1 and answers
/// each with `basic.ack` (taken: for a quorum queue, committed by a majority of its replicas)
/// or `basic.nack` (refused), one at a time or for every tag up to one (`multiple`). A new
/// channel starts the numbering again, so each session has its own `ConfirmTags`.
#[derive(Debug, Default)]
pub(super) struct ConfirmTags {
    published: u64,
    /// By tag: the request's `correlation_id` and when it was published.
    unconfirmed: BTreeMap<u64, (String, Instant)>,
}

impl ConfirmTags {
    /// Notes that the request with this `correlation_id` was just published.
    pub(super) fn published(&mut self, correlation_id: &str, at: Instant) {
        self.published += 1;
        self.unconfirmed
            .insert(self.published, (correlation_id.to_owned(), at));
    }

    /// When the oldest request not yet confirmed was published.
    pub(super) fn oldest(&self) -> Option<Instant> {
        self.unconfirmed.first_key_value().map(|(_, (_, at))| *at)
    }

    /// The `correlation_id`s a confirm covers, which are no longer unconfirmed.
    pub(super) fn take(&mut self, confirm: ConfirmPayload) -> Vec<String> {
        if !confirm.multiple {
            return self
                .unconfirmed
                .remove(&confirm.delivery_tag)
                .map(|(id, _)| id)
                .into_iter()
                .collect();
        }
        let later = self
            .unconfirmed
            .split_off(&confirm.delivery_tag.saturating_add(1));
        std::mem::replace(&mut self.unconfirmed, later)
            .into_values()
            .map(|(id, _)| id)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(delivery_tag: u64, multiple: bool) -> ConfirmPayload {
        ConfirmPayload {
            delivery_tag,
            multiple,
        }
    }

    #[test]
    fn a_confirm_covers_its_tag_or_every_tag_up_to_it() {
        let mut tags = ConfirmTags::default();
        let start = Instant::now();
        for id in ["a", "b", "c", "d", "e"] {
            tags.published(id, start);
        }
        assert_eq!(tags.oldest(), Some(start));
        assert_eq!(tags.take(payload(2, false)), ["b"]);
        assert_eq!(tags.take(payload(2, false)), Vec::<String>::new());
        assert_eq!(tags.take(payload(4, true)), ["a", "c", "d"]);
        assert_eq!(tags.take(payload(9, true)), ["e"]);
        assert!(tags.take(payload(9, true)).is_empty());
        assert_eq!(tags.oldest(), None);
    }
}
