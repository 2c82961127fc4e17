//! [`Config`]: the daemon's limits, chosen by flags in `main` or by an embedding app.

use std::sync::Arc;
use std::time::Duration;

use securestore_proto::DeviceStatus;
use securestore_proto::limits::DEFAULT_MAX_VALUE_BYTES;

use crate::registry::{Policy, Registry};

/// How the daemon serves its clients. The storage backend is passed to [`crate::run`] separately.
#[derive(Debug, Clone)]
pub struct Config {
    /// Largest value accepted, in bytes; also fixes the frame limit on both ends.
    pub max_value_bytes: u32,
    /// Connections served at once. When all are taken, a newcomer is admitted by closing the bound
    /// connection idle longest (it gets a goodbye frame, and clients reconnect on their next call);
    /// if none is idle, further clients wait in the socket's backlog until a slot frees (silent
    /// connections free theirs after `handshake_timeout`). The daemon refuses to start if the
    /// open-file limit cannot cover this many.
    pub max_connections: usize,
    /// Bytes of requests the daemon holds at once, across all connections: each frame is paid for
    /// before it is buffered and until its request ends. When spent, connections stop reading their
    /// sockets until requests finish. A frame larger than this still runs, alone.
    pub max_request_bytes: usize,
    /// Bytes of requests one connection may hold at once (raised to one whole frame if smaller).
    pub max_request_bytes_per_connection: usize,
    /// Requests one connection may have waiting at once (not answered as soon as they were read);
    /// more are answered "throttled".
    pub max_in_flight_per_connection: usize,
    /// How long a new connection has to complete its handshake before it is closed.
    pub handshake_timeout: Duration,
    /// How long a frame may stay half-received before its connection is closed.
    pub frame_timeout: Duration,
    /// At shutdown, how long requests under way may take to finish before their connections close.
    pub drain_timeout: Duration,
    /// Which projects peers may open.
    pub policy: Policy,
    /// Registered projects and their token hashes. Keep a clone to register projects from the host.
    pub registry: Arc<Registry>,
    /// The device state at start. A Linux daemon that no host signals keeps the default, unlocked
    /// with a passcode, so every class is available; an embedding app starts before the first
    /// unlock and signals its lock callbacks (see `docs/security.md`).
    pub device: DeviceStatus,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            max_connections: 512,
            max_request_bytes: 32 * 1024 * 1024,
            max_request_bytes_per_connection: 4 * 1024 * 1024,
            max_in_flight_per_connection: 64,
            handshake_timeout: Duration::from_secs(5),
            frame_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(5),
            policy: Policy::Open,
            registry: Arc::new(Registry::in_memory()),
            device: DeviceStatus::UNLOCKED,
        }
    }
}
