//! [`Config`]: which daemon, which project and which token the store uses.
//!
//! The same environment variables as the `securestore` CLI, so a program and the CLI run by the same
//! user reach the same items: `SECURESTORE_SOCKET`, `SECURESTORE_PROJECT`, `SECURESTORE_TOKEN_FILE`,
//! `SECURESTORE_DAEMON_UID`. keyring's string-map configuration
//! ([`crate::Store::new_with_configuration`]) names the same settings `socket`, `project`,
//! `token-file`, `daemon-uid` and `timeout-secs`.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use keyring_core::Result;
use securestore_client::{ConnectOptions, SOCKET_ENV, SecretString, default_socket_path};
use securestore_proto::limits::MAX_TOKEN_BYTES;
use zeroize::Zeroize;

use crate::error::invalid;

/// Environment variable naming the project, as for the CLI.
pub const PROJECT_ENV: &str = "SECURESTORE_PROJECT";
/// Environment variable naming the project's token file, as for the CLI.
pub const TOKEN_FILE_ENV: &str = "SECURESTORE_TOKEN_FILE";
/// Environment variable naming the uid a system-wide daemon runs as, as for the CLI.
pub const DAEMON_UID_ENV: &str = "SECURESTORE_DAEMON_UID";

/// The keys [`Config::from_map`] accepts.
pub const CONFIG_KEYS: [&str; 5] = [
    "socket",
    "project",
    "token-file",
    "daemon-uid",
    "timeout-secs",
];

/// How the store reaches its daemon. Its `Debug` never shows the token.
#[derive(Debug, Clone)]
pub struct Config {
    /// The daemon's socket; by default the CLI's (`$XDG_RUNTIME_DIR/securestore/securestored.sock`).
    pub socket: PathBuf,
    /// The project every entry of the store lives in. keyring has no notion of it, so one store is
    /// one project; two stores on two projects keep their entries apart.
    pub project: String,
    /// The project's access token, needed once the project is registered with the daemon.
    pub token: Option<SecretString>,
    /// Longest wait for connecting and for each call.
    pub timeout: Duration,
    /// The uid a system-wide daemon runs as (`None`: this process's own; root is always accepted).
    pub expected_daemon_uid: Option<u32>,
}

impl Config {
    /// A configuration for `project` on the default socket, without a token.
    pub fn new(project: impl Into<String>) -> Self {
        Self {
            socket: default_socket_path(),
            project: project.into(),
            token: None,
            timeout: ConnectOptions::default().timeout,
            expected_daemon_uid: None,
        }
    }

    /// The socket to use instead of the default one.
    #[must_use]
    pub fn socket(mut self, socket: impl Into<PathBuf>) -> Self {
        self.socket = socket.into();
        self
    }

    /// The project's access token.
    #[must_use]
    pub fn token(mut self, token: SecretString) -> Self {
        self.token = Some(token);
        self
    }

    /// Reads the project's access token from `path`, as the CLI's `--token-file` does: the file's
    /// text without surrounding whitespace.
    ///
    /// # Errors
    /// [`keyring_core::Error::Invalid`] on `token-file` when the file cannot be read or holds no valid token.
    pub fn token_file(self, path: impl AsRef<Path>) -> Result<Self> {
        let token = read_token(path.as_ref())?;
        Ok(self.token(token))
    }

    /// The configuration from the CLI's environment variables. `SECURESTORE_PROJECT` is required.
    ///
    /// # Errors
    /// [`keyring_core::Error::Invalid`] on `project` when it is unset, on `token-file` for an unreadable token
    /// file, on `daemon-uid` for a non-numeric uid.
    pub fn from_env() -> Result<Self> {
        Self::from_vars(|name| std::env::var_os(name))
    }

    /// As [`Config::from_env`], reading variables through `var` (so tests need not change the
    /// process environment).
    fn from_vars(var: impl Fn(&str) -> Option<OsString>) -> Result<Self> {
        let text = |name: &str| -> Result<Option<String>> {
            var(name)
                .filter(|v| !v.is_empty())
                .map(|v| {
                    v.into_string()
                        .map_err(|_| invalid(name, "is not valid UTF-8"))
                })
                .transpose()
        };
        let project = text(PROJECT_ENV)?.ok_or_else(|| {
            invalid(
                "project",
                format!("no project: set {PROJECT_ENV} or configure `project`"),
            )
        })?;
        let mut config = Self::new(project);
        if let Some(socket) = var(SOCKET_ENV).filter(|v| !v.is_empty()) {
            config.socket = PathBuf::from(socket);
        }
        if let Some(path) = var(TOKEN_FILE_ENV).filter(|v| !v.is_empty()) {
            config = config.token_file(PathBuf::from(path))?;
        }
        if let Some(uid) = text(DAEMON_UID_ENV)? {
            config.expected_daemon_uid = Some(parse_uid(&uid)?);
        }
        Ok(config)
    }

    /// keyring's string-map configuration, over the environment's: each key present replaces what
    /// the environment said, and `project` is required from one or the other.
    ///
    /// # Errors
    /// [`keyring_core::Error::Invalid`] for an unknown key, a bad value, or no project.
    pub fn from_map(map: &HashMap<&str, &str>) -> Result<Self> {
        Self::from_map_and_vars(map, |name| std::env::var_os(name))
    }

    fn from_map_and_vars(
        map: &HashMap<&str, &str>,
        var: impl Fn(&str) -> Option<OsString>,
    ) -> Result<Self> {
        let parsed = keyring_core::attributes::parse_attributes(&CONFIG_KEYS, Some(map))?;
        // Each key given stands in for its environment variable, so the environment's value is
        // not even read (a stale SECURESTORE_TOKEN_FILE cannot spoil an explicit `token-file`).
        let setting = |name: &str| match name {
            PROJECT_ENV => parsed.get("project"),
            SOCKET_ENV => parsed.get("socket"),
            TOKEN_FILE_ENV => parsed.get("token-file"),
            DAEMON_UID_ENV => parsed.get("daemon-uid"),
            _ => None,
        };
        let mut config =
            Self::from_vars(|name| setting(name).map(OsString::from).or_else(|| var(name)))?;
        if let Some(timeout) = parsed.get("timeout-secs") {
            config.timeout = timeout
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s > 0.0)
                .map(|s| Duration::from_secs_f64(s.min(3600.0)))
                .ok_or_else(|| invalid("timeout-secs", "must be a positive number of seconds"))?;
        }
        Ok(config)
    }

    /// The client's connect options.
    pub(crate) fn connect_options(&self) -> ConnectOptions {
        ConnectOptions {
            timeout: self.timeout,
            token: self.token.clone(),
            expected_daemon_uid: self.expected_daemon_uid,
        }
    }
}

fn parse_uid(text: &str) -> Result<u32> {
    text.trim()
        .parse()
        .map_err(|_| invalid("daemon-uid", "must be a numeric uid"))
}

/// Reads a token file as the CLI does: bounded, trimmed, wiped when refused.
fn read_token(path: &Path) -> Result<SecretString> {
    let unreadable = |e: std::io::Error| {
        invalid(
            "token-file",
            format!("cannot read the token file {}: {e}", path.display()),
        )
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(unreadable)?
        .take(MAX_TOKEN_BYTES as u64 + 64)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            e.into_bytes().zeroize();
            return Err(invalid(
                "token-file",
                format!("the token file {} is not text", path.display()),
            ));
        }
    };
    let token = SecretString::from(text.trim());
    let mut text = text;
    text.zeroize();
    if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
        return Err(invalid(
            "token-file",
            format!("the token file {} holds no valid token", path.display()),
        ));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use keyring_core::Error;

    use super::*;

    fn vars(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<OsString> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn environment_as_the_cli_reads_it() {
        let config = Config::from_vars(vars(&[
            ("SECURESTORE_PROJECT", "@acme/tool"),
            ("SECURESTORE_SOCKET", "/run/x.sock"),
            ("SECURESTORE_DAEMON_UID", "998"),
        ]))
        .expect("valid");
        assert_eq!(config.project, "@acme/tool");
        assert_eq!(config.socket, PathBuf::from("/run/x.sock"));
        assert_eq!(config.expected_daemon_uid, Some(998));
        assert!(config.token.is_none());

        assert!(matches!(
            Config::from_vars(vars(&[])),
            Err(Error::Invalid(a, _)) if a == "project"
        ));
        assert!(matches!(
            Config::from_vars(vars(&[("SECURESTORE_PROJECT", "p"), ("SECURESTORE_DAEMON_UID", "x")])),
            Err(Error::Invalid(a, _)) if a == "daemon-uid"
        ));
    }

    #[test]
    fn map_overrides_environment_and_may_supply_the_project() {
        let map = HashMap::from([("project", "p2"), ("timeout-secs", "2.5")]);
        let config = Config::from_map_and_vars(
            &map,
            vars(&[("SECURESTORE_PROJECT", "p1"), ("SECURESTORE_SOCKET", "/s")]),
        )
        .expect("valid");
        assert_eq!(config.project, "p2");
        assert_eq!(config.socket, PathBuf::from("/s"));
        assert_eq!(config.timeout, Duration::from_millis(2500));

        let config = Config::from_map_and_vars(&map, vars(&[])).expect("project from the map");
        assert_eq!(config.project, "p2");

        let bad = HashMap::from([("project", "p"), ("colour", "blue")]);
        assert!(matches!(
            Config::from_map_and_vars(&bad, vars(&[])),
            Err(Error::Invalid(a, _)) if a == "colour"
        ));
        let bad = HashMap::from([("project", "p"), ("timeout-secs", "-1")]);
        assert!(Config::from_map_and_vars(&bad, vars(&[])).is_err());

        // A key given in the map replaces its variable unread: the stale token file is ignored.
        let tmp = tempfile::tempdir().expect("tempdir");
        let token = tmp.path().join("token");
        std::fs::write(&token, "sst1_map").expect("write");
        let map = HashMap::from([("token-file", token.to_str().expect("utf-8"))]);
        let config = Config::from_map_and_vars(
            &map,
            vars(&[
                ("SECURESTORE_PROJECT", "p1"),
                ("SECURESTORE_TOKEN_FILE", "/nonexistent/token"),
            ]),
        )
        .expect("the map's token file wins");
        assert_eq!(
            config.token.as_ref().map(SecretString::expose_secret),
            Some("sst1_map")
        );
    }

    #[test]
    fn token_files_are_read_like_the_clis() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        let good = dir.join("good");
        std::fs::write(&good, "sst1_abc\n").expect("write");
        let config = Config::new("p").token_file(&good).expect("reads");
        assert_eq!(
            config.token.as_ref().map(SecretString::expose_secret),
            Some("sst1_abc")
        );
        assert!(!format!("{config:?}").contains("sst1_abc"));
        let empty = dir.join("empty");
        std::fs::write(&empty, "  \n").expect("write");
        assert!(Config::new("p").token_file(&empty).is_err());
        assert!(Config::new("p").token_file(dir.join("missing")).is_err());
    }
}
