//! A real TCP load balancer (Debian's `haproxy`) on loopback in front of collector replicas,
//! as a fleet deploys them: agents and WebSocket clients know one address, and a replica
//! that dies or says it is not ready (`/readyz` on its health port) leaves the rotation.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;
use tokio::process::Command;

use crate::fleet::Collector;
use crate::process::RecordedProcess;
use crate::tcp::free_loopback_address;

pub struct LoadBalancer {
    /// Where agents connect (TLS passes through to a replica's agent listener).
    pub agent_address: SocketAddr,
    /// Where WebSocket API clients connect.
    pub ws_address: SocketAddr,
    process: RecordedProcess,
}

impl LoadBalancer {
    /// Starts haproxy with its configuration in `dir`, balancing new connections over
    /// `replicas` in turn (round robin), each checked on `/readyz` every 300 ms.
    pub async fn start<const N: usize>(
        replicas: [&Collector; N],
        dir: &Path,
    ) -> anyhow::Result<LoadBalancer> {
        let (agent_address, ws_address) = (free_loopback_address()?, free_loopback_address()?);
        let mut config = String::from(
            "global\n  maxconn 4096\n\
             defaults\n  mode tcp\n  timeout connect 1s\n  timeout client 1h\n  timeout server 1h\n\
             \x20 option redispatch\n  retries 3\n",
        );
        let listeners = [
            ("agents", agent_address, replicas.map(|r| r.agent_address)),
            ("ws", ws_address, replicas.map(|r| r.ws_address)),
        ];
        for (name, bind, servers) in listeners {
            writeln!(
                config,
                "frontend {name}\n  bind {bind}\n  default_backend {name}"
            )?;
            writeln!(
                config,
                "backend {name}\n  balance roundrobin\n  option httpchk\n\
                 \x20 http-check send meth GET uri /readyz\n  default-server inter 300ms fall 2 rise 2"
            )?;
            for (i, (server, replica)) in servers.iter().zip(replicas).enumerate() {
                writeln!(
                    config,
                    "  server replica{i} {server} check port {}",
                    replica.health_address.port()
                )?;
            }
        }
        let file = dir.join("haproxy.cfg");
        std::fs::write(&file, config)?;
        let mut command = Command::new("haproxy");
        command.arg("-db").arg("-f").arg(&file);
        let process = RecordedProcess::spawn(command)
            .context("cannot start haproxy (Debian's `haproxy` package; .ci/run installs it)")?;
        let balancer = LoadBalancer {
            agent_address,
            ws_address,
            process,
        };
        for address in [agent_address, ws_address] {
            balancer
                .process
                .wait_listening(address)
                .await
                .context("haproxy does not start")?;
        }
        Ok(balancer)
    }

    /// The agents' collector address through the balancer (the replicas' certificate names
    /// `localhost`).
    pub fn url(&self) -> String {
        format!("wss://localhost:{}", self.agent_address.port())
    }
}
