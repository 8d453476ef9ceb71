//! The Dockermon agent: watches one Docker engine and reports its events, inventory,
//! container stats and disk usage as [`dockermon_proto::Record`]s.
//!
//! Module map: [`config`] resolves flags/env/file; [`docker`] connects and converts
//! bollard's models; [`events`], [`inventory`], [`stats`] and [`usage`] are one task each;
//! [`cgroup`] reads container counters straight from the kernel for [`stats`] and [`profiler`];
//! [`profiler`] runs the profile sessions a collector asks for;
//! [`agent`] wires them to an output (stdout, or the [`uplink`] to a collector); [`process`] is the plumbing both binaries share.

pub mod actions;
pub mod agent;
pub mod backoff;
pub mod cgroup;
pub mod config;
pub mod config_file;
pub mod docker;
pub mod events;
pub mod files;
pub mod host;
pub mod inventory;
pub mod output;
pub mod process;
pub mod profiler;
pub mod stats;
pub mod uplink;
pub mod usage;
