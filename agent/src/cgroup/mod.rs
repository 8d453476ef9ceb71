//! Container counters read straight from the kernel: the container's cgroup files (v1 or
//! v2, either of Docker's cgroup drivers) and its network namespace's `/proc/<pid>/net/dev`.
//! dockerd is not asked, so a sweep costs it nothing and is not held to its once-a-second
//! stats loop.
//!
//! Which files belong to a container comes from its init process (`State.Pid` in `docker
//! inspect`): `/proc/<pid>/cgroup` names its cgroup as the kernel sees it. That path is
//! used only when it is absolute, has no `..` and holds the container's full id (both of
//! Docker's drivers name a container's cgroup by its id: `/docker/<id>`,
//! `/system.slice/docker-<id>.scope`), so a reused PID or a cgroup namespace never points the
//! reader at another container's files; nothing a container controls (its name, labels) is
//! ever part of a path. Files are opened read-only and read up to [`files::MAX_FILE_BYTES`];
//! a cgroup or process that has vanished means the container stopped.
//!
//! The figures are the ones Docker reports, from the same files; [`v1`] and [`v2`] list the
//! file behind each. The agent checks that they agree with Docker's on a real engine
//! (`agent/tests/it/cgroup.rs`) and on recorded cgroup v2 trees.

mod files;
mod host;
mod net;
mod v1;
mod v2;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dockermon_proto::{
    BlockIo, CounterDetail, CounterGroup, CpuThrottling, NetworkCounters, StatsCounters, now_ns,
};

use crate::stats::{Reading, add_network, device_list, sum_devices};

/// The cgroup hierarchy the host runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

impl CgroupVersion {
    pub fn number(self) -> u8 {
        match self {
            CgroupVersion::V1 => 1,
            CgroupVersion::V2 => 2,
        }
    }
}

/// Reads containers' counters from a cgroup filesystem and a `/proc` of the host's PID
/// namespace.
#[derive(Debug, Clone)]
pub struct CgroupReader {
    root: PathBuf,
    proc: PathBuf,
    version: CgroupVersion,
    ns_per_tick: u64,
    /// Bytes; the limit of a container without one, as Docker reports it.
    memory_total: u64,
}

/// A container to read.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The full container id.
    pub id: &'a str,
    /// Its init process, in the host's PID namespace (`State.Pid`).
    pub pid: u32,
    /// Whether it has a network namespace of its own ([`crate::stats::has_own_network`]).
    pub own_network: bool,
}

/// What a direct read gives.
#[derive(Debug)]
pub enum Direct {
    Read(Reading),
    /// The container's cgroup or process went away while it was read: it stopped.
    Gone,
    /// Its process is not there: it has exited, or it lives in a PID namespace the agent
    /// does not see (an agent container without `--pid host`). Docker can tell which.
    NoProcess(String),
    /// This container's files cannot be read here (why): ask Docker instead.
    Unavailable(String),
}

impl CgroupReader {
    /// A reader for the cgroup filesystem mounted at `root` (usually `/sys/fs/cgroup`) and
    /// the `/proc` at `proc`. Errors say why direct reads are not possible here.
    pub fn detect(root: &Path, proc: &Path) -> Result<CgroupReader, String> {
        let version = if root.join("cgroup.controllers").is_file() {
            CgroupVersion::V2
        } else if root.join("cpuacct").is_dir() || root.join("cpu,cpuacct").is_dir() {
            CgroupVersion::V1
        } else {
            return Err(format!("no cgroup filesystem at {}", root.display()));
        };
        let ticks = rustix::param::clock_ticks_per_second();
        if ticks == 0 {
            return Err("the kernel reports no clock tick rate".into());
        }
        let memory_total = host::memory_total(proc)
            .map_err(|e| format!("cannot read {}: {e}", proc.join("meminfo").display()))?;
        let reader = CgroupReader {
            root: root.to_owned(),
            proc: proc.to_owned(),
            version,
            ns_per_tick: 1_000_000_000 / ticks,
            memory_total,
        };
        host::system_cpu(proc, reader.ns_per_tick)
            .map_err(|e| format!("cannot read {}: {e}", proc.join("stat").display()))?;
        Ok(reader)
    }

    pub fn version(&self) -> CgroupVersion {
        self.version
    }

    /// One container's counters, read now.
    pub fn read(&self, target: Target<'_>) -> Direct {
        match self.try_read(target) {
            Ok(direct) => direct,
            Err(error) if files::is_gone(&error) => Direct::Gone,
            Err(error) => Direct::Unavailable(error.to_string()),
        }
    }

    fn try_read(&self, target: Target<'_>) -> std::io::Result<Direct> {
        let process = self.proc.join(target.pid.to_string());
        // A process not there has exited, or lives in a PID namespace this agent does not
        // see (an agent container without --pid host): only Docker can tell which.
        let proc_cgroup = match files::read(&process.join("cgroup")) {
            Ok(text) => text,
            Err(error) if files::is_gone(&error) => {
                return Ok(Direct::NoProcess(format!(
                    "process {} is not visible here: it has exited, or the agent lacks the host's PID namespace (docker run --pid host)",
                    target.pid
                )));
            }
            Err(error) => return Err(error),
        };
        let path_ok = |path: &str| {
            path.starts_with('/')
                && !path.split('/').any(|part| part == "..")
                && path.contains(target.id)
        };
        let counters = match self.version {
            CgroupVersion::V2 => {
                let Some(path) = proc_cgroup.lines().find_map(|l| l.strip_prefix("0::")) else {
                    return Ok(unavailable(target, "no cgroup v2 line"));
                };
                if !path_ok(path) {
                    return Ok(unavailable(target, path));
                }
                v2::read(&self.root.join(path.trim_start_matches('/')))?
            }
            CgroupVersion::V1 => match v1::Dirs::of(&self.root, &proc_cgroup, path_ok) {
                Some(dirs) => v1::read(&dirs, self.ns_per_tick)?,
                None => return Ok(unavailable(target, proc_cgroup.trim())),
            },
        };
        let interfaces = if target.own_network {
            Some(net::interfaces(&process.join("net/dev"))?)
        } else {
            None
        };
        let (cpu_system_ns, online_cpus) = host::system_cpu(&self.proc, self.ns_per_tick)?;
        Ok(Direct::Read(Reading {
            time_ns: now_ns(),
            counters: counters.into_stats(
                interfaces,
                cpu_system_ns,
                online_cpus,
                self.memory_total,
            ),
        }))
    }
}

fn unavailable(target: Target<'_>, found: &str) -> Direct {
    let found: String = found.chars().take(200).collect();
    Direct::Unavailable(format!(
        "process {} is not in container {}'s cgroup ({found:?}): the agent needs the host's \
         PID and cgroup namespaces (docker run --pid host --cgroupns host)",
        target.pid, target.id
    ))
}

/// Memory figures in bytes, as one cgroup version gives them.
struct Memory {
    usage: u64,
    /// `None`: no limit.
    limit: Option<u64>,
    inactive_file: u64,
    rss: Option<u64>,
    cache: Option<u64>,
    swap: Option<u64>,
    failcnt: Option<u64>,
    max_usage: Option<u64>,
}

/// What one cgroup version's files give; `None` where a controller is missing.
struct CgroupCounters {
    cpu_total_ns: u64,
    cpu_user_ns: Option<u64>,
    cpu_kernel_ns: Option<u64>,
    throttling: Option<CpuThrottling>,
    memory: Option<Memory>,
    devices: Option<BTreeMap<(u64, u64), BlockIo>>,
    pids: Option<u64>,
}

impl CgroupCounters {
    /// The wire's counters. `interfaces`: `None` without a network of its own.
    fn into_stats(
        self,
        interfaces: Option<Vec<dockermon_proto::InterfaceCounters>>,
        cpu_system_ns: u64,
        online_cpus: u32,
        memory_total: u64,
    ) -> StatsCounters {
        let mut absent = Vec::new();
        if self.memory.is_none() {
            absent.push(CounterGroup::Memory);
        }
        if interfaces.is_none() {
            absent.push(CounterGroup::Network);
        }
        if self.devices.is_none() {
            absent.push(CounterGroup::BlockIo);
        }
        if self.pids.is_none() {
            absent.push(CounterGroup::Pids);
        }
        let interfaces = interfaces.unwrap_or_default();
        let mut network = NetworkCounters::default();
        for interface in &interfaces {
            add_network(&mut network, &interface.counters);
        }
        let devices = device_list(self.devices.unwrap_or_default());
        let block_io = sum_devices(&devices);
        let memory = self.memory.as_ref();
        let usage = memory.map_or(0, |m| m.usage);
        StatsCounters {
            cpu_total_ns: self.cpu_total_ns,
            cpu_system_ns,
            online_cpus,
            memory_usage_bytes: usage,
            memory_working_set_bytes: usage.saturating_sub(memory.map_or(0, |m| m.inactive_file)),
            // Docker: a limit above the machine's memory (or none) reads as the machine's.
            memory_limit_bytes: memory.map_or(0, |m| {
                m.limit
                    .map_or(memory_total, |limit| limit.min(memory_total))
            }),
            network,
            block_io,
            pids: self.pids.unwrap_or(0),
            absent,
            detail: Some(Box::new(CounterDetail {
                cpu_user_ns: self.cpu_user_ns,
                cpu_kernel_ns: self.cpu_kernel_ns,
                cpu_throttling: self.throttling,
                memory_rss_bytes: memory.and_then(|m| m.rss),
                memory_cache_bytes: memory.and_then(|m| m.cache),
                memory_swap_bytes: memory.and_then(|m| m.swap),
                memory_failcnt: memory.and_then(|m| m.failcnt),
                memory_max_usage_bytes: memory.and_then(|m| m.max_usage),
                interfaces,
                devices,
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use bollard::models::ContainerStatsResponse;

    use super::*;
    use crate::stats::reading_from;

    const V2_ID: &str = "1c8fa019edd4b9d4b2856f4932c55929c5c118c808ed5faee9a135ca6e84b039";
    const V1_ID: &str = "b29faf21b7eff959f64b4192c34d5d67a707fe8561e9eaa608cb27693fba4242";
    /// `proc/stat` of the recorded trees: the `cpu` line's first seven fields, in ns.
    const SYSTEM_CPU_NS: u64 =
        (10_132_153 + 290_696 + 3_084_719 + 46_828_483 + 16_683 + 25_195) * 10_000_000;
    /// `MemTotal` of the recorded trees, in bytes.
    const MEM_TOTAL: u64 = 8_037_100 * 1024;

    fn testdata(tree: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/cgroup")
            .join(tree)
    }

    fn reader(tree: &Path) -> CgroupReader {
        CgroupReader::detect(&tree.join("sys/fs/cgroup"), &tree.join("proc")).unwrap()
    }

    fn read(tree: &Path, id: &str, pid: u32) -> StatsCounters {
        let target = Target {
            id,
            pid,
            own_network: true,
        };
        match reader(tree).read(target) {
            Direct::Read(reading) => reading.counters,
            other => panic!("{other:?}"),
        }
    }

    fn eth0() -> serde_json::Value {
        serde_json::json!({"eth0": {"rx_bytes": 1_266_944, "rx_packets": 908, "rx_errors": 0,
            "rx_dropped": 0, "tx_bytes": 52_300, "tx_packets": 620, "tx_errors": 0, "tx_dropped": 0}})
    }

    /// What Docker answers for the same container, derived from the recorded files by moby's
    /// rules (testdata/cgroup/README.md).
    fn docker_answer(json: serde_json::Value) -> StatsCounters {
        let stats: ContainerStatsResponse = serde_json::from_value(json).unwrap();
        reading_from(&stats, true).unwrap().counters
    }

    /// The counters both sources give. Docker leaves out what it does not report (zero
    /// failcnt, swap, v2's block IO operations), so those are compared where it has them.
    fn comparable(mut counters: StatsCounters, v2: bool) -> StatsCounters {
        let detail = counters.detail.as_deref_mut().unwrap();
        detail.memory_swap_bytes = None;
        detail.memory_failcnt = detail.memory_failcnt.filter(|n| *n > 0);
        if v2 {
            counters.block_io.read_ops = 0;
            counters.block_io.write_ops = 0;
            for device in &mut detail.devices {
                device.io.read_ops = 0;
                device.io.write_ops = 0;
            }
        }
        counters
    }

    #[test]
    fn cgroup_v2_systemd_reads_what_docker_reports() {
        let direct = read(&testdata("v2-systemd"), V2_ID, 312);
        let docker = docker_answer(serde_json::json!({
            "read": "2024-05-01T12:00:00Z",
            "cpu_stats": {
                "cpu_usage": {"total_usage": 26_772_130_245_000u64,
                              "usage_in_usermode": 20_979_069_928_000u64,
                              "usage_in_kernelmode": 5_793_060_316_000u64},
                "system_cpu_usage": SYSTEM_CPU_NS, "online_cpus": 4,
                "throttling_data": {"periods": 1, "throttled_periods": 4, "throttled_time": 10_000}
            },
            "memory_stats": {"usage": 9_125_888, "limit": MEM_TOTAL, "failcnt": 1,
                "stats": {"anon": 411_045_888, "file": 0, "inactive_file": 270_336,
                          "active_file": 0, "inactive_anon": 411_316_224}},
            "blkio_stats": {"io_service_bytes_recursive": [
                {"major": 8, "minor": 0, "op": "read", "value": 512},
                {"major": 8, "minor": 0, "op": "write", "value": 4096},
                {"major": 253, "minor": 0, "op": "read", "value": 1024},
                {"major": 253, "minor": 0, "op": "write", "value": 4096}]},
            "pids_stats": {},
            "networks": eth0()
        }));
        assert_eq!(comparable(direct.clone(), true), comparable(docker, true));
        // The figures themselves, and what only the files give.
        assert_eq!(direct.memory_working_set_bytes, 9_125_888 - 270_336);
        assert_eq!(
            direct.memory_limit_bytes, MEM_TOTAL,
            "`max` reads as the host's memory"
        );
        assert_eq!(
            (direct.block_io.read_ops, direct.block_io.write_ops),
            (101, 2)
        );
        assert_eq!(
            direct.absent,
            vec![CounterGroup::Pids],
            "no pids controller here"
        );
        assert_eq!(direct.network.rx_bytes, 1_266_944, "lo is not counted");
    }

    #[test]
    fn cgroup_v1_cgroupfs_reads_what_docker_reports() {
        let direct = read(&testdata("v1-cgroupfs"), V1_ID, 985);
        // Block IO from the throttle files (no CFQ/BFQ): every op, as Docker lists them.
        let entries = |op_values: [(u64, u64, u64); 3]| {
            op_values
                .iter()
                .flat_map(|&(major, minor, read)| {
                    [("Read", read), ("Write", 0), ("Sync", 0), ("Async", read), ("Total", read)]
                        .map(|(op, value)| {
                            serde_json::json!({"major": major, "minor": minor, "op": op, "value": value})
                        })
                })
                .collect::<Vec<_>>()
        };
        let docker = docker_answer(serde_json::json!({
            "read": "2024-05-01T12:00:00Z",
            "cpu_stats": {
                "cpu_usage": {"total_usage": 95_996_653_175u64,
                              "percpu_usage": [26_571_825_468u64, 23_185_259_690u64,
                                               24_300_973_729u64, 21_937_433_730u64],
                              "usage_in_usermode": 61_950_000_000u64,
                              "usage_in_kernelmode": 7_730_000_000u64},
                "system_cpu_usage": SYSTEM_CPU_NS, "online_cpus": 4,
                "throttling_data": {"periods": 769_021, "throttled_periods": 1046,
                                    "throttled_time": 352_597_023_453u64}
            },
            "memory_stats": {"usage": 295_997_440, "max_usage": 298_532_864, "limit": MEM_TOTAL,
                "stats": {"total_inactive_file": 40_108_032, "total_rss": 230_662_144,
                          "total_cache": 65_101_824, "rss": 230_662_144, "cache": 65_101_824}},
            "blkio_stats": {
                "io_service_bytes_recursive": entries([(7, 0, 4608), (253, 0, 4608), (253, 1, 1_638_912)]),
                "io_serviced_recursive": entries([(7, 0, 2), (253, 0, 2), (253, 1, 42)])
            },
            "pids_stats": {},
            "networks": eth0()
        }));
        assert_eq!(comparable(direct.clone(), false), comparable(docker, false));
        assert_eq!(direct.memory_working_set_bytes, 295_997_440 - 40_108_032);
        assert_eq!(
            direct.memory_limit_bytes, MEM_TOTAL,
            "an unlimited v1 limit reads as the host's memory"
        );
        assert_eq!(direct.block_io.read_bytes, 1_648_128);
        assert_eq!(direct.block_io.read_ops, 46);
    }

    /// Copies the files of one directory of a recorded tree (not its subdirectories) into
    /// `to`, for another layout.
    fn relayout(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
            }
        }
    }

    #[test]
    fn cgroup_v2_cgroupfs_layout_reads_the_same() {
        let recorded = testdata("v2-systemd");
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path();
        relayout(
            &recorded.join(format!("sys/fs/cgroup/system.slice/docker-{V2_ID}.scope")),
            &tree.join(format!("sys/fs/cgroup/docker/{V2_ID}")),
        );
        relayout(&recorded.join("proc"), &tree.join("proc"));
        relayout(&recorded.join("proc/312/net"), &tree.join("proc/77/net"));
        std::fs::copy(
            recorded.join("sys/fs/cgroup/cgroup.controllers"),
            tree.join("sys/fs/cgroup/cgroup.controllers"),
        )
        .unwrap();
        std::fs::write(tree.join("proc/77/cgroup"), format!("0::/docker/{V2_ID}\n")).unwrap();
        let mut moved = read(tree, V2_ID, 77);
        let mut recorded = read(&recorded, V2_ID, 312);
        moved.detail.as_deref_mut().unwrap().memory_max_usage_bytes = None;
        recorded
            .detail
            .as_deref_mut()
            .unwrap()
            .memory_max_usage_bytes = None;
        assert_eq!(moved, recorded);
    }

    #[test]
    fn only_the_container_s_own_cgroup_is_read() {
        let tree = testdata("v2-systemd");
        let reader = reader(&tree);
        let target = |id, pid| Target {
            id,
            pid,
            own_network: true,
        };
        // A PID now in another cgroup (reused, or another PID namespace's) is not this
        // container's: Docker is asked instead.
        assert!(matches!(
            reader.read(target(V1_ID, 312)),
            Direct::Unavailable(reason) if reason.contains("--pid host")
        ));
        // A process not there: exited, or not in this agent's PID namespace; Docker knows.
        assert!(matches!(
            reader.read(target(V2_ID, 4242)),
            Direct::NoProcess(reason) if reason.contains("not visible")
        ));

        let dir = tempfile::tempdir().unwrap();
        relayout(&tree.join("proc"), &dir.path().join("proc"));
        relayout(&tree.join("proc/312/net"), &dir.path().join("proc/9/net"));
        std::fs::create_dir_all(dir.path().join("sys/fs/cgroup")).unwrap();
        std::fs::write(dir.path().join("sys/fs/cgroup/cgroup.controllers"), "cpu\n").unwrap();
        let reader = super::tests::reader(dir.path());
        // Seen from a cgroup namespace, paths climb out of it: never followed.
        std::fs::write(
            dir.path().join("proc/9/cgroup"),
            format!("0::/../../system.slice/docker-{V2_ID}.scope\n"),
        )
        .unwrap();
        assert!(matches!(
            reader.read(target(V2_ID, 9)),
            Direct::Unavailable(_)
        ));
        // The cgroup removed while the process is still listed: stopped.
        std::fs::write(
            dir.path().join("proc/9/cgroup"),
            format!("0::/system.slice/docker-{V2_ID}.scope\n"),
        )
        .unwrap();
        assert!(matches!(reader.read(target(V2_ID, 9)), Direct::Gone));
    }

    #[test]
    fn no_network_of_its_own_is_absent_not_zero() {
        let tree = testdata("v2-systemd");
        let target = Target {
            id: V2_ID,
            pid: 312,
            own_network: false,
        };
        let Direct::Read(reading) = reader(&tree).read(target) else {
            panic!()
        };
        assert!(!reading.counters.has(CounterGroup::Network));
        assert!(reading.counters.detail.unwrap().interfaces.is_empty());
    }

    #[test]
    fn detection_says_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let error =
            CgroupReader::detect(&dir.path().join("cgroup"), Path::new("/proc")).unwrap_err();
        assert!(error.contains("no cgroup filesystem"), "{error}");
        let v1 = testdata("v1-cgroupfs");
        assert_eq!(reader(&v1).version(), CgroupVersion::V1);
        assert_eq!(reader(&testdata("v2-systemd")).version(), CgroupVersion::V2);
        let error =
            CgroupReader::detect(&v1.join("sys/fs/cgroup"), &dir.path().join("proc")).unwrap_err();
        assert!(error.contains("meminfo"), "{error}");
    }
}
