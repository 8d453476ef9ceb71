//! A loopback proxy in front of an HTTP/1.1 server that loses chosen `GET` requests: one
//! never reaches the server, and its connection answers it with bytes that are not HTTP and
//! closes, as a browser's requests in flight are lost when its machine's network changes.
//! Everything else passes unchanged.
//!
//! Requests are recognised by the first line of what the client writes (a browser writes a
//! request's head in one piece and does not pipeline), so this is for tests only.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// What the proxy has seen, shared with its connections.
#[derive(Default)]
struct Counts {
    /// The `GET`s to lose: those whose path contains the text, so many more times.
    losing: Mutex<(String, usize)>,
    /// Requests lost.
    lost: AtomicUsize,
    /// `GET /` requests: the page loads.
    page_loads: AtomicUsize,
}

impl Counts {
    /// Whether the `GET` of `path` is to be lost, counting it if so.
    fn take_loss(&self, path: &str) -> bool {
        let mut losing = self.losing.lock().unwrap();
        let (part, count) = &mut *losing;
        let lose = *count > 0 && path.contains(part.as_str());
        if lose {
            *count -= 1;
            self.lost.fetch_add(1, Ordering::SeqCst);
        }
        lose
    }
}

pub struct HttpFaults {
    address: SocketAddr,
    counts: Arc<Counts>,
    server: tokio::task::JoinHandle<()>,
}

impl HttpFaults {
    /// Starts a proxy on a free loopback port for the server at `upstream`, losing nothing
    /// until told to ([`HttpFaults::lose`]).
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let counts = Arc::new(Counts::default());
        let shared = counts.clone();
        let server = tokio::spawn(async move {
            // Dropping the JoinSet (when this task is aborted) closes every connection.
            let mut connections = JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                connections.spawn(forward(client, upstream, shared.clone()));
                while connections.try_join_next().is_some() {}
            }
        });
        Ok(HttpFaults {
            address,
            counts,
            server,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Loses the next `count` `GET`s whose path contains `part` (answers them with
    /// [`NOT_HTTP`] and closes their connections), instead of what it was told before;
    /// `count` 0 loses nothing more.
    pub fn lose(&self, part: &str, count: usize) {
        *self.counts.losing.lock().unwrap() = (part.to_owned(), count);
    }

    /// How many requests were lost so far.
    pub fn lost(&self) -> usize {
        self.counts.lost.load(Ordering::SeqCst)
    }

    /// How many times the page (`GET /`) was asked for.
    pub fn page_loads(&self) -> usize {
        self.counts.page_loads.load(Ordering::SeqCst)
    }
}

impl Drop for HttpFaults {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// What a lost request is answered with: not HTTP, so the browser fails the request at once.
/// A connection closed without an answer would not do: a browser silently sends the request
/// again when that happens on a connection it had used before.
const NOT_HTTP: &[u8] = b"lost on the way\r\n\r\n";

async fn forward(mut client: TcpStream, upstream: SocketAddr, counts: Arc<Counts>) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut from_client, mut to_client) = client.split();
    let (mut from_server, mut to_server) = server.split();
    let requests = async {
        let mut buffer = vec![0; 64 * 1024];
        loop {
            let read = match from_client.read(&mut buffer).await {
                Ok(0) | Err(_) => return false,
                Ok(read) => read,
            };
            let chunk = &buffer[..read];
            if let Some(path) = get_path(chunk) {
                if path == "/" {
                    counts.page_loads.fetch_add(1, Ordering::SeqCst);
                }
                if counts.take_loss(path) {
                    return true;
                }
            }
            if to_server.write_all(chunk).await.is_err() {
                return false;
            }
        }
    };
    let answers = tokio::io::copy(&mut from_server, &mut to_client);
    // Whichever direction ends first ends the connection: both sockets close on return.
    let lost = tokio::select! {
        lost = requests => lost,
        _ = answers => false,
    };
    if lost {
        let _ = to_client.write_all(NOT_HTTP).await;
    }
}

/// The path of the `GET` request that `chunk` starts, if it starts one.
fn get_path(chunk: &[u8]) -> Option<&str> {
    let line = chunk.split(|&byte| byte == b'\n').next()?;
    let mut words = std::str::from_utf8(line).ok()?.split(' ');
    (words.next()? == "GET").then_some(())?;
    words.next()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that answers every request on a connection with its path.
    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buffer = vec![0; 4096];
                    while let Ok(read) = stream.read(&mut buffer).await {
                        let Some(path) = (read > 0).then(|| get_path(&buffer[..read])).flatten()
                        else {
                            return;
                        };
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{path}",
                            path.len()
                        );
                        if stream.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        address
    }

    /// Sends `GET path` on `stream` and reads the answer: its body if it is HTTP, `None`
    /// otherwise (the proxy's [`NOT_HTTP`], or nothing).
    async fn get(stream: &mut TcpStream, path: &str) -> Option<String> {
        let request = format!("GET {path} HTTP/1.1\r\nhost: test\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut buffer = vec![0; 4096];
        let read = stream.read(&mut buffer).await.ok()?;
        let text = String::from_utf8_lossy(&buffer[..read]).into_owned();
        let body = text
            .strip_prefix("HTTP/1.1 200 OK\r\n")?
            .split("\r\n\r\n")
            .nth(1)?;
        Some(body.to_owned())
    }

    #[tokio::test]
    async fn loses_the_chosen_requests_as_many_times_as_told() {
        let faults = HttpFaults::start(echo_server().await).await.unwrap();
        let mut stream = TcpStream::connect(faults.address()).await.unwrap();
        assert_eq!(get(&mut stream, "/").await.as_deref(), Some("/"));
        assert_eq!(
            get(&mut stream, "/a/lost.js").await.as_deref(),
            Some("/a/lost.js")
        );

        faults.lose("/lost.js", 2);
        assert_eq!(
            get(&mut stream, "/other.js").await.as_deref(),
            Some("/other.js")
        );
        assert_eq!(get(&mut stream, "/a/lost.js").await, None);
        let mut again = TcpStream::connect(faults.address()).await.unwrap();
        assert_eq!(get(&mut again, "/b/lost.js").await, None);
        assert_eq!(faults.lost(), 2);

        let mut third = TcpStream::connect(faults.address()).await.unwrap();
        assert_eq!(get(&mut third, "/").await.as_deref(), Some("/"));
        assert_eq!(
            get(&mut third, "/a/lost.js").await.as_deref(),
            Some("/a/lost.js")
        );
        assert_eq!(faults.page_loads(), 2);
    }
}
