//! One integration-test binary: every test starts the real app on port 0 with its own database.

// Tests fail by panicking; unwrapping is how they say so.
#![allow(clippy::unwrap_used)]

mod collector;
mod egress_proxies;
mod harness;
mod hostile;
mod process;
mod proxy;
mod receiver;
mod tls_server;
mod token_server;

mod agents;
mod auth;
mod bland;
mod catalog;
mod cli;
mod crash;
mod delivery;
mod egress;
mod errors;
mod faults;
mod hardening;
mod history;
mod ingestion;
mod keys;
mod logs;
mod loops;
mod mtls;
mod oauth2;
mod openapi;
mod operational;
mod operations;
mod organization;
mod partitions;
mod redelivery;
mod scheduling;
mod sealing_key;
mod security;
mod sources;
mod store;
mod traces;
mod ui;
mod webhooks;
