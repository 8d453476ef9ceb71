//! A proxy in front of the Docker socket that a test can cut and restore, to interrupt
//! a client's connections to Docker without touching Docker itself.
//!
//! While cut, the proxy's socket file does not exist (as when dockerd is down) and every
//! open connection through it has been closed.

use std::path::{Path, PathBuf};

use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinSet;

pub struct DockerProxy {
    path: PathBuf,
    upstream: PathBuf,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl DockerProxy {
    /// A proxy at `path` for the Docker socket at `upstream`, not yet listening.
    pub fn new(path: impl Into<PathBuf>, upstream: impl Into<PathBuf>) -> Self {
        DockerProxy {
            path: path.into(),
            upstream: upstream.into(),
            server: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts (or restarts) listening.
    pub fn start(&mut self) -> std::io::Result<()> {
        self.cut();
        let listener = UnixListener::bind(&self.path)?;
        let upstream = self.upstream.clone();
        self.server = Some(tokio::spawn(async move {
            // Dropping the JoinSet (when this task is aborted) aborts every connection.
            let mut connections = JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                connections.spawn(async move {
                    if let Ok(mut docker) = UnixStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut docker).await;
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
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for DockerProxy {
    fn drop(&mut self) {
        self.cut();
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn ping(path: &Path) -> std::io::Result<String> {
        let mut stream = UnixStream::connect(path).await?;
        stream
            .write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            .await?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await?;
        Ok(answer)
    }

    #[tokio::test]
    async fn forwards_to_docker_until_cut() {
        let dir = std::env::temp_dir().join(format!("dm-proxy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut proxy = DockerProxy::new(dir.join("docker.sock"), "/var/run/docker.sock");
        proxy.start().unwrap();
        let answer = ping(proxy.path()).await.unwrap();
        assert!(
            answer.starts_with("HTTP/1.0 200") && answer.ends_with("OK"),
            "{answer}"
        );

        proxy.cut();
        assert!(!proxy.path().exists());
        assert!(ping(proxy.path()).await.is_err());

        proxy.start().unwrap();
        assert!(ping(proxy.path()).await.unwrap().ends_with("OK"));
        drop(proxy);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
