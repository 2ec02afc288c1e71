//! Yielding to a rush: while the log grows at a rush's pace, the relay
//! writes one batch at a time, one lane after another, and rests between
//! batches, so that PostgreSQL's work (on the same box, often) does not
//! take the cores the purchases need. The lag grows for those seconds and
//! the relay catches up at full speed when the rush is over; a relay whose
//! lag holds half of `export.max_lag_bytes` stops yielding, because a full
//! disk would refuse purchases (503) for longer than a busy one slows them.
//!
//! A sale rarely logs at a rush's pace for long: sold-out rejections write
//! nothing, so the log grows by the stock, not by the crowd.

use std::time::{Duration, Instant};

/// Log growth, in records a second, from which on the relay yields. At
/// this pace its full-speed writes would take about a sixth of a core of
/// PostgreSQL's (BENCHMARKS.md: about 140k rows/s on two cores).
pub(crate) const RUSH_RECORDS_PER_S: u64 = 20_000;
/// While yielding, the relay rests this many times as long as its last
/// batch took: at most a fifth of its time writing.
const REST_FACTOR: u32 = 4;
/// Longest rest, so a slow batch does not stall the export for long.
const REST_MAX: Duration = Duration::from_secs(2);
/// The span of one measurement of the log's growth.
const WINDOW: Duration = Duration::from_millis(500);

/// Watches how fast the log grows.
pub(crate) struct RushWatch {
    since: Instant,
    from_lsn: u64,
    rushing: bool,
}

impl RushWatch {
    pub(crate) fn new(now: Instant, lsn: u64) -> RushWatch {
        RushWatch {
            since: now,
            from_lsn: lsn,
            rushing: false,
        }
    }

    /// Notes the log's durable end `lsn` at `now`; true while the log grew
    /// at a rush's pace over the last whole window.
    pub(crate) fn observe(&mut self, now: Instant, lsn: u64) -> bool {
        let elapsed = now.saturating_duration_since(self.since);
        if elapsed >= WINDOW {
            let grown = lsn.saturating_sub(self.from_lsn) as f64;
            self.rushing = grown / elapsed.as_secs_f64() >= RUSH_RECORDS_PER_S as f64;
            self.since = now;
            self.from_lsn = lsn;
        }
        self.rushing
    }
}

/// How long a yielding relay rests after a batch that took `took`.
pub(crate) fn rest_after(took: Duration) -> Duration {
    (took * REST_FACTOR).min(REST_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rush_is_fast_log_growth_over_a_whole_window() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut w = RushWatch::new(t0, 0);
        // 20k records in 100 ms: not judged before the window is whole.
        assert!(!w.observe(ms(100), 20_000));
        // 30k in 600 ms is 50k a second: a rush.
        assert!(w.observe(ms(600), 30_000));
        // Within the next window the verdict holds.
        assert!(w.observe(ms(700), 30_000));
        // 5k more in 600 ms (8k a second): over.
        assert!(!w.observe(ms(1_200), 35_000));
        // Exactly the threshold counts as a rush.
        let per_window = RUSH_RECORDS_PER_S / 2;
        assert!(w.observe(ms(1_700), 35_000 + per_window));
    }

    #[test]
    fn rests_are_a_multiple_of_the_batch_and_capped() {
        assert_eq!(
            rest_after(Duration::from_millis(50)),
            Duration::from_millis(200)
        );
        assert_eq!(rest_after(Duration::from_secs(10)), REST_MAX);
    }
}
