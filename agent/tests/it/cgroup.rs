//! The direct reader against Docker's own answer for the same containers on this machine's
//! engine (cgroup v1, cgroupfs): they must agree within the stated tolerances. cgroup v2 is
//! covered by the recorded trees in `agent/testdata/cgroup` (unit tests in `cgroup`).

use std::path::Path;

use dockermon_agent::cgroup::CgroupReader;
use dockermon_agent::docker::{Docker, Endpoint, connect};
use dockermon_agent::inventory::Running;
use dockermon_agent::stats::{CounterSource, Reading};
use dockermon_e2e::docker::{Cleanup, TEST_IMAGE, docker, ensure_test_image, unique_name};
use dockermon_e2e::process::RecordedProcess;
use dockermon_e2e::wait::eventually;
use dockermon_proto::{ContainerId, CounterGroup};

use crate::support::{WAIT, agent_command, fetch_blob, of_type};

struct Sources {
    docker: CounterSource,
    direct: CounterSource,
}

impl Sources {
    async fn new() -> Sources {
        ensure_test_image().await.unwrap();
        let api: Docker = connect(&Endpoint::parse("unix:///var/run/docker.sock").unwrap())
            .await
            .unwrap();
        let reader = CgroupReader::detect(Path::new("/sys/fs/cgroup"), Path::new("/proc")).unwrap();
        Sources {
            docker: CounterSource::new(api.clone(), None),
            direct: CounterSource::new(api, Some(reader)),
        }
    }

    async fn read(source: &CounterSource, container: &Running) -> Reading {
        source
            .sample(container.clone())
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{} is not running", container.name))
            .1
    }
}

/// A running container as the inventory describes it.
async fn running(name: &str) -> Running {
    let inspect = docker(&[
        "inspect",
        "-f",
        "{{.Id}} {{.State.Pid}} {{.HostConfig.NetworkMode}}",
        name,
    ])
    .await
    .unwrap();
    let mut fields = inspect.split_whitespace();
    Running {
        id: ContainerId::from(fields.next().unwrap()),
        name: name.to_owned(),
        started_at_ns: None,
        pid: fields.next().and_then(|pid| pid.parse().ok()),
        network_mode: fields.next().map(str::to_owned),
    }
}

fn within(what: &str, direct: f64, docker: f64, tolerance: f64) {
    assert!(
        (direct - docker).abs() <= tolerance,
        "{what}: direct {direct} against Docker's {docker} (tolerance {tolerance})"
    );
}

/// CPU used per second of wall time between two readings, in cores.
fn cpu_rate(before: &Reading, after: &Reading) -> f64 {
    let used = (after.counters.cpu_total_ns - before.counters.cpu_total_ns) as f64;
    used / (after.time_ns - before.time_ns) as f64
}

#[tokio::test]
async fn direct_reads_agree_with_docker() {
    let sources = Sources::new().await;
    let mut cleanup = Cleanup::default();
    let spin = cleanup.container(&unique_name("cg-spin"));
    let fill = cleanup.container(&unique_name("cg-fill"));
    let server = cleanup.container(&unique_name("cg-server"));
    let client = cleanup.container(&unique_name("cg-client"));
    let writer = cleanup.container(&unique_name("cg-writer"));
    let volume = cleanup.volume(&unique_name("cg-data"));
    let run = |args: Vec<String>| async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        docker(&args).await.unwrap()
    };
    let args = |s: &[&str]| s.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    run(args(&[
        "run",
        "-d",
        "--name",
        &spin,
        "--cpus",
        "0.5",
        TEST_IMAGE,
        "sh",
        "-c",
        "while :; do :; done",
    ]))
    .await;
    run(args(&[
        "run",
        "-d",
        "--name",
        &fill,
        "--memory",
        "64m",
        TEST_IMAGE,
        "sh",
        "-c",
        "dd if=/dev/zero of=/dev/shm/fill bs=1M count=20 && touch /filled && sleep 3600",
    ]))
    .await;
    run(args(&[
        "run", "-d", "--name", &server, TEST_IMAGE, "sh", "-c",
        "mkdir /www && dd if=/dev/zero of=/www/blob bs=1024 count=1024 2>/dev/null && httpd -f -p 8080 -h /www",
    ]))
    .await;
    run(args(&[
        "run", "-d", "--name", &client, TEST_IMAGE, "sleep", "3600",
    ]))
    .await;
    let mount = format!("{volume}:/data");
    run(args(&[
        "run",
        "-d",
        "--name",
        &writer,
        "-v",
        &mount,
        TEST_IMAGE,
        "sh",
        "-c",
        "dd if=/dev/zero of=/data/f bs=1M count=8 conv=fsync && touch /written && sleep 3600",
    ]))
    .await;

    // CPU: the rate over the same few seconds, from both sources (±5 %).
    let container = running(&spin).await;
    let direct_before = Sources::read(&sources.direct, &container).await;
    let docker_before = Sources::read(&sources.docker, &container).await;
    let docker_after = eventually(WAIT, "three seconds of Docker readings", || async {
        let after = Sources::read(&sources.docker, &container).await;
        (after.time_ns - docker_before.time_ns >= 3_000_000_000).then_some(after)
    })
    .await
    .unwrap();
    let direct_after = Sources::read(&sources.direct, &container).await;
    let docker_rate = cpu_rate(&docker_before, &docker_after);
    within(
        "CPU (cores)",
        cpu_rate(&direct_before, &direct_after),
        docker_rate,
        0.05 * docker_rate,
    );
    assert!(
        (0.4..=0.6).contains(&docker_rate),
        "--cpus 0.5 spins at {docker_rate}"
    );
    let (direct, docker_side) = (direct_after.counters, docker_after.counters);
    assert_eq!(
        direct.memory_limit_bytes, docker_side.memory_limit_bytes,
        "no limit: the host's memory"
    );
    assert_eq!(direct.online_cpus, docker_side.online_cpus);
    assert_eq!(direct.pids, docker_side.pids);
    assert_eq!(direct.absent, docker_side.absent);

    // Memory: 20 MiB held in /dev/shm, under a 64 MiB limit (±2 %).
    for (name, done) in [(&fill, "/filled"), (&writer, "/written")] {
        eventually(WAIT, "the container to finish its work", || async {
            docker(&["exec", name, "test", "-e", done]).await.ok()
        })
        .await
        .unwrap();
    }
    // Docker answers up to a second after it is asked, and memory moves meanwhile (the
    // `docker exec` checks above leave pages to be reclaimed): Docker's figure is compared
    // with the range of two direct reads taken just before and just after it.
    let container = running(&fill).await;
    let direct = Sources::read(&sources.direct, &container).await.counters;
    let docker_side = Sources::read(&sources.docker, &container).await.counters;
    let direct_after = Sources::read(&sources.direct, &container).await.counters;
    assert_eq!(direct.memory_limit_bytes, 64 << 20);
    assert_eq!(direct.memory_limit_bytes, docker_side.memory_limit_bytes);
    assert!(direct.memory_usage_bytes >= 20 << 20, "{direct:?}");
    for (what, before, docker_value, after) in [
        (
            "memory usage",
            direct.memory_usage_bytes,
            docker_side.memory_usage_bytes,
            direct_after.memory_usage_bytes,
        ),
        (
            "working set",
            direct.memory_working_set_bytes,
            docker_side.memory_working_set_bytes,
            direct_after.memory_working_set_bytes,
        ),
    ] {
        let (low, high) = (before.min(after) as f64, before.max(after) as f64);
        assert!(
            low * 0.98 <= docker_value as f64 && docker_value as f64 <= high * 1.02,
            "{what}: Docker's {docker_value} outside the direct reads {before}..{after} (±2 %)"
        );
    }

    // Block IO: what the writer's container did, the same from both.
    let container = running(&writer).await;
    let direct = Sources::read(&sources.direct, &container).await.counters;
    let docker_side = Sources::read(&sources.docker, &container).await.counters;
    assert_eq!(direct.block_io, docker_side.block_io);

    // Network: 1 MiB over HTTP, then both read the settled counters (±1 KiB).
    let server_ip = docker(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", &server])
        .await
        .unwrap();
    fetch_blob(&client, &server_ip).await;
    for (name, received) in [(&client, true), (&server, false)] {
        let container = running(name).await;
        let direct = Sources::read(&sources.direct, &container).await.counters;
        let docker_side = Sources::read(&sources.docker, &container).await.counters;
        let bytes = |c: &dockermon_proto::StatsCounters| {
            if received {
                c.network.rx_bytes
            } else {
                c.network.tx_bytes
            }
        };
        assert!(bytes(&direct) >= 1 << 20, "{name}: {direct:?}");
        within(
            &format!("{name} network bytes"),
            bytes(&direct) as f64,
            bytes(&docker_side) as f64,
            1024.0,
        );
        let names = |c: &dockermon_proto::StatsCounters| {
            c.detail
                .as_ref()
                .unwrap()
                .interfaces
                .iter()
                .map(|i| i.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(&direct),
            names(&docker_side),
            "the same interfaces, lo left out"
        );
    }
}

#[tokio::test]
async fn host_and_none_networks_read_as_docker_reads_them() {
    let sources = Sources::new().await;
    let mut cleanup = Cleanup::default();
    for (mode, own) in [("host", false), ("none", true)] {
        let name = cleanup.container(&unique_name(&format!("cg-net-{mode}")));
        docker(&[
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            mode,
            TEST_IMAGE,
            "sleep",
            "3600",
        ])
        .await
        .unwrap();
        let container = running(&name).await;
        let direct = Sources::read(&sources.direct, &container).await.counters;
        let docker_side = Sources::read(&sources.docker, &container).await.counters;
        // host: no counters of its own (absent, not zero); none: its own, empty namespace
        // (only lo, which is not counted): zero.
        assert_eq!(direct.has(CounterGroup::Network), own, "{mode}");
        assert_eq!(direct.absent, docker_side.absent, "{mode}");
        assert_eq!(direct.network, docker_side.network, "{mode}");
        assert_eq!(direct.network.rx_bytes, 0, "{mode}");
    }
}

async fn host_record(agent: &RecordedProcess) -> serde_json::Value {
    agent
        .wait_for(WAIT, "a host record", |records| {
            of_type(records, "host").next().cloned()
        })
        .await
        .unwrap_or_else(|e| panic!("{e}: {}", agent.stderr()))
}

#[tokio::test]
async fn the_source_is_chosen_and_reported() {
    // Where the files can be read, they are.
    let agent = RecordedProcess::spawn(agent_command(&["--usage-interval", "off"])).unwrap();
    assert_eq!(host_record(&agent).await["stats_source"], "cgroup");
    drop(agent);
    // Without a cgroup filesystem, `auto` falls back to Docker and says so...
    let agent = RecordedProcess::spawn(agent_command(&[
        "--usage-interval",
        "off",
        "--cgroup-root",
        "/nonexistent",
    ]))
    .unwrap();
    assert_eq!(host_record(&agent).await["stats_source"], "docker");
    assert!(
        agent
            .stderr()
            .contains("reading container counters from Docker's stats API")
    );
    drop(agent);
    // ...and `cgroup` refuses to start, saying what to mount.
    let output = agent_command(&["--stats-source", "cgroup", "--cgroup-root", "/nonexistent"])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no cgroup filesystem at /nonexistent"),
        "{stderr}"
    );
    assert!(stderr.contains("--pid host"), "{stderr}");
}
