//! Send slots: "now" in the closed loop, a fixed per-worker schedule in the
//! open loop (as wrk2 does), so latency can be taken from the slot.

use std::time::{Duration, Instant};

/// Hands out send times: "now" in closed loop, a fixed schedule in open loop.
pub struct Pacer {
    interval: Option<Duration>,
    next: Instant,
}

impl Pacer {
    pub fn new(rate: Option<f64>, connections: u32, worker: u32, start: Instant) -> Pacer {
        match rate {
            None => Pacer {
                interval: None,
                next: start,
            },
            Some(r) => {
                let interval = Duration::from_secs_f64(connections as f64 / r);
                // Stagger workers across one interval so the aggregate
                // schedule is even rather than C requests in a burst.
                let offset = interval.mul_f64(worker as f64 / connections as f64);
                Pacer {
                    interval: Some(interval),
                    next: start + offset,
                }
            }
        }
    }

    /// Waits for the next slot and returns the time latency is measured from.
    pub async fn slot(&mut self) -> Instant {
        match self.interval {
            None => Instant::now(),
            Some(iv) => {
                let t = self.next;
                self.next += iv;
                if t > Instant::now() {
                    tokio::time::sleep_until(t.into()).await;
                }
                t
            }
        }
    }
}
