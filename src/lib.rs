//! opencode-file-lock: file locks for AI coding agents.
//!
//! `core` holds the semantics (no napi types), `stores` the sled / Redis / hybrid stores behind
//! `core::store::Store`, and `binding` the thin napi layer that converts arguments and errors.

pub mod core;
pub mod stores;

mod binding;
