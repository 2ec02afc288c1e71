//! The purchase latency histogram: fixed log-linear buckets of relaxed
//! atomics, so recording is a bucket index (a `leading_zeros` and two
//! shifts) and two uncontended `fetch_add`s, with no lock and no allocation.
//!
//! **Buckets.** Values are nanoseconds. Below 16 ns each value has its own
//! bucket; above, every power of two is split into 16 equal buckets, so a
//! bucket is at most 1/16 (6.25 %) of its lower bound wide. Values from
//! 2^37 ns (~137 s) on share the last bucket. A quantile is reported as the
//! highest value of its bucket (as HdrHistogram does): never below the
//! truth, at most 6.25 % above it.
//!
//! **Shards.** Two I/O threads incrementing the same counters would pass
//! their cache lines back and forth on every request. Each thread instead
//! records into its own shard (picked once per thread, round-robin, kept
//! in a thread-local); threads beyond [`SHARDS`] share shards, which is
//! still correct, only slower. A reading sums the shards.
//!
//! Readings are taken while threads record, so a reading may hold a
//! count whose sum is not in yet (or the reverse): the two are each exact
//! over any interval between readings, only not at the same instant.
//!
//! This file imports nothing of the crate: `metrics` holds the histograms,
//! the dashboard reads them.

use std::cell::Cell;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Bits of sub-bucket per power of two: 16 buckets an octave.
const SUB_BITS: u32 = 4;
const SUB: usize = 1 << SUB_BITS;
/// Octaves from this exponent on (2^37 ns, ~137 s) share the last bucket.
const TOP_EXP: u32 = 37;
/// Buckets per histogram: 16 exact ones, then 16 per octave up to `TOP_EXP`.
pub const BUCKETS: usize = SUB + (TOP_EXP - SUB_BITS) as usize * SUB;
/// Shards per histogram (see the module doc).
pub const SHARDS: usize = 8;
/// The octave edges (2^k ns) exported to Prometheus: 8.2 µs to 68.7 s.
const PROMETHEUS_EXPONENTS: std::ops::RangeInclusive<u32> = 13..=36;

/// The bucket of a value, in nanoseconds.
#[inline]
pub fn bucket_of(ns: u64) -> usize {
    if ns < SUB as u64 {
        return ns as usize;
    }
    let exp = 63 - ns.leading_zeros();
    if exp >= TOP_EXP {
        return BUCKETS - 1;
    }
    let mantissa = (ns >> (exp - SUB_BITS)) as usize & (SUB - 1);
    (exp - SUB_BITS + 1) as usize * SUB + mantissa
}

/// The lowest value of bucket `i` and the first value past it.
pub fn bucket_bounds(i: usize) -> (u64, u64) {
    assert!(i < BUCKETS, "bucket {i} out of range");
    if i < SUB {
        return (i as u64, i as u64 + 1);
    }
    let shift = (i / SUB - 1) as u32;
    let lower = ((SUB + i % SUB) as u64) << shift;
    (lower, lower + (1 << shift))
}

/// One thread's counters, on cache lines of their own.
#[repr(align(128))]
struct LatencyShard {
    counts: [AtomicU64; BUCKETS],
    sum_ns: AtomicU64,
}

/// A latency histogram that any thread may record into.
pub struct LatencyHistogram {
    shards: Box<[LatencyShard]>,
}

impl Default for LatencyHistogram {
    fn default() -> LatencyHistogram {
        let shards = (0..SHARDS)
            .map(|_| LatencyShard {
                counts: std::array::from_fn(|_| AtomicU64::new(0)),
                sum_ns: AtomicU64::new(0),
            })
            .collect();
        LatencyHistogram { shards }
    }
}

thread_local! {
    /// This thread's shard; `usize::MAX` until its first record.
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}
/// The shard the next new thread takes.
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

#[inline]
fn shard_index() -> usize {
    SHARD.with(|shard| {
        let i = shard.get();
        if i < SHARDS {
            return i;
        }
        let i = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
        shard.set(i);
        i
    })
}

impl LatencyHistogram {
    /// Counts one latency.
    #[inline]
    pub fn record(&self, took: Duration) {
        // Saturates past ~584 years, which lands in the last bucket anyway.
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let shard = &self.shards[shard_index()];
        shard.counts[bucket_of(ns)].fetch_add(1, Ordering::Relaxed);
        shard.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// The counts so far, summed over the shards.
    pub fn read(&self) -> HistogramReading {
        let mut counts = vec![0u64; BUCKETS];
        let mut sum_ns = 0u64;
        for shard in self.shards.iter() {
            for (total, count) in counts.iter_mut().zip(shard.counts.iter()) {
                *total += count.load(Ordering::Relaxed);
            }
            sum_ns = sum_ns.wrapping_add(shard.sum_ns.load(Ordering::Relaxed));
        }
        HistogramReading { counts, sum_ns }
    }
}

/// The counts of a histogram at one time, or between two times.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistogramReading {
    /// Per bucket, [`BUCKETS`] of them.
    counts: Vec<u64>,
    sum_ns: u64,
}

impl Default for HistogramReading {
    fn default() -> HistogramReading {
        HistogramReading {
            counts: vec![0; BUCKETS],
            sum_ns: 0,
        }
    }
}

impl HistogramReading {
    /// How many values were counted.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub fn sum_ns(&self) -> u64 {
        self.sum_ns
    }

    /// What was counted after `earlier`, a reading of the same histogram.
    /// Counters only grow; a bucket that seems to shrink (never expected)
    /// counts as zero rather than wrapping.
    pub fn since(&self, earlier: &HistogramReading) -> HistogramReading {
        HistogramReading {
            counts: self
                .counts
                .iter()
                .zip(&earlier.counts)
                .map(|(now, then)| now.saturating_sub(*then))
                .collect(),
            sum_ns: self.sum_ns.wrapping_sub(earlier.sum_ns),
        }
    }

    /// The value at quantile `q` (0 to 1) in nanoseconds: the highest value
    /// of the bucket holding the `ceil(q * count)`-th smallest value.
    /// `None` when nothing was counted.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * count as f64).ceil() as u64).clamp(1, count);
        let mut seen = 0;
        for (i, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(bucket_bounds(i).1 - 1);
            }
        }
        unreachable!("rank {rank} is at most the count {count}")
    }

    /// Writes the reading as the buckets, sum and count of a Prometheus
    /// histogram in seconds, `labels` (`key="value"` pairs, comma
    /// separated) on every line. The bounds are the octave edges 2^k ns,
    /// which are bucket edges, so every cumulative count is exact.
    pub fn render_prometheus(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0u64;
        let mut next = 0usize;
        for exp in PROMETHEUS_EXPONENTS {
            let edge = 1u64 << exp;
            // Buckets wholly below the edge: those starting before it (the
            // edge is a bucket boundary for every exponent >= SUB_BITS).
            while next < BUCKETS && bucket_bounds(next).0 < edge {
                cumulative += self.counts[next];
                next += 1;
            }
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels},le=\"{}\"}} {cumulative}",
                edge as f64 / 1e9
            );
        }
        let count = self.count();
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum_ns as f64 / 1e9);
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Every value falls in a bucket whose bounds hold it, buckets tile the
    /// line without gaps, and each is at most 1/16 of its lower bound wide.
    #[test]
    fn buckets_tile_and_hold_their_values() {
        let mut expected_lower = 0;
        for i in 0..BUCKETS {
            let (lower, upper) = bucket_bounds(i);
            assert_eq!(lower, expected_lower, "gap before bucket {i}");
            assert!(upper > lower);
            if i >= SUB {
                assert!((upper - lower) * 16 <= lower, "bucket {i} too wide");
            }
            assert_eq!(bucket_of(lower), i);
            if i + 1 < BUCKETS {
                assert_eq!(bucket_of(upper - 1), i);
            }
            expected_lower = upper;
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        assert_eq!(bucket_of(1 << TOP_EXP), BUCKETS - 1);
        assert_eq!(bucket_of((1 << TOP_EXP) - 1), BUCKETS - 1);
    }

    /// Quantiles of random latencies (log-uniform from 1 µs to 10 s) are
    /// never below the exact order statistic and at most 6.25 % above it.
    #[test]
    fn quantiles_are_within_a_bucket_of_the_truth() {
        let seed = rand::random::<u64>();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let h = LatencyHistogram::default();
        let mut values: Vec<u64> = (0..20_000)
            .map(|_| 10f64.powf(rng.gen_range(3.0..10.0)) as u64)
            .collect();
        for &v in &values {
            h.record(Duration::from_nanos(v));
        }
        values.sort_unstable();
        let reading = h.read();
        assert_eq!(reading.count(), values.len() as u64);
        assert_eq!(reading.sum_ns(), values.iter().sum::<u64>());
        for q in [0.0, 0.01, 0.5, 0.9, 0.99, 0.999, 1.0] {
            let rank = ((q * values.len() as f64).ceil() as usize).max(1);
            let truth = values[rank - 1];
            let got = reading.quantile(q).unwrap();
            assert!(got >= truth, "seed {seed}: q {q}: {got} < {truth}");
            assert!(
                (got - truth) as f64 <= truth as f64 / 16.0,
                "seed {seed}: q {q}: {got} vs {truth}"
            );
        }
        assert_eq!(HistogramReading::default().quantile(0.5), None);
    }

    /// A reading minus an earlier one is what was recorded in between,
    /// from any number of threads.
    #[test]
    fn since_counts_the_interval_across_threads() {
        let h = LatencyHistogram::default();
        h.record(Duration::from_micros(5));
        let before = h.read();
        std::thread::scope(|s| {
            for t in 0..(SHARDS as u64 + 3) {
                let h = &h;
                s.spawn(move || {
                    for i in 0..1000 {
                        h.record(Duration::from_micros(100 + t + i % 7));
                    }
                });
            }
        });
        let delta = h.read().since(&before);
        assert_eq!(delta.count(), (SHARDS as u64 + 3) * 1000);
        let p50 = delta.quantile(0.5).unwrap();
        assert!((100_000..120_000).contains(&p50), "{p50}");
    }

    /// The Prometheus buckets are cumulative at the octave edges and end
    /// with +Inf equal to the count.
    #[test]
    fn prometheus_buckets_are_cumulative_at_edges() {
        let h = LatencyHistogram::default();
        for ns in [10_000, 16_383, 16_384, 1_000_000, 200_000_000_000] {
            h.record(Duration::from_nanos(ns));
        }
        let mut out = String::new();
        h.read().render_prometheus(&mut out, "x_seconds", "k=\"v\"");
        // 8192 ns: nothing; 16384 ns: the two values below it.
        assert!(
            out.contains("x_seconds_bucket{k=\"v\",le=\"0.000008192\"} 0\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{k=\"v\",le=\"0.000016384\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{k=\"v\",le=\"0.001048576\"} 4\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{k=\"v\",le=\"68.719476736\"} 4\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{k=\"v\",le=\"+Inf\"} 5\n"),
            "{out}"
        );
        assert!(out.contains("x_seconds_count{k=\"v\"} 5\n"), "{out}");
    }
}
