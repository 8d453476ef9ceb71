//! The binary's contract: clear configuration errors, a clear message when Docker is
//! missing, waiting for Docker when asked, clean exit on SIGTERM.

use std::time::Duration;

use dockermon_e2e::process::RecordedProcess;
use dockermon_e2e::proxy::DockerProxy;
use tokio::process::Command;

use crate::support::{AGENT, WAIT, agent_command, of_type};

async fn run_to_exit(command: &mut Command) -> (Option<i32>, String) {
    let output = tokio::time::timeout(WAIT, command.output())
        .await
        .expect("the agent exits")
        .expect("the agent runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn unknown_config_keys_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agent.yaml");
    std::fs::write(&file, "stats_interval: 10s\nstats_intervall: 5s\n").unwrap();
    let (code, stderr) = run_to_exit(Command::new(AGENT).arg("--config").arg(&file)).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("unknown field `stats_intervall`"),
        "{stderr}"
    );
    assert!(stderr.contains("agent.yaml"), "{stderr}");
    assert_eq!(
        stderr.matches("unknown field").count(),
        1,
        "said once: {stderr}"
    );
}

#[tokio::test]
async fn bad_values_name_their_key() {
    let (code, stderr) =
        run_to_exit(Command::new(AGENT).env("DOCKERMON_STATS_INTERVAL", "fast")).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("stats_interval: \"fast\" is not a duration"),
        "{stderr}"
    );

    let (code, stderr) =
        run_to_exit(Command::new(AGENT).args(["--config", "/nonexistent/agent.yaml"])).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot read config file /nonexistent/agent.yaml"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_missing_docker_socket_is_reported_clearly() {
    let (code, stderr) =
        run_to_exit(Command::new(AGENT).env("DOCKER_HOST", "unix:///nonexistent/docker.sock"))
            .await;
    assert_eq!(code, Some(1), "{stderr}");
    let message = stderr.lines().last().unwrap_or_default();
    assert!(
        message.contains("cannot reach Docker at unix:///nonexistent/docker.sock")
            && message.contains("the socket file does not exist")
            && message.contains("DOCKER_HOST")
            && message.contains("--wait-for-docker"),
        "{stderr}"
    );
}

#[tokio::test]
async fn wait_for_docker_keeps_retrying_until_docker_appears() {
    let dir = tempfile::tempdir().unwrap();
    let mut proxy = DockerProxy::new(dir.path().join("docker.sock"), "/var/run/docker.sock");
    let host = format!("unix://{}", proxy.path().display());
    let agent = RecordedProcess::spawn(agent_command(&[
        "--docker-host",
        &host,
        "--wait-for-docker",
        "--usage-interval",
        "off",
    ]))
    .unwrap();
    agent
        .wait_for_stderr(WAIT, "waiting for docker")
        .await
        .unwrap();
    assert!(agent.records().is_empty());

    proxy.start().unwrap();
    agent
        .wait_for(WAIT, "the host record", |records| {
            of_type(records, "host").next().map(|_| ())
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn sigterm_shuts_down_cleanly() {
    let mut agent = crate::support::start_agent(&["--usage-interval", "off"]).await;
    let pid = agent.id().unwrap().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(status.success());
    let exit = agent.wait_exit(Duration::from_secs(15)).await.unwrap();
    assert!(
        exit.success(),
        "exit status {exit:?}; stderr:\n{}",
        agent.stderr()
    );
    assert!(agent.stderr().contains("shutting down"));
}

#[tokio::test]
async fn a_collector_address_that_is_not_the_agent_port_is_named_as_such() {
    // Something that answers plain HTTP, as the REST API on :3810 does.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = stream
                .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                .await;
        }
    });
    let token = dockermon_proto::transport::JoinToken {
        ca_fingerprint: [1; 32],
        secret: [2; 32],
    }
    .to_string();
    let state = tempfile::tempdir().unwrap();
    // No scheme: wss:// is meant.
    let collector = format!("127.0.0.1:{port}");
    let (code, stderr) = run_to_exit(
        Command::new(AGENT)
            .args(["--collector", &collector, "--join-token", &token])
            .arg("--state-dir")
            .arg(state.path()),
    )
    .await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "does not speak TLS: is {port} the collector's agent port"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("InvalidContentType"), "{stderr}");
}
