//! IPv4/IPv6 fragment reassembly with bounded memory.
//!
//! Datagrams are keyed by (source, destination, protocol, id). At most `max_datagrams` are
//! held; each is at most 64 KiB and is discarded after `timeout_ns` without completing.
//! Overlapping fragments keep the bytes that arrived first. Odd fragment sizes are accepted,
//! as tshark accepts them: an observer must see what the receiver may have seen.
use crate::decode::packet::{DropReason, Fragment};
use rustc_hash::FxHashMap;
use std::net::IpAddr;

/// IPv4 and non-jumbo IPv6 payloads cannot exceed this.
const MAX_DATAGRAM: u32 = 65_535;
/// More pieces than this for one datagram is an evasion attempt, not a real sender.
const MAX_PIECES: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FragKey {
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    id: u32,
}

#[derive(Debug)]
struct Datagram {
    first_ns: u64,
    data: Vec<u8>,
    /// Received byte ranges [start, end), kept sorted and merged.
    have: Vec<(u32, u32)>,
    total: Option<u32>,
    ip_len_sum: u32,
}

/// A reassembled datagram's payload and the sum of its fragments' IP lengths.
#[derive(Debug, PartialEq, Eq)]
pub struct Reassembled {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub payload: Vec<u8>,
    pub ip_len_sum: u32,
}

#[derive(Debug, PartialEq, Eq)]
pub enum DefragOutcome {
    Pending,
    Complete(Reassembled),
    Dropped(DropReason),
}

pub struct Defragmenter {
    datagrams: FxHashMap<FragKey, Datagram>,
    max_datagrams: usize,
    timeout_ns: u64,
}

impl Defragmenter {
    pub fn new(max_datagrams: usize, timeout_ns: u64) -> Defragmenter {
        Defragmenter {
            datagrams: FxHashMap::default(),
            max_datagrams,
            timeout_ns,
        }
    }

    pub fn len(&self) -> usize {
        self.datagrams.len()
    }

    pub fn is_empty(&self) -> bool {
        self.datagrams.is_empty()
    }

    pub fn add(&mut self, ts_ns: u64, frag: &Fragment<'_>) -> DefragOutcome {
        let key = FragKey {
            src: frag.src,
            dst: frag.dst,
            proto: frag.proto,
            id: frag.id,
        };
        if frag.cut {
            self.datagrams.remove(&key);
            return DefragOutcome::Dropped(DropReason::FragmentSliced);
        }
        let start = frag.offset;
        let end = start.saturating_add(frag.payload.len() as u32);
        if end > MAX_DATAGRAM {
            self.datagrams.remove(&key);
            return DefragOutcome::Dropped(DropReason::FragmentOverlapOrTooLong);
        }
        if !self.datagrams.contains_key(&key) && self.datagrams.len() >= self.max_datagrams {
            return DefragOutcome::Dropped(DropReason::FragmentTableFull);
        }
        let dg = self.datagrams.entry(key).or_insert_with(|| Datagram {
            first_ns: ts_ns,
            data: Vec::new(),
            have: Vec::new(),
            total: None,
            ip_len_sum: 0,
        });
        if !frag.more {
            if dg.total.is_some_and(|t| t != end) {
                self.datagrams.remove(&key);
                return DefragOutcome::Dropped(DropReason::FragmentOverlapOrTooLong);
            }
            dg.total = Some(end);
        }
        if dg.have.len() >= MAX_PIECES {
            self.datagrams.remove(&key);
            return DefragOutcome::Dropped(DropReason::FragmentOverlapOrTooLong);
        }
        if dg.data.len() < end as usize {
            dg.data.resize(end as usize, 0);
        }
        // Copy only the parts not already received (first arrival wins).
        let mut cursor = start;
        for &(s, e) in dg.have.iter().chain(std::iter::once(&(end, end))) {
            if e <= cursor {
                continue;
            }
            let stop = s.min(end);
            if stop > cursor {
                let src = frag
                    .payload
                    .get((cursor - start) as usize..(stop - start) as usize)
                    .unwrap_or(&[]);
                if let Some(dst) = dg.data.get_mut(cursor as usize..stop as usize) {
                    dst.copy_from_slice(src);
                }
            }
            cursor = cursor.max(e);
            if cursor >= end {
                break;
            }
        }
        dg.have.push((start, end));
        dg.have.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(dg.have.len());
        for &(s, e) in &dg.have {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        dg.have = merged;
        dg.ip_len_sum = dg.ip_len_sum.saturating_add(frag.ip_len);
        // Overlapping fragments may reach past the end the last fragment set (tshark and most
        // stacks accept that); the datagram is complete once [0, total) is covered.
        let complete = dg
            .total
            .is_some_and(|t| dg.have.first().is_some_and(|&(s, e)| s == 0 && e >= t));
        if !complete {
            return DefragOutcome::Pending;
        }
        match self.datagrams.remove(&key) {
            Some(mut dg) => {
                dg.data.truncate(dg.total.unwrap_or(0) as usize);
                DefragOutcome::Complete(Reassembled {
                    src: key.src,
                    dst: key.dst,
                    proto: key.proto,
                    payload: dg.data,
                    ip_len_sum: dg.ip_len_sum,
                })
            }
            None => DefragOutcome::Pending,
        }
    }

    /// Discards datagrams older than the timeout; returns how many.
    pub fn expire(&mut self, now_ns: u64) -> u64 {
        let before = self.datagrams.len();
        let timeout = self.timeout_ns;
        self.datagrams
            .retain(|_, dg| now_ns.saturating_sub(dg.first_ns) < timeout);
        (before - self.datagrams.len()) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frag(offset: u32, more: bool, payload: &[u8]) -> Fragment<'_> {
        Fragment {
            src: "10.0.0.1".parse().unwrap(),
            dst: "192.0.2.1".parse().unwrap(),
            proto: 17,
            id: 7,
            offset,
            more,
            payload,
            cut: false,
            ip_len: 20 + payload.len() as u32,
        }
    }

    #[test]
    fn reassembles_out_of_order_with_overlap() {
        let mut d = Defragmenter::new(4, 30_000_000_000);
        let a = [1u8; 16];
        let b = [2u8; 16];
        let c = [3u8; 5];
        assert_eq!(d.add(0, &frag(32, false, &c)), DefragOutcome::Pending);
        assert_eq!(d.add(0, &frag(0, true, &a)), DefragOutcome::Pending);
        assert_eq!(
            d.add(0, &frag(8, true, &b)),
            DefragOutcome::Pending,
            "overlap keeps first bytes"
        );
        let DefragOutcome::Pending = d.add(0, &frag(8, true, &b)) else {
            panic!()
        };
        match d.add(0, &frag(24, true, &[4u8; 8])) {
            DefragOutcome::Complete(r) => {
                assert_eq!(r.payload.len(), 37);
                assert_eq!(&r.payload[..16], &[1u8; 16]);
                assert_eq!(&r.payload[16..24], &[2u8; 8]);
                assert_eq!(&r.payload[24..32], &[4u8; 8]);
                assert_eq!(&r.payload[32..], &[3u8; 5]);
            }
            other => panic!("{other:?}"),
        }
        assert!(d.is_empty());
    }

    #[test]
    fn table_is_bounded_and_expires() {
        let mut d = Defragmenter::new(1, 10);
        assert_eq!(d.add(0, &frag(0, true, &[0; 8])), DefragOutcome::Pending);
        let mut other = frag(0, true, &[0; 8]);
        other.id = 8;
        assert_eq!(
            d.add(0, &other),
            DefragOutcome::Dropped(DropReason::FragmentTableFull)
        );
        assert_eq!(d.expire(100), 1);
        assert!(d.is_empty());
    }

    #[test]
    fn oversized_datagram_is_dropped() {
        let mut d = Defragmenter::new(4, 10);
        let payload = [0u8; 8];
        assert_eq!(
            d.add(0, &frag(65_528, true, &payload)),
            DefragOutcome::Dropped(DropReason::FragmentOverlapOrTooLong)
        );
    }
}
