//! IPv4/IPv6 fragment reassembly with bounded memory.
//!
//! Datagrams are keyed by (source, destination, protocol, id). At most `max_datagrams` are
//! held and at most `max_bytes` of fragment payload across them; to make room the oldest
//! datagram is evicted (counted), so a flood of fragments that never complete cannot starve
//! the datagrams that do. Each datagram holds only the bytes received (a lone fragment at
//! offset 64 000 costs its own size, not 64 KiB), is at most 64 KiB and is discarded after
//! `timeout_ns` without completing. Overlapping fragments keep the bytes that arrived first.
//! Odd fragment sizes are accepted, as tshark accepts them: an observer must see what the
//! receiver may have seen.
use crate::decode::packet::{DropReason, Fragment};
use rustc_hash::FxHashMap;
use std::collections::VecDeque;
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
    /// Creation order, to tell this datagram from an older one with the same key in `age`.
    serial: u64,
    /// Received bytes not already held, as (offset, bytes): first arrival wins.
    pieces: Vec<(u32, Vec<u8>)>,
    /// Received byte ranges [start, end), kept sorted and merged.
    have: Vec<(u32, u32)>,
    total: Option<u32>,
    ip_len_sum: u32,
    bytes: usize,
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
    /// Keys in creation order with their serial; entries of datagrams already gone are
    /// skipped when met and compacted away when they outnumber the live ones.
    age: VecDeque<(FragKey, u64)>,
    next_serial: u64,
    max_datagrams: usize,
    max_bytes: usize,
    bytes: usize,
    timeout_ns: u64,
    evicted: u64,
}

impl Defragmenter {
    pub fn new(max_datagrams: usize, max_bytes: usize, timeout_ns: u64) -> Defragmenter {
        Defragmenter {
            datagrams: FxHashMap::default(),
            age: VecDeque::new(),
            next_serial: 0,
            max_datagrams: max_datagrams.max(1),
            max_bytes,
            bytes: 0,
            timeout_ns,
            evicted: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.datagrams.len()
    }

    pub fn is_empty(&self) -> bool {
        self.datagrams.is_empty()
    }

    /// Fragment payload bytes held across all datagrams.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Datagrams evicted to make room since the last call.
    pub fn take_evicted(&mut self) -> u64 {
        std::mem::take(&mut self.evicted)
    }

    fn remove(&mut self, key: &FragKey) -> Option<Datagram> {
        let dg = self.datagrams.remove(key)?;
        self.bytes = self.bytes.saturating_sub(dg.bytes);
        Some(dg)
    }

    /// Evicts the oldest datagram other than `keep`; false when there is none.
    fn evict_oldest(&mut self, keep: &FragKey) -> bool {
        let mut skipped = None;
        let mut evicted = false;
        while let Some((key, serial)) = self.age.pop_front() {
            let live = self
                .datagrams
                .get(&key)
                .is_some_and(|dg| dg.serial == serial);
            if !live {
                continue;
            }
            if key == *keep {
                skipped = Some((key, serial));
                continue;
            }
            self.remove(&key);
            self.evicted += 1;
            evicted = true;
            break;
        }
        if let Some(entry) = skipped {
            self.age.push_front(entry);
        }
        evicted
    }

    pub fn add(&mut self, ts_ns: u64, frag: &Fragment<'_>) -> DefragOutcome {
        let key = FragKey {
            src: frag.src,
            dst: frag.dst,
            proto: frag.proto,
            id: frag.id,
        };
        if frag.cut {
            self.remove(&key);
            return DefragOutcome::Dropped(DropReason::FragmentSliced);
        }
        let start = frag.offset;
        let end = start.saturating_add(frag.payload.len() as u32);
        if end > MAX_DATAGRAM {
            self.remove(&key);
            return DefragOutcome::Dropped(DropReason::FragmentOverlapOrTooLong);
        }
        if !self.datagrams.contains_key(&key) {
            while self.datagrams.len() >= self.max_datagrams {
                if !self.evict_oldest(&key) {
                    return DefragOutcome::Dropped(DropReason::FragmentTableFull);
                }
            }
            let serial = self.next_serial;
            self.next_serial += 1;
            self.datagrams.insert(
                key,
                Datagram {
                    first_ns: ts_ns,
                    serial,
                    pieces: Vec::new(),
                    have: Vec::new(),
                    total: None,
                    ip_len_sum: 0,
                    bytes: 0,
                },
            );
            self.age.push_back((key, serial));
            if self.age.len() > 2 * self.datagrams.len() + 64 {
                let datagrams = &self.datagrams;
                self.age
                    .retain(|(k, serial)| datagrams.get(k).is_some_and(|dg| dg.serial == *serial));
            }
        }
        let Some(dg) = self.datagrams.get_mut(&key) else {
            return DefragOutcome::Pending;
        };
        if !frag.more {
            if dg.total.is_some_and(|t| t != end) {
                self.remove(&key);
                return DefragOutcome::Dropped(DropReason::FragmentOverlapOrTooLong);
            }
            dg.total = Some(end);
        }
        if dg.have.len() >= MAX_PIECES {
            self.remove(&key);
            return DefragOutcome::Dropped(DropReason::FragmentOverlapOrTooLong);
        }
        // The parts not already received (first arrival wins).
        let mut new_parts: Vec<(u32, u32)> = Vec::new();
        let mut cursor = start;
        for &(s, e) in dg.have.iter().chain(std::iter::once(&(end, end))) {
            if e <= cursor {
                continue;
            }
            let stop = s.min(end);
            if stop > cursor {
                new_parts.push((cursor, stop));
            }
            cursor = cursor.max(e);
            if cursor >= end {
                break;
            }
        }
        let new_bytes: usize = new_parts.iter().map(|&(s, e)| (e - s) as usize).sum();
        while self.bytes + new_bytes > self.max_bytes {
            if !self.evict_oldest(&key) {
                self.remove(&key);
                return DefragOutcome::Dropped(DropReason::FragmentTableFull);
            }
        }
        let Some(dg) = self.datagrams.get_mut(&key) else {
            return DefragOutcome::Pending;
        };
        for (s, e) in new_parts {
            let bytes = frag
                .payload
                .get((s - start) as usize..(e - start) as usize)
                .unwrap_or(&[]);
            dg.pieces.push((s, bytes.to_vec()));
        }
        dg.bytes += new_bytes;
        self.bytes += new_bytes;
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
        match self.remove(&key) {
            Some(dg) => {
                let total = dg.total.unwrap_or(0) as usize;
                let mut payload = vec![0; total];
                for (offset, bytes) in &dg.pieces {
                    let at = *offset as usize;
                    let len = bytes.len().min(total.saturating_sub(at));
                    if let (Some(dst), Some(src)) =
                        (payload.get_mut(at..at + len), bytes.get(..len))
                    {
                        dst.copy_from_slice(src);
                    }
                }
                DefragOutcome::Complete(Reassembled {
                    src: key.src,
                    dst: key.dst,
                    proto: key.proto,
                    payload,
                    ip_len_sum: dg.ip_len_sum,
                })
            }
            None => DefragOutcome::Pending,
        }
    }

    /// Discards datagrams older than the timeout; returns how many.
    pub fn expire(&mut self, now_ns: u64) -> u64 {
        let timeout = self.timeout_ns;
        let mut expired = 0;
        // Oldest first: stop at the first live datagram still inside its time.
        while let Some(&(key, serial)) = self.age.front() {
            let live = self.datagrams.get(&key).filter(|dg| dg.serial == serial);
            if let Some(dg) = live {
                if now_ns.saturating_sub(dg.first_ns) < timeout {
                    break;
                }
                self.remove(&key);
                expired += 1;
            }
            self.age.pop_front();
        }
        expired
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
        let mut d = Defragmenter::new(4, 1 << 20, 30_000_000_000);
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
    fn a_full_table_evicts_its_oldest_datagram_and_expires() {
        let mut d = Defragmenter::new(1, 1 << 20, 10);
        assert_eq!(d.add(0, &frag(0, true, &[0; 8])), DefragOutcome::Pending);
        let mut other = frag(0, true, &[0; 8]);
        other.id = 8;
        assert_eq!(d.add(0, &other), DefragOutcome::Pending);
        assert_eq!(d.take_evicted(), 1);
        assert_eq!(d.len(), 1);
        assert_eq!(d.expire(100), 1);
        assert!(d.is_empty());
        assert_eq!(d.bytes(), 0);
    }

    #[test]
    fn a_lone_far_fragment_holds_only_its_own_bytes() {
        let mut d = Defragmenter::new(4, 1 << 20, 10);
        assert_eq!(
            d.add(0, &frag(63_000, false, &[9; 100])),
            DefragOutcome::Pending
        );
        assert_eq!(d.bytes(), 100);
    }

    #[test]
    fn the_byte_budget_evicts_the_oldest_datagram() {
        let mut d = Defragmenter::new(16, 1000, 10);
        let mut first = frag(0, true, &[1; 600]);
        first.id = 1;
        assert_eq!(d.add(0, &first), DefragOutcome::Pending);
        let second = frag(0, true, &[2; 600]);
        assert_eq!(d.add(1, &second), DefragOutcome::Pending);
        assert_eq!(d.take_evicted(), 1);
        assert_eq!(d.bytes(), 600);
        match d.add(2, &frag(600, false, &[3; 8])) {
            DefragOutcome::Complete(r) => assert_eq!(r.payload.len(), 608),
            other => panic!("{other:?}"),
        }
        // A datagram larger than the whole budget cannot be held.
        assert_eq!(
            d.add(3, &frag(0, true, &[4; 1008])),
            DefragOutcome::Dropped(DropReason::FragmentTableFull)
        );
        assert!(d.is_empty());
    }

    #[test]
    fn datagrams_that_complete_survive_a_flood_of_datagrams_that_never_do() {
        let mut d = Defragmenter::new(8, 1 << 20, 30_000_000_000);
        let mut completed = 0;
        for i in 0..1000u32 {
            let mut holed = frag(0, true, &[0; 64]);
            holed.id = 10_000 + i;
            assert_eq!(d.add(u64::from(i), &holed), DefragOutcome::Pending);
            if i % 10 == 0 {
                let mut head = frag(0, true, &[1; 16]);
                head.id = i;
                let mut tail = frag(16, false, &[2; 4]);
                tail.id = i;
                assert_eq!(d.add(u64::from(i), &head), DefragOutcome::Pending);
                if let DefragOutcome::Complete(r) = d.add(u64::from(i), &tail) {
                    assert_eq!(r.payload.len(), 20);
                    completed += 1;
                }
            }
        }
        assert_eq!(completed, 100);
        assert_eq!(d.len(), 8);
        assert!(d.take_evicted() > 900);
        assert_eq!(d.bytes(), 8 * 64);
    }

    #[test]
    fn oversized_datagram_is_dropped() {
        let mut d = Defragmenter::new(4, 1 << 20, 10);
        let payload = [0u8; 8];
        assert_eq!(
            d.add(0, &frag(65_528, true, &payload)),
            DefragOutcome::Dropped(DropReason::FragmentOverlapOrTooLong)
        );
    }
}
