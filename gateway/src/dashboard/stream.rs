//! The feed: the latest snapshot, the recent chart points, and the
//! subscribers of `GET /v1/admin/stream`, each with a bounded queue.
//!
//! The ticker (`super::ticker`) publishes one snapshot per period; the feed
//! hands each subscriber's queue a reference to the same bytes with
//! `try_send`, so a period costs O(subscribers), whatever the request rate.
//! What bounds it:
//! - at most `stream_subscribers_max` subscribers; one more is refused;
//! - at most `stream_buffer_snapshots` snapshots queued per subscriber,
//!   after the kernel's socket buffers and hyper's write buffer (both
//!   bounded) are full. A subscriber whose queue is full when a snapshot
//!   comes is dropped, not buffered: its queue is closed and its socket
//!   shut down, so its connection ends even though it reads nothing, and
//!   its slot is free at once.
//!
//! Nothing here reads the app; this file imports only `super::json`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::{Shutdown, TcpStream};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use hyper::body::{Body, Frame, SizeHint};
use parking_lot::Mutex;
use slab::Slab;
use tokio::sync::mpsc::{self, error::TrySendError};

use super::json::ChartPoint;

/// The feed's limits, from `[dashboard]`.
#[derive(Clone, Copy, Debug)]
pub struct StreamLimits {
    pub subscribers_max: usize,
    pub buffer_snapshots: usize,
    pub history_points: usize,
}

/// What the ticker publishes and the dashboard's routes read.
pub struct SnapshotFeed {
    limits: StreamLimits,
    state: Mutex<StreamState>,
    dropped: AtomicU64,
    refused: AtomicU64,
}

struct StreamState {
    subscribers: Slab<Subscriber>,
    /// Tells apart the subscribers that used a slot, in turn.
    next_id: u64,
    /// Set at shutdown: no new subscriber, and the queues are closed.
    closed: bool,
    /// The latest snapshot's JSON.
    latest: Option<Bytes>,
    /// The latest chart points, oldest first, at most `history_points`.
    history: VecDeque<ChartPoint>,
}

struct Subscriber {
    id: u64,
    queue: mpsc::Sender<Bytes>,
    /// The subscriber's socket (a duplicate of its connection's
    /// descriptor), shut down when it is dropped for being slow.
    socket: Option<TcpStream>,
}

/// Why a subscription was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubscribeError {
    #[error("{0} stream subscribers already (dashboard.stream_subscribers_max)")]
    Full(usize),
    #[error("the server is shutting down")]
    Closed,
}

impl SnapshotFeed {
    pub fn new(limits: StreamLimits) -> SnapshotFeed {
        assert!(limits.subscribers_max > 0 && limits.buffer_snapshots > 0);
        SnapshotFeed {
            limits,
            state: Mutex::new(StreamState {
                subscribers: Slab::new(),
                next_id: 0,
                closed: false,
                latest: None,
                history: VecDeque::new(),
            }),
            dropped: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// The latest snapshot's JSON, if one was published.
    pub fn latest(&self) -> Option<Bytes> {
        self.state.lock().latest.clone()
    }

    /// Publishes a snapshot (its JSON) and its chart point: keeps both for
    /// new subscribers and queues the snapshot for every subscriber,
    /// dropping those whose queue is full. Returns how many were dropped.
    pub fn publish(&self, snapshot: Bytes, point: ChartPoint) -> usize {
        let frame = event("snapshot", &snapshot);
        let mut state = self.state.lock();
        state.latest = Some(snapshot);
        if self.limits.history_points > 0 {
            if state.history.len() == self.limits.history_points {
                state.history.pop_front();
            }
            state.history.push_back(point);
        }
        let mut gone = Vec::new();
        for (key, sub) in state.subscribers.iter() {
            match sub.queue.try_send(frame.clone()) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => gone.push((key, true)),
                // Its body was dropped without taking its slot back (it
                // does so on drop, so this is a race with that drop).
                Err(TrySendError::Closed(_)) => gone.push((key, false)),
            }
        }
        let mut dropped = 0;
        for (key, slow) in gone {
            let sub = state.subscribers.remove(key);
            if slow {
                dropped += 1;
                if let Some(socket) = &sub.socket {
                    // Ends the connection even if the client never reads:
                    // hyper's pending write fails and the connection closes.
                    let _ = socket.shutdown(Shutdown::Both);
                }
            }
        }
        drop(state);
        if dropped > 0 {
            self.dropped.fetch_add(dropped as u64, Ordering::Relaxed);
            tracing::info!(
                dropped,
                "dashboard stream: dropped subscribers too slow to read"
            );
        }
        dropped
    }

    /// A new subscriber: its body starts with the chart history and the
    /// latest snapshot, then carries each snapshot published. `socket` is
    /// its connection's, to shut down should it be dropped.
    pub fn subscribe(
        self: &Arc<Self>,
        socket: Option<TcpStream>,
    ) -> Result<SseBody, SubscribeError> {
        let mut state = self.state.lock();
        if state.closed {
            return Err(SubscribeError::Closed);
        }
        if state.subscribers.len() >= self.limits.subscribers_max {
            drop(state);
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(SubscribeError::Full(self.limits.subscribers_max));
        }
        let (queue, rx) = mpsc::channel(self.limits.buffer_snapshots);
        let id = state.next_id;
        state.next_id += 1;
        let key = state.subscribers.insert(Subscriber { id, queue, socket });
        let first = first_frames(&state);
        Ok(SseBody {
            first: Some(first),
            rx,
            slot: StreamSlot {
                feed: self.clone(),
                key,
                id,
            },
        })
    }

    /// Shutdown: refuses new subscribers and closes every queue, so each
    /// body ends once it has sent what it holds.
    pub fn close(&self) {
        let mut state = self.state.lock();
        state.closed = true;
        state.subscribers.clear();
    }

    pub fn subscribers(&self) -> usize {
        self.state.lock().subscribers.len()
    }

    pub fn limits(&self) -> StreamLimits {
        self.limits
    }

    /// Subscribers dropped for being slow, so far.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Subscriptions refused at the cap, so far.
    pub fn refused_total(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// The feed's Prometheus metrics.
    pub fn render(&self, out: &mut String) {
        let metrics: [(&str, &str, &str, u64); 3] = [
            (
                "flashsale_stream_subscribers",
                "gauge",
                "Dashboard stream subscribers now.",
                self.subscribers() as u64,
            ),
            (
                "flashsale_stream_dropped_total",
                "counter",
                "Stream subscribers dropped for not keeping up.",
                self.dropped_total(),
            ),
            (
                "flashsale_stream_refused_total",
                "counter",
                "Stream subscriptions refused at dashboard.stream_subscribers_max.",
                self.refused_total(),
            ),
        ];
        for (name, kind, help, value) in metrics {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
    }
}

/// What a new subscriber gets before the next snapshot: the history, if
/// any, and the latest snapshot, if any.
fn first_frames(state: &StreamState) -> Bytes {
    let mut out = BytesMut::new();
    if !state.history.is_empty() {
        let points: Vec<&ChartPoint> = state.history.iter().collect();
        let json = serde_json::to_vec(&points).expect("chart points serialise");
        out.extend_from_slice(&event("history", &json));
    }
    if let Some(latest) = &state.latest {
        out.extend_from_slice(&event("snapshot", latest));
    }
    // A comment line: the response's first bytes go out even with nothing
    // published yet, so the client knows it is subscribed.
    out.extend_from_slice(b": subscribed\n\n");
    out.freeze()
}

/// One Server-Sent Event. `data` is compact JSON: it holds no newline, so
/// it is one `data:` line.
fn event(name: &str, data: &[u8]) -> Bytes {
    debug_assert!(!data.contains(&b'\n'));
    let mut out = BytesMut::with_capacity(name.len() + data.len() + 16);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
    out.freeze()
}

/// A subscriber's place in the feed, given back when its body is dropped
/// (the connection closed, or hyper finished the response).
struct StreamSlot {
    feed: Arc<SnapshotFeed>,
    key: usize,
    id: u64,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut state = self.feed.state.lock();
        // Unless the feed already removed it (dropped, or shutdown) and
        // the key went to someone else since.
        if state
            .subscribers
            .get(self.key)
            .is_some_and(|s| s.id == self.id)
        {
            state.subscribers.remove(self.key);
        }
    }
}

/// The body of a stream response: the first frames, then each snapshot
/// queued for it; it ends when the feed closes its queue.
pub struct SseBody {
    first: Option<Bytes>,
    rx: mpsc::Receiver<Bytes>,
    slot: StreamSlot,
}

impl SseBody {
    /// Whether the feed still holds this subscriber (tests).
    pub fn subscribed(&self) -> bool {
        let state = self.slot.feed.state.lock();
        state
            .subscribers
            .get(self.slot.key)
            .is_some_and(|s| s.id == self.slot.id)
    }
}

impl Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        self.rx
            .poll_recv(cx)
            .map(|frame| frame.map(|bytes| Ok(Frame::data(bytes))))
    }

    fn is_end_stream(&self) -> bool {
        false
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(subscribers_max: usize, buffer_snapshots: usize) -> Arc<SnapshotFeed> {
        Arc::new(SnapshotFeed::new(StreamLimits {
            subscribers_max,
            buffer_snapshots,
            history_points: 3,
        }))
    }

    fn next(body: &mut SseBody) -> Option<Bytes> {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        match Pin::new(body).poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => frame.into_data().ok(),
            Poll::Ready(None) | Poll::Pending => None,
        }
    }

    #[test]
    fn a_subscriber_gets_history_latest_then_each_snapshot() {
        let feed = feed(2, 2);
        for i in 0..5u64 {
            let point = ChartPoint {
                t_ms: i,
                ..ChartPoint::default()
            };
            feed.publish(Bytes::from(format!("{{\"n\":{i}}}")), point);
        }
        let mut body = feed.subscribe(None).unwrap();
        let first = String::from_utf8(next(&mut body).unwrap().to_vec()).unwrap();
        // Only the last three points are kept.
        assert!(
            first.starts_with("event: history\ndata: [{\"t_ms\":2,"),
            "{first}"
        );
        assert!(
            first.contains("event: snapshot\ndata: {\"n\":4}\n\n"),
            "{first}"
        );
        assert_eq!(next(&mut body), None);
        feed.publish(Bytes::from_static(b"{\"n\":5}"), ChartPoint::default());
        assert_eq!(
            next(&mut body).unwrap(),
            Bytes::from_static(b"event: snapshot\ndata: {\"n\":5}\n\n")
        );
    }

    #[test]
    fn the_cap_refuses_and_a_dropped_body_frees_its_slot() {
        let feed = feed(1, 2);
        let body = feed.subscribe(None).unwrap();
        assert_eq!(feed.subscribe(None).err(), Some(SubscribeError::Full(1)));
        assert_eq!(feed.refused_total(), 1);
        drop(body);
        assert_eq!(feed.subscribers(), 0);
        assert!(feed.subscribe(None).is_ok());
    }

    /// A subscriber that takes nothing is dropped when its queue is full,
    /// and only then; its body then ends and its slot is free.
    #[test]
    fn a_full_queue_drops_the_subscriber() {
        let feed = feed(2, 2);
        let mut slow = feed.subscribe(None).unwrap();
        let mut quick = feed.subscribe(None).unwrap();
        next(&mut quick);
        for i in 0..2 {
            assert_eq!(
                feed.publish(Bytes::from_static(b"{}"), ChartPoint::default()),
                0,
                "{i}"
            );
            assert!(next(&mut quick).is_some());
        }
        assert!(slow.subscribed());
        assert_eq!(
            feed.publish(Bytes::from_static(b"{}"), ChartPoint::default()),
            1
        );
        assert!(!slow.subscribed() && quick.subscribed());
        assert_eq!((feed.subscribers(), feed.dropped_total()), (1, 1));
        // What was queued still comes, then the end.
        assert!(next(&mut slow).is_some());
        assert!(next(&mut slow).is_some());
        assert!(next(&mut slow).is_some());
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(matches!(
            Pin::new(&mut slow).poll_frame(&mut cx),
            Poll::Ready(None)
        ));
    }

    #[test]
    fn close_ends_every_body_and_refuses_more() {
        let feed = feed(2, 2);
        let mut body = feed.subscribe(None).unwrap();
        next(&mut body);
        feed.close();
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(matches!(
            Pin::new(&mut body).poll_frame(&mut cx),
            Poll::Ready(None)
        ));
        assert_eq!(feed.subscribe(None).err(), Some(SubscribeError::Closed));
    }
}
