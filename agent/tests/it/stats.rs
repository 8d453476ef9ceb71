//! Container stats against real workloads: a spinning CPU, a memory limit, real network
//! traffic between two test containers, a real file written to a container's layer.

use dockermon_e2e::docker::{Cleanup, TEST_IMAGE, docker, unique_name};
use dockermon_e2e::process::RecordedProcess;
use serde_json::Value;

use crate::support::{WAIT, fetch_blob, of_type, start_agent};

fn samples_of<'a>(records: &'a [Value], id: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    of_type(records, "stats").filter(move |s| s["container_id"] == id)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Waits for `n` samples of `id` that carry rates, and returns their CPU percentages.
async fn cpu_percents(agent: &RecordedProcess, id: &str, n: usize) -> Vec<f64> {
    agent
        .wait_for(WAIT, &format!("{n} rated samples of {id}"), |records| {
            let cpu: Vec<f64> = samples_of(records, id)
                .filter_map(|s| s["rates"]["cpu_percent"].as_f64())
                .collect();
            (cpu.len() >= n).then_some(cpu)
        })
        .await
        .unwrap()
}

/// The latest counters of `id` once `check` accepts them.
async fn counters_where(
    agent: &RecordedProcess,
    id: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    agent
        .wait_for(WAIT, what, |records| {
            samples_of(records, id)
                .last()
                .map(|s| s["counters"].clone())
                .filter(|c| check(c))
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn cpu_and_memory_limit_are_measured() {
    let mut cleanup = Cleanup::default();
    let spin = cleanup.container(&unique_name("spin"));
    let idle = cleanup.container(&unique_name("idle"));
    let agent = start_agent(&["--stats-interval", "1s", "--usage-interval", "off"]).await;
    let spin_id = docker(&[
        "run",
        "-d",
        "--name",
        &spin,
        "--memory",
        "64m",
        TEST_IMAGE,
        "sh",
        "-c",
        "while :; do :; done",
    ])
    .await
    .unwrap();
    let idle_id = docker(&["run", "-d", "--name", &idle, TEST_IMAGE, "sleep", "3600"])
        .await
        .unwrap();

    // Medians over several 1-second intervals, so a moment of load elsewhere on the
    // machine does not decide the result.
    let spinning = median(cpu_percents(&agent, &spin_id, 5).await);
    let idling = median(cpu_percents(&agent, &idle_id, 5).await);
    assert!(
        (85.0..=115.0).contains(&spinning),
        "spinning container at {spinning:.1} %"
    );
    assert!(idling < 5.0, "idle container at {idling:.1} %");

    let counters = counters_where(&agent, &spin_id, "spin counters", |_| true).await;
    assert_eq!(counters["memory_limit_bytes"], 64 * 1024 * 1024);
    assert!(counters["memory_usage_bytes"].as_u64().unwrap() > 0);
    assert!(
        counters["memory_working_set_bytes"].as_u64() <= counters["memory_usage_bytes"].as_u64()
    );
    assert!(counters["pids"].as_u64().unwrap() >= 1);
    assert!(
        counters["cpu_total_ns"].as_u64().unwrap() > 1_000_000_000,
        "{counters}"
    );
}

#[tokio::test]
async fn network_bytes_sent_raise_the_counters() {
    const BYTES: u64 = 4 * 1024 * 1024;
    let mut cleanup = Cleanup::default();
    let server = cleanup.container(&unique_name("net-server"));
    let client = cleanup.container(&unique_name("net-client"));
    let agent = start_agent(&["--stats-interval", "1s", "--usage-interval", "off"]).await;
    let serve = format!(
        "mkdir /www && dd if=/dev/zero of=/www/blob bs=1024 count={} 2>/dev/null && httpd -f -p 8080 -h /www",
        BYTES / 1024
    );
    let server_id = docker(&[
        "run", "-d", "--name", &server, TEST_IMAGE, "sh", "-c", &serve,
    ])
    .await
    .unwrap();
    let client_id = docker(&["run", "-d", "--name", &client, TEST_IMAGE, "sleep", "3600"])
        .await
        .unwrap();
    let server_ip = docker(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", &server])
        .await
        .unwrap();

    let tx_before = counters_where(&agent, &server_id, "server counters", |_| true).await
        ["network"]["tx_bytes"]
        .as_u64()
        .unwrap();
    let rx_before = counters_where(&agent, &client_id, "client counters", |_| true).await
        ["network"]["rx_bytes"]
        .as_u64()
        .unwrap();
    fetch_blob(&client, &server_ip).await;

    counters_where(
        &agent,
        &server_id,
        "server tx to grow by the bytes sent",
        |c| c["network"]["tx_bytes"].as_u64().unwrap() >= tx_before + BYTES,
    )
    .await;
    counters_where(
        &agent,
        &client_id,
        "client rx to grow by the bytes received",
        |c| c["network"]["rx_bytes"].as_u64().unwrap() >= rx_before + BYTES,
    )
    .await;
}

#[tokio::test]
async fn a_written_file_shows_in_disk_usage() {
    const MIB: u64 = 20;
    let mut cleanup = Cleanup::default();
    let writer = cleanup.container(&unique_name("writer"));
    let agent = start_agent(&["--stats-interval", "1s", "--usage-interval", "1s"]).await;
    let id = docker(&["run", "-d", "--name", &writer, TEST_IMAGE, "sleep", "3600"])
        .await
        .unwrap();
    let write = format!("dd if=/dev/zero of=/blob bs=1048576 count={MIB} 2>/dev/null && sync");
    docker(&["exec", &writer, "sh", "-c", &write])
        .await
        .unwrap();

    agent
        .wait_for(
            WAIT,
            "the container's writable layer to hold the file",
            |records| {
                of_type(records, "usage").last().and_then(|usage| {
                    usage["per_container"]
                        .as_array()?
                        .iter()
                        .find(|c| c["container_id"] == id.as_str())
                        .filter(|c| c["size_rw_bytes"].as_u64().unwrap() >= MIB << 20)
                        .map(|_| ())
                })
            },
        )
        .await
        .unwrap();
    let usage = of_type(&agent.records(), "usage").last().cloned().unwrap();
    assert!(
        usage["containers"]["size_bytes"].as_u64().unwrap() >= MIB << 20,
        "{usage}"
    );
    assert!(usage["containers"]["active"].as_u64().unwrap() >= 1);
}

#[tokio::test]
async fn a_container_that_stopped_or_vanished_is_skipped_not_an_error() {
    use dockermon_agent::cgroup::CgroupReader;
    use dockermon_agent::docker::{Endpoint, connect};
    use dockermon_agent::inventory::Running;
    use dockermon_agent::stats::CounterSource;
    use dockermon_proto::ContainerId;
    use std::path::Path;

    dockermon_e2e::docker::ensure_test_image().await.unwrap();
    let docker_api = connect(&Endpoint::parse("unix:///var/run/docker.sock").unwrap())
        .await
        .unwrap();
    let reader = CgroupReader::detect(Path::new("/sys/fs/cgroup"), Path::new("/proc")).unwrap();
    for source in [
        CounterSource::new(docker_api.clone(), None),
        CounterSource::new(docker_api.clone(), Some(reader)),
    ] {
        let mut cleanup = Cleanup::default();
        let name = cleanup.container(&unique_name("stopped"));
        let id = docker(&["run", "-d", "--name", &name, TEST_IMAGE, "sleep", "3600"])
            .await
            .unwrap();
        let pid = docker(&["inspect", "-f", "{{.State.Pid}}", &id])
            .await
            .unwrap()
            .trim()
            .parse()
            .ok();
        // What the sweeper believes is running, as it was a moment ago…
        let running = || Running {
            id: ContainerId::from(id.as_str()),
            name: name.clone(),
            started_at_ns: None,
            network_mode: None,
            pid,
        };
        let reading = source.sample(running()).await.unwrap();
        assert!(
            reading.is_some(),
            "{}: a running container has a reading",
            source.name()
        );
        // …then restarted (its old process gone: Docker is asked), stopped, removed,
        // before the sweep reached it.
        docker(&["restart", "-t", "0", &name]).await.unwrap();
        assert!(
            source.sample(running()).await.unwrap().is_some(),
            "{}: a restarted container is still read",
            source.name()
        );
        docker(&["stop", "-t", "1", &name]).await.unwrap();
        assert_eq!(
            source.sample(running()).await.unwrap(),
            None,
            "{}",
            source.name()
        );
        docker(&["rm", &name]).await.unwrap();
        assert_eq!(
            source.sample(running()).await.unwrap(),
            None,
            "{}",
            source.name()
        );
    }
}
