//! Lock semantics, independent of where records live: what a grant writes, when a holder blocks a
//! request, what re-entry and release do. The sled store applies these inside a transaction; the
//! Redis store's Lua scripts implement the same rules server-side (kept in step by the tests).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::envelope::Entry;
use super::error::{Error, Result};
use super::path::is_claim;
use super::time::{human_duration, iso8601};

/// Locks never live forever: a holder that dies must not block a file for good.
pub const DEFAULT_LOCK_TTL_MS: u64 = 300_000;
/// Upper bound on a lock's TTL: the longest a timer can wait (2^31-1 ms, 24.8 days). Holders
/// renew on timers (a JS timer past this fires at once, in a loop), and it catches
/// seconds-for-milliseconds mistakes.
pub const MAX_TTL_MS: u64 = 2_147_483_647;
/// The most paths one acquire takes: more would be one script too big for the server to run.
pub const MAX_PATHS: usize = 1000;

/// The record stored (as `v`) under the normalized path. Fields the legacy TypeScript plugin wrote
/// (`sessionId`, `agentId`, `timestamp`) keep their names; unknown fields are carried along.
/// Deserialize is written by hand: serde's `flatten` buffers the whole record first, and records
/// are read on every lock operation.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LockRecord {
    pub session_id: String,
    pub agent_id: String,
    pub path: String,
    /// When this session was first granted the lock (epoch ms).
    pub timestamp: i64,
    pub expires_at: i64,
    /// Fencing token: strictly greater for every new grant of a path.
    pub token: u64,
    /// How many times the owning session holds it (re-entrant acquire); release undoes one.
    pub hold_count: u32,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl<'de> Deserialize<'de> for LockRecord {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = LockRecord;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a lock record object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> std::result::Result<LockRecord, A::Error> {
                use serde::de::Error as _;
                let (mut session_id, mut agent_id, mut timestamp) = (None, None, None);
                let mut r = LockRecord { session_id: String::new(), agent_id: String::new(), path: String::new(), timestamp: 0, expires_at: 0, token: 0, hold_count: 1, extra: Map::new() };
                while let Some(k) = m.next_key::<std::borrow::Cow<'de, str>>()? {
                    match &*k {
                        "sessionId" => session_id = Some(m.next_value()?),
                        "agentId" => agent_id = Some(m.next_value()?),
                        "path" => r.path = m.next_value()?,
                        "timestamp" => timestamp = Some(m.next_value()?),
                        "expiresAt" => r.expires_at = m.next_value()?,
                        "token" => r.token = m.next_value()?,
                        "holdCount" => r.hold_count = m.next_value()?,
                        _ => {
                            r.extra.insert(k.into_owned(), m.next_value()?);
                        }
                    }
                }
                r.session_id = session_id.ok_or_else(|| A::Error::missing_field("sessionId"))?;
                r.agent_id = agent_id.ok_or_else(|| A::Error::missing_field("agentId"))?;
                r.timestamp = timestamp.ok_or_else(|| A::Error::missing_field("timestamp"))?;
                Ok(r)
            }
        }
        d.deserialize_map(V)
    }
}

/// Who asks for a lock, and for how long.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockRequest {
    pub session_id: String,
    pub agent_id: String,
    pub ttl_ms: u64,
    /// What people and other agents are shown of the holder (`HOLDER_FIELDS`), written into the
    /// record at a grant and updated at a re-entry.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub info: Map<String, Value>,
}

/// The holder's description a lock record may carry, each one line of text: its kind of agent
/// (`opencode`, `claude-code`, `mcp:<client>`, `human`), why it holds the path, its session's title
/// and its agent's name in its host.
pub const HOLDER_FIELDS: [&str; 4] = ["kind", "reason", "title", "agentName"];

impl LockRequest {
    pub fn new(session_id: &str, agent_id: &str, ttl_ms: Option<u64>) -> Result<Self> {
        check_id(session_id, "sessionId")?;
        check_id(agent_id, "agentId")?;
        Ok(LockRequest {
            session_id: session_id.to_owned(),
            agent_id: agent_id.to_owned(),
            ttl_ms: check_ttl(ttl_ms.unwrap_or(DEFAULT_LOCK_TTL_MS))?,
            info: Map::new(),
        })
    }

    /// Adds the holder's description: only `HOLDER_FIELDS`, each made one line without control
    /// characters and cut to 200 characters (`versions::label`); empty values are left out.
    pub fn with_info(mut self, fields: &[(&str, Option<String>)]) -> Result<Self> {
        for (k, v) in fields {
            if !HOLDER_FIELDS.contains(k) {
                return Err(Error::invalid(format!("a lock's holder description has no field {k:?} (it has {})", HOLDER_FIELDS.join(", "))));
            }
            if let Some(v) = v.as_deref().map(super::versions::label).filter(|v| !v.is_empty()) {
                self.info.insert((*k).to_owned(), Value::String(v));
            }
        }
        Ok(self)
    }
}

pub fn check_id(id: &str, what: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::invalid(format!("{what} must be a non-empty string")));
    }
    if id.len() > 1024 {
        return Err(Error::invalid(format!("{what} is longer than 1024 bytes")));
    }
    if id.contains('\0') {
        return Err(Error::invalid(format!("{what} must not contain a NUL byte")));
    }
    Ok(())
}

pub fn check_ttl(ttl_ms: u64) -> Result<u64> {
    if ttl_ms == 0 || ttl_ms > MAX_TTL_MS {
        return Err(Error::invalid(format!(
            "ttlMs must be between 1 and {MAX_TTL_MS} milliseconds, got {ttl_ms}"
        )));
    }
    Ok(ttl_ms)
}

/// Which locks a bulk release or a listing applies to. Empty matches everything.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockFilter {
    pub session_id: Option<String>,
    pub agent_id: Option<String>,
}

impl LockFilter {
    pub fn matches(&self, r: &LockRecord) -> bool {
        self.matches_ids(&r.session_id, &r.agent_id)
    }

    pub fn matches_ids(&self, session_id: &str, agent_id: &str) -> bool {
        self.session_id.as_ref().is_none_or(|s| s == session_id) && self.agent_id.as_ref().is_none_or(|a| a == agent_id)
    }
}

/// The largest fencing token a store accepts from outside or hands out: 2^53 - 1, the largest
/// integer JS holds exactly (tokens follow the clock in microseconds, which reaches it in 2255).
/// A record or a restore carrying a larger one is refused: raising a counter to it would make the
/// next grant wrap around to a smaller token, and fencing tokens never go backward.
pub const MAX_TOKEN: u64 = (1 << 53) - 1;

/// Refuses a value whose `token` (a lock record's, or anything written as one) is not a whole
/// number from 0 to `MAX_TOKEN`.
pub fn check_token_of(value_json: &str) -> Result<()> {
    if !value_json.contains("\"token\"") {
        return Ok(());
    }
    let Ok(v) = serde_json::from_str::<Value>(value_json) else { return Ok(()) };
    let Some(t) = v.get("token").filter(|t| !t.is_null()) else { return Ok(()) };
    // a value that is not a lock record: its token means nothing to the store
    if t.as_u64().is_some_and(|t| t <= MAX_TOKEN) || !v.get("sessionId").is_some_and(Value::is_string) {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "the lock record's token {t} is not a whole number from 0 to {MAX_TOKEN}: fencing tokens would go backward after it, so it is not written"
    )))
}

/// The fencing token of a value that is a lock record (a cheap look first); stores raise their
/// counters above tokens written through them, so later grants stay above.
pub fn token_of(value_json: &str) -> Option<u64> {
    if !value_json.contains("\"token\"") {
        return None;
    }
    serde_json::from_str::<LockRecord>(value_json).ok().map(|r| r.token).filter(|t| *t > 0)
}

/// What an acquire does to one path.
#[derive(Debug)]
pub enum Decision {
    /// Free (absent or expired): write a new record; the store fills in the token.
    Grant(LockRecord),
    /// Already ours: the same record, one more hold, expiry pushed out.
    Reenter(LockRecord),
    /// Someone else's, still live.
    Refuse(Value),
}

/// Parses the value stored at a lock key; anything that is not a lock record is corrupt.
pub fn parse_record(path: &str, entry: &Entry) -> Result<LockRecord> {
    serde_json::from_str(entry.value.get()).map_err(|e| {
        Error::Corrupt(format!(
            "the record at {path:?} is not a lock record ({e}); it was left in place"
        ))
    })
}

pub fn decide(path: &str, existing: Option<&Entry>, req: &LockRequest, now: i64) -> Result<Decision> {
    let expires_at = now + req.ttl_ms as i64;
    if let Some(entry) = existing.filter(|e| e.is_live(now)) {
        let mut rec = parse_record(path, entry)?;
        if rec.expires_at != 0 && rec.expires_at <= now {
            // The record says it expired even though the envelope did not: treat as free.
        } else if rec.session_id == req.session_id {
            rec.hold_count = rec.hold_count.saturating_add(1);
            // never shorter: another call of this session may still rely on the longer expiry
            rec.expires_at = rec.expires_at.max(expires_at);
            rec.agent_id.clone_from(&req.agent_id);
            for (k, v) in &req.info {
                rec.extra.insert(k.clone(), v.clone());
            }
            return Ok(Decision::Reenter(rec));
        } else {
            let mut holder = serde_json::to_value(&rec).unwrap_or(Value::Null);
            if rec.expires_at == 0 {
                // Legacy records carry no expiresAt; the envelope's x says when it goes.
                if let (Some(x), Some(obj)) = (entry.expires_at, holder.as_object_mut()) {
                    obj.insert("expiresAt".into(), x.into());
                }
            }
            return Ok(Decision::Refuse(holder));
        }
    }
    Ok(Decision::Grant(LockRecord {
        session_id: req.session_id.clone(),
        agent_id: req.agent_id.clone(),
        path: path.to_owned(),
        timestamp: now,
        expires_at,
        token: 0,
        hold_count: 1,
        extra: req.info.clone(),
    }))
}

/// What a release does to one path.
#[derive(Debug)]
pub enum ReleaseStep {
    /// Absent, expired, or another session's: nothing changes.
    NotHeld,
    /// The last hold: delete the record.
    Delete,
    /// One hold fewer: write this record back, expiry unchanged.
    WriteBack(LockRecord),
}

pub fn release_step(path: &str, existing: Option<&Entry>, session_id: &str, now: i64) -> Result<ReleaseStep> {
    let Some(entry) = existing.filter(|e| e.is_live(now)) else { return Ok(ReleaseStep::NotHeld) };
    let mut rec = parse_record(path, entry)?;
    if rec.session_id != session_id {
        return Ok(ReleaseStep::NotHeld);
    }
    if rec.hold_count > 1 {
        rec.hold_count -= 1;
        Ok(ReleaseStep::WriteBack(rec))
    } else {
        Ok(ReleaseStep::Delete)
    }
}

/// The error a refused acquire rejects with. The message starts with the legacy plugin's words
/// (`File <path> is locked by another agent`) and says who holds it, since when and until when,
/// in terms a model can act on. When the holder's lock is on another path (a claim on a folder
/// above `path`, or, for a claim, a lock below it), it names that path too.
pub fn locked_error(path: &str, holder: Value, now: i64) -> Error {
    // other agents wrote these: one line, no control characters, whatever an old record holds
    let get_s = |k: &str| holder.get(k).and_then(Value::as_str).map(super::versions::label).filter(|s| !s.is_empty()).unwrap_or_else(|| "unknown".to_owned());
    let get_i = |k: &str| holder.get(k).and_then(Value::as_f64).map(|f| f as i64);
    let held = holder.get("path").and_then(Value::as_str).filter(|p| !p.is_empty() && *p != path).map(str::to_owned);
    let what = if is_claim(path) { "Folder" } else { "File" };
    // who holds it, by kind: opencode, a person (human), Claude Code, an MCP client
    let kind = holder.get("kind").and_then(Value::as_str).map(super::versions::label).filter(|k| !k.is_empty()).map(|k| format!(" [{k}]")).unwrap_or_default();
    let mut message = format!("{what} {path} is locked by another agent: agent {} (session {}){kind}", get_s("agentId"), get_s("sessionId"));
    let since = get_i("timestamp").map(|t| format!(" since {} ({} ago)", iso8601(t), human_duration(now - t))).unwrap_or_default();
    match held {
        Some(h) if is_claim(&h) && path.starts_with(&h) => message.push_str(&format!(" has claimed the folder {h}, which contains it,{since}")),
        Some(h) => message.push_str(&format!(" has held {h}, inside it,{since}")),
        None if !since.is_empty() => message.push_str(&format!(" has held it{since}")),
        None => {}
    }
    if let Some(reason) = holder.get("reason").and_then(Value::as_str).map(super::versions::label).filter(|r| !r.is_empty()) {
        message.push_str(&format!(", for this reason: “{reason}”"));
    }
    match get_i("expiresAt").filter(|x| *x > 0) {
        Some(x) => message.push_str(&format!(
            "; the lock expires in {} (at {}) unless its holder renews it",
            human_duration(x - now),
            iso8601(x)
        )),
        None => message.push_str("; the lock has no recorded expiry"),
    }
    message.push_str(". Work on another file, or retry later.");
    Error::Locked { message, holder }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::envelope::{encode, Entry};

    fn entry_of(rec: &LockRecord, x: Option<i64>) -> Entry {
        Entry::decode(encode(&serde_json::to_string(rec).unwrap(), x).as_bytes()).unwrap()
    }

    fn req(s: &str) -> LockRequest {
        LockRequest::new(s, "agent", Some(1000)).unwrap()
    }

    #[test]
    fn free_path_is_granted() {
        let Decision::Grant(rec) = decide("/p", None, &req("s1"), 100).unwrap() else { panic!() };
        assert_eq!((rec.session_id.as_str(), rec.timestamp, rec.expires_at, rec.hold_count), ("s1", 100, 1100, 1));
    }

    #[test]
    fn same_session_reenters_other_is_refused() {
        let Decision::Grant(mut rec) = decide("/p", None, &req("s1"), 100).unwrap() else { panic!() };
        rec.token = 7;
        let e = entry_of(&rec, Some(1100));
        let Decision::Reenter(again) = decide("/p", Some(&e), &req("s1"), 200).unwrap() else { panic!() };
        assert_eq!((again.hold_count, again.token, again.timestamp, again.expires_at), (2, 7, 100, 1200));
        // a re-entry with a shorter TTL keeps the longer expiry
        let short = LockRequest::new("s1", "agent", Some(10)).unwrap();
        let Decision::Reenter(kept) = decide("/p", Some(&e), &short, 200).unwrap() else { panic!() };
        assert_eq!(kept.expires_at, 1100);
        let Decision::Refuse(holder) = decide("/p", Some(&e), &req("s2"), 200).unwrap() else { panic!() };
        assert_eq!(holder["sessionId"], "s1");
        // expired: free again
        assert!(matches!(decide("/p", Some(&e), &req("s2"), 1100).unwrap(), Decision::Grant(_)));
    }

    #[test]
    fn legacy_records_block_and_report_their_expiry() {
        let e = Entry::decode(br#"{"v":{"sessionId":"old","agentId":"ts","timestamp":5},"x":5000}"#).unwrap();
        let Decision::Refuse(holder) = decide("/p", Some(&e), &req("s2"), 10).unwrap() else { panic!() };
        assert_eq!(holder["expiresAt"], 5000);
        let err = locked_error("/p", holder, 10);
        assert_eq!(err.code(), "ELOCKED");
        assert!(err.to_string().starts_with("File /p is locked by another agent: agent ts (session old)"), "{err}");
        assert!(err.to_string().contains("expires in 4s"), "{err}");
    }

    #[test]
    fn refusals_by_a_claim_name_the_claimed_folder() {
        let holder = serde_json::json!({"sessionId": "s1", "agentId": "a1", "path": "/p/src/", "timestamp": 0, "expiresAt": 60_000});
        let e = locked_error("/p/src/a.ts", holder.clone(), 1000);
        assert!(e.to_string().starts_with("File /p/src/a.ts is locked by another agent: agent a1 (session s1) has claimed the folder /p/src/, which contains it, since"), "{e}");
        let inside = serde_json::json!({"sessionId": "s1", "agentId": "a1", "path": "/p/src/a.ts", "timestamp": 0, "expiresAt": 60_000});
        let e = locked_error("/p/", inside, 1000);
        assert!(e.to_string().starts_with("Folder /p/ is locked by another agent: agent a1 (session s1) has held /p/src/a.ts, inside it, since"), "{e}");
    }

    #[test]
    fn a_holders_description_is_recorded_cleaned_and_named_in_refusals() {
        let r = req("s1").with_info(&[("kind", Some("human".into())), ("reason", Some("rename\nthe \x1b[2Jauth module".into())), ("title", None)]).unwrap();
        let Decision::Grant(rec) = decide("/p/", None, &r, 0).unwrap() else { panic!() };
        assert_eq!(rec.extra["reason"], "rename the [2Jauth module");
        assert_eq!(rec.extra["kind"], "human");
        assert!(!rec.extra.contains_key("title"), "empty fields are left out");
        let again = req("s1").with_info(&[("reason", Some("now the tests".into()))]).unwrap();
        let Decision::Reenter(rec) = decide("/p/", Some(&entry_of(&rec, Some(1000))), &again, 1).unwrap() else { panic!() };
        assert_eq!((rec.extra["reason"].as_str(), rec.extra["kind"].as_str()), (Some("now the tests"), Some("human")), "a re-entry updates what it gives");
        let e = locked_error("/p/a", serde_json::to_value(&rec).unwrap(), 10);
        assert!(e.to_string().contains("for this reason: “now the tests”"), "{e}");
        let raw = serde_json::json!({"sessionId": "s\u{1b}]0;pwned\u{7}", "agentId": "a", "timestamp": 0});
        assert!(!locked_error("/p/a", raw, 10).to_string().contains('\u{1b}'), "escapes in another agent's ids never reach a terminal");
        assert_eq!(req("s1").with_info(&[("color", Some("red".into()))]).unwrap_err().code(), "EINVAL");
    }

    #[test]
    fn records_read_back_with_defaults_and_unknown_fields_kept() {
        let rec: LockRecord = serde_json::from_str(r#"{"sessionId":"s","agentId":"a","timestamp":5,"note":{"x":1}}"#).unwrap();
        assert_eq!((rec.hold_count, rec.token, rec.expires_at, rec.path.as_str()), (1, 0, 0, ""));
        assert_eq!(rec.extra["note"]["x"], 1);
        let back: LockRecord = serde_json::from_str(&serde_json::to_string(&rec).unwrap()).unwrap();
        assert_eq!(back, rec);
        assert!(serde_json::from_str::<LockRecord>(r#"{"agentId":"a","timestamp":5}"#).is_err(), "sessionId is required");
    }

    #[test]
    fn non_lock_values_are_corrupt_not_overwritten() {
        let e = Entry::decode(br#"{"v":[1,2,3]}"#).unwrap();
        assert_eq!(decide("/p", Some(&e), &req("s"), 0).unwrap_err().code(), "ECORRUPT");
    }

    #[test]
    fn release_steps() {
        let Decision::Grant(mut rec) = decide("/p", None, &req("s1"), 0).unwrap() else { panic!() };
        let e = entry_of(&rec, Some(1000));
        assert!(matches!(release_step("/p", Some(&e), "s2", 1).unwrap(), ReleaseStep::NotHeld));
        assert!(matches!(release_step("/p", Some(&e), "s1", 1).unwrap(), ReleaseStep::Delete));
        rec.hold_count = 2;
        let e = entry_of(&rec, Some(1000));
        let ReleaseStep::WriteBack(back) = release_step("/p", Some(&e), "s1", 1).unwrap() else { panic!() };
        assert_eq!(back.hold_count, 1);
        assert!(matches!(release_step("/p", Some(&e), "s1", 1000).unwrap(), ReleaseStep::NotHeld));
    }

    #[test]
    fn bad_requests() {
        assert_eq!(LockRequest::new("", "a", None).unwrap_err().code(), "EINVAL");
        assert_eq!(LockRequest::new("s", "a\0", None).unwrap_err().code(), "EINVAL");
        assert_eq!(LockRequest::new("s", "a", Some(0)).unwrap_err().code(), "EINVAL");
    }
}
