//! A linearizability checker for histories of one register per key, as Knossos and Porcupine check
//! them: the Wing–Gong search with Lowe's memoization of (operations linearized, register state).
//!
//! A history is a set of [`Op`]s, each with the time it was invoked and the time its answer came back
//! (from one clock shared by every process: `CLOCK_MONOTONIC`). An operation whose outcome is unknown
//! (cut by a daemon kill, timed out) has [`Op::UNKNOWN`] as its return time: it may have taken effect
//! at any moment after its call, or never. Reads with an unknown result say nothing and are left out
//! by the recorder.
//!
//! Besides plain writes and reads, a history may hold compare-and-sets ([`Kind::SetIf`]): a write
//! that also reads. It takes effect only if the register holds its expected value at its
//! linearization point; an answered one says whether it did (so a success needs the expected state,
//! and a conflict needs any other), and one without an answer did whatever the state at its point
//! dictates.
//!
//! Keys are independent registers, so each key's history is checked on its own (linearizability is
//! compositional).

use std::collections::{BTreeMap, HashSet};
use std::fmt;

/// A value written or read: `None` is "no item".
pub type Value = Option<String>;

/// What an operation did.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A set (`Some`) or a delete (`None`).
    Write(Value),
    /// A get, and what it returned.
    Read(Value),
    /// A compare-and-set (`set_if`, or `delete_if` when `value` is `None`): writes `value` only if
    /// the register holds `expected`.
    SetIf {
        /// The value the register had to hold.
        expected: Value,
        /// What it writes when it applies.
        value: Value,
        /// The answer: `Some(true)` applied, `Some(false)` a conflict, `None` unknown.
        applied: Option<bool>,
    },
}

/// One operation of a history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// Which client process (for the report only).
    pub client: u32,
    /// The key (register) it touched.
    pub key: String,
    /// What it did and saw.
    pub kind: Kind,
    /// When it was invoked, in nanoseconds of the shared clock.
    pub call: u64,
    /// When its answer arrived, or [`Op::UNKNOWN`].
    pub ret: u64,
}

impl Op {
    /// The return time of an operation whose outcome is unknown: it may take effect at any point
    /// after its call, or not at all.
    pub const UNKNOWN: u64 = u64::MAX;
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ret = if self.ret == Op::UNKNOWN {
            "?".to_owned()
        } else {
            self.ret.to_string()
        };
        let show = |v: &Value| v.clone().unwrap_or_else(|| "<none>".to_owned());
        match &self.kind {
            Kind::Write(Some(v)) => write!(f, "client {} set {}={}", self.client, self.key, v)?,
            Kind::Write(None) => write!(f, "client {} delete {}", self.client, self.key)?,
            Kind::Read(v) => write!(f, "client {} get {} -> {}", self.client, self.key, show(v))?,
            Kind::SetIf {
                expected,
                value,
                applied,
            } => write!(
                f,
                "client {} set_if {} {} -> {} ({})",
                self.client,
                self.key,
                show(expected),
                show(value),
                match applied {
                    Some(true) => "applied",
                    Some(false) => "conflict",
                    None => "unknown",
                }
            )?,
        }
        write!(f, "  [{} .. {}]", self.call, ret)
    }
}

/// A history that is not linearizable, shrunk to a small set of operations that still is not.
#[derive(Debug, Clone)]
pub struct Violation {
    /// The key whose register history fails.
    pub key: String,
    /// A minimal (by greedy removal) non-linearizable subset of that key's operations, by call time.
    pub ops: Vec<Op>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "not linearizable: key '{}', {} operations that admit no order:",
            self.key,
            self.ops.len()
        )?;
        for op in &self.ops {
            writeln!(f, "  {op}")?;
        }
        Ok(())
    }
}

/// Checks `history` (operations on any keys, any clients), every register starting with no item.
///
/// # Errors
/// The first key whose history admits no linearization, with a shrunk counterexample.
pub fn check(history: &[Op]) -> Result<(), Box<Violation>> {
    let mut by_key: BTreeMap<&str, Vec<Op>> = BTreeMap::new();
    for op in history {
        by_key.entry(&op.key).or_default().push(op.clone());
    }
    for (key, ops) in by_key {
        if !linearizable(&ops) {
            return Err(Box::new(Violation {
                key: key.to_owned(),
                ops: shrink(ops),
            }));
        }
    }
    Ok(())
}

/// Whether one register's history has a linearization (Wing–Gong with memoization).
pub fn linearizable(ops: &[Op]) -> bool {
    Search::new(ops).run()
}

/// An event in time order: an operation's call or its return.
#[derive(Debug, Clone, Copy)]
struct Event {
    op: usize,
    is_call: bool,
    /// For a call, the index of its return event.
    matching: usize,
    prev: usize,
    next: usize,
}

/// The search state over a doubly linked list of events (index 0 is the head sentinel).
struct Search<'a> {
    ops: &'a [Op],
    events: Vec<Event>,
}

const NIL: usize = usize::MAX;

impl<'a> Search<'a> {
    fn new(ops: &'a [Op]) -> Self {
        // (time, returns after calls at the same instant, op): equal times count as overlapping.
        let mut order: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
        for (i, op) in ops.iter().enumerate() {
            order.push((op.call, false, i));
            order.push((op.ret, true, i));
        }
        order.sort_unstable();
        let mut events = Vec::with_capacity(order.len() + 1);
        events.push(Event {
            op: NIL,
            is_call: false,
            matching: NIL,
            prev: NIL,
            next: NIL,
        });
        let mut call_of = vec![NIL; ops.len()];
        for (position, &(_, is_return, op)) in order.iter().enumerate() {
            let index = position + 1;
            events.push(Event {
                op,
                is_call: !is_return,
                matching: NIL,
                prev: index - 1,
                next: if position + 1 < order.len() {
                    index + 1
                } else {
                    NIL
                },
            });
            if is_return {
                events[call_of[op]].matching = index;
            } else {
                call_of[op] = index;
            }
        }
        if events.len() > 1 {
            events[0].next = 1;
        }
        Self { ops, events }
    }

    /// Applies `op` to the register `state`: `None` if it cannot happen in that state.
    fn step(&self, state: &Value, op: usize) -> Option<Value> {
        match &self.ops[op].kind {
            Kind::Write(value) => Some(value.clone()),
            Kind::Read(seen) => (seen == state).then(|| state.clone()),
            Kind::SetIf {
                expected,
                value,
                applied,
            } => {
                let holds = expected == state;
                match applied {
                    Some(true) if !holds => None,
                    Some(false) if holds => None,
                    _ if holds => Some(value.clone()),
                    _ => Some(state.clone()),
                }
            }
        }
    }

    /// Takes a call and its return out of the list.
    fn lift(&mut self, call: usize) {
        for index in [call, self.events[call].matching] {
            let Event { prev, next, .. } = self.events[index];
            self.events[prev].next = next;
            if next != NIL {
                self.events[next].prev = prev;
            }
        }
    }

    /// Puts them back, in the reverse order they were taken out.
    fn unlift(&mut self, call: usize) {
        for index in [self.events[call].matching, call] {
            let Event { prev, next, .. } = self.events[index];
            self.events[prev].next = index;
            if next != NIL {
                self.events[next].prev = index;
            }
        }
    }

    fn run(mut self) -> bool {
        let words = self.ops.len().div_ceil(64);
        let mut linearized = vec![0u64; words];
        let mut state: Value = None;
        let mut seen: HashSet<(Vec<u64>, Value)> = HashSet::new();
        let mut stack: Vec<(usize, Value)> = Vec::new();
        let mut entry = self.events[0].next;
        while self.events[0].next != NIL {
            if entry == NIL {
                // Only returns can end the list; reaching its end means no call was left to try.
                return false;
            }
            let event = self.events[entry];
            if event.is_call {
                if let Some(next_state) = self.step(&state, event.op) {
                    let mut with = linearized.clone();
                    with[event.op / 64] |= 1 << (event.op % 64);
                    if seen.insert((with.clone(), next_state.clone())) {
                        stack.push((entry, state));
                        state = next_state;
                        linearized = with;
                        self.lift(entry);
                        entry = self.events[0].next;
                        continue;
                    }
                }
                entry = event.next;
            } else {
                // The earliest pending return: some call before it must be linearized first, and
                // none can be. Undo the last choice and try the next one.
                let Some((call, previous)) = stack.pop() else {
                    return false;
                };
                state = previous;
                let op = self.events[call].op;
                linearized[op / 64] &= !(1 << (op % 64));
                self.unlift(call);
                entry = self.events[call].next;
            }
        }
        true
    }
}

/// Shrinks a non-linearizable register history: first to the shortest prefix (the operations
/// answered by some instant, plus the writes invoked before it as unknown) that still fails, then by
/// dropping operations one at a time while it still fails.
fn shrink(mut ops: Vec<Op>) -> Vec<Op> {
    ops.sort_by_key(|op| (op.call, op.ret));
    let mut returns: Vec<u64> = ops
        .iter()
        .map(|op| op.ret)
        .filter(|&r| r != Op::UNKNOWN)
        .collect();
    returns.sort_unstable();
    let prefix = |until: u64| -> Vec<Op> {
        ops.iter()
            .filter_map(|op| {
                if op.ret <= until {
                    Some(op.clone())
                } else if op.call < until && !matches!(op.kind, Kind::Read(_)) {
                    let kind = match &op.kind {
                        Kind::SetIf {
                            expected, value, ..
                        } => Kind::SetIf {
                            expected: expected.clone(),
                            value: value.clone(),
                            applied: None,
                        },
                        other => other.clone(),
                    };
                    Some(Op {
                        ret: Op::UNKNOWN,
                        kind,
                        ..op.clone()
                    })
                } else {
                    None
                }
            })
            .collect()
    };
    // Binary search for the first return time at which the prefix fails.
    let (mut low, mut high) = (0usize, returns.len());
    while low < high {
        let mid = (low + high) / 2;
        if linearizable(&prefix(returns[mid])) {
            low = mid + 1;
        } else {
            high = mid;
        }
    }
    let mut failing = if low < returns.len() {
        prefix(returns[low])
    } else {
        ops
    };
    // Greedy removal, newest first; bounded so a huge history still reports quickly. A write whose
    // value some kept read saw stays, so the example keeps its story ("read a value never written"
    // would be a shorter but useless counterexample).
    if failing.len() <= 400 {
        let mut i = failing.len();
        while i > 0 {
            i -= 1;
            if let Kind::Write(Some(written)) = &failing[i].kind {
                let seen = Kind::Read(Some(written.clone()));
                if failing.iter().any(|op| op.kind == seen) {
                    continue;
                }
            }
            let mut without = failing.clone();
            without.remove(i);
            if !linearizable(&without) {
                failing = without;
            }
        }
    }
    failing
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(client: u32, value: Option<&str>, call: u64, ret: u64) -> Op {
        Op {
            client,
            key: "k".to_owned(),
            kind: Kind::Write(value.map(str::to_owned)),
            call,
            ret,
        }
    }

    fn r(client: u32, seen: Option<&str>, call: u64, ret: u64) -> Op {
        Op {
            client,
            key: "k".to_owned(),
            kind: Kind::Read(seen.map(str::to_owned)),
            call,
            ret,
        }
    }

    #[test]
    fn accepts_sequential_and_overlapping_histories() {
        // Sequential.
        assert!(linearizable(&[
            w(0, Some("a"), 0, 1),
            r(1, Some("a"), 2, 3),
            w(0, None, 4, 5),
            r(1, None, 6, 7)
        ]));
        // A read overlapping a write may see either side of it.
        for seen in [Some("a"), Some("b")] {
            assert!(linearizable(&[
                w(0, Some("a"), 0, 1),
                w(1, Some("b"), 2, 10),
                r(2, seen, 3, 4)
            ]));
        }
        // An unknown write may have happened, or not.
        for seen in [None, Some("a")] {
            assert!(linearizable(&[
                w(0, Some("a"), 0, Op::UNKNOWN),
                r(1, seen, 5, 6)
            ]));
        }
        assert!(linearizable(&[]));
    }

    #[test]
    fn rejects_a_stale_read() {
        let history = [
            w(0, Some("a"), 0, 1),
            w(0, Some("b"), 2, 3),
            r(1, Some("a"), 4, 5),
        ];
        assert!(!linearizable(&history));
        let violation = check(&history).expect_err("stale read");
        assert_eq!(violation.ops.len(), 3, "{violation}");
    }

    #[test]
    fn rejects_a_read_of_a_value_never_written() {
        assert!(!linearizable(&[r(0, Some("x"), 0, 1)]));
    }

    #[test]
    fn rejects_reads_that_go_backwards() {
        // The write of b overlaps both reads, but once one read saw b a later read cannot see a.
        assert!(!linearizable(&[
            w(0, Some("a"), 0, 1),
            w(1, Some("b"), 2, 20),
            r(2, Some("b"), 3, 4),
            r(3, Some("a"), 5, 6),
        ]));
    }

    #[test]
    fn rejects_a_lost_acknowledged_write() {
        // Acknowledged, then read as absent by a read that started afterwards.
        assert!(!linearizable(&[w(0, Some("a"), 0, 1), r(1, None, 2, 3)]));
        // An unknown write seen, then unseen with nothing else written: not possible either.
        assert!(!linearizable(&[
            w(0, Some("a"), 0, Op::UNKNOWN),
            r(1, Some("a"), 2, 3),
            r(1, None, 4, 5),
        ]));
    }

    #[test]
    fn shrinks_a_long_history_to_the_culprits() {
        let mut history = Vec::new();
        let mut t = 0;
        for i in 0..200 {
            let value = format!("v{i}");
            history.push(w(0, Some(&value), t, t + 1));
            history.push(r(1, Some(&value), t + 2, t + 3));
            t += 4;
        }
        // One stale read in the middle.
        history.push(r(2, Some("v10"), 400, 401));
        let violation = check(&history).expect_err("stale");
        assert!(
            violation.ops.len() <= 3,
            "shrunk to the write, the newer write and the read:\n{violation}"
        );
        assert!(
            violation
                .ops
                .iter()
                .any(|op| op.kind == Kind::Read(Some("v10".to_owned())))
        );
    }

    fn cas(
        client: u32,
        expected: Option<&str>,
        value: &str,
        applied: Option<bool>,
        call: u64,
        ret: u64,
    ) -> Op {
        Op {
            client,
            key: "k".to_owned(),
            kind: Kind::SetIf {
                expected: expected.map(str::to_owned),
                value: Some(value.to_owned()),
                applied,
            },
            call,
            ret,
        }
    }

    #[test]
    fn compare_and_sets_apply_only_on_their_expected_value() {
        // Two increments from 0 that both claim success: one of them must have seen 1 (lost update).
        let lost = [
            cas(1, None, "1", Some(true), 0, 10),
            cas(2, None, "1", Some(true), 20, 30),
        ];
        assert!(
            !linearizable(&lost),
            "two successful set-if-absent in a row"
        );
        let fine = [
            cas(1, None, "1", Some(true), 0, 10),
            cas(2, None, "1", Some(false), 20, 30),
            cas(2, Some("1"), "2", Some(true), 40, 50),
            r(3, Some("2"), 60, 70),
        ];
        assert!(linearizable(&fine));
        // A conflict needs a state other than the expected one.
        let wrong_conflict = [cas(1, None, "1", Some(false), 0, 10)];
        assert!(
            !linearizable(&wrong_conflict),
            "conflict on the expected (empty) state"
        );
        // An unknown outcome does what its state dictates: here it must have applied.
        let unknown = [
            cas(1, None, "1", None, 0, Op::UNKNOWN),
            r(2, Some("1"), 20, 30),
        ];
        assert!(linearizable(&unknown));
        let unknown_did_not_apply = [
            w(1, Some("x"), 0, 5),
            cas(1, None, "1", None, 10, Op::UNKNOWN),
            r(2, Some("1"), 20, 30),
        ];
        assert!(
            !linearizable(&unknown_did_not_apply),
            "the register held x, not nothing"
        );
    }

    #[test]
    fn checks_each_key_apart() {
        let mut history = vec![w(0, Some("a"), 0, 1)];
        let mut other = r(1, None, 2, 3);
        other.key = "other".to_owned();
        history.push(other);
        assert!(check(&history).is_ok());
    }
}
