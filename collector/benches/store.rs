//! Store benchmark: ingest throughput (batched, as the collector writes, against
//! row-at-a-time as the baseline) and query latency on a loaded database, for MariaDB and
//! SQLite in the same run.
//!
//!   cargo bench -p dockermon-collector --bench store -- \
//!       --mysql mysql://dockermon:dockermon@127.0.0.1:33306 --sqlite-dir /tmp
//!
//! The query phase loads `--containers` containers × `--days` days of 30-second samples plus
//! their 5-minute and hourly rollups with set-based SQL (MariaDB's SEQUENCE engine, SQLite's
//! recursive CTE): loading is not what is measured. Prints a Markdown table.

use std::time::{Duration, Instant};

use clap::Parser;
use dockermon_collector::store::{
    ContainerFilter, ContainerKey, DatabaseUrl, HostId, Page, Resolution, Retention, StatsQuery,
    Store,
};
use dockermon_proto::Record;
use sqlx::{AssertSqlSafe, Connection};

mod support;
use support::{
    PER_HOST, S, ScratchDatabases, fleet, latency, load_history, on_scratch_databases, row, sample,
};

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    databases: ScratchDatabases,
    /// Containers loaded for the query phase (50 per host).
    #[arg(long, default_value_t = 1000)]
    containers: i64,
    /// Days of 30-second samples loaded for the query phase.
    #[arg(long, default_value_t = 30)]
    days: i64,
    /// Samples written by the batched ingest phase.
    #[arg(long, default_value_t = 300_000)]
    ingest_samples: usize,
    /// Samples per ingest transaction in the batched phase.
    #[arg(long, default_value_t = 5_000)]
    batch: usize,
    /// Samples written one per transaction in the baseline phase.
    #[arg(long, default_value_t = 3_000)]
    row_samples: usize,
    /// Queries timed per kind.
    #[arg(long, default_value_t = 300)]
    queries: usize,
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Runtime::new()?;
    let args = &args;
    runtime.block_on(async {
        println!("| backend | measurement | result |");
        println!("|---|---|---|");
        on_scratch_databases(&args.databases, "dmbench", |backend, url| async move {
            bench(backend, &url, args).await
        })
        .await?;
        anyhow::Ok(())
    })
}

async fn bench(backend: &str, url: &str, args: &Args) -> anyhow::Result<()> {
    let store = Store::connect(&DatabaseUrl::parse(url)?).await?;
    store.migrate().await?;
    let now = dockermon_proto::now_ns();

    // Ingest, batched: what the collector's writer does (many agents' frames per transaction).
    let hosts = fleet(&store, 1000).await?;
    let all: Vec<(HostId, &String)> = hosts
        .iter()
        .flat_map(|(h, ids)| ids.iter().map(move |id| (*h, id)))
        .collect();
    let start_time = now - 3 * 86_400 * S;
    let records: Vec<(HostId, Record)> = (0..args.ingest_samples)
        .map(|i| {
            let (host, id) = all[i % all.len()];
            let time = start_time + (i / all.len()) as i64 * 30 * S;
            (host, Record::Stats(sample(id, "c", time, i as u64)))
        })
        .collect();
    let started = Instant::now();
    for chunk in records.chunks(args.batch) {
        // Group per host, as frames arrive.
        let mut per_host: Vec<(HostId, Vec<Record>)> = Vec::new();
        for (host, record) in chunk {
            match per_host.iter_mut().find(|(h, _)| h == host) {
                Some((_, list)) => list.push(record.clone()),
                None => per_host.push((*host, vec![record.clone()])),
            }
        }
        let batches: Vec<(HostId, &[Record])> =
            per_host.iter().map(|(h, r)| (*h, r.as_slice())).collect();
        store.ingest(&batches).await?;
    }
    let batched = args.ingest_samples as f64 / started.elapsed().as_secs_f64();
    row(
        backend,
        &format!("ingest, batched ({} samples per transaction)", args.batch),
        format!("{batched:.0} samples/s ({} samples)", args.ingest_samples),
    );

    // Baseline: one sample per transaction.
    let later = start_time + 86_400 * S;
    let started = Instant::now();
    for i in 0..args.row_samples {
        let (host, id) = all[i % all.len()];
        let record = Record::Stats(sample(
            id,
            "c",
            later + (i / all.len()) as i64 * 30 * S,
            i as u64,
        ));
        store
            .ingest(&[(host, std::slice::from_ref(&record))])
            .await?;
    }
    let single = args.row_samples as f64 / started.elapsed().as_secs_f64();
    row(
        backend,
        "ingest, row at a time (baseline)",
        format!("{single:.0} samples/s ({} samples)", args.row_samples),
    );
    row(
        backend,
        "batched / row at a time",
        format!("{:.0}×", batched / single),
    );

    // Query phase: a fresh, fully loaded history.
    let loaded = Store::connect(&DatabaseUrl::parse(url)?).await?;
    clear(url).await?;
    let hosts = fleet(&loaded, args.containers).await?;
    let started = Instant::now();
    let rows = load_history(url, args.days, now).await?;
    row(
        backend,
        &format!("loaded {} containers × {} days", args.containers, args.days),
        format!(
            "{rows} raw rows + rollups in {:.0} s (set-based SQL, not measured)",
            started.elapsed().as_secs_f64()
        ),
    );
    let keys: Vec<ContainerKey> = loaded
        .containers(&ContainerFilter::default(), Page::new(0, 1000)?)
        .await?
        .items
        .iter()
        .map(|c| c.id)
        .collect();

    let retention = Retention {
        raw: Duration::from_secs(args.days as u64 * 86_400 + 86_400),
        ..Retention::default()
    };
    for (label, span, resolution) in [
        (
            format!("{}-day range of one container", args.days),
            args.days * 86_400 * S,
            None,
        ),
        (
            format!("{}-day range, 5-minute resolution asked for", args.days),
            args.days * 86_400 * S,
            Some(Resolution::FiveMinutes),
        ),
        ("24-hour range".to_owned(), 86_400 * S, None),
        ("1-hour range".to_owned(), 3600 * S, None),
    ] {
        let mut timings = Vec::with_capacity(args.queries);
        let mut shape = String::new();
        for q in 0..args.queries {
            let query = StatsQuery {
                container: keys[(q * 7919) % keys.len()],
                from_ns: now - span,
                to_ns: now,
                resolution,
                max_points: if resolution.is_some() { 10_000 } else { 1000 },
            };
            let started = Instant::now();
            let series = loaded.container_stats(&query, now, &retention).await?;
            timings.push(started.elapsed());
            shape = format!("{:?}, {} points", series.resolution, series.points.len());
        }
        row(backend, &format!("{label} ({shape})"), latency(timings));
    }
    let mut timings = Vec::with_capacity(args.queries);
    for q in 0..args.queries {
        let (host, _) = &hosts[q % hosts.len()];
        let started = Instant::now();
        let latest = loaded.latest_stats(*host).await?;
        timings.push(started.elapsed());
        assert_eq!(latest.len() as i64, PER_HOST.min(args.containers));
    }
    row(
        backend,
        &format!("latest stats of every container on a host ({PER_HOST})"),
        latency(timings),
    );
    loaded.close().await;
    store.close().await;
    Ok(())
}

async fn clear(url: &str) -> anyhow::Result<()> {
    let mut conn = sqlx::AnyConnection::connect(url).await?;
    for table in [
        "container_stats",
        "container_stats_5m",
        "container_stats_1h",
        "activity",
        "container_instances",
        "containers",
        "hosts",
        "rollup_state",
    ] {
        sqlx::query(AssertSqlSafe(format!("DELETE FROM {table}")))
            .execute(&mut conn)
            .await?;
    }
    Ok(())
}
