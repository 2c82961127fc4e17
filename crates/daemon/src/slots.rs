//! Which bound connections hold the connection slots, and how idle each is: when every slot is
//! taken, the accept loop asks the connection idle longest to close so a newcomer can be served.
//!
//! Only a connection can decide that it is idle (nothing under way, no answer unsent, no partial
//! frame), since only its own task sees all of that at one moment; the accept loop merely picks the
//! likeliest one and asks. A connection that is busy declines and is asked again later if need be.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;
use tokio_util::task::TaskTracker;

use crate::watch::Stall;

/// The bound connections that could be asked to make room.
#[derive(Debug, Default)]
pub(crate) struct Slots {
    next_id: AtomicU64,
    bound: Mutex<HashMap<u64, Entry>>,
}

#[derive(Debug)]
struct Entry {
    stall: Arc<Stall>,
    /// The connection's requests under way: one with any is not worth asking.
    in_flight: TaskTracker,
    asked: Arc<Notify>,
    /// When it was bound: a connection is not asked in its first [`MIN_AGE`].
    bound_at: std::time::Instant,
}

/// How long a newly bound connection is left alone before it may be asked to make room: time for
/// its client to send the requests it connected for. Without it, two clients competing for the last
/// slot could close each other right after each handshake, again and again, and neither be served.
const MIN_AGE: std::time::Duration = std::time::Duration::from_millis(20);

/// A bound connection's entry; removed when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    slots: Arc<Slots>,
    id: u64,
    asked: Arc<Notify>,
}

impl Slots {
    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        // Entries are inserted and removed whole: a panic while it was held left it consistent.
        self.bound.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Lists a connection that has completed its handshake.
    pub(crate) fn enter(self: &Arc<Self>, stall: Arc<Stall>, in_flight: TaskTracker) -> Slot {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let asked = Arc::new(Notify::new());
        self.table().insert(
            id,
            Entry {
                stall,
                in_flight,
                asked: asked.clone(),
                bound_at: std::time::Instant::now(),
            },
        );
        Slot {
            slots: self.clone(),
            id,
            asked,
        }
    }

    /// Asks the connection idle longest (among those with nothing half-read and no request under way)
    /// to close. Returns whether there was one to ask.
    pub(crate) fn ask_longest_idle(&self) -> bool {
        let table = self.table();
        let oldest = table
            .values()
            .filter(|entry| {
                entry.stall.is_quiet()
                    && entry.in_flight.is_empty()
                    && entry.bound_at.elapsed() >= MIN_AGE
            })
            .min_by_key(|entry| entry.stall.last_active());
        match oldest {
            Some(entry) => {
                entry.asked.notify_one();
                true
            }
            None => false,
        }
    }
}

impl Slot {
    /// Completes each time the accept loop asks this connection to make room.
    pub(crate) async fn asked(&self) {
        self.asked.notified().await;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.table().remove(&self.id);
    }
}
