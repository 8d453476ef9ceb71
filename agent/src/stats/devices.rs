//! Block device numbers → `/dev/<name>`, the name cAdvisor's `device` label carries, from
//! `/sys/dev/block/<major>:<minor>`: a symlink whose last component is the kernel's name
//! for the device. Docker containers see the host's sysfs, so this works for an agent in a
//! container too. Each device is looked up once; one the agent cannot see keeps no name.

use std::collections::HashMap;
use std::path::PathBuf;

use dockermon_proto::StatsCounters;
use dockermon_proto::limits::{MAX_NAME_BYTES, truncate};

pub struct DeviceNames {
    root: PathBuf,
    known: HashMap<(u64, u64), Option<String>>,
}

impl Default for DeviceNames {
    fn default() -> Self {
        DeviceNames::at("/sys/dev/block")
    }
}

impl DeviceNames {
    /// Names from a `dev/block` directory laid out as sysfs lays it out.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        DeviceNames {
            root: root.into(),
            known: HashMap::new(),
        }
    }

    /// The name of device `major:minor`, if the agent can see it.
    pub fn name(&mut self, major: u64, minor: u64) -> Option<String> {
        let root = &self.root;
        self.known
            .entry((major, minor))
            .or_insert_with(|| {
                let target = std::fs::read_link(root.join(format!("{major}:{minor}"))).ok()?;
                let name = target.file_name()?.to_str()?;
                Some(truncate(format!("/dev/{name}"), MAX_NAME_BYTES))
            })
            .clone()
    }

    /// Fills in the names of a sample's devices.
    pub fn fill(&mut self, counters: &mut StatsCounters) {
        if let Some(detail) = counters.detail.as_deref_mut() {
            for device in &mut detail.devices {
                device.name = self.name(device.major, device.minor);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_numbers_resolve_through_sysfs_links() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(
            "../../devices/pci0000:00/0000:00:05.0/virtio2/block/vda",
            dir.path().join("254:0"),
        )
        .unwrap();
        let mut names = DeviceNames::at(dir.path());
        assert_eq!(names.name(254, 0).as_deref(), Some("/dev/vda"));
        assert_eq!(names.name(8, 0), None, "a device not in sysfs has no name");
        // Looked up once: a link added later does not change the answer.
        std::os::unix::fs::symlink("../../devices/virtual/block/loop0", dir.path().join("8:0"))
            .unwrap();
        assert_eq!(names.name(8, 0), None);
    }
}
