//! Counters and histograms the writer keeps for `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds of the fsync latency buckets, in microseconds.
pub(crate) const FSYNC_BOUNDS_US: &[u64] = &[
    50,
    100,
    250,
    500,
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    1_000_000,
    u64::MAX,
];
/// Upper bounds of the records-per-batch buckets.
pub(crate) const BATCH_BOUNDS: &[u64] = &[
    1,
    2,
    4,
    8,
    16,
    32,
    64,
    128,
    256,
    512,
    1_024,
    4_096,
    16_384,
    65_536,
    u64::MAX,
];

/// A fixed-bucket histogram updated by one thread, read by any.
pub(crate) struct Histogram {
    bounds: &'static [u64],
    counts: Box<[AtomicU64]>,
    sum: AtomicU64,
}

impl Histogram {
    pub(crate) fn new(bounds: &'static [u64]) -> Histogram {
        assert_eq!(bounds.last(), Some(&u64::MAX));
        Histogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
        }
    }

    pub(crate) fn record(&self, value: u64) {
        let i = self.bounds.partition_point(|&b| b < value);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
    }

    /// Cumulative `(bound, count <= bound)` pairs and the sum.
    pub(crate) fn cumulative(&self) -> (Vec<(u64, u64)>, u64) {
        let mut total = 0;
        let buckets = self
            .bounds
            .iter()
            .zip(self.counts.iter())
            .map(|(&bound, count)| {
                total += count.load(Ordering::Relaxed);
                (bound, total)
            })
            .collect();
        (buckets, self.sum.load(Ordering::Relaxed))
    }
}

/// A copy of the log's counters.
#[derive(Clone, Debug, Default)]
pub struct WalStats {
    pub queue_depth: u64,
    pub records_written: u64,
    pub bytes_written: u64,
    pub batches: u64,
    pub fsyncs: u64,
    /// Prometheus-style cumulative histogram: (upper bound in microseconds,
    /// count <= bound), last bound u64::MAX = +Inf.
    pub fsync_latency_us: Vec<(u64, u64)>,
    pub fsync_latency_sum_us: u64,
    /// Same for records per batch.
    pub batch_records: Vec<(u64, u64)>,
    pub batch_records_sum: u64,
    pub snapshots: u64,
    /// Bytes of segment files on disk (preallocation included): what the
    /// log keeps for recovery and for consumers that hold it back.
    pub retained_bytes: u64,
    pub failed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let h = Histogram::new(BATCH_BOUNDS);
        for v in [1, 1, 3, 70_000] {
            h.record(v);
        }
        let (buckets, sum) = h.cumulative();
        assert_eq!(sum, 70_005);
        assert_eq!(buckets[0], (1, 2));
        assert_eq!(buckets[2], (4, 3));
        assert_eq!(*buckets.last().unwrap(), (u64::MAX, 4));
    }
}
