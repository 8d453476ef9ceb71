//! Bounds on what containers control. Names, labels and event attributes are written by
//! whoever runs a container, so they are cut to fixed sizes before they are sent, stored
//! or shown. Both the agent (before sending) and the collector (on receipt) apply them.

use std::collections::BTreeMap;

use crate::Record;

/// Longest container, image, volume or network name kept, in bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// Most labels (or event attributes) kept per object.
pub const MAX_LABELS: usize = 64;
/// Longest label key kept, in bytes.
pub const MAX_LABEL_KEY_BYTES: usize = 128;
/// Longest label value kept, in bytes.
pub const MAX_LABEL_VALUE_BYTES: usize = 1024;
/// Longest free-text field kept (an event action, a command line), in bytes.
pub const MAX_TEXT_BYTES: usize = 1024;
/// Most list entries kept per container (ports, mounts, networks).
pub const MAX_LIST_ENTRIES: usize = 128;
/// Most objects of one kind in one inventory update.
pub const MAX_INVENTORY_OBJECTS: usize = 100_000;
/// Most samples in one profile batch (agents send one batch at least every 10 s).
pub const MAX_PROFILE_SAMPLES: usize = 3_600;

/// `s` cut to at most `max` bytes on a character boundary.
pub fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// A label map bounded in count and sizes. Keys are kept in sorted order, so the same
/// labels always keep the same subset. Keys that would collide after truncation keep
/// the first value. Secret-looking values are redacted ([`crate::redact`]).
pub fn bound_labels<I>(labels: I) -> BTreeMap<String, String>
where
    I: IntoIterator<Item = (String, String)>,
{
    bound_labels_counted(labels).0
}

/// [`bound_labels`], and how many labels it left out or cut.
pub fn bound_labels_counted<I>(labels: I) -> (BTreeMap<String, String>, u32)
where
    I: IntoIterator<Item = (String, String)>,
{
    let sorted: BTreeMap<String, String> = labels.into_iter().collect();
    let mut bounded = BTreeMap::new();
    let mut cut = 0u32;
    for (key, value) in sorted {
        if bounded.len() == MAX_LABELS {
            cut = cut.saturating_add(1);
            continue;
        }
        if key.len() > MAX_LABEL_KEY_BYTES || value.len() > MAX_LABEL_VALUE_BYTES {
            cut = cut.saturating_add(1);
        }
        bounded
            .entry(truncate(key, MAX_LABEL_KEY_BYTES))
            .or_insert_with(|| truncate(value, MAX_LABEL_VALUE_BYTES));
    }
    crate::redact::labels(&mut bounded);
    (bounded, cut)
}

/// A list cut to [`MAX_LIST_ENTRIES`].
pub fn bound_list<T>(list: Vec<T>) -> Vec<T> {
    bound_list_counted(list).0
}

/// [`bound_list`], and how many entries it left out.
pub fn bound_list_counted<T>(mut list: Vec<T>) -> (Vec<T>, u32) {
    let dropped = list.len().saturating_sub(MAX_LIST_ENTRIES);
    list.truncate(MAX_LIST_ENTRIES);
    (list, u32::try_from(dropped).unwrap_or(u32::MAX))
}

/// A name cut to [`MAX_NAME_BYTES`], and whether it was.
pub fn bound_name(name: String) -> (String, bool) {
    let cut = name.len() > MAX_NAME_BYTES;
    (truncate(name, MAX_NAME_BYTES), cut)
}

/// Applies every bound to a record received from an agent: the collector never trusts
/// that an agent (or something speaking for one) applied them. What is cut from an object
/// is counted in its `truncated`; returns how many whole objects were left out (inventory
/// objects beyond [`MAX_INVENTORY_OBJECTS`], profile samples beyond [`MAX_PROFILE_SAMPLES`]),
/// which only a misbehaving agent sends and which the caller reports.
pub fn enforce(record: &mut Record) -> usize {
    let mut dropped = 0usize;
    let mut cap = |len: usize, max: usize| dropped += len.saturating_sub(max);
    let name = |s: &mut String| *s = truncate(std::mem::take(s), MAX_NAME_BYTES);
    let text = |s: &mut String| *s = truncate(std::mem::take(s), MAX_TEXT_BYTES);
    let labels = |map: &mut BTreeMap<String, String>| {
        let (bounded, cut) = bound_labels_counted(std::mem::take(map));
        *map = bounded;
        cut
    };
    let list = |len: usize| u32::try_from(len.saturating_sub(MAX_LIST_ENTRIES)).unwrap_or(u32::MAX);
    match record {
        Record::Host(host) => {
            for field in [
                &mut host.agent_version,
                &mut host.engine_id,
                &mut host.hostname,
                &mut host.docker_version,
                &mut host.api_version,
                &mut host.os,
                &mut host.os_type,
                &mut host.kernel_version,
                &mut host.architecture,
                &mut host.cgroup_driver,
                &mut host.storage_driver,
                &mut host.stats_source,
            ] {
                name(field);
            }
        }
        Record::Inventory(update) => {
            for len in [
                update.containers.len(),
                update.images.len(),
                update.volumes.len(),
                update.networks.len(),
                update.removed.len(),
            ] {
                cap(len, MAX_INVENTORY_OBJECTS);
            }
            update.containers.truncate(MAX_INVENTORY_OBJECTS);
            update.images.truncate(MAX_INVENTORY_OBJECTS);
            update.volumes.truncate(MAX_INVENTORY_OBJECTS);
            update.networks.truncate(MAX_INVENTORY_OBJECTS);
            update.removed.truncate(MAX_INVENTORY_OBJECTS);
            for c in &mut update.containers {
                name(&mut c.id.0);
                c.truncated.name |= c.name.len() > MAX_NAME_BYTES;
                name(&mut c.name);
                name(&mut c.image);
                name(&mut c.image_id);
                if let Some(compose) = &mut c.compose {
                    name(&mut compose.project);
                    name(&mut compose.service);
                }
                c.truncated.labels = c.truncated.labels.saturating_add(labels(&mut c.labels));
                c.truncated.ports = c.truncated.ports.saturating_add(list(c.ports.len()));
                c.truncated.mounts = c.truncated.mounts.saturating_add(list(c.mounts.len()));
                c.truncated.networks = c.truncated.networks.saturating_add(list(c.networks.len()));
                c.ports.truncate(MAX_LIST_ENTRIES);
                c.mounts.truncate(MAX_LIST_ENTRIES);
                c.networks.truncate(MAX_LIST_ENTRIES);
                for port in &mut c.ports {
                    name(&mut port.protocol);
                }
                for mount in &mut c.mounts {
                    name(&mut mount.kind);
                    text(&mut mount.source);
                    text(&mut mount.destination);
                }
                for network in &mut c.networks {
                    name(&mut network.name);
                    name(&mut network.network_id);
                }
            }
            for i in &mut update.images {
                name(&mut i.id);
                i.truncated.tags = i.truncated.tags.saturating_add(list(i.tags.len()));
                i.tags.truncate(MAX_LIST_ENTRIES);
                i.tags.iter_mut().for_each(name);
                i.truncated.labels = i.truncated.labels.saturating_add(labels(&mut i.labels));
            }
            for v in &mut update.volumes {
                v.truncated.name |= v.name.len() > MAX_NAME_BYTES;
                name(&mut v.name);
                name(&mut v.driver);
                text(&mut v.mountpoint);
                name(&mut v.scope);
                v.truncated.labels = v.truncated.labels.saturating_add(labels(&mut v.labels));
            }
            for n in &mut update.networks {
                name(&mut n.id);
                n.truncated.name |= n.name.len() > MAX_NAME_BYTES;
                name(&mut n.name);
                name(&mut n.driver);
                name(&mut n.scope);
                n.truncated.labels = n.truncated.labels.saturating_add(labels(&mut n.labels));
            }
            for removed in &mut update.removed {
                name(&mut removed.id);
            }
        }
        Record::Event(event) => {
            crate::redact::event(event);
            text(&mut event.action);
            name(&mut event.actor_id);
            if let Some(actor) = &mut event.actor_name {
                name(actor);
            }
            // Attributes beyond the bound are not the event's own (see `redact`).
            labels(&mut event.attributes);
        }
        Record::Stats(sample) => {
            name(&mut sample.container_id.0);
            name(&mut sample.name);
        }
        Record::Profile(batch) => {
            name(&mut batch.container_id.0);
            cap(batch.samples.len(), MAX_PROFILE_SAMPLES);
            batch.samples.truncate(MAX_PROFILE_SAMPLES);
            if let Some(message) = batch.ended.as_mut().and_then(|end| end.message.as_mut()) {
                text(message);
            }
        }
        Record::Usage(usage) => {
            usage.per_container.truncate(MAX_LIST_ENTRIES);
            usage.per_volume.truncate(MAX_LIST_ENTRIES);
            for c in &mut usage.per_container {
                name(&mut c.container_id.0);
                name(&mut c.name);
            }
            for v in &mut usage.per_volume {
                name(&mut v.name);
            }
        }
    }
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo".into(), 2), "h");
        assert_eq!(truncate("héllo".into(), 3), "hé");
        assert_eq!(truncate("short".into(), 100), "short");
    }

    #[test]
    fn labels_are_bounded_in_count_and_size() {
        let many = (0..500).map(|i| (format!("k{i:03}"), "v".repeat(5000)));
        let bounded = bound_labels(many);
        assert_eq!(bounded.len(), MAX_LABELS);
        assert!(bounded.values().all(|v| v.len() == MAX_LABEL_VALUE_BYTES));
        // The kept subset is the sorted prefix, whatever order labels came in.
        assert!(bounded.contains_key("k000") && bounded.contains_key("k063"));
        assert!(!bounded.contains_key("k064"));

        let long_key = bound_labels([("x".repeat(1000), "v".into())]);
        assert_eq!(long_key.keys().next().unwrap().len(), MAX_LABEL_KEY_BYTES);
    }
}

#[cfg(test)]
mod enforce_tests {
    use super::*;
    use crate::{DockerEvent, EventKind};

    #[test]
    fn received_records_are_bounded_again() {
        let mut record = Record::Event(DockerEvent {
            time_ns: 1,
            kind: EventKind::Container,
            action: "x".repeat(10_000),
            actor_id: "y".repeat(10_000),
            actor_name: Some("z".repeat(10_000)),
            attributes: (0..1000)
                .map(|i| (format!("k{i}"), "v".repeat(5000)))
                .collect(),
            scope: None,
        });
        enforce(&mut record);
        let Record::Event(event) = record else {
            unreachable!()
        };
        assert_eq!(event.action.len(), MAX_TEXT_BYTES);
        assert_eq!(event.actor_id.len(), MAX_NAME_BYTES);
        assert_eq!(event.actor_name.unwrap().len(), MAX_NAME_BYTES);
        assert!(
            event.attributes.is_empty(),
            "attributes that do not describe the event are dropped"
        );
    }

    #[test]
    fn what_the_bounds_cut_is_said() {
        let mut container = crate::Container {
            id: "c".into(),
            name: "n".repeat(300),
            image: "i".into(),
            image_id: "sha256:i".into(),
            created_ns: 1,
            state: crate::ContainerState::Running,
            health: None,
            restart_count: 0,
            exit_code: None,
            started_at_ns: None,
            finished_at_ns: None,
            compose: None,
            labels: (0..74).map(|i| (format!("k{i:02}"), "v".into())).collect(),
            ports: vec![],
            mounts: vec![],
            networks: vec![],
            oom_killed: false,
            restart_policy: None,
            network_mode: None,
            resources: None,
            truncated: Default::default(),
        };
        container.labels.insert("zz.team".into(), "ops".into());
        let mut record = Record::Inventory(crate::InventoryUpdate {
            containers: vec![container],
            ..Default::default()
        });
        enforce(&mut record);
        let Record::Inventory(update) = record else {
            unreachable!()
        };
        let c = &update.containers[0];
        assert_eq!(c.name.len(), MAX_NAME_BYTES);
        assert!(c.truncated.name);
        assert_eq!(c.labels.len(), MAX_LABELS);
        assert_eq!(c.truncated.labels, 11, "75 labels, 64 kept");
        assert!(!c.labels.contains_key("zz.team"));
    }
}
