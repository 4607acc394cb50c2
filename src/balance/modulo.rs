//! nginx's `hash KEY` without `consistent`: a weighted modulo with rehashing.
//!
//! As in `ngx_http_upstream_get_hash_peer` (compatible with Cache::Memcached): a running sum
//! starts at 0; each try adds `(crc32([REHASH] KEY) >> 16) & 0x7fff`, where REHASH is the
//! decimal try number and is left out of the first try; the sum modulo the total weight,
//! walked through the weights in config order, names the node. An unusable node means another
//! try; after nginx's 21 tries the caller falls back to round robin. The mapping depends on
//! the order of the `server` lines, as in nginx. Owns the weight table; imports nothing
//! outside `balance`.

/// nginx gives up after its try counter passes 20: 21 hashes in all.
const MAX_TRIES: u32 = 21;

/// Cumulative weights in config order: node i owns `ends[i-1]..ends[i]` of the modulo.
#[derive(Debug)]
pub(super) struct Modulo {
    ends: Box<[u64]>,
}

impl Modulo {
    /// The table for nodes of `weights` (each at least 1), in config order.
    pub(super) fn new(weights: &[u32]) -> Modulo {
        let ends = weights
            .iter()
            .scan(0u64, |end, &weight| {
                *end += u64::from(weight);
                Some(*end)
            })
            .collect();
        Modulo { ends }
    }

    /// The node for `key`, or None when 21 tries found no usable one (or there is no node).
    pub(super) fn pick(&self, key: &[u8], usable: &impl Fn(usize) -> bool) -> Option<usize> {
        let total = *self.ends.last()?;
        let mut sum = 0u64;
        for rehash in 0..MAX_TRIES {
            let mut crc = crc32fast::Hasher::new();
            if rehash > 0 {
                let mut digits = [0u8; 10];
                crc.update(decimal(rehash, &mut digits));
            }
            crc.update(key);
            sum += u64::from((crc.finalize() >> 16) & 0x7fff);
            let point = sum % total;
            // nginx walks the list subtracting weights; the first end past the point is the
            // same node, found by binary search.
            let node = self.ends.partition_point(|&end| end <= point);
            if usable(node) {
                return Some(node);
            }
        }
        None
    }
}

/// `value` in decimal ASCII, written into `digits` without allocating.
fn decimal(mut value: u32, digits: &mut [u8; 10]) -> &[u8] {
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            return &digits[start..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// nginx's computation spelled out the slow way, for one try.
    fn nginx_try(key: &[u8], tries: u32) -> u64 {
        (0..=tries)
            .map(|rehash| {
                let mut input = if rehash > 0 {
                    rehash.to_string().into_bytes()
                } else {
                    Vec::new()
                };
                input.extend_from_slice(key);
                u64::from((crc32fast::hash(&input) >> 16) & 0x7fff)
            })
            .sum()
    }

    #[test]
    fn first_try_is_the_memcached_hash_modulo_the_weights() {
        let table = Modulo::new(&[1, 1, 1]);
        for key in ["alice", "bob", "carol", "/index.html"] {
            let expected = (nginx_try(key.as_bytes(), 0) % 3) as usize;
            assert_eq!(table.pick(key.as_bytes(), &|_| true), Some(expected));
        }
        // Pinned: crc32("alice") = 0x278ebc47, (0x278e & 0x7fff) % 3 = 10126 % 3 = 1.
        assert_eq!(table.pick(b"alice", &|_| true), Some(1));
    }

    #[test]
    fn rehashes_continue_the_running_sum_past_unusable_nodes() {
        let table = Modulo::new(&[2, 1, 3]);
        let walk = |point: u64| [0, 0, 1, 2, 2, 2][(point % 6) as usize];
        for key in ["alice", "bob", "carol", "dave"] {
            let key = key.as_bytes();
            let first = walk(nginx_try(key, 0));
            let expected = (0..MAX_TRIES)
                .map(|tries| walk(nginx_try(key, tries)))
                .find(|&node| node != first);
            assert_eq!(table.pick(key, &|node| node != first), expected);
        }
    }

    #[test]
    fn weights_set_the_share() {
        let table = Modulo::new(&[1, 3]);
        let mut counts = [0usize; 2];
        for i in 0..40_000 {
            counts[table
                .pick(format!("user-{i}").as_bytes(), &|_| true)
                .unwrap()] += 1;
        }
        assert!((9_000..11_000).contains(&counts[0]), "{counts:?}");
    }

    #[test]
    fn gives_up_after_21_tries() {
        let table = Modulo::new(&[1, 1]);
        let asked = std::cell::Cell::new(0);
        let refuse = |_| {
            asked.set(asked.get() + 1);
            false
        };
        assert_eq!(table.pick(b"key", &refuse), None);
        assert_eq!(asked.get(), 21);
        assert_eq!(Modulo::new(&[]).pick(b"key", &|_| true), None);
        assert_eq!(decimal(20, &mut [0; 10]), b"20");
        assert_eq!(decimal(0, &mut [0; 10]), b"0");
        assert_eq!(decimal(u32::MAX, &mut [0; 10]), b"4294967295");
    }
}
