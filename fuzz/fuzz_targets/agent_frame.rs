//! An agent's message as the collector receives it: decoded, bounded, and (a data frame)
//! ingested into a real SQLite store. Nothing an agent sends may panic the collector or
//! leave the store unable to take the next frame.
#![no_main]

use std::sync::OnceLock;

use dockermon_collector::store::{DatabaseUrl, HostId, Store};
use dockermon_proto::transport::AgentMessage;
use dockermon_proto::{HostName, limits};
use libfuzzer_sys::fuzz_target;

struct Target {
    runtime: tokio::runtime::Runtime,
    store: Store,
    host: HostId,
    _dir: tempfile::TempDir,
}

fn target() -> &'static Target {
    static TARGET: OnceLock<Target> = OnceLock::new();
    TARGET.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (store, host) = runtime.block_on(async {
            let store = Store::connect(&DatabaseUrl::sqlite_in(dir.path()))
                .await
                .unwrap();
            store.migrate().await.unwrap();
            let host = store
                .register_host(&HostName::new("fuzz").unwrap())
                .await
                .unwrap();
            (store, host)
        });
        Target {
            runtime,
            store,
            host,
            _dir: dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(AgentMessage::Data(frame)) = serde_json::from_slice::<AgentMessage>(data) else {
        return;
    };
    let mut records = frame.records;
    for record in &mut records {
        limits::enforce(record);
    }
    let target = target();
    // Refusals are fine (a value the database will not take is an error); panics are not.
    let _ = target
        .runtime
        .block_on(target.store.ingest(&[(target.host, &records)]));
});
