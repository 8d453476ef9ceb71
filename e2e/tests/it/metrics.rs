//! `/metrics` through a real Prometheus (Debian's package, on loopback, scraping every
//! second with `honor_labels: true` as the README says): the figures of real containers
//! under cAdvisor's names, the host found by `instance`, removed containers gone, hostile
//! labels intact; `promtool` on a real scrape; and the shipped alert rules and Grafana
//! dashboards checked against what the collector really emits.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;

use dockermon_e2e::docker::{Cleanup, TEST_IMAGE, docker, unique_name};
use dockermon_e2e::fleet::WAIT;
use dockermon_e2e::prometheus::Prometheus;
use dockermon_e2e::wait::eventually;

use crate::support::{ADMIN_PASSWORD, Setup, scrape, sign_in};

/// Runs a command with `input` on stdin; its exit status, stdout and stderr.
async fn run_with_input(program: &str, args: &[&str], input: &str) -> (bool, String, String) {
    use tokio::io::AsyncWriteExt;
    let mut child = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program} (Debian's prometheus package): {e}"));
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);
    let output = child.wait_with_output().await.unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The working set of a container as its cgroup v1 files say: usage minus inactive file.
fn cgroup_working_set(id: &str) -> u64 {
    let dir = PathBuf::from("/sys/fs/cgroup/memory/docker").join(id);
    let usage: u64 = std::fs::read_to_string(dir.join("memory.usage_in_bytes"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let stat = std::fs::read_to_string(dir.join("memory.stat")).unwrap();
    let inactive: u64 = stat
        .lines()
        .find_map(|line| line.strip_prefix("total_inactive_file "))
        .unwrap()
        .parse()
        .unwrap();
    usage - inactive
}

/// A note label no exporter should mangle: quotes, backslashes, a newline, non-ASCII, and
/// long (the agent keeps label values up to 1 KiB).
fn hostile_note() -> String {
    let mut note = "say \"hi\" \\ back\\slash\nnew line, ünïcödé ✓ ".to_owned();
    while note.len() < 255 {
        note.push('x');
    }
    note
}

#[tokio::test]
async fn a_real_prometheus_scrapes_the_fleet_under_cadvisors_names() {
    let setup = Setup::with(&["--metrics-labels", "dmtest.note"]).await;
    let _agent = setup.agent("host-prom").await;
    let mut cleanup = Cleanup::default();
    let spin = cleanup.container(&unique_name("spin"));
    docker(&[
        "run",
        "-d",
        "--name",
        &spin,
        TEST_IMAGE,
        "sh",
        "-c",
        "while :; do :; done",
    ])
    .await
    .unwrap();
    let note = hostile_note();
    let label = format!("dmtest.note={note}");
    let hold = cleanup.container(&unique_name("hold"));
    let hold_id = docker(&[
        "run",
        "-d",
        "--name",
        &hold,
        "--memory",
        "64m",
        "--label",
        &label,
        TEST_IMAGE,
        // 20 MB held by the shell (the `echo` after `sleep` keeps busybox from exec'ing it).
        "sh",
        "-c",
        "x=$(yes aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa | head -c 20000000); sleep 3600; echo ${#x}",
    ])
    .await
    .unwrap();
    let server = cleanup.container(&unique_name("httpd"));
    docker(&[
        "run",
        "-d",
        "--name",
        &server,
        TEST_IMAGE,
        "sh",
        "-c",
        "mkdir -p /www && head -c 3000000 /dev/zero > /www/big && httpd -f -h /www",
    ])
    .await
    .unwrap();
    let server_ip = docker(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", &server])
        .await
        .unwrap();
    let fetch = cleanup.container(&unique_name("fetch"));
    let url = format!("http://{server_ip}/big");
    docker(&[
        "run",
        "-d",
        "--name",
        &fetch,
        TEST_IMAGE,
        "sh",
        "-c",
        &format!("until wget -q -O /dev/null {url}; do sleep 0.2; done; sleep 3600"),
    ])
    .await
    .unwrap();

    let prometheus = Prometheus::start(&[setup.collector.health_address])
        .await
        .unwrap();
    let prometheus = &prometheus;

    // The collector's own text exposition passes promtool's checks, but one: cAdvisor's
    // `container_memory_failcnt` is a counter without `_total`, and dashboards query it by
    // that name (cAdvisor's own exposition draws the same remark).
    let body = scrape(&setup).await;
    let (_, stdout, stderr) = run_with_input("promtool", &["check", "metrics"], &body).await;
    let remarks: Vec<&str> = stdout
        .lines()
        .chain(stderr.lines())
        .filter(|line| !line.trim().is_empty())
        .filter(|line| {
            !line.starts_with("container_memory_failcnt counter metrics should have \"_total\"")
        })
        .collect();
    assert!(remarks.is_empty(), "promtool: {stdout}{stderr}");

    // A core's worth of CPU, as Prometheus computes it from the counter.
    // The agent samples every ~1.2 s (dockerd's stats tick) and Prometheus scrapes every
    // second, so a 20 s window holds about 17 distinct readings.
    let samples =
        format!("count_over_time(container_cpu_usage_seconds_total{{name=\"{spin}\"}}[25s])");
    eventually(WAIT, "25 s of CPU samples", || async {
        (prometheus.value(&samples).await.ok()?? >= 20.0).then_some(())
    })
    .await
    .unwrap();
    let cpu = prometheus
        .value(&format!(
            "rate(container_cpu_usage_seconds_total{{name=\"{spin}\",cpu=\"total\"}}[20s])"
        ))
        .await
        .unwrap()
        .expect("a CPU rate");
    assert!(
        (0.85..=1.15).contains(&cpu),
        "rate of a spinning container: {cpu}"
    );

    // The host is the `instance`, not the collector's address.
    let instances = prometheus
        .query(&format!(
            "count by (instance, host) (container_last_seen{{name=\"{spin}\"}})"
        ))
        .await
        .unwrap();
    assert_eq!(instances.len(), 1, "{instances:?}");
    assert_eq!(instances[0]["metric"]["instance"], "host-prom");
    assert_eq!(instances[0]["metric"]["host"], "host-prom");

    // Memory: the limit given to `docker run`, and the working set the cgroup reports.
    let limit = prometheus
        .value(&format!(
            "container_spec_memory_limit_bytes{{name=\"{hold}\"}}"
        ))
        .await
        .unwrap();
    assert_eq!(limit, Some(64.0 * 1024.0 * 1024.0));
    let expected = cgroup_working_set(&hold_id) as f64;
    let working_set = prometheus
        .value(&format!(
            "container_memory_working_set_bytes{{name=\"{hold}\"}}"
        ))
        .await
        .unwrap()
        .expect("a working set");
    assert!(
        (working_set - expected).abs() <= expected * 0.10,
        "working set {working_set} against the cgroup's {expected}"
    );
    // The hostile label arrives intact through escaping and Prometheus's parser.
    let noted = prometheus
        .query(&format!("container_memory_usage_bytes{{name=\"{hold}\"}}"))
        .await
        .unwrap();
    assert_eq!(
        noted[0]["metric"]["container_label_dmtest_note"],
        note.as_str()
    );

    // Network: the client received at least the 3 MB it fetched.
    let received = format!(
        "max(container_network_receive_bytes_total{{name=\"{fetch}\",interface=\"eth0\"}})"
    );
    eventually(WAIT, "the fetched bytes counted", || async {
        (prometheus.value(&received).await.ok()?? >= 3_000_000.0).then_some(())
    })
    .await
    .unwrap();

    // Every target scraped cleanly (Prometheus asked for OpenMetrics and parsed it).
    let targets = prometheus.targets().await.unwrap();
    assert_eq!(targets.len(), 1);
    assert_eq!(targets[0]["health"], "up", "{:?}", targets[0]);
    assert_eq!(targets[0]["lastError"], "");

    // A removed container is gone from /metrics, and from Prometheus right after.
    docker(&["rm", "-f", &spin]).await.unwrap();
    let needle = format!("name=\"{spin}\"");
    eventually(WAIT, "the removed container gone from /metrics", || {
        let needle = needle.clone();
        let setup = &setup;
        async move { (!scrape(setup).await.contains(&needle)).then_some(()) }
    })
    .await
    .unwrap();
    let gone = format!("container_last_seen{{name=\"{spin}\"}}");
    eventually(
        Duration::from_secs(15),
        "the removed container stale in Prometheus",
        || async { prometheus.query(&gone).await.ok()?.is_empty().then_some(()) },
    )
    .await
    .unwrap();
}

fn shipped(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../charts/dockermon/files")
        .join(path)
}

/// The metric names a scrape declares (its `# TYPE` lines, with a histogram's series).
fn declared_names(scrape: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in scrape.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
            names.insert(name.to_owned());
            if kind == "histogram" {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
        }
    }
    names
}

/// Every PromQL expression in a Grafana dashboard, its variables given plain values.
fn dashboard_expressions(dashboard: &Value) -> Vec<String> {
    let mut exprs = Vec::new();
    let mut visit = vec![dashboard];
    while let Some(value) = visit.pop() {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(expr)) = map.get("expr") {
                    exprs.push(expr.clone());
                }
                if let Some(Value::Object(query)) = map.get("query")
                    && let Some(Value::String(expr)) = query.get("query")
                {
                    exprs.push(expr.clone());
                }
                visit.extend(map.values());
            }
            Value::Array(items) => visit.extend(items),
            _ => {}
        }
    }
    exprs
        .into_iter()
        .map(|expr| {
            expr.replace("$__rate_interval", "1m")
                .replace("$host", ".*")
                .replace("$container", ".*")
                .replace("$instance", ".*")
        })
        .collect()
}

/// Metric names in a PromQL expression: identifiers not followed by `(` (functions) and not
/// keywords or label names.
fn metric_names(expr: &str) -> BTreeSet<String> {
    const KEYWORDS: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "and",
        "or",
        "unless",
        "offset",
        "bool",
        "label_values",
        // Aggregations, which may be followed by `by (…)` rather than `(`.
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "inf",
        "nan",
    ];
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    let mut depth_braces = 0;
    let mut in_string = false;
    let mut in_by = false;
    while i < bytes.len() {
        let c = bytes[i] as char;
        if in_string {
            if c == '\\' {
                i += 1;
            } else if c == '"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' => depth_braces += 1,
            '}' => depth_braces -= 1,
            ')' => in_by = false,
            '[' => {
                // A range or subquery duration: skip to its end.
                while i < bytes.len() && bytes[i] != b']' {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let start = i;
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b':')
                {
                    i += 1;
                }
                let word = &expr[start..i];
                let next = expr[i..].trim_start().chars().next();
                if KEYWORDS.contains(&word) {
                    in_by = matches!(
                        word,
                        "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
                    );
                } else if depth_braces == 0 && next != Some('(') && !in_by {
                    names.insert(word.to_owned());
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    names
}

#[tokio::test]
async fn the_shipped_alert_rules_and_dashboards_use_only_what_the_collector_emits() {
    let setup = Setup::new().await;
    let _agent = setup.agent("host-dash").await;
    let mut cleanup = Cleanup::default();
    let name = cleanup.container(&unique_name("dash"));
    docker(&[
        "run", "-d", "--name", &name, "--cpus", "0.5", TEST_IMAGE, "sleep", "3600",
    ])
    .await
    .unwrap();
    // The API counts requests by route: one request makes its series exist.
    sign_in(&setup, "admin@localhost", ADMIN_PASSWORD).await;
    let needle = format!("name=\"{name}\"");
    let body = eventually(WAIT, "the container in /metrics", || {
        let needle = needle.clone();
        let setup = &setup;
        async move {
            let body = scrape(setup).await;
            body.contains(&needle).then_some(body)
        }
    })
    .await
    .unwrap();
    let emitted = declared_names(&body);
    assert!(emitted.contains("container_cpu_usage_seconds_total"));

    // The rules: valid, their tests pass, and every series they use is emitted.
    let rules = shipped("prometheus/dockermon-alerts.yaml");
    let tests = shipped("prometheus/dockermon-alerts.test.yaml");
    for args in [
        vec!["check", "rules", rules.to_str().unwrap()],
        vec!["test", "rules", tests.to_str().unwrap()],
    ] {
        let (ok, stdout, stderr) = run_with_input("promtool", &args, "").await;
        assert!(ok, "promtool {}: {stdout}{stderr}", args.join(" "));
    }
    let rules_text = std::fs::read_to_string(&rules).unwrap();
    let rule_exprs: Vec<String> = rules_text
        .split("expr:")
        .skip(1)
        .map(|rest| {
            rest.split("\n        for:")
                .next()
                .unwrap()
                .trim()
                .trim_start_matches('|')
                .to_owned()
        })
        .collect();
    assert_eq!(rule_exprs.len(), 11);
    for expr in &rule_exprs {
        for metric in metric_names(expr) {
            assert!(
                emitted.contains(&metric),
                "a rule uses {metric}, which /metrics does not emit: {expr}"
            );
        }
    }

    // The dashboards: every expression parses in a real Prometheus and uses only
    // emitted series.
    let prometheus = Prometheus::start(&[setup.collector.health_address])
        .await
        .unwrap();
    let dir = shipped("grafana");
    let mut dashboards = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let dashboard: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        dashboards += 1;
        let exprs = dashboard_expressions(&dashboard);
        assert!(
            exprs.len() >= 5,
            "{}: {} expressions",
            path.display(),
            exprs.len()
        );
        for expr in exprs {
            // A variable's `label_values(series, label)`: the series part is PromQL.
            let query = expr
                .strip_prefix("label_values(")
                .and_then(|e| e.strip_suffix(')'))
                .map_or(expr.as_str(), |inner| {
                    inner.rsplit_once(',').map_or(inner, |(s, _)| s)
                });
            prometheus
                .query(query)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            for metric in metric_names(query) {
                assert!(
                    emitted.contains(&metric),
                    "{} uses {metric}, which /metrics does not emit: {expr}",
                    path.display()
                );
            }
        }
    }
    assert_eq!(dashboards, 4);
}

#[test]
fn metric_names_are_found_in_promql() {
    let names = metric_names(
        r#"sum by (host, name) (rate(container_cpu_usage_seconds_total{host=~".*", name="a{b}"}[5m])) / on (host) machine_cpu_cores > 0 or vector(0)"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["container_cpu_usage_seconds_total", "machine_cpu_cores"]
    );
}
