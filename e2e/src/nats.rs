//! A real NATS server (Debian's `nats-server` package) on loopback, for tests of collector
//! replicas linked through it; it can be stopped and started again on the same port.

use std::net::SocketAddr;

use anyhow::Context;
use tokio::process::Command;

use crate::process::RecordedProcess;
use crate::tcp::free_loopback_address;

pub struct NatsServer {
    pub address: SocketAddr,
    process: Option<RecordedProcess>,
}

impl NatsServer {
    /// Starts `nats-server` on a free loopback port and waits until it accepts connections.
    pub async fn start() -> anyhow::Result<NatsServer> {
        let mut server = NatsServer {
            address: free_loopback_address()?,
            process: None,
        };
        server.restart().await?;
        Ok(server)
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://{}", self.address)
    }

    /// Starts the server (again) on the same port.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        let mut command = Command::new("nats-server");
        command
            .args(["--addr", &self.address.ip().to_string()])
            .args(["--port", &self.address.port().to_string()]);
        let process = RecordedProcess::spawn(command).context(
            "cannot start nats-server (Debian's `nats-server` package; .ci/run installs it)",
        )?;
        let listening = process.wait_listening(self.address).await;
        self.process = Some(process);
        listening.context("nats-server does not start")
    }

    /// Kills the server (`SIGKILL`): every client loses its connection at once.
    pub async fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill().await;
        }
    }
}
