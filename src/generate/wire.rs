//! Ethernet / IPv4 / IPv6 / TCP / UDP header encoding and the classic pcap writer.
//!
//! Headers are written by hand rather than with etherparse's PacketBuilder because the
//! bench scenario must reuse precomputed payload checksums to reach its packet rate.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::GenerateError;

pub(crate) const PROTO_TCP: u8 = 6;
pub(crate) const PROTO_UDP: u8 = 17;

/// One side of a conversation as it appears on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub mac: [u8; 6],
    pub ip: IpAddr,
    pub port: u16,
    /// TTL / hop limit seen at the sensor: 64 or 128 for local hosts, lower for remote ones.
    pub ttl: u8,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum L4<'a> {
    Tcp {
        seq: u32,
        ack: u32,
        flags: u8,
        window: u16,
        options: &'a [u8],
    },
    Udp,
}

/// Sum of big-endian 16-bit words (odd tail padded with zero), not yet folded.
pub(crate) fn ones_sum(data: &[u8]) -> u64 {
    let mut acc: u64 = 0;
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [b] = words.remainder() {
        acc += u64::from(*b) << 8;
    }
    acc
}

pub(crate) fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

fn put16(out: &mut [u8], at: usize, v: u16) {
    if let Some(dst) = out.get_mut(at..at + 2) {
        dst.copy_from_slice(&v.to_be_bytes());
    }
}

/// Appends Ethernet + IP + TCP/UDP headers for a packet carrying `payload_len` bytes whose
/// `ones_sum` is `payload_sum`. Returns the IP total length (Zeek's ip_bytes unit).
#[allow(clippy::too_many_arguments)]
pub(crate) fn build_headers(
    out: &mut Vec<u8>,
    src: &Endpoint,
    dst: &Endpoint,
    ip_id: u16,
    l4: &L4<'_>,
    payload_len: usize,
    payload_sum: u64,
) -> Result<u32, GenerateError> {
    out.clear();
    let (proto, l4_hdr_len) = match l4 {
        L4::Tcp { options, .. } => {
            if options.len() % 4 != 0 || options.len() > 40 {
                return Err(GenerateError::Internal("bad TCP options length".into()));
            }
            (PROTO_TCP, 20 + options.len())
        }
        L4::Udp => (PROTO_UDP, 8),
    };
    let l4_len = l4_hdr_len + payload_len;

    out.extend_from_slice(&dst.mac);
    out.extend_from_slice(&src.mac);
    let mut pseudo: u64;
    let ip_total = match (src.ip, dst.ip) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = u16::try_from(20 + l4_len)
                .map_err(|_| GenerateError::Internal("IPv4 packet too large".into()))?;
            out.extend_from_slice(&[0x08, 0x00]);
            let ip_at = out.len();
            // DF on TCP like modern stacks; DNS over UDP goes without it.
            let frag = if proto == PROTO_TCP { 0x40 } else { 0x00 };
            out.extend_from_slice(&[0x45, 0x00]);
            out.extend_from_slice(&total.to_be_bytes());
            out.extend_from_slice(&ip_id.to_be_bytes());
            out.extend_from_slice(&[frag, 0x00, src.ttl, proto, 0, 0]);
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
            let csum = !fold(ones_sum(&out[ip_at..ip_at + 20]));
            put16(out, ip_at + 10, csum);
            pseudo = ones_sum(&s.octets()) + ones_sum(&d.octets()) + u64::from(proto);
            pseudo += l4_len as u64;
            u32::from(total)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let plen = u16::try_from(l4_len)
                .map_err(|_| GenerateError::Internal("IPv6 packet too large".into()))?;
            out.extend_from_slice(&[0x86, 0xdd]);
            out.extend_from_slice(&[0x60, 0x00, 0x00, 0x00]);
            out.extend_from_slice(&plen.to_be_bytes());
            out.extend_from_slice(&[proto, src.ttl]);
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
            pseudo = ones_sum(&s.octets()) + ones_sum(&d.octets()) + u64::from(proto);
            pseudo += l4_len as u64;
            40 + u32::from(plen)
        }
        _ => {
            return Err(GenerateError::Internal(
                "conversation mixes IPv4 and IPv6 endpoints".into(),
            ));
        }
    };

    let l4_at = out.len();
    out.extend_from_slice(&src.port.to_be_bytes());
    out.extend_from_slice(&dst.port.to_be_bytes());
    let csum_at = match l4 {
        L4::Tcp {
            seq,
            ack,
            flags,
            window,
            options,
        } => {
            out.extend_from_slice(&seq.to_be_bytes());
            out.extend_from_slice(&ack.to_be_bytes());
            out.push(((l4_hdr_len / 4) as u8) << 4);
            out.push(*flags);
            out.extend_from_slice(&window.to_be_bytes());
            out.extend_from_slice(&[0, 0, 0, 0]);
            out.extend_from_slice(options);
            l4_at + 16
        }
        L4::Udp => {
            out.extend_from_slice(&(l4_len as u16).to_be_bytes());
            out.extend_from_slice(&[0, 0]);
            l4_at + 6
        }
    };
    let mut csum = !fold(pseudo + ones_sum(&out[l4_at..]) + payload_sum);
    if proto == PROTO_UDP && csum == 0 {
        // A zero UDP checksum means "none"; RFC 768 sends all ones instead.
        csum = 0xffff;
    }
    put16(out, csum_at, csum);
    Ok(ip_total)
}

/// Classic little-endian pcap with microsecond timestamps and Ethernet link type.
pub(crate) struct PcapWriter<W: Write> {
    w: W,
    path: PathBuf,
    snaplen: Option<u32>,
    last_ts: Option<u64>,
    pub packets: u64,
    pub bytes: u64,
}

impl<W: Write> PcapWriter<W> {
    pub(crate) fn new(
        mut w: W,
        path: &Path,
        snaplen: Option<u32>,
    ) -> Result<PcapWriter<W>, GenerateError> {
        let mut hdr = [0u8; 24];
        hdr[0..4].copy_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        hdr[4..6].copy_from_slice(&2u16.to_le_bytes());
        hdr[6..8].copy_from_slice(&4u16.to_le_bytes());
        hdr[16..20].copy_from_slice(&snaplen.unwrap_or(65535).to_le_bytes());
        hdr[20..24].copy_from_slice(&1u32.to_le_bytes());
        w.write_all(&hdr).map_err(|e| GenerateError::io(path, e))?;
        Ok(PcapWriter {
            w,
            path: path.to_path_buf(),
            snaplen,
            last_ts: None,
            packets: 0,
            bytes: 24,
        })
    }

    /// Writes one frame made of `head` followed by `tail`. Timestamps are forced strictly
    /// increasing so that readers never see ties or reordering.
    pub(crate) fn write(
        &mut self,
        ts_us: u64,
        head: &[u8],
        tail: &[u8],
    ) -> Result<(), GenerateError> {
        self.record(ts_us, head, tail, head.len() + tail.len())
    }

    /// Writes a frame whose capture was already cut to `captured`, recording `orig_len` as
    /// its length on the wire (TSO/GRO-sized segments whose payload is not stored).
    pub(crate) fn write_sliced(
        &mut self,
        ts_us: u64,
        captured: &[u8],
        orig_len: usize,
    ) -> Result<(), GenerateError> {
        self.record(ts_us, captured, &[], orig_len.max(captured.len()))
    }

    fn record(
        &mut self,
        ts_us: u64,
        head: &[u8],
        tail: &[u8],
        orig: usize,
    ) -> Result<(), GenerateError> {
        let ts = match self.last_ts {
            Some(last) if ts_us <= last => last + 1,
            _ => ts_us,
        };
        self.last_ts = Some(ts);
        let captured = head.len() + tail.len();
        let incl = match self.snaplen {
            Some(s) => captured.min(s as usize),
            None => captured,
        };
        let secs = u32::try_from(ts / 1_000_000)
            .map_err(|_| GenerateError::Internal("timestamp past 2106".into()))?;
        let orig32 = u32::try_from(orig)
            .map_err(|_| GenerateError::Internal("frame larger than 4 GiB".into()))?;
        let mut rec = [0u8; 16];
        rec[0..4].copy_from_slice(&secs.to_le_bytes());
        rec[4..8].copy_from_slice(&((ts % 1_000_000) as u32).to_le_bytes());
        rec[8..12].copy_from_slice(&(incl as u32).to_le_bytes());
        rec[12..16].copy_from_slice(&orig32.to_le_bytes());
        let h = incl.min(head.len());
        let t = (incl - h).min(tail.len());
        let res = self
            .w
            .write_all(&rec)
            .and_then(|()| self.w.write_all(&head[..h]))
            .and_then(|()| self.w.write_all(&tail[..t]));
        res.map_err(|e| GenerateError::io(&self.path, e))?;
        self.packets += 1;
        self.bytes += 16 + incl as u64;
        Ok(())
    }

    pub(crate) fn finish(mut self) -> Result<W, GenerateError> {
        self.w
            .flush()
            .map_err(|e| GenerateError::io(&self.path, e))?;
        Ok(self.w)
    }
}

/// Locally administered MAC derived from an address, so every host keeps one stable MAC.
pub(crate) fn mac_for(ip: IpAddr) -> [u8; 6] {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            [0x02, 0x00, o[0], o[1], o[2], o[3]]
        }
        IpAddr::V6(a) => {
            let o = a.octets();
            [0x02, 0x06, o[12], o[13], o[14], o[15]]
        }
    }
}

/// The default gateway's MAC: every packet to or from the outside crosses it.
pub(crate) const GATEWAY_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0xfe];
