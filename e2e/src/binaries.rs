//! The project's own binaries, built fresh for end-to-end tests.
//!
//! Cargo builds a package's binaries only for that package's own tests, so the end-to-end
//! suite asks cargo (the one running the tests, `$CARGO`) to build them once per test
//! process: a no-op when they are up to date, and never a stale binary. It builds exactly
//! what `cargo test --workspace` (and nextest) build, because building the binaries alone
//! unifies dependency features differently and would rebuild the world both ways, every
//! time.

use std::path::PathBuf;
use std::sync::OnceLock;

/// Paths of `dockermon-agent` and `dockermon-collector`, built for the current profile.
pub fn binaries() -> &'static (PathBuf, PathBuf) {
    static BUILT: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    BUILT.get_or_init(|| {
        // target/<profile>/deps/<test binary>: the binaries live two levels up.
        let exe = std::env::current_exe().expect("the test binary has a path");
        let profile_dir = exe
            .parent()
            .and_then(|deps| deps.parent())
            .expect("target/<profile>/deps")
            .to_owned();
        let release = profile_dir
            .file_name()
            .is_some_and(|name| name == "release");
        #[allow(clippy::disallowed_methods)] // set by cargo for the processes it runs
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut command = std::process::Command::new(cargo);
        command
            .current_dir(&workspace)
            .args(["test", "--no-run", "--quiet", "--workspace"]);
        // Cargo describes this test's own package in the environment (CARGO_PKG_NAME, …);
        // some build scripts rerun when those change, so they must not leak into the build.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if [
                "CARGO_PKG_",
                "CARGO_MANIFEST_",
                "CARGO_CRATE_",
                "CARGO_BIN_",
                "CARGO_PRIMARY_",
                "CARGO_TARGET_TMPDIR",
            ]
            .iter()
            .any(|prefix| name.starts_with(prefix))
            {
                command.env_remove(name.as_ref());
            }
        }
        if release {
            command.arg("--release");
        }
        let status = command.status().expect("cargo runs");
        assert!(status.success(), "building the binaries failed");
        (
            profile_dir.join("dockermon-agent"),
            profile_dir.join("dockermon-collector"),
        )
    })
}
