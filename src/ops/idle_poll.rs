//! Poll for the next request a little before a worker sleeps.
//!
//! A worker that sleeps in `epoll_wait` between requests is woken by an
//! interrupt, and on a VM that halted its vCPU the wake-up costs more than
//! apprd's work on a small request. Go's scheduler and the kernel's
//! `haltpoll` idle driver answer this the same way: spin briefly before
//! sleeping, and only as long as spinning keeps catching work.
//!
//! Each worker keeps a poll window. Once its last request in flight is
//! done, the worker keeps polling its sockets (a task that yields, so the
//! runtime checks them without blocking) until the window has passed. When
//! requests come back within the longest window but after the current one,
//! the window doubles; when they come back later than the longest window,
//! it halves, down to zero. A worker serving isolated requests spins for
//! nothing, and a worker with requests in flight does not spin: it waits on
//! its storage, and a spinning vCPU can slow its hyperthread sibling, where
//! the storage may be running.

use std::cell::{Cell, OnceCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// The first non-zero window, as in the kernel's `haltpoll`.
const GROW_START: Duration = Duration::from_micros(25);

struct Poller {
    /// Longest window; zero turns polling off.
    max: Duration,
    window: Cell<Duration>,
    /// Requests in flight on this worker.
    in_flight: Cell<usize>,
    /// Since when the worker has had no request in flight.
    idle_since: Cell<Option<Instant>>,
    wake: Notify,
}

thread_local! {
    static POLLER: OnceCell<Rc<Poller>> = const { OnceCell::new() };
}

fn poller() -> Option<Rc<Poller>> {
    POLLER.with(|p| p.get().cloned())
}

/// Start polling on this worker thread (once; later calls do nothing).
/// Call it from inside the worker's runtime, in the app factory.
pub fn start(max: Duration) {
    if max.is_zero() || poller().is_some() {
        return;
    }
    let p = Rc::new(Poller {
        max,
        window: Cell::new(Duration::ZERO),
        in_flight: Cell::new(0),
        idle_since: Cell::new(None),
        wake: Notify::new(),
    });
    POLLER.with(|cell| cell.set(p.clone()).ok());
    tokio::task::spawn_local(spin(p));
}

/// A request in flight on this worker, until dropped (its response sent,
/// or the request abandoned).
pub struct InFlight(Option<Rc<Poller>>);

/// A request reached this worker: if it was idle, adapt the window to the
/// idle gap before the request.
pub fn request_started() -> InFlight {
    let Some(p) = poller() else {
        return InFlight(None);
    };
    if let Some(since) = p.idle_since.take() {
        let gap = since.elapsed();
        let window = p.window.get();
        super::metrics::worker_wakeup(gap <= window);
        p.window.set(next_window(window, gap, p.max));
    }
    p.in_flight.set(p.in_flight.get() + 1);
    InFlight(Some(p))
}

/// The last request in flight is done: poll for the next one for a window.
impl Drop for InFlight {
    fn drop(&mut self) {
        let Some(p) = self.0.take() else {
            return;
        };
        let left = p.in_flight.get() - 1;
        p.in_flight.set(left);
        if left == 0 {
            p.idle_since.set(Some(Instant::now()));
            if !p.window.get().is_zero() {
                p.wake.notify_one();
            }
        }
    }
}

/// The window after an idle gap of `gap`: kept when polling caught the
/// request, doubled when a longer one would have, halved (to zero below
/// [`GROW_START`]) when the gap was longer than `max`.
fn next_window(window: Duration, gap: Duration, max: Duration) -> Duration {
    if gap <= window {
        window
    } else if gap < max {
        (window * 2).clamp(GROW_START.min(max), max)
    } else if window / 2 < GROW_START {
        Duration::ZERO
    } else {
        window / 2
    }
}

async fn spin(p: Rc<Poller>) {
    loop {
        p.wake.notified().await;
        // `yield_now` leaves the task ready, so the runtime polls its
        // sockets without blocking and comes back here.
        while let Some(since) = p.idle_since.get() {
            if since.elapsed() >= p.window.get() {
                break;
            }
            tokio::task::yield_now().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_micros(200);

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn caught_requests_keep_the_window() {
        assert_eq!(next_window(us(100), us(40), MAX), us(100));
        assert_eq!(next_window(us(100), us(100), MAX), us(100));
    }

    #[test]
    fn near_misses_grow_it_up_to_the_longest() {
        assert_eq!(next_window(us(0), us(60), MAX), GROW_START);
        assert_eq!(next_window(us(25), us(60), MAX), us(50));
        assert_eq!(next_window(us(150), us(199), MAX), MAX);
        // A longest window below the first step is still the ceiling.
        assert_eq!(next_window(us(0), us(5), us(10)), us(10));
    }

    #[test]
    fn long_gaps_shrink_it_to_nothing() {
        assert_eq!(next_window(us(200), us(5_000), MAX), us(100));
        assert_eq!(next_window(us(40), us(5_000), MAX), Duration::ZERO);
        assert_eq!(next_window(us(0), us(5_000), MAX), Duration::ZERO);
        let mut w = MAX;
        for _ in 0..4 {
            w = next_window(w, Duration::from_secs(1), MAX);
        }
        assert_eq!(w, Duration::ZERO);
    }
}
