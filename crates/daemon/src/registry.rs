//! The project registry: which projects have an access token, and the SHA-256 of each token.
//!
//! A token is 256 random bits, shown once when the project is added; the registry keeps only its hash,
//! which is enough for a secret of that strength (no password stretching needed). The file is small,
//! rewritten whole (write, fsync, rename) on each change, and lives in the data folder.
//!
//! Removing a project is recorded here first: its line becomes `<id> removing` (the token is revoked
//! and no connection may open the project, whatever the policy), then its items are deleted, then the
//! line goes. A removal interrupted by a crash is finished at the next start
//! ([`Registry::finish_interrupted_removals`]) or by running `project remove` again; it can never
//! leave the items readable.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context as _, bail};
use securestore_backends::{Backend, ProjectScope, paths};
use securestore_proto::limits::{MAX_PROJECT_BYTES, MAX_PROJECTS, MAX_TOKEN_BYTES};
use securestore_proto::{ProjectId, SecretString, ServiceError};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// File name of the registry inside the data folder.
pub const REGISTRY_FILE: &str = "projects";

const HEADER: &str = "# securestore project registry v1: <project id> <sha256 of token, hex>";
const TOKEN_PREFIX: &str = "sst1_";
/// Stands for the token hash on the line of a project whose removal is under way.
const REMOVING: &str = "removing";

/// Longest registry line: a project id, a space, a SHA-256 in hex, a newline.
const MAX_LINE_BYTES: usize = MAX_PROJECT_BYTES + 1 + 64 + 1;

/// Largest registry file read: [`MAX_PROJECTS`] of the longest lines, and 64 KiB for the header and
/// any comments. A larger file is refused unread (a link to `/dev/zero` would never end).
pub const MAX_REGISTRY_BYTES: usize = MAX_PROJECTS * MAX_LINE_BYTES + 64 * 1024;

/// Which projects a peer may open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Any peer the uid check admits may open any unregistered project; registered projects still
    /// need their token.
    #[default]
    Open,
    /// Only registered projects can be opened, and only with their token.
    Strict,
}

impl std::str::FromStr for Policy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "open" => Ok(Self::Open),
            "strict" => Ok(Self::Strict),
            other => Err(format!(
                "unknown policy '{other}'; expected 'open' or 'strict'"
            )),
        }
    }
}

/// SHA-256 of an access token.
pub(crate) type TokenHash = [u8; 32];

/// What the registry knows of one project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    /// Registered, with the hash of its token.
    Token(TokenHash),
    /// Its removal began and has not completed: nobody may open it until it does.
    Removing,
}

/// Registered projects and their token hashes; shared by every connection.
#[derive(Debug)]
pub struct Registry {
    /// Where changes are saved; `None` keeps the registry in memory only.
    path: Option<PathBuf>,
    projects: Mutex<BTreeMap<ProjectId, Entry>>,
}

/// How [`Registry::replace`] found the project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replaced {
    /// It was registered; its old token no longer works.
    Registered,
    /// It was not registered.
    New,
}

fn hash(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

/// `bytes` fresh random bytes from the OS, as lowercase hex: for tokens and generated passwords.
pub(crate) fn random_hex(bytes: usize) -> anyhow::Result<SecretString> {
    let mut random = zeroize::Zeroizing::new(vec![0u8; bytes]);
    getrandom::fill(random.as_mut_slice()).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(SecretString::new(hex(&random)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<TokenHash> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// A new access token.
fn new_token() -> Result<SecretString, ServiceError> {
    let random = random_hex(32).map_err(storage_failure)?;
    Ok(SecretString::new(format!(
        "{TOKEN_PREFIX}{}",
        random.expose_secret()
    )))
}

/// The refusal for a project whose removal is pending.
fn removal_pending(project: &ProjectId) -> ServiceError {
    ServiceError::Refused {
        reason: format!(
            "project '{project}' is being removed; if this persists, run `securestore project remove {project}` again"
        ),
    }
}

fn storage_failure(err: anyhow::Error) -> ServiceError {
    tracing::error!(error = %format!("{err:#}"), "cannot save the project registry");
    ServiceError::Storage {
        message: "cannot save the project registry".to_owned(),
    }
}

impl Registry {
    /// A registry that lives in memory only, for an embedding host that registers its projects at
    /// every start.
    pub fn in_memory() -> Self {
        Self {
            path: None,
            projects: Mutex::default(),
        }
    }

    /// Loads the registry at `path`, or starts an empty one there if the file does not exist.
    ///
    /// The file must be a regular file (it is opened without following a symbolic link) of the
    /// daemon's user with mode 0600, at most [`MAX_REGISTRY_BYTES`] long, with each project once and
    /// at most [`MAX_PROJECTS`] of them.
    ///
    /// # Errors
    /// If the file cannot be read, is not safe to trust, or is malformed; the daemon must not start
    /// with a partial or doubtful registry.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let mut projects = BTreeMap::new();
        if let Some(bytes) = paths::read_private_file(path, MAX_REGISTRY_BYTES as u64)? {
            let text = std::str::from_utf8(&bytes)
                .with_context(|| format!("{} is not text", path.display()))?;
            for (n, line) in text.lines().enumerate() {
                if line.starts_with('#') || line.trim().is_empty() {
                    continue;
                }
                let parsed = line.split_once(' ').and_then(|(id, digest)| {
                    let entry = if digest == REMOVING {
                        Entry::Removing
                    } else {
                        Entry::Token(unhex(digest)?)
                    };
                    Some((ProjectId::parse(id).ok()?, entry))
                });
                let Some((id, digest)) = parsed else {
                    bail!("{}: line {} is malformed", path.display(), n + 1);
                };
                if projects.contains_key(&id) {
                    bail!(
                        "{}: line {} registers '{id}' a second time; remove one of the lines",
                        path.display(),
                        n + 1
                    );
                }
                if projects.len() == MAX_PROJECTS {
                    bail!(
                        "{}: more than {MAX_PROJECTS} projects are registered; the limit is {MAX_PROJECTS}",
                        path.display()
                    );
                }
                projects.insert(id, digest);
            }
        }
        Ok(Self {
            path: Some(path.to_owned()),
            projects: Mutex::new(projects),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<ProjectId, Entry>> {
        // The map is only ever replaced whole, so a panic while it was held left it consistent.
        self.projects
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers `project` and returns its new token. Blocking: it writes the file.
    ///
    /// # Errors
    /// [`ServiceError::InvalidProject`], [`ServiceError::AlreadyRegistered`],
    /// [`ServiceError::TooManyProjects`], or [`ServiceError::Storage`] if the file cannot be saved.
    pub fn add(&self, project: &str) -> Result<SecretString, ServiceError> {
        let id = ProjectId::parse(project)?;
        let token = new_token()?;

        let mut projects = self.lock();
        match projects.get(&id) {
            Some(Entry::Token(_)) => {
                return Err(ServiceError::AlreadyRegistered {
                    project: id.to_string(),
                });
            }
            Some(Entry::Removing) => return Err(removal_pending(&id)),
            None => {}
        }
        if projects.len() >= MAX_PROJECTS {
            return Err(ServiceError::TooManyProjects {
                limit: MAX_PROJECTS as u64,
            });
        }
        let mut next = projects.clone();
        next.insert(id.clone(), Entry::Token(hash(token.expose_secret())));
        self.save(&next).map_err(storage_failure)?;
        *projects = next;
        tracing::info!(project = %id, "project registered");
        Ok(token)
    }

    /// Records, durably, that `project`'s removal has begun: its token is revoked and no connection
    /// may open it until [`Self::finish_removal`]. Returns whether it was registered (a removal
    /// already under way counts as registered). Blocking: it writes the file.
    ///
    /// # Errors
    /// [`ServiceError::Storage`] if the file cannot be saved; nothing changed then.
    pub(crate) fn begin_removal(&self, project: &ProjectId) -> Result<bool, ServiceError> {
        let mut projects = self.lock();
        let existed = projects.contains_key(project);
        let mut next = projects.clone();
        next.insert(project.clone(), Entry::Removing);
        self.save(&next).map_err(storage_failure)?;
        *projects = next;
        tracing::info!(%project, "project removal begun");
        Ok(existed)
    }

    /// Records that `project`'s items are gone: it is unregistered, or (with `reissue`) registered
    /// afresh, in the same save, and its new token returned. Blocking: it writes the file.
    ///
    /// # Errors
    /// [`ServiceError::Storage`] if the file cannot be saved; the removal stays pending then.
    pub(crate) fn finish_removal(
        &self,
        project: &ProjectId,
        reissue: bool,
    ) -> Result<Option<SecretString>, ServiceError> {
        let token = reissue.then(new_token).transpose()?;
        let mut projects = self.lock();
        if token.is_none() && projects.get(project) != Some(&Entry::Removing) {
            // A concurrent removal of the same project finished first (and the id may have been
            // registered again since): nothing left to record.
            return Ok(None);
        }
        let mut next = projects.clone();
        match &token {
            Some(token) => next.insert(project.clone(), Entry::Token(hash(token.expose_secret()))),
            None => next.remove(project),
        };
        self.save(&next).map_err(storage_failure)?;
        *projects = next;
        tracing::info!(%project, reissued = token.is_some(), "project removal completed");
        Ok(token)
    }

    /// Whether `project`'s removal has begun and not completed.
    pub(crate) fn is_removing(&self, project: &ProjectId) -> bool {
        self.lock().get(project) == Some(&Entry::Removing)
    }

    /// Revokes `project`'s token, if it has one, and issues a new one, keeping its items: the way
    /// out of a lost `add` answer. Blocking: it writes the file.
    ///
    /// # Errors
    /// [`ServiceError::Refused`] while a removal of it is pending; [`ServiceError::TooManyProjects`];
    /// [`ServiceError::Storage`] if the file cannot be saved.
    pub(crate) fn replace(
        &self,
        project: &ProjectId,
    ) -> Result<(SecretString, Replaced), ServiceError> {
        let token = new_token()?;
        let mut projects = self.lock();
        let replaced = match projects.get(project) {
            Some(Entry::Token(_)) => Replaced::Registered,
            Some(Entry::Removing) => return Err(removal_pending(project)),
            None if projects.len() >= MAX_PROJECTS => {
                return Err(ServiceError::TooManyProjects {
                    limit: MAX_PROJECTS as u64,
                });
            }
            None => Replaced::New,
        };
        let mut next = projects.clone();
        next.insert(project.clone(), Entry::Token(hash(token.expose_secret())));
        self.save(&next).map_err(storage_failure)?;
        *projects = next;
        tracing::info!(%project, "project token replaced");
        Ok((token, replaced))
    }

    /// Finishes every removal a crash interrupted: deletes the project's items with `backend`, then
    /// unregisters it. Run at start-up, before any connection is served. A removal that fails again
    /// stays pending (the project stays closed) and is logged; `project remove` retries it.
    pub fn finish_interrupted_removals(&self, backend: &mut dyn Backend) {
        let pending: Vec<ProjectId> = self
            .lock()
            .iter()
            .filter(|(_, entry)| **entry == Entry::Removing)
            .map(|(id, _)| id.clone())
            .collect();
        for project in pending {
            // A scope made outside `connection::bind`: this removal was authorised (token checked)
            // before the crash, and its token is already revoked; no peer is involved.
            let scope = ProjectScope::bind(project.clone());
            let done = backend
                .delete_project(&scope)
                .map_err(|err| format!("{:#}", anyhow::Error::from(err)))
                .and_then(|()| {
                    self.finish_removal(&project, false)
                        .map(drop)
                        .map_err(|err| err.to_string())
                });
            match done {
                Ok(()) => {
                    tracing::warn!(%project, "finished a project removal a crash interrupted")
                }
                Err(error) => {
                    tracing::error!(%project, %error, "cannot finish an interrupted project removal; it stays pending: run `securestore project remove` again")
                }
            }
        }
    }

    /// The registered project ids, sorted.
    pub fn list(&self) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, entry)| matches!(entry, Entry::Token(_)))
            .map(|(id, _)| id.as_str().to_owned())
            .collect()
    }

    /// Whether a peer presenting `token` may open `project` under `policy`. Returns the token's hash
    /// when the project is registered, so the connection can check later that it still is.
    ///
    /// # Errors
    /// [`ServiceError::Refused`] naming the project, never the token.
    pub(crate) fn admit(
        &self,
        project: &ProjectId,
        token: Option<&SecretString>,
        policy: Policy,
    ) -> Result<Option<TokenHash>, ServiceError> {
        let expected = match self.lock().get(project).copied() {
            Some(Entry::Removing) => return Err(removal_pending(project)),
            Some(Entry::Token(hash)) => Some(hash),
            None => None,
        };
        let refused = |reason: String| Err(ServiceError::Refused { reason });
        match (expected, token) {
            (Some(expected), Some(token)) if token.len() <= MAX_TOKEN_BYTES => {
                if bool::from(hash(token.expose_secret()).ct_eq(&expected)) {
                    Ok(Some(expected))
                } else {
                    refused(format!("wrong access token for project '{project}'"))
                }
            }
            (Some(_), Some(_)) => refused(format!("wrong access token for project '{project}'")),
            (Some(_), None) => refused(format!("project '{project}' requires an access token")),
            (None, _) if policy == Policy::Strict => refused(format!(
                "project '{project}' is not registered and the daemon runs in strict mode"
            )),
            (None, _) => Ok(None),
        }
    }

    /// Whether a connection admitted to `project` with `admitted_with` (the hash of its token, or
    /// `None` if the project was unregistered then) would still be admitted: the project must be
    /// registered exactly as it was. A project registered, removed or re-registered since then ends
    /// the connection's access.
    pub(crate) fn still_admits(
        &self,
        project: &ProjectId,
        admitted_with: Option<&TokenHash>,
    ) -> bool {
        match (self.lock().get(project), admitted_with) {
            (Some(Entry::Token(current)), Some(expected)) => bool::from(current.ct_eq(expected)),
            (None, None) => true,
            _ => false,
        }
    }

    fn save(&self, projects: &BTreeMap<ProjectId, Entry>) -> anyhow::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let mut text = format!("{HEADER}\n");
        for (id, entry) in projects {
            match entry {
                Entry::Token(digest) => text.push_str(&format!("{id} {}\n", hex(digest))),
                Entry::Removing => text.push_str(&format!("{id} {REMOVING}\n")),
            }
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        let tmp = path.with_extension("tmp");
        // Fresh, 0600, never through a link planted in its place (`O_EXCL | O_NOFOLLOW`).
        let mut file = paths::create_temp_file(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
        File::open(dir)?.sync_all()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn id(s: &str) -> ProjectId {
        ProjectId::parse(s).expect("id")
    }

    #[test]
    fn tokens_admit_only_their_project() {
        let registry = Registry::in_memory();
        let a = registry.add("@o/a").expect("add a");
        let b = registry.add("@o/b").expect("add b");
        assert!(a.expose_secret().starts_with(TOKEN_PREFIX) && a.len() == TOKEN_PREFIX.len() + 64);
        assert_ne!(a.expose_secret(), b.expose_secret());

        assert!(
            registry
                .admit(&id("@o/a"), Some(&a), Policy::Strict)
                .is_ok()
        );
        for (token, why) in [
            (None, "missing"),
            (Some(&b), "replayed from b"),
            (Some(&SecretString::from("sst1_00")), "wrong"),
        ] {
            let refusal = registry
                .admit(&id("@o/a"), token, Policy::Open)
                .expect_err(why);
            assert!(matches!(refusal, ServiceError::Refused { .. }), "{why}");
            assert!(
                !refusal.to_string().contains(b.expose_secret()),
                "the refusal never shows a token"
            );
        }
        assert!(
            registry
                .admit(&id("@o/unregistered"), None, Policy::Open)
                .is_ok()
        );
        assert!(
            registry
                .admit(&id("@o/unregistered"), None, Policy::Strict)
                .is_err()
        );
    }

    #[test]
    fn persists_only_hashes_and_survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(REGISTRY_FILE);
        let registry = Registry::open(&path).expect("open");
        let token = registry.add("@o/a").expect("add");
        assert_eq!(
            registry.add("@o/a").expect_err("twice"),
            ServiceError::AlreadyRegistered {
                project: "@o/a".into()
            }
        );
        registry.add("@o/b").expect("add");
        assert!(registry.begin_removal(&id("@o/b")).expect("begin removal"));
        registry
            .finish_removal(&id("@o/b"), false)
            .expect("finish removal");
        assert!(!registry.begin_removal(&id("@o/c")).expect("not registered"));
        assert!(
            Registry::open(&path)
                .expect("reopen")
                .is_removing(&id("@o/c")),
            "a pending removal is on disk before any item is deleted"
        );
        assert!(
            registry.admit(&id("@o/c"), None, Policy::Open).is_err(),
            "no connection opens a project being removed, even under the open policy"
        );
        registry
            .finish_removal(&id("@o/c"), false)
            .expect("finish removal");

        let text = fs::read_to_string(&path).expect("read");
        assert!(
            !text.contains(token.expose_secret()),
            "the token itself is never stored"
        );
        assert_eq!(
            fs::metadata(&path).expect("stat").permissions().mode() & 0o777,
            0o600
        );

        let reopened = Registry::open(&path).expect("reopen");
        assert_eq!(reopened.list(), vec!["@o/a".to_owned()]);
        assert!(
            reopened
                .admit(&id("@o/a"), Some(&token), Policy::Strict)
                .is_ok()
        );
    }

    #[test]
    fn a_malformed_file_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(REGISTRY_FILE);
        fs::write(&path, "@o/a not-hex\n").expect("write");
        assert!(Registry::open(&path).is_err());
    }

    /// A hash line for `id`, as `save` writes it.
    fn line(id: &str) -> String {
        format!("{id} {}\n", hex(&hash(id)))
    }

    fn write_private(path: &Path, text: &str) {
        fs::write(path, text).expect("write");
        fs::set_permissions(path, fs::Permissions::from_mode(0o600)).expect("chmod");
    }

    #[test]
    fn duplicates_and_too_many_projects_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(REGISTRY_FILE);
        write_private(
            &path,
            &format!("{}{}{}", line("@o/a"), line("@o/b"), line("@o/a")),
        );
        let err = Registry::open(&path).expect_err("duplicate").to_string();
        assert!(
            err.contains("line 3 registers '@o/a' a second time"),
            "{err}"
        );

        // The largest registry allowed: MAX_PROJECTS ids of the longest length. It loads, fits the
        // byte bound, and one more project is refused.
        let longest = |i: usize| format!("@{i:0>width$}", width = MAX_PROJECT_BYTES - 1);
        let mut text = format!("{HEADER}\n");
        for i in 0..MAX_PROJECTS {
            text.push_str(&line(&longest(i)));
        }
        assert!(text.len() <= MAX_REGISTRY_BYTES, "{} bytes", text.len());
        write_private(&path, &text);
        assert_eq!(
            Registry::open(&path).expect("full").list().len(),
            MAX_PROJECTS
        );
        text.push_str(&line(&longest(MAX_PROJECTS)));
        write_private(&path, &text);
        let err = Registry::open(&path).expect_err("one too many").to_string();
        assert!(err.contains("more than 4096 projects"), "{err}");
    }

    #[test]
    fn only_a_private_regular_file_is_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(REGISTRY_FILE);
        std::os::unix::fs::symlink("/dev/zero", &path).expect("symlink");
        let err = format!("{:#}", Registry::open(&path).expect_err("a link"));
        assert!(err.contains("symbolic link"), "{err}");
        fs::remove_file(&path).expect("rm");

        fs::write(&path, line("@o/a")).expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = format!("{:#}", Registry::open(&path).expect_err("0644"));
        assert!(err.contains("chmod 600"), "{err}");

        write_private(&path, &"#".repeat(MAX_REGISTRY_BYTES + 1));
        let err = format!("{:#}", Registry::open(&path).expect_err("too long"));
        assert!(err.contains("larger than"), "{err}");
    }
}
