//! Keeping concurrent calls in the order they began: numbered [`Turn`]s.
//!
//! Both ends use it. The daemon: tarpc runs a connection's requests concurrently, each in its own
//! task, and tasks may first run in any order, so each request takes a turn as it is received and
//! waits for it before it puts its command in a storage queue (it gives the turn up once its command
//! is in line, so requests still run concurrently and only the hand-over is serialized). The
//! client: calls resent on a new connection after the daemon's goodbye wait for their turn, so they
//! reach the new connection in the order they were first sent.
//!
//! A turn abandoned before it came (its request cancelled, or past its deadline) does not block the
//! ones after it: it is marked, and skipped when the order reaches it.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

/// The order of one connection's requests.
#[derive(Debug, Default)]
struct Order {
    state: Mutex<State>,
    /// Woken whenever `next` moves on.
    advanced: Notify,
}

#[derive(Debug, Default)]
struct State {
    /// The turn allowed to go now.
    next: u64,
    /// Turns after `next` that were given up before they came.
    abandoned: BTreeSet<u64>,
}

/// Hands out turns in the order requests are received.
#[derive(Debug, Default)]
pub struct Ticketer {
    order: Arc<Order>,
    issued: u64,
}

impl Ticketer {
    /// The turn of the call that begins now.
    pub fn next_turn(&mut self) -> Turn {
        let number = self.issued;
        self.issued += 1;
        Turn {
            order: self.order.clone(),
            number,
        }
    }
}

/// One request's place in its connection's order. Dropping it lets the next request go.
#[derive(Debug)]
pub struct Turn {
    order: Arc<Order>,
    number: u64,
}

impl Turn {
    /// A turn of its own, for a call outside any order (e.g. a fuzzing harness).
    pub fn alone() -> Self {
        Ticketer::default().next_turn()
    }

    /// Waits until every turn issued before this one has been given up.
    pub async fn wait(&self) {
        loop {
            let advanced = self.order.advanced.notified();
            tokio::pin!(advanced);
            // Registered before the check, so a move between the check and the wait is not missed.
            advanced.as_mut().enable();
            if self.order.lock().next == self.number {
                return;
            }
            advanced.await;
        }
    }
}

impl Order {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is two plain fields updated together; a panic cannot leave it half-changed.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut state = self.order.lock();
        if state.next == self.number {
            let State { next, abandoned } = &mut *state;
            *next += 1;
            while abandoned.remove(next) {
                *next += 1;
            }
            drop(state);
            self.order.advanced.notify_waiters();
        } else if state.next < self.number {
            state.abandoned.insert(self.number);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Runs `turns` concurrently, each recording its number once its turn came, in the order given by
    /// `start` (the order tasks happen to start in), and returns the recorded order.
    async fn run(turns: Vec<Turn>, start: &[usize]) -> Vec<u64> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut slots: Vec<Option<Turn>> = turns.into_iter().map(Some).collect();
        let mut tasks = Vec::new();
        for &i in start {
            let turn = slots[i].take().expect("each turn once");
            let seen = seen.clone();
            tasks.push(tokio::spawn(async move {
                turn.wait().await;
                seen.lock().expect("lock").push(turn.number);
                tokio::time::sleep(Duration::from_millis(1)).await;
                drop(turn);
            }));
        }
        for task in tasks {
            task.await.expect("task");
        }
        Arc::try_unwrap(seen)
            .expect("only owner")
            .into_inner()
            .expect("lock")
    }

    #[tokio::test]
    async fn turns_go_in_the_order_they_were_issued_whatever_order_tasks_start_in() {
        let mut ticketer = Ticketer::default();
        let turns: Vec<Turn> = (0..8).map(|_| ticketer.next_turn()).collect();
        let order = run(turns, &[7, 3, 5, 0, 6, 1, 4, 2]).await;
        assert_eq!(order, (0..8).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn an_abandoned_turn_does_not_block_and_does_not_let_later_ones_overtake() {
        let mut ticketer = Ticketer::default();
        let first = ticketer.next_turn();
        let abandoned = ticketer.next_turn();
        let third = ticketer.next_turn();
        // The middle one gives up while the first still holds its turn.
        drop(abandoned);
        let third = tokio::spawn(async move {
            third.wait().await;
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !third.is_finished(),
            "the third waits for the first, though the second is gone"
        );
        drop(first);
        tokio::time::timeout(Duration::from_secs(5), third)
            .await
            .expect("the third goes once the first is done")
            .expect("task");
    }
}
