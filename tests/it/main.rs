//! End-to-end tests: the real `securestored` on a real socket in a temp folder, real SQLite files.
//!
//! Modules by concern: `api` (the Expo contract through the Rust client), `isolation` (projects and
//! services apart), `validation` (the daemon's own checks, through a raw client), `cli` (the
//! `securestore` tool and its exit codes), `lifecycle` (socket, restart, shutdown), `concurrency`
//! (many processes, one key), `at_rest` (no value in clear on disk or in logs), `identity` (peer uid),
//! `trust` (the client checks the daemon's uid; the daemon checks its folders and files), `wire`
//! (raw bytes on the socket), `systemd` (socket activation and readiness through
//! `systemd-socket-activate`), `dist` (`--version`, and the generated completions and man pages).

mod api;
mod at_rest;
mod backends;
mod beyond;
mod bounds;
mod breaker;
mod budget;
mod cli;
mod concurrency;
mod consistency;
mod crash;
mod device;
mod disk_full;
mod dist;
mod floods;
mod fuzz;
mod identity;
mod isolation;
mod keyring_store;
mod lifecycle;
mod loop_breaker;
mod protocol;
mod removal;
mod systemd;
mod tamper;
mod tokens;
mod trust;
mod validation;
mod wire;
