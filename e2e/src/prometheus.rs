//! A real Prometheus server (Debian's `prometheus` package) for tests: scraping given
//! targets on loopback every second, answering PromQL through its HTTP API.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::process::Command;

use crate::http;
use crate::process::RecordedProcess;
use crate::tcp::free_loopback_address;

pub struct Prometheus {
    pub address: SocketAddr,
    _process: RecordedProcess,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `/metrics` of `targets` every second with
    /// `honor_labels: true` (as Dockermon's README says to), and waits until it is ready.
    pub async fn start(targets: &[SocketAddr]) -> anyhow::Result<Prometheus> {
        let dir = tempfile::tempdir()?;
        let address = free_loopback_address()?;
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: dockermon\n    honor_labels: true\n    \
             scrape_timeout: 1s\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config)?;
        let mut command = Command::new("prometheus");
        command
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={address}"))
            .arg("--log.level=warn");
        let process = RecordedProcess::spawn(command).context(
            "cannot start prometheus (Debian's `prometheus` package; .ci/run installs it)",
        )?;
        process
            .until(
                Duration::from_secs(60),
                "prometheus to be ready",
                || async {
                    let (status, _) = http::request(address, "GET", "/-/ready", None, None).await?;
                    (status == 200).then_some(())
                },
            )
            .await?;
        Ok(Prometheus {
            address,
            _process: process,
            _dir: dir,
        })
    }

    /// An instant query's result vector (`data.result`), or the error Prometheus gives.
    pub async fn query(&self, expr: &str) -> anyhow::Result<Vec<Value>> {
        let path = format!("/api/v1/query?query={}", percent_encode(expr));
        let (status, body) = http::request(self.address, "GET", &path, None, None)
            .await
            .context("prometheus does not answer")?;
        let answer: Value = serde_json::from_str(&body)
            .with_context(|| format!("prometheus answered {status}: {body}"))?;
        if answer["status"] != "success" {
            bail!("{expr}: {}", answer["error"]);
        }
        Ok(answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// The value of a query that returns one series.
    pub async fn value(&self, expr: &str) -> anyhow::Result<Option<f64>> {
        let result = self.query(expr).await?;
        Ok(result
            .first()
            .and_then(|series| series["value"][1].as_str().and_then(|v| v.parse().ok())))
    }

    /// The scrape targets as Prometheus sees them (`data.activeTargets`).
    pub async fn targets(&self) -> anyhow::Result<Vec<Value>> {
        let (_, body) = http::request(self.address, "GET", "/api/v1/targets", None, None)
            .await
            .context("prometheus does not answer")?;
        let answer: Value = serde_json::from_str(&body)?;
        Ok(answer["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }
}

/// Everything but unreserved characters escaped, for a query string.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
