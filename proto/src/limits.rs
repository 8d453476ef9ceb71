//! Bounds on what containers control. Names, labels and event attributes are written by
//! whoever runs a container, so they are cut to fixed sizes before they are sent, stored
//! or shown. Both the agent (before sending) and the collector (on receipt) apply them.

use std::collections::BTreeMap;

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
/// the first value.
pub fn bound_labels<I>(labels: I) -> BTreeMap<String, String>
where
    I: IntoIterator<Item = (String, String)>,
{
    let sorted: BTreeMap<String, String> = labels.into_iter().collect();
    let mut bounded = BTreeMap::new();
    for (key, value) in sorted {
        if bounded.len() == MAX_LABELS {
            break;
        }
        bounded
            .entry(truncate(key, MAX_LABEL_KEY_BYTES))
            .or_insert_with(|| truncate(value, MAX_LABEL_VALUE_BYTES));
    }
    bounded
}

/// A list cut to [`MAX_LIST_ENTRIES`].
pub fn bound_list<T>(mut list: Vec<T>) -> Vec<T> {
    list.truncate(MAX_LIST_ENTRIES);
    list
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
