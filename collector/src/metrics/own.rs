//! The collector's own metrics, in a `prometheus` registry: what it ingests and how fast,
//! database errors, API requests by route template, WebSocket clients, build info.
//! Labels are fixed per variant (a route template, a method, a status code, a record type),
//! never a raw path or an error message.

use std::time::Duration;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// Buckets for latencies from a millisecond to ten seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

pub struct CollectorMetrics {
    registry: Registry,
    /// Agent data frames committed.
    pub frames: IntCounter,
    /// Records committed, by type (`host`, `inventory`, `event`, `stats`, `usage`, `profile`).
    pub records: IntCounterVec,
    /// From a frame's receipt to its commit.
    pub commit_seconds: Histogram,
    /// Failed database writes: `transient` (retried) or `refused` (the frame's session closed).
    pub store_errors: IntCounterVec,
    /// API requests by route template, method and status.
    pub api_requests: IntCounterVec,
    pub api_seconds: HistogramVec,
    pub ws_clients: IntGauge,
    /// WebSocket clients disconnected, by reason (`too_slow`).
    pub ws_dropped: IntCounterVec,
    /// Agents connected to this collector.
    pub agents_connected: IntGauge,
    /// Profile sessions running on agents connected here.
    pub profiles_running: IntGauge,
    /// How long rendering `/metrics` took.
    pub scrape_seconds: Histogram,
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help)
}

impl Default for CollectorMetrics {
    fn default() -> Self {
        let registry = Registry::new();
        let frames = IntCounter::with_opts(opts(
            "dockermon_ingest_frames_total",
            "Agent data frames committed to the database.",
        ))
        .expect("valid metric");
        let records = IntCounterVec::new(
            opts(
                "dockermon_ingest_records_total",
                "Records committed to the database, by type.",
            ),
            &["type"],
        )
        .expect("valid metric");
        let commit_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "dockermon_ingest_commit_seconds",
                "Time from an agent frame's receipt to its commit.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )
        .expect("valid metric");
        let store_errors = IntCounterVec::new(
            opts(
                "dockermon_store_errors_total",
                "Failed database writes of agent data: transient (retried) or refused.",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let api_requests = IntCounterVec::new(
            opts(
                "dockermon_api_requests_total",
                "REST API requests, by route template, method and status code.",
            ),
            &["route", "method", "status"],
        )
        .expect("valid metric");
        let api_seconds = HistogramVec::new(
            HistogramOpts::new(
                "dockermon_api_request_duration_seconds",
                "REST API request durations, by route template and method.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route", "method"],
        )
        .expect("valid metric");
        let ws_clients =
            IntGauge::with_opts(opts("dockermon_ws_clients", "WebSocket clients connected."))
                .expect("valid metric");
        let ws_dropped = IntCounterVec::new(
            opts(
                "dockermon_ws_clients_dropped_total",
                "WebSocket clients the collector disconnected, by reason.",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let agents_connected = IntGauge::with_opts(opts(
            "dockermon_agents_connected",
            "Agents connected to this collector.",
        ))
        .expect("valid metric");
        let profiles_running = IntGauge::with_opts(opts(
            "dockermon_profiles_running",
            "Profile sessions running, as this collector knows them.",
        ))
        .expect("valid metric");
        let scrape_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "dockermon_metrics_render_seconds",
                "Time to render /metrics.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )
        .expect("valid metric");
        let build_info = IntGaugeVec::new(
            opts(
                "dockermon_build_info",
                "1, labelled with the collector's version.",
            ),
            &["version"],
        )
        .expect("valid metric");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        // Series with a known, fixed set of labels exist from the start at 0, so a rate()
        // over them works before the first event (a vector without children is not exported).
        for kind in ["host", "inventory", "event", "stats", "usage", "profile"] {
            records.with_label_values(&[kind]);
        }
        for kind in ["transient", "refused"] {
            store_errors.with_label_values(&[kind]);
        }
        ws_dropped.with_label_values(&["too_slow"]);
        for metric in [
            Box::new(frames.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(records.clone()),
            Box::new(commit_seconds.clone()),
            Box::new(store_errors.clone()),
            Box::new(api_requests.clone()),
            Box::new(api_seconds.clone()),
            Box::new(ws_clients.clone()),
            Box::new(ws_dropped.clone()),
            Box::new(agents_connected.clone()),
            Box::new(profiles_running.clone()),
            Box::new(scrape_seconds.clone()),
            Box::new(build_info),
        ] {
            registry.register(metric).expect("metric names are unique");
        }
        CollectorMetrics {
            registry,
            frames,
            records,
            commit_seconds,
            store_errors,
            api_requests,
            api_seconds,
            ws_clients,
            ws_dropped,
            agents_connected,
            profiles_running,
            scrape_seconds,
        }
    }
}

impl CollectorMetrics {
    /// A frame committed `waited` after it was received, with these records.
    pub fn committed(&self, waited: Duration, records: &[dockermon_proto::Record]) {
        self.frames.inc();
        self.commit_seconds.observe(waited.as_secs_f64());
        for record in records {
            self.records.with_label_values(&[record.type_name()]).inc();
        }
    }

    pub fn gather(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.registry.gather()
    }
}
