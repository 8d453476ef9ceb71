//! The collector against real databases: every store test runs on real MariaDB and real
//! SQLite, each on a fresh database; the binary's start-up against both.

mod cli;
mod store;
mod support;
