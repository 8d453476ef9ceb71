//! The agent against the real Docker engine on this machine, through its binary and its
//! `--output stdout` sink. One test binary (modules below) so it links once.

mod cgroup;
mod cli;
mod docker_tls;
mod events;
mod inventory;
mod stats;
mod support;
