//! The host record: what engine and machine this agent watches.

use dockermon_proto::{HostInfo, PROTOCOL_VERSION, now_ns};

use crate::docker::Docker;

fn count(n: Option<i64>) -> u32 {
    n.and_then(|n| u32::try_from(n).ok()).unwrap_or(0)
}

/// Reads `/info` and `/version`.
pub async fn host_info(
    docker: &Docker,
    stats_source: &str,
) -> Result<HostInfo, bollard::errors::Error> {
    let info = docker.api.info().await?;
    let version = docker.api.version().await?;
    Ok(HostInfo {
        time_ns: now_ns(),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        protocol_version: PROTOCOL_VERSION,
        engine_id: info.id.unwrap_or_default(),
        hostname: info.name.unwrap_or_default(),
        docker_version: version.version.or(info.server_version).unwrap_or_default(),
        api_version: docker.api_version.clone(),
        os: info.operating_system.unwrap_or_default(),
        os_type: info.os_type.unwrap_or_default(),
        kernel_version: info.kernel_version.unwrap_or_default(),
        architecture: info.architecture.unwrap_or_default(),
        cpus: count(info.ncpu),
        memory_bytes: info
            .mem_total
            .and_then(|m| u64::try_from(m).ok())
            .unwrap_or(0),
        cgroup_version: match info.cgroup_version.map(|v| v.to_string()).as_deref() {
            Some("2") => 2,
            _ => 1,
        },
        cgroup_driver: info
            .cgroup_driver
            .map(|d| d.to_string())
            .unwrap_or_default(),
        storage_driver: info.driver.unwrap_or_default(),
        stats_source: stats_source.to_owned(),
        containers: count(info.containers),
        containers_running: count(info.containers_running),
        containers_paused: count(info.containers_paused),
        containers_stopped: count(info.containers_stopped),
        images: count(info.images),
    })
}
