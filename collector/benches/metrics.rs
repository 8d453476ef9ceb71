//! `/metrics` benchmark: render time, bytes and peak memory of a scrape of 1,000 and 10,000
//! containers (every family, two interfaces and one device each), side by side with the
//! same series through the `prometheus` crate's registry (the baseline); then store ingest
//! throughput with and without a full scrape every second running beside it.
//!
//!   cargo bench -p dockermon-collector --bench metrics -- \
//!       --mysql mysql://dockermon:dockermon@127.0.0.1:33306
//!
//! Peak memory is the allocator's high-water mark above what was allocated before the
//! scrape (`peak_alloc`); the memory the view holds is what dropping it frees (each
//! container with its inventory and a sample). Prints Markdown tables.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use dockermon_collector::live::LiveBatch;
use dockermon_collector::metrics::{
    CollectorMetrics, FleetMetrics, Format, MetricsConfig, MetricsEndpoint, Renderer,
};
use dockermon_collector::store::{DatabaseUrl, HostId, Store};
use dockermon_collector::transport::Registry;
use dockermon_proto::{
    BlockIo, ContainerResources, CounterDetail, CpuThrottling, DeviceIo, HostInfo, HostName,
    InterfaceCounters, InventoryUpdate, NetworkCounters, PROTOCOL_VERSION, Record, StatsSample,
};
use peak_alloc::PeakAlloc;
use prometheus::{CounterVec, Encoder, GaugeVec, Opts, Registry as PromRegistry, TextEncoder};

mod support;
use support::{S, ScratchDatabases, on_scratch_databases};

#[global_allocator]
static ALLOCATOR: PeakAlloc = PeakAlloc;

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    databases: ScratchDatabases,
    /// Fleet sizes rendered, in containers (50 per host).
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    containers: Vec<usize>,
    /// Renders per size; the median is reported.
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// How long each ingest phase runs.
    #[arg(long, default_value_t = 20)]
    ingest_seconds: u64,
    #[arg(long)]
    bench: bool,
}

fn host_info(name: &str) -> HostInfo {
    HostInfo {
        time_ns: 1,
        agent_version: "0.1.0".into(),
        protocol_version: PROTOCOL_VERSION,
        engine_id: "E".into(),
        hostname: name.into(),
        docker_version: "27.0.3".into(),
        api_version: "1.46".into(),
        os: "Debian".into(),
        os_type: "linux".into(),
        kernel_version: "6.1".into(),
        architecture: "x86_64".into(),
        cpus: 8,
        memory_bytes: 32 << 30,
        cgroup_version: 2,
        cgroup_driver: "systemd".into(),
        storage_driver: "overlay2".into(),
        stats_source: "docker".into(),
        containers: 50,
        containers_running: 50,
        containers_paused: 0,
        containers_stopped: 0,
        images: 20,
    }
}

fn detailed_sample(id: &str, name: &str, time_ns: i64, i: u64) -> StatsSample {
    let mut sample = support::sample(id, name, time_ns, i);
    sample.counters.detail = Some(Box::new(CounterDetail {
        cpu_user_ns: Some(i * 700_000),
        cpu_kernel_ns: Some(i * 300_000),
        cpu_throttling: Some(CpuThrottling {
            periods: i,
            throttled_periods: i / 10,
            throttled_ns: i * 1000,
        }),
        memory_rss_bytes: Some(30_000_000),
        memory_cache_bytes: Some(10_000_000),
        memory_swap_bytes: Some(0),
        memory_failcnt: Some(0),
        memory_max_usage_bytes: Some(60_000_000),
        interfaces: ["eth0", "eth1"]
            .iter()
            .map(|name| InterfaceCounters {
                name: (*name).into(),
                counters: NetworkCounters {
                    rx_bytes: i * 1000,
                    tx_bytes: i * 2000,
                    rx_packets: i,
                    tx_packets: i,
                    ..Default::default()
                },
            })
            .collect(),
        devices: vec![DeviceIo {
            major: 8,
            minor: 0,
            name: Some("/dev/sda".into()),
            io: BlockIo {
                read_bytes: i * 4096,
                write_bytes: i * 8192,
                read_ops: i,
                write_ops: i * 2,
            },
        }],
    }));
    sample
}

/// A fleet of `containers` running containers, all with a sample, in the metrics view.
async fn fleet(
    store: &Store,
    containers: usize,
) -> anyhow::Result<(Arc<FleetMetrics>, Vec<(HostId, HostName, Vec<String>)>)> {
    let metrics = Arc::new(FleetMetrics::new(MetricsConfig::default()));
    let mut hosts = Vec::new();
    for (h, ids) in support::fleet(store, containers as i64).await? {
        let name = store.host(h).await?.name;
        let host_name = HostName::new(name)?;
        metrics.attach(store, h, &host_name, h.0 as u64).await?;
        let mut records = vec![Record::Host(host_info(host_name.as_str()))];
        let inventory: Vec<_> = ids
            .iter()
            .map(|id| {
                let mut c = support::container(id, &format!("c-{}", &id[60..]));
                c.resources = Some(ContainerResources {
                    memory_limit_bytes: Some(1 << 30),
                    cpu_quota_us: Some(50_000),
                    cpu_period_us: 100_000,
                    cpu_shares: 1024,
                    ..Default::default()
                });
                c
            })
            .collect();
        records.push(Record::Inventory(InventoryUpdate {
            time_ns: 1,
            full: true,
            containers: inventory.clone(),
            ..Default::default()
        }));
        for (i, c) in inventory.iter().enumerate() {
            records.push(Record::Stats(detailed_sample(
                &c.id.0, &c.name, S, i as u64,
            )));
        }
        metrics.apply(&LiveBatch {
            host: h,
            host_name: host_name.clone(),
            records,
            dropped: Default::default(),
        });
        hosts.push((h, host_name, ids));
    }
    Ok((metrics, hosts))
}

fn endpoint(fleet: Arc<FleetMetrics>) -> MetricsEndpoint {
    MetricsEndpoint {
        fleet,
        registry: Registry::default(),
        own: Arc::new(CollectorMetrics::default()),
        token: None,
        leader: Arc::new(AtomicBool::new(false)),
    }
}

struct Measured {
    time: Duration,
    bytes: usize,
    peak: usize,
}

fn median(mut runs: Vec<Measured>) -> Measured {
    runs.sort_by_key(|m| m.time);
    let middle = runs.len() / 2;
    runs.swap_remove(middle)
}

/// Renders a whole scrape as the endpoint streams it (each chunk dropped once written).
fn render(endpoint: &MetricsEndpoint) -> Measured {
    let before = ALLOCATOR.current_usage();
    ALLOCATOR.reset_peak_usage();
    let started = Instant::now();
    let mut bytes = 0;
    for chunk in Renderer::new(endpoint.scrape(Format::Text)) {
        bytes += chunk.len();
    }
    Measured {
        time: started.elapsed(),
        bytes,
        peak: ALLOCATOR.peak_usage().saturating_sub(before),
    }
}

type Labels = Vec<(String, String)>;

/// The same series in a `prometheus` registry: each family a vector over its label names.
fn baseline_registry(text: &str) -> PromRegistry {
    let registry = PromRegistry::new();
    let mut kinds: BTreeMap<String, String> = BTreeMap::new();
    let mut samples: BTreeMap<String, Vec<(Labels, f64)>> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            kinds.insert(name.to_owned(), kind.to_owned());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = series.split_once('{').unwrap_or((series, "}"));
        if !kinds.contains_key(name) || name.starts_with("dockermon_ingest") {
            continue;
        }
        let labels: Vec<(String, String)> = labels
            .trim_end_matches('}')
            .split("\",")
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (key, value) = pair.split_once("=\"").unwrap();
                (key.to_owned(), value.trim_end_matches('"').to_owned())
            })
            .collect();
        samples
            .entry(name.to_owned())
            .or_default()
            .push((labels, value.parse().unwrap_or(0.0)));
    }
    for (name, series) in samples {
        let mut label_names: Vec<String> = series
            .iter()
            .flat_map(|(labels, _)| labels.iter().map(|(k, _)| k.clone()))
            .collect();
        label_names.sort();
        label_names.dedup();
        let names: Vec<&str> = label_names.iter().map(String::as_str).collect();
        let values = |labels: &[(String, String)]| -> Vec<String> {
            label_names
                .iter()
                .map(|n| {
                    labels
                        .iter()
                        .find(|(k, _)| k == n)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default()
                })
                .collect()
        };
        if kinds[&name] == "counter" {
            let vec = CounterVec::new(Opts::new(name.clone(), "help"), &names).unwrap();
            for (labels, value) in &series {
                let values = values(labels);
                let refs: Vec<&str> = values.iter().map(String::as_str).collect();
                vec.with_label_values(&refs).inc_by(*value);
            }
            registry.register(Box::new(vec)).unwrap();
        } else {
            let vec = GaugeVec::new(Opts::new(name.clone(), "help"), &names).unwrap();
            for (labels, value) in &series {
                let values = values(labels);
                let refs: Vec<&str> = values.iter().map(String::as_str).collect();
                vec.with_label_values(&refs).set(*value);
            }
            registry.register(Box::new(vec)).unwrap();
        }
    }
    registry
}

fn render_baseline(registry: &PromRegistry) -> Measured {
    let before = ALLOCATOR.current_usage();
    ALLOCATOR.reset_peak_usage();
    let started = Instant::now();
    let mut buffer = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut buffer)
        .unwrap();
    Measured {
        time: started.elapsed(),
        bytes: buffer.len(),
        peak: ALLOCATOR.peak_usage().saturating_sub(before),
    }
}

/// Stats samples ingested per second, through the store and the metrics view as the
/// collector's writer does, for `seconds`.
async fn ingest_rate(
    store: &Store,
    metrics: &FleetMetrics,
    hosts: &[(HostId, HostName, Vec<String>)],
    seconds: u64,
    start_ns: i64,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut written = 0usize;
    let mut round = 0i64;
    while started.elapsed() < Duration::from_secs(seconds) {
        round += 1;
        // One sweep of 100 hosts (5,000 samples) per transaction.
        for chunk in hosts.chunks(100) {
            let batches: Vec<(HostId, Vec<Record>)> = chunk
                .iter()
                .map(|(host, _, ids)| {
                    let records = ids
                        .iter()
                        .enumerate()
                        .map(|(i, id)| {
                            Record::Stats(detailed_sample(
                                id,
                                &format!("c-{}", &id[60..]),
                                start_ns + round * S,
                                i as u64 + round as u64,
                            ))
                        })
                        .collect();
                    (*host, records)
                })
                .collect();
            let refs: Vec<(HostId, &[Record])> =
                batches.iter().map(|(h, r)| (*h, r.as_slice())).collect();
            store.ingest(&refs).await?;
            for ((host, name, _), (_, records)) in chunk.iter().zip(batches) {
                written += records.len();
                metrics.apply(&LiveBatch {
                    host: *host,
                    host_name: name.clone(),
                    records,
                    dropped: Default::default(),
                });
            }
        }
    }
    Ok(written as f64 / started.elapsed().as_secs_f64())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        sqlx::any::install_default_drivers();
        let scratch = tempfile::tempdir()?;
        let mut held = Vec::new();
        println!("| containers | renderer | median time | bytes | peak memory |");
        println!("|---|---|---|---|---|");
        for &containers in &args.containers {
            // The view is loaded from a store when agents connect: a scratch one per size.
            let url = format!(
                "sqlite://{}/render-{containers}.db",
                scratch.path().display()
            );
            let store = Store::connect(&DatabaseUrl::parse(&url)?).await?;
            store.migrate().await?;
            let (metrics, _) = fleet(&store, containers).await?;
            let endpoint = endpoint(metrics.clone());
            let ours = median((0..args.runs).map(|_| render(&endpoint)).collect());
            let text = Renderer::render_all(endpoint.scrape(Format::Text));
            let registry = baseline_registry(&text);
            let theirs = median((0..args.runs).map(|_| render_baseline(&registry)).collect());
            for (what, m) in [
                ("dockermon, streamed", ours),
                ("prometheus crate registry", theirs),
            ] {
                println!(
                    "| {containers} | {what} | {:.1} ms | {:.1} MB | {:.1} MB |",
                    m.time.as_secs_f64() * 1e3,
                    m.bytes as f64 / 1e6,
                    m.peak as f64 / 1e6
                );
            }
            // What the view holds: all that dropping it frees.
            drop(endpoint);
            let before = ALLOCATOR.current_usage();
            drop(metrics);
            held.push((containers, before.saturating_sub(ALLOCATOR.current_usage())));
            store.close().await;
        }
        println!("\n| containers | memory the view holds | per container |\n|---|---|---|");
        for (containers, bytes) in held {
            println!(
                "| {containers} | {:.1} MB | {} bytes |",
                bytes as f64 / 1e6,
                bytes / containers.max(1)
            );
        }
        Ok::<_, anyhow::Error>(())
    })?;

    let containers = *args.containers.iter().max().unwrap_or(&10_000);
    let seconds = args.ingest_seconds;
    runtime.block_on(on_scratch_databases(&args.databases, "dmmetrics", |backend, url| async move {
        let store = Store::connect(&DatabaseUrl::parse(&url)?).await?;
        store.migrate().await?;
        let (metrics, hosts) = fleet(&store, containers).await?;
        let quiet = ingest_rate(&store, &metrics, &hosts, seconds, 10 * S).await?;
        let scraping = Arc::new(AtomicBool::new(true));
        let scraper = {
            let (scraping, endpoint) = (scraping.clone(), endpoint(metrics.clone()));
            std::thread::spawn(move || {
                let mut renders = Vec::new();
                while scraping.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    renders.push(render(&endpoint).time);
                    std::thread::sleep(Duration::from_secs(1).saturating_sub(started.elapsed()));
                }
                renders
            })
        };
        let busy = ingest_rate(&store, &metrics, &hosts, seconds, 10_000 * S).await?;
        scraping.store(false, Ordering::Relaxed);
        let renders = scraper.join().expect("scraper");
        println!(
            "\n| {backend}, {containers} containers | stats samples ingested per second |\n|---|---|\n\
             | no scrape | {quiet:.0} |\n| a full scrape every second ({} scrapes) | {busy:.0} ({:+.1} %) |",
            renders.len(),
            (busy / quiet - 1.0) * 100.0
        );
        store.close().await;
        Ok(())
    }))?;
    Ok(())
}
