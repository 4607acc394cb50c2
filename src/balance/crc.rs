//! CRC-32 (IEEE, as nginx's `ngx_crc32_short`) of a request's hash key.
//!
//! crc32fast is the right tool for long inputs (ring points at build time, long keys), but on
//! the path of every `ip_hash` request the key is three bytes (an IPv4 client's /24) and
//! crc32fast spends more finding out which implementation to run than hashing. A 1 KiB table
//! built at compile time does a short key in a few instructions a byte. Owns only that;
//! imports nothing.

/// Keys up to this long go byte by byte through the table; longer ones to crc32fast.
const SHORT: usize = 64;

/// The reflected IEEE polynomial's table: `TABLE[b]` is the CRC step for byte `b`.
static TABLE: [u32; 256] = table();

const fn table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut byte = 0;
    while byte < 256 {
        let mut crc = byte as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = (crc >> 1) ^ (0xedb8_8320 & (crc & 1).wrapping_neg());
            bit += 1;
        }
        table[byte] = crc;
        byte += 1;
    }
    table
}

/// The CRC-32 of `key`, equal to `crc32fast::hash(key)`.
pub(super) fn crc32(key: &[u8]) -> u32 {
    if key.len() > SHORT {
        return crc32fast::hash(key);
    }
    let mut crc = !0u32;
    for &byte in key {
        crc = (crc >> 8) ^ TABLE[usize::from((crc as u8) ^ byte)];
    }
    !crc
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn known_values() {
        // The standard check value, and an ip_hash key (127.0.0.x's /24).
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(&[127, 0, 0]), crc32fast::hash(&[127, 0, 0]));
    }

    proptest! {
        /// Short and long keys alike hash as crc32fast does (the ring was built with it).
        #[test]
        fn equals_crc32fast(key in proptest::collection::vec(any::<u8>(), 0..100)) {
            prop_assert_eq!(crc32(&key), crc32fast::hash(&key));
        }
    }
}
