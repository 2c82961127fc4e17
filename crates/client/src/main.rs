//! `securestore`: the command-line client. Stores, prints and deletes one project's secrets.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use securestore_client::admin;
use securestore_client::{
    ChangeKind, ConnectOptions, DeleteOptions, Error, Events, GetOptions, KeychainAccessible,
    SOCKET_ENV, SecretString, ServiceError, SetOptions, WatchFilter, default_socket_path,
};
use securestore_proto::limits::{MAX_TOKEN_BYTES, MAX_VALUE_BYTES_CEILING};

/// `--version`: the package version and the newest protocol version spoken, e.g.
/// `securestore 0.1.0 (protocol 2)`.
static VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "{} (protocol {})",
        env!("CARGO_PKG_VERSION"),
        securestore_proto::handshake::PROTOCOL_VERSION
    )
});

/// Store, fetch and delete secrets through the securestore daemon.
///
/// Exit status: 0 success; 1 `get` found nothing, or `contains` found no item; 2 invalid input (key,
/// project, service, value size, usage); 3 refused: by the daemon, or the daemon refused by this tool
/// because it runs as another user (nothing is sent to it); 4 daemon unreachable; 5 any other
/// failure; 6 a conditional `set` or `delete` found another value (nothing was changed); 7 the
/// device is locked and the item's class makes it unavailable until it is unlocked.
#[derive(Debug, Parser)]
#[command(name = "securestore", version = VERSION.as_str())]
struct Args {
    /// The daemon's socket [default: $XDG_RUNTIME_DIR/securestore/securestored.sock]
    #[arg(long, env = SOCKET_ENV, value_name = "PATH", global = true)]
    socket: Option<PathBuf>,

    /// The project whose storage to use, e.g. @owner/slug
    #[arg(long, env = "SECURESTORE_PROJECT", value_name = "ID", global = true)]
    project: Option<String>,

    /// File holding the project's access token (needed once the project is registered). Tokens are
    /// never taken on the command line, where other processes could see them
    #[arg(
        long,
        env = "SECURESTORE_TOKEN_FILE",
        value_name = "FILE",
        global = true
    )]
    token_file: Option<PathBuf>,

    /// The uid the daemon must run as [default: this user's uid]. Root is always accepted. Before
    /// sending anything, the tool asks the kernel who is listening on the socket and refuses anyone
    /// else (exit 3): name a system-wide daemon's dedicated uid here
    #[arg(
        long,
        env = "SECURESTORE_DAEMON_UID",
        value_name = "UID",
        global = true
    )]
    daemon_uid: Option<u32>,

    /// The keychainService namespace inside the project [default: app]
    #[arg(long, value_name = "NAME", global = true)]
    service: Option<String>,

    /// Seconds to wait for the daemon
    #[arg(long, value_name = "SECS", default_value_t = 10.0, global = true)]
    timeout: f64,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    #[command(flatten)]
    Item(ItemCommand),
    /// Manage the daemon's registered projects (as the daemon's own user or root).
    Project {
        #[command(subcommand)]
        action: ProjectCommand,
    },
    /// Signal or show the device state the accessibility classes depend on (as the daemon's own
    /// user or root). An embedding app signals from its lock callbacks; on a desktop, these do.
    Device {
        #[command(subcommand)]
        action: DeviceCommand,
    },
    /// Manage the daemon's master key (as the daemon's own user or root).
    Key {
        #[command(subcommand)]
        action: KeyCommand,
    },
}

#[derive(Debug, Subcommand)]
enum DeviceCommand {
    /// Print the device state, e.g. `unlocked, passcode set`.
    Status,
    /// The device locked: WHEN_UNLOCKED* items become unavailable and their key is wiped from memory.
    Lock,
    /// The device unlocked. With --secret-file, the host's unlock secret: the first one given binds
    /// the keys of the classes that need an unlocked device, and every later unlock must give it.
    Unlock {
        /// File holding the unlock secret (one trailing newline dropped)
        #[arg(long, value_name = "FILE")]
        secret_file: Option<PathBuf>,
    },
    /// The passcode was set or removed. Removing it deletes every WHEN_PASSCODE_SET_THIS_DEVICE_ONLY
    /// item, durably.
    Passcode {
        /// `set` or `removed`
        #[arg(value_parser = ["set", "removed"])]
        change: String,
    },
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Replace the master key: the data keys are wrapped again under a new key and the old key file
    /// is overwritten; crash-safe at every step.
    Rotate,
}

/// Expo's three calls, and the calls beyond them, on one project's items.
#[derive(Debug, Subcommand)]
enum ItemCommand {
    /// Store VALUE under KEY. Without VALUE, reads it from stdin (one trailing newline is dropped).
    ///
    /// Prefer stdin: a VALUE on the command line can be read by every user on the machine while the
    /// command runs (`ps`, `/proc/<pid>/cmdline`) and stays in shell history. A warning says so.
    Set {
        /// The key: ASCII letters, digits, '.', '-' and '_'
        key: String,
        /// The value. Avoid it: the command line is visible to all users (ps, /proc) and kept in
        /// shell history; omit it and pipe the value on stdin instead
        value: Option<String>,
        /// When the item may be read: an Expo class such as WHEN_UNLOCKED or AFTER_FIRST_UNLOCK
        #[arg(long, value_name = "CLASS", default_value_t = KeychainAccessible::default())]
        accessible: KeychainAccessible,
        /// Store only if there is no item under KEY yet; otherwise exit 6 and change nothing
        #[arg(long, conflicts_with = "if_equals_file")]
        if_absent: bool,
        /// Store only if the current value equals this file's content (one trailing newline dropped;
        /// `-` is stdin, then VALUE must be given); otherwise exit 6 and change nothing. The
        /// expected value never appears on the command line
        #[arg(long, value_name = "FILE")]
        if_equals_file: Option<PathBuf>,
    },
    /// Print the value under KEY and a newline; exit 1 if there is none.
    Get {
        /// The key
        key: String,
        /// Print one JSON object: key, service, value and accessible class
        #[arg(long)]
        json: bool,
    },
    /// Delete the item under KEY (deleting a missing item succeeds).
    Delete {
        /// The key
        key: String,
        /// Delete only if the current value equals this file's content (one trailing newline
        /// dropped; `-` is stdin); otherwise exit 6 and change nothing
        #[arg(long, value_name = "FILE")]
        if_equals_file: Option<PathBuf>,
    },
    /// Exit 0 if an item is stored under KEY, 1 if not; prints nothing. The value is never sent.
    Contains {
        /// The key
        key: String,
    },
    /// Print the keys of --service, sorted, one per line (or, with --services, the services that
    /// hold items).
    List {
        /// List the services instead of the keys of one
        #[arg(long)]
        services: bool,
        /// Print one JSON array of strings
        #[arg(long)]
        json: bool,
    },
    /// Print one line per change of the project as it becomes durable, in commit order, until
    /// interrupted: `SEQ set|delete|clear SERVICE KEY` (`*` for all), or `lagged MISSED` when
    /// changes were dropped because this reader fell behind. Values are never printed. Without
    /// --service, every service is watched; with KEY, only that key.
    Watch {
        /// Only changes of this key
        key: Option<String>,
        /// Print one JSON object per line
        #[arg(long)]
        json: bool,
    },
    /// Write a backup of the project's items (of --service, if given) to --output or stdout,
    /// sealed under a passphrase (Argon2id). Items of the *_THIS_DEVICE_ONLY classes are never
    /// exported. The passphrase is asked on the terminal (twice), or read from --passphrase-file.
    Export {
        /// Write the backup here (created 0600) instead of stdout
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
        /// File holding the passphrase (one trailing newline dropped)
        #[arg(long, value_name = "FILE")]
        passphrase_file: Option<PathBuf>,
    },
    /// Restore a backup (FILE, or stdin) into the project. The file is checked whole first: a wrong
    /// passphrase, a damaged file or a newer format imports nothing. Items that exist are kept
    /// unless --replace. Prints `added N replaced N skipped N`.
    Import {
        /// The backup file [default: stdin]
        file: Option<PathBuf>,
        /// Overwrite items that exist (by default they are kept and counted as skipped)
        #[arg(long)]
        replace: bool,
        /// File holding the passphrase (one trailing newline dropped)
        #[arg(long, value_name = "FILE")]
        passphrase_file: Option<PathBuf>,
    },
    /// Delete every item of --service (of every service with --all-services), and print how many
    /// there were. Needs --yes.
    Clear {
        /// Every service of the project, not only --service
        #[arg(long)]
        all_services: bool,
        /// Confirm: the items cannot be recovered
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ProjectCommand {
    /// Register project ID and print its new access token, once. Save it to a 0600 file.
    Add {
        /// The project id
        id: String,
        /// If ID is registered already (the token from the first add was lost), revoke its token and
        /// print a new one. Its items are kept unless --wipe is given
        #[arg(long)]
        replace: bool,
        /// With --replace: delete the project's items too
        #[arg(long, requires = "replace")]
        wipe: bool,
    },
    /// Unregister project ID and delete all of its items (needs the project's --token-file if it is
    /// registered). Run it again to finish a removal that was interrupted.
    Remove {
        /// The project id
        id: String,
    },
    /// Print the registered project ids, one per line.
    List,
}

/// The exit status for each kind of failure, as documented in `--help`.
#[derive(Debug, Clone, Copy)]
enum Status {
    NotFound = 1,
    InvalidInput = 2,
    Refused = 3,
    Unreachable = 4,
    Failure = 5,
    Conflict = 6,
    Locked = 7,
}

struct Failure {
    status: Status,
    message: String,
}

impl Failure {
    fn new(status: Status, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl From<Error> for Failure {
    fn from(err: Error) -> Self {
        let status = match &err {
            Error::Unreachable { .. } => Status::Unreachable,
            Error::UntrustedDaemon { .. } => Status::Refused,
            Error::Service(
                ServiceError::Refused { .. } | ServiceError::UnsupportedVersion { .. },
            ) => Status::Refused,
            Error::Service(
                ServiceError::InvalidKey
                | ServiceError::KeyTooLong { .. }
                | ServiceError::InvalidService { .. }
                | ServiceError::InvalidProject { .. }
                | ServiceError::ValueTooLarge { .. }
                | ServiceError::AlreadyRegistered { .. }
                | ServiceError::TooLarge { .. },
            ) => Status::InvalidInput,
            Error::Service(ServiceError::Conflict) => Status::Conflict,
            Error::Service(ServiceError::Locked { .. }) => Status::Locked,
            Error::Service(ServiceError::PasscodeNotSet) => Status::Refused,
            _ => Status::Failure,
        };
        Self::new(status, err.to_string())
    }
}

/// Reads the value from stdin, dropping one trailing newline so `echo secret |` stores `secret`.
fn read_value_from_stdin() -> Result<SecretString, Failure> {
    let mut stdin = std::io::stdin().lock();
    if stdin.is_terminal() {
        eprintln!("securestore: reading the value from stdin; end it with Ctrl-D");
    }
    read_value(&mut stdin, "stdin")
}

/// Reads an expected value from `path` (`-`: stdin), dropping one trailing newline.
fn read_expected(path: &std::path::Path) -> Result<SecretString, Failure> {
    if path == std::path::Path::new("-") {
        return read_value(&mut std::io::stdin().lock(), "stdin");
    }
    let mut file = std::fs::File::open(path).map_err(|e| {
        Failure::new(
            Status::InvalidInput,
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    read_value(&mut file, &path.display().to_string())
}

/// Reads a value from `source`, dropping one trailing newline.
fn read_value(source: &mut impl Read, from: &str) -> Result<SecretString, Failure> {
    let mut bytes = Vec::new();
    // Read one byte past the largest limit any daemon may have, so a huge input cannot exhaust memory.
    source
        .take(u64::from(MAX_VALUE_BYTES_CEILING) + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| {
            Failure::new(
                Status::Failure,
                format!("cannot read the value from {from}: {e}"),
            )
        })?;
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
    }
    let value = String::from_utf8(bytes).map_err(|e| {
        zeroize::Zeroize::zeroize(&mut e.into_bytes());
        Failure::new(
            Status::InvalidInput,
            format!("the value on {from} is not UTF-8 text"),
        )
    })?;
    Ok(SecretString::new(value))
}

/// `text` as a JSON string literal.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Writes `text` to stdout, then wipes it (it may hold a value).
/// How long one `watch` poll waits for a change before asking again.
const WATCH_POLL: Duration = Duration::from_secs(25);

/// The lines `watch` prints for one poll's answer: a lag first (it happened before these events).
fn watch_lines(events: &Events, json: bool) -> String {
    let mut out = String::new();
    if let Some(lagged) = events.lagged {
        if json {
            out.push_str(&format!("{{\"lagged\":{}}}\n", lagged.missed));
        } else {
            out.push_str(&format!("lagged {}\n", lagged.missed));
        }
    }
    for event in &events.events {
        let kind = match event.kind {
            ChangeKind::Set => "set",
            ChangeKind::Deleted => "delete",
            ChangeKind::Cleared => "clear",
        };
        if json {
            let name = |n: &Option<String>| n.as_deref().map_or("null".to_owned(), json_string);
            out.push_str(&format!(
                "{{\"seq\":{},\"kind\":\"{kind}\",\"service\":{},\"key\":{}}}\n",
                event.seq,
                name(&event.service),
                name(&event.key)
            ));
        } else {
            let name = |n: &Option<String>| n.clone().unwrap_or_else(|| "*".to_owned());
            out.push_str(&format!(
                "{} {kind} {} {}\n",
                event.seq,
                name(&event.service),
                name(&event.key)
            ));
        }
    }
    out
}

fn print(mut text: String) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| Failure::new(Status::Failure, format!("cannot write to stdout: {e}")));
    zeroize::Zeroize::zeroize(&mut text);
    written
}

/// Warns on stderr when group or others may read or change the token file: whoever reads it may
/// open the project. (A warning, not a refusal: the token still works, and the owner may have
/// reasons, e.g. a group shared on purpose.)
fn warn_if_others_may_read(file: &std::fs::File, path: &std::path::Path) {
    use std::os::unix::fs::MetadataExt;
    if let Ok(meta) = file.metadata()
        && meta.mode() & 0o077 != 0
    {
        eprintln!(
            "securestore: warning: the token file {} can be read or changed by group or others (mode {:04o}); anyone who reads it can open the project: chmod 600 it",
            path.display(),
            meta.mode() & 0o7777
        );
    }
}

/// Reads an access token from `path`: the file's text without surrounding whitespace.
fn read_token(path: &std::path::Path) -> Result<SecretString, Failure> {
    let unreadable = |e: std::io::Error| {
        Failure::new(
            Status::InvalidInput,
            format!("cannot read the token file {}: {e}", path.display()),
        )
    };
    let mut bytes = Vec::new();
    let file = std::fs::File::open(path).map_err(unreadable)?;
    warn_if_others_may_read(&file, path);
    file.take(MAX_TOKEN_BYTES as u64 + 64)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    let token = String::from_utf8(bytes)
        .map(|text| SecretString::from(text.trim()))
        .map_err(|e| {
            zeroize::Zeroize::zeroize(&mut e.into_bytes());
            Failure::new(
                Status::InvalidInput,
                format!("the token file {} is not text", path.display()),
            )
        })?;
    if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
        return Err(Failure::new(
            Status::InvalidInput,
            format!("the token file {} holds no valid token", path.display()),
        ));
    }
    Ok(token)
}

async fn run_project_command(
    socket: &std::path::Path,
    action: ProjectCommand,
    options: &ConnectOptions,
) -> Result<(), Failure> {
    let mut out = String::new();
    match action {
        ProjectCommand::Add { id, replace, wipe } => {
            let token = if replace {
                admin::replace_project(socket, &id, wipe, options).await?
            } else {
                admin::add_project(socket, &id, options).await?
            };
            out.push_str(token.expose_secret());
            out.push('\n');
        }
        ProjectCommand::Remove { id } => {
            admin::remove_project(socket, &id, options).await?;
        }
        ProjectCommand::List => {
            for id in admin::list_projects(socket, options).await? {
                out.push_str(&id);
                out.push('\n');
            }
        }
    }
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| Failure::new(Status::Failure, format!("cannot write to stdout: {e}")))?;
    zeroize::Zeroize::zeroize(&mut out);
    Ok(())
}

async fn run_device_command(
    socket: &std::path::Path,
    action: DeviceCommand,
    options: &ConnectOptions,
) -> Result<(), Failure> {
    use securestore_client::DeviceSignal;
    let signal = match action {
        DeviceCommand::Status => None,
        DeviceCommand::Lock => Some(DeviceSignal::Lock),
        DeviceCommand::Unlock { secret_file } => Some(DeviceSignal::Unlock {
            secret: secret_file.as_deref().map(read_expected).transpose()?,
        }),
        DeviceCommand::Passcode { change } if change == "set" => Some(DeviceSignal::PasscodeSet),
        DeviceCommand::Passcode { .. } => Some(DeviceSignal::PasscodeRemoved),
    };
    let status = match signal {
        None => admin::device_status(socket, options).await?,
        Some(signal) => admin::device_signal(socket, signal, options).await?,
    };
    print(format!("{status}\n"))
}

/// The most a backup file may hold (the format's own bound).
const MAX_BACKUP_FILE: u64 = securestore_proto::backup::MAX_BACKUP_BYTES as u64;

/// Reads a backup from `path`, or stdin.
fn read_backup(path: Option<&std::path::Path>) -> Result<Vec<u8>, Failure> {
    let mut bytes = Vec::new();
    let read = match path {
        Some(path) => std::fs::File::open(path)
            .and_then(|file| file.take(MAX_BACKUP_FILE + 1).read_to_end(&mut bytes)),
        None => std::io::stdin()
            .lock()
            .take(MAX_BACKUP_FILE + 1)
            .read_to_end(&mut bytes),
    };
    let from = path.map_or("stdin".to_owned(), |p| p.display().to_string());
    read.map_err(|e| Failure::new(Status::InvalidInput, format!("cannot read {from}: {e}")))?;
    Ok(bytes)
}

/// Writes a sealed backup to `path` (created 0600, never through a symbolic link, never over an
/// existing file) or stdout.
fn write_backup(path: Option<&std::path::Path>, sealed: &[u8]) -> Result<(), Failure> {
    use std::os::unix::fs::OpenOptionsExt;
    let Some(path) = path else {
        let mut stdout = std::io::stdout().lock();
        return stdout
            .write_all(sealed)
            .and_then(|()| stdout.flush())
            .map_err(|e| Failure::new(Status::Failure, format!("cannot write to stdout: {e}")));
    };
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| {
            file.write_all(sealed)?;
            file.sync_all()
        })
        .map_err(|e| {
            Failure::new(
                Status::Failure,
                format!("cannot write the backup to {}: {e}", path.display()),
            )
        })
}

/// The backup passphrase: from `file`, or asked on the terminal without echo (twice, to confirm,
/// when making a backup).
fn read_passphrase(file: Option<&std::path::Path>, confirm: bool) -> Result<SecretString, Failure> {
    let passphrase = match file {
        Some(path) => read_expected(path)?,
        None => {
            let first = ask_without_echo("Backup passphrase: ")?;
            if confirm {
                let again = ask_without_echo("Repeat the passphrase: ")?;
                if again.expose_secret() != first.expose_secret() {
                    return Err(Failure::new(Status::InvalidInput, "the passphrases differ"));
                }
            }
            first
        }
    };
    if passphrase.is_empty() {
        return Err(Failure::new(
            Status::InvalidInput,
            "the passphrase is empty",
        ));
    }
    Ok(passphrase)
}

/// Asks on the controlling terminal with echo off, as `ssh-keygen` does; restores the terminal.
fn ask_without_echo(prompt: &str) -> Result<SecretString, Failure> {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    let no_tty = |e: std::io::Error| {
        Failure::new(
            Status::InvalidInput,
            format!("cannot ask for the passphrase on a terminal ({e}); pass --passphrase-file"),
        )
    };
    let mut tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(no_tty)?;
    let saved = tcgetattr(&tty).map_err(|e| no_tty(e.into()))?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    tty.write_all(prompt.as_bytes()).map_err(no_tty)?;
    tcsetattr(&tty, OptionalActions::Flush, &quiet).map_err(|e| no_tty(e.into()))?;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    let read = loop {
        match tty.read(&mut byte) {
            Ok(0) => break Ok(()),
            Ok(_) if byte[0] == b'\n' => break Ok(()),
            Ok(_) if line.len() < 4096 => line.push(byte[0]),
            Ok(_) => {}
            Err(e) => break Err(e),
        }
    };
    let _ = tcsetattr(&tty, OptionalActions::Flush, &saved);
    let _ = tty.write_all(b"\n");
    read.map_err(no_tty)?;
    String::from_utf8(line)
        .map(SecretString::new)
        .map_err(|_| Failure::new(Status::InvalidInput, "the passphrase is not UTF-8 text"))
}

async fn run(args: Args) -> Result<(), Failure> {
    let socket = args.socket.unwrap_or_else(default_socket_path);
    if !(args.timeout.is_finite() && args.timeout > 0.0) {
        return Err(Failure::new(
            Status::InvalidInput,
            "--timeout must be a positive number of seconds",
        ));
    }
    let token = args.token_file.as_deref().map(read_token).transpose()?;
    let options = ConnectOptions {
        timeout: Duration::from_secs_f64(args.timeout.min(3600.0)),
        token,
        expected_daemon_uid: args.daemon_uid,
    };
    let command = match args.command {
        Command::Project { action } => {
            return run_project_command(&socket, action, &options).await;
        }
        Command::Device { action } => return run_device_command(&socket, action, &options).await,
        Command::Key {
            action: KeyCommand::Rotate,
        } => {
            admin::rotate_key(&socket, &options).await?;
            eprintln!("securestore: the master key was replaced");
            return Ok(());
        }
        Command::Item(command) => command,
    };
    let project = args.project.ok_or_else(|| {
        Failure::new(
            Status::InvalidInput,
            "no project: pass --project ID or set SECURESTORE_PROJECT",
        )
    })?;
    if let ItemCommand::Set { value: Some(_), .. } = &command {
        // As redis-cli does for -a: say it, but do as asked.
        eprintln!(
            "securestore: warning: a value on the command line can be read by every user on this machine (ps, /proc/<pid>/cmdline) and stays in shell history; omit VALUE and pipe it on stdin instead"
        );
    }
    let client = securestore_client::Client::connect_with(&socket, &project, options).await?;
    let service = args.service;

    match command {
        ItemCommand::Set {
            key,
            value,
            accessible,
            if_absent,
            if_equals_file,
        } => {
            let from_stdin = if_equals_file.as_deref() == Some(std::path::Path::new("-"));
            if from_stdin && value.is_none() {
                return Err(Failure::new(
                    Status::InvalidInput,
                    "--if-equals-file - reads the expected value from stdin, so the new VALUE must be given",
                ));
            }
            let expected = if_equals_file.as_deref().map(read_expected).transpose()?;
            let value = match value {
                Some(value) => SecretString::new(value),
                None => read_value_from_stdin()?,
            };
            let options = SetOptions {
                keychain_service: service,
                keychain_accessible: accessible,
            };
            if if_absent {
                client.set_if(&key, None, value, options).await?;
            } else if let Some(expected) = expected {
                client.set_if(&key, Some(expected), value, options).await?;
            } else {
                client.set_item(&key, value, options).await?;
            }
        }
        ItemCommand::Watch { key, json } => {
            let filter = WatchFilter { service, key };
            let watcher = client.watch(filter).await?;
            loop {
                let events = client.poll_events(watcher, WATCH_POLL).await?;
                print(watch_lines(&events, json))?;
            }
        }
        ItemCommand::Contains { key } => {
            if !client.contains(&key, service.as_deref()).await? {
                return Err(Failure::new(Status::NotFound, ""));
            }
        }
        ItemCommand::List { services, json } => {
            let names = if services {
                client.list_services().await?
            } else {
                client.list_keys(service.as_deref()).await?
            };
            let out = if json {
                let items: Vec<String> = names.iter().map(|n| json_string(n)).collect();
                format!("[{}]\n", items.join(","))
            } else {
                names.iter().map(|n| format!("{n}\n")).collect()
            };
            print(out)?;
        }
        ItemCommand::Export {
            output,
            passphrase_file,
        } => {
            if output.is_none() && std::io::stdout().is_terminal() {
                return Err(Failure::new(
                    Status::InvalidInput,
                    "a backup is binary: redirect stdout to a file, or pass --output FILE",
                ));
            }
            let items = client.export(service.as_deref()).await?;
            let passphrase = read_passphrase(passphrase_file.as_deref(), true)?;
            let backup = securestore_proto::backup::Backup {
                project: project.clone(),
                service: service.clone(),
                exported_at: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
                items,
            };
            let count = backup.items.len();
            let sealed = securestore_client::backup::seal(&backup, &passphrase)
                .map_err(|e| Failure::new(Status::Failure, e.to_string()))?;
            write_backup(output.as_deref(), &sealed)?;
            eprintln!("securestore: exported {count} items");
        }
        ItemCommand::Import {
            file,
            replace,
            passphrase_file,
        } => {
            let sealed = read_backup(file.as_deref())?;
            let passphrase = read_passphrase(passphrase_file.as_deref(), false)?;
            let backup = securestore_client::backup::open(&sealed, &passphrase)
                .map_err(|e| Failure::new(Status::InvalidInput, e.to_string()))?;
            let report = client.import(&backup.items, replace).await?;
            print(format!(
                "added {} replaced {} skipped {}\n",
                report.added, report.replaced, report.skipped
            ))?;
        }
        ItemCommand::Clear { all_services, yes } => {
            if !yes {
                return Err(Failure::new(
                    Status::InvalidInput,
                    "clear deletes items for good: add --yes to confirm",
                ));
            }
            let deleted = if all_services {
                client.clear_all().await?
            } else {
                client.clear(service.as_deref()).await?
            };
            print(format!("{deleted}\n"))?;
        }
        ItemCommand::Get { key, json: true } => {
            let options = GetOptions {
                keychain_service: service.clone(),
            };
            let service = service
                .as_deref()
                .unwrap_or(securestore_client::DEFAULT_SERVICE);
            let Some(item) = client.get_item_entry(&key, options).await? else {
                return Err(Failure::new(
                    Status::NotFound,
                    format!("no item '{key}' in service '{service}'"),
                ));
            };
            let mut value = json_string(item.value.expose_secret());
            let out = format!(
                "{{\"key\":{},\"service\":{},\"value\":{value},\"accessible\":{}}}\n",
                json_string(&key),
                json_string(service),
                json_string(item.accessible.expo_name())
            );
            zeroize::Zeroize::zeroize(&mut value);
            print(out)?;
        }
        ItemCommand::Get { key, json: false } => {
            let options = GetOptions {
                keychain_service: service.clone(),
            };
            let Some(value) = client.get_item(&key, options).await? else {
                let service = service
                    .as_deref()
                    .unwrap_or(securestore_client::DEFAULT_SERVICE);
                return Err(Failure::new(
                    Status::NotFound,
                    format!("no item '{key}' in service '{service}'"),
                ));
            };
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "{}", value.expose_secret())
                .and_then(|()| stdout.flush())
                .map_err(|e| {
                    Failure::new(Status::Failure, format!("cannot write to stdout: {e}"))
                })?;
        }
        ItemCommand::Delete {
            key,
            if_equals_file,
        } => {
            let options = DeleteOptions {
                keychain_service: service,
            };
            match if_equals_file.as_deref().map(read_expected).transpose()? {
                Some(expected) => client.delete_if(&key, Some(expected), options).await?,
                None => client.delete_item(&key, options).await?,
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    // clap exits with 2 on a usage error and 0 for --help, as the status table says.
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("securestore: cannot start the async runtime: {err}");
            return ExitCode::from(Status::Failure as u8);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if !failure.message.is_empty() {
                eprintln!("securestore: {}", failure.message);
            }
            ExitCode::from(failure.status as u8)
        }
    }
}

// The completions and man pages in dist/, generated from `Args` and checked against it.
#[cfg(test)]
mod dist_files;
