//! The wire model shared by the Dockermon agent and collector.
//!
//! Every record an agent reports is a [`Record`]: serialised as one JSON object whose
//! `"type"` field names the variant (`host`, `inventory`, `event`, `stats`, `usage`,
//! `profile`).
//! The same shapes travel over the agent ↔ collector transport and out of
//! `dockermon-agent --output stdout`.
//!
//! Compatibility: fields are only ever added within one [`PROTOCOL_VERSION`], so readers
//! ignore fields they do not know (no `deny_unknown_fields` here). Removing or re-typing a
//! field bumps the protocol version.
//!
//! Trust: the collector treats everything here as untrusted input. [`limits`] holds the
//! bounds both sides apply to strings and maps that come from containers (names, labels,
//! event attributes); [`HostName`] validates itself on deserialisation.
//!
//! Times are Unix nanoseconds in `i64` fields whose names end in `_ns`: Docker's own
//! precision, and no room for a unit mix-up.

mod event;
mod host;
mod ids;
mod inventory;
pub mod limits;
mod profile;
mod record;
pub mod redact;
mod stats;
pub mod transport;
mod usage;

pub use event::{DockerEvent, EventKind};
pub use host::HostInfo;
pub use ids::{ContainerId, HostName, InvalidHostName};
pub use inventory::{
    Compose, Container, ContainerMount, ContainerNetwork, ContainerResources, ContainerState,
    Health, Image, InventoryUpdate, Network, ObjectKind, ObjectRef, Port, Truncated, Volume,
};
pub use profile::{ProfileBatch, ProfileEnd, ProfileEndReason, ProfileSample};
pub use record::Record;
pub use stats::{
    BlockIo, CounterDetail, CounterGroup, CpuThrottling, DeviceIo, InterfaceCounters,
    NetworkCounters, StatsCounters, StatsRates, StatsSample,
};
pub use usage::{ContainerDisk, DiskUsage, UsageSummary, VolumeDisk};

/// Version of the record model and the agent ↔ collector protocol. Bumped on any change
/// that an older reader could misinterpret; additive fields do not bump it.
pub const PROTOCOL_VERSION: u32 = 1;

/// The current time as Unix nanoseconds.
pub fn now_ns() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_nanos()).unwrap_or(i64::MAX)
}
