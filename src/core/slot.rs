//! Redis Cluster's hash slots: which of the 16384 slots a key hashes to, and a short hash tag
//! (`{tag}`) for each slot. The Redis store lays its keys out with these; the versions and views
//! beside the locks use them too, so a file's version lives in the slot of the file's lock key.

use std::sync::LazyLock;

/// Redis Cluster's 16384 hash slots.
pub const SLOTS: u16 = 16384;

/// CRC16-XMODEM, as Redis Cluster hashes keys (polynomial 0x1021, no reflection, init 0).
const CRC_TABLE: [u16; 256] = {
    let mut t = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut b = 0;
        while b < 8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
            b += 1;
        }
        t[i] = crc;
        i += 1;
    }
    t
};

fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0u16, |crc, b| (crc << 8) ^ CRC_TABLE[((crc >> 8) as u8 ^ b) as usize])
}

/// The hash slot of a key: of the part between its first `{` and the next `}`, if not empty.
pub fn slot(key: &str) -> u16 {
    let b = key.as_bytes();
    let hashed = b
        .iter()
        .position(|c| *c == b'{')
        .and_then(|open| b[open + 1..].iter().position(|c| *c == b'}').map(|close| &b[open + 1..open + 1 + close]))
        .filter(|t| !t.is_empty())
        .unwrap_or(b);
    crc16(hashed) % SLOTS
}

/// For every slot, a short tag that hashes to it: `{tag}` puts a key there.
static TAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    let mut tags = vec![String::new(); SLOTS as usize];
    let mut left = SLOTS as usize;
    let mut i: u64 = 0;
    while left > 0 {
        let t = radix36(i);
        let s = (crc16(t.as_bytes()) % SLOTS) as usize;
        if tags[s].is_empty() {
            tags[s] = t;
            left -= 1;
        }
        i += 1;
    }
    tags
});

fn radix36(mut n: u64) -> String {
    const D: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(D[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ascii")
}

/// The tag of a slot.
pub fn tag(slot: u16) -> &'static str {
    &TAGS[slot as usize]
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_redis_clusters() {
        // the examples of the Redis Cluster specification
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(slot("{user1000}.following"), slot("{user1000}.followers"));
        assert_eq!(slot("foo{}{bar}"), crc16(b"foo{}{bar}") % SLOTS);
        assert_eq!(slot("foo{{bar}}zap"), crc16(b"{bar") % SLOTS);
        assert_eq!(slot("foo{bar}{zap}"), crc16(b"bar") % SLOTS);
    }

    #[test]
    fn every_slot_has_a_short_tag_that_hashes_to_it() {
        assert!(TAGS.iter().all(|t| !t.is_empty() && t.len() <= 4));
        for s in [0, 1, 5000, SLOTS - 1] {
            assert_eq!(slot(&format!("x{{{}}}y", tag(s))), s);
        }
    }
}
