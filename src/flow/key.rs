//! Flow keys and ids.
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
    V4 {
        orig: Ipv4Addr,
        resp: Ipv4Addr,
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

impl Endpoints {
    /// A pair mixing IPv4 and IPv6 (no decoder yields one) is kept as IPv6, IPv4 mapped.
    pub fn new(orig: (IpAddr, u16), resp: (IpAddr, u16)) -> Endpoints {
        match (orig.0, resp.0) {
            (IpAddr::V4(o), IpAddr::V4(r)) => Endpoints::V4 {
                orig: o,
                resp: r,
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
            } => (IpAddr::V4(*orig), *orig_port),
            Endpoints::V6(e) => (IpAddr::V6(e.orig.0), e.orig.1),
        }
    }

    pub fn resp(&self) -> (IpAddr, u16) {
        match self {
            Endpoints::V4 {
                resp, resp_port, ..
            } => (IpAddr::V4(*resp), *resp_port),
            Endpoints::V6(e) => (IpAddr::V6(e.resp.0), e.resp.1),
        }
    }

    /// Whether a packet from `src` to `dst` belongs here: `Some(true)` when it comes from
    /// the originator, `Some(false)` from the responder.
    pub fn direction(&self, src: (IpAddr, u16), dst: (IpAddr, u16)) -> Option<bool> {
        let (o, r) = match (self, src.0, dst.0) {
            (
                Endpoints::V4 {
                    orig,
                    resp,
                    orig_port,
                    resp_port,
                },
                IpAddr::V4(s),
                IpAddr::V4(d),
            ) => {
                let o = (*orig, *orig_port);
                let r = (*resp, *resp_port);
                return if (s, src.1) == o && (d, dst.1) == r {
                    Some(true)
                } else if (s, src.1) == r && (d, dst.1) == o {
                    Some(false)
                } else {
                    None
                };
            }
            (Endpoints::V6(e), _, _) => (e.orig, e.resp),
            _ => return None,
        };
        let (s, d) = ((as_v6(src.0), src.1), (as_v6(dst.0), dst.1));
        if s == o && d == r {
            Some(true)
        } else if s == r && d == o {
            Some(false)
        } else {
            None
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
            assert_eq!(e.direction(o, r), Some(true));
            assert_eq!(e.direction(r, o), Some(false));
            assert_eq!(e.direction(o, (r.0, r.1 + 1)), None);
            assert_eq!(e.direction(o, o), None);
        }
        assert!(std::mem::size_of::<Endpoints>() <= 16);
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
