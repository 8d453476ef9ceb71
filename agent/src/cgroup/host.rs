//! Host-wide figures a container sample carries, read as Docker reads them.

use std::io;
use std::path::Path;

use super::files;

/// The host's CPU time (all cores, ns) and online CPUs, from the first lines of
/// `/proc/stat`: Docker's `system_cpu_usage` is the sum of the `cpu` line's first seven
/// fields (user, nice, system, idle, iowait, irq, softirq) in clock ticks, and its
/// `online_cpus` the number of `cpuN` lines (moby `daemon/stats/collector_unix.go`).
pub(super) fn system_cpu(proc: &Path, ns_per_tick: u64) -> io::Result<(u64, u32)> {
    let path = proc.join("stat");
    let text = files::read(&path)?;
    let mut total = None;
    let mut online = 0u32;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("cpu") else {
            break;
        };
        if rest.starts_with(' ') {
            let fields: Vec<u64> = rest
                .split_whitespace()
                .take(7)
                .map(|f| f.parse::<u64>())
                .collect::<Result<_, _>>()
                .map_err(|_| files::invalid(&path, "clock ticks", line))?;
            if fields.len() < 7 {
                return Err(files::invalid(&path, "seven CPU fields", line));
            }
            total = Some(fields.iter().sum::<u64>().saturating_mul(ns_per_tick));
        } else if rest.starts_with(|c: char| c.is_ascii_digit()) {
            online += 1;
        }
    }
    let total = total.ok_or_else(|| files::invalid(&path, "a `cpu` line", ""))?;
    Ok((total, online.max(1)))
}

/// The host's memory in bytes (`MemTotal` in `/proc/meminfo`): what Docker reports as the
/// limit of a container without one (moby: a limit above the machine's memory is the
/// machine's memory).
pub(super) fn memory_total(proc: &Path) -> io::Result<u64> {
    let path = proc.join("meminfo");
    let text = files::read(&path)?;
    text.lines()
        .find_map(|line| {
            let kib = line.strip_prefix("MemTotal:")?.trim().strip_suffix("kB")?;
            kib.trim().parse::<u64>().ok()
        })
        .map(|kib| kib * 1024)
        .ok_or_else(|| files::invalid(&path, "MemTotal", ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_cpu_sums_seven_fields_and_counts_cpus() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("stat"),
            "cpu  100 2 30 1000 4 5 6 7 0 0\ncpu0 50 1 15 500 2 2 3 3 0 0\n\
             cpu1 50 1 15 500 2 3 3 4 0 0\nintr 1 2 3\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("meminfo"),
            "MemTotal:       24576000 kB\nMemFree:  1 kB\n",
        )
        .unwrap();
        let (total, online) = system_cpu(dir.path(), 10_000_000).unwrap();
        assert_eq!(
            total,
            (100 + 2 + 30 + 1000 + 4 + 5 + 6) * 10_000_000,
            "steal is not counted"
        );
        assert_eq!(online, 2);
        assert_eq!(memory_total(dir.path()).unwrap(), 24_576_000 * 1024);
    }
}
