//! Disk usage (`docker system df`), measured rarely because it is expensive for dockerd:
//! it walks every layer and volume. Each measurement has a timeout; an interval of `off`
//! disables it. Engines before 23.0 refuse a measurement while another client's runs; it
//! is asked again, within the timeout, rather than skipped.
//!
//! The answer changed shape in Engine API 1.52 (summaries under `ImageUsage`, … instead
//! of full lists), so it is read through [`crate::docker::get_json`] and both shapes are
//! understood.

use dockermon_proto::limits::{MAX_LIST_ENTRIES, MAX_NAME_BYTES, truncate};
use dockermon_proto::{
    ContainerDisk, ContainerId, DiskUsage, Record, UsageSummary, VolumeDisk, now_ns,
};
use serde::Deserialize;
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::config::CollectConfig;
use crate::docker::{Docker, RawError, get_json};

/// Measures at the configured interval (or waits while it is off) until `cancel` fires or
/// the record channel closes.
pub async fn run(
    docker: Docker,
    mut settings: watch::Receiver<CollectConfig>,
    records: mpsc::Sender<Record>,
    cancel: CancellationToken,
) {
    loop {
        let config = settings.borrow_and_update().clone();
        let Some(interval) = config.usage_interval.filter(|_| !config.paused) else {
            // Off or paused: wait for the setting to change.
            tokio::select! {
                () = cancel.cancelled() => return,
                changed = settings.changed() => if changed.is_err() { return },
            }
            continue;
        };
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                changed = settings.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    break;
                }
                _ = ticker.tick() => {}
            }
            let measured = tokio::select! {
                () = cancel.cancelled() => return,
                measured = tokio::time::timeout(config.usage_timeout, measure(&docker)) => measured,
            };
            match measured {
                Ok(Ok(usage)) => {
                    if records.send(Record::Usage(usage)).await.is_err() {
                        return;
                    }
                }
                Ok(Err(error)) => {
                    warn!(error = %crate::docker::root_cause(&error), "disk usage measurement failed")
                }
                Err(_) => warn!(
                    timeout_s = config.usage_timeout.as_secs(),
                    "disk usage measurement timed out"
                ),
            }
        }
    }
}

/// First wait before asking again when Docker is busy measuring for someone else; it
/// doubles each time, within the measurement's timeout.
const BUSY_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// Whether Docker refused because another disk usage operation is running: engines
/// before 23.0 answer a concurrent `/system/df` (from `docker system df`, or another
/// monitor) with a 500 instead of sharing the answer.
fn is_busy(error: &RawError) -> bool {
    matches!(error, RawError::Status { status: 500, message }
        if message.contains("disk usage operation is already running"))
}

async fn measure(docker: &Docker) -> Result<DiskUsage, RawError> {
    let started = std::time::Instant::now();
    let mut wait = BUSY_RETRY_AFTER;
    let df: SystemDf = loop {
        match get_json(
            &docker.endpoint,
            &docker.api_version,
            "/system/df?verbose=1",
        )
        .await
        {
            Err(error) if is_busy(&error) => {
                debug!(
                    wait_ms = wait.as_millis() as u64,
                    "docker is measuring disk usage for someone else; asking again"
                );
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            answer => break answer?,
        }
    };
    debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "disk usage measured"
    );
    Ok(df.into_usage(now_ns()))
}

/// `/system/df` in either shape. Every field is optional: engines differ.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct SystemDf {
    // API < 1.52: full lists.
    layers_size: Option<i64>,
    images: Option<Vec<DfImage>>,
    containers: Option<Vec<DfContainer>>,
    volumes: Option<Vec<DfVolume>>,
    build_cache: Option<Vec<DfBuildCache>>,
    // API >= 1.52: summaries, with the lists as `Items` when verbose.
    image_usage: Option<DfSummary<DfImage>>,
    container_usage: Option<DfSummary<DfContainer>>,
    volume_usage: Option<DfSummary<DfVolume>>,
    build_cache_usage: Option<DfSummary<DfBuildCache>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct DfSummary<T> {
    active_count: i64,
    total_count: i64,
    reclaimable: i64,
    total_size: i64,
    items: Option<Vec<T>>,
}

impl<T> Default for DfSummary<T> {
    fn default() -> Self {
        DfSummary {
            active_count: 0,
            total_count: 0,
            reclaimable: 0,
            total_size: 0,
            items: None,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct DfImage {
    containers: i64,
    size: i64,
    shared_size: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct DfContainer {
    id: String,
    names: Vec<String>,
    size_rw: i64,
    state: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct DfVolume {
    name: String,
    usage_data: Option<DfVolumeUsage>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct DfVolumeUsage {
    size: i64,
    ref_count: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DfBuildCache {
    #[serde(rename = "Size")]
    size: i64,
    #[serde(rename = "InUse")]
    in_use: bool,
    #[serde(rename = "Shared")]
    shared: bool,
}

/// Docker uses -1 for "not computed".
fn bytes(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn summary<T>(s: &DfSummary<T>) -> UsageSummary {
    UsageSummary {
        count: bytes(s.total_count),
        active: bytes(s.active_count),
        size_bytes: bytes(s.total_size),
        reclaimable_bytes: bytes(s.reclaimable),
    }
}

impl SystemDf {
    /// The usage record. When the engine sends only lists (API < 1.52), the summaries are
    /// computed as the Docker CLI computes them.
    pub fn into_usage(self, time_ns: i64) -> DiskUsage {
        let SystemDf {
            layers_size,
            images,
            containers,
            volumes,
            build_cache,
            mut image_usage,
            mut container_usage,
            mut volume_usage,
            mut build_cache_usage,
        } = self;
        let images = images.or_else(|| image_usage.as_mut().and_then(|u| u.items.take()));
        let containers =
            containers.or_else(|| container_usage.as_mut().and_then(|u| u.items.take()));
        let volumes = volumes.or_else(|| volume_usage.as_mut().and_then(|u| u.items.take()));
        let build_cache =
            build_cache.or_else(|| build_cache_usage.as_mut().and_then(|u| u.items.take()));
        let images = images.unwrap_or_default();
        let containers = containers.unwrap_or_default();
        let volumes = volumes.unwrap_or_default();
        let build_cache = build_cache.unwrap_or_default();

        let layers_bytes = layers_size
            .map(bytes)
            .or(image_usage.as_ref().map(|u| bytes(u.total_size)))
            .unwrap_or(0);

        let image_summary = image_usage.as_ref().map(summary).unwrap_or_else(|| {
            let active = images.iter().filter(|i| i.containers > 0);
            let used: u64 = active
                .clone()
                .filter(|i| i.size >= 0 && i.shared_size >= 0)
                .map(|i| bytes(i.size - i.shared_size))
                .sum();
            UsageSummary {
                count: images.len() as u64,
                active: active.count() as u64,
                size_bytes: layers_bytes,
                reclaimable_bytes: layers_bytes.saturating_sub(used),
            }
        });

        let container_summary = container_usage.as_ref().map(summary).unwrap_or_else(|| {
            let stopped = containers.iter().filter(|c| c.state != "running");
            UsageSummary {
                count: containers.len() as u64,
                active: (containers.len() - stopped.clone().count()) as u64,
                size_bytes: containers.iter().map(|c| bytes(c.size_rw)).sum(),
                reclaimable_bytes: stopped.map(|c| bytes(c.size_rw)).sum(),
            }
        });

        let volume_summary = volume_usage.as_ref().map(summary).unwrap_or_else(|| {
            let usage = |v: &DfVolume| v.usage_data.as_ref().map(|u| (bytes(u.size), u.ref_count));
            UsageSummary {
                count: volumes.len() as u64,
                active: volumes
                    .iter()
                    .filter(|v| usage(v).is_some_and(|(_, refs)| refs > 0))
                    .count() as u64,
                size_bytes: volumes.iter().filter_map(usage).map(|(size, _)| size).sum(),
                reclaimable_bytes: volumes
                    .iter()
                    .filter_map(usage)
                    .filter(|(_, refs)| *refs == 0)
                    .map(|(size, _)| size)
                    .sum(),
            }
        });

        let build_cache_summary =
            build_cache_usage
                .as_ref()
                .map(summary)
                .unwrap_or_else(|| UsageSummary {
                    count: build_cache.len() as u64,
                    active: build_cache.iter().filter(|b| b.in_use).count() as u64,
                    size_bytes: build_cache
                        .iter()
                        .filter(|b| !b.shared)
                        .map(|b| bytes(b.size))
                        .sum(),
                    reclaimable_bytes: build_cache
                        .iter()
                        .filter(|b| !b.shared && !b.in_use)
                        .map(|b| bytes(b.size))
                        .sum(),
                });

        let mut per_container: Vec<ContainerDisk> = containers
            .into_iter()
            .map(|c| ContainerDisk {
                container_id: ContainerId(c.id),
                name: truncate(
                    c.names
                        .first()
                        .map(|n| n.trim_start_matches('/'))
                        .unwrap_or_default()
                        .to_owned(),
                    MAX_NAME_BYTES,
                ),
                size_rw_bytes: bytes(c.size_rw),
            })
            .collect();
        per_container.sort_by(|a, b| {
            b.size_rw_bytes
                .cmp(&a.size_rw_bytes)
                .then(a.name.cmp(&b.name))
        });
        per_container.truncate(MAX_LIST_ENTRIES);

        let mut per_volume: Vec<VolumeDisk> = volumes
            .into_iter()
            .map(|v| VolumeDisk {
                name: truncate(v.name, MAX_NAME_BYTES),
                size_bytes: v.usage_data.as_ref().map(|u| bytes(u.size)).unwrap_or(0),
                containers: v
                    .usage_data
                    .as_ref()
                    .map(|u| bytes(u.ref_count))
                    .unwrap_or(0),
            })
            .collect();
        per_volume.sort_by(|a, b| b.size_bytes.cmp(&a.size_bytes).then(a.name.cmp(&b.name)));
        per_volume.truncate(MAX_LIST_ENTRIES);

        DiskUsage {
            time_ns,
            layers_bytes,
            images: image_summary,
            containers: container_summary,
            volumes: volume_summary,
            build_cache: build_cache_summary,
            per_container,
            per_volume,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_lists_are_summarised_like_the_docker_cli() {
        // API 1.41 shape (Docker 20.10), trimmed.
        let df: SystemDf = serde_json::from_value(serde_json::json!({
            "LayersSize": 1000,
            "Images": [
                {"Id": "sha256:a", "Containers": 2, "Size": 600, "SharedSize": 100},
                {"Id": "sha256:b", "Containers": 0, "Size": 300, "SharedSize": 100},
                {"Id": "sha256:c", "Containers": 1, "Size": 50, "SharedSize": -1}
            ],
            "Containers": [
                {"Id": "c1", "Names": ["/web"], "SizeRw": 4096, "State": "running"},
                {"Id": "c2", "Names": ["/old"], "SizeRw": 8192, "State": "exited"}
            ],
            "Volumes": [
                {"Name": "data", "UsageData": {"Size": 500, "RefCount": 1}},
                {"Name": "orphan", "UsageData": {"Size": 70, "RefCount": 0}},
                {"Name": "unmeasured", "UsageData": {"Size": -1, "RefCount": -1}}
            ],
            "BuildCache": [
                {"ID": "b1", "Size": 10, "InUse": false, "Shared": false},
                {"ID": "b2", "Size": 20, "InUse": true, "Shared": false},
                {"ID": "b3", "Size": 40, "InUse": false, "Shared": true}
            ]
        }))
        .unwrap();
        let usage = df.into_usage(5);
        assert_eq!(usage.layers_bytes, 1000);
        assert_eq!(
            usage.images,
            UsageSummary {
                count: 3,
                active: 2,
                size_bytes: 1000,
                reclaimable_bytes: 500
            }
        );
        assert_eq!(
            usage.containers,
            UsageSummary {
                count: 2,
                active: 1,
                size_bytes: 12288,
                reclaimable_bytes: 8192
            }
        );
        assert_eq!(
            usage.volumes,
            UsageSummary {
                count: 3,
                active: 1,
                size_bytes: 570,
                reclaimable_bytes: 70
            }
        );
        assert_eq!(
            usage.build_cache,
            UsageSummary {
                count: 3,
                active: 1,
                size_bytes: 30,
                reclaimable_bytes: 10
            }
        );
        assert_eq!(usage.per_container[0].name, "old", "largest first");
        assert_eq!(usage.per_container[1].size_rw_bytes, 4096);
        assert_eq!(usage.per_volume[0].name, "data");
        assert_eq!(usage.per_volume[2].size_bytes, 0, "-1 means not measured");
    }

    #[test]
    fn summary_shape_is_taken_as_given() {
        // API 1.52+ shape.
        let df: SystemDf = serde_json::from_value(serde_json::json!({
            "ImageUsage": {"ActiveCount": 1, "TotalCount": 4, "Reclaimable": 300, "TotalSize": 900},
            "ContainerUsage": {"ActiveCount": 1, "TotalCount": 2, "Reclaimable": 10, "TotalSize": 30,
                               "Items": [{"Id": "c1", "Names": ["/web"], "SizeRw": 20, "State": "running"}]},
            "VolumeUsage": {"ActiveCount": 0, "TotalCount": 0, "Reclaimable": 0, "TotalSize": 0},
            "BuildCacheUsage": {"ActiveCount": 0, "TotalCount": 1, "Reclaimable": 5, "TotalSize": 5}
        }))
        .unwrap();
        let usage = df.into_usage(5);
        assert_eq!(usage.layers_bytes, 900);
        assert_eq!(
            usage.images,
            UsageSummary {
                count: 4,
                active: 1,
                size_bytes: 900,
                reclaimable_bytes: 300
            }
        );
        assert_eq!(usage.containers.size_bytes, 30);
        assert_eq!(usage.per_container.len(), 1);
        assert_eq!(usage.per_container[0].name, "web");
        assert_eq!(usage.build_cache.reclaimable_bytes, 5);
    }

    #[test]
    fn only_a_concurrent_measurement_is_asked_again() {
        let busy = RawError::Status {
            status: 500,
            message: r#"{"message":"a disk usage operation is already running"}"#.into(),
        };
        assert!(is_busy(&busy));
        let other = RawError::Status {
            status: 500,
            message: r#"{"message":"layer does not exist"}"#.into(),
        };
        assert!(!is_busy(&other));
    }
}
