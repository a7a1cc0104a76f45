//! Packet stamping for the behaviour scenarios: TCP and UDP flows with explicit timing, where
//! bulk data travels in TSO/GRO-sized segments whose payload is cut from the capture. The IP
//! total length keeps the size on the wire, so hours of gigabyte transfers fit in a few MB.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::IpAddr;

use serde::Serialize;

use super::GenerateError;
use super::blocks::{Zone, dns_exchange};
use super::conv::{ACK, BulkPatterns, FIN, MSS_V4, MSS_V6, PSH, RST, SYN};
use super::rng::Rng;
use super::wire::{Endpoint, L4, PcapWriter, build_headers, ones_sum};

/// Captured bytes of a sliced frame: Ethernet + IPv4 + TCP headers, or the UDP headers plus
/// an RTP header. The payload beyond is opaque or zeros and not needed by the sensor.
pub(crate) const SLICE: usize = 54;
/// Payload of one coalesced segment, as host captures with TSO/GRO show them.
pub(crate) const BIG_SEG: u64 = 64_000;
/// The receiver of a bulk transfer acknowledges every this many coalesced segments.
const ACK_EVERY: u64 = 8;
/// Zero payload: sliced away, and its checksum contribution is zero.
static ZEROS: [u8; SLICE] = [0; SLICE];

/// What a sliced frame keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keep {
    /// The whole frame (names, handshakes: what the sensor must parse).
    Full,
    /// The first `SLICE` bytes.
    Slice,
}

struct Frame {
    ts: u64,
    order: u64,
    data: Vec<u8>,
    orig_len: usize,
}

/// Per inside host: what the capture holds, counted as IP total lengths (Zeek's ip_bytes).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct HostTally {
    pub flows: u64,
    pub pkts_out: u64,
    pub pkts_in: u64,
    pub bytes_out: u64,
    pub bytes_in: u64,
}

/// One TCP connection's sequence state. Index 0 is the client, 1 the server.
pub(crate) struct Tcp {
    pub c: Endpoint,
    pub s: Endpoint,
    next: [u32; 2],
    ids: [u16; 2],
    mss: usize,
}

pub(crate) struct Frames {
    frames: Vec<Frame>,
    order: u64,
    hdr: Vec<u8>,
    pats: BulkPatterns,
    tallies: BTreeMap<IpAddr, HostTally>,
}

fn side(from_client: bool) -> usize {
    usize::from(!from_client)
}

impl Frames {
    pub(crate) fn new(rng: &mut Rng) -> Frames {
        Frames {
            frames: Vec::new(),
            order: 0,
            hdr: Vec::with_capacity(128),
            pats: BulkPatterns::new(rng),
            tallies: BTreeMap::new(),
        }
    }

    /// Counts this address's traffic in the truth file.
    pub(crate) fn track(&mut self, ip: IpAddr) {
        self.tallies.entry(ip).or_default();
    }

    /// What the capture holds so far for a tracked address (zero for others).
    pub(crate) fn tally(&self, ip: IpAddr) -> HostTally {
        self.tallies.get(&ip).copied().unwrap_or_default()
    }

    fn count_flow(&mut self, c: IpAddr, s: IpAddr) {
        for ip in [c, s] {
            if let Some(t) = self.tallies.get_mut(&ip) {
                t.flows += 1;
            }
        }
    }

    /// Stamps one packet. `data` is real payload; `zero_len` more bytes of zeros follow it
    /// on the wire (only for sliced frames).
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        ts: u64,
        src: &Endpoint,
        dst: &Endpoint,
        ip_id: u16,
        l4: &L4<'_>,
        data: &[u8],
        zero_len: usize,
        keep: Keep,
    ) -> Result<(), GenerateError> {
        let len = data.len() + zero_len;
        let ip_len = build_headers(&mut self.hdr, src, dst, ip_id, l4, len, ones_sum(data))?;
        let orig_len = self.hdr.len() + len;
        let want = match keep {
            Keep::Full => orig_len,
            Keep::Slice => SLICE.max(self.hdr.len()).min(orig_len),
        };
        let mut frame = Vec::with_capacity(want);
        frame.extend_from_slice(&self.hdr);
        let room = want.saturating_sub(frame.len());
        let from_data = room.min(data.len());
        frame.extend_from_slice(data.get(..from_data).unwrap_or(&[]));
        let zeros = (room - from_data).min(zero_len);
        frame.extend_from_slice(ZEROS.get(..zeros).unwrap_or(&[]));
        self.frames.push(Frame {
            ts,
            order: self.order,
            data: frame,
            orig_len,
        });
        self.order += 1;
        let bytes = u64::from(ip_len);
        if let Some(t) = self.tallies.get_mut(&src.ip) {
            t.pkts_out += 1;
            t.bytes_out += bytes;
        }
        if let Some(t) = self.tallies.get_mut(&dst.ip) {
            t.pkts_in += 1;
            t.bytes_in += bytes;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn tcp_seg(
        &mut self,
        tcp: &mut Tcp,
        from_client: bool,
        ts: u64,
        flags: u8,
        data: &[u8],
        zero_len: usize,
        keep: Keep,
    ) -> Result<(), GenerateError> {
        let me = side(from_client);
        let other = 1 - me;
        let seq = tcp.next[me];
        let ack = if flags & ACK != 0 { tcp.next[other] } else { 0 };
        let opts: [u8; 12];
        let options: &[u8] = if flags & SYN != 0 {
            // MSS, NOP, window scale 7, NOP, NOP, SACK permitted.
            let m = (tcp.mss as u16).to_be_bytes();
            opts = [2, 4, m[0], m[1], 1, 3, 3, 7, 1, 1, 4, 2];
            &opts
        } else {
            &[]
        };
        let window = match (flags & SYN != 0, from_client) {
            (true, true) => 64240,
            (true, false) => 65160,
            (false, true) => 502,
            (false, false) => 128,
        };
        let l4 = L4::Tcp {
            seq,
            ack,
            flags,
            window,
            options,
        };
        let (src, dst) = if from_client {
            (tcp.c, tcp.s)
        } else {
            (tcp.s, tcp.c)
        };
        let id = tcp.ids[me];
        tcp.ids[me] = id.wrapping_add(1);
        self.push(ts, &src, &dst, id, &l4, data, zero_len, keep)?;
        let advance = (data.len() + zero_len) as u32 + u32::from(flags & (SYN | FIN) != 0);
        tcp.next[me] = seq.wrapping_add(advance);
        Ok(())
    }

    /// Three-way handshake from `t`; returns the connection and the time of the last packet.
    pub(crate) fn tcp_open(
        &mut self,
        rng: &mut Rng,
        c: Endpoint,
        s: Endpoint,
        t: u64,
        rtt: u64,
    ) -> Result<(Tcp, u64), GenerateError> {
        let mss = if c.ip.is_ipv6() { MSS_V6 } else { MSS_V4 };
        let mut tcp = Tcp {
            c,
            s,
            next: [rng.next_u32(), rng.next_u32()],
            ids: [rng.next_u16(), rng.next_u16()],
            mss,
        };
        self.count_flow(c.ip, s.ip);
        self.tcp_seg(&mut tcp, true, t, SYN, &[], 0, Keep::Full)?;
        self.tcp_seg(&mut tcp, false, t + rtt, SYN | ACK, &[], 0, Keep::Full)?;
        let t = t + rtt + 40 + rng.below(200);
        self.tcp_seg(&mut tcp, true, t, ACK, &[], 0, Keep::Full)?;
        Ok((tcp, t))
    }

    /// A SYN nobody answers, retransmitted `retries` times with exponential backoff (1 s, 2 s).
    pub(crate) fn tcp_syn_unanswered(
        &mut self,
        rng: &mut Rng,
        c: Endpoint,
        s: Endpoint,
        t: u64,
        retries: u32,
    ) -> Result<u64, GenerateError> {
        let mut tcp = Tcp {
            c,
            s,
            next: [rng.next_u32(), 0],
            ids: [rng.next_u16(), 0],
            mss: MSS_V4,
        };
        self.count_flow(c.ip, s.ip);
        let isn = tcp.next[0];
        let mut ts = t;
        for k in 0..=retries {
            tcp.next[0] = isn;
            self.tcp_seg(&mut tcp, true, ts, SYN, &[], 0, Keep::Full)?;
            ts += 1_000_000 << k;
        }
        Ok(ts)
    }

    /// A SYN to a closed port, refused with RST/ACK after `rtt`.
    pub(crate) fn tcp_syn_refused(
        &mut self,
        rng: &mut Rng,
        c: Endpoint,
        s: Endpoint,
        t: u64,
        rtt: u64,
    ) -> Result<u64, GenerateError> {
        let mut tcp = Tcp {
            c,
            s,
            next: [rng.next_u32(), 0],
            ids: [rng.next_u16(), rng.next_u16()],
            mss: MSS_V4,
        };
        self.count_flow(c.ip, s.ip);
        self.tcp_seg(&mut tcp, true, t, SYN, &[], 0, Keep::Full)?;
        self.tcp_seg(&mut tcp, false, t + rtt, RST | ACK, &[], 0, Keep::Full)?;
        Ok(t + rtt)
    }

    /// One message in MSS-sized segments, a few tens of microseconds apart.
    pub(crate) fn tcp_data(
        &mut self,
        tcp: &mut Tcp,
        from_client: bool,
        t: u64,
        data: &[u8],
        keep: Keep,
    ) -> Result<u64, GenerateError> {
        let mut ts = t;
        let chunks = data.chunks(tcp.mss.max(1));
        let n = chunks.len();
        for (i, chunk) in chunks.enumerate() {
            let flags = if i + 1 == n { ACK | PSH } else { ACK };
            self.tcp_seg(tcp, from_client, ts, flags, chunk, 0, keep)?;
            ts += 30;
        }
        Ok(ts)
    }

    /// A pure ACK.
    pub(crate) fn tcp_ack(
        &mut self,
        tcp: &mut Tcp,
        from_client: bool,
        t: u64,
    ) -> Result<(), GenerateError> {
        self.tcp_seg(tcp, from_client, t, ACK, &[], 0, Keep::Full)
    }

    /// `bytes` of opaque data from one side, spread evenly from `t` over `dur` microseconds in
    /// coalesced segments, with the receiver's stretch ACKs. Returns the time of the last packet.
    pub(crate) fn tcp_bulk(
        &mut self,
        tcp: &mut Tcp,
        from_client: bool,
        t: u64,
        dur: u64,
        bytes: u64,
    ) -> Result<u64, GenerateError> {
        if bytes == 0 {
            return Ok(t);
        }
        let segs = bytes.div_ceil(BIG_SEG);
        let step = dur / segs.max(1);
        let mut left = bytes;
        let mut ts = t;
        for k in 0..segs {
            let len = left.min(BIG_SEG);
            left -= len;
            ts = t + k * step;
            let flags = if left == 0 { ACK | PSH } else { ACK };
            self.tcp_seg(tcp, from_client, ts, flags, &[], len as usize, Keep::Slice)?;
            if (k + 1) % ACK_EVERY == 0 || left == 0 {
                ts += 200;
                self.tcp_ack(tcp, !from_client, ts)?;
            }
        }
        Ok(ts)
    }

    /// A client RST ends the connection.
    pub(crate) fn tcp_reset(&mut self, tcp: &mut Tcp, t: u64) -> Result<(), GenerateError> {
        self.tcp_seg(tcp, true, t, RST, &[], 0, Keep::Full)
    }

    /// Client FIN, server FIN, last ACK.
    pub(crate) fn tcp_close(
        &mut self,
        tcp: &mut Tcp,
        t: u64,
        rtt: u64,
    ) -> Result<u64, GenerateError> {
        self.tcp_seg(tcp, true, t, FIN | ACK, &[], 0, Keep::Full)?;
        self.tcp_seg(tcp, false, t + rtt, FIN | ACK, &[], 0, Keep::Full)?;
        let t = t + rtt + 60;
        self.tcp_seg(tcp, true, t, ACK, &[], 0, Keep::Full)?;
        Ok(t)
    }

    /// One UDP datagram of `data` followed by `zero_len` zero bytes.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn udp(
        &mut self,
        ts: u64,
        src: &Endpoint,
        dst: &Endpoint,
        ip_id: u16,
        data: &[u8],
        zero_len: usize,
        keep: Keep,
    ) -> Result<(), GenerateError> {
        self.push(ts, src, dst, ip_id, &L4::Udp, data, zero_len, keep)
    }

    /// Marks the start of a UDP flow (for the per-host flow count).
    pub(crate) fn udp_flow(&mut self, c: &Endpoint, s: &Endpoint) {
        self.count_flow(c.ip, s.ip);
    }

    /// A DNS query and its answer; returns the time the answer arrives.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn dns(
        &mut self,
        rng: &mut Rng,
        t: u64,
        client: Endpoint,
        resolver: Endpoint,
        name: &str,
        qtype: u16,
        zone: &Zone,
    ) -> Result<u64, GenerateError> {
        let latency = if rng.chance(60) {
            rng.range(300, 2_000)
        } else {
            rng.range(8_000, 45_000)
        };
        let mut conv = dns_exchange(rng, client, resolver, name, qtype, zone, latency)?;
        self.count_flow(client.ip, resolver.ip);
        let mut ts = t;
        let mut first = true;
        while let Some(seg) = conv.next_seg() {
            if !first {
                ts += seg.think_us;
            }
            first = false;
            let (payload, ip_len) = conv.render(&seg, &self.pats, &mut self.hdr)?;
            let mut data = Vec::with_capacity(self.hdr.len() + payload.len());
            data.extend_from_slice(&self.hdr);
            data.extend_from_slice(payload);
            let orig_len = data.len();
            self.frames.push(Frame {
                ts,
                order: self.order,
                data,
                orig_len,
            });
            self.order += 1;
            let (src, dst) = if seg.from_client {
                (conv.c.ip, conv.s.ip)
            } else {
                (conv.s.ip, conv.c.ip)
            };
            if let Some(t) = self.tallies.get_mut(&src) {
                t.pkts_out += 1;
                t.bytes_out += u64::from(ip_len);
            }
            if let Some(t) = self.tallies.get_mut(&dst) {
                t.pkts_in += 1;
                t.bytes_in += u64::from(ip_len);
            }
        }
        Ok(ts)
    }

    /// Sorts every packet by time (ties in creation order) and writes them.
    pub(crate) fn write_to<W: Write>(
        mut self,
        w: &mut PcapWriter<W>,
    ) -> Result<BTreeMap<IpAddr, HostTally>, GenerateError> {
        self.frames.sort_by_key(|f| (f.ts, f.order));
        for f in &self.frames {
            w.write_sliced(f.ts, &f.data, f.orig_len)?;
        }
        Ok(self.tallies)
    }
}
