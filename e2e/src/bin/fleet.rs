//! Fleet load generator: many simulated agents speaking the real protocol (TLS 1.3 with
//! real client certificates signed by the collector's CA, WebSocket, hello/welcome, data
//! frames, acks) against a running collector.
//!
//!   fleet --collector 127.0.0.1:3812[,…] --pki-dir DATA/pki --agents 1000 --containers 50 \
//!         --interval 30s [--warmup 30s] --duration 180s [--collector-pid PID]
//!         [--watch WS_ADDRESS,… --token TOKEN] [--kill-replica I]
//!
//! Each agent sends one frame of `--containers` stats samples per interval (the shape of a
//! real sweep), and measures the time from sending a frame to its acknowledgement, which
//! the collector sends only after committing it. Reports handshakes per second while the
//! fleet connects, frame-to-commit latency percentiles, the wire size of a sample, and,
//! given its pid, the collector's CPU and memory over the steady phase.
//!
//! With `--kill-replica`, the generator kills that replica (`kill -9`) halfway through the
//! measurement. Its agents do what real ones do: try the other addresses at once, in a
//! random order, then back off (0.5 s doubling to 30 s, full jitter) after a round in which
//! every one failed; on reconnecting, they send again the frames not yet committed (the
//! welcome says which were). Reported: how long after the kill each was back, and what
//! was sent again.

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
    /// Kill this replica (its index in `--collector`; `--collector-pid` gives its pid)
    /// with SIGKILL halfway through the measurement, and time its agents' failover.
    #[arg(long, requires = "collector_pid")]
    kill_replica: Option<usize>,
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
    /// When `--kill-replica` killed its replica.
    killed_at: std::sync::OnceLock<Instant>,
    /// Per agent that lost its connection after the kill: the time from the kill until
    /// its new replica welcomed it.
    failovers: Mutex<Vec<Duration>>,
    /// Frames sent again after a reconnection (not committed before the connection broke).
    frames_resent: AtomicU64,
}

/// Where one simulated agent can connect: every replica, and its own credentials.
struct Uplink {
    replicas: Arc<[SocketAddr]>,
    tls: Arc<rustls::ClientConfig>,
    /// The replica in use.
    current: usize,
}

impl Uplink {
    /// After a broken connection: each other replica at once, in a random order, then the
    /// same one last; after a round where all failed, a pause (0.5 s doubling to 30 s,
    /// full jitter) before the next. `None` when stopped.
    async fn reconnect(
        &mut self,
        stop: &tokio_util::sync::CancellationToken,
    ) -> Option<(RawAgent, u64)> {
        use rand::seq::SliceRandom;
        let mut pause = Duration::from_millis(500);
        loop {
            let mut order: Vec<usize> = (0..self.replicas.len())
                .filter(|r| *r != self.current)
                .collect();
            order.shuffle(&mut rand::rng());
            order.push(self.current);
            for replica in order {
                if stop.is_cancelled() {
                    return None;
                }
                if let Ok(joined) = RawAgent::join(self.replicas[replica], self.tls.clone()).await {
                    self.current = replica;
                    return Some(joined);
                }
            }
            let jittered = pause.mul_f64(rand::random::<f64>());
            tokio::select! {
                () = stop.cancelled() => return None,
                () = tokio::time::sleep(jittered) => {}
            }
            pause = (pause * 2).min(Duration::from_secs(30));
        }
    }
}

async fn agent(
    mut connection: RawAgent,
    mut seq: u64,
    mut uplink: Uplink,
    containers: usize,
    interval: Duration,
    shared: Arc<Shared>,
    stop: tokio_util::sync::CancellationToken,
) {
    let names: Vec<String> = (0..containers).map(|c| format!("c{c:03}")).collect();
    // Frames sent and not yet acknowledged: when each was sent, and its text.
    let mut pending: BTreeMap<u64, (Instant, String)> = BTreeMap::new();
    // Spread the fleet's sweeps over the interval, as real agents started at different times.
    let mut ticker = tokio::time::interval_at(
        tokio::time::Instant::now() + interval.mul_f64(rand::random::<f64>()),
        interval,
    );
    let mut counter = 0u64;
    loop {
        let broken = tokio::select! {
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
                pending.insert(seq, (Instant::now(), text.clone()));
                connection.send_text(text).await.is_err()
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
                        connection.send_text(text).await.is_err()
                    } else {
                        if let Ok(CollectorMessage::Ack { seq: acked }) = message {
                            acknowledged(&mut pending, acked, &shared).await;
                        }
                        false
                    }
                }
                Some(Ok(_)) => false,
                _ => true,
            },
        };
        if !broken {
            continue;
        }
        let Some((joined, committed)) = uplink.reconnect(&stop).await else {
            return;
        };
        connection = joined;
        if let Some(killed_at) = shared.killed_at.get() {
            shared.failovers.lock().await.push(killed_at.elapsed());
        } else {
            eprintln!("an agent lost its connection before any replica was killed");
        }
        // What the new replica says is committed is done; the rest goes again, in order.
        acknowledged(&mut pending, committed, &shared).await;
        seq = seq.max(committed);
        for (_, text) in pending.values() {
            shared.frames_resent.fetch_add(1, Ordering::Relaxed);
            if connection.send_text(text.clone()).await.is_err() {
                break;
            }
        }
    }
}

/// Frames up to `acked` are committed: their latency counts while measuring.
async fn acknowledged(pending: &mut BTreeMap<u64, (Instant, String)>, acked: u64, shared: &Shared) {
    let later = pending.split_off(&(acked + 1));
    let done = std::mem::replace(pending, later);
    let now = Instant::now();
    if shared.measuring.load(Ordering::Relaxed) && !done.is_empty() {
        shared
            .frames_acked
            .fetch_add(done.len() as u64, Ordering::Relaxed);
        shared
            .latencies
            .lock()
            .await
            .extend(done.values().map(|(sent, _)| now - *sent));
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
    let mut socket =
        dockermon_e2e::live::subscribe(address, &token, &[serde_json::json!({"topic": "stats"})])
            .await
            .expect("the watcher connects and subscribes");
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
        // After a kill, agents are no longer on replica i mod n: delivery counts until then.
        if !shared.measuring.load(Ordering::Relaxed) || shared.killed_at.get().is_some() {
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
    let mut configs: Vec<Arc<rustls::ClientConfig>> = Vec::with_capacity(args.agents);
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
    let replicas: Arc<[SocketAddr]> = args.collector.clone().into();
    let connected: Vec<(RawAgent, u64, Uplink)> =
        futures::stream::iter(configs.into_iter().enumerate())
            .map(|(i, tls)| {
                let uplink = Uplink {
                    replicas: replicas.clone(),
                    tls: tls.clone(),
                    current: i % replicas.len(),
                };
                let address = replicas[i % replicas.len()];
                async move {
                    RawAgent::join(address, tls)
                        .await
                        .map(|(agent, seq)| (agent, seq, uplink))
                }
            })
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
        killed_at: std::sync::OnceLock::new(),
        failovers: Mutex::new(Vec::new()),
        frames_resent: AtomicU64::new(0),
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
        .map(|(connection, seq, uplink)| {
            tokio::spawn(agent(
                connection,
                seq,
                uplink,
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
    let mut victim = args.kill_replica;
    while measure_start.elapsed() < args.duration {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if measure_start.elapsed() >= args.duration / 2
            && let Some(replica) = victim.take()
        {
            let pid = pids[replica];
            std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status()?;
            let _ = shared.killed_at.set(Instant::now());
            eprintln!("killed replica {replica} (pid {pid})");
        }
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
    if let Some(replica) = args.kill_replica {
        let mut failovers = shared.failovers.lock().await.clone();
        failovers.sort();
        let on_victim = (0..args.agents)
            .filter(|i| i % args.collector.len() == replica)
            .count();
        println!(
            "| agents back on another replica after `kill -9` of replica {replica} | {} of {on_victim} |",
            failovers.len()
        );
        println!(
            "| `kill -9` → agent welcomed by another replica | p50 {:.2} s, p99 {:.2} s, max {:.2} s |",
            percentile(&failovers, 0.5).as_secs_f64(),
            percentile(&failovers, 0.99).as_secs_f64(),
            failovers.last().copied().unwrap_or_default().as_secs_f64()
        );
        println!(
            "| frames sent again after failover (not committed before the kill) | {} |",
            shared.frames_resent.load(Ordering::Relaxed)
        );
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
