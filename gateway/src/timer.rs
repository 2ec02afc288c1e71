//! A coarse timer for hyper's header read timeout, one per I/O thread.
//!
//! hyper arms its header read timer for every request head it waits for: a
//! boxed tokio `Sleep`, registered in tokio's timer wheel, deregistered when
//! the head arrives. Each registration with a deadline earlier than the
//! wheel's next one also wakes the runtime's driver, a `write` to its
//! eventfd made by the very thread that is running: 0.3 syscalls and ~900
//! instructions per admission, for a deadline seconds away that almost
//! never fires.
//!
//! Here a sleep is a slot in a per-thread slab: registering and dropping it
//! is a push and a remove under an uncontended lock, and one ticker task per
//! thread wakes the expired ones every [`CoarseTimer::tick`]. A sleep thus
//! ends up to one tick late, which a timeout of seconds does not notice
//! (the tick is an eighth of the timeout, between 10 and 250 ms). Each tick
//! walks the slab, whose size is the most sleeps ever pending at once
//! (bounded by the connection cap).
//!
//! Deadlines are `std::time::Instant`s: unlike tokio's timer, these sleeps
//! do not follow tokio's paused test clock.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use hyper::rt::{Sleep, Timer};
use parking_lot::Mutex;
use slab::Slab;

/// The timer of one I/O thread. Cheap to clone.
#[derive(Clone)]
pub struct CoarseTimer {
    sleeping: Arc<Mutex<Sleeping>>,
    tick: Duration,
}

#[derive(Default)]
struct Sleeping {
    slots: Slab<Slot>,
    /// Tells apart the sleeps that used a slot, in turn.
    next_id: u64,
}

struct Slot {
    id: u64,
    deadline: Instant,
    waker: Waker,
}

impl Sleeping {
    /// The slot of sleep `id`, unless it was freed (the ticker woke it).
    fn slot(&mut self, key: usize, id: u64) -> Option<&mut Slot> {
        self.slots.get_mut(key).filter(|slot| slot.id == id)
    }
}

impl CoarseTimer {
    /// A timer whose sleeps end within about `timeout / 8` (10 to 250 ms)
    /// after their deadline, for timeouts of about `timeout`.
    pub fn new(timeout: Duration) -> CoarseTimer {
        CoarseTimer {
            sleeping: Arc::default(),
            tick: (timeout / 8).clamp(Duration::from_millis(10), Duration::from_millis(250)),
        }
    }

    /// How late a sleep may end.
    pub fn tick(&self) -> Duration {
        self.tick
    }

    /// Sleeps registered and not yet ended or dropped.
    pub fn pending(&self) -> usize {
        self.sleeping.lock().slots.len()
    }

    /// Wakes the expired sleeps every tick; spawn it on the thread's runtime.
    /// Runs until the runtime is dropped.
    pub async fn run(self) {
        let mut ticks = tokio::time::interval(self.tick);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            self.wake_expired(Instant::now());
        }
    }

    fn wake_expired(&self, now: Instant) {
        let mut expired = Vec::new();
        {
            let mut sleeping = self.sleeping.lock();
            sleeping.slots.retain(|_, slot| {
                if slot.deadline <= now {
                    expired.push(slot.waker.clone());
                    false
                } else {
                    true
                }
            });
        }
        // Outside the lock: a woken task may be polled (and register) at once.
        for waker in expired {
            waker.wake();
        }
    }
}

impl Timer for CoarseTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.sleep_until(Instant::now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        Box::pin(CoarseSleep {
            deadline,
            sleeping: self.sleeping.clone(),
            key: None,
        })
    }
}

struct CoarseSleep {
    deadline: Instant,
    sleeping: Arc<Mutex<Sleeping>>,
    /// Slot and id while registered.
    key: Option<(usize, u64)>,
}

impl Future for CoarseSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let expired = Instant::now() >= this.deadline;
        let mut sleeping = this.sleeping.lock();
        let registered = this
            .key
            .filter(|&(key, id)| sleeping.slot(key, id).is_some());
        if expired {
            if let Some((key, _)) = registered {
                sleeping.slots.remove(key);
            }
            this.key = None;
            return Poll::Ready(());
        }
        match registered.and_then(|(key, id)| sleeping.slot(key, id)) {
            Some(slot) => {
                if !slot.waker.will_wake(cx.waker()) {
                    slot.waker.clone_from(cx.waker());
                }
            }
            None => {
                let id = sleeping.next_id;
                sleeping.next_id += 1;
                let key = sleeping.slots.insert(Slot {
                    id,
                    deadline: this.deadline,
                    waker: cx.waker().clone(),
                });
                this.key = Some((key, id));
            }
        }
        Poll::Pending
    }
}

impl Sleep for CoarseSleep {}

impl Drop for CoarseSleep {
    fn drop(&mut self) {
        if let Some((key, id)) = self.key.take() {
            let mut sleeping = self.sleeping.lock();
            if sleeping.slot(key, id).is_some() {
                sleeping.slots.remove(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_sleep_ends_after_its_deadline() {
        let timer = CoarseTimer::new(Duration::from_millis(160));
        assert_eq!(timer.tick(), Duration::from_millis(20));
        tokio::spawn(timer.clone().run());
        let start = Instant::now();
        timer.sleep(Duration::from_millis(100)).await;
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(100), "{took:?}");
        // A tick (20 ms) late at most, but a loaded CI box may be slower.
        assert!(took < Duration::from_millis(1000), "{took:?}");
        assert_eq!(timer.pending(), 0);
    }

    #[tokio::test]
    async fn a_dropped_sleep_leaves_no_slot() {
        let timer = CoarseTimer::new(Duration::from_secs(5));
        let mut sleep = timer.sleep(Duration::from_secs(5));
        let waker = futures_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(sleep.as_mut().poll(&mut cx).is_pending());
        assert!(sleep.as_mut().poll(&mut cx).is_pending());
        assert_eq!(timer.pending(), 1, "polled twice, registered once");
        drop(sleep);
        assert_eq!(timer.pending(), 0);
    }

    #[test]
    fn the_ticker_wakes_only_the_expired() {
        let timer = CoarseTimer::new(Duration::from_secs(5));
        let now = Instant::now();
        let mut early = timer.sleep_until(now + Duration::from_millis(10));
        let mut late = timer.sleep_until(now + Duration::from_secs(60));
        let waker = futures_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(early.as_mut().poll(&mut cx).is_pending());
        assert!(late.as_mut().poll(&mut cx).is_pending());
        timer.wake_expired(now + Duration::from_millis(20));
        assert_eq!(timer.pending(), 1);
        std::thread::sleep(Duration::from_millis(15));
        assert!(early.as_mut().poll(&mut cx).is_ready());
        assert!(late.as_mut().poll(&mut cx).is_pending());
        drop(early);
        drop(late);
        assert_eq!(timer.pending(), 0);
    }

    fn futures_waker() -> Waker {
        Waker::noop().clone()
    }
}
