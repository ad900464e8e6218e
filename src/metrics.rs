//! Latency histograms: the one figure in the statistics that is not a plain counter.
//!
//! The client and the server record durations into fixed buckets with atomic counters (no
//! lock, no allocation per call) and hand out [`LatencyHistogram`] snapshots. A snapshot is
//! plain data: a program exports it however it likes (Prometheus' `_bucket`/`_sum`/`_count`
//! series map onto it directly), and two snapshots subtract to give an interval's figures.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The buckets' upper bounds in microseconds, from 10 µs to 10 s in 1-2.5-5 steps: fine
/// enough to tell a cached answer from a computed one, wide enough for a slow handler. A last,
/// unbounded bucket takes everything above.
const BOUNDS_MICROS: [u64; 19] = [
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000,
    500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// Number of buckets, the unbounded one included.
const BUCKETS: usize = BOUNDS_MICROS.len() + 1;

/// A snapshot of a latency histogram: how many durations fell in each bucket, and their sum.
///
/// Buckets have fixed upper bounds ([`bounds`](Self::bounds)) from 10 µs to 10 s, plus one
/// unbounded bucket. Snapshots from [`ClientStats`](crate::ClientStats) and
/// [`ServerStats`](crate::ServerStats) only grow; [`since`](Self::since) gives the figures
/// of an interval between two of them.
///
/// ```
/// use fib_rpc::LatencyHistogram;
///
/// let empty = LatencyHistogram::default();
/// assert_eq!(empty.count(), 0);
/// assert_eq!(empty.quantile(0.5), None);
/// // Prometheus-style cumulative buckets: (upper bound, count at or below it).
/// assert_eq!(empty.cumulative().count(), LatencyHistogram::bounds().len() + 1);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencyHistogram {
    /// Durations per bucket (not cumulative), the unbounded bucket last.
    counts: [u64; BUCKETS],
    sum_nanos: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            counts: [0; BUCKETS],
            sum_nanos: 0,
        }
    }
}

impl LatencyHistogram {
    /// The buckets' upper bounds (inclusive), smallest first; one more bucket, unbounded,
    /// follows the last.
    pub fn bounds() -> impl ExactSizeIterator<Item = Duration> {
        BOUNDS_MICROS
            .iter()
            .map(|&micros| Duration::from_micros(micros))
    }

    /// How many durations were recorded.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The sum of every duration recorded.
    pub fn sum(&self) -> Duration {
        Duration::from_nanos(self.sum_nanos)
    }

    /// Cumulative buckets as Prometheus exposes them: for each upper bound, how many
    /// durations were at or below it; the last item (`None`, the `+Inf` bucket) is
    /// [`count`](Self::count).
    pub fn cumulative(&self) -> impl Iterator<Item = (Option<Duration>, u64)> + '_ {
        let bounds = Self::bounds().map(Some).chain(std::iter::once(None));
        bounds
            .zip(self.counts.iter())
            .scan(0u64, |total, (bound, count)| {
                *total += count;
                Some((bound, *total))
            })
    }

    /// An estimate of the `q` quantile (`0.5` for the median, `0.99`), interpolated within
    /// its bucket as Prometheus' `histogram_quantile` does; `None` when nothing was recorded.
    /// In the unbounded bucket the estimate is the last bound (10 s): "at least".
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut below = 0u64;
        for (index, &count) in self.counts.iter().enumerate() {
            if count > 0 && (below + count) as f64 >= rank {
                let Some(&upper) = BOUNDS_MICROS.get(index) else {
                    break; // the unbounded bucket
                };
                let lower = if index == 0 {
                    0
                } else {
                    BOUNDS_MICROS[index - 1]
                };
                let within = ((rank - below as f64) / count as f64).clamp(0.0, 1.0);
                let micros = lower as f64 + (upper - lower) as f64 * within;
                return Some(Duration::from_nanos((micros * 1_000.0) as u64));
            }
            below += count;
        }
        Some(Duration::from_micros(
            BOUNDS_MICROS[BOUNDS_MICROS.len() - 1],
        ))
    }

    /// What was recorded after `earlier` (a snapshot of the same histogram taken before).
    pub fn since(&self, earlier: &LatencyHistogram) -> LatencyHistogram {
        let mut counts = [0; BUCKETS];
        for (slot, (now, then)) in counts
            .iter_mut()
            .zip(self.counts.iter().zip(earlier.counts.iter()))
        {
            *slot = now.saturating_sub(*then);
        }
        LatencyHistogram {
            counts,
            sum_nanos: self.sum_nanos.saturating_sub(earlier.sum_nanos),
        }
    }
}

/// The live histogram behind [`LatencyHistogram`]: recorded into from any thread.
#[derive(Debug)]
pub(crate) struct LatencyRecorder {
    counts: [AtomicU64; BUCKETS],
    sum_nanos: AtomicU64,
}

impl Default for LatencyRecorder {
    fn default() -> Self {
        LatencyRecorder {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_nanos: AtomicU64::new(0),
        }
    }
}

impl LatencyRecorder {
    /// Records one duration. Relaxed, like the counters: a snapshot may see the count a
    /// moment before the sum.
    pub(crate) fn record(&self, duration: Duration) {
        // In nanoseconds, so a duration just above a bound (10.5 µs) is not counted at or
        // below it, as Prometheus' `le` means.
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        let bucket = BOUNDS_MICROS.partition_point(|&bound| bound.saturating_mul(1_000) < nanos);
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> LatencyHistogram {
        LatencyHistogram {
            counts: std::array::from_fn(|index| self.counts[index].load(Ordering::Relaxed)),
            sum_nanos: self.sum_nanos.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(micros: &[u64]) -> LatencyHistogram {
        let recorder = LatencyRecorder::default();
        for &m in micros {
            recorder.record(Duration::from_micros(m));
        }
        recorder.snapshot()
    }

    #[test]
    fn durations_land_in_the_bucket_of_their_upper_bound() {
        let histogram = recorded(&[0, 10, 11, 10_000_000, 10_000_001, u64::MAX / 2_000]);
        let cumulative: Vec<u64> = histogram.cumulative().map(|(_, n)| n).collect();
        assert_eq!(cumulative[0], 2, "0 and 10 µs are at or below 10 µs");
        let recorder = LatencyRecorder::default();
        recorder.record(Duration::from_nanos(10_001));
        let first = recorder.snapshot().cumulative().next().unwrap();
        assert_eq!(
            first,
            (Some(Duration::from_micros(10)), 0),
            "10.001 µs is above 10 µs"
        );
        assert_eq!(cumulative[1], 3, "11 µs is in the 25 µs bucket");
        assert_eq!(
            cumulative[BUCKETS - 2],
            4,
            "10 s is in the last bounded bucket"
        );
        assert_eq!(
            cumulative[BUCKETS - 1],
            6,
            "the +Inf bucket counts everything"
        );
        assert_eq!(histogram.count(), 6);
        assert_eq!(
            histogram.cumulative().last().map(|(bound, _)| bound),
            Some(None)
        );
    }

    #[test]
    fn sum_adds_every_duration() {
        let histogram = recorded(&[100, 200, 300]);
        assert_eq!(histogram.sum(), Duration::from_micros(600));
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket() {
        // 100 durations of 60..=100 µs all fall in the (50, 100] bucket.
        let histogram = recorded(&[80; 100]);
        let median = histogram.quantile(0.5).unwrap();
        assert_eq!(median, Duration::from_micros(75));
        assert_eq!(histogram.quantile(1.0), Some(Duration::from_micros(100)));
        // 99 fast, 1 slow: p50 is fast, p99 at the edge, p100 in the slow bucket.
        let mut micros = vec![20; 99];
        micros.push(2_000_000);
        let histogram = recorded(&micros);
        assert!(histogram.quantile(0.5).unwrap() <= Duration::from_micros(25));
        assert!(histogram.quantile(0.99).unwrap() <= Duration::from_micros(25));
        assert!(histogram.quantile(1.0).unwrap() > Duration::from_secs(1));
        assert_eq!(
            recorded(&[20_000_000]).quantile(0.5),
            Some(Duration::from_secs(10)),
            "above the last bound: at least 10 s"
        );
    }

    #[test]
    fn since_gives_an_interval() {
        let recorder = LatencyRecorder::default();
        recorder.record(Duration::from_micros(20));
        let before = recorder.snapshot();
        recorder.record(Duration::from_millis(3));
        recorder.record(Duration::from_millis(4));
        let interval = recorder.snapshot().since(&before);
        assert_eq!(interval.count(), 2);
        assert_eq!(interval.sum(), Duration::from_millis(7));
        assert!(interval.quantile(0.5).unwrap() > Duration::from_millis(2));
    }
}
