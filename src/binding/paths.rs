use napi_derive::napi;

use super::error::to_napi;
use crate::core::path;

/// The canonical form of a path, as locks key it (see `core::path`).
#[napi]
pub fn normalize_path(file_path: String, base_dir: Option<String>) -> napi::Result<String> {
    path::normalize_path(&file_path, base_dir.as_deref()).map_err(to_napi)
}

/// Text another agent wrote, as one line without control characters, cut to `max` characters
/// (see `core::text`): the rule the JS layer's `oneLine` follows too.
#[napi]
pub fn one_line(text: String, max: u32) -> String {
    crate::core::text::one_line(&text, max as usize)
}
