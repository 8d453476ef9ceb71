//! Running the real collector and real agents as processes for end-to-end tests: a
//! collector with its own data directory, CA and ports; agents enrolled with join tokens,
//! each with its own state directory; both can be killed (`SIGKILL`) and restarted.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::Command;

use crate::binaries::binaries;
use crate::process::RecordedProcess;
use crate::tcp::free_loopback_address;

pub const WAIT: Duration = Duration::from_secs(90);

/// A collector process and everything it owns.
pub struct Collector {
    pub data_dir: PathBuf,
    pub database_url: String,
    pub agent_address: SocketAddr,
    pub health_address: SocketAddr,
    pub api_address: SocketAddr,
    pub ws_address: SocketAddr,
    extra: Vec<String>,
    pub process: Option<RecordedProcess>,
}

impl Collector {
    /// Initialises the CA in `data_dir` (server name `localhost`) and starts serving.
    pub async fn start(
        data_dir: &Path,
        database_url: &str,
        extra: &[&str],
    ) -> anyhow::Result<Collector> {
        let (_, collector) = binaries();
        let status = Command::new(collector)
            .args([
                "pki",
                "init",
                "--san",
                "localhost",
                "--san",
                "127.0.0.1",
                "--data-dir",
            ])
            .arg(data_dir)
            .stdout(std::process::Stdio::null())
            .status()
            .await?;
        if !status.success() {
            bail!("pki init failed");
        }
        Collector::start_in(data_dir, database_url, extra).await
    }

    /// Another replica of `first`: its own data directory and ports, with `first`'s CA and
    /// secrets (as replicas of one deployment share them) and database.
    pub async fn replica_of(
        first: &Collector,
        data_dir: &Path,
        extra: &[&str],
    ) -> anyhow::Result<Collector> {
        for shared in ["pki", "secrets"] {
            let (from, to) = (first.data_dir.join(shared), data_dir.join(shared));
            if from.exists() {
                std::fs::create_dir_all(&to)?;
                for entry in std::fs::read_dir(&from)? {
                    let entry = entry?;
                    std::fs::copy(entry.path(), to.join(entry.file_name()))?;
                }
            }
        }
        Collector::start_in(data_dir, &first.database_url, extra).await
    }

    async fn start_in(
        data_dir: &Path,
        database_url: &str,
        extra: &[&str],
    ) -> anyhow::Result<Collector> {
        let mut collector = Collector {
            data_dir: data_dir.to_owned(),
            database_url: database_url.to_owned(),
            agent_address: free_loopback_address()?,
            health_address: free_loopback_address()?,
            api_address: free_loopback_address()?,
            ws_address: free_loopback_address()?,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            process: None,
        };
        collector.restart().await?;
        Ok(collector)
    }

    /// Starts the process (again) on the same ports and waits until it is ready.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        let (_, binary) = binaries();
        let mut command = Command::new(binary);
        command
            .args(["serve", "--log", "info,dockermon_collector=debug"])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--database-url", &self.database_url])
            .args(["--agent-listen", &self.agent_address.to_string()])
            .args(["--health-listen", &self.health_address.to_string()])
            .args(["--api-listen", &self.api_address.to_string()])
            .args(["--ws-listen", &self.ws_address.to_string()])
            .args(&self.extra)
            .env_remove("DOCKERMON_DATABASE_URL");
        let process = RecordedProcess::spawn(command)?;
        let health = self.health_address;
        let last_answer = std::sync::Mutex::new(None);
        let ready = process
            .until(WAIT, "the collector to be ready", || async {
                let answer = readyz_answer(health).await;
                let ready = matches!(answer, Some((200, _)));
                *last_answer.lock().expect("answer lock") = answer;
                ready.then_some(())
            })
            .await;
        self.process = Some(process);
        ready.with_context(|| {
            let answer = last_answer.into_inner().expect("answer lock");
            format!("its last /readyz answer: {answer:?}")
        })
    }

    /// `SIGKILL`: no shutdown, no flushing, as in a crash.
    pub async fn kill9(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill().await;
        }
    }

    pub fn stderr(&self) -> String {
        self.process
            .as_ref()
            .map(RecordedProcess::stderr)
            .unwrap_or_default()
    }

    /// `wss://localhost:PORT`.
    pub fn url(&self) -> String {
        format!("wss://localhost:{}", self.agent_address.port())
    }

    /// A one-time join token for `host`, from the collector's CLI.
    pub async fn token(&self, host: &str, ttl: &str) -> anyhow::Result<String> {
        self.cli(&["token", "create", "--host", host, "--ttl", ttl])
            .await
    }

    /// `dockermon-collector host delete NAME`.
    pub async fn delete_host(&self, host: &str) -> anyhow::Result<()> {
        self.cli(&["host", "delete", host]).await.map(|_| ())
    }

    /// Runs a collector subcommand on this collector's data and database; its stdout.
    pub async fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = self.command(args).await?;
        if output.code != Some(0) {
            bail!("{} failed: {}", args.join(" "), output.stderr);
        }
        Ok(output.stdout.trim().to_owned())
    }

    /// Runs a collector subcommand on this collector's data and database, whatever its
    /// outcome.
    pub async fn command(&self, args: &[&str]) -> anyhow::Result<CommandOutput> {
        self.command_fed(args, None).await
    }

    /// As [`Collector::command`], reading its standard input from the file `stdin`.
    pub async fn command_fed(
        &self,
        args: &[&str],
        stdin: Option<&Path>,
    ) -> anyhow::Result<CommandOutput> {
        let data_dir = self.data_dir.to_string_lossy().into_owned();
        let mut all = args.to_vec();
        all.extend([
            "--data-dir",
            &data_dir,
            "--database-url",
            &self.database_url,
        ]);
        run(&all, None, stdin).await
    }

    pub fn pki_dir(&self) -> PathBuf {
        self.data_dir.join("pki")
    }
}

/// What a finished command printed, and its exit code (`None`: killed by a signal).
#[derive(Debug, Clone)]
pub struct CommandOutput {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `dockermon-collector args…` in `cwd` (default: the test's), without the
/// environment variables that would name a database; waits for it to end.
pub async fn run_collector(args: &[&str], cwd: Option<&Path>) -> anyhow::Result<CommandOutput> {
    run(args, cwd, None).await
}

async fn run(
    args: &[&str],
    cwd: Option<&Path>,
    stdin: Option<&Path>,
) -> anyhow::Result<CommandOutput> {
    let (_, binary) = binaries();
    let mut command = Command::new(binary);
    command
        .args(args)
        .env_remove("DOCKERMON_DATABASE_URL")
        .env_remove("DOCKERMON_DATA_DIR")
        .stdin(match stdin {
            Some(path) => std::fs::File::open(path)
                .with_context(|| format!("cannot open {}", path.display()))?
                .into(),
            None => std::process::Stdio::null(),
        });
    if let Some(cwd) = cwd {
        command.current_dir(cwd);
    }
    let output = tokio::time::timeout(WAIT, command.output())
        .await
        .context("the command ends in time")??;
    Ok(CommandOutput {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

/// The status code of `GET /readyz`, if anything answers.
pub async fn readyz(address: SocketAddr) -> Option<u16> {
    readyz_answer(address).await.map(|(status, _)| status)
}

/// The status code and body of `GET /readyz`, if anything answers.
pub async fn readyz_answer(address: SocketAddr) -> Option<(u16, String)> {
    crate::http::request(address, "GET", "/readyz", None, None).await
}

/// What an agent logs each time a collector welcomed it.
const CONNECTED: &str = "connected to the collector";

/// An agent process reporting to a collector.
pub struct Agent {
    pub state_dir: PathBuf,
    args: Vec<String>,
    pub process: Option<RecordedProcess>,
}

impl Agent {
    /// Starts an agent with its own state directory; `args` are extra flags (a join token,
    /// intervals).
    pub async fn start(
        collector_url: &str,
        state_dir: &Path,
        args: &[&str],
    ) -> anyhow::Result<Agent> {
        let mut agent = Agent {
            state_dir: state_dir.to_owned(),
            args: [
                "--collector",
                collector_url,
                "--log",
                "info,dockermon_agent::uplink=debug",
            ]
            .iter()
            .chain(args)
            .map(|s| s.to_string())
            .collect(),
            process: None,
        };
        agent.restart().await?;
        Ok(agent)
    }

    pub async fn restart(&mut self) -> anyhow::Result<()> {
        let (binary, _) = binaries();
        let mut command = Command::new(binary);
        command
            .args(&self.args)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKERMON_COLLECTOR");
        self.process = Some(RecordedProcess::spawn(command).context("agent starts")?);
        Ok(())
    }

    pub async fn wait_connected(&self) -> anyhow::Result<()> {
        self.process
            .as_ref()
            .context("not running")?
            .wait_for_stderr(WAIT, CONNECTED)
            .await
    }

    /// How often this agent has connected to a collector so far.
    pub fn connections(&self) -> usize {
        self.stderr().matches(CONNECTED).count()
    }

    pub async fn kill9(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill().await;
        }
    }

    pub fn stderr(&self) -> String {
        self.process
            .as_ref()
            .map(RecordedProcess::stderr)
            .unwrap_or_default()
    }

    /// Frames waiting in the spool.
    pub fn spooled_frames(&self) -> usize {
        std::fs::read_dir(self.state_dir.join("spool"))
            .map(|dir| {
                dir.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".frame"))
                    .count()
            })
            .unwrap_or(0)
    }
}
