//! End-to-end tests: the real `securestored` on a real socket in a temp folder, real SQLite files.
//!
//! Modules by concern: `api` (the Expo contract through the Rust client), `isolation` (projects and
//! services apart), `validation` (the daemon's own checks, through a raw client), `cli` (the
//! `securestore` tool and its exit codes), `lifecycle` (socket, restart, shutdown), `concurrency`
//! (many processes, one key), `at_rest` (no value in clear on disk or in logs), `identity` (peer uid),
//! `wire` (raw bytes on the socket).

mod api;
mod at_rest;
mod backends;
mod bounds;
mod budget;
mod cli;
mod concurrency;
mod crash;
mod disk_full;
mod fuzz;
mod identity;
mod isolation;
mod lifecycle;
mod tamper;
mod tokens;
mod validation;
mod wire;
