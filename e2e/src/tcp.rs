//! A loopback TCP forwarder that a test can start late, cut and restart on the same port
//! ("the database is down, then up" without touching the database), or freeze: connections
//! stay open but nothing gets through, as when a network path dies silently.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// A loopback address with a port nothing listens on right now, for a process under test
/// to bind (the kernel does not hand out a just-released port again at once).
pub fn free_loopback_address() -> std::io::Result<SocketAddr> {
    std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()
}

/// Waits up to 30 s until `what` (a server just started) accepts connections on `address`.
pub async fn listening(address: SocketAddr, what: &str) -> anyhow::Result<()> {
    crate::wait::eventually(
        std::time::Duration::from_secs(30),
        &format!("{what} to listen on {address}"),
        || async move {
            tokio::net::TcpStream::connect(address)
                .await
                .ok()
                .map(|_| ())
        },
    )
    .await
}

pub struct TcpProxy {
    address: SocketAddr,
    upstream: SocketAddr,
    server: Option<tokio::task::JoinHandle<()>>,
    frozen: tokio::sync::watch::Sender<bool>,
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
            frozen: tokio::sync::watch::Sender::new(false),
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub async fn start(&mut self) -> std::io::Result<()> {
        self.cut();
        let listener = TcpListener::bind(self.address).await?;
        let upstream = self.upstream;
        let frozen = self.frozen.clone();
        self.server = Some(tokio::spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let frozen = frozen.subscribe();
                connections.spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        let (client_read, client_write) = client.into_split();
                        let (server_read, server_write) = server.into_split();
                        tokio::join!(
                            pump(client_read, server_write, frozen.clone()),
                            pump(server_read, client_write, frozen),
                        );
                    }
                });
                while connections.try_join_next().is_some() {}
            }
        }));
        Ok(())
    }

    /// Stops forwarding without closing anything (or resumes, with `false`).
    pub fn freeze(&self, frozen: bool) {
        self.frozen.send_replace(frozen);
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

/// Copies one direction, holding everything while frozen.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut frozen: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        if frozen.wait_for(|f| !f).await.is_err() {
            return;
        }
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if frozen.wait_for(|f| !f).await.is_err() || to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}
