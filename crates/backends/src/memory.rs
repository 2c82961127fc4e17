//! An in-memory backend: for unit tests of the layers above storage, never for a feature's own test.

use std::collections::HashMap;

use crate::{
    Backend, BackendError, Item, ItemName, Key, KeychainAccessible, ProjectScope, SecretString,
    ServiceName,
};

/// Items in a map, lost when dropped.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    items: HashMap<(ProjectScope, ItemName), Item>,
}

impl Backend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn get(
        &mut self,
        project: &ProjectScope,
        name: &ItemName,
    ) -> Result<Option<Item>, BackendError> {
        Ok(self.items.get(&(project.clone(), name.clone())).cloned())
    }

    fn set(
        &mut self,
        project: &ProjectScope,
        name: &ItemName,
        value: &SecretString,
        accessible: KeychainAccessible,
    ) -> Result<(), BackendError> {
        let item = Item {
            value: value.clone(),
            accessible,
        };
        self.items.insert((project.clone(), name.clone()), item);
        Ok(())
    }

    fn delete(&mut self, project: &ProjectScope, name: &ItemName) -> Result<(), BackendError> {
        self.items.remove(&(project.clone(), name.clone()));
        Ok(())
    }

    fn delete_project(&mut self, project: &ProjectScope) -> Result<(), BackendError> {
        self.items.retain(|(owner, _), _| owner != project);
        Ok(())
    }

    fn delete_class(
        &mut self,
        class: KeychainAccessible,
    ) -> Result<Vec<(ProjectScope, ItemName)>, BackendError> {
        let doomed: Vec<(ProjectScope, ItemName)> = self
            .items
            .iter()
            .filter(|(_, item)| item.accessible == class)
            .map(|(at, _)| at.clone())
            .collect();
        for at in &doomed {
            self.items.remove(at);
        }
        Ok(doomed)
    }

    fn list_keys(
        &mut self,
        project: &ProjectScope,
        service: &ServiceName,
        after: Option<&Key>,
        limit: usize,
    ) -> Result<Vec<Key>, BackendError> {
        let mut keys: Vec<Key> = self
            .items
            .keys()
            .filter(|(owner, name)| {
                owner == project && &name.service == service && after.is_none_or(|a| &name.key > a)
            })
            .map(|(_, name)| name.key.clone())
            .collect();
        keys.sort();
        keys.truncate(limit);
        Ok(keys)
    }

    fn list_services(
        &mut self,
        project: &ProjectScope,
        after: Option<&ServiceName>,
        limit: usize,
    ) -> Result<Vec<ServiceName>, BackendError> {
        let mut services: Vec<ServiceName> = self
            .items
            .keys()
            .filter(|(owner, name)| owner == project && after.is_none_or(|a| &name.service > a))
            .map(|(_, name)| name.service.clone())
            .collect();
        services.sort();
        services.dedup();
        services.truncate(limit);
        Ok(services)
    }

    fn clear(
        &mut self,
        project: &ProjectScope,
        service: Option<&ServiceName>,
    ) -> Result<u64, BackendError> {
        let before = self.items.len();
        self.items.retain(|(owner, name), _| {
            owner != project || service.is_some_and(|s| &name.service != s)
        });
        Ok((before - self.items.len()) as u64)
    }

    fn close(self: Box<Self>) -> Result<(), BackendError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// The memory backend passes the same suite; "reopening" hands back the same map.
    #[test]
    fn conformance() {
        let shared: Arc<Mutex<Option<MemoryBackend>>> = Arc::default();
        struct Reopenable(Arc<Mutex<Option<MemoryBackend>>>, Option<MemoryBackend>);
        impl Backend for Reopenable {
            fn name(&self) -> &'static str {
                "memory"
            }
            fn get(
                &mut self,
                p: &ProjectScope,
                n: &ItemName,
            ) -> Result<Option<Item>, BackendError> {
                self.1.as_mut().expect("open").get(p, n)
            }
            fn set(
                &mut self,
                p: &ProjectScope,
                n: &ItemName,
                v: &SecretString,
                a: KeychainAccessible,
            ) -> Result<(), BackendError> {
                self.1.as_mut().expect("open").set(p, n, v, a)
            }
            fn delete(&mut self, p: &ProjectScope, n: &ItemName) -> Result<(), BackendError> {
                self.1.as_mut().expect("open").delete(p, n)
            }
            fn delete_project(&mut self, p: &ProjectScope) -> Result<(), BackendError> {
                self.1.as_mut().expect("open").delete_project(p)
            }
            fn list_keys(
                &mut self,
                p: &ProjectScope,
                s: &ServiceName,
                after: Option<&Key>,
                limit: usize,
            ) -> Result<Vec<Key>, BackendError> {
                self.1.as_mut().expect("open").list_keys(p, s, after, limit)
            }
            fn list_services(
                &mut self,
                p: &ProjectScope,
                after: Option<&ServiceName>,
                limit: usize,
            ) -> Result<Vec<ServiceName>, BackendError> {
                self.1
                    .as_mut()
                    .expect("open")
                    .list_services(p, after, limit)
            }
            fn clear(
                &mut self,
                p: &ProjectScope,
                s: Option<&ServiceName>,
            ) -> Result<u64, BackendError> {
                self.1.as_mut().expect("open").clear(p, s)
            }
            fn close(mut self: Box<Self>) -> Result<(), BackendError> {
                *self.0.lock().expect("lock") = self.1.take();
                Ok(())
            }
        }
        crate::conformance::run(|| {
            let inner = shared.lock().expect("lock").take().unwrap_or_default();
            Ok(Box::new(Reopenable(shared.clone(), Some(inner))))
        });
    }
}
