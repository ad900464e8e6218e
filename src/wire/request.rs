//! Requests on the wire: the properties a client sets, and what a server reads back.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use amiquip::{AmqpProperties, AmqpValue, FieldTable};

use super::trace::{TraceParent, TRACEPARENT_HEADER};
use super::DEADLINE_HEADER;

/// The properties of a request that `remaining` is left to answer.
///
/// The deadline goes twice: as `expiration` (the milliseconds the caller will still wait,
/// capped at ~49 days, the broker's timer range), so the broker drops the request while
/// queued, and as the [`DEADLINE_HEADER`] (Unix time in ms), so a server that receives it late
/// drops it too, rather than compute an answer nobody reads.
///
/// A call's trace context, when it has one, goes in the [`TRACEPARENT_HEADER`].
pub(crate) fn properties(
    reply_to: &str,
    correlation_id: &str,
    remaining: Duration,
    traceparent: Option<&TraceParent>,
) -> AmqpProperties {
    let expiration_ms = remaining.as_millis().clamp(1, u128::from(u32::MAX));
    let mut headers = FieldTable::default();
    let deadline = SystemTime::now().checked_add(remaining);
    if let Some(deadline) = deadline.and_then(unix_millis) {
        headers.insert(DEADLINE_HEADER.into(), AmqpValue::LongLongInt(deadline));
    }
    if let Some(traceparent) = traceparent {
        headers.insert(
            TRACEPARENT_HEADER.into(),
            AmqpValue::LongString(traceparent.to_string()),
        );
    }
    AmqpProperties::default()
        .with_reply_to(reply_to.to_owned())
        .with_correlation_id(correlation_id.to_owned())
        .with_expiration(expiration_ms.to_string())
        .with_headers(headers)
}

/// `time` as milliseconds since the Unix epoch, for the [`DEADLINE_HEADER`]; `None` for
/// times the header cannot carry.
fn unix_millis(time: SystemTime) -> Option<i64> {
    let since_epoch = time.duration_since(UNIX_EPOCH).ok()?;
    i64::try_from(since_epoch.as_millis()).ok()
}

/// The caller's deadline a request carries, in milliseconds since the Unix epoch: `None`
/// when it has none or it is not an integer.
fn deadline_millis(headers: Option<&FieldTable>) -> Option<i64> {
    match headers?.get(DEADLINE_HEADER)? {
        AmqpValue::LongLongInt(ms) => Some(*ms),
        AmqpValue::LongInt(ms) => Some(i64::from(*ms)),
        AmqpValue::LongUInt(ms) => Some(i64::from(*ms)),
        _ => None,
    }
}

/// Where a request's deadline falls relative to `now`: `Ok` with the time left, or `Err`
/// with how long ago it passed. `None` without a usable deadline.
fn time_left(headers: Option<&FieldTable>, now: SystemTime) -> Option<Result<Duration, Duration>> {
    let deadline_ms = deadline_millis(headers)?;
    let now_ms = unix_millis(now)?;
    let left_ms = deadline_ms.checked_sub(now_ms)?;
    let span = Duration::from_millis(left_ms.unsigned_abs());
    Some(if left_ms > 0 { Ok(span) } else { Err(span) })
}

/// A request's deadline on this machine's monotonic clock, given the wall clock and the
/// monotonic clock read at the same moment.
pub(crate) fn local_deadline(
    headers: Option<&FieldTable>,
    wall_now: SystemTime,
    now: Instant,
) -> Option<LocalDeadline> {
    Some(match time_left(headers, wall_now)? {
        Ok(left) => LocalDeadline {
            at: now
                .checked_add(left)
                .unwrap_or_else(|| crate::connect::deadline_after(left)),
            late_by: None,
        },
        Err(late) => LocalDeadline {
            at: now.checked_sub(late).unwrap_or(now),
            late_by: Some(late),
        },
    })
}

/// A request's deadline as this machine sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LocalDeadline {
    /// On the monotonic clock (clamped to now where that clock cannot reach so far back).
    pub(crate) at: Instant,
    /// How long ago it passed, when it has: read from the wall clocks, so exact however far.
    pub(crate) late_by: Option<Duration>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_deadline(ms: i64) -> FieldTable {
        let mut headers = FieldTable::default();
        headers.insert(DEADLINE_HEADER.into(), AmqpValue::LongLongInt(ms));
        headers
    }

    #[test]
    fn a_request_carries_its_deadline_both_ways() {
        let properties = properties("reply", "id-1", Duration::from_millis(2500), None);
        assert_eq!(properties.expiration().as_deref(), Some("2500"));
        assert_eq!(properties.reply_to().as_deref(), Some("reply"));
        assert_eq!(properties.correlation_id().as_deref(), Some("id-1"));
        let sent = deadline_millis(properties.headers().as_ref()).unwrap();
        let expected = unix_millis(SystemTime::now()).unwrap() + 2500;
        assert!((sent - expected).abs() < 1000, "{sent} vs {expected}");
    }

    #[test]
    fn deadlines_map_onto_the_local_clock() {
        let wall = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let now = Instant::now();
        let headers = with_deadline(1_000_000_000 + 1500);
        let local = local_deadline(Some(&headers), wall, now).unwrap();
        assert_eq!(local.at - now, Duration::from_millis(1500));
        assert_eq!(local.late_by, None);
        let headers = with_deadline(1_000_000_000 - 200);
        assert_eq!(
            time_left(Some(&headers), wall),
            Some(Err(Duration::from_millis(200)))
        );
        let late = local_deadline(Some(&headers), wall, now).unwrap();
        assert!(late.at <= now);
        assert_eq!(late.late_by, Some(Duration::from_millis(200)));
        assert_eq!(local_deadline(None, wall, now), None);
        let mut odd = FieldTable::default();
        odd.insert(DEADLINE_HEADER.into(), AmqpValue::LongString("soon".into()));
        assert_eq!(time_left(Some(&odd), wall), None);
    }
}
