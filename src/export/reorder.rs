//! Decoded records wait here by arrival and leave sorted by event time. Exporters send
//! records when flows end or time out, not when they start: softflowd dumps its whole cache
//! at the end of a file, a router its cache on a reload. Sorting what arrived together lets
//! windows close in event time.
//!
//! Cost: records stay where they arrived, with arrival time and horizon kept once per
//! datagram; a release sorts small (end, start, position) keys and hands out references, so
//! a record is moved once (into the buffer) however large the batch that releases it.
use super::FlowRecord;
use std::collections::VecDeque;

/// Records of one datagram: they share an arrival time and a horizon.
struct Batch {
    arrival_ns: u64,
    /// Latest event time these records may move the clock to.
    horizon: u64,
    records: usize,
}

#[derive(Default)]
pub struct ReorderBuffer {
    records: VecDeque<FlowRecord>,
    /// `records` by datagram, oldest first.
    batches: VecDeque<Batch>,
    /// Sort keys of the last release (end_ns, start_ns, position): kept for its allocation.
    order: Vec<(u64, u64, usize)>,
    /// Horizon of each released record, by position.
    horizons: Vec<u64>,
}

impl ReorderBuffer {
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Holds the records of one datagram (drained from `records`), received at `arrival_ns`.
    pub fn extend(&mut self, arrival_ns: u64, horizon: u64, records: &mut Vec<FlowRecord>) {
        if records.is_empty() {
            return;
        }
        self.batches.push_back(Batch {
            arrival_ns,
            horizon,
            records: records.len(),
        });
        // Grown to powers of two: VecDeque's doubling from the first datagram's odd size
        // overshoots more (1.8 M slots for the default bound of 1 M records), and a ring
        // touches every slot it has as it wraps.
        let need = self.records.len() + records.len();
        if need > self.records.capacity() {
            self.records
                .reserve_exact(need.next_power_of_two() - self.records.len());
        }
        self.records.extend(records.drain(..));
    }

    /// The records that leave now: from the front, those that arrived at or before
    /// `cutoff` (every one when `all`), and at least the `over` earliest arrivals. They come
    /// sorted by (end_ns, start_ns), ties in arrival order, with their horizons, and leave
    /// the buffer when the returned batch is dropped.
    pub fn release(&mut self, cutoff: u64, all: bool, over: usize) -> Released<'_> {
        self.horizons.clear();
        let mut count = 0;
        while let Some(batch) = self.batches.front_mut() {
            let take = if all || batch.arrival_ns <= cutoff {
                batch.records
            } else {
                batch.records.min(over.saturating_sub(count))
            };
            count += take;
            self.horizons
                .extend(std::iter::repeat_n(batch.horizon, take));
            if take < batch.records {
                batch.records -= take;
                break;
            }
            self.batches.pop_front();
        }
        self.order.clear();
        self.order.extend(
            self.records
                .iter()
                .take(count)
                .enumerate()
                .map(|(index, r)| (r.end_ns, r.start_ns, index)),
        );
        // Positions are distinct, so the unstable sort orders ties by arrival.
        self.order.sort_unstable();
        Released {
            buffer: self,
            next: 0,
            count,
        }
    }
}

/// Records leaving the buffer, in event-time order.
pub struct Released<'b> {
    buffer: &'b mut ReorderBuffer,
    next: usize,
    count: usize,
}

impl Released<'_> {
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The next record and its horizon.
    pub fn next_record(&mut self) -> Option<(&FlowRecord, u64)> {
        let &(_, _, index) = self.buffer.order.get(self.next)?;
        self.next += 1;
        let record = self.buffer.records.get(index)?;
        Some((record, *self.buffer.horizons.get(index)?))
    }
}

impl Drop for Released<'_> {
    fn drop(&mut self) {
        self.buffer.records.drain(..self.count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::RecordSource;
    use std::net::{IpAddr, Ipv4Addr};

    fn record(port: u16, start_ns: u64, end_ns: u64) -> FlowRecord {
        FlowRecord {
            source: RecordSource::Ipfix,
            exporter: IpAddr::V4(Ipv4Addr::LOCALHOST),
            src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            src_port: port,
            dst_port: 53,
            proto: 17,
            octets: 60,
            packets: 1,
            rev_octets: 0,
            rev_packets: 0,
            start_ns,
            end_ns,
            tcp_flags: None,
            rev_tcp_flags: None,
            sampling: 1,
            end_reason: None,
        }
    }

    fn ports(released: &mut Released<'_>) -> Vec<u16> {
        let mut out = Vec::new();
        while let Some((r, _)) = released.next_record() {
            out.push(r.src_port);
        }
        out
    }

    #[test]
    fn releases_what_is_due_by_event_time_ties_in_arrival_order() {
        let mut buffer = ReorderBuffer::default();
        buffer.extend(
            10,
            100,
            &mut vec![record(1, 5, 9), record(2, 1, 7), record(3, 2, 9)],
        );
        buffer.extend(20, 200, &mut vec![record(4, 0, 1), record(5, 1, 7)]);
        // Only the first datagram arrived by the cutoff.
        assert_eq!(ports(&mut buffer.release(15, false, 0)), vec![2, 3, 1]);
        assert_eq!(buffer.len(), 2);
        let mut rest = buffer.release(0, true, 0);
        assert_eq!(
            rest.next_record().map(|(r, h)| (r.src_port, h)),
            Some((4, 200))
        );
        assert_eq!(ports(&mut rest), vec![5]);
        drop(rest);
        assert!(buffer.is_empty());
    }

    #[test]
    fn over_the_bound_the_earliest_arrivals_leave() {
        let mut buffer = ReorderBuffer::default();
        buffer.extend(
            10,
            100,
            &mut vec![record(1, 3, 3), record(2, 2, 2), record(3, 1, 1)],
        );
        let mut released = buffer.release(0, false, 2);
        assert!(!released.is_empty());
        assert_eq!(ports(&mut released), vec![2, 1]);
        drop(released);
        assert_eq!(buffer.len(), 1);
        assert!(buffer.release(0, false, 0).is_empty());
        assert_eq!(buffer.len(), 1);
        // The rest of a cut datagram keeps its horizon; the bound spans datagrams.
        buffer.extend(20, 200, &mut vec![record(4, 0, 0), record(5, 0, 0)]);
        let mut released = buffer.release(0, false, 2);
        assert_eq!(
            released.next_record().map(|(r, h)| (r.src_port, h)),
            Some((4, 200))
        );
        assert_eq!(
            released.next_record().map(|(r, h)| (r.src_port, h)),
            Some((3, 100))
        );
        assert!(released.next_record().is_none());
        drop(released);
        assert_eq!(buffer.len(), 1);
    }
}
