//! What a WebSocket client sends the collector, as it is decoded.
#![no_main]

use dockermon_collector::ws::ClientMessage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<ClientMessage>(data);
});
