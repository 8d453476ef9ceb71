//! A loopback TCP forwarder that a test can start late, cut and restart on the same port
//! ("the database is down, then up" without touching the database), or freeze: connections
//! stay open but nothing gets through, as when a network path dies silently.

use std::fs::{File, OpenOptions, TryLockError};
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Mutex;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// The lowest port [`free_loopback_address`] hands out.
const FIRST_RESERVED_PORT: u16 = 10_000;

/// The lock files of the ports this test process reserved, held until it exits.
static RESERVED: Mutex<Vec<File>> = Mutex::new(Vec::new());

/// A loopback address with a port reserved for this test process (until it exits) that
/// nothing listens on, for a process under test to bind, also again after a restart.
///
/// Not a port from binding port 0 and letting it go: the kernel hands those out of its
/// ephemeral range (`net.ipv4.ip_local_port_range`), as it does the local port of every
/// outgoing connection, so another test running in parallel could take the port before
/// the process under test binds it, and that process would fail to start. The ports
/// here lie below the ephemeral range, where the kernel never picks, and each is held by
/// a lock file (`flock`) under the temporary directory, so tests running in parallel
/// processes never pick the same one. If the ephemeral range leaves too little room
/// below it, this falls back to port 0.
pub fn free_loopback_address() -> std::io::Result<SocketAddr> {
    let range = below_ephemeral_ports();
    if range.len() < 1_000 {
        return std::net::TcpListener::bind("127.0.0.1:0")?.local_addr();
    }
    std::fs::create_dir_all(port_locks())?;
    let start = rand::random_range(range.clone());
    for port in (start..range.end).chain(range.start..start) {
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(port_locks().join(port.to_string()))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => continue,
            Err(TryLockError::Error(error)) => return Err(error),
        }
        // Something outside the tests may listen there (or a connection linger).
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        RESERVED.lock().expect("reserved ports lock").push(lock);
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        format!("no free loopback port in {range:?}"),
    ))
}

/// Where the lock files of reserved ports live, one per port, named by its number.
fn port_locks() -> std::path::PathBuf {
    std::env::temp_dir().join("dockermon-e2e-ports")
}

/// The ports from [`FIRST_RESERVED_PORT`] up to the kernel's ephemeral range.
fn below_ephemeral_ports() -> Range<u16> {
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768);
    FIRST_RESERVED_PORT..ephemeral_start.max(FIRST_RESERVED_PORT)
}

/// Waits up to 30 s until `what` (a server just started) accepts connections on `address`.
pub async fn listening(address: SocketAddr, what: &str) -> anyhow::Result<()> {
    crate::wait::eventually(
        std::time::Duration::from_secs(30),
        &format!("{what} to listen on {address}"),
        || async move { accepts_connections(address).await.then_some(()) },
    )
    .await
}

/// Whether something accepts TCP connections on `address` right now.
pub async fn accepts_connections(address: SocketAddr) -> bool {
    TcpStream::connect(address).await.is_ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_ports_are_distinct_bindable_and_outside_the_ephemeral_range() {
        let range = below_ephemeral_ports();
        let addresses: Vec<SocketAddr> =
            (0..50).map(|_| free_loopback_address().unwrap()).collect();
        let ports: std::collections::BTreeSet<u16> = addresses.iter().map(|a| a.port()).collect();
        assert_eq!(ports.len(), addresses.len(), "{addresses:?}");
        for address in &addresses {
            assert!(
                range.contains(&address.port()),
                "{address} not in {range:?}"
            );
            std::net::TcpListener::bind(address).unwrap();
        }
    }

    #[test]
    fn a_reserved_port_stays_locked_against_other_test_processes() {
        let address = free_loopback_address().unwrap();
        let lock = port_locks().join(address.port().to_string());
        // Another process opens the lock file on its own and finds it taken.
        let other = File::open(lock).unwrap();
        assert!(matches!(other.try_lock(), Err(TryLockError::WouldBlock)));
    }
}
