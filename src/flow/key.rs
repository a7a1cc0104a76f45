//! Flow keys and ids.
use crate::decode::packet::{be16, be32, ip_proto, plain_ip_header};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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

/// A flow's two endpoints, originator first, in 16 bytes: IPv4 inline, IPv6 boxed (32 more
/// bytes), since a flow table holds millions of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoints {
    /// Addresses as `u32` so that matching a packet is a few integer compares.
    V4 {
        orig: u32,
        resp: u32,
        orig_port: u16,
        resp_port: u16,
    },
    V6(Box<V6Endpoints>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V6Endpoints {
    orig: (Ipv6Addr, u16),
    resp: (Ipv6Addr, u16),
}

/// IPv6 as is, IPv4 mapped.
pub fn as_v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
}

/// `Some(true)` when `(s, d)` is `(o, r)`, `Some(false)` when it is `(r, o)`.
#[inline]
fn orient<T: PartialEq>(s: T, d: T, o: T, r: T) -> Option<bool> {
    if s == o && d == r {
        Some(true)
    } else if s == r && d == o {
        Some(false)
    } else {
        None
    }
}

impl Endpoints {
    /// A pair mixing IPv4 and IPv6 (no decoder yields one) is kept as IPv6, IPv4 mapped.
    pub fn new(orig: (IpAddr, u16), resp: (IpAddr, u16)) -> Endpoints {
        match (orig.0, resp.0) {
            (IpAddr::V4(o), IpAddr::V4(r)) => Endpoints::V4 {
                orig: u32::from(o),
                resp: u32::from(r),
                orig_port: orig.1,
                resp_port: resp.1,
            },
            (o, r) => Endpoints::V6(Box::new(V6Endpoints {
                orig: (as_v6(o), orig.1),
                resp: (as_v6(r), resp.1),
            })),
        }
    }

    pub fn orig(&self) -> (IpAddr, u16) {
        match self {
            Endpoints::V4 {
                orig, orig_port, ..
            } => (IpAddr::V4(Ipv4Addr::from(*orig)), *orig_port),
            Endpoints::V6(e) => (IpAddr::V6(e.orig.0), e.orig.1),
        }
    }

    pub fn resp(&self) -> (IpAddr, u16) {
        match self {
            Endpoints::V4 {
                resp, resp_port, ..
            } => (IpAddr::V4(Ipv4Addr::from(*resp)), *resp_port),
            Endpoints::V6(e) => (IpAddr::V6(e.resp.0), e.resp.1),
        }
    }

    /// The originator-to-responder probe: what a packet from the originator looks like.
    pub fn probe(&self) -> Probe {
        match self {
            Endpoints::V4 {
                orig,
                resp,
                orig_port,
                resp_port,
            } => Probe::V4 {
                src: v4_word(*orig, *orig_port),
                dst: v4_word(*resp, *resp_port),
            },
            Endpoints::V6(e) => Probe::V6 {
                src: e.orig,
                dst: e.resp,
            },
        }
    }

    /// Whether a packet belongs here: `Some(true)` when it comes from the originator,
    /// `Some(false)` from the responder.
    #[inline]
    pub fn direction(&self, p: &Probe) -> Option<bool> {
        match (self, p) {
            (
                Endpoints::V4 {
                    orig,
                    resp,
                    orig_port,
                    resp_port,
                },
                Probe::V4 { src, dst },
            ) => orient(
                *src,
                *dst,
                v4_word(*orig, *orig_port),
                v4_word(*resp, *resp_port),
            ),
            (Endpoints::V6(e), Probe::V6 { src, dst }) => orient(*src, *dst, e.orig, e.resp),
            _ => None,
        }
    }
}

/// An IPv4 address and port in one integer.
fn v4_word(ip: u32, port: u16) -> u64 {
    (u64::from(ip) << 16) | u64::from(port)
}

/// A packet's two endpoints in the form flows are matched and hashed by, made once per
/// packet. Mixed IPv4/IPv6 pairs are IPv6, IPv4 mapped, as [`Endpoints`] stores them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    V4 {
        src: u64,
        dst: u64,
    },
    V6 {
        src: (Ipv6Addr, u16),
        dst: (Ipv6Addr, u16),
    },
}

impl Probe {
    pub fn new(src: (IpAddr, u16), dst: (IpAddr, u16)) -> Probe {
        match (src.0, dst.0) {
            (IpAddr::V4(s), IpAddr::V4(d)) => Probe::V4 {
                src: v4_word(u32::from(s), src.1),
                dst: v4_word(u32::from(d), dst.1),
            },
            (s, d) => Probe::V6 {
                src: (as_v6(s), src.1),
                dst: (as_v6(d), dst.1),
            },
        }
    }
}

impl Probe {
    /// The probe and IP protocol of a plain frame's (`plain_ip_header`) outer TCP or UDP
    /// header, read at fixed offsets with no validation: a guess for
    /// loading a flow's state ahead of its frame (`FlowTable::look_ahead`). The frame itself
    /// is decoded by `decode_frame`.
    #[inline]
    pub fn guess(linktype: u32, frame: &[u8]) -> Option<(Probe, u8)> {
        let ip = plain_ip_header(linktype, frame)?;
        let (proto, l4) = match ip.first()? >> 4 {
            // A fragment is handled as a flow only once reassembled.
            4 if be16(ip, 6)? & 0x3fff == 0 => (*ip.get(9)?, usize::from(ip.first()? & 0x0f) * 4),
            6 => (*ip.get(6)?, 40),
            _ => return None,
        };
        if proto != ip_proto::TCP && proto != ip_proto::UDP {
            return None;
        }
        let (sport, dport) = (be16(ip, l4)?, be16(ip, l4 + 2)?);
        let probe = if l4 == 40 {
            let addr = |at: usize| -> Option<Ipv6Addr> {
                let bytes: [u8; 16] = ip.get(at..at + 16)?.try_into().ok()?;
                Some(Ipv6Addr::from(bytes))
            };
            Probe::V6 {
                src: (addr(8)?, sport),
                dst: (addr(24)?, dport),
            }
        } else {
            Probe::V4 {
                src: v4_word(be32(ip, 12)?, sport),
                dst: v4_word(be32(ip, 16)?, dport),
            }
        };
        Some((probe, proto))
    }
}

/// Hashes flows for the flow table's index: the same value from either direction, from a
/// few multiplications (no byte-wise hashing of addresses), keyed per table so that crafted
/// 5-tuples cannot pile into one bucket.
#[derive(Debug, Clone, Copy)]
pub struct PairHasher {
    k1: u64,
    k2: u64,
}

/// Folded multiply: the high and low halves of the 128-bit product, mixed.
fn fold(a: u64, b: u64) -> u64 {
    let m = u128::from(a) * u128::from(b);
    (m as u64) ^ ((m >> 64) as u64)
}

impl PairHasher {
    pub fn new() -> PairHasher {
        use std::hash::BuildHasher;
        let random = std::collections::hash_map::RandomState::new();
        PairHasher {
            k1: random.hash_one(1u8) | 1,
            k2: random.hash_one(2u8) | 1,
        }
    }

    fn v6_word(&self, (ip, port): (Ipv6Addr, u16)) -> u64 {
        let x = u128::from(ip);
        fold((x as u64) ^ self.k1, ((x >> 64) as u64) ^ self.k2) ^ u64::from(port)
    }

    /// The hash of a flow over `proto` between the probe's endpoints, in either order.
    pub fn hash(&self, p: &Probe, proto: u8) -> u64 {
        let (x, y) = match p {
            Probe::V4 { src, dst } => (*src, *dst),
            Probe::V6 { src, dst } => (self.v6_word(*src), self.v6_word(*dst)),
        };
        let (lo, hi) = if x <= y { (x, y) } else { (y, x) };
        fold(lo ^ self.k1, hi ^ self.k2 ^ (u64::from(proto) << 56))
    }
}

impl Default for PairHasher {
    fn default() -> PairHasher {
        PairHasher::new()
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
            *slot = DIGITS.get((z % 62) as usize).copied().unwrap_or(b'0');
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
    fn endpoints_round_trip_and_tell_direction() {
        let pairs: [((IpAddr, u16), (IpAddr, u16)); 2] = [
            (
                ("10.0.0.1".parse().unwrap(), 40000),
                ("192.0.2.1".parse().unwrap(), 443),
            ),
            (
                ("fd00::1".parse().unwrap(), 40000),
                ("2001:db8::1".parse().unwrap(), 443),
            ),
        ];
        for (o, r) in pairs {
            let e = Endpoints::new(o, r);
            assert_eq!((e.orig(), e.resp()), (o, r));
            assert_eq!(e.probe(), Probe::new(o, r));
            assert_eq!(e.direction(&Probe::new(o, r)), Some(true));
            assert_eq!(e.direction(&Probe::new(r, o)), Some(false));
            assert_eq!(e.direction(&Probe::new(o, (r.0, r.1 + 1))), None);
            assert_eq!(e.direction(&Probe::new(o, o)), None);
        }
        // Mixed families are stored and probed IPv4-mapped.
        let (v4, v6) = (pairs[0].0, pairs[1].1);
        let mixed = Endpoints::new(v4, v6);
        assert_eq!(mixed.direction(&Probe::new(v6, v4)), Some(false));
        assert!(std::mem::size_of::<Endpoints>() <= 16);
    }

    #[test]
    fn pair_hash_is_direction_free_and_spreads() {
        let h = PairHasher::new();
        let hash = |a, b, proto| h.hash(&Probe::new(a, b), proto);
        let x: (IpAddr, u16) = ("10.0.0.1".parse().unwrap(), 40000);
        let y: (IpAddr, u16) = ("192.0.2.1".parse().unwrap(), 443);
        assert_eq!(hash(x, y, 6), hash(y, x, 6));
        assert_ne!(hash(x, y, 6), hash(x, y, 17));
        let v6: (IpAddr, u16) = ("2001:db8::1".parse().unwrap(), 443);
        let w6: (IpAddr, u16) = ("fd00::1".parse().unwrap(), 40000);
        assert_eq!(hash(v6, w6, 6), hash(w6, v6, 6));
        // Consecutive client ports land in distinct buckets and distinct control bytes.
        let hashes: std::collections::HashSet<(u64, u64)> = (0..4096u16)
            .map(|p| hash((x.0, 30000 + p), y, 6))
            .map(|v| (v & 0xfff, v >> 57))
            .collect();
        assert!(hashes.len() > 2500, "{} distinct of 4096", hashes.len());
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
