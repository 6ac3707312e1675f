use napi_derive::napi;

use super::error::to_napi;
use crate::core::path;

/// The canonical form of a path, as locks key it (see `core::path`).
#[napi]
pub fn normalize_path(file_path: String, base_dir: Option<String>) -> napi::Result<String> {
    path::normalize_path(&file_path, base_dir.as_deref()).map_err(to_napi)
}
