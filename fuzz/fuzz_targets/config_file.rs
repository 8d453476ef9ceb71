//! Both binaries' configuration files, and the durations and sizes written in them.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = serde_yaml::from_slice::<dockermon_agent::config::FileConfig>(data);
    let _ = serde_yaml::from_slice::<dockermon_collector::config::FileConfig>(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = dockermon_agent::config_file::duration(text);
        let _ = dockermon_agent::config_file::List::Text(text.to_owned()).items();
    }
});
