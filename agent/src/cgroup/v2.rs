//! cgroup v2: one hierarchy, each container one directory. The files behind each figure
//! are the ones Docker's stats answer comes from on v2 (containerd's cgroups v2 `Stat`,
//! moby `statsV2`):
//!
//! | figure | file |
//! |---|---|
//! | CPU total / user / kernel, ns | `cpu.stat` `usage_usec`, `user_usec`, `system_usec` (µs) |
//! | CFS periods, throttled periods, throttled ns | `cpu.stat` `nr_periods`, `nr_throttled`, `throttled_usec` (with the `cpu` controller) |
//! | memory usage, limit | `memory.current`, `memory.max` (`max`: no limit) |
//! | inactive file, anon (rss), file (cache) | `memory.stat` `inactive_file`, `anon`, `file` |
//! | swap | `memory.swap.current` |
//! | failcnt | `memory.events` `oom` (as Docker reports it on v2) |
//! | max usage | `memory.peak` (Linux 5.19+) |
//! | block IO bytes / operations per device | `io.stat` `rbytes`, `wbytes`, `rios`, `wios` |
//! | pids | `pids.current` |

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use dockermon_proto::{BlockIo, CpuThrottling};

use super::files::{self, keyed, number, optional};
use super::{CgroupCounters, Memory};

/// Reads every figure from the container's directory; an error that [`files::is_gone`]
/// recognises means the container stopped. A controller not enabled for the container
/// leaves its figures out.
pub(super) fn read(dir: &Path) -> io::Result<CgroupCounters> {
    let cpu = files::read(&dir.join("cpu.stat"))?;
    let usec = |key| keyed(&cpu, key).map(|us| us.saturating_mul(1000));
    let throttling = keyed(&cpu, "nr_periods").map(|periods| CpuThrottling {
        periods,
        throttled_periods: keyed(&cpu, "nr_throttled").unwrap_or(0),
        throttled_ns: usec("throttled_usec").unwrap_or(0),
    });

    let memory = match optional(number(&dir.join("memory.current")))? {
        Some(usage) => {
            let stat = files::read(&dir.join("memory.stat"))?;
            let events = optional(files::read(&dir.join("memory.events")))?;
            Some(Memory {
                usage: usage.unwrap_or(0),
                limit: number(&dir.join("memory.max"))?,
                inactive_file: keyed(&stat, "inactive_file").unwrap_or(0),
                rss: keyed(&stat, "anon"),
                cache: keyed(&stat, "file"),
                swap: optional(number(&dir.join("memory.swap.current")))?.flatten(),
                failcnt: events.as_deref().and_then(|e| keyed(e, "oom")),
                max_usage: optional(number(&dir.join("memory.peak")))?.flatten(),
            })
        }
        None => None,
    };

    let devices = optional(files::read(&dir.join("io.stat")))?.map(|text| io_stat(&text));
    let pids = optional(number(&dir.join("pids.current")))?.flatten();

    Ok(CgroupCounters {
        cpu_total_ns: usec("usage_usec").unwrap_or(0),
        cpu_user_ns: usec("user_usec"),
        cpu_kernel_ns: usec("system_usec"),
        throttling,
        memory,
        devices,
        pids,
    })
}

/// `major:minor rbytes=N wbytes=N rios=N wios=N dbytes=N dios=N` per device.
fn io_stat(text: &str) -> BTreeMap<(u64, u64), BlockIo> {
    let mut devices = BTreeMap::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some((major, minor)) = fields.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (major.parse(), minor.parse()) else {
            continue;
        };
        let io: &mut BlockIo = devices.entry((major, minor)).or_default();
        for field in fields {
            let Some((key, value)) = field.split_once('=') else {
                continue;
            };
            let Ok(value) = value.parse::<u64>() else {
                continue;
            };
            match key {
                "rbytes" => io.read_bytes = value,
                "wbytes" => io.write_bytes = value,
                "rios" => io.read_ops = value,
                "wios" => io.write_ops = value,
                _ => {}
            }
        }
    }
    devices
}
