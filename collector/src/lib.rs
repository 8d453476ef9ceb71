//! The Dockermon collector: stores what agents report and serves it.
//!
//! Module map: [`config`] resolves flags/env/file; [`store`] is the database (MySQL or
//! SQLite behind one API) and [`inventory`] its current containers in memory; [`serve`]
//! runs the service: [`health`] endpoints, the agent [`transport`] (mutual TLS with the
//! built-in CA from [`pki`], the ingest pipeline and the [`live`] fan-out), the people's
//! [`api`] and [`ws`], the [`profiles`] sessions, and the [`scheduler`]'s rollups and
//! retention; [`broker`] links replicas through NATS.

pub mod admin;
pub mod api;
pub mod broker;
pub mod commands;
pub mod config;
pub mod health;
pub mod inventory;
pub mod live;
pub mod metrics;
pub mod operator;
pub mod pki;
pub mod profiles;
pub mod resources;
pub mod scheduler;
pub mod serve;
pub mod standalone;
pub mod store;
pub mod transport;
pub mod ui;
pub mod ws;
