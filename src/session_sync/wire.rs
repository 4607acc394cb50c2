//! What a zone's sessions look like in Redis: the key of each session, the pattern that finds a
//! zone's keys, the channel new sessions are announced on, and the announcement itself.
//!
//! Keys are `tether:{zone}:{key}` with the sticky value as the string and the zone's timeout as
//! the expiry, so an operator can read them with `redis-cli --scan --pattern 'tether:*'`. The
//! key part is the session key's bytes as they came (Redis keys are binary-safe). Pub/sub
//! channels are shared by every database of a server, keys are not; so the channel names the
//! database (`tether@{db}:{zone}`) and two farms on one Redis with different databases do not
//! hear each other.
//!
//! An announcement carries who sent it, so an instance ignores the echo of its own, then the
//! value and the key: `v1:{origin as 16 hex digits}:{value length}:{value}{key}` (the value's
//! length first because the key may hold any byte). Pure: std only; must not import the redis
//! client or tokio.

/// The names one zone uses in one Redis database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// `tether:{zone}:`, the start of every session key of the zone.
    prefix: Vec<u8>,
    /// The SCAN pattern matching exactly the zone's keys.
    pattern: Vec<u8>,
    /// The pub/sub channel new sessions are announced on.
    channel: Vec<u8>,
}

impl Names {
    /// The names of zone `zone` in database `db`.
    pub fn new(zone: &str, db: i64) -> Names {
        let prefix = format!("tether:{zone}:").into_bytes();
        // The zone's name is matched literally: a `*` or `[` in it must not widen the scan to
        // another zone's keys.
        let mut pattern = Vec::with_capacity(prefix.len() + 4);
        for &byte in &prefix {
            if matches!(byte, b'*' | b'?' | b'[' | b']' | b'\\') {
                pattern.push(b'\\');
            }
            pattern.push(byte);
        }
        pattern.push(b'*');
        let channel = format!("tether@{db}:{zone}").into_bytes();
        Names {
            prefix,
            pattern,
            channel,
        }
    }

    /// The Redis key of session `key`.
    pub fn key(&self, key: &[u8]) -> Vec<u8> {
        [self.prefix.as_slice(), key].concat()
    }

    /// The session key a Redis key of this zone stands for; `None` for another zone's key.
    pub fn session<'a>(&self, redis_key: &'a [u8]) -> Option<&'a [u8]> {
        redis_key.strip_prefix(self.prefix.as_slice())
    }

    /// The SCAN `MATCH` pattern for the zone's keys.
    pub fn pattern(&self) -> &[u8] {
        &self.pattern
    }

    /// The channel the zone's new sessions are announced on.
    pub fn channel(&self) -> &[u8] {
        &self.channel
    }
}

/// A session announced on a zone's channel.
#[derive(Debug, PartialEq, Eq)]
pub struct Announcement<'a> {
    /// The sending worker's id (a random number each worker draws when it starts).
    pub origin: u64,
    /// The session key.
    pub key: &'a [u8],
    /// The sticky value it is pinned to.
    pub value: &'a str,
}

/// The format's version; a message that does not start with it is ignored, so a later format
/// can run beside this one during an upgrade.
const VERSION: &[u8] = b"v1:";

/// The announcement of session `key` pinned to `value`, sent by worker `origin`.
pub fn announce(origin: u64, key: &[u8], value: &str) -> Vec<u8> {
    let head = format!("{origin:016x}:{}:", value.len());
    [VERSION, head.as_bytes(), value.as_bytes(), key].concat()
}

/// An announcement read back; `None` for anything else on the channel (another format, a
/// truncated message, a value that is not UTF-8).
pub fn read_announcement(message: &[u8]) -> Option<Announcement<'_>> {
    let rest = message.strip_prefix(VERSION)?;
    let (origin, rest) = split_at_colon(rest)?;
    if origin.len() != 16 {
        return None;
    }
    let origin = u64::from_str_radix(std::str::from_utf8(origin).ok()?, 16).ok()?;
    let (length, rest) = split_at_colon(rest)?;
    let length: usize = std::str::from_utf8(length).ok()?.parse().ok()?;
    if rest.len() < length {
        return None;
    }
    let (value, key) = rest.split_at(length);
    let value = std::str::from_utf8(value).ok()?;
    Some(Announcement { origin, key, value })
}

/// The bytes before the first `:` and those after it.
fn split_at_colon(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = bytes.iter().position(|&byte| byte == b':')?;
    Some((&bytes[..colon], &bytes[colon + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_key_is_the_zone_prefix_and_the_key_bytes_and_reads_back() {
        let names = Names::new("chat", 0);
        let key = names.key(b"tok:\x00\xff");
        assert_eq!(key, b"tether:chat:tok:\x00\xff");
        assert_eq!(names.session(&key), Some(&b"tok:\x00\xff"[..]));
        assert_eq!(names.session(b"tether:chatter:x"), None);
        assert_eq!(Names::new("chatter", 0).session(&key), None);
    }

    #[test]
    fn the_scan_pattern_matches_the_zone_literally() {
        assert_eq!(Names::new("chat", 0).pattern(), b"tether:chat:*");
        assert_eq!(
            Names::new("a*[b]?\\", 0).pattern(),
            b"tether:a\\*\\[b\\]\\?\\\\:*"
        );
    }

    #[test]
    fn the_channel_names_the_database_because_pub_sub_spans_them_all() {
        assert_eq!(Names::new("chat", 0).channel(), b"tether@0:chat");
        assert_ne!(
            Names::new("chat", 0).channel(),
            Names::new("chat", 3).channel()
        );
    }

    #[test]
    fn an_announcement_reads_back_whatever_bytes_its_key_holds() {
        for key in [&b"plain"[..], b"with:colons:", b"\x00\xff\n", b""] {
            let message = announce(0xdead_beef, key, "4f2a9c0d11e3b7a5");
            let read = read_announcement(&message).expect("a valid announcement");
            assert_eq!(
                read,
                Announcement {
                    origin: 0xdead_beef,
                    key,
                    value: "4f2a9c0d11e3b7a5"
                }
            );
        }
        let message = announce(u64::MAX, b"k", "v:with:colons");
        assert_eq!(
            read_announcement(&message).map(|a| a.value),
            Some("v:with:colons")
        );
    }

    #[test]
    fn anything_else_on_the_channel_is_ignored() {
        let good = announce(7, b"key", "value");
        for bad in [
            &b""[..],
            b"hello",
            b"v2:0000000000000007:5:valuekey",
            b"v1:7:5:valuekey",
            b"v1:000000000000000g:5:valuekey",
            b"v1:0000000000000007:x:valuekey",
            b"v1:0000000000000007:50:valuekey",
            b"v1:0000000000000007:2:\xff\xfekey",
            &good[..good.len() - 9],
        ] {
            assert_eq!(
                read_announcement(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
