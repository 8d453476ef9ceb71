//! One scrape: a snapshot of the fleet, rendered family by family into chunks of about
//! [`CHUNK_BYTES`], so the response streams out while the next chunk is written and the
//! whole exposition is never in memory at once (10,000 containers are megabytes).
//!
//! Order: host and agent series, then each container family across every host (a family's
//! lines must form one group), then the collector's own series, then the end marker.

use std::sync::Arc;

use prometheus::proto::{MetricFamily, MetricType};

use super::encode::{Encoder, Family, Format, Kind, LabelSet, Value, escape_into};
use super::families::{CONTAINER_FAMILIES, STATES, Series};
use super::fleet::HostView;
use crate::transport::ConnectedAgent;

/// Roughly how much is rendered before it is handed to the response.
pub const CHUNK_BYTES: usize = 64 * 1024;

/// A host as one scrape sees it.
pub struct HostEntry {
    pub view: Arc<HostView>,
    /// Its agent, when connected to this replica now.
    pub agent: Option<ConnectedAgent>,
}

/// What one scrape renders.
pub struct Scrape {
    pub format: Format,
    pub hosts: Vec<HostEntry>,
    /// Hosts this replica reports as down: known, and connected nowhere it can tell.
    pub down: Vec<LabelSet>,
    /// The collector's own metrics.
    pub collector: Vec<MetricFamily>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Hosts,
    Container {
        family: usize,
        host: usize,
        container: usize,
    },
    Collector,
    Done,
}

/// Renders a scrape chunk by chunk.
pub struct Renderer {
    scrape: Scrape,
    encoder: Encoder,
    section: Section,
}

impl Renderer {
    pub fn new(scrape: Scrape) -> Self {
        Renderer {
            encoder: Encoder::new(scrape.format),
            scrape,
            section: Section::Hosts,
        }
    }

    /// The whole exposition at once (tests, small fleets).
    pub fn render_all(scrape: Scrape) -> String {
        Renderer::new(scrape).collect()
    }
}

impl Iterator for Renderer {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        while self.section != Section::Done && self.encoder.out.len() < CHUNK_BYTES {
            self.section = match self.section {
                Section::Hosts => {
                    host_families(&mut self.encoder, &self.scrape);
                    Section::Container {
                        family: 0,
                        host: 0,
                        container: 0,
                    }
                }
                Section::Container {
                    family,
                    host,
                    container,
                } => self.container_step(family, host, container),
                Section::Collector => {
                    collector_families(&mut self.encoder, &self.scrape.collector);
                    self.encoder.finish();
                    Section::Done
                }
                Section::Done => Section::Done,
            };
        }
        let chunk = self.encoder.take();
        (!chunk.is_empty()).then_some(chunk)
    }
}

impl Renderer {
    /// Writes some of a container family (up to the chunk size) and says where to go on.
    fn container_step(&mut self, family: usize, mut host: usize, mut container: usize) -> Section {
        let Some(spec) = CONTAINER_FAMILIES.get(family) else {
            return Section::Collector;
        };
        if host == 0 && container == 0 {
            self.encoder.family(&spec.family);
        }
        let hosts = &self.scrape.hosts;
        while let Some(entry) = hosts.get(host) {
            let view = &entry.view;
            if view.attached() {
                for (_, c) in view.containers.iter().skip(container) {
                    let mut series = Series {
                        encoder: &mut self.encoder,
                        name: spec.family.name,
                        labels: c.labels.as_str(),
                    };
                    (spec.write)(&mut series, c);
                    container += 1;
                    if self.encoder.out.len() >= CHUNK_BYTES {
                        return Section::Container {
                            family,
                            host,
                            container,
                        };
                    }
                }
                if let Some(value) = spec.root.and_then(|root| root(view)) {
                    let labels = format!("id=\"/\",{}", view.labels.as_str());
                    self.encoder.sample(spec.family.name, &labels, &[], value);
                }
            }
            host += 1;
            container = 0;
        }
        Section::Container {
            family: family + 1,
            host: 0,
            container: 0,
        }
    }
}

const fn family(name: &'static str, kind: Kind, help: &'static str) -> Family {
    Family { name, kind, help }
}

/// Writes `family` with one sample per host attached here, labelled by `labels` (the
/// machine's or the collector's view of the host), where `value` has one.
fn per_host(
    encoder: &mut Encoder,
    scrape: &Scrape,
    family: Family,
    labels: fn(&HostView) -> &str,
    value: impl Fn(&HostEntry) -> Option<Value>,
) {
    encoder.family(&family);
    for entry in scrape.hosts.iter().filter(|h| h.view.attached()) {
        if let Some(value) = value(entry) {
            encoder.sample(family.name, labels(&entry.view), &[], value);
        }
    }
}

/// `host` and `instance`: series about the machine, which dashboards select by `instance`.
fn machine(view: &HostView) -> &str {
    view.labels.as_str()
}

/// Per-host and per-agent series: what the engine is, whether its agent is connected, what
/// it holds on disk, how delivery goes.
fn host_families(encoder: &mut Encoder, scrape: &Scrape) {
    let attached = || scrape.hosts.iter().filter(|h| h.view.attached());
    per_host(
        encoder,
        scrape,
        family(
            "machine_cpu_cores",
            Kind::Gauge,
            "Number of logical CPU cores.",
        ),
        machine,
        |entry| Some(Value::Int(i64::from(entry.view.info.as_ref()?.cpus))),
    );
    per_host(
        encoder,
        scrape,
        family(
            "machine_memory_bytes",
            Kind::Gauge,
            "Amount of memory installed on the machine.",
        ),
        machine,
        |entry| Some(Value::count(entry.view.info.as_ref()?.memory_bytes)),
    );
    per_host(
        encoder,
        scrape,
        family(
            "machine_scrape_error",
            Kind::Gauge,
            "1 if there was an error while getting machine metrics, 0 otherwise.",
        ),
        machine,
        |entry| Some(Value::Int(i64::from(entry.view.info.is_none()))),
    );

    encoder.family(&family(
        "dockermon_host_up",
        Kind::Gauge,
        "1 while the host's agent is connected to this collector, 0 while it is connected to none.",
    ));
    for entry in &scrape.hosts {
        let up = entry.view.attached() && entry.agent.is_some();
        encoder.sample(
            "dockermon_host_up",
            host_only(&entry.view),
            &[],
            Value::Int(i64::from(up)),
        );
    }
    for down in &scrape.down {
        encoder.sample("dockermon_host_up", down.as_str(), &[], Value::Int(0));
    }

    encoder.family(&family(
        "dockermon_host_containers",
        Kind::Gauge,
        "Containers on the host, by state.",
    ));
    for entry in attached() {
        for state in STATES {
            let count = entry
                .view
                .containers
                .values()
                .filter(|c| c.state() == Some(state))
                .count();
            encoder.sample(
                "dockermon_host_containers",
                host_only(&entry.view),
                &[("state", state.as_str())],
                Value::Int(count as i64),
            );
        }
    }
    per_host(
        encoder,
        scrape,
        family("dockermon_host_images", Kind::Gauge, "Images on the host."),
        host_only,
        |entry| Some(Value::Int(entry.view.images as i64)),
    );
    for (name, help, column) in [
        (
            "dockermon_host_disk_usage_bytes",
            "Disk space Docker uses on the host, by type (docker system df).",
            2,
        ),
        (
            "dockermon_host_disk_reclaimable_bytes",
            "Disk space docker system prune could free on the host, by type.",
            3,
        ),
    ] {
        encoder.family(&family(name, Kind::Gauge, help));
        for entry in attached() {
            if let Some(usage) = &entry.view.usage {
                for (kind, figures) in [
                    ("images", usage.images),
                    ("containers", usage.containers),
                    ("volumes", usage.volumes),
                    ("build_cache", usage.build_cache),
                ] {
                    encoder.sample(
                        name,
                        host_only(&entry.view),
                        &[("type", kind)],
                        Value::Int(figures[column]),
                    );
                }
            }
        }
    }
    per_host(
        encoder,
        scrape,
        family(
            "dockermon_host_certificate_expiry_timestamp_seconds",
            Kind::Gauge,
            "When the certificate the host's agent connected with expires (Unix seconds).",
        ),
        host_only,
        |entry| Some(Value::Int(entry.agent.as_ref()?.certificate_expires_s)),
    );

    encoder.family(&family(
        "dockermon_agent_info",
        Kind::Gauge,
        "1, labelled with the agent's version and its Docker engine's.",
    ));
    for entry in attached() {
        if let Some(info) = &entry.view.info {
            encoder.sample(
                "dockermon_agent_info",
                host_only(&entry.view),
                &[
                    ("version", &info.agent_version),
                    ("docker_version", &info.docker_version),
                ],
                Value::Int(1),
            );
        }
    }
    per_host(
        encoder,
        scrape,
        family(
            "dockermon_agent_last_report_age_seconds",
            Kind::Gauge,
            "Seconds since the host's agent last delivered anything.",
        ),
        host_only,
        |entry| Some(Value::Float(entry.view.last_report.elapsed().as_secs_f64())),
    );
    for (name, help, value) in [
        (
            "dockermon_agent_spool_frames",
            "Frames in the agent's spool the collector has not acknowledged.",
            (|a: &ConnectedAgent| Value::count(a.status.spool_frames))
                as fn(&ConnectedAgent) -> Value,
        ),
        (
            "dockermon_agent_spool_bytes",
            "Bytes of the frames in the agent's spool the collector has not acknowledged.",
            |a| Value::count(a.status.spool_bytes),
        ),
        (
            "dockermon_agent_profiles",
            "Profile sessions the agent runs.",
            |a| Value::Int(a.status.profiles.len() as i64),
        ),
        (
            "dockermon_agent_docker_streams",
            "Docker stats streams the agent holds open.",
            |a| Value::Int(i64::from(a.status.docker_streams)),
        ),
    ] {
        per_host(
            encoder,
            scrape,
            family(name, Kind::Gauge, help),
            host_only,
            |entry| entry.agent.as_ref().map(value),
        );
    }
    encoder.family(&family(
        "dockermon_agent_dropped_records_total",
        Kind::Counter,
        "Records the agent's full spool dropped since the agent started, by kind.",
    ));
    for entry in attached() {
        let dropped = entry.view.dropped;
        for (kind, count) in [
            ("stats", dropped.stats),
            ("usage", dropped.usage),
            ("events", dropped.events),
            ("other", dropped.other),
        ] {
            encoder.sample(
                "dockermon_agent_dropped_records_total",
                host_only(&entry.view),
                &[("kind", kind)],
                Value::count(count),
            );
        }
    }
}

/// `host="…"` alone: the `dockermon_*` host series are the collector's, not a host's
/// exporter's, so they carry no `instance`.
fn host_only(view: &HostView) -> &str {
    view.host_labels.as_str()
}

/// The collector's own metrics, from its `prometheus` registry.
fn collector_families(encoder: &mut Encoder, families: &[MetricFamily]) {
    for mf in families {
        let kind = match mf.get_field_type() {
            MetricType::COUNTER => Kind::Counter,
            MetricType::HISTOGRAM => Kind::Histogram,
            _ => Kind::Gauge,
        };
        let name = mf.name();
        encoder.family_of(name, kind, mf.help());
        for metric in mf.get_metric() {
            let mut labels = String::new();
            for pair in metric.get_label() {
                if !labels.is_empty() {
                    labels.push(',');
                }
                labels.push_str(pair.name());
                labels.push_str("=\"");
                escape_into(&mut labels, pair.value(), true);
                labels.push('"');
            }
            match kind {
                Kind::Counter => encoder.sample(
                    name,
                    &labels,
                    &[],
                    Value::Float(metric.get_counter().get_value()),
                ),
                Kind::Gauge => encoder.sample(
                    name,
                    &labels,
                    &[],
                    Value::Float(metric.get_gauge().get_value()),
                ),
                Kind::Histogram => {
                    let histogram = metric.get_histogram();
                    let bucket = format!("{name}_bucket");
                    for b in histogram.get_bucket() {
                        let le = Value::Float(b.upper_bound()).to_string();
                        encoder.sample(
                            &bucket,
                            &labels,
                            &[("le", &le)],
                            Value::count(b.cumulative_count()),
                        );
                    }
                    encoder.sample(
                        &bucket,
                        &labels,
                        &[("le", "+Inf")],
                        Value::count(histogram.get_sample_count()),
                    );
                    encoder.sample(
                        &format!("{name}_sum"),
                        &labels,
                        &[],
                        Value::Float(histogram.get_sample_sum()),
                    );
                    encoder.sample(
                        &format!("{name}_count"),
                        &labels,
                        &[],
                        Value::count(histogram.get_sample_count()),
                    );
                }
            }
        }
    }
}
