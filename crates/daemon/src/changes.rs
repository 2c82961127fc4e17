//! Change events for watchers: the storage owner publishes each durable change here, in commit
//! order, and each watcher (made by a connection's `watch` call) keeps the ones of its own project
//! that match its filter in a bounded queue, read by `poll_events`.
//!
//! Events carry names and the kind of change, never values. A full queue drops its oldest event and
//! counts it, and the next answer says how many were missed ([`Lagged`]), so a slow watcher never
//! holds memory or the owner back.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use securestore_backends::{Action, Applied, Change, Key, ProjectScope, ServiceName, Write};
use securestore_proto::limits::MAX_WATCH_QUEUE;
use securestore_proto::{ChangeEvent, ChangeKind, Events, Lagged};
use tokio::sync::Notify;

/// Where the owner publishes changes; every watcher is registered here.
#[derive(Debug, Default)]
pub(crate) struct Hub {
    state: Mutex<HubState>,
}

#[derive(Debug, Default)]
struct HubState {
    /// The last sequence number given out.
    seq: u64,
    watchers: Vec<Weak<Watcher>>,
}

/// One watcher: its project, its filter, and its queue.
#[derive(Debug)]
pub(crate) struct Watcher {
    project: ProjectScope,
    service: Option<ServiceName>,
    key: Option<Key>,
    queue: Mutex<Queue>,
    /// Woken when an event is queued.
    pub(crate) ready: Notify,
}

#[derive(Debug, Default)]
struct Queue {
    events: VecDeque<ChangeEvent>,
    missed: u64,
}

/// A change before it is numbered: its service (`None`: every service) and key (`None`: a clear).
type Raw<'a> = (Option<&'a ServiceName>, Option<&'a Key>, ChangeKind);

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every update below leaves the state whole between statements; a panic cannot half-change it.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Hub {
    /// Registers a watcher of `project`'s changes in `service` (all when `None`) to `key` (all when
    /// `None`). It lives as long as the returned `Arc`.
    pub(crate) fn watch(
        &self,
        project: ProjectScope,
        service: Option<ServiceName>,
        key: Option<Key>,
    ) -> Arc<Watcher> {
        let watcher = Arc::new(Watcher {
            project,
            service,
            key,
            queue: Mutex::default(),
            ready: Notify::new(),
        });
        let mut state = lock(&self.state);
        state.watchers.retain(|w| w.strong_count() > 0);
        state.watchers.push(Arc::downgrade(&watcher));
        watcher
    }

    /// Publishes the changes of `writes`, which have just been made durable with `results`, in
    /// order. Called by the storage owner only, so the numbering is the commit order.
    pub(crate) fn publish<E>(&self, writes: &[Write], results: &[Result<Applied, E>]) {
        let mut state = lock(&self.state);
        if state.watchers.is_empty() {
            return;
        }
        let watchers: Vec<Arc<Watcher>> = state.watchers.iter().filter_map(Weak::upgrade).collect();
        for (write, result) in writes.iter().zip(results) {
            let Ok(applied) = result else { continue };
            let Some((project, raws)) = changes_of(write, *applied) else {
                continue;
            };
            for (service, key, kind) in raws {
                state.seq += 1;
                let event = ChangeEvent {
                    seq: state.seq,
                    service: service.map(|s| s.as_str().to_owned()),
                    key: key.map(|k| k.as_str().to_owned()),
                    kind,
                };
                for watcher in &watchers {
                    if watcher.wants(project, service, key) {
                        watcher.push(event.clone());
                    }
                }
            }
        }
    }
}

/// The change one [`Change`] made.
fn change(c: &Change) -> Raw<'_> {
    let kind = match c.action {
        Action::Set { .. } => ChangeKind::Set,
        Action::Delete => ChangeKind::Deleted,
    };
    (Some(&c.name.service), Some(&c.name.key), kind)
}

/// The project and the changes one applied write made, if any.
fn changes_of(write: &Write, applied: Applied) -> Option<(&ProjectScope, Vec<Raw<'_>>)> {
    match (write, applied) {
        (_, Applied::Conflict { .. }) => None,
        (Write::Set { project, name, .. }, _) => Some((
            project,
            vec![(Some(&name.service), Some(&name.key), ChangeKind::Set)],
        )),
        (Write::Delete { project, name }, _) => Some((
            project,
            vec![(Some(&name.service), Some(&name.key), ChangeKind::Deleted)],
        )),
        (Write::Clear { project, service }, Applied::Cleared(n)) if n > 0 => {
            Some((project, vec![(service.as_ref(), None, ChangeKind::Cleared)]))
        }
        (Write::Change { project, change: c }, _) => Some((project, vec![change(c)])),
        (Write::Batch { project, changes }, _) => {
            Some((project, changes.iter().map(change).collect()))
        }
        // Every item of an import is announced as set, the ones it kept (it never overwrites
        // without `replace`) too: an event says an item may have changed, so read it.
        (Write::Import { project, items, .. }, Applied::Imported(report))
            if report.added + report.replaced + report.skipped > 0 =>
        {
            Some((
                project,
                items
                    .iter()
                    .map(|(name, _, _)| (Some(&name.service), Some(&name.key), ChangeKind::Set))
                    .collect(),
            ))
        }
        // A project's removal ends its connections; a clear that found nothing changed nothing.
        _ => None,
    }
}

impl Watcher {
    /// Whether a change of `project` to `service` / `key` (`None`: all of them) concerns it.
    fn wants(
        &self,
        project: &ProjectScope,
        service: Option<&ServiceName>,
        key: Option<&Key>,
    ) -> bool {
        if project != &self.project {
            return false;
        }
        let service_matches = match (&self.service, service) {
            (Some(mine), Some(theirs)) => mine == theirs,
            _ => true,
        };
        let key_matches = match (&self.key, key) {
            (Some(mine), Some(theirs)) => mine == theirs,
            _ => true,
        };
        service_matches && key_matches
    }

    fn push(&self, event: ChangeEvent) {
        let mut queue = lock(&self.queue);
        if queue.events.len() >= MAX_WATCH_QUEUE {
            queue.events.pop_front();
            queue.missed += 1;
        }
        queue.events.push_back(event);
        drop(queue);
        self.ready.notify_one();
    }

    /// Takes queued events, oldest first, while their names fit `budget` bytes (at least one), with
    /// the count of events missed before them. `None` when there is nothing to report.
    pub(crate) fn take(&self, budget: usize) -> Option<Events> {
        let mut queue = lock(&self.queue);
        if queue.events.is_empty() && queue.missed == 0 {
            return None;
        }
        let lagged = (queue.missed > 0).then_some(Lagged {
            missed: queue.missed,
        });
        queue.missed = 0;
        let mut events = Vec::new();
        let mut used = 0;
        while let Some(event) = queue.events.front() {
            let cost = 32
                + event.service.as_ref().map_or(0, String::len)
                + event.key.as_ref().map_or(0, String::len);
            if !events.is_empty() && used + cost > budget {
                break;
            }
            used += cost;
            events.extend(queue.events.pop_front());
        }
        Some(Events { events, lagged })
    }
}

#[cfg(test)]
mod tests {
    use securestore_backends::{ItemName, KeychainAccessible, ProjectId, SecretString};

    use super::*;

    fn scope(id: &str) -> ProjectScope {
        ProjectScope::bind(ProjectId::parse(id).expect("project"))
    }

    fn set(project: &ProjectScope, service: &str, key: &str) -> Write {
        Write::Set {
            project: project.clone(),
            name: ItemName {
                service: ServiceName::parse(Some(service)).expect("service"),
                key: Key::parse(key).expect("key"),
            },
            value: SecretString::from("secret-value"),
            accessible: KeychainAccessible::default(),
        }
    }

    #[test]
    fn watchers_see_their_projects_matching_changes_in_order_and_a_full_queue_lags() {
        let hub = Hub::default();
        let (a, b) = (scope("@o/a"), scope("@o/b"));
        let all = hub.watch(a.clone(), None, None);
        let one = hub.watch(
            a.clone(),
            Some(ServiceName::parse(Some("s")).expect("service")),
            Some(Key::parse("k").expect("key")),
        );
        let writes = [
            set(&a, "s", "k"),
            set(&b, "s", "k"),
            set(&a, "t", "k"),
            set(&a, "s", "x"),
        ];
        let ok: Vec<Result<Applied, ()>> = writes.iter().map(|_| Ok(Applied::Done)).collect();
        hub.publish(&writes, &ok);
        let seen = all.take(usize::MAX).expect("events");
        assert_eq!(seen.events.len(), 3, "not project b's");
        assert!(
            seen.events.windows(2).all(|w| w[0].seq < w[1].seq),
            "commit order"
        );
        let debug = format!("{seen:?}");
        assert!(!debug.contains("secret-value"), "never values");
        let mine = one.take(usize::MAX).expect("events");
        assert_eq!(mine.events.len(), 1);
        assert!(one.take(usize::MAX).is_none());

        let many: Vec<Write> = (0..MAX_WATCH_QUEUE + 5)
            .map(|i| set(&a, "s", &format!("k{i}")))
            .collect();
        let ok: Vec<Result<Applied, ()>> = many.iter().map(|_| Ok(Applied::Done)).collect();
        hub.publish(&many, &ok);
        let lagged = all.take(usize::MAX).expect("events");
        assert_eq!(lagged.lagged, Some(Lagged { missed: 5 }));
        assert_eq!(lagged.events.len(), MAX_WATCH_QUEUE);
        assert_eq!(
            lagged.events[0].key.as_deref(),
            Some("k5"),
            "the oldest were dropped"
        );
    }
}
