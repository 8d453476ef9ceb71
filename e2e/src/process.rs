//! A child process whose stdout is JSON lines (the agent's `--output stdout`), recorded
//! as it arrives, with its stderr kept for failure messages.

use std::future::Future;
use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

use crate::tcp::accepts_connections;
use crate::wait::eventually;

pub struct RecordedProcess {
    child: Child,
    records: Arc<Mutex<Vec<Value>>>,
    stderr: Arc<Mutex<String>>,
    /// The tasks reading stdout and stderr: done once the process has closed both.
    readers: Vec<tokio::task::JoinHandle<()>>,
}

impl RecordedProcess {
    pub fn spawn(mut command: Command) -> anyhow::Result<Self> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start the process under test")?;
        let records = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (out, err) = (records.clone(), stderr.clone());
        let stdout_reader = tokio::spawn(read_lines(
            child.stdout.take().expect("piped"),
            move |line| {
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
                out.lock().expect("records lock").push(value);
            },
        ));
        let stderr_reader = tokio::spawn(read_lines(
            child.stderr.take().expect("piped"),
            move |line| {
                let mut text = err.lock().expect("stderr lock");
                text.push_str(&line);
                text.push('\n');
            },
        ));
        Ok(RecordedProcess {
            child,
            records,
            stderr,
            readers: vec![stdout_reader, stderr_reader],
        })
    }

    /// Every record so far.
    pub fn records(&self) -> Vec<Value> {
        self.records.lock().expect("records lock").clone()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr lock").clone()
    }

    /// Waits until `check` finds what it looks for in the records so far.
    pub async fn wait_for<T>(
        &self,
        timeout: Duration,
        what: &str,
        mut check: impl FnMut(&[Value]) -> Option<T>,
    ) -> anyhow::Result<T> {
        self.until(timeout, what, || {
            let found = check(&self.records.lock().expect("records lock"));
            async move { found }
        })
        .await
    }

    /// Waits until stderr contains `needle`.
    pub async fn wait_for_stderr(&self, timeout: Duration, needle: &str) -> anyhow::Result<()> {
        self.until(timeout, needle, || {
            let found = self.stderr.lock().expect("stderr lock").contains(needle);
            async move { found.then_some(()) }
        })
        .await
    }

    /// Polls `check` until it returns `Some`, as [`eventually`] does, but fails at once
    /// when the process has exited (its output closed) without `check` holding: a process
    /// that died (a port taken, a bad flag) does not make a test wait out `timeout`.
    /// Errors carry the tail of the process's stderr.
    pub async fn until<T, F, Fut>(
        &self,
        timeout: Duration,
        what: &str,
        mut check: F,
    ) -> anyhow::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let outcome = eventually(timeout, what, || {
            // Read before checking: once closed, `check` has seen all the output.
            let exited = self.output_closed();
            let checked = check();
            async move {
                match checked.await {
                    Some(value) => Some(Ok(value)),
                    None if exited => {
                        Some(Err(anyhow::anyhow!("the process exited before {what}")))
                    }
                    None => None,
                }
            }
        })
        .await
        .and_then(|outcome| outcome);
        outcome.with_context(|| format!("stderr so far:\n{}", self.tail_of_stderr()))
    }

    /// Waits up to 30 s until the process (a server just started) accepts connections on
    /// `address`; fails at once if it exited.
    pub async fn wait_listening(&self, address: SocketAddr) -> anyhow::Result<()> {
        let what = format!("it to listen on {address}");
        self.until(Duration::from_secs(30), &what, || async move {
            accepts_connections(address).await.then_some(())
        })
        .await
    }

    /// Whether the process has closed stdout and stderr (it exited) and both were read.
    fn output_closed(&self) -> bool {
        self.readers.iter().all(|reader| reader.is_finished())
    }

    /// `SIGKILL` and wait for the process to be gone.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    pub fn id(&self) -> Option<u32> {
        self.child.id()
    }

    /// Waits for the process to exit.
    /// Waits for the process to exit and for its last output to be recorded.
    pub async fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let status = tokio::time::timeout(timeout, self.child.wait())
            .await
            .with_context(|| format!("process still running after {timeout:?}"))?
            .context("cannot wait for the process")?;
        // The pipes close when the process (and any child holding them) has gone.
        for reader in self.readers.drain(..) {
            let _ = tokio::time::timeout(timeout, reader).await;
        }
        Ok(status)
    }

    fn tail_of_stderr(&self) -> String {
        let text = self.stderr();
        let start = text.len().saturating_sub(4000);
        let start = (start..text.len())
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(0);
        text[start..].to_owned()
    }
}

async fn read_lines(stream: impl AsyncRead + Unpin, mut each: impl FnMut(String)) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        each(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shell(script: &str) -> RecordedProcess {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        RecordedProcess::spawn(command).unwrap()
    }

    #[tokio::test]
    async fn a_wait_on_a_process_that_exited_fails_at_once_with_its_stderr() {
        let process = shell("echo 'cannot bind 127.0.0.1:9: address in use' >&2; exit 1");
        // Far longer than the test may take: only the exit can end the wait in time.
        let wait = process.until(
            Duration::from_secs(3600),
            "something that never holds",
            || async { None::<()> },
        );
        let error = tokio::time::timeout(Duration::from_secs(60), wait)
            .await
            .expect("the wait ends when the process exits")
            .unwrap_err();
        let error = format!("{error:#}");
        assert!(
            error.contains("exited before something that never holds"),
            "{error}"
        );
        assert!(error.contains("address in use"), "{error}");
    }

    #[tokio::test]
    async fn what_a_process_printed_before_exiting_is_still_found() {
        let process = shell("echo '{\"n\": 1}'; echo 'agents listening' >&2; exit 0");
        process
            .wait_for_stderr(Duration::from_secs(60), "agents listening")
            .await
            .unwrap();
        let n = process
            .wait_for(Duration::from_secs(60), "a record", |records| {
                records.first().map(|record| record["n"].clone())
            })
            .await
            .unwrap();
        assert_eq!(n, 1);
    }
}
