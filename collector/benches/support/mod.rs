//! What the benchmarks share: a fleet of hosts and containers, samples, a set-based loader
//! for long histories, and latency summaries.

#![allow(dead_code)] // each benchmark uses its own part

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use dockermon_collector::store::{HostId, Store};
use dockermon_proto::{
    Container, ContainerId, ContainerState, HostName, InventoryUpdate, Record, StatsCounters,
    StatsRates, StatsSample,
};
use sqlx::{AssertSqlSafe, Connection};

pub(crate) const S: i64 = 1_000_000_000;
/// Containers per host.
pub(crate) const PER_HOST: i64 = 50;

pub(crate) fn row(backend: &str, what: &str, result: String) {
    println!("| {backend} | {what} | {result} |");
}

pub(crate) fn sample(docker_id: &str, name: &str, time_ns: i64, i: u64) -> StatsSample {
    StatsSample {
        time_ns,
        container_id: ContainerId::from(docker_id),
        name: name.into(),
        counters: StatsCounters {
            cpu_total_ns: i * 1_000_000,
            cpu_system_ns: i * 2_000_000,
            online_cpus: 2,
            memory_usage_bytes: 50_000_000 + i % 1000,
            memory_working_set_bytes: 40_000_000 + i % 1000,
            memory_limit_bytes: 1 << 30,
            pids: 3,
            ..Default::default()
        },
        rates: Some(StatsRates {
            interval_ns: 30 * S,
            cpu_percent: (i % 100) as f64 / 3.0,
            net_rx_bytes_per_s: 1000.0,
            net_tx_bytes_per_s: 2000.0,
            block_read_bytes_per_s: 0.0,
            block_write_bytes_per_s: 10.0,
        }),
    }
}

pub(crate) fn container(docker_id: &str, name: &str) -> Container {
    Container {
        id: ContainerId::from(docker_id),
        name: name.into(),
        image: "nginx:1.27".into(),
        image_id: "sha256:img".into(),
        created_ns: 1,
        state: ContainerState::Running,
        health: None,
        restart_count: 0,
        exit_code: None,
        started_at_ns: Some(2),
        finished_at_ns: None,
        compose: None,
        labels: Default::default(),
        ports: vec![],
        mounts: vec![],
        networks: vec![],
        oom_killed: false,
        restart_policy: None,
        network_mode: None,
        resources: None,
        truncated: Default::default(),
    }
}

/// Registers hosts of 50 containers each; returns (host, docker ids).
pub(crate) async fn fleet(
    store: &Store,
    containers: i64,
) -> anyhow::Result<Vec<(HostId, Vec<String>)>> {
    let mut hosts = Vec::new();
    for h in 0..(containers + PER_HOST - 1) / PER_HOST {
        let host = store
            .register_host(&HostName::new(format!("host-{h:04}"))?)
            .await?;
        let ids: Vec<String> = (0..PER_HOST.min(containers - h * PER_HOST))
            .map(|c| format!("{h:04}{c:060}"))
            .collect();
        let inventory = Record::Inventory(InventoryUpdate {
            time_ns: 1,
            full: true,
            containers: ids
                .iter()
                .map(|id| container(id, &format!("c-{}", &id[60..])))
                .collect(),
            ..Default::default()
        });
        store
            .ingest(&[(host, std::slice::from_ref(&inventory))])
            .await?;
        hosts.push((host, ids));
    }
    Ok(hosts)
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

pub(crate) fn latency(mut timings: Vec<Duration>) -> String {
    timings.sort();
    format!(
        "median {:.2} ms, p99 {:.2} ms ({} queries)",
        percentile(&timings, 0.5).as_secs_f64() * 1e3,
        percentile(&timings, 0.99).as_secs_f64() * 1e3,
        timings.len()
    )
}

/// Loads `days` of 30-second samples for every container, ending at `now`, plus the
/// matching rollups and latest rows. Returns the raw row count.
pub(crate) async fn load_history(url: &str, days: i64, now: i64) -> anyhow::Result<i64> {
    let mysql = url.starts_with("mysql");
    let mut conn = sqlx::AnyConnection::connect(url).await?;
    let end = now - now.rem_euclid(3600 * S);
    let start = end - days * 86_400 * S;
    // One day (2,880 samples per container) per statement.
    let values = "c.id, {t}, (c.id * 7 + {n}) % 100 / 3.0, {n} * 1000000, 50000000 + (c.id * 13 + {n}) % 1000000, \
                  40000000 + (c.id * 13 + {n}) % 1000000, 1073741824, {n} * 1000, {n} * 2000, 1000.0, 2000.0, 0, {n} * 10, 0.0, 10.0, 3";
    let columns = "container_id, time_ns, cpu_percent, cpu_total_ns, memory_usage_bytes, memory_working_set_bytes, \
                   memory_limit_bytes, net_rx_bytes, net_tx_bytes, net_rx_bytes_per_s, net_tx_bytes_per_s, \
                   block_read_bytes, block_write_bytes, block_read_bytes_per_s, block_write_bytes_per_s, pids";
    for day in 0..days {
        let day_start = start + day * 86_400 * S;
        let sql = if mysql {
            let n = "s.seq";
            let t = format!("{day_start} + s.seq * {}", 30 * S);
            format!(
                "INSERT INTO container_stats ({columns}) SELECT {} FROM containers c JOIN seq_0_to_2879 s",
                values.replace("{t}", &t).replace("{n}", n)
            )
        } else {
            let t = format!("{day_start} + s.n * {}", 30 * S);
            format!(
                "INSERT INTO container_stats ({columns}) WITH RECURSIVE s(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM s WHERE n < 2879) \
                 SELECT {} FROM containers c CROSS JOIN s",
                values.replace("{t}", &t).replace("{n}", "s.n")
            )
        };
        sqlx::query(AssertSqlSafe(sql)).execute(&mut conn).await?;
    }
    // Rollups, generated the same way (aggregating 86 million rows would only measure the
    // loader's patience): one row per container per bucket, values in the raw rows' ranges.
    for (table, width, buckets) in [
        ("container_stats_5m", 300 * S, days * 288),
        ("container_stats_1h", 3600 * S, days * 24),
    ] {
        let per_statement = 288.min(buckets);
        let mut first = 0;
        while first < buckets {
            let count = per_statement.min(buckets - first);
            let (source, n) = if mysql {
                (
                    format!("containers c JOIN seq_0_to_{} s", count - 1),
                    "s.seq",
                )
            } else {
                (
                    format!(
                        "containers c CROSS JOIN (WITH RECURSIVE r(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM r WHERE n < {}) SELECT n FROM r) s",
                        count - 1
                    ),
                    "s.n",
                )
            };
            let sql = format!(
                "INSERT INTO {table} (container_id, bucket_ns, samples, cpu_percent_avg, cpu_percent_max, memory_usage_avg, \
                 memory_usage_max, memory_working_set_avg, memory_working_set_max, memory_limit_max, net_rx_bytes_per_s_avg, \
                 net_rx_bytes_per_s_max, net_tx_bytes_per_s_avg, net_tx_bytes_per_s_max, block_read_bytes_per_s_avg, \
                 block_read_bytes_per_s_max, block_write_bytes_per_s_avg, block_write_bytes_per_s_max, pids_avg, pids_max) \
                 SELECT c.id, {start} + ({first} + {n}) * {width}, {samples}, (c.id + {n}) % 100 / 3.0, (c.id + {n}) % 100 / 2.0, \
                 50000000.0 + {n}, 51000000 + {n}, 40000000.0, 41000000, 1073741824, 1000.0, 1500.0, 2000.0, 2500.0, \
                 0.0, 0.0, 10.0, 20.0, 3.0, 3 FROM {source}",
                samples = width / (30 * S),
            );
            sqlx::query(AssertSqlSafe(sql)).execute(&mut conn).await?;
            first += count;
        }
    }
    if !mysql {
        sqlx::query("ANALYZE").execute(&mut conn).await?;
    }
    let (rows,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM container_stats")
        .fetch_one(&mut conn)
        .await?;
    Ok(rows)
}

/// The databases a benchmark runs on: flags every benchmark takes.
#[derive(clap::Args)]
pub(crate) struct ScratchDatabases {
    /// MariaDB server URL without a database; a scratch database is created and dropped.
    #[arg(long)]
    mysql: Option<String>,
    /// Directory for the SQLite scratch file.
    #[arg(long)]
    sqlite_dir: Option<PathBuf>,
}

/// Runs `bench` once on a scratch MariaDB database on the `--mysql` server and once on a
/// scratch SQLite file in `--sqlite-dir`, each as far as given, and removes the scratch
/// database afterwards whatever the outcome.
pub(crate) async fn on_scratch_databases<F, Fut>(
    databases: &ScratchDatabases,
    prefix: &str,
    bench: F,
) -> anyhow::Result<()>
where
    F: Fn(&'static str, String) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    if let Some(server) = &databases.mysql {
        let name = format!("{prefix}_{:08x}", rand::random::<u32>());
        sqlx::any::install_default_drivers();
        let mut admin = sqlx::AnyConnection::connect(server).await?;
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await?;
        let result = bench("MariaDB", format!("{server}/{name}")).await;
        sqlx::query(AssertSqlSafe(format!("DROP DATABASE {name}")))
            .execute(&mut admin)
            .await?;
        result?;
    }
    if let Some(dir) = &databases.sqlite_dir {
        let path = dir.join(format!("{prefix}-{:08x}.db", rand::random::<u32>()));
        let result = bench("SQLite", format!("sqlite://{}", path.display())).await;
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        result?;
    }
    Ok(())
}
