//! [`KeystoreSealer`]: seals rows with AES-256-GCM keys held in a Java `KeyStore`, over JNI.
//!
//! Every JNI failure becomes a [`BackendError`] in [`keystore_error`], the one place Java's
//! exceptions are read (except the two the failure policy turns into answers: a bad tag, a lost key).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use jni::errors::Error as JniError;
use jni::objects::{Global, JObject};
use jni::{Env, JavaVM};
use rusqlite::{OptionalExtension, Transaction, params};
use zeroize::Zeroizing;

use super::java::{
    ByteArrayInputStream, ByteArrayOutputStream, Cipher, GcmParameterSpec,
    KeyGenParameterSpecBuilder, KeyGenerator, KeyStore, byte_array, caught, char_array, checked,
    wipe,
};
use super::{KeystoreKind, key_alias, project_alias_prefix, unlocked_key_alias};
use crate::paths;
use crate::sqlite::{Format, Opened, Row, RowSealer, sqlite_error};
use crate::{BackendError, KeychainAccessible};
use securestore_proto::Availability;

/// First byte of a value sealed by this backend (the master-key sealer writes 1).
const FORMAT: u8 = 2;
const TRANSFORMATION: &str = "AES/GCM/NoPadding";
const KEY_BITS: i32 = 256;
const TAG_BITS: i32 = 128;
/// Largest PKCS12 keystore file read: far more than one key per (project, service) needs, and a
/// bound on what a damaged or planted file can make the daemon allocate.
const MAX_PKCS12_BYTES: u64 = 256 * 1024 * 1024;
/// What this sealer records in `meta`, so neither backend opens the other's database.
const SEALER_MARK: &[u8] = b"android-keystore/v1";

/// Java exceptions the failure policy reads, by class name.
const BAD_TAG: &str = "javax.crypto.AEADBadTagException";
const KEY_INVALIDATED: &str = "android.security.keystore.KeyPermanentlyInvalidatedException";

/// Turns a JNI failure into [`BackendError::Keystore`]: the one place they are mapped.
fn keystore_error(action: &'static str) -> impl Fn(JniError) -> BackendError {
    move |err| BackendError::Keystore {
        action,
        detail: describe(&err),
    }
}

/// A Java exception as `class: message` (without its stack), any other JNI failure as jni prints it.
fn describe(err: &JniError) -> String {
    match err {
        JniError::CaughtJavaException { name, msg, .. } => format!("{name}: {msg}"),
        other => other.to_string(),
    }
}

fn is_exception(err: &JniError, class: &str) -> bool {
    matches!(err, JniError::CaughtJavaException { name, .. } if name == class)
}

/// The keys of one Java `KeyStore`, used through `Cipher`.
///
/// The key lifecycle is a small state machine with one source of truth, the keystore as last saved:
///
/// - **Fresh**: the Java `KeyStore` object holds exactly what is saved. `keys` caches keys read from
///   it or created in it *and saved*; it is keyed by [`alias_id`], so a name the keystore lists in
///   another case (PKCS12 folds aliases to lower case) finds and evicts the same entry.
/// - **Stale**: a change to the object (a new key, a deleted key) could not be saved. The object may
///   now differ from the file, so nothing is sealed or opened with it: the next call reloads it from
///   the file and empties the cache first ([`KeystoreSealer::ensure_fresh`]).
///
/// So a key seals a value only once it is durably in the keystore, and a key that is reported gone
/// ([`Opened::KeyGone`], which deletes the item) is really absent from the saved keystore, never
/// merely missing from a cache or hidden behind a failed call (those are errors).
pub(crate) struct KeystoreSealer {
    vm: JavaVM,
    kind: KeystoreKind,
    /// The loaded `java.security.KeyStore`.
    keystore: Global<JObject<'static>>,
    /// Keys durably in the keystore, by [`alias_id`]: a `getKey` per operation would be a keystore
    /// round trip.
    keys: HashMap<String, Global<JObject<'static>>>,
    /// The keystore object was changed and the change was not saved: reload before any use.
    stale: bool,
}

/// The one normal form of an alias, for the cache and for comparing with the keystore's listing. A
/// PKCS12 keystore lists aliases in lower case; [`super::key_alias`] keeps every escaped part lower
/// case, so folding the case loses nothing.
fn alias_id(alias: &str) -> String {
    alias.to_ascii_lowercase()
}

/// Loads the Java `KeyStore` of `kind`: a PKCS12 one from its file (empty when there is none yet),
/// read only from a folder of ours as a private regular file, never through a link. Also says
/// whether the file existed.
fn load_keystore(
    vm: &JavaVM,
    kind: &KeystoreKind,
) -> Result<(Global<JObject<'static>>, bool), BackendError> {
    let file_bytes = match kind {
        KeystoreKind::AndroidKeyStore => None,
        KeystoreKind::Pkcs12 { file, .. } => {
            if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
                paths::check_owned_dir(dir)?;
            }
            paths::read_private_file(file, MAX_PKCS12_BYTES)?
        }
    };
    let existed = file_bytes.is_some();
    let keystore = vm
        .attach_current_thread(|env| -> Result<_, JniError> {
            checked(env, |env| {
                let keystore = KeyStore::get_instance(env, kind.java_type())?;
                let (stream, password) = match (kind, &file_bytes) {
                    (KeystoreKind::Pkcs12 { password, .. }, bytes) => (
                        match bytes {
                            Some(bytes) => ByteArrayInputStream::new_instance(env, bytes)?,
                            None => JObject::null(),
                        },
                        char_array(env, Some(password.expose_secret()))?,
                    ),
                    (KeystoreKind::AndroidKeyStore, _) => (JObject::null(), JObject::null()),
                };
                KeyStore(&keystore).load(env, &stream, &password)?;
                env.new_global_ref(keystore)
            })
        })
        .map_err(keystore_error("cannot open the keystore"))?;
    Ok((keystore, existed))
}

impl KeystoreSealer {
    /// Loads the keystore (creating an empty PKCS12 file on first start).
    pub(crate) fn open(vm: JavaVM, kind: KeystoreKind) -> Result<Self, BackendError> {
        let (keystore, existed) = load_keystore(&vm, &kind)?;
        let sealer = Self {
            vm,
            kind,
            keystore,
            keys: HashMap::new(),
            stale: false,
        };
        if let KeystoreKind::Pkcs12 { file, .. } = &sealer.kind
            && !existed
        {
            sealer.persist()?;
            tracing::info!(path = %file.display(), "created a new PKCS12 keystore");
        }
        Ok(sealer)
    }

    /// Brings a stale keystore object back to what is saved: reloaded, the cache emptied.
    fn ensure_fresh(&mut self) -> Result<(), BackendError> {
        if !self.stale {
            return Ok(());
        }
        self.keys.clear();
        self.keystore = load_keystore(&self.vm, &self.kind)?.0;
        self.stale = false;
        tracing::info!("reloaded the keystore after a change that was not saved");
        Ok(())
    }

    /// The entry password: `null` for AndroidKeyStore, the file's password for PKCS12.
    fn password<'local>(&self, env: &mut Env<'local>) -> Result<JObject<'local>, JniError> {
        match &self.kind {
            KeystoreKind::AndroidKeyStore => Ok(JObject::null()),
            KeystoreKind::Pkcs12 { password, .. } => {
                char_array(env, Some(password.expose_secret()))
            }
        }
    }

    /// Writes a PKCS12 keystore to its file durably: written beside it, synced, renamed, folder
    /// synced. A key must be on disk before any row it sealed is committed. AndroidKeyStore persists
    /// by itself.
    fn persist(&self) -> Result<(), BackendError> {
        let KeystoreKind::Pkcs12 { file, .. } = &self.kind else {
            return Ok(());
        };
        let bytes = self
            .vm
            .attach_current_thread(|env| -> Result<_, JniError> {
                checked(env, |env| {
                    let password = self.password(env)?;
                    let out = ByteArrayOutputStream::new_instance(env)?;
                    KeyStore(&self.keystore).store(env, &out, &password)?;
                    ByteArrayOutputStream(&out).to_byte_array(env)
                })
            })
            .map_err(keystore_error("cannot save the keystore"))?;
        write_durably(file, &bytes)
    }

    /// Runs a change to the keystore object and saves it. If either fails the object is marked
    /// stale, so the change that may be in it but not on disk is never used.
    fn change<T>(
        &mut self,
        change: impl FnOnce(&Self) -> Result<T, BackendError>,
    ) -> Result<T, BackendError> {
        self.ensure_fresh()?;
        let result = change(self).and_then(|value| self.persist().map(|()| value));
        if result.is_err() {
            self.stale = true;
            self.keys.clear();
        }
        result
    }

    /// Makes sure the key for `alias` is in `self.keys`: from the keystore, or (when `create`) newly
    /// generated inside it and saved. `false` only when the saved keystore has no such key and it may
    /// not be created; every failure to tell is an error.
    fn load_key(
        &mut self,
        alias: &str,
        create: bool,
        unlocked_only: bool,
    ) -> Result<bool, BackendError> {
        self.ensure_fresh()?;
        let id = alias_id(alias);
        if self.keys.contains_key(&id) {
            return Ok(true);
        }
        let found = self
            .vm
            .attach_current_thread(|env| -> Result<_, JniError> {
                checked(env, |env| {
                    let password = self.password(env)?;
                    let key = KeyStore(&self.keystore).get_key(env, alias, &password)?;
                    if key.is_null() {
                        Ok(None)
                    } else {
                        env.new_global_ref(key).map(Some)
                    }
                })
            })
            .map_err(keystore_error("cannot read a key"))?;
        let key = match found {
            Some(key) => key,
            None if !create => return Ok(false),
            None => {
                let key = self.change(|sealer| sealer.generate(alias, unlocked_only))?;
                tracing::info!(
                    alias,
                    keystore = self.kind.java_type(),
                    "created a keystore key"
                );
                key
            }
        };
        self.keys.insert(id, key);
        Ok(true)
    }

    /// Generates an AES-256 key inside the keystore object under `alias`; [`Self::change`] saves it.
    /// With `unlocked_only`, AndroidKeyStore makes it usable only while the device is unlocked
    /// (a PKCS12 file has no such flag: there the policy layer enforces it).
    fn generate(
        &self,
        alias: &str,
        unlocked_only: bool,
    ) -> Result<Global<JObject<'static>>, BackendError> {
        self.vm
            .attach_current_thread(|env| -> Result<_, JniError> {
                checked(env, |env| match &self.kind {
                    KeystoreKind::AndroidKeyStore => {
                        let builder = KeyGenParameterSpecBuilder::new_instance(
                            env,
                            alias,
                            KeyGenParameterSpecBuilder::PURPOSE_ENCRYPT_DECRYPT,
                        )?;
                        let spec_builder = KeyGenParameterSpecBuilder(&builder);
                        spec_builder.set_key_size(env, KEY_BITS)?;
                        spec_builder.set_block_modes(env, &["GCM"])?;
                        spec_builder.set_encryption_paddings(env, &["NoPadding"])?;
                        if unlocked_only {
                            spec_builder.set_unlocked_device_required(env, true)?;
                        }
                        let spec = spec_builder.build(env)?;
                        let generator =
                            KeyGenerator::get_instance(env, "AES", Some("AndroidKeyStore"))?;
                        KeyGenerator(&generator).init_spec(env, &spec)?;
                        let key = KeyGenerator(&generator).generate_key(env)?;
                        env.new_global_ref(key)
                    }
                    KeystoreKind::Pkcs12 { .. } => {
                        let generator = KeyGenerator::get_instance(env, "AES", None)?;
                        KeyGenerator(&generator).init_size(env, KEY_BITS)?;
                        let key = KeyGenerator(&generator).generate_key(env)?;
                        let password = self.password(env)?;
                        KeyStore(&self.keystore).set_key_entry(env, alias, &key, &password)?;
                        env.new_global_ref(key)
                    }
                })
            })
            .map_err(keystore_error("cannot create a key"))
    }

    /// Removes `aliases` from the keystore, durably. The cache forgets them first, so a key being
    /// deleted can never seal another value, whatever the outcome.
    fn delete_aliases(&mut self, aliases: &[String]) -> Result<(), BackendError> {
        for alias in aliases {
            self.keys.remove(&alias_id(alias));
        }
        if aliases.is_empty() {
            return Ok(());
        }
        self.change(|sealer| {
            sealer
                .vm
                .attach_current_thread(|env| -> Result<_, JniError> {
                    checked(env, |env| {
                        for alias in aliases {
                            KeyStore(&sealer.keystore).delete_entry(env, alias)?;
                        }
                        Ok(())
                    })
                })
                .map_err(keystore_error("cannot delete a key"))
        })
    }

    /// Every alias in the keystore.
    pub(super) fn aliases(&mut self) -> Result<Vec<String>, BackendError> {
        self.ensure_fresh()?;
        self.vm
            .attach_current_thread(|env| -> Result<_, JniError> {
                checked(env, |env| KeyStore(&self.keystore).aliases(env))
            })
            .map_err(keystore_error("cannot list the keys"))
    }

    /// Deletes the key that seals `service` in `project`. Only tests call this, to show the policy
    /// for a key the platform lost.
    #[cfg(test)]
    pub(crate) fn delete_key(&mut self, project: &str, service: &str) -> Result<(), BackendError> {
        self.delete_aliases(&[
            key_alias(project, service),
            unlocked_key_alias(project, service),
        ])
    }
}

impl RowSealer for KeystoreSealer {
    fn name(&self) -> &'static str {
        "android"
    }

    fn key_id(&self, row: &Row<'_>) -> i64 {
        let unlocked_only = KeychainAccessible::try_from(row.class)
            .is_ok_and(|class| class.availability() == Availability::WhenUnlocked);
        if unlocked_only { UNLOCKED_KEY_ID } else { 0 }
    }

    fn seal(&mut self, row: &Row<'_>, plaintext: &[u8]) -> Result<Vec<u8>, BackendError> {
        let unlocked_only = self.key_id(row) == UNLOCKED_KEY_ID;
        let alias = alias_of(row, unlocked_only);
        self.load_key(&alias, true, unlocked_only)?;
        let key = self
            .keys
            .get(&alias_id(&alias))
            .ok_or_else(|| BackendError::Internal("a created key is missing".to_owned()))?;
        let aad = row.aad();
        let (iv, ciphertext) = self
            .vm
            .attach_current_thread(|env| -> Result<_, JniError> {
                checked(env, |env| {
                    let cipher = Cipher::get_instance(env, TRANSFORMATION)?;
                    let cipher = Cipher(&cipher);
                    cipher.init(env, Cipher::ENCRYPT_MODE, key)?;
                    let iv = cipher.get_iv(env)?;
                    cipher.update_aad(env, &aad)?;
                    let input = byte_array(env, plaintext)?;
                    let output = cipher.do_final(env, &input).map_err(|e| caught(env, e));
                    wipe(env, &input)?;
                    Ok((iv, env.convert_byte_array(output?)?))
                })
            })
            .map_err(keystore_error("cannot encrypt"))?;
        let iv_len = u8::try_from(iv.len())
            .map_err(|_| BackendError::Crypto(format!("unexpected IV length {}", iv.len())))?;
        let mut sealed = Vec::with_capacity(2 + iv.len() + ciphertext.len());
        sealed.push(FORMAT);
        sealed.push(iv_len);
        sealed.extend_from_slice(&iv);
        sealed.extend_from_slice(&ciphertext);
        Ok(sealed)
    }

    fn open(&mut self, row: &Row<'_>, sealed: &[u8]) -> Result<Opened, BackendError> {
        let Some((iv, ciphertext)) = split_sealed(sealed) else {
            return Ok(Opened::NotAuthentic);
        };
        let alias = match row.key_id {
            0 => alias_of(row, false),
            UNLOCKED_KEY_ID => alias_of(row, true),
            _ => return Ok(Opened::NotAuthentic),
        };
        if !self.load_key(&alias, false, false)? {
            return Ok(Opened::KeyGone);
        }
        let key = self
            .keys
            .get(&alias_id(&alias))
            .ok_or_else(|| BackendError::Internal("a loaded key is missing".to_owned()))?;
        let aad = row.aad();
        let result = self.vm.attach_current_thread(|env| -> Result<_, JniError> {
            checked(env, |env| {
                let spec = GcmParameterSpec::new_instance(env, TAG_BITS, iv)?;
                let cipher = Cipher::get_instance(env, TRANSFORMATION)?;
                let cipher = Cipher(&cipher);
                cipher.init_with(env, Cipher::DECRYPT_MODE, key, &spec)?;
                cipher.update_aad(env, &aad)?;
                let input = byte_array(env, ciphertext)?;
                let output = cipher.do_final(env, &input)?;
                let plaintext = Zeroizing::new(env.convert_byte_array(&output)?);
                wipe(env, &output)?;
                Ok(plaintext)
            })
        });
        match result {
            Ok(plaintext) => Ok(Opened::Value(plaintext)),
            Err(err) if is_exception(&err, BAD_TAG) => Ok(Opened::NotAuthentic),
            Err(err) if is_exception(&err, KEY_INVALIDATED) => Ok(Opened::KeyGone),
            Err(err) => Err(keystore_error("cannot decrypt")(err)),
        }
    }

    fn check_store(
        &mut self,
        tx: &Transaction<'_>,
        found: Format,
        database: &Path,
    ) -> Result<(), BackendError> {
        let err = sqlite_error("cannot check the database's sealer", database);
        if found.created() {
            tx.execute(
                "INSERT INTO meta (name, value) VALUES ('sealer', ?1)",
                params![SEALER_MARK],
            )
            .map_err(&err)?;
        }
        let mark: Option<Vec<u8>> = tx
            .query_row("SELECT value FROM meta WHERE name = 'sealer'", [], |row| {
                row.get(0)
            })
            .optional()
            .map_err(&err)?;
        if mark.as_deref() == Some(SEALER_MARK) {
            Ok(())
        } else {
            Err(BackendError::Keystore {
                action: "cannot open the database",
                detail: format!(
                    "{} was not written by the android backend",
                    database.display()
                ),
            })
        }
    }

    fn forget_project(&mut self, project: &str) -> Result<(), BackendError> {
        let prefix = alias_id(&project_alias_prefix(project));
        // Whatever the keystore lists, no cached key of the project may outlive this call.
        self.keys.retain(|id, _| !id.starts_with(&prefix));
        let aliases: Vec<String> = self
            .aliases()?
            .into_iter()
            .filter(|alias| alias_id(alias).starts_with(&prefix))
            .collect();
        self.delete_aliases(&aliases)
    }
}

/// `items.key_id` of rows sealed by a (project, service)'s `WHEN_UNLOCKED` key; 0 is the key of
/// the other classes (and of every row written before keys were split by group).
const UNLOCKED_KEY_ID: i64 = 3;

/// The alias of the key that seals `row`.
fn alias_of(row: &Row<'_>, unlocked_only: bool) -> String {
    if unlocked_only {
        unlocked_key_alias(row.project, row.service)
    } else {
        key_alias(row.project, row.service)
    }
}

/// Splits `2 ‖ iv length ‖ iv ‖ ciphertext ‖ tag`; `None` when it is not that shape.
fn split_sealed(sealed: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&format, rest) = sealed.split_first()?;
    let (&iv_len, rest) = rest.split_first()?;
    let iv_len = usize::from(iv_len);
    if format != FORMAT || iv_len == 0 || rest.len() < iv_len + (TAG_BITS as usize / 8) {
        return None;
    }
    Some(rest.split_at(iv_len))
}

/// Replaces `path` with `bytes`: written beside it (0600), synced, renamed, the folder synced.
fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), BackendError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp: PathBuf = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut file = paths::create_temp_file(&tmp)?;
    let mut write = || -> std::io::Result<()> {
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    };
    write().map_err(|source| {
        let _ = fs::remove_file(&tmp);
        BackendError::io("cannot write the keystore file", path, source)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_are_checked_for_shape() {
        let mut sealed = vec![FORMAT, 12];
        sealed.extend_from_slice(&[7; 12]);
        sealed.extend_from_slice(&[9; 16]);
        let (iv, rest) = split_sealed(&sealed).expect("well formed");
        assert_eq!((iv.len(), rest.len()), (12, 16));
        assert!(
            split_sealed(&sealed[..sealed.len() - 1]).is_none(),
            "no room for a tag"
        );
        assert!(split_sealed(&[1, 12]).is_none());
        assert!(split_sealed(&[]).is_none());
        sealed[0] = 1;
        assert!(split_sealed(&sealed).is_none(), "another sealer's format");
    }
}
