//! Plain Rust, no napi types: lock and cache semantics, wire format, paths, configuration.

pub mod aliases;
pub mod config;
pub mod envelope;
pub mod error;
pub mod fingerprint;
pub mod handle;
pub mod held;
pub mod lock;
pub mod lost;
pub mod metrics;
pub mod path;
pub mod secrets;
pub mod slot;
pub mod store;
pub mod text;
pub mod time;
pub mod versions;
pub mod wait;
pub mod wake;
pub mod debug;

pub use error::{Error, Result};
