//! Measurement: latency histograms, response counts and a latency timeline.
//!
//! Each worker records into its own `Stats` with no sharing, and the run merges
//! them at the end, so recording never contends. Latency is in microseconds.
//! In open-loop mode it is measured from the *scheduled* send time, so a
//! stalled server shows up as latency instead of as fewer requests
//! (coordinated omission).

use crate::client::{Response, TransportError};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::time::{Duration, Instant};

/// Highest latency the histograms track; anything slower is clamped to it
/// (and the request has timed out long before in any sane configuration).
pub const LATENCY_MAX_US: u64 = 120_000_000;
/// Timeline samples kept per worker; past this only histograms and counts
/// grow, and the report says the timeline was truncated.
pub const SAMPLES_PER_WORKER_MAX: usize = 1 << 20;

/// What a request was for. Kept small and `Copy`: it is recorded per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    /// A user's first purchase (and its retries).
    Purchase,
    /// The same purchase replayed with the same request_id.
    Replay,
    /// A second purchase with a new request_id that should exceed the limit.
    OverLimit,
    Cancel,
    Pay,
    /// Plain GET used when measuring the generator ceiling.
    Get,
}

impl OpKind {
    pub const ALL: [OpKind; 6] = [
        OpKind::Purchase,
        OpKind::Replay,
        OpKind::OverLimit,
        OpKind::Cancel,
        OpKind::Pay,
        OpKind::Get,
    ];

    fn index(self) -> usize {
        self as usize
    }

    pub fn label(self) -> &'static str {
        match self {
            OpKind::Purchase => "purchase",
            OpKind::Replay => "replay",
            OpKind::OverLimit => "over_limit",
            OpKind::Cancel => "cancel",
            OpKind::Pay => "pay",
            OpKind::Get => "get",
        }
    }
}

/// One point of the latency timeline.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Scheduled send time, µs since the run's start.
    pub at_us: u64,
    pub latency_us: u32,
    /// False for transport errors and 5xx.
    pub ok: bool,
}

/// How many times one (op, HTTP code, status) combination was seen.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ResponseCount {
    pub op: OpKind,
    /// HTTP status code, 0 for transport errors.
    pub http: u16,
    /// The body's `status` field (or the order `state`, or the transport error).
    pub status: String,
    pub count: u64,
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).expect("static histogram bounds are valid")
}

/// One worker's measurements.
pub struct Stats {
    start: Instant,
    hist: Vec<Option<Histogram<u64>>>,
    pub counts: Vec<ResponseCount>,
    pub samples: Vec<Sample>,
    pub samples_dropped: u64,
}

impl Stats {
    pub fn new(start: Instant) -> Stats {
        Stats {
            start,
            hist: (0..OpKind::ALL.len()).map(|_| None).collect(),
            counts: Vec::new(),
            samples: Vec::new(),
            samples_dropped: 0,
        }
    }

    /// Records one request: its latency from `scheduled`, and its outcome label.
    pub fn record(
        &mut self,
        op: OpKind,
        scheduled: Instant,
        done: Instant,
        result: &Result<Response, TransportError>,
        status: &str,
    ) {
        let latency_us =
            (done.saturating_duration_since(scheduled).as_micros() as u64).clamp(1, LATENCY_MAX_US);
        let h = self.hist[op.index()].get_or_insert_with(new_histogram);
        h.record(latency_us)
            .expect("latency is clamped into histogram bounds");
        let (http, ok) = match result {
            Ok(r) => (r.code, r.code < 500),
            Err(_) => (0, false),
        };
        if self.samples.len() < SAMPLES_PER_WORKER_MAX {
            self.samples.push(Sample {
                at_us: scheduled.saturating_duration_since(self.start).as_micros() as u64,
                latency_us: latency_us as u32,
                ok,
            });
        } else {
            self.samples_dropped += 1;
        }
        // A linear scan: a run sees a couple of dozen distinct combinations,
        // and this avoids allocating a key per request.
        if let Some(c) = self
            .counts
            .iter_mut()
            .find(|c| c.op == op && c.http == http && c.status == status)
        {
            c.count += 1;
        } else {
            self.counts.push(ResponseCount {
                op,
                http,
                status: status.to_string(),
                count: 1,
            });
        }
    }

    /// Folds another worker's measurements into this one.
    pub fn merge(&mut self, other: Stats) {
        for (mine, theirs) in self.hist.iter_mut().zip(other.hist) {
            if let Some(t) = theirs {
                match mine {
                    Some(m) => m.add(&t).expect("histograms share bounds"),
                    None => *mine = Some(t),
                }
            }
        }
        for c in other.counts {
            if let Some(m) = self
                .counts
                .iter_mut()
                .find(|m| m.op == c.op && m.http == c.http && m.status == c.status)
            {
                m.count += c.count;
            } else {
                self.counts.push(c);
            }
        }
        self.samples.extend(other.samples);
        self.samples_dropped += other.samples_dropped;
    }

    pub fn histogram(&self, op: OpKind) -> Option<&Histogram<u64>> {
        self.hist[op.index()].as_ref()
    }

    /// All ops' latencies in one histogram.
    pub fn combined(&self) -> Histogram<u64> {
        let mut all = new_histogram();
        for h in self.hist.iter().flatten() {
            all.add(h).expect("histograms share bounds");
        }
        all
    }

    pub fn requests(&self) -> u64 {
        self.counts.iter().map(|c| c.count).sum()
    }
}

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl LatencySummary {
    pub fn of(h: &Histogram<u64>) -> LatencySummary {
        let ms = |us: u64| us as f64 / 1000.0;
        LatencySummary {
            count: h.len(),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// One window of the latency-over-time chart.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TimelinePoint {
    /// Window start, seconds since the run began.
    pub t_s: f64,
    /// Requests scheduled in this window per second.
    pub rps: f64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Windows of the timeline; fixed so the chart has the same resolution
/// whether the run lasts one second or one hour.
pub const TIMELINE_WINDOWS: usize = 100;

/// Buckets samples into `TIMELINE_WINDOWS` equal windows over `duration`.
pub fn timeline(samples: &[Sample], duration: Duration) -> Vec<TimelinePoint> {
    let total_us = (duration.as_micros() as u64).max(1);
    let window_us = total_us.div_ceil(TIMELINE_WINDOWS as u64).max(1);
    let mut buckets: Vec<Vec<u32>> = vec![Vec::new(); TIMELINE_WINDOWS];
    let mut errors = vec![0u64; TIMELINE_WINDOWS];
    for s in samples {
        let i = ((s.at_us / window_us) as usize).min(TIMELINE_WINDOWS - 1);
        buckets[i].push(s.latency_us);
        if !s.ok {
            errors[i] += 1;
        }
    }
    let window_s = window_us as f64 / 1e6;
    buckets
        .into_iter()
        .zip(errors)
        .enumerate()
        .map(|(i, (mut lat, errors))| {
            lat.sort_unstable();
            let q = |p: f64| -> f64 {
                if lat.is_empty() {
                    0.0
                } else {
                    let idx = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
                    lat[idx] as f64 / 1000.0
                }
            };
            TimelinePoint {
                t_s: i as f64 * window_s,
                rps: lat.len() as f64 / window_s,
                errors,
                p50_ms: q(0.50),
                p99_ms: q(0.99),
                max_ms: q(1.0),
            }
        })
        .collect()
}

/// One bar of the latency histogram chart.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HistogramBucket {
    /// Upper edge of the bucket in ms (buckets double in width).
    pub upper_ms: f64,
    pub count: u64,
}

/// Log-2 buckets from 16 µs upwards, trimmed to the populated range.
pub fn histogram_buckets(h: &Histogram<u64>) -> Vec<HistogramBucket> {
    if h.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut lower = 0u64;
    let mut upper = 16u64;
    while lower <= h.max() {
        let count = h.count_between(lower, upper.saturating_sub(1).max(lower));
        out.push(HistogramBucket {
            upper_ms: upper as f64 / 1000.0,
            count,
        });
        lower = upper;
        upper = upper.saturating_mul(2);
    }
    while out.first().is_some_and(|b| b.count == 0) {
        out.remove(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeline_splits_by_schedule_time() {
        let samples: Vec<Sample> = (0..1000u64)
            .map(|i| Sample {
                at_us: i * 1000,
                latency_us: if i < 500 { 100 } else { 10_000 },
                ok: i % 100 != 0,
            })
            .collect();
        let t = timeline(&samples, Duration::from_secs(1));
        assert_eq!(t.len(), TIMELINE_WINDOWS);
        assert_eq!(t[0].p99_ms, 0.1);
        assert_eq!(t[99].p50_ms, 10.0);
        assert_eq!(t.iter().map(|p| p.errors).sum::<u64>(), 10);
        assert!((t[0].rps - 1_000.0).abs() < 1.0, "{}", t[0].rps);
    }

    #[test]
    fn histogram_buckets_cover_all_counts() {
        let mut h = new_histogram();
        for v in [20u64, 40, 40, 1000, 70_000] {
            h.record(v).unwrap();
        }
        let b = histogram_buckets(&h);
        assert_eq!(b.iter().map(|b| b.count).sum::<u64>(), 5);
        assert_eq!(b[0].upper_ms, 0.032);
    }
}
