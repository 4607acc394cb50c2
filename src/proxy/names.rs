//! Header names as messages spell them, turned into `HeaderName`s through a small per-thread
//! cache.
//!
//! Every head names the same few headers, spelled the same way by the same clients and
//! upstreams. `HeaderName::from_bytes` lowercases a name and matches it against the standard
//! ones each time (~150 instructions), and for any other name (`X-Request-ID`) copies it into
//! a fresh allocation. A name seen before on this thread is found here by its exact spelling
//! and shared instead (a reference count for a custom name). The cache is direct-mapped and
//! small, and keeps only short names, so hostile heads full of random names cost a lookup and
//! a replaced slot each, and a bounded amount of memory. Pure: std and `http`.

use std::cell::RefCell;

use http::header::{HeaderName, InvalidHeaderName};

/// Slots in each thread's cache (a power of two).
const SLOTS: usize = 64;

/// Names longer than this are not cached (they are rare, and memory stays bounded).
const LONGEST: usize = 32;

/// One cached name: its spelling as received, and the name it is.
struct Slot {
    spelled: [u8; LONGEST],
    len: u8,
    name: HeaderName,
}

thread_local! {
    static CACHE: RefCell<Vec<Option<Slot>>> = RefCell::new((0..SLOTS).map(|_| None).collect());
}

/// The header name `spelled` is (any case), as [`HeaderName::from_bytes`] reads it.
#[inline]
pub fn header_name(spelled: &[u8]) -> Result<HeaderName, InvalidHeaderName> {
    if spelled.is_empty() || spelled.len() > LONGEST {
        return HeaderName::from_bytes(spelled);
    }
    let slot = slot_of(spelled);
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(found) = &cache[slot]
            && &found.spelled[..usize::from(found.len)] == spelled
        {
            return Ok(found.name.clone());
        }
        let name = HeaderName::from_bytes(spelled)?;
        let mut copy = [0; LONGEST];
        copy[..spelled.len()].copy_from_slice(spelled);
        cache[slot] = Some(Slot {
            spelled: copy,
            // At most LONGEST (32), checked above.
            len: spelled.len() as u8,
            name: name.clone(),
        });
        Ok(name)
    })
}

/// Where `spelled` (1 to [`LONGEST`] bytes) is cached: its length and first and last bytes
/// mixed, enough to keep a head's dozen names apart.
fn slot_of(spelled: &[u8]) -> usize {
    let (first, last) = (spelled[0], spelled[spelled.len() - 1]);
    let mixed = spelled.len() * 7 + usize::from(first) * 3 + usize::from(last);
    mixed % SLOTS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_reads_as_from_bytes_reads_it_however_often_and_however_spelled() {
        for spelled in [
            "Content-Type",
            "content-type",
            "X-Request-ID",
            "x-request-id",
            "Set-Cookie",
            "A",
            "X-A-Name-Exactly-Thirty-Two-Byte",
            "X-A-Name-Longer-Than-Thirty-Two-Bytes",
        ] {
            for _ in 0..3 {
                let ours = header_name(spelled.as_bytes()).unwrap();
                let theirs = HeaderName::from_bytes(spelled.as_bytes()).unwrap();
                assert_eq!(ours, theirs, "{spelled}");
            }
        }
    }

    #[test]
    fn invalid_names_are_refused_and_never_cached() {
        for bad in ["", "Bad Name", "Bad:Name", "\u{7f}", "Név"] {
            assert!(header_name(bad.as_bytes()).is_err(), "{bad:?}");
            assert!(header_name(bad.as_bytes()).is_err(), "{bad:?} again");
        }
    }

    #[test]
    fn names_sharing_a_slot_replace_each_other_and_stay_right() {
        // Same length, first and last byte: the same slot.
        let (one, two) = (b"X-Aaa-b".as_slice(), b"X-Bbb-b".as_slice());
        assert_eq!(slot_of(one), slot_of(two));
        for _ in 0..3 {
            assert_eq!(header_name(one).unwrap(), "x-aaa-b");
            assert_eq!(header_name(two).unwrap(), "x-bbb-b");
        }
    }
}
