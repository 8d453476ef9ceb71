//! `sqlx::migrate!` embeds `migrations/` at compile time; without this, adding a migration
//! alone would not rebuild the collector, and it would run without it.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
