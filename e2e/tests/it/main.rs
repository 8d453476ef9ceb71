//! End to end: the real collector and real agents as processes, real TLS, real Docker, real
//! MariaDB. One test binary (modules below) so it links once.

mod api;
mod delivery;
mod metrics;
mod operations;
mod profiles;
mod protocol;
mod real_world;
mod replicas;
mod resources;
mod security;
mod service_account;
mod support;
mod ui;
