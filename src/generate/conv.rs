//! Conversation state machines. A conversation yields its packets one at a time, so the
//! office scenario can stamp them with realistic timing and the bench scenario can
//! interleave thousands of them while streaming, without materialising any packet.

use super::GenerateError;
use super::rng::Rng;
use super::wire::{Endpoint, L4, build_headers, ones_sum};

pub(crate) const FIN: u8 = 0x01;
pub(crate) const SYN: u8 = 0x02;
pub(crate) const RST: u8 = 0x04;
pub(crate) const PSH: u8 = 0x08;
pub(crate) const ACK: u8 = 0x10;

pub(crate) const MSS_V4: usize = 1460;
pub(crate) const MSS_V6: usize = 1440;
/// Bulk TLS records are sized to span exactly this many full segments, so each segment's
/// payload checksum can be computed once and reused.
const SEGS_PER_RECORD: usize = 11;
/// A peer that has nothing to send within this time acknowledges with a pure ACK.
const DELAYED_ACK_US: u64 = 40_000;

/// Opaque TLS application-data stream used for bulk transfers: one record repeated.
pub(crate) struct BulkPattern {
    mss: usize,
    bytes: Vec<u8>,
    sums: Vec<u64>,
}

impl BulkPattern {
    fn new(rng: &mut Rng, mss: usize) -> BulkPattern {
        let period = mss * SEGS_PER_RECORD;
        let mut bytes = rng.bytes(period);
        let body = (period - 5) as u16;
        let hdr = [0x17, 0x03, 0x03, (body >> 8) as u8, body as u8];
        if let Some(h) = bytes.get_mut(..5) {
            h.copy_from_slice(&hdr);
        }
        let sums = bytes.chunks(mss).map(ones_sum).collect();
        BulkPattern { mss, bytes, sums }
    }

    fn period(&self) -> usize {
        self.bytes.len()
    }

    /// Payload slice at stream offset `start`, with its checksum when precomputed.
    fn slice(&self, start: usize, len: usize) -> (&[u8], Option<u64>) {
        let off = start % self.period();
        let s = self.bytes.get(off..off + len).unwrap_or(&[]);
        let cached = if len == self.mss && off.is_multiple_of(self.mss) {
            self.sums.get(off / self.mss).copied()
        } else {
            None
        };
        (s, cached)
    }
}

pub(crate) struct BulkPatterns {
    v4: BulkPattern,
    v6: BulkPattern,
}

impl BulkPatterns {
    pub(crate) fn new(rng: &mut Rng) -> BulkPatterns {
        BulkPatterns {
            v4: BulkPattern::new(rng, MSS_V4),
            v6: BulkPattern::new(rng, MSS_V6),
        }
    }

    fn for_mss(&self, mss: usize) -> &BulkPattern {
        if mss == MSS_V6 { &self.v6 } else { &self.v4 }
    }
}

pub(crate) enum Data {
    Bytes(Vec<u8>),
    /// `records` full-size opaque TLS records from the shared bulk pattern.
    Bulk {
        records: u32,
    },
}

pub(crate) struct Msg {
    pub from_client: bool,
    pub data: Data,
    /// Size of the first segment, to split e.g. a ClientHello across two segments.
    pub first_seg: Option<usize>,
    /// Idle time before the message starts (think time, server processing).
    pub think_us: u64,
}

impl Msg {
    pub(crate) fn client(data: Vec<u8>) -> Msg {
        Msg {
            from_client: true,
            data: Data::Bytes(data),
            first_seg: None,
            think_us: 0,
        }
    }

    pub(crate) fn server(data: Vec<u8>) -> Msg {
        Msg {
            from_client: false,
            data: Data::Bytes(data),
            first_seg: None,
            think_us: 0,
        }
    }

    pub(crate) fn think(mut self, us: u64) -> Msg {
        self.think_us = us;
        self
    }

    fn len(&self, mss: usize) -> usize {
        match &self.data {
            Data::Bytes(b) => b.len(),
            Data::Bulk { records } => *records as usize * mss * SEGS_PER_RECORD,
        }
    }
}

/// Per-direction volumes, counted the way Zeek's conn.log does (IP total lengths).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    pub orig_pkts: u64,
    pub resp_pkts: u64,
    pub orig_ip_bytes: u64,
    pub resp_ip_bytes: u64,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum PayloadRef {
    None,
    Msg {
        idx: usize,
        start: usize,
        len: usize,
    },
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct TcpFields {
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    syn: bool,
}

/// One packet to be rendered.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seg {
    pub from_client: bool,
    tcp: Option<TcpFields>,
    payload: PayloadRef,
    ip_id: u16,
    /// The sender differs from the previous packet's sender.
    pub turn: bool,
    pub think_us: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Syn,
    SynAck,
    HsAck,
    Data,
    FinC,
    FinS,
    LastAck,
    Done,
}

struct TcpState {
    phase: Phase,
    c_isn: u32,
    s_isn: u32,
    c_next: u32,
    s_next: u32,
    msg: usize,
    off: usize,
    unacked: u32,
    /// Some(from_client) when that side owes a pure ACK before anything else is sent.
    pending_ack: Option<bool>,
}

enum Kind {
    Tcp(TcpState),
    Udp { next: usize },
}

pub(crate) struct Conv {
    pub c: Endpoint,
    pub s: Endpoint,
    kind: Kind,
    msgs: Vec<Msg>,
    mss: usize,
    ids: [u16; 2],
    last_from_client: Option<bool>,
    /// Idle time before the client closes the connection.
    pub fin_think_us: u64,
    pub tally: Tally,
}

impl Conv {
    pub(crate) fn tcp(rng: &mut Rng, c: Endpoint, s: Endpoint, msgs: Vec<Msg>) -> Conv {
        let mss = if c.ip.is_ipv6() { MSS_V6 } else { MSS_V4 };
        let c_isn = rng.next_u32();
        let s_isn = rng.next_u32();
        Conv {
            c,
            s,
            kind: Kind::Tcp(TcpState {
                phase: Phase::Syn,
                c_isn,
                s_isn,
                c_next: c_isn,
                s_next: s_isn,
                msg: 0,
                off: 0,
                unacked: 0,
                pending_ack: None,
            }),
            // Empty messages would produce empty data segments; drop them up front.
            msgs: msgs.into_iter().filter(|m| m.len(mss) > 0).collect(),
            mss,
            ids: [rng.next_u16(), rng.next_u16()],
            last_from_client: None,
            fin_think_us: 0,
            tally: Tally::default(),
        }
    }

    pub(crate) fn udp(rng: &mut Rng, c: Endpoint, s: Endpoint, msgs: Vec<Msg>) -> Conv {
        Conv {
            c,
            s,
            kind: Kind::Udp { next: 0 },
            msgs,
            mss: MSS_V4,
            ids: [rng.next_u16(), rng.next_u16()],
            last_from_client: None,
            fin_think_us: 0,
            tally: Tally::default(),
        }
    }

    pub(crate) fn is_tcp(&self) -> bool {
        matches!(self.kind, Kind::Tcp(_))
    }

    fn stamp(&mut self, from_client: bool, tcp: Option<TcpFields>, payload: PayloadRef) -> Seg {
        let i = usize::from(!from_client);
        let ip_id = self.ids[i];
        self.ids[i] = ip_id.wrapping_add(1);
        let turn = self.last_from_client != Some(from_client);
        self.last_from_client = Some(from_client);
        Seg {
            from_client,
            tcp,
            payload,
            ip_id,
            turn,
            think_us: 0,
        }
    }

    pub(crate) fn next_seg(&mut self) -> Option<Seg> {
        match &mut self.kind {
            Kind::Udp { next } => {
                let idx = *next;
                let m = self.msgs.get(idx)?;
                let (from_client, len, think) = (m.from_client, m.len(self.mss), m.think_us);
                *next += 1;
                let mut seg = self.stamp(from_client, None, PayloadRef::Msg { idx, start: 0, len });
                seg.think_us = think;
                Some(seg)
            }
            Kind::Tcp(_) => self.next_tcp(),
        }
    }

    fn next_tcp(&mut self) -> Option<Seg> {
        let Kind::Tcp(st) = &mut self.kind else {
            return None;
        };
        // Windows after the handshake are scaled (wscale 7 / 9).
        let (cw, sw) = (502u16, 128u16);
        let (from_client, tcp, payload, think) = loop {
            match st.phase {
                Phase::Syn => {
                    st.phase = Phase::SynAck;
                    st.c_next = st.c_isn.wrapping_add(1);
                    let f = TcpFields {
                        seq: st.c_isn,
                        ack: 0,
                        flags: SYN,
                        window: 64240,
                        syn: true,
                    };
                    break (true, f, PayloadRef::None, 0);
                }
                Phase::SynAck => {
                    st.phase = Phase::HsAck;
                    st.s_next = st.s_isn.wrapping_add(1);
                    let f = TcpFields {
                        seq: st.s_isn,
                        ack: st.c_next,
                        flags: SYN | ACK,
                        window: 65160,
                        syn: true,
                    };
                    break (false, f, PayloadRef::None, 0);
                }
                Phase::HsAck => {
                    st.phase = Phase::Data;
                    let f = TcpFields {
                        seq: st.c_next,
                        ack: st.s_next,
                        flags: ACK,
                        window: cw,
                        syn: false,
                    };
                    break (true, f, PayloadRef::None, 0);
                }
                Phase::Data => {
                    if let Some(fc) = st.pending_ack.take() {
                        let f = if fc {
                            TcpFields {
                                seq: st.c_next,
                                ack: st.s_next,
                                flags: ACK,
                                window: cw,
                                syn: false,
                            }
                        } else {
                            TcpFields {
                                seq: st.s_next,
                                ack: st.c_next,
                                flags: ACK,
                                window: sw,
                                syn: false,
                            }
                        };
                        break (fc, f, PayloadRef::None, 0);
                    }
                    let idx = st.msg;
                    let Some(m) = self.msgs.get(idx) else {
                        st.phase = Phase::FinC;
                        continue;
                    };
                    let total = m.len(self.mss);
                    let want = match (st.off, m.first_seg, &m.data) {
                        (0, Some(n), Data::Bytes(_)) if n > 0 => n.min(self.mss),
                        _ => self.mss,
                    };
                    let len = want.min(total - st.off);
                    let think = if st.off == 0 { m.think_us } else { 0 };
                    let start = st.off;
                    st.off += len;
                    let last = st.off >= total;
                    let fc = m.from_client;
                    let (seq, ack, window) = if fc {
                        let s = st.c_next;
                        st.c_next = s.wrapping_add(len as u32);
                        (s, st.s_next, cw)
                    } else {
                        let s = st.s_next;
                        st.s_next = s.wrapping_add(len as u32);
                        (s, st.c_next, sw)
                    };
                    let flags = if last { ACK | PSH } else { ACK };
                    st.unacked += 1;
                    if last {
                        st.msg += 1;
                        st.off = 0;
                        st.unacked = 0;
                        // The receiver's prompt reply carries the ACK; otherwise its
                        // delayed-ACK timer fires first and it sends a pure ACK.
                        let prompt_reply = self
                            .msgs
                            .get(st.msg)
                            .is_some_and(|n| n.from_client != fc && n.think_us < DELAYED_ACK_US);
                        if !prompt_reply {
                            st.pending_ack = Some(!fc);
                        }
                    } else if st.unacked >= 2 {
                        // Delayed ACK: one ACK per two full segments.
                        st.unacked = 0;
                        st.pending_ack = Some(!fc);
                    }
                    let f = TcpFields {
                        seq,
                        ack,
                        flags,
                        window,
                        syn: false,
                    };
                    break (fc, f, PayloadRef::Msg { idx, start, len }, think);
                }
                Phase::FinC => {
                    st.phase = Phase::FinS;
                    let f = TcpFields {
                        seq: st.c_next,
                        ack: st.s_next,
                        flags: FIN | ACK,
                        window: cw,
                        syn: false,
                    };
                    st.c_next = st.c_next.wrapping_add(1);
                    break (true, f, PayloadRef::None, self.fin_think_us);
                }
                Phase::FinS => {
                    st.phase = Phase::LastAck;
                    let f = TcpFields {
                        seq: st.s_next,
                        ack: st.c_next,
                        flags: FIN | ACK,
                        window: sw,
                        syn: false,
                    };
                    st.s_next = st.s_next.wrapping_add(1);
                    break (false, f, PayloadRef::None, 0);
                }
                Phase::LastAck => {
                    st.phase = Phase::Done;
                    let f = TcpFields {
                        seq: st.c_next,
                        ack: st.s_next,
                        flags: ACK,
                        window: cw,
                        syn: false,
                    };
                    break (true, f, PayloadRef::None, 0);
                }
                Phase::Done => return None,
            }
        };
        let mut seg = self.stamp(from_client, Some(tcp), payload);
        seg.think_us = think;
        Some(seg)
    }

    fn payload<'a>(&'a self, p: PayloadRef, pats: &'a BulkPatterns) -> (&'a [u8], Option<u64>) {
        match p {
            PayloadRef::None => (&[], Some(0)),
            PayloadRef::Msg { idx, start, len } => match self.msgs.get(idx).map(|m| &m.data) {
                Some(Data::Bytes(b)) => (b.get(start..start + len).unwrap_or(&[]), None),
                Some(Data::Bulk { .. }) => pats.for_mss(self.mss).slice(start, len),
                None => (&[], Some(0)),
            },
        }
    }

    /// Renders `seg` into `hdr` (all headers) and returns the payload that follows them
    /// plus the IP total length. Also counts the packet in the conversation's tally.
    pub(crate) fn render<'a>(
        &'a mut self,
        seg: &Seg,
        pats: &'a BulkPatterns,
        hdr: &mut Vec<u8>,
    ) -> Result<(&'a [u8], u32), GenerateError> {
        let (src, dst) = if seg.from_client {
            (self.c, self.s)
        } else {
            (self.s, self.c)
        };
        let opts: [u8; 12];
        let l4 = match seg.tcp {
            Some(t) => {
                let options: &[u8] = if t.syn {
                    // MSS, NOP, window scale 7, NOP, NOP, SACK permitted.
                    let m = (self.mss as u16).to_be_bytes();
                    opts = [2, 4, m[0], m[1], 1, 3, 3, 7, 1, 1, 4, 2];
                    &opts
                } else {
                    &[]
                };
                L4::Tcp {
                    seq: t.seq,
                    ack: t.ack,
                    flags: t.flags,
                    window: t.window,
                    options,
                }
            }
            None => L4::Udp,
        };
        let ip_len = {
            let (payload, cached) = self.payload(seg.payload, pats);
            let sum = cached.unwrap_or_else(|| ones_sum(payload));
            build_headers(hdr, &src, &dst, seg.ip_id, &l4, payload.len(), sum)?
        };
        let t = &mut self.tally;
        if seg.from_client {
            t.orig_pkts += 1;
            t.orig_ip_bytes += u64::from(ip_len);
        } else {
            t.resp_pkts += 1;
            t.resp_ip_bytes += u64::from(ip_len);
        }
        let (payload, _) = self.payload(seg.payload, pats);
        Ok((payload, ip_len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::wire::GATEWAY_MAC;
    use std::net::{IpAddr, Ipv4Addr};

    fn ep(ip: [u8; 4], port: u16) -> Endpoint {
        Endpoint {
            mac: GATEWAY_MAC,
            ip: IpAddr::V4(Ipv4Addr::from(ip)),
            port,
            ttl: 64,
        }
    }

    #[test]
    fn tcp_sequence_numbers_are_consistent() {
        let mut rng = Rng::new(3);
        let pats = BulkPatterns::new(&mut rng);
        let msgs = vec![
            Msg {
                first_seg: Some(10),
                ..Msg::client(vec![1; 100])
            },
            Msg::server(vec![2; 4000]),
            Msg {
                from_client: false,
                data: Data::Bulk { records: 2 },
                first_seg: None,
                think_us: 0,
            },
        ];
        let mut conv = Conv::tcp(
            &mut rng,
            ep([10, 20, 1, 10], 50000),
            ep([198, 51, 100, 1], 443),
            msgs,
        );
        let mut hdr = Vec::new();
        let (mut c_bytes, mut s_bytes) = (0u64, 0u64);
        let mut n = 0;
        let mut seqs: Vec<(bool, u32, u32, u8, usize)> = Vec::new();
        while let Some(seg) = conv.next_seg() {
            let (payload, _) = conv.render(&seg, &pats, &mut hdr).unwrap();
            let t = &hdr[34..54];
            let seq = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
            let ack = u32::from_be_bytes([t[8], t[9], t[10], t[11]]);
            seqs.push((seg.from_client, seq, ack, t[13], payload.len()));
            if seg.from_client {
                c_bytes += payload.len() as u64
            } else {
                s_bytes += payload.len() as u64
            }
            n += 1;
        }
        assert_eq!(c_bytes, 100);
        assert_eq!(s_bytes, 4000 + 2 * 11 * 1460);
        // First data segment is the 10-byte split.
        assert_eq!(seqs[3].4, 10);
        // Every segment's seq follows the previous one from the same side.
        let (mut nc, mut ns) = (None::<u32>, None::<u32>);
        for (fc, seq, _, flags, len) in &seqs {
            let next = if *fc { &mut nc } else { &mut ns };
            if let Some(x) = next {
                assert_eq!(*x, *seq);
            }
            let adv = *len as u32 + u32::from(flags & (SYN | FIN) != 0);
            *next = Some(seq.wrapping_add(adv));
        }
        assert!(n > 20);
        assert_eq!(conv.tally.orig_pkts + conv.tally.resp_pkts, n);
    }
}
