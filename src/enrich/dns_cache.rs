//! Per-client DNS answer cache: (client, answered address) -> the name the client asked for.
//!
//! Bounded: at most `max_entries`; the oldest insertion is evicted first (counted). Entries
//! live for their TTL clamped to [min_ttl, max_ttl], in event time.
use rustc_hash::FxHashMap;
use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;

const NS: u64 = 1_000_000_000;

#[derive(Debug)]
struct Entry {
    name: Arc<str>,
    expires_ns: u64,
    inserted: u64,
}

pub struct DnsCache {
    map: FxHashMap<(IpAddr, IpAddr), Entry>,
    order: VecDeque<((IpAddr, IpAddr), u64)>,
    max_entries: usize,
    min_ttl_ns: u64,
    max_ttl_ns: u64,
    next_insert: u64,
    pub evicted: u64,
}

impl DnsCache {
    pub fn new(max_entries: usize, min_ttl_seconds: u64, max_ttl_seconds: u64) -> DnsCache {
        DnsCache {
            map: FxHashMap::default(),
            order: VecDeque::new(),
            max_entries: max_entries.max(1),
            min_ttl_ns: min_ttl_seconds * NS,
            max_ttl_ns: max_ttl_seconds * NS,
            next_insert: 0,
            evicted: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn insert(
        &mut self,
        client: IpAddr,
        addr: IpAddr,
        name: Arc<str>,
        ttl_seconds: u32,
        now_ns: u64,
    ) {
        let ttl = (u64::from(ttl_seconds) * NS).clamp(self.min_ttl_ns, self.max_ttl_ns);
        let key = (client, addr);
        let inserted = self.next_insert;
        self.next_insert += 1;
        if self
            .map
            .insert(
                key,
                Entry {
                    name,
                    expires_ns: now_ns.saturating_add(ttl),
                    inserted,
                },
            )
            .is_none()
        {
            while self.map.len() > self.max_entries {
                self.evict_one();
            }
        }
        self.order.push_back((key, inserted));
        // Stale order entries (from refreshed keys) are bounded by compacting when they dominate.
        if self.order.len() > 2 * self.max_entries {
            let map = &self.map;
            self.order
                .retain(|(k, ins)| map.get(k).is_some_and(|e| e.inserted == *ins));
        }
    }

    fn evict_one(&mut self) {
        while let Some((key, inserted)) = self.order.pop_front() {
            if self.map.get(&key).is_some_and(|e| e.inserted == inserted) {
                self.map.remove(&key);
                self.evicted += 1;
                return;
            }
        }
    }

    pub fn lookup(&self, client: IpAddr, addr: IpAddr, now_ns: u64) -> Option<Arc<str>> {
        self.map
            .get(&(client, addr))
            .filter(|e| e.expires_ns > now_ns)
            .map(|e| e.name.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn names_expire_and_are_per_client() {
        let mut c = DnsCache::new(10, 1, 100);
        c.insert(ip("10.0.0.1"), ip("192.0.2.5"), "pawns.app".into(), 30, 0);
        assert_eq!(
            c.lookup(ip("10.0.0.1"), ip("192.0.2.5"), 29 * NS)
                .as_deref(),
            Some("pawns.app")
        );
        assert_eq!(
            c.lookup(ip("10.0.0.2"), ip("192.0.2.5"), 0),
            None,
            "another client did not resolve it"
        );
        assert_eq!(c.lookup(ip("10.0.0.1"), ip("192.0.2.5"), 31 * NS), None);
    }

    #[test]
    fn bounded_with_counted_eviction() {
        let mut c = DnsCache::new(3, 1, 100);
        for i in 0..10u8 {
            c.insert(
                ip("10.0.0.1"),
                IpAddr::from([192, 0, 2, i]),
                "x".into(),
                60,
                0,
            );
            c.insert(
                ip("10.0.0.1"),
                IpAddr::from([192, 0, 2, 0]),
                "refresh".into(),
                60,
                0,
            );
        }
        assert!(c.len() <= 3);
        assert!(c.evicted >= 7);
        assert!(c.order.len() <= 6);
    }
}
