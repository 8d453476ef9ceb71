//! The collector against real databases: every store test runs on real MariaDB and real
//! SQLite, each on a fresh database; the binary's start-up against both.

mod api;
mod cli;
mod fixtures;
mod identity;
mod inventory;
mod kube_mock;
mod metrics;
mod operator;
mod pki_secret;
mod profiles;
mod readme;
mod store;
mod support;
mod token_review;
mod ws;
