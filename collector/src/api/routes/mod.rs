//! The API's resources, one module each.

pub mod activity;
pub mod auth;
pub mod containers;
pub mod hosts;
pub mod join_tokens;
pub mod profiles;
pub mod resources;
pub mod users;
