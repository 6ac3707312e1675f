#![cfg_attr(test, allow(dead_code))]
//! The napi layer: argument checking and conversion only. The hand-written `lib/` JS layer on top
//! turns encoded errors into `FileLockError`s and JSON text into values.

mod bridge;
mod cache;
mod error;
mod factories;
mod paths;
mod secrets;
mod versions;

/// One tokio worker: a Redis call's task and the connection's driver then share a thread, which
/// saves a cross-thread wake-up per call on this I/O-bound work.
#[napi_derive::module_init]
fn init() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    napi::bindgen_prelude::create_custom_tokio_runtime(rt);
}
