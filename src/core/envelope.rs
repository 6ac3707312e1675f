//! The wire format shared with the legacy TypeScript caches (`@promethean-os/level-cache` and the
//! Redis "hybrid" cache), so a fleet can roll over gradually:
//! key `${namespace}\u241F${key}` (the bare key when there is no namespace), value JSON
//! `{"v": value, "x": expiryEpochMs}` with `x` absent when the entry has no TTL.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::error::{Error, Result};

/// SYMBOL FOR UNIT SEPARATOR, level-cache's namespace separator.
pub const SEP: char = '\u{241F}';

/// The longest key (namespace + separator + key) accepted, in bytes. Paths are bounded by
/// PATH_MAX (4096) on Linux; this leaves room for the namespace.
pub const MAX_KEY_BYTES: usize = 8192;

pub fn storage_key(namespace: &str, key: &str) -> String {
    if namespace.is_empty() {
        key.to_owned()
    } else {
        let mut s = String::with_capacity(namespace.len() + 3 + key.len());
        s.push_str(namespace);
        s.push(SEP);
        s.push_str(key);
        s
    }
}

/// The prefix every key of `namespace` starts with ("" for no namespace: every key).
pub fn namespace_prefix(namespace: &str) -> String {
    if namespace.is_empty() {
        String::new()
    } else {
        format!("{namespace}{SEP}")
    }
}

/// level-cache nests namespaces with `/`; views made by `withNamespace` do the same.
pub fn nested_namespace(base: &str, ns: &str) -> String {
    match (base.is_empty(), ns.is_empty()) {
        (_, true) => base.to_owned(),
        (true, false) => ns.to_owned(),
        (false, false) => format!("{base}/{ns}"),
    }
}

pub fn validate_namespace(ns: &str) -> Result<()> {
    if ns.contains(SEP) || ns.contains('\0') {
        return Err(Error::invalid(
            "namespace must not contain NUL or the separator U+241F",
        ));
    }
    if ns.starts_with('\u{241E}') {
        // the prefix of the stores' own keys (fencing counters, session indexes, queues)
        return Err(Error::invalid("namespace must not start with U+241E: keys starting with it are the store's own"));
    }
    if ns.len() > 256 {
        return Err(Error::invalid("namespace is longer than 256 bytes"));
    }
    Ok(())
}

pub fn validate_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::invalid("key must be a non-empty string"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(Error::invalid(format!(
            "key is {} bytes long; the limit is {MAX_KEY_BYTES}",
            key.len()
        )));
    }
    if key.contains('\0') {
        return Err(Error::invalid("key must not contain a NUL byte"));
    }
    Ok(())
}

/// A decoded value: the JSON of `v`, untouched, and the expiry.
#[derive(Debug, Clone)]
pub struct Entry {
    pub value: Box<RawValue>,
    pub expires_at: Option<i64>,
}

#[derive(Deserialize)]
struct Wire {
    v: Box<RawValue>,
    #[serde(default)]
    x: Option<serde_json::Number>,
}

impl Entry {
    /// Live until `x`; level-cache treats `x <= now` as expired, and so do we.
    pub fn is_live(&self, now_ms: i64) -> bool {
        self.expires_at.is_none_or(|x| x > now_ms)
    }

    pub fn decode(bytes: &[u8]) -> std::result::Result<Entry, String> {
        let wire: Wire = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let expires_at = match wire.x {
            None => None,
            Some(n) => Some(
                n.as_i64()
                    .or_else(|| n.as_f64().map(|f| f as i64))
                    .ok_or("x is not a number")?,
            ),
        };
        Ok(Entry { value: wire.v, expires_at })
    }

    /// Decodes a stored value, naming the key when it is not in the wire format.
    pub fn decode_stored(key: &str, bytes: &[u8]) -> Result<Entry> {
        Entry::decode(bytes).map_err(|e| {
            Error::Corrupt(format!(
                "record {key:?} is not in the {{\"v\",\"x\"}} format ({e}); it was left in place, delete it by hand if it is garbage"
            ))
        })
    }
}

/// Encodes `{"v":<value_json>,"x":<expires_at>}`; `value_json` must already be valid JSON.
pub fn encode(value_json: &str, expires_at: Option<i64>) -> String {
    let mut s = String::with_capacity(value_json.len() + 32);
    s.push_str("{\"v\":");
    s.push_str(value_json);
    if let Some(x) = expires_at {
        s.push_str(",\"x\":");
        s.push_str(&x.to_string());
    }
    s.push('}');
    s
}

/// Checks that a caller's value is one JSON document (napi callers can pass anything).
pub fn validate_json(value_json: &str) -> Result<()> {
    serde_json::from_str::<&RawValue>(value_json)
        .map(|_| ())
        .map_err(|e| Error::invalid(format!("value is not valid JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_level_cache() {
        assert_eq!(storage_key("locks", "/a"), "locks\u{241F}/a");
        assert_eq!(storage_key("", "/a"), "/a");
        assert_eq!(namespace_prefix("locks"), "locks\u{241F}");
        assert_eq!(namespace_prefix(""), "");
        assert_eq!(nested_namespace("locks", "x"), "locks/x");
        assert_eq!(nested_namespace("", "x"), "x");
    }

    #[test]
    fn envelope_round_trip() {
        let s = encode(r#"{"a":[1,2]}"#, Some(42));
        assert_eq!(s, r#"{"v":{"a":[1,2]},"x":42}"#);
        let e = Entry::decode(s.as_bytes()).unwrap();
        assert_eq!(e.value.get(), r#"{"a":[1,2]}"#);
        assert_eq!(e.expires_at, Some(42));
        assert!(e.is_live(41));
        assert!(!e.is_live(42));
        let e = Entry::decode(br#"{"v":"x"}"#).unwrap();
        assert_eq!(e.expires_at, None);
        assert!(e.is_live(i64::MAX));
        // JavaScript may write a float expiry
        assert_eq!(Entry::decode(br#"{"v":1,"x":1.5e3}"#).unwrap().expires_at, Some(1500));
    }

    #[test]
    fn corrupt_records_are_named() {
        let err = Entry::decode_stored("locks\u{241F}/a", b"not json").unwrap_err();
        assert_eq!(err.code(), "ECORRUPT");
        assert!(err.to_string().contains("/a"));
        assert!(Entry::decode(br#"{"x":1}"#).is_err());
    }

    #[test]
    fn bad_keys_and_values() {
        assert!(validate_key("").is_err());
        assert!(validate_key("a\0b").is_err());
        assert!(validate_key(&"a".repeat(MAX_KEY_BYTES + 1)).is_err());
        assert!(validate_json("{").is_err());
        assert!(validate_json("1 2").is_err());
        assert!(validate_namespace("a\u{241F}b").is_err());
    }
}
