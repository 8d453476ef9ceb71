//! The Dockermon collector: stores what agents report and serves it.
//!
//! Storage, transport and the APIs arrive with their issues; see docs/ARCHITECTURE.md.
