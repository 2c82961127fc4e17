//! The request budget: how many bytes of requests the daemon holds at once, across all connections
//! and per connection.
//!
//! A frame's bytes are paid for when its length prefix has arrived and before any of it is handed to
//! the decoder (see [`crate::watch::FrameWatch`]), and stay paid for while the request it becomes is
//! under way. When the budget is spent, connections stop reading their sockets: the kernel's socket
//! buffers and the peers wait, not the daemon's memory. Each frame costs at most the whole budget, and
//! every grant is returned when its request ends whatever the peer does, so a connection holding part
//! of the budget can always finish and a frame larger than the budget still runs, alone.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// What a frame costs beyond its length: the request's task, tarpc's records, the decoded strings'
/// headers. Keeps a flood of tiny frames from being free.
const FRAME_OVERHEAD: u64 = 1024;

/// The daemon-wide budget; one per [`crate::run`].
#[derive(Debug)]
pub(crate) struct Budget {
    total: Arc<Semaphore>,
    /// Most one frame may cost: the whole budget.
    total_bytes: u32,
    /// Most one connection may hold.
    per_connection: u32,
}

impl Budget {
    /// A budget of `total` bytes, of which one connection may hold `per_connection`; raised to
    /// `max_frame` (so every frame fits a connection's share) but never above `total`.
    pub(crate) fn new(total: usize, per_connection: usize, max_frame: usize) -> Self {
        let total_bytes = u32::try_from(total.max(1)).unwrap_or(u32::MAX);
        let per_connection = u32::try_from(per_connection.max(max_frame))
            .unwrap_or(u32::MAX)
            .min(total_bytes);
        Self {
            total: Arc::new(Semaphore::new(total_bytes as usize)),
            total_bytes,
            per_connection,
        }
    }

    /// A new connection's share.
    pub(crate) fn connection(&self) -> ConnectionBudget {
        ConnectionBudget {
            total: self.total.clone(),
            own: Arc::new(Semaphore::new(self.per_connection as usize)),
            cap: self.per_connection,
            handed_on: Arc::default(),
        }
    }

    /// Bytes of the budget not held by any request right now.
    #[cfg(test)]
    pub(crate) fn available(&self) -> usize {
        self.total.available_permits()
    }

    /// The whole budget, in bytes.
    pub(crate) fn total_bytes(&self) -> u32 {
        self.total_bytes
    }
}

/// One connection's access to the budget. Clones share it.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionBudget {
    total: Arc<Semaphore>,
    own: Arc<Semaphore>,
    cap: u32,
    /// The grant of the last frame handed to the decoder, waiting for the request it became to take it.
    handed_on: Arc<Mutex<Option<Grant>>>,
}

/// Bytes of the budget held for one frame; given back when dropped.
#[derive(Debug)]
pub(crate) struct Grant {
    _own: OwnedSemaphorePermit,
    _total: OwnedSemaphorePermit,
}

impl ConnectionBudget {
    /// Completes with a grant for a frame of `frame_len` bytes once the budget allows it.
    pub(crate) fn acquire(&self, frame_len: u64) -> impl Future<Output = Grant> + Send + 'static {
        let cost = self.cost(frame_len);
        let (own, total) = (self.own.clone(), self.total.clone());
        async move {
            // The connection's share first, so a connection at its own limit takes nothing from others
            // while it waits. Neither semaphore is ever closed.
            let own = own.acquire_many_owned(cost).await;
            let total = total.acquire_many_owned(cost).await;
            match (own, total) {
                (Ok(own), Ok(total)) => Grant {
                    _own: own,
                    _total: total,
                },
                _ => unreachable!("the budget's semaphores are never closed"),
            }
        }
    }

    /// The grant for a frame of `frame_len` bytes if the budget has it now, without waiting (and
    /// without the allocation [`Self::acquire`]'s future costs). Permits a waiting frame was
    /// promised are not free, so this never overtakes a frame already waiting.
    pub(crate) fn try_acquire(&self, frame_len: u64) -> Option<Grant> {
        let cost = self.cost(frame_len);
        let own = self.own.clone().try_acquire_many_owned(cost).ok()?;
        let total = self.total.clone().try_acquire_many_owned(cost).ok()?;
        Some(Grant {
            _own: own,
            _total: total,
        })
    }

    fn cost(&self, frame_len: u64) -> u32 {
        u32::try_from(frame_len.saturating_add(FRAME_OVERHEAD))
            .unwrap_or(u32::MAX)
            .min(self.cap)
    }

    /// Keeps the grant of a frame just handed whole to the decoder, for [`ConnectionBudget::take`].
    pub(crate) fn hand_on(&self, grant: Grant) {
        *self.slot() = Some(grant);
    }

    /// The grant of the frame that just became a request; the request holds it until it ends.
    pub(crate) fn take(&self) -> Option<Grant> {
        self.slot().take()
    }

    /// Gives back a handed-on grant nobody took (the frame was a cancellation, or was turned away).
    pub(crate) fn release_unclaimed(&self) {
        drop(self.take());
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Grant>> {
        // Only ever replaced whole: a panic while it was held left it consistent.
        self.handed_on
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_wait_for_budget_and_a_huge_one_takes_it_all() {
        let budget = Budget::new(10_000, 4_000, 100);
        let conn = budget.connection();
        let a = conn.acquire(2_000).await;
        assert_eq!(budget.available(), 10_000 - 3_024);
        // The connection's share (4000) cannot hold a second 3024-byte frame.
        let waiting = tokio::spawn(conn.acquire(2_000));
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        let other = budget.connection().acquire(1).await;
        drop(a);
        let b = waiting.await.expect("granted once the first is back");
        drop((b, other));
        assert_eq!(budget.available(), 10_000);

        // Larger than a share and than the whole budget: capped, so it runs alone.
        let huge = budget.connection().acquire(1 << 40).await;
        assert!(budget.available() >= 10_000 - 4_000);
        drop(huge);
        let small = Budget::new(1_000, 10, 5_000);
        let all = small.connection().acquire(1 << 40).await;
        assert_eq!(small.available(), 0);
        drop(all);
        assert_eq!(small.available(), 1_000);
    }

    #[tokio::test]
    async fn taking_without_waiting_never_overtakes_a_waiting_frame() {
        let budget = Budget::new(10_000, 10_000, 0);
        let conn = budget.connection();
        let first = conn
            .try_acquire(3_000)
            .expect("free budget is taken at once");
        assert_eq!(budget.available(), 10_000 - 4_024);
        assert!(conn.try_acquire(5_000).is_none(), "not enough left");
        // A big frame waits for the budget. The 5,976 bytes still free would fit a small frame,
        // but the waiting frame holds them: nothing overtakes it.
        let waiting = tokio::spawn(budget.connection().acquire(8_000));
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        assert!(budget.connection().try_acquire(10).is_none());
        drop(first);
        let big = waiting.await.expect("the waiting frame is granted");
        drop(big);
        assert_eq!(budget.available(), 10_000);
    }

    #[tokio::test]
    async fn a_handed_on_grant_is_taken_once() {
        let budget = Budget::new(10_000, 10_000, 0);
        let conn = budget.connection();
        conn.hand_on(conn.acquire(100).await);
        let grant = conn.take().expect("taken");
        assert!(conn.take().is_none());
        conn.hand_on(conn.acquire(100).await);
        conn.release_unclaimed();
        drop(grant);
        assert_eq!(budget.available(), 10_000);
    }
}
