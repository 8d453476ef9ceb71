//! Shared support for Dockermon's tests against real parts: the local test image and
//! Docker CLI helpers ([`docker`]), a Docker socket proxy that can cut connections
//! ([`proxy`]) and a TCP forwarder for the same with databases ([`tcp`]), a real Prometheus
//! server ([`prometheus`]), processes whose JSON-lines output is recorded ([`process`]) and
//! deadline-bounded waiting ([`wait`]), the project's binaries built fresh ([`binaries`])
//! and run as a collector with agents ([`fleet`]), talked to over HTTP ([`http`], also
//! through a proxy that loses chosen requests: [`http_faults`]) and its WebSocket API
//! ([`live`]), NATS ([`nats`]) and haproxy ([`haproxy`]) for collector replicas, and
//! headless Chromium over WebDriver ([`browser`]) for the web UI. The end-to-end suites live in `tests/`.

pub mod binaries;
pub mod browser;
pub mod docker;
pub mod fleet;
pub mod haproxy;
pub mod http;
pub mod http_faults;
pub mod live;
pub mod mysql;
pub mod nats;
pub mod process;
pub mod prometheus;
pub mod proxy;
pub mod raw_agent;
pub mod tcp;
pub mod wait;
