//! A child process whose stdout is JSON lines (the agent's `--output stdout`), recorded
//! as it arrives, with its stderr kept for failure messages.

use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

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
        eventually(timeout, what, || {
            let found = check(&self.records.lock().expect("records lock"));
            async move { found }
        })
        .await
        .with_context(|| format!("stderr so far:\n{}", self.tail_of_stderr()))
    }

    /// Waits until stderr contains `needle`.
    pub async fn wait_for_stderr(&self, timeout: Duration, needle: &str) -> anyhow::Result<()> {
        eventually(timeout, needle, || {
            let found = self.stderr.lock().expect("stderr lock").contains(needle);
            async move { found.then_some(()) }
        })
        .await
        .with_context(|| format!("stderr so far:\n{}", self.tail_of_stderr()))
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
