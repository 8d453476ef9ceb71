//! cgroup v1: one hierarchy per controller, each container a directory in each. The files
//! behind each figure are the ones Docker's stats answer comes from (containerd's cgroups
//! v1 `Stat`, as moby 20.10 and later use it):
//!
//! | figure | file |
//! |---|---|
//! | CPU total, ns | `cpuacct/…/cpuacct.usage` |
//! | CPU user / kernel, ns | `cpuacct/…/cpuacct.stat` `user`, `system` (clock ticks) |
//! | CFS periods, throttled periods, throttled ns | `cpu/…/cpu.stat` `nr_periods`, `nr_throttled`, `throttled_time` |
//! | memory usage, limit, max usage, failcnt | `memory/…/memory.usage_in_bytes`, `.limit_in_bytes`, `.max_usage_in_bytes`, `.failcnt` |
//! | inactive file, rss, cache, swap | `memory/…/memory.stat` `total_inactive_file`, `total_rss`, `total_cache`, `total_swap` |
//! | block IO bytes / operations per device | `blkio/…/blkio.io_service_bytes_recursive` / `blkio.io_serviced_recursive`, or the `blkio.throttle.*` files when the former are empty (no CFQ/BFQ scheduler) |
//! | pids | `pids/…/pids.current` |

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};

use dockermon_proto::{BlockIo, CpuThrottling};

use super::files::{self, keyed, number, optional};
use super::{CgroupCounters, Memory};

/// A container's directory in each v1 hierarchy it belongs to, by controller.
pub(super) struct Dirs(HashMap<String, PathBuf>);

impl Dirs {
    /// From the lines of `/proc/<pid>/cgroup` (`id:controller,controller:/path`): each
    /// controller's directory under `root`. `path_ok` vets each cgroup path.
    pub(super) fn of(
        root: &Path,
        proc_cgroup: &str,
        path_ok: impl Fn(&str) -> bool,
    ) -> Option<Dirs> {
        let mut dirs = HashMap::new();
        for line in proc_cgroup.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(_), Some(controllers), Some(path)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if controllers.is_empty() || controllers.starts_with("name=") {
                continue;
            }
            if !path_ok(path) {
                return None;
            }
            let relative = path.trim_start_matches('/');
            for controller in controllers.split(',') {
                // Co-mounted controllers (`cpu,cpuacct`) have their joined name as the
                // mount and each name as a link to it, as systemd and Docker set them up.
                let mount = [controller, controllers]
                    .into_iter()
                    .map(|name| root.join(name))
                    .find(|dir| dir.is_dir())
                    .unwrap_or_else(|| root.join(controller));
                dirs.insert(controller.to_owned(), mount.join(relative));
            }
        }
        dirs.contains_key("cpuacct").then_some(Dirs(dirs))
    }

    fn file(&self, controller: &str, name: &str) -> Option<PathBuf> {
        self.0.get(controller).map(|dir| dir.join(name))
    }
}

/// Reads every figure; an error that [`files::is_gone`] recognises means the container
/// stopped. A controller the container is not in leaves its figures out.
pub(super) fn read(dirs: &Dirs, ns_per_tick: u64) -> io::Result<CgroupCounters> {
    let cpuacct = |name| dirs.file("cpuacct", name).expect("checked by Dirs::of");
    let cpu_total_ns = number(&cpuacct("cpuacct.usage"))?.unwrap_or(0);
    let stat = files::read(&cpuacct("cpuacct.stat"))?;
    let ticks = |key| keyed(&stat, key).map(|t| t.saturating_mul(ns_per_tick));

    let throttling = match dirs.file("cpu", "cpu.stat") {
        Some(path) => optional(files::read(&path))?.map(|text| CpuThrottling {
            periods: keyed(&text, "nr_periods").unwrap_or(0),
            throttled_periods: keyed(&text, "nr_throttled").unwrap_or(0),
            throttled_ns: keyed(&text, "throttled_time").unwrap_or(0),
        }),
        None => None,
    };

    let memory = match dirs.file("memory", "memory.usage_in_bytes") {
        Some(usage) => match optional(number(&usage))? {
            Some(usage) => {
                let file = |name| dirs.file("memory", name).expect("memory dir");
                let stat = files::read(&file("memory.stat"))?;
                Some(Memory {
                    usage: usage.unwrap_or(0),
                    limit: number(&file("memory.limit_in_bytes"))?,
                    inactive_file: keyed(&stat, "total_inactive_file").unwrap_or(0),
                    rss: keyed(&stat, "total_rss"),
                    cache: keyed(&stat, "total_cache"),
                    swap: keyed(&stat, "total_swap"),
                    failcnt: optional(number(&file("memory.failcnt")))?.flatten(),
                    max_usage: optional(number(&file("memory.max_usage_in_bytes")))?.flatten(),
                })
            }
            None => None,
        },
        None => None,
    };

    let devices = match dirs.0.get("blkio") {
        Some(dir) => block_io(dir)?,
        None => None,
    };

    let pids = match dirs.file("pids", "pids.current") {
        Some(path) => optional(number(&path))?.flatten(),
        None => None,
    };

    Ok(CgroupCounters {
        cpu_total_ns,
        cpu_user_ns: ticks("user"),
        cpu_kernel_ns: ticks("system"),
        throttling,
        memory,
        devices,
        pids,
    })
}

/// Bytes and operations per device and direction: the CFQ/BFQ files, or the throttle
/// files when those are missing or empty (a kernel with another scheduler keeps them
/// empty), as containerd does.
fn block_io(dir: &Path) -> io::Result<Option<BTreeMap<(u64, u64), BlockIo>>> {
    let pair = |bytes: &str, ops: &str| -> io::Result<Option<BTreeMap<(u64, u64), BlockIo>>> {
        let Some(bytes) = optional(files::read(&dir.join(bytes)))? else {
            return Ok(None);
        };
        let ops = optional(files::read(&dir.join(ops)))?.unwrap_or_default();
        let mut devices = BTreeMap::new();
        add(&mut devices, &bytes, |io: &mut BlockIo| {
            (&mut io.read_bytes, &mut io.write_bytes)
        });
        add(&mut devices, &ops, |io: &mut BlockIo| {
            (&mut io.read_ops, &mut io.write_ops)
        });
        Ok(Some(devices))
    };
    let recursive = pair(
        "blkio.io_service_bytes_recursive",
        "blkio.io_serviced_recursive",
    )?;
    match recursive {
        Some(devices) if !devices.is_empty() => Ok(Some(devices)),
        _ => Ok(pair(
            "blkio.throttle.io_service_bytes",
            "blkio.throttle.io_serviced",
        )?
        .or(recursive)),
    }
}

/// Adds `major:minor Read|Write N` lines; `Sync`, `Async`, `Discard`, `Total` are left out.
fn add(
    devices: &mut BTreeMap<(u64, u64), BlockIo>,
    text: &str,
    slots: impl Fn(&mut BlockIo) -> (&mut u64, &mut u64),
) {
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let (Some(device), Some(op), Some(value)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let Some((major, minor)) = device.split_once(':') else {
            continue;
        };
        let (Ok(major), Ok(minor), Ok(value)) =
            (major.parse(), minor.parse(), value.parse::<u64>())
        else {
            continue;
        };
        let io = devices.entry((major, minor)).or_default();
        let (read, write) = slots(io);
        match op {
            "Read" => *read = read.saturating_add(value),
            "Write" => *write = write.saturating_add(value),
            _ => {}
        }
    }
}
