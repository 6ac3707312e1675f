#![cfg_attr(test, allow(dead_code))]
//! The napi layer: argument checking and conversion only. The hand-written `lib/` JS layer on top
//! turns encoded errors into `FileLockError`s and JSON text into values.

mod cache;
mod error;
mod factories;
mod paths;
