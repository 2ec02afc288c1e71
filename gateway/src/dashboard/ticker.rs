//! The dashboard's ticker: one thread per server that builds a snapshot
//! every `dashboard.interval_ms` and publishes it to the feed (the latest
//! for `GET /v1/admin/stats`, a frame for each stream subscriber).
//!
//! One builder for all subscribers, so the stream's cost depends on
//! neither the request rate nor the number of dashboards open: a snapshot
//! per period, then one `try_send` of the same bytes per subscriber. A
//! thread of its own rather than a task on an I/O thread, so that building
//! a snapshot never delays a request. It holds the app weakly.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Instant;

use bytes::Bytes;

use super::snapshot::SnapshotBuilder;
use crate::app::App;

/// The running ticker; stopped by [`DashboardTicker::stop`], or told to
/// stop when dropped.
pub struct DashboardTicker {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl DashboardTicker {
    /// Starts the thread; its first snapshot is taken at once.
    pub fn start(app: &Arc<App>) -> DashboardTicker {
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        let app = Arc::downgrade(app);
        let handle = std::thread::Builder::new()
            .name("dashboard".into())
            .spawn(move || tick_loop(app, thread_stop))
            .expect("spawn the dashboard thread");
        DashboardTicker {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops the thread and waits for it (blocking).
    pub fn stop(mut self) {
        self.signal();
        if let Some(handle) = self.handle.take() {
            if handle.join().is_err() {
                tracing::error!("the dashboard thread panicked");
            }
        }
    }

    fn signal(&self) {
        self.stop.store(true, Ordering::Release);
        if let Some(handle) = &self.handle {
            handle.thread().unpark();
        }
    }
}

impl Drop for DashboardTicker {
    /// Not joined: this may run on a runtime thread.
    fn drop(&mut self) {
        self.signal();
    }
}

/// Ticks on a fixed cadence: a slow snapshot does not push the next ones
/// later. After a stall longer than a period (the machine was busy), it
/// ticks at once and the cadence restarts from then.
fn tick_loop(app: Weak<App>, stop: Arc<AtomicBool>) {
    let Some(first) = app.upgrade() else { return };
    let interval = first.config.dashboard.interval;
    let mut builder = SnapshotBuilder::new(&first.config);
    drop(first);
    let mut next = Instant::now();
    while !stop.load(Ordering::Acquire) {
        let now = Instant::now();
        if now < next {
            std::thread::park_timeout(next - now);
            continue;
        }
        let Some(app) = app.upgrade() else { return };
        let snapshot = builder.build(&app);
        let json = serde_json::to_vec(&snapshot).expect("a snapshot serialises");
        app.feed.publish(Bytes::from(json), snapshot.point);
        drop(app);
        next += interval;
        let now = Instant::now();
        if next < now {
            next = now;
        }
    }
}
