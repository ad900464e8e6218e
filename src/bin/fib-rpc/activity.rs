//! What `serve` logs about its traffic: one line per interval with traffic, one summary at
//! the end, both from the server's counters ([`ServerStats`]).

use std::time::Duration;

use fib_rpc::{LatencyHistogram, ServerStats};

/// The counts of an interval: `now`'s minus `then`'s (gauges as they are now).
fn difference(now: &ServerStats, then: &ServerStats) -> Activity {
    let before = then.outcomes();
    let mut counts = now.outcomes();
    for ((_, count), (_, earlier)) in counts.iter_mut().zip(before) {
        *count = count.saturating_sub(earlier);
    }
    Activity {
        received: now.received.saturating_sub(then.received),
        outcomes: counts,
        in_progress: now.in_progress,
        reconnects: now.reconnects.saturating_sub(then.reconnects),
        latency: quantiles(&now.handling.since(&then.handling)),
    }
}

/// An interval's or the whole run's figures, as shown.
#[derive(Debug, Clone, PartialEq)]
struct Activity {
    received: u64,
    outcomes: [(&'static str, u64); 8],
    in_progress: u64,
    reconnects: u64,
    /// p50 and p99 of handling time, if anything was answered.
    latency: Option<(Duration, Duration)>,
}

fn quantiles(histogram: &LatencyHistogram) -> Option<(Duration, Duration)> {
    Some((histogram.quantile(0.5)?, histogram.quantile(0.99)?))
}

impl Activity {
    fn of_run(stats: &ServerStats) -> Activity {
        difference(stats, &ServerStats::default())
    }

    /// `1234 requests (ok 1230, bad_request 3, out_of_range 1)`: the outcomes that occurred.
    fn requests(&self) -> String {
        let total: u64 = self.outcomes.iter().map(|(_, count)| count).sum();
        let shown: Vec<String> = self
            .outcomes
            .iter()
            .filter(|(_, count)| *count > 0)
            .map(|(name, count)| format!("{name} {count}"))
            .collect();
        let requests = match total {
            1 => "1 request".to_owned(),
            n => format!("{n} requests"),
        };
        match shown.is_empty() {
            true => requests,
            false => format!("{requests} ({})", shown.join(", ")),
        }
    }

    /// `, p50 0.04 ms, p99 0.31 ms`, or nothing when nothing was answered.
    fn latency(&self) -> String {
        match self.latency {
            Some((p50, p99)) => format!(", p50 {}, p99 {}", millis(p50), millis(p99)),
            None => String::new(),
        }
    }
}

/// The line for an interval of `elapsed` between two snapshots, or `None` when there was no
/// traffic in it: nothing received, nothing finished, no reconnection.
///
/// `last 60 s: 1234 requests (ok 1230, bad_request 3, out_of_range 1), p50 0.04 ms, p99 0.31 ms`
pub fn interval_line(elapsed: Duration, now: &ServerStats, then: &ServerStats) -> Option<String> {
    let activity = difference(now, then);
    let finished: u64 = activity.outcomes.iter().map(|(_, count)| count).sum();
    if activity.received == 0 && finished == 0 && activity.reconnects == 0 {
        return None;
    }
    let mut line = format!(
        "last {}: {}{}",
        seconds(elapsed),
        activity.requests(),
        activity.latency()
    );
    if activity.in_progress > 0 {
        line.push_str(&format!(", {} in progress", activity.in_progress));
    }
    if activity.reconnects > 0 {
        line.push_str(&format!(", reconnected {}", times(activity.reconnects)));
    }
    Some(line)
}

/// The line at shutdown, over the whole run:
///
/// `summary: up 2 h 5 min, 81234 requests (ok 81230, bad_request 4), 1 reconnect, p50 0.04 ms, p99 0.31 ms`
pub fn summary_line(uptime: Duration, stats: &ServerStats) -> String {
    let activity = Activity::of_run(stats);
    let reconnects = match activity.reconnects {
        1 => "1 reconnect".to_owned(),
        n => format!("{n} reconnects"),
    };
    format!(
        "summary: up {}, {}, {reconnects}{}",
        uptime_text(uptime),
        activity.requests(),
        activity.latency()
    )
}

fn times(n: u64) -> String {
    match n {
        1 => "once".to_owned(),
        n => format!("{n} times"),
    }
}

/// `60 s`, `1.5 s`: whole seconds when close to whole, else one decimal.
fn seconds(elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    if (secs - secs.round()).abs() < 0.05 {
        format!("{} s", secs.round())
    } else {
        format!("{secs:.1} s")
    }
}

/// A handling time in milliseconds, with two decimals below a second (`0.04 ms`), else in
/// seconds (`2.50 s`).
fn millis(duration: Duration) -> String {
    let ms = duration.as_secs_f64() * 1_000.0;
    if ms < 1_000.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{:.2} s", ms / 1_000.0)
    }
}

/// `3 d 4 h`, `2 h 5 min`, `5 min 12 s`, `12 s`: the two largest units.
fn uptime_text(uptime: Duration) -> String {
    let secs = uptime.as_secs();
    let (days, hours, mins, s) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60, secs % 60);
    if days > 0 {
        format!("{days} d {hours} h")
    } else if hours > 0 {
        format!("{hours} h {mins} min")
    } else if mins > 0 {
        format!("{mins} min {s} s")
    } else {
        format!("{s} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(set: impl FnOnce(&mut ServerStats)) -> ServerStats {
        let mut stats = ServerStats::default();
        set(&mut stats);
        stats
    }

    #[test]
    fn an_interval_without_traffic_has_no_line() {
        let same = stats(|s| {
            s.received = 10;
            s.ok = 10;
        });
        assert_eq!(interval_line(Duration::from_secs(60), &same, &same), None);
    }

    #[test]
    fn an_interval_line_counts_the_outcomes_that_occurred() {
        let then = stats(|s| {
            s.received = 100;
            s.ok = 99;
            s.bad_request = 1;
        });
        let now = stats(|s| {
            s.received = 1334;
            s.ok = 1329;
            s.bad_request = 4;
            s.out_of_range = 1;
        });
        assert_eq!(
            interval_line(Duration::from_millis(60_010), &now, &then).unwrap(),
            "last 60 s: 1234 requests (ok 1230, bad_request 3, out_of_range 1)"
        );
    }

    #[test]
    fn an_interval_line_shows_work_in_progress_and_reconnections() {
        let then = ServerStats::default();
        let now = stats(|s| {
            s.received = 2;
            s.in_progress = 2;
            s.reconnects = 1;
        });
        assert_eq!(
            interval_line(Duration::from_millis(1_500), &now, &then).unwrap(),
            "last 1.5 s: 0 requests, 2 in progress, reconnected once"
        );
    }

    #[test]
    fn latency_in_milliseconds_or_seconds() {
        let activity = Activity {
            latency: Some((Duration::from_micros(40), Duration::from_micros(2_500_000))),
            ..Activity::of_run(&ServerStats::default())
        };
        assert_eq!(activity.latency(), ", p50 0.04 ms, p99 2.50 s");
        assert_eq!(millis(Duration::from_micros(310)), "0.31 ms");
    }

    #[test]
    fn the_summary_covers_the_whole_run() {
        let all = stats(|s| {
            s.received = 81_234;
            s.ok = 81_230;
            s.bad_request = 4;
            s.reconnects = 1;
        });
        assert_eq!(
            summary_line(Duration::from_secs(2 * 3600 + 5 * 60 + 7), &all),
            "summary: up 2 h 5 min, 81234 requests (ok 81230, bad_request 4), 1 reconnect"
        );
        assert_eq!(
            summary_line(Duration::from_millis(3_400), &ServerStats::default()),
            "summary: up 3 s, 0 requests, 0 reconnects"
        );
        let one = stats(|s| {
            s.received = 1;
            s.expired = 1;
        });
        assert_eq!(
            summary_line(Duration::from_secs(75), &one),
            "summary: up 1 min 15 s, 1 request (expired 1), 0 reconnects"
        );
    }

    #[test]
    fn uptime_in_its_two_largest_units() {
        let at = |secs| uptime_text(Duration::from_secs(secs));
        assert_eq!(at(12), "12 s");
        assert_eq!(at(312), "5 min 12 s");
        assert_eq!(at(3 * 86_400 + 4 * 3_600 + 59), "3 d 4 h");
    }
}
