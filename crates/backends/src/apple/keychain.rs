//! The Security.framework calls behind [`KeychainBackend`]; built only for Apple targets.
//!
//! Every call goes through `security-framework`'s safe API; each failure's `OSStatus` goes to
//! [`keychain_error`]. Values are copied out of the Keychain into zeroizing buffers.

use core_foundation::data::CFData;
use security_framework::access_control::{ProtectionMode, SecAccessControl};
use security_framework::item::{
    CloudSync, ItemClass, ItemSearchOptions, ItemUpdateOptions, ItemUpdateValue, Limit,
};
use security_framework::passwords::{
    PasswordOptions, generic_password, set_generic_password_options,
};
use zeroize::Zeroizing;

use super::{
    ERR_SEC_ITEM_NOT_FOUND, ItemQuery, KeychainConfig, NewItem, Protection, class_from_attributes,
    keychain_error, page_of, service_in_project,
};
use crate::{
    Backend, BackendError, Item, ItemName, Key, KeychainAccessible, ProjectScope, SecretString,
    ServiceName,
};

/// `kSecAttrComment`, `kSecAttrAccessible`, `kSecAttrService` and `kSecAttrAccount` as the
/// Keychain names them in an item's attributes.
const ATTR_COMMENT: &str = "icmt";
const ATTR_ACCESSIBLE: &str = "pdmn";
const ATTR_SERVICE: &str = "svce";
const ATTR_ACCOUNT: &str = "acct";

/// Items in the iOS Keychain (also builds for macOS, using the data-protection keychain's rules).
#[derive(Debug)]
pub struct KeychainBackend {
    config: KeychainConfig,
}

impl KeychainBackend {
    /// The Keychain backend with `config`. Opening touches nothing: the Keychain is always there.
    ///
    /// # Errors
    /// None today; the signature leaves room for a check of the entitlement.
    pub fn open(config: KeychainConfig) -> Result<Self, BackendError> {
        Ok(Self { config })
    }
}

fn search(query: &ItemQuery) -> ItemSearchOptions {
    let mut search = ItemSearchOptions::new();
    search
        .class(ItemClass::generic_password())
        .service(&query.service)
        .account(&query.account)
        .cloud_sync(CloudSync::MatchSyncNo);
    if let Some(group) = &query.access_group {
        search.access_group(group);
    }
    search
}

fn password_options(query: &ItemQuery) -> PasswordOptions {
    let mut options = PasswordOptions::new_generic_password(&query.service, &query.account);
    if let Some(group) = &query.access_group {
        options.set_access_group(group);
    }
    options.set_access_synchronized(Some(false));
    options
}

fn protection_mode(protection: Protection) -> ProtectionMode {
    match protection {
        Protection::WhenPasscodeSetThisDeviceOnly => {
            ProtectionMode::AccessibleWhenPasscodeSetThisDeviceOnly
        }
        Protection::WhenUnlockedThisDeviceOnly => {
            ProtectionMode::AccessibleWhenUnlockedThisDeviceOnly
        }
        Protection::WhenUnlocked => ProtectionMode::AccessibleWhenUnlocked,
        Protection::AfterFirstUnlockThisDeviceOnly => {
            ProtectionMode::AccessibleAfterFirstUnlockThisDeviceOnly
        }
        Protection::AfterFirstUnlock => ProtectionMode::AccessibleAfterFirstUnlock,
    }
}

/// The class of the item `query` names, or `None` when there is no such item. (`Some(None)`: an
/// item whose class cannot be told.)
fn stored_class(
    query: &ItemQuery,
    name: &ItemName,
) -> Result<Option<Option<KeychainAccessible>>, BackendError> {
    let mut search = search(query);
    search.load_attributes(true).limit(1);
    match search.search() {
        Ok(results) => Ok(results.first().map(|found| {
            let attributes = found.simplify_dict().unwrap_or_default();
            class_from_attributes(
                attributes.get(ATTR_COMMENT).map(String::as_str),
                attributes.get(ATTR_ACCESSIBLE).map(String::as_str),
            )
        })),
        Err(e) if e.code() == ERR_SEC_ITEM_NOT_FOUND => Ok(None),
        Err(e) => Err(keychain_error(
            "cannot look up the item",
            e.code(),
            Some(name),
        )),
    }
}

fn add(new: &NewItem, value: &[u8], name: &ItemName) -> Result<(), BackendError> {
    let access = SecAccessControl::create_with_protection(Some(protection_mode(new.protection)), 0)
        .map_err(|e| keychain_error("cannot make the access control", e.code(), Some(name)))?;
    let mut options = password_options(&new.query);
    options.set_access_control(access);
    options.set_comment(&new.comment);
    set_generic_password_options(value, options)
        .map_err(|e| keychain_error("cannot add the item", e.code(), Some(name)))
}

fn delete(query: &ItemQuery, name: Option<&ItemName>) -> Result<(), BackendError> {
    match search(query).delete() {
        Ok(()) => Ok(()),
        Err(e) if e.code() == ERR_SEC_ITEM_NOT_FOUND => Ok(()),
        Err(e) => Err(keychain_error("cannot delete the item", e.code(), name)),
    }
}

impl KeychainBackend {
    /// The (service, key) of every item of `project`, as securestore names them.
    fn project_items(&self, project: &ProjectScope) -> Result<Vec<(String, String)>, BackendError> {
        let mut all = ItemSearchOptions::new();
        all.class(ItemClass::generic_password())
            .cloud_sync(CloudSync::MatchSyncNo)
            .load_attributes(true)
            .limit(Limit::All);
        if let Some(group) = &self.config.access_group {
            all.access_group(group);
        }
        let found = match all.search() {
            Ok(found) => found,
            Err(e) if e.code() == ERR_SEC_ITEM_NOT_FOUND => return Ok(Vec::new()),
            Err(e) => return Err(keychain_error("cannot list the items", e.code(), None)),
        };
        let mut items = Vec::new();
        for attributes in found.iter().filter_map(|f| f.simplify_dict()) {
            let (Some(service), Some(account)) =
                (attributes.get(ATTR_SERVICE), attributes.get(ATTR_ACCOUNT))
            else {
                continue;
            };
            // The service must start with the project's own prefix (`belongs_to`).
            if let Some(own) = service_in_project(service, project) {
                items.push((own.to_owned(), account.clone()));
            }
        }
        Ok(items)
    }
}

impl Backend for KeychainBackend {
    fn name(&self) -> &'static str {
        "apple"
    }

    fn get(
        &mut self,
        project: &ProjectScope,
        name: &ItemName,
    ) -> Result<Option<Item>, BackendError> {
        let query = ItemQuery::new(project, name, &self.config);
        let Some(class) = stored_class(&query, name)? else {
            return Ok(None);
        };
        let value = match generic_password(password_options(&query)) {
            Ok(bytes) => Zeroizing::new(bytes),
            Err(e) if e.code() == ERR_SEC_ITEM_NOT_FOUND => return Ok(None),
            Err(e) => return Err(keychain_error("cannot read the item", e.code(), Some(name))),
        };
        let cannot_decrypt = || BackendError::CannotDecrypt {
            service: name.service.as_str().to_owned(),
            key: name.key.as_str().to_owned(),
        };
        let value = std::str::from_utf8(&value).map_err(|_| cannot_decrypt())?;
        Ok(Some(Item {
            value: SecretString::from(value),
            accessible: class.ok_or_else(cannot_decrypt)?,
        }))
    }

    fn set(
        &mut self,
        project: &ProjectScope,
        name: &ItemName,
        value: &SecretString,
        accessible: KeychainAccessible,
    ) -> Result<(), BackendError> {
        let new = NewItem::new(project, name, accessible, &self.config);
        let value = value.expose_secret().as_bytes();
        match stored_class(&new.query, name)? {
            // Same class: replace the data in place, in one call.
            Some(Some(class)) if class == accessible => {
                let mut update = ItemUpdateOptions::new();
                update.set_value(ItemUpdateValue::Data(CFData::from_buffer(value)));
                security_framework::item::update_item(&search(&new.query), &update)
                    .map_err(|e| keychain_error("cannot update the item", e.code(), Some(name)))
            }
            // Another class: the Keychain cannot change an item's access control in place, so the
            // item is replaced. Between the two calls the item is absent.
            Some(_) => {
                delete(&new.query, Some(name))?;
                add(&new, value, name)
            }
            None => add(&new, value, name),
        }
    }

    fn delete(&mut self, project: &ProjectScope, name: &ItemName) -> Result<(), BackendError> {
        delete(&ItemQuery::new(project, name, &self.config), Some(name))
    }

    fn delete_project(&mut self, project: &ProjectScope) -> Result<(), BackendError> {
        self.clear(project, None).map(|_| ())
    }

    /// The Keychain itself deletes every `kSecAttrAccessibleWhenPasscodeSetThisDeviceOnly` item
    /// when the user removes the passcode: nothing is left to delete, and no names are known.
    fn delete_class(
        &mut self,
        _class: crate::KeychainAccessible,
    ) -> Result<Vec<(ProjectScope, ItemName)>, BackendError> {
        Ok(Vec::new())
    }

    fn list_keys(
        &mut self,
        project: &ProjectScope,
        service: &ServiceName,
        after: Option<&Key>,
        limit: usize,
    ) -> Result<Vec<Key>, BackendError> {
        let keys = self
            .project_items(project)?
            .into_iter()
            .filter(|(s, _)| s == service.as_str())
            .filter_map(|(_, account)| Key::parse(&account).ok())
            .collect();
        Ok(page_of(keys, after, limit))
    }

    fn list_services(
        &mut self,
        project: &ProjectScope,
        after: Option<&ServiceName>,
        limit: usize,
    ) -> Result<Vec<ServiceName>, BackendError> {
        let services = self
            .project_items(project)?
            .into_iter()
            .filter_map(|(s, _)| ServiceName::parse(Some(&s)).ok())
            .collect();
        Ok(page_of(services, after, limit))
    }

    /// One item at a time: the Keychain has no transaction, so a failure part-way leaves the items
    /// not yet deleted (a retry finishes the job).
    fn clear(
        &mut self,
        project: &ProjectScope,
        service: Option<&ServiceName>,
    ) -> Result<u64, BackendError> {
        let mut deleted = 0;
        for (s, account) in self.project_items(project)? {
            if service.is_some_and(|wanted| wanted.as_str() != s) {
                continue;
            }
            let query = ItemQuery {
                service: format!(
                    "{}{s}",
                    super::project_service_prefix(project.project().as_str())
                ),
                account,
                access_group: self.config.access_group.clone(),
            };
            delete(&query, None)?;
            deleted += 1;
        }
        Ok(deleted)
    }

    fn close(self: Box<Self>) -> Result<(), BackendError> {
        Ok(())
    }
}
