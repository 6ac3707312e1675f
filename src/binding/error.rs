//! Maps every core error once. napi's async rejections carry only fixed status codes, so the code,
//! the message and the lock holder travel as JSON after a marker byte; `lib/errors.js` decodes it.

use serde_json::json;

use crate::core::Error;

pub const MARKER: char = '\u{1}';

/// The error as the JS layer decodes it: the marker, then {code, message, holder} as JSON.
pub fn encode(e: &Error) -> String {
    let payload = json!({
        "code": e.code(),
        // what JS shows a person or a model: no secret, and no control character another agent put in an id
        "message": crate::core::text::clean(&crate::core::secrets::scrub(&e.to_string())),
        "holder": e.holder(),
    });
    format!("{MARKER}{payload}")
}

pub fn to_napi(e: Error) -> napi::Error {
    napi::Error::new(napi::Status::GenericFailure, encode(&e))
}

pub fn invalid(msg: impl Into<String>) -> napi::Error {
    to_napi(Error::invalid(msg))
}

/// JS numbers arrive as f64: milliseconds must be whole, positive and finite.
pub fn millis(v: Option<f64>, name: &str) -> napi::Result<Option<u64>> {
    match v {
        None => Ok(None),
        Some(f) if f.is_finite() && f >= 1.0 && f.fract() == 0.0 && f <= 9.0e15 => Ok(Some(f as u64)),
        Some(f) => Err(invalid(format!("{name} must be a whole number of milliseconds >= 1, got {f}"))),
    }
}
