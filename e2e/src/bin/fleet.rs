//! Fleet load generator: many simulated agents speaking the real protocol (TLS 1.3 with
//! real client certificates signed by the collector's CA, WebSocket, hello/welcome, data
//! frames, acks) against a running collector.
//!
//!   fleet --collector 127.0.0.1:3812[,…] --pki-dir DATA/pki --agents 1000 --containers 50 \
//!         --interval 30s [--warmup 30s] --duration 180s [--collector-pid PID]
//!         [--watch WS_ADDRESS,… --token TOKEN]
//!
//! Each agent sends one frame of `--containers` stats samples per interval (the shape of a
//! real sweep), and measures the time from sending a frame to its acknowledgement, which
//! the collector sends only after committing it. Reports handshakes per second while the
//! fleet connects, frame-to-commit latency percentiles, the wire size of a sample, and,
//! given its pid, the collector's CPU and memory over the steady phase.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use dockermon_e2e::raw_agent::{ClientIdentity, RawAgent};
use dockermon_proto::transport::{
    AgentMessage, CollectorMessage, CommandOutcome, CommandResult, DataFrame, Dropped,
};
use dockermon_proto::{
    ContainerId, HostName, Record, StatsCounters, StatsRates, StatsSample, now_ns,
};
use futures::StreamExt;
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser)]
struct Args {
    /// The collector's agent address; with replicas, each one's, comma-separated: agent i
    /// connects to replica i mod n.
    #[arg(long, value_delimiter = ',', required = true)]
    collector: Vec<SocketAddr>,
    /// The replicas' WebSocket API addresses (same order as `--collector`): one client on
    /// each watches the whole fleet's stats, and the delivery latency of samples from
    /// agents on its own replica and on the others is reported side by side.
    #[arg(long, value_delimiter = ',', requires = "token")]
    watch: Vec<SocketAddr>,
    /// An access token for the watchers (`POST /api/v1/auth/login`).
    #[arg(long)]
    token: Option<String>,
    /// The collector's PKI directory (ca.crt, ca.key): the generator signs its agents'
    /// certificates with it.
    #[arg(long)]
    pki_dir: PathBuf,
    #[arg(long, default_value_t = 1000)]
    agents: usize,
    #[arg(long, default_value_t = 50)]
    containers: usize,
    /// Sweep interval of each agent.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// How long to wait once every agent is connected before measuring (default: one
    /// interval). A fleet's first sweeps register every container, which a large fleet
    /// needs longer for.
    #[arg(long, value_parser = humantime::parse_duration)]
    warmup: Option<Duration>,
    /// How long to measure once every agent is connected.
    #[arg(long, default_value = "180s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Handshakes in flight at once while the fleet connects.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
    /// The collector's process id (each replica's, comma-separated), to report its CPU and
    /// memory.
    #[arg(long, value_delimiter = ',')]
    collector_pid: Vec<u32>,
}

fn sample(container: &str, i: u64) -> Record {
    Record::Stats(StatsSample {
        time_ns: now_ns(),
        container_id: ContainerId(format!("{container:0>64}")),
        name: container.to_owned(),
        counters: StatsCounters {
            cpu_total_ns: 1_000_000_000 + i * 37_000_000,
            cpu_system_ns: 900_000_000_000 + i * 2_000_000_000,
            online_cpus: 4,
            memory_usage_bytes: 120_000_000 + (i % 1000) * 4096,
            memory_working_set_bytes: 80_000_000 + (i % 1000) * 4096,
            memory_limit_bytes: 2_147_483_648,
            pids: 12,
            ..Default::default()
        },
        rates: Some(StatsRates {
            interval_ns: 30_000_000_000,
            cpu_percent: (i % 200) as f64 / 7.0,
            net_rx_bytes_per_s: 12_345.6,
            net_tx_bytes_per_s: 6_789.1,
            block_read_bytes_per_s: 0.0,
            block_write_bytes_per_s: 4096.0,
        }),
    })
}

fn proc_stat(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().ok()? + fields[12].parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((ticks as f64 / 100.0, rss_kib))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

struct Shared {
    latencies: Mutex<Vec<Duration>>,
    /// Sample sent → seen by a watcher on the agent's own replica, and on another.
    delivered_here: Mutex<Vec<Duration>>,
    delivered_across: Mutex<Vec<Duration>>,
    frames_acked: AtomicU64,
    wire_bytes: AtomicU64,
    samples_sent: AtomicU64,
    measuring: std::sync::atomic::AtomicBool,
}

async fn agent(
    mut connection: RawAgent,
    mut seq: u64,
    containers: usize,
    interval: Duration,
    shared: Arc<Shared>,
    stop: tokio_util::sync::CancellationToken,
) {
    let names: Vec<String> = (0..containers).map(|c| format!("c{c:03}")).collect();
    let mut pending: BTreeMap<u64, Instant> = BTreeMap::new();
    // Spread the fleet's sweeps over the interval, as real agents started at different times.
    let mut ticker = tokio::time::interval_at(
        tokio::time::Instant::now() + interval.mul_f64(rand::random::<f64>()),
        interval,
    );
    let mut counter = 0u64;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => {
                seq += 1;
                counter += 1;
                let records = names.iter().map(|name| sample(name, counter)).collect();
                let text = serde_json::to_string(&AgentMessage::Data(DataFrame { seq, records, dropped: Dropped::default() }))
                    .expect("frames serialise");
                if shared.measuring.load(Ordering::Relaxed) {
                    shared.wire_bytes.fetch_add(text.len() as u64, Ordering::Relaxed);
                    shared.samples_sent.fetch_add(containers as u64, Ordering::Relaxed);
                }
                pending.insert(seq, Instant::now());
                if connection.send_text(text).await.is_err() {
                    eprintln!("an agent lost its connection");
                    return;
                }
            }
            message = connection.stream.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    let message = serde_json::from_str(text.as_str());
                    // Commands (the DockerHost settings the collector pushes to every agent)
                    // are answered at once, as a real agent that takes them does.
                    if let Ok(CollectorMessage::Command(command)) = &message {
                        let result = AgentMessage::CommandResult(CommandResult {
                            id: command.id,
                            outcome: CommandOutcome::Done { detail: None },
                        });
                        let text = serde_json::to_string(&result).expect("results serialise");
                        if connection.send_text(text).await.is_err() {
                            eprintln!("an agent lost its connection");
                            return;
                        }
                    }
                    if let Ok(CollectorMessage::Ack { seq: acked }) = message {
                        let done: Vec<u64> = pending.range(..=acked).map(|(s, _)| *s).collect();
                        let now = Instant::now();
                        let mut latencies = Vec::with_capacity(done.len());
                        for s in done {
                            if let Some(sent) = pending.remove(&s) {
                                latencies.push(now - sent);
                            }
                        }
                        if shared.measuring.load(Ordering::Relaxed) {
                            shared.frames_acked.fetch_add(latencies.len() as u64, Ordering::Relaxed);
                            shared.latencies.lock().await.extend(latencies);
                        }
                    }
                }
                Some(Ok(_)) => {}
                _ => {
                    eprintln!("an agent's connection ended");
                    return;
                }
            },
        }
    }
}

/// A WebSocket client of replica `replica` (of `replicas`) watching the whole fleet's stats:
/// each message's delay from its samples' time (when the agent sent them) to now, counted
/// as delivered here when the host's agent is on this replica and across otherwise.
async fn watch(
    address: SocketAddr,
    token: String,
    replica: usize,
    replicas: usize,
    shared: Arc<Shared>,
) {
    use futures::SinkExt;
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{address}/ws"))
        .await
        .expect("the watcher connects");
    for request in [
        serde_json::json!({"type": "identify", "token": token}),
        serde_json::json!({"type": "subscribe", "topic": "stats"}),
    ] {
        socket
            .send(Message::Text(request.to_string().into()))
            .await
            .expect("the watcher subscribes");
    }
    while let Some(Ok(message)) = socket.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        let now = now_ns();
        let update: serde_json::Value = serde_json::from_str(text.as_str()).unwrap_or_default();
        let (Some(name), Some(sent)) = (
            update["host_name"].as_str(),
            update["items"][0]["time_ns"].as_i64(),
        ) else {
            continue;
        };
        if !shared.measuring.load(Ordering::Relaxed) {
            continue;
        }
        // Host `fleet-<run>-<i>` is agent i, on replica i mod n.
        let Some(agent) = name
            .rsplit('-')
            .next()
            .and_then(|i| i.parse::<usize>().ok())
        else {
            continue;
        };
        let delay = Duration::from_nanos(now.saturating_sub(sent).max(0) as u64);
        let delivered = if agent % replicas == replica {
            &shared.delivered_here
        } else {
            &shared.delivered_across
        };
        delivered.lock().await.push(delay);
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    let authority =
        dockermon_collector::pki::Authority::load(&dockermon_collector::pki::PkiPaths {
            dir: args.pki_dir.clone(),
        })?;

    // Certificates first (not part of the handshake measurement).
    let run = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
    let mut configs = Vec::with_capacity(args.agents);
    for i in 0..args.agents {
        let key = rcgen::KeyPair::generate()?;
        let host = HostName::new(format!("fleet-{run}-{i:05}"))?;
        let (certificate_pem, _) = authority.sign_agent_key(
            &key,
            &host,
            Duration::from_secs(86_400),
            time::OffsetDateTime::now_utc(),
        )?;
        let identity = ClientIdentity {
            certificate_pem,
            key_pem: key.serialize_pem(),
            ca_pem: authority.ca_pem().to_owned(),
        };
        configs.push(identity.tls_config()?);
    }

    // Connect the fleet: TLS, WebSocket, hello, welcome.
    let started = Instant::now();
    let replicas = args.collector.clone();
    let connected: Vec<(RawAgent, u64)> = futures::stream::iter(configs.into_iter().enumerate())
        .map(|(i, tls)| RawAgent::join(replicas[i % replicas.len()], tls))
        .buffer_unordered(args.connect_concurrency)
        .filter_map(|result| async move {
            match result {
                Ok(agent) => Some(agent),
                Err(error) => {
                    eprintln!("connect failed: {error:#}");
                    None
                }
            }
        })
        .collect()
        .await;
    let connect_time = started.elapsed();
    let handshakes_per_s = connected.len() as f64 / connect_time.as_secs_f64();

    let shared = Arc::new(Shared {
        latencies: Mutex::new(Vec::new()),
        delivered_here: Mutex::new(Vec::new()),
        delivered_across: Mutex::new(Vec::new()),
        frames_acked: AtomicU64::new(0),
        wire_bytes: AtomicU64::new(0),
        samples_sent: AtomicU64::new(0),
        measuring: std::sync::atomic::AtomicBool::new(false),
    });
    let stop = tokio_util::sync::CancellationToken::new();
    let agents = connected.len();
    for (replica, address) in args.watch.iter().enumerate() {
        let token = args.token.clone().expect("clap requires it");
        let watching = watch(
            *address,
            token,
            replica,
            args.collector.len(),
            shared.clone(),
        );
        tokio::spawn(watching);
    }
    let tasks: Vec<_> = connected
        .into_iter()
        .map(|(connection, seq)| {
            tokio::spawn(agent(
                connection,
                seq,
                args.containers,
                args.interval,
                shared.clone(),
                stop.clone(),
            ))
        })
        .collect();

    // At least one interval of warm-up, so every agent has started its cycle, then measure.
    tokio::time::sleep(args.warmup.unwrap_or(args.interval).max(args.interval)).await;
    shared.measuring.store(true, Ordering::Relaxed);
    let pids = &args.collector_pid;
    let before: Vec<_> = pids.iter().map(|pid| proc_stat(*pid)).collect();
    let mut peak_rss = vec![0; pids.len()];
    let measure_start = Instant::now();
    while measure_start.elapsed() < args.duration {
        tokio::time::sleep(Duration::from_secs(1)).await;
        for (peak, pid) in peak_rss.iter_mut().zip(pids) {
            if let Some((_, rss)) = proc_stat(*pid) {
                *peak = (*peak).max(rss);
            }
        }
    }
    let after: Vec<_> = pids.iter().map(|pid| proc_stat(*pid)).collect();
    let measured = measure_start.elapsed();
    shared.measuring.store(false, Ordering::Relaxed);
    stop.cancel();
    for task in tasks {
        let _ = task.await;
    }

    let mut latencies = shared.latencies.lock().await.clone();
    latencies.sort();
    let mut here = shared.delivered_here.lock().await.clone();
    let mut across = shared.delivered_across.lock().await.clone();
    here.sort();
    across.sort();
    let samples = shared.samples_sent.load(Ordering::Relaxed);
    println!("| measurement | result |");
    println!("|---|---|");
    println!("| agents connected | {agents} of {} |", args.agents);
    println!(
        "| handshakes (TLS 1.3 + WebSocket + hello/welcome), {} in flight | {handshakes_per_s:.0} per second ({agents} in {:.1} s) |",
        args.connect_concurrency,
        connect_time.as_secs_f64()
    );
    println!(
        "| load | {} containers per agent every {:?}: {:.0} samples/s |",
        args.containers,
        args.interval,
        samples as f64 / measured.as_secs_f64()
    );
    println!(
        "| frames acknowledged while measuring ({:.0} s) | {} |",
        measured.as_secs_f64(),
        shared.frames_acked.load(Ordering::Relaxed)
    );
    println!(
        "| frame sent → committed and acknowledged | p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms |",
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    for (what, delivered) in [("its own replica", &here), ("another replica", &across)] {
        if !delivered.is_empty() {
            println!(
                "| sample sent → seen by a watcher on {what} | p50 {:.1} ms, p99 {:.1} ms ({} messages) |",
                percentile(delivered, 0.5).as_secs_f64() * 1e3,
                percentile(delivered, 0.99).as_secs_f64() * 1e3,
                delivered.len()
            );
        }
    }
    if samples > 0 {
        println!(
            "| wire size per container sample (JSON, in a frame of {}) | {:.0} bytes |",
            args.containers,
            shared.wire_bytes.load(Ordering::Relaxed) as f64 / samples as f64
        );
    }
    for (i, ((before, after), peak)) in before.iter().zip(&after).zip(&peak_rss).enumerate() {
        let which = if pids.len() > 1 {
            format!("replica {i}")
        } else {
            "collector".to_owned()
        };
        if let (Some((cpu_before, _)), Some((cpu_after, rss))) = (before, after) {
            println!(
                "| {which} CPU | {:.1} % of one core |",
                (cpu_after - cpu_before) / measured.as_secs_f64() * 100.0
            );
            println!(
                "| {which} RSS | {:.0} MiB (peak {:.0} MiB) |",
                *rss as f64 / 1024.0,
                *peak as f64 / 1024.0
            );
        }
    }
    Ok(())
}
