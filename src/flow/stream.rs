//! In-order delivery of one TCP direction's bytes to the application parsers.
//!
//! Only the start of a stream is inspected (names live in the first bytes), so this keeps no
//! copy of delivered data: in-order bytes go straight to the caller, out-of-order segments are
//! held up to a byte budget, and anything that cannot be ordered marks a gap that ends inspection.

#[derive(Debug, Default)]
pub struct StreamDir {
    /// Sequence number of the next byte to deliver, once `started`.
    next_seq: u32,
    started: bool,
    /// Bytes are missing (sliced capture, lost segment, budget exceeded): nothing more is delivered.
    pub gap: bool,
    /// Out-of-order segments held; boxed because most streams never have any, and a flow
    /// table holds millions of streams.
    pending: Option<Box<Pending>>,
}

#[derive(Debug, Default)]
struct Pending {
    segments: Vec<(u32, Vec<u8>)>,
    bytes: usize,
}

/// How far ahead of the expected sequence number a segment may be and still be held.
const MAX_AHEAD: u32 = 1 << 20;

impl StreamDir {
    /// `captured` is the payload as captured, `declared` its length per the headers.
    pub fn segment(
        &mut self,
        seq: u32,
        syn: bool,
        captured: &[u8],
        declared: u32,
        max_pending: usize,
        deliver: &mut dyn FnMut(&[u8]),
    ) {
        if self.gap {
            return;
        }
        let data_seq = if syn { seq.wrapping_add(1) } else { seq };
        if !self.started {
            self.started = true;
            self.next_seq = data_seq;
        }
        let next = self.next_seq;
        if declared == 0 {
            return;
        }
        let sliced = (captured.len() as u32) < declared;
        let ahead = data_seq.wrapping_sub(next);
        if ahead == 0 {
            self.deliver_from(data_seq, captured, deliver);
        } else if ahead < MAX_AHEAD {
            let held = self.pending.as_ref().map_or(0, |p| p.bytes);
            if sliced || held + captured.len() > max_pending {
                self.gap = true;
                self.pending = None;
                return;
            }
            let pending = self.pending.get_or_insert_with(Box::default);
            pending.bytes += captured.len();
            pending.segments.push((data_seq, captured.to_vec()));
            return;
        } else {
            // Behind: a retransmission, maybe with some new bytes at its end.
            let behind = next.wrapping_sub(data_seq) as usize;
            if let Some(tail) = captured.get(behind..)
                && !tail.is_empty()
            {
                self.deliver_from(next, tail, deliver);
            }
            if sliced {
                self.gap = true;
            }
            return;
        }
        if sliced {
            self.gap = true;
            return;
        }
        self.drain_pending(deliver);
    }

    fn deliver_from(&mut self, seq: u32, data: &[u8], deliver: &mut dyn FnMut(&[u8])) {
        deliver(data);
        self.next_seq = seq.wrapping_add(data.len() as u32);
    }

    fn drain_pending(&mut self, deliver: &mut dyn FnMut(&[u8])) {
        let Some(mut pending) = self.pending.take() else {
            return;
        };
        loop {
            let next = self.next_seq;
            let mut progressed = false;
            let mut i = 0;
            while let Some(&(seq, ref data)) = pending.segments.get(i) {
                let behind = next.wrapping_sub(seq);
                let len = data.len() as u32;
                if behind < MAX_AHEAD {
                    let (seq, data) = pending.segments.swap_remove(i);
                    pending.bytes -= data.len();
                    if behind < len {
                        let tail = data.get(behind as usize..).unwrap_or(&[]);
                        self.deliver_from(seq.wrapping_add(behind), tail, deliver);
                        progressed = true;
                        break;
                    }
                    continue;
                }
                i += 1;
            }
            if !progressed {
                break;
            }
        }
        if !pending.segments.is_empty() {
            self.pending = Some(pending);
        }
    }

    #[cfg(test)]
    fn pending_bytes(&self) -> usize {
        self.pending.as_ref().map_or(0, |p| p.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(segments: &[(u32, bool, &[u8])]) -> (Vec<u8>, bool) {
        let mut s = StreamDir::default();
        let mut out = Vec::new();
        for (seq, syn, data) in segments {
            s.segment(*seq, *syn, data, data.len() as u32, 1024, &mut |d| {
                out.extend_from_slice(d)
            });
        }
        (out, s.gap)
    }

    #[test]
    fn in_order_out_of_order_and_retransmit() {
        let (out, gap) = run(&[
            (99, true, b""),
            (100, false, b"abc"),
            (106, false, b"ghi"),
            (103, false, b"def"),
        ]);
        assert_eq!(out, b"abcdefghi");
        assert!(!gap);
        let (out, _) = run(&[(100, false, b"abc"), (100, false, b"abcdef")]);
        assert_eq!(out, b"abcdef", "retransmission delivers only its new tail");
    }

    #[test]
    fn sequence_wraps() {
        let (out, _) = run(&[(u32::MAX - 1, false, b"ab"), (0, false, b"cd")]);
        assert_eq!(out, b"abcd");
    }

    #[test]
    fn sliced_segment_ends_delivery() {
        let mut s = StreamDir::default();
        let mut out = Vec::new();
        s.segment(1, false, b"ab", 10, 1024, &mut |d| out.extend_from_slice(d));
        s.segment(11, false, b"cd", 2, 1024, &mut |d| out.extend_from_slice(d));
        assert_eq!(out, b"ab");
        assert!(s.gap);
    }

    #[test]
    fn pending_budget_is_bounded() {
        let mut s = StreamDir::default();
        let big = vec![0u8; 600];
        s.segment(1, false, b"a", 1, 1000, &mut |_| {});
        s.segment(100, false, &big, 600, 1000, &mut |_| {});
        s.segment(800, false, &big, 600, 1000, &mut |_| {});
        assert!(s.gap);
        assert!(s.pending_bytes() <= 1000);
    }
}
