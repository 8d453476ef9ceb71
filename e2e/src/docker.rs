//! The Docker CLI as tests use it: the local test image, uniquely named objects that are
//! removed when the test ends (even when it fails), and an independent record of Docker's
//! events to compare what Dockermon reports against.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The image every test container runs: static busybox, built locally.
pub const TEST_IMAGE: &str = "dockermon-test/busybox:latest";

/// Runs `docker args…` and returns its trimmed stdout; fails with its stderr.
pub async fn docker(args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .context("cannot run the docker CLI")?;
    if !output.status.success() {
        bail!(
            "docker {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Builds the test image if it is missing, with the project's script.
pub async fn ensure_test_image() -> anyhow::Result<()> {
    if docker(&["image", "inspect", TEST_IMAGE]).await.is_ok() {
        return Ok(());
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/test-image.sh");
    let status = Command::new("bash").arg(&script).status().await?;
    if !status.success() {
        bail!("{} failed", script.display());
    }
    Ok(())
}

/// A name no other test (or earlier run) uses.
pub fn unique_name(prefix: &str) -> String {
    format!(
        "dmtest-{prefix}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

/// Docker objects created by a test, removed when dropped.
#[derive(Default)]
pub struct Cleanup {
    containers: Vec<String>,
    volumes: Vec<String>,
    images: Vec<String>,
}

impl Cleanup {
    pub fn container(&mut self, name: &str) -> String {
        self.containers.push(name.to_owned());
        name.to_owned()
    }

    pub fn volume(&mut self, name: &str) -> String {
        self.volumes.push(name.to_owned());
        name.to_owned()
    }

    /// An image (tag or id), removed after the containers.
    pub fn image(&mut self, reference: &str) -> String {
        self.images.push(reference.to_owned());
        reference.to_owned()
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let run = |args: Vec<&str>| {
            let _ = std::process::Command::new("docker")
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        };
        if !self.containers.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(self.containers.iter().map(String::as_str));
            run(args);
        }
        if !self.volumes.is_empty() {
            let mut args = vec!["volume", "rm", "-f"];
            args.extend(self.volumes.iter().map(String::as_str));
            run(args);
        }
        if !self.images.is_empty() {
            let mut args = vec!["image", "rm", "-f"];
            args.extend(self.images.iter().map(String::as_str));
            run(args);
        }
    }
}

/// `docker events --filter …` running beside the system under test: the ground truth.
pub struct EventOracle {
    child: Child,
    events: Arc<Mutex<Vec<Value>>>,
}

impl EventOracle {
    /// Starts recording events that match `filters` (`container=NAME`, …) from now on.
    /// `--since now` makes Docker replay whatever happens before the subscription is in
    /// place, so no event races past the oracle.
    pub async fn start(filters: &[&str]) -> anyhow::Result<Self> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
        let since = format!("{}.{:09}", now.as_secs(), now.subsec_nanos());
        let mut command = Command::new("docker");
        command.args(["events", "--format", "{{json .}}", "--since", &since]);
        for filter in filters {
            command.args(["--filter", filter]);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("cannot run docker events")?;
        let stdout = child.stdout.take().expect("piped stdout");
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(value) = serde_json::from_str::<Value>(&line) {
                    sink.lock().expect("oracle lock").push(value);
                }
            }
        });
        Ok(EventOracle { child, events })
    }

    /// The events seen so far, as (action, actor id, time in ns).
    pub fn events(&self) -> Vec<(String, String, i64)> {
        self.events
            .lock()
            .expect("oracle lock")
            .iter()
            .map(|e| {
                (
                    e["Action"].as_str().unwrap_or_default().to_owned(),
                    e["Actor"]["ID"].as_str().unwrap_or_default().to_owned(),
                    e["timeNano"].as_i64().unwrap_or_default(),
                )
            })
            .collect()
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
