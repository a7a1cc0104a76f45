//! Flow keys and ids.
use std::net::IpAddr;

/// Direction-free 5-tuple: the lower (address, port) endpoint comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub a: (IpAddr, u16),
    pub b: (IpAddr, u16),
    pub proto: u8,
}

impl FlowKey {
    pub fn new(src: (IpAddr, u16), dst: (IpAddr, u16), proto: u8) -> FlowKey {
        if src <= dst {
            FlowKey {
                a: src,
                b: dst,
                proto,
            }
        } else {
            FlowKey {
                a: dst,
                b: src,
                proto,
            }
        }
    }
}

/// Zeek-style connection uid: "C" followed by base62 of a per-run counter mixed with the
/// run's seed, so ids are unique in a run and stable across identical replays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uid(pub u64);

impl std::fmt::Display for Uid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const DIGITS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        // splitmix64 scrambles the counter so uids look like Zeek's and do not sort by time.
        let mut z = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let mut out = [b'0'; 12];
        for slot in out.iter_mut().rev() {
            *slot = DIGITS[(z % 62) as usize];
            z /= 62;
        }
        f.write_str("C")?;
        f.write_str(std::str::from_utf8(&out).unwrap_or("0"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_direction_free() {
        let x = ("10.0.0.1".parse().unwrap(), 40000);
        let y = ("192.0.2.1".parse().unwrap(), 443);
        assert_eq!(FlowKey::new(x, y, 6), FlowKey::new(y, x, 6));
        assert_ne!(FlowKey::new(x, y, 6), FlowKey::new(x, y, 17));
    }

    #[test]
    fn uids_are_distinct_and_zeek_shaped() {
        let a = Uid(1).to_string();
        let b = Uid(2).to_string();
        assert_ne!(a, b);
        assert_eq!(a.len(), 13);
        assert!(a.starts_with('C'));
    }
}
