//! A loopback TCP forwarder that a test can start late, cut and restart on the same port:
//! "the database is down, then up" without touching the database.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// A loopback address with a port nothing listens on right now, for a process under test
/// to bind (the kernel does not hand out a just-released port again at once).
pub fn free_loopback_address() -> std::io::Result<SocketAddr> {
    std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()
}

pub struct TcpProxy {
    address: SocketAddr,
    upstream: SocketAddr,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl TcpProxy {
    /// A proxy on a free loopback port for `upstream`, not yet listening: connections to it
    /// are refused until [`TcpProxy::start`].
    pub fn reserve(upstream: SocketAddr) -> std::io::Result<Self> {
        let address = free_loopback_address()?;
        Ok(TcpProxy {
            address,
            upstream,
            server: None,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub async fn start(&mut self) -> std::io::Result<()> {
        self.cut();
        let listener = TcpListener::bind(self.address).await?;
        let upstream = self.upstream;
        self.server = Some(tokio::spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                connections.spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                while connections.try_join_next().is_some() {}
            }
        }));
        Ok(())
    }

    /// Closes every connection and stops listening.
    pub fn cut(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
    }
}
