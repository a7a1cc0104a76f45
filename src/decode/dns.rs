//! DNS message decoder: one message in (a UDP payload, or one TCP-framed message without its
//! 2-byte length prefix); header, questions and answer records out. No I/O, no logging.
//!
//! # Tolerance
//! Malformed traffic is data, as in Suricata's parser. [`parse_message`] returns `Err` only
//! when the input is not DNS: shorter than the 12-byte header, or its first question cannot
//! be read. When a later question or any record is truncated or corrupt, it returns `Ok` with
//! what came before and `malformed = true`. RDATA is decoded only for A, AAAA and CNAME
//! answers; every other record (HTTPS/SVCB, OPT, TSIG, ...) is skipped by its RDLENGTH, so,
//! unlike tshark, a record whose RDATA is odd inside never stops the message.
//! Compression pointers may point forward or backward; loops end after
//! [`MAX_POINTER_JUMPS`], and all walking is bounded (see the limits below).
//!
//! # Why a hand-rolled walker, not a crate
//! `dns-parser` fails whole messages that carry HTTPS (type 65) records. `simple-dns` 0.13
//! was tried first: `Packet::parse` is all-or-nothing and its section parsers are private.
//! Of the 277 DNS messages in /work/shared/captures/public it rejected 9 that tshark 4.0
//! decodes, and lost their questions with them:
//! - tcpdump__dns_udp_2.pcap frame 2, zeek__geneve-vxlan-dns-truncated.pcap frames 1-2
//!   (snaplen cuts a record): `InsufficientData`;
//! - ndpi__malformed_dns.pcap frames 2, 3, 5, 6 (second question name over 255 octets, tshark
//!   shows `<Name too long>`): `InvalidDnsPacket`, losing the first question `www.xt.com` too;
//! - zeek__dns-edns-ecs.pcap frames 7-8 (a TSIG record of class ANY): `InvalidClass(255)`.
//!
//! This walker reads every query name and type that tshark reads in those captures.
//!
//! # Name text: tshark 4.0's `dns.qry.name`
//! Names are walked as tshark 4.0.17 walks them (`expand_dns_name`, `get_dns_name`, quirks
//! included) and written as its `format_text` writes them. Checked on the public captures,
//! on crafted names and on 18,000 randomly mutated capture messages, whose query names and
//! types all equal tshark's:
//! - Labels are joined with `.`; a `.` or `\` inside a label is not escaped (`a.b` + `com`
//!   gives `a.b.com`). Case is kept.
//! - Placeholders: the root (or a bare pointer to text that starts with a NUL byte) is
//!   [`ROOT_NAME`]; text over 253 bytes is [`TOO_LONG_NAME`], and the walk still goes to the
//!   name's end so the fields after it stay aligned; more than [`MAX_POINTER_JUMPS`]
//!   pointers, or a pointer to two bytes past itself, give [`LOOP_NAME`]; an extended label
//!   other than a bit string gives [`UNKNOWN_LABEL_NAME`] and ends the name where it was
//!   found. A bit-string label (RFC 2673) is written `\[x<hex>/<bits>]` but, as in tshark,
//!   not counted in the text's length. All but the root set `malformed`.
//! - Printable ASCII stays as is. Other ASCII bytes become C escapes: `\a \b \t \n \v \f \r`,
//!   else three octal digits (`\000`, `\177`).
//! - Bytes from 0x80 are decoded as UTF-8 the lenient way `format_text` does it: overlong
//!   forms are accepted (`C0 80` is U+0000); a lead byte without enough continuation bytes
//!   gives U+FFFD and the next byte is read afresh; surrogates, values above U+10FFFF, lone
//!   continuation bytes and FE/FF give one U+FFFD. The character is kept if GLib's
//!   `g_unichar_isprint` holds (so `Büro ☃`, spaces and U+FFFD stay), else it is written
//!   `\uXXXX` or `\UXXXXXXXX` in upper-case hex (C1 controls, U+200B, U+FEFF, unassigned).
//! - A label of type 10, a pointer past the end or a name cut by the end of the message is
//!   unreadable: tshark marks the frame malformed and shows no name.
use std::cmp::Ordering;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Text of the root name, as tshark shows it.
pub const ROOT_NAME: &str = "<Root>";
/// Text of a name over 253 bytes of text, as tshark shows it.
pub const TOO_LONG_NAME: &str = "<Name too long>";
/// Text of a name that follows more than [`MAX_POINTER_JUMPS`] pointers, as tshark shows it.
pub const LOOP_NAME: &str = "<Name contains a pointer that loops>";
/// Text of a name with an extended label other than a bit string (RFC 2673), as tshark
/// shows it.
pub const UNKNOWN_LABEL_NAME: &str = "<Unknown extended label>";

/// Fixed header size (RFC 1035 section 4.1.1); anything shorter is not DNS.
const HEADER_LEN: usize = 12;
/// tshark's name buffer (MAX_DNAME_LEN): with a byte kept for the final NUL, a name's text
/// (labels and dots) may hold 253 bytes, as in RFC 1035's 255 wire octets, which also caps
/// it at 127 labels. Longer names show as [`TOO_LONG_NAME`].
const NAME_BUF_LEN: usize = 255;
/// tshark's MIN_DNAME_LEN: a name taking under 2 bytes in place is the root or unreadable,
/// and one of 2 bytes (a bare pointer) whose text starts with a NUL byte shows as the root.
const MIN_NAME_WIRE: usize = 2;
/// Pointers one name may follow. tshark 4.0 reads a chain of 255 pointers and calls 256 a
/// loop (checked on crafted messages); real names use one or two.
pub const MAX_POINTER_JUMPS: u32 = 255;
/// Labels and pointers all names of one message may walk together. Only the pointer count
/// ends a name walk (as in tshark), so one hostile name could walk most of the message once
/// per pointer; ndpi__malformed_dns.pcap has a name of 60 pointers and 1098 steps that tshark
/// reads as `<Name too long>`. Legal compressed names need far less than one step per byte,
/// so a message gets two steps per byte (and a floor for small ones) up to this cap: the work
/// per message is linear in its size, not a fixed allowance a small hostile message can
/// spend (the `dns` fuzz target found 1.3 ms for 1143 bytes with a fixed 65,536). When it is
/// spent the message is cut short with `over_limit`.
const MAX_MESSAGE_STEPS: u32 = 65_536;
/// Steps every message gets whatever its size.
const MIN_MESSAGE_STEPS: u32 = 2_048;

/// The walking budget of a message of `len` bytes.
fn message_steps(len: usize) -> u32 {
    u32::try_from(len.saturating_mul(2))
        .unwrap_or(u32::MAX)
        .clamp(MIN_MESSAGE_STEPS, MAX_MESSAGE_STEPS)
}
/// Questions kept per message: unicast DNS asks one, mDNS a few dozen at most.
pub const MAX_QUESTIONS: usize = 256;
/// Answer records kept per message: the largest real answers (round-robin pools, mDNS
/// service lists) hold some hundreds. Bounds the memory one message can claim.
pub const MAX_ANSWERS: usize = 1024;

const TYPE_A: u16 = 1;
const TYPE_CNAME: u16 = 5;
const TYPE_AAAA: u16 = 28;
const TYPE_SVCB: u16 = 64;
const TYPE_HTTPS: u16 = 65;
/// SvcParamKeys read from SVCB/HTTPS data (RFC 9460 section 14.3.2); the others are skipped.
const SVC_PARAM_ALPN: u16 = 1;
const SVC_PARAM_IPV4HINT: u16 = 4;
const SVC_PARAM_IPV6HINT: u16 = 6;
/// ALPN ids and address hints kept per SVCB/HTTPS record. Real records carry two or three of
/// each; the bound keeps a hostile 64 KiB record from claiming memory per hint.
pub const MAX_SERVICE_VALUES: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsQuestion {
    /// Rendered as tshark renders it (module docs).
    pub name: String,
    pub qtype: u16,
    /// As on the wire; mDNS keeps its unicast-response bit (0x8000) here.
    pub qclass: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsRdata {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Cname(String),
    /// SVCB (64) or HTTPS (65) service binding: where and how to reach the owner's service.
    Service(Box<ServiceBinding>),
    /// Any other record type, kept as its number. Also an A, AAAA or CNAME whose data could
    /// not be read (the message is then `malformed`).
    Other(u16),
}

/// The parts of SVCB/HTTPS data (RFC 9460) a sensor uses: the addresses a client may connect
/// to without asking for A/AAAA, and the protocols it may speak (h3: QUIC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceBinding {
    /// 64 (SVCB) or 65 (HTTPS).
    pub rtype: u16,
    /// 0: alias mode (the target names another service; no parameters).
    pub priority: u16,
    /// Rendered like other names; [`ROOT_NAME`] means the owner itself.
    pub target: String,
    /// `alpn` protocol ids in wire order, at most [`MAX_SERVICE_VALUES`].
    pub alpn: Vec<String>,
    /// `ipv4hint` then `ipv6hint` addresses, at most [`MAX_SERVICE_VALUES`] of each.
    pub hints: Vec<IpAddr>,
}

impl DnsRdata {
    /// The addresses the record gives for its owner: A/AAAA data and SVCB/HTTPS hints.
    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        let (single, hints) = match self {
            DnsRdata::A(a) => (Some(IpAddr::V4(*a)), &[][..]),
            DnsRdata::Aaaa(a) => (Some(IpAddr::V6(*a)), &[][..]),
            DnsRdata::Service(binding) => (None, binding.hints.as_slice()),
            DnsRdata::Cname(_) | DnsRdata::Other(_) => (None, &[][..]),
        };
        single.into_iter().chain(hints.iter().copied())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsAnswer {
    /// Owner name, rendered like question names.
    pub name: String,
    /// As on the wire.
    pub ttl: u32,
    pub data: DnsRdata,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DnsMessage {
    pub id: u16,
    pub is_response: bool,
    pub opcode: u8,
    /// The header's 4-bit RCODE (EDNS extended bits are not added).
    pub rcode: u8,
    /// The TC flag.
    pub truncated: bool,
    pub questions: Vec<DnsQuestion>,
    pub answers: Vec<DnsAnswer>,
    /// Set when the message is not well formed: a question or record is truncated or
    /// corrupt (later sections are then unread), an A/AAAA/CNAME has unreadable data, or a
    /// name shows as a placeholder other than the root or holds a bit-string label.
    /// `questions`/`answers` hold what was read.
    pub malformed: bool,
    /// Added field: set when a limit of this decoder, not the message, stopped the reading
    /// ([`MAX_QUESTIONS`], [`MAX_ANSWERS`] or the per-message walking budget). The records
    /// past the limit are not kept.
    pub over_limit: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    #[error("not a DNS message")]
    NotDns,
}

/// Decodes one DNS message; see the module docs for what is tolerated.
pub fn parse_message(buf: &[u8]) -> Result<DnsMessage, DnsError> {
    let Some(&[i0, i1, f0, f1, q0, q1, a0, a1, n0, n1, r0, r1]) = buf.first_chunk::<HEADER_LEN>()
    else {
        return Err(DnsError::NotDns);
    };
    let flags = u16::from_be_bytes([f0, f1]);
    let counts = Counts {
        questions: u16::from_be_bytes([q0, q1]),
        answers: u16::from_be_bytes([a0, a1]),
        others: u32::from(u16::from_be_bytes([n0, n1])) + u32::from(u16::from_be_bytes([r0, r1])),
    };
    let mut msg = DnsMessage {
        id: u16::from_be_bytes([i0, i1]),
        is_response: flags & 0x8000 != 0,
        opcode: ((flags >> 11) & 0x0F) as u8,
        rcode: (flags & 0x0F) as u8,
        truncated: flags & 0x0200 != 0,
        ..DnsMessage::default()
    };
    let mut walker = Walker {
        buf,
        steps_left: message_steps(buf.len()),
    };
    match walker.sections(&mut msg, &counts) {
        Ok(()) => {}
        Err(Stop::Corrupt) => msg.malformed = true,
        Err(Stop::Budget) => msg.over_limit = true,
    }
    // The first question is kept whenever it is readable (MAX_QUESTIONS > 0).
    if counts.questions > 0 && msg.questions.is_empty() {
        return Err(DnsError::NotDns);
    }
    Ok(msg)
}

/// Zeek's name for a query type, exactly as its `DNS::query_types` table renders it
/// ("A", "HTTPS", "*" for ANY, "query-N" for types it does not name), so tools keyed on
/// Zeek's dns.log values match ours.
pub fn qtype_name(qtype: u16) -> String {
    let name = match qtype {
        1 => "A",
        2 => "NS",
        3 => "MD",
        4 => "MF",
        5 => "CNAME",
        6 => "SOA",
        7 => "MB",
        8 => "MG",
        9 => "MR",
        10 => "NULL",
        11 => "WKS",
        12 => "PTR",
        13 => "HINFO",
        14 => "MINFO",
        15 => "MX",
        16 => "TXT",
        17 => "RP",
        18 => "AFSDB",
        19 => "X25",
        20 => "ISDN",
        21 => "RT",
        22 => "NSAP",
        23 => "NSAP-PTR",
        24 => "SIG",
        25 => "KEY",
        26 => "PX",
        27 => "GPOS",
        28 => "AAAA",
        29 => "LOC",
        30 => "NXT",
        31 => "EID",
        32 => "NIMLOC",
        33 => "SRV",
        34 => "ATMA",
        35 => "NAPTR",
        36 => "KX",
        37 => "CERT",
        38 => "A6",
        39 => "DNAME",
        40 => "SINK",
        41 => "OPT",
        42 => "APL",
        43 => "DS",
        44 => "SSHFP",
        45 => "IPSECKEY",
        46 => "RRSIG",
        47 => "NSEC",
        48 => "DNSKEY",
        49 => "DHCID",
        50 => "NSEC3",
        51 => "NSEC3PARAM",
        52 => "TLSA",
        53 => "SMIMEA",
        55 => "HIP",
        56 => "NINFO",
        57 => "RKEY",
        58 => "TALINK",
        59 => "CDS",
        60 => "CDNSKEY",
        61 => "OPENPGPKEY",
        62 => "CSYNC",
        63 => "ZONEMD",
        64 => "SVCB",
        65 => "HTTPS",
        99 => "SPF",
        100 => "UINFO",
        101 => "UID",
        102 => "GID",
        103 => "UNSPEC",
        104 => "NID",
        105 => "L32",
        106 => "L64",
        107 => "LP",
        108 => "EUI48",
        109 => "EUI64",
        249 => "TKEY",
        250 => "TSIG",
        251 => "IXFR",
        252 => "AXFR",
        253 => "MAILB",
        254 => "MAILA",
        255 => "*",
        256 => "URI",
        257 => "CAA",
        32768 => "TA",
        32769 => "DLV",
        65281 => "WINS",
        65282 => "WINS-R",
        65422 => "XPF",
        65521 => "INTEGRITY",
        _ => return format!("query-{qtype}"),
    };
    name.to_owned()
}

/// Zeek's name for a response code ("NOERROR", "NXDOMAIN", ...), from Zeek's
/// `DNS::base_errors`, including its "unassigned-N" and "rcode-N" for the rest.
pub fn rcode_name(rcode: u8) -> String {
    let name = match rcode {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSet",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        11..=15 => return format!("unassigned-{rcode}"),
        16 => "BADVERS",
        17 => "BADKEY",
        18 => "BADTIME",
        19 => "BADMODE",
        20 => "BADNAME",
        21 => "BADALG",
        22 => "BADTRUNC",
        23 => "BADCOOKIE",
        _ => return format!("rcode-{rcode}"),
    };
    name.to_owned()
}

/// Section sizes from the header.
struct Counts {
    questions: u16,
    answers: u16,
    /// Authority plus additional records: walked only to find truncation.
    others: u32,
}

/// Why reading stopped early.
enum Stop {
    /// The message is truncated or corrupt here.
    Corrupt,
    /// [`MAX_MESSAGE_STEPS`] is spent.
    Budget,
}

/// A name read in full.
struct Name {
    text: String,
    /// Offset just past the name's bytes in place (after its first pointer, if any).
    end: usize,
    /// Shown as a placeholder other than the root, or holds a bit-string label.
    odd: bool,
}

/// The fixed part of a resource record, after its owner name.
struct RecordHead {
    rtype: u16,
    ttl: u32,
    /// Start and end of RDATA; the end is checked to lie within the message.
    rdata: (usize, usize),
}

struct Walker<'a> {
    buf: &'a [u8],
    steps_left: u32,
}

impl Walker<'_> {
    fn sections(&mut self, msg: &mut DnsMessage, counts: &Counts) -> Result<(), Stop> {
        let mut pos = HEADER_LEN;
        for _ in 0..counts.questions {
            if msg.questions.len() < MAX_QUESTIONS {
                let name = self.name(pos)?;
                let fixed = self.bytes(name.end, 4)?;
                msg.malformed |= name.odd;
                msg.questions.push(DnsQuestion {
                    name: name.text,
                    qtype: be16(fixed, 0),
                    qclass: be16(fixed, 2),
                });
                pos = name.end + 4;
            } else {
                msg.over_limit = true;
                let end = self.skip_name(pos)?;
                self.bytes(end, 4)?;
                pos = end + 4;
            }
        }
        for _ in 0..counts.answers {
            if msg.answers.len() < MAX_ANSWERS {
                let name = self.name(pos)?;
                let head = self.record_head(name.end)?;
                msg.malformed |= name.odd;
                let data = self.rdata(&head, msg)?;
                msg.answers.push(DnsAnswer {
                    name: name.text,
                    ttl: head.ttl,
                    data,
                });
                pos = head.rdata.1;
            } else {
                msg.over_limit = true;
                pos = self.record_head(self.skip_name(pos)?)?.rdata.1;
            }
        }
        for _ in 0..counts.others {
            pos = self.record_head(self.skip_name(pos)?)?.rdata.1;
        }
        Ok(())
    }

    /// Decodes the RDATA of an answer; unreadable A/AAAA/CNAME data marks the message.
    fn rdata(&mut self, head: &RecordHead, msg: &mut DnsMessage) -> Result<DnsRdata, Stop> {
        let (start, end) = head.rdata;
        let raw = self.buf.get(start..end).unwrap_or_default();
        let data = match head.rtype {
            TYPE_A => <[u8; 4]>::try_from(raw).ok().map(|a| DnsRdata::A(a.into())),
            TYPE_AAAA => <[u8; 16]>::try_from(raw)
                .ok()
                .map(|a| DnsRdata::Aaaa(a.into())),
            TYPE_CNAME => match self.name(start) {
                Ok(name) if name.end <= end => {
                    msg.malformed |= name.odd;
                    Some(DnsRdata::Cname(name.text))
                }
                Ok(_) | Err(Stop::Corrupt) => None,
                Err(Stop::Budget) => return Err(Stop::Budget),
            },
            // SvcPriority, TargetName, then the SvcParams.
            TYPE_SVCB | TYPE_HTTPS if raw.len() < 2 => None,
            TYPE_SVCB | TYPE_HTTPS => match self.name(start + 2) {
                Ok(target) if target.end <= end => {
                    msg.malformed |= target.odd;
                    let params = self.buf.get(target.end..end).unwrap_or_default();
                    service_binding(head.rtype, be16(raw, 0), target.text, params)
                        .map(|b| DnsRdata::Service(Box::new(b)))
                }
                Ok(_) | Err(Stop::Corrupt) => None,
                Err(Stop::Budget) => return Err(Stop::Budget),
            },
            other => Some(DnsRdata::Other(other)),
        };
        Ok(data.unwrap_or_else(|| {
            msg.malformed = true;
            DnsRdata::Other(head.rtype)
        }))
    }

    /// Reads TYPE, CLASS, TTL and RDLENGTH at `pos` and checks RDATA fits the message.
    fn record_head(&self, pos: usize) -> Result<RecordHead, Stop> {
        let fixed = self.bytes(pos, 10)?;
        let start = pos + 10;
        let end = start + usize::from(be16(fixed, 8));
        self.bytes(start, end - start)?;
        Ok(RecordHead {
            rtype: be16(fixed, 0),
            ttl: u32::from(be16(fixed, 4)) << 16 | u32::from(be16(fixed, 6)),
            rdata: (start, end),
        })
    }

    /// `len` bytes at `pos`, or `Corrupt` when the message ends first.
    fn bytes(&self, pos: usize, len: usize) -> Result<&[u8], Stop> {
        self.buf.get(pos..pos + len).ok_or(Stop::Corrupt)
    }

    /// Finds where the name at `start` ends in place, as [`Walker::name`] would, without
    /// following pointers or keeping text: linear in the bytes skipped, so it needs no budget.
    fn skip_name(&self, start: usize) -> Result<usize, Stop> {
        let mut pos = start;
        loop {
            let len = *self.buf.get(pos).ok_or(Stop::Corrupt)?;
            pos += 1;
            match len >> 6 {
                0 if len == 0 => return Ok(pos),
                0 => pos += usize::from(len),
                1 if len == 0x41 => {
                    let bits = *self.buf.get(pos).ok_or(Stop::Corrupt)?;
                    pos += 1 + usize::from(bits.saturating_sub(1)) / 8 + 1;
                }
                1 if pos >= start + MIN_NAME_WIRE => return Ok(pos),
                3 => return self.bytes(pos, 1).map(|_| pos + 1),
                _ => return Err(Stop::Corrupt),
            }
        }
    }

    /// Reads the name at `start`, following pointers, and renders it (module docs). Mirrors
    /// tshark 4.0's `expand_dns_name` and `get_dns_name` step by step, quirks included, so
    /// corrupt names read the same too.
    fn name(&mut self, start: usize) -> Result<Name, Stop> {
        let mut text = NameBuf::new();
        let mut pos = start;
        // The name's end in place is fixed by its first pointer.
        let mut first_ptr_end = None;
        let mut jumps = 0u32;
        let placeholder = loop {
            self.steps_left = self.steps_left.checked_sub(1).ok_or(Stop::Budget)?;
            let len = *self.buf.get(pos).ok_or(Stop::Corrupt)?;
            pos += 1;
            match len >> 6 {
                0 if len == 0 => break None,
                0 => {
                    let label = self.bytes(pos, usize::from(len))?;
                    text.label(label);
                    pos += label.len();
                }
                1 if len == 0x41 => {
                    // RFC 2673 bit-string label: tshark writes `\[x<hex>/<bits>]` (C's
                    // (bits - 1) / 8 + 1 bytes, so 0 bits reads one byte).
                    let bits = *self.buf.get(pos).ok_or(Stop::Corrupt)?;
                    let data = self.bytes(pos + 1, usize::from(bits.saturating_sub(1)) / 8 + 1)?;
                    text.bitstring(bits, data);
                    pos += 1 + data.len();
                }
                1 => {
                    // Other extended label: tshark stops and takes the offset reached, wherever
                    // pointers led, as the end of the name.
                    if pos < start + MIN_NAME_WIRE {
                        return Err(Stop::Corrupt);
                    }
                    return Ok(Name {
                        text: UNKNOWN_LABEL_NAME.to_owned(),
                        end: pos,
                        odd: true,
                    });
                }
                2 => return Err(Stop::Corrupt),
                _ => {
                    let low = *self.buf.get(pos).ok_or(Stop::Corrupt)?;
                    pos += 1;
                    first_ptr_end.get_or_insert(pos);
                    jumps += 1;
                    let target = usize::from(len & 0x3F) << 8 | usize::from(low);
                    // tshark's self-pointer test compares with the offset two bytes past the
                    // pointer, so it fires on that target (a pointer to itself loops anyway).
                    if target == pos + 2 || jumps > MAX_POINTER_JUMPS {
                        break Some(LOOP_NAME);
                    }
                    // A target past the end fails at the next read.
                    pos = target;
                }
            }
        };
        let end = first_ptr_end.unwrap_or(pos);
        let wire_len = end - start;
        let (text, odd) = match placeholder {
            Some(placeholder) => (placeholder.to_owned(), true),
            None if text.room == 0 => (TOO_LONG_NAME.to_owned(), true),
            None if text.starts_with_nul() && wire_len <= MIN_NAME_WIRE => {
                (ROOT_NAME.to_owned(), text.bitstring)
            }
            None if wire_len < MIN_NAME_WIRE || (wire_len > MIN_NAME_WIRE && text.len == 0) => {
                return Err(Stop::Corrupt);
            }
            None => {
                let mut out = String::with_capacity(text.len);
                render(text.shown(), &mut out);
                (out, text.bitstring)
            }
        };
        Ok(Name { text, end, odd })
    }
}

/// tshark's name buffer. Labels and dots are written while `room` lasts and counted in
/// `len`; bit-string text is written but not counted. The text shown is the first `len`
/// bytes, and a name that used up the room is too long.
struct NameBuf {
    bytes: [u8; NAME_BUF_LEN],
    written: usize,
    room: usize,
    len: usize,
    bitstring: bool,
}

impl NameBuf {
    fn new() -> Self {
        Self {
            bytes: [0; NAME_BUF_LEN],
            written: 0,
            room: NAME_BUF_LEN,
            len: 0,
            bitstring: false,
        }
    }

    fn push(&mut self, byte: u8, counted: bool) {
        if self.room == 0 {
            return;
        }
        if let Some(slot) = self.bytes.get_mut(self.written) {
            *slot = byte;
        }
        self.written += 1;
        self.room -= 1;
        if counted {
            self.len += 1;
        }
    }

    fn label(&mut self, label: &[u8]) {
        if self.written == 0 {
            // The first label takes no dot; tshark reserves the byte for the final NUL.
            self.room = self.room.saturating_sub(1);
        } else {
            self.push(b'.', true);
        }
        for &b in label {
            self.push(b, true);
        }
    }

    /// `snprintf` into the room left: written only if it fits with its NUL, else no room.
    fn push_piece(&mut self, piece: &[u8]) {
        if self.room == 0 {
            return;
        }
        if piece.len() < self.room {
            for &b in piece {
                self.push(b, false);
            }
        } else {
            self.room = 0;
        }
    }

    /// Written piece by piece like tshark, without allocating: a crafted message can hold
    /// thousands of bit-string labels (found by the `dns` fuzz target: one 894-byte message
    /// took 20 ms when each hex byte was a `format!`).
    fn bitstring(&mut self, bits: u8, data: &[u8]) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let hex = |nibble: u8| HEX.get(usize::from(nibble & 15)).copied().unwrap_or(b'0');
        self.bitstring = true;
        self.push_piece(b"\\[x");
        for &b in data {
            if self.room == 0 {
                return;
            }
            self.push_piece(&[hex(b >> 4), hex(b)]);
        }
        // "/255]" at most.
        let mut tail = arrayvec::ArrayString::<8>::new();
        let _ = std::fmt::Write::write_fmt(&mut tail, format_args!("/{bits}]"));
        self.push_piece(tail.as_bytes());
    }

    fn starts_with_nul(&self) -> bool {
        self.written == 0 || self.bytes.first() == Some(&0)
    }

    fn shown(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }
}

/// Big-endian u16 at `at`; callers pass slices checked to be long enough (0 otherwise).
/// Reads the SvcParams of SVCB/HTTPS data; `None` when they are cut or a value has the wrong
/// length (the record is then unreadable, as a cut A record is).
fn service_binding(
    rtype: u16,
    priority: u16,
    target: String,
    mut params: &[u8],
) -> Option<ServiceBinding> {
    let mut binding = ServiceBinding {
        rtype,
        priority,
        target,
        alpn: Vec::new(),
        hints: Vec::new(),
    };
    while let Some((&[k0, k1, l0, l1], rest)) = params.split_first_chunk::<4>() {
        let len = usize::from(u16::from_be_bytes([l0, l1]));
        let value = rest.get(..len)?;
        params = rest.get(len..)?;
        match u16::from_be_bytes([k0, k1]) {
            SVC_PARAM_ALPN => {
                let mut ids = value;
                while let Some((&n, tail)) = ids.split_first() {
                    let id = tail.get(..usize::from(n)).filter(|id| !id.is_empty())?;
                    ids = tail.get(usize::from(n)..)?;
                    if binding.alpn.len() < MAX_SERVICE_VALUES {
                        binding.alpn.push(String::from_utf8_lossy(id).into_owned());
                    }
                }
            }
            SVC_PARAM_IPV4HINT => push_hints(&mut binding.hints, value, |a: [u8; 4]| {
                Ipv4Addr::from(a).into()
            })?,
            SVC_PARAM_IPV6HINT => push_hints(&mut binding.hints, value, |a: [u8; 16]| {
                Ipv6Addr::from(a).into()
            })?,
            _ => {}
        }
    }
    // Fewer than 4 bytes left: a cut parameter.
    params.is_empty().then_some(binding)
}

/// Appends an ipv4hint/ipv6hint list of `N`-byte addresses (at most [`MAX_SERVICE_VALUES`]);
/// `None` when the list is empty or not a whole number of addresses.
fn push_hints<const N: usize>(
    hints: &mut Vec<IpAddr>,
    value: &[u8],
    addr: impl Fn([u8; N]) -> IpAddr,
) -> Option<()> {
    if value.is_empty() || !value.len().is_multiple_of(N) {
        return None;
    }
    let addrs = value
        .chunks_exact(N)
        .filter_map(|c| <[u8; N]>::try_from(c).ok());
    hints.extend(addrs.take(MAX_SERVICE_VALUES).map(addr));
    Some(())
}

fn be16(bytes: &[u8], at: usize) -> u16 {
    match bytes.get(at..at + 2) {
        Some(&[hi, lo]) => u16::from_be_bytes([hi, lo]),
        _ => 0,
    }
}

/// Appends `raw` to `out` the way tshark 4.0's `format_text` shows it (module docs).
fn render(raw: &[u8], out: &mut String) {
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        i += 1;
        let escape = match b {
            0x20..=0x7E => {
                out.push(char::from(b));
                continue;
            }
            0x07 => 'a',
            0x08 => 'b',
            0x09 => 't',
            0x0A => 'n',
            0x0B => 'v',
            0x0C => 'f',
            0x0D => 'r',
            0x00..=0x7F => {
                let _ = write!(out, "\\{b:03o}");
                continue;
            }
            _ => {
                let ch = decode_lenient(b, raw, &mut i);
                let cp = u32::from(ch);
                if is_printable(cp) {
                    out.push(ch);
                } else if cp <= 0xFFFF {
                    let _ = write!(out, "\\u{cp:04X}");
                } else {
                    let _ = write!(out, "\\U{cp:08X}");
                }
                continue;
            }
        };
        out.push('\\');
        out.push(escape);
    }
}

/// Decodes the UTF-8 sequence led by `lead` (already consumed), advancing `i` over its
/// continuation bytes. Lenient like tshark: overlong forms decode; anything else that is not
/// a Unicode scalar value becomes U+FFFD.
fn decode_lenient(lead: u8, raw: &[u8], i: &mut usize) -> char {
    // Continuation bytes expected, and the payload bits of the lead byte (5- and 6-byte forms
    // are the pre-2003 UTF-8 that tshark still reads).
    let (more, mask) = match lead {
        0xC0..=0xDF => (1, 0x1F),
        0xE0..=0xEF => (2, 0x0F),
        0xF0..=0xF7 => (3, 0x07),
        0xF8..=0xFB => (4, 0x03),
        0xFC..=0xFD => (5, 0x01),
        _ => return char::REPLACEMENT_CHARACTER,
    };
    let mut cp = u32::from(lead & mask);
    for _ in 0..more {
        match raw.get(*i) {
            Some(&c) if c & 0xC0 == 0x80 => {
                cp = cp << 6 | u32::from(c & 0x3F);
                *i += 1;
            }
            // Incomplete: the byte that broke it is read again as a new character.
            _ => return char::REPLACEMENT_CHARACTER,
        }
    }
    char::from_u32(cp).unwrap_or(char::REPLACEMENT_CHARACTER)
}

/// GLib's `g_unichar_isprint` (Unicode 15.0, GLib 2.74 as used by tshark 4.0 on Debian 12).
fn is_printable(cp: u32) -> bool {
    if cp < 0x80 {
        return (0x20..0x7F).contains(&cp);
    }
    NON_PRINTABLE
        .binary_search_by(|&(lo, hi)| {
            if hi < cp {
                Ordering::Less
            } else if lo > cp {
                Ordering::Greater
            } else {
                Ordering::Equal
            }
        })
        .is_err()
}

/// Code points from U+0080 that `g_unichar_isprint` rejects (categories Cc, Cf, Cn; the
/// surrogate gap is folded in since it never reaches here), as inclusive ranges. Generated
/// by calling GLib 2.74's `g_unichar_isprint` on every code point (Python ctypes).
#[rustfmt::skip]
const NON_PRINTABLE: &[(u32, u32)] = &[
    (0x80, 0x9F), (0xAD, 0xAD), (0x378, 0x379), (0x380, 0x383), (0x38B, 0x38B), (0x38D, 0x38D),
    (0x3A2, 0x3A2), (0x530, 0x530), (0x557, 0x558), (0x58B, 0x58C), (0x590, 0x590), (0x5C8, 0x5CF),
    (0x5EB, 0x5EE), (0x5F5, 0x605), (0x61C, 0x61C), (0x6DD, 0x6DD), (0x70E, 0x70F), (0x74B, 0x74C),
    (0x7B2, 0x7BF), (0x7FB, 0x7FC), (0x82E, 0x82F), (0x83F, 0x83F), (0x85C, 0x85D), (0x85F, 0x85F),
    (0x86B, 0x86F), (0x88F, 0x897), (0x8E2, 0x8E2), (0x984, 0x984), (0x98D, 0x98E), (0x991, 0x992),
    (0x9A9, 0x9A9), (0x9B1, 0x9B1), (0x9B3, 0x9B5), (0x9BA, 0x9BB), (0x9C5, 0x9C6), (0x9C9, 0x9CA),
    (0x9CF, 0x9D6), (0x9D8, 0x9DB), (0x9DE, 0x9DE), (0x9E4, 0x9E5), (0x9FF, 0xA00), (0xA04, 0xA04),
    (0xA0B, 0xA0E), (0xA11, 0xA12), (0xA29, 0xA29), (0xA31, 0xA31), (0xA34, 0xA34), (0xA37, 0xA37),
    (0xA3A, 0xA3B), (0xA3D, 0xA3D), (0xA43, 0xA46), (0xA49, 0xA4A), (0xA4E, 0xA50), (0xA52, 0xA58),
    (0xA5D, 0xA5D), (0xA5F, 0xA65), (0xA77, 0xA80), (0xA84, 0xA84), (0xA8E, 0xA8E), (0xA92, 0xA92),
    (0xAA9, 0xAA9), (0xAB1, 0xAB1), (0xAB4, 0xAB4), (0xABA, 0xABB), (0xAC6, 0xAC6), (0xACA, 0xACA),
    (0xACE, 0xACF), (0xAD1, 0xADF), (0xAE4, 0xAE5), (0xAF2, 0xAF8), (0xB00, 0xB00), (0xB04, 0xB04),
    (0xB0D, 0xB0E), (0xB11, 0xB12), (0xB29, 0xB29), (0xB31, 0xB31), (0xB34, 0xB34), (0xB3A, 0xB3B),
    (0xB45, 0xB46), (0xB49, 0xB4A), (0xB4E, 0xB54), (0xB58, 0xB5B), (0xB5E, 0xB5E), (0xB64, 0xB65),
    (0xB78, 0xB81), (0xB84, 0xB84), (0xB8B, 0xB8D), (0xB91, 0xB91), (0xB96, 0xB98), (0xB9B, 0xB9B),
    (0xB9D, 0xB9D), (0xBA0, 0xBA2), (0xBA5, 0xBA7), (0xBAB, 0xBAD), (0xBBA, 0xBBD), (0xBC3, 0xBC5),
    (0xBC9, 0xBC9), (0xBCE, 0xBCF), (0xBD1, 0xBD6), (0xBD8, 0xBE5), (0xBFB, 0xBFF), (0xC0D, 0xC0D),
    (0xC11, 0xC11), (0xC29, 0xC29), (0xC3A, 0xC3B), (0xC45, 0xC45), (0xC49, 0xC49), (0xC4E, 0xC54),
    (0xC57, 0xC57), (0xC5B, 0xC5C), (0xC5E, 0xC5F), (0xC64, 0xC65), (0xC70, 0xC76), (0xC8D, 0xC8D),
    (0xC91, 0xC91), (0xCA9, 0xCA9), (0xCB4, 0xCB4), (0xCBA, 0xCBB), (0xCC5, 0xCC5), (0xCC9, 0xCC9),
    (0xCCE, 0xCD4), (0xCD7, 0xCDC), (0xCDF, 0xCDF), (0xCE4, 0xCE5), (0xCF0, 0xCF0), (0xCF4, 0xCFF),
    (0xD0D, 0xD0D), (0xD11, 0xD11), (0xD45, 0xD45), (0xD49, 0xD49), (0xD50, 0xD53), (0xD64, 0xD65),
    (0xD80, 0xD80), (0xD84, 0xD84), (0xD97, 0xD99), (0xDB2, 0xDB2), (0xDBC, 0xDBC), (0xDBE, 0xDBF),
    (0xDC7, 0xDC9), (0xDCB, 0xDCE), (0xDD5, 0xDD5), (0xDD7, 0xDD7), (0xDE0, 0xDE5), (0xDF0, 0xDF1),
    (0xDF5, 0xE00), (0xE3B, 0xE3E), (0xE5C, 0xE80), (0xE83, 0xE83), (0xE85, 0xE85), (0xE8B, 0xE8B),
    (0xEA4, 0xEA4), (0xEA6, 0xEA6), (0xEBE, 0xEBF), (0xEC5, 0xEC5), (0xEC7, 0xEC7), (0xECF, 0xECF),
    (0xEDA, 0xEDB), (0xEE0, 0xEFF), (0xF48, 0xF48), (0xF6D, 0xF70), (0xF98, 0xF98), (0xFBD, 0xFBD),
    (0xFCD, 0xFCD), (0xFDB, 0xFFF), (0x10C6, 0x10C6), (0x10C8, 0x10CC), (0x10CE, 0x10CF),
    (0x1249, 0x1249), (0x124E, 0x124F), (0x1257, 0x1257), (0x1259, 0x1259), (0x125E, 0x125F),
    (0x1289, 0x1289), (0x128E, 0x128F), (0x12B1, 0x12B1), (0x12B6, 0x12B7), (0x12BF, 0x12BF),
    (0x12C1, 0x12C1), (0x12C6, 0x12C7), (0x12D7, 0x12D7), (0x1311, 0x1311), (0x1316, 0x1317),
    (0x135B, 0x135C), (0x137D, 0x137F), (0x139A, 0x139F), (0x13F6, 0x13F7), (0x13FE, 0x13FF),
    (0x169D, 0x169F), (0x16F9, 0x16FF), (0x1716, 0x171E), (0x1737, 0x173F), (0x1754, 0x175F),
    (0x176D, 0x176D), (0x1771, 0x1771), (0x1774, 0x177F), (0x17DE, 0x17DF), (0x17EA, 0x17EF),
    (0x17FA, 0x17FF), (0x180E, 0x180E), (0x181A, 0x181F), (0x1879, 0x187F), (0x18AB, 0x18AF),
    (0x18F6, 0x18FF), (0x191F, 0x191F), (0x192C, 0x192F), (0x193C, 0x193F), (0x1941, 0x1943),
    (0x196E, 0x196F), (0x1975, 0x197F), (0x19AC, 0x19AF), (0x19CA, 0x19CF), (0x19DB, 0x19DD),
    (0x1A1C, 0x1A1D), (0x1A5F, 0x1A5F), (0x1A7D, 0x1A7E), (0x1A8A, 0x1A8F), (0x1A9A, 0x1A9F),
    (0x1AAE, 0x1AAF), (0x1ACF, 0x1AFF), (0x1B4D, 0x1B4F), (0x1B7F, 0x1B7F), (0x1BF4, 0x1BFB),
    (0x1C38, 0x1C3A), (0x1C4A, 0x1C4C), (0x1C89, 0x1C8F), (0x1CBB, 0x1CBC), (0x1CC8, 0x1CCF),
    (0x1CFB, 0x1CFF), (0x1F16, 0x1F17), (0x1F1E, 0x1F1F), (0x1F46, 0x1F47), (0x1F4E, 0x1F4F),
    (0x1F58, 0x1F58), (0x1F5A, 0x1F5A), (0x1F5C, 0x1F5C), (0x1F5E, 0x1F5E), (0x1F7E, 0x1F7F),
    (0x1FB5, 0x1FB5), (0x1FC5, 0x1FC5), (0x1FD4, 0x1FD5), (0x1FDC, 0x1FDC), (0x1FF0, 0x1FF1),
    (0x1FF5, 0x1FF5), (0x1FFF, 0x1FFF), (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x206F),
    (0x2072, 0x2073), (0x208F, 0x208F), (0x209D, 0x209F), (0x20C1, 0x20CF), (0x20F1, 0x20FF),
    (0x218C, 0x218F), (0x2427, 0x243F), (0x244B, 0x245F), (0x2B74, 0x2B75), (0x2B96, 0x2B96),
    (0x2CF4, 0x2CF8), (0x2D26, 0x2D26), (0x2D28, 0x2D2C), (0x2D2E, 0x2D2F), (0x2D68, 0x2D6E),
    (0x2D71, 0x2D7E), (0x2D97, 0x2D9F), (0x2DA7, 0x2DA7), (0x2DAF, 0x2DAF), (0x2DB7, 0x2DB7),
    (0x2DBF, 0x2DBF), (0x2DC7, 0x2DC7), (0x2DCF, 0x2DCF), (0x2DD7, 0x2DD7), (0x2DDF, 0x2DDF),
    (0x2E5E, 0x2E7F), (0x2E9A, 0x2E9A), (0x2EF4, 0x2EFF), (0x2FD6, 0x2FEF), (0x2FFC, 0x2FFF),
    (0x3040, 0x3040), (0x3097, 0x3098), (0x3100, 0x3104), (0x3130, 0x3130), (0x318F, 0x318F),
    (0x31E4, 0x31EF), (0x321F, 0x321F), (0xA48D, 0xA48F), (0xA4C7, 0xA4CF), (0xA62C, 0xA63F),
    (0xA6F8, 0xA6FF), (0xA7CB, 0xA7CF), (0xA7D2, 0xA7D2), (0xA7D4, 0xA7D4), (0xA7DA, 0xA7F1),
    (0xA82D, 0xA82F), (0xA83A, 0xA83F), (0xA878, 0xA87F), (0xA8C6, 0xA8CD), (0xA8DA, 0xA8DF),
    (0xA954, 0xA95E), (0xA97D, 0xA97F), (0xA9CE, 0xA9CE), (0xA9DA, 0xA9DD), (0xA9FF, 0xA9FF),
    (0xAA37, 0xAA3F), (0xAA4E, 0xAA4F), (0xAA5A, 0xAA5B), (0xAAC3, 0xAADA), (0xAAF7, 0xAB00),
    (0xAB07, 0xAB08), (0xAB0F, 0xAB10), (0xAB17, 0xAB1F), (0xAB27, 0xAB27), (0xAB2F, 0xAB2F),
    (0xAB6C, 0xAB6F), (0xABEE, 0xABEF), (0xABFA, 0xABFF), (0xD7A4, 0xD7AF), (0xD7C7, 0xD7CA),
    (0xD7FC, 0xD7FF), (0xFA6E, 0xFA6F), (0xFADA, 0xFAFF), (0xFB07, 0xFB12), (0xFB18, 0xFB1C),
    (0xFB37, 0xFB37), (0xFB3D, 0xFB3D), (0xFB3F, 0xFB3F), (0xFB42, 0xFB42), (0xFB45, 0xFB45),
    (0xFBC3, 0xFBD2), (0xFD90, 0xFD91), (0xFDC8, 0xFDCE), (0xFDD0, 0xFDEF), (0xFE1A, 0xFE1F),
    (0xFE53, 0xFE53), (0xFE67, 0xFE67), (0xFE6C, 0xFE6F), (0xFE75, 0xFE75), (0xFEFD, 0xFF00),
    (0xFFBF, 0xFFC1), (0xFFC8, 0xFFC9), (0xFFD0, 0xFFD1), (0xFFD8, 0xFFD9), (0xFFDD, 0xFFDF),
    (0xFFE7, 0xFFE7), (0xFFEF, 0xFFFB), (0xFFFE, 0xFFFF), (0x1000C, 0x1000C), (0x10027, 0x10027),
    (0x1003B, 0x1003B), (0x1003E, 0x1003E), (0x1004E, 0x1004F), (0x1005E, 0x1007F),
    (0x100FB, 0x100FF), (0x10103, 0x10106), (0x10134, 0x10136), (0x1018F, 0x1018F),
    (0x1019D, 0x1019F), (0x101A1, 0x101CF), (0x101FE, 0x1027F), (0x1029D, 0x1029F),
    (0x102D1, 0x102DF), (0x102FC, 0x102FF), (0x10324, 0x1032C), (0x1034B, 0x1034F),
    (0x1037B, 0x1037F), (0x1039E, 0x1039E), (0x103C4, 0x103C7), (0x103D6, 0x103FF),
    (0x1049E, 0x1049F), (0x104AA, 0x104AF), (0x104D4, 0x104D7), (0x104FC, 0x104FF),
    (0x10528, 0x1052F), (0x10564, 0x1056E), (0x1057B, 0x1057B), (0x1058B, 0x1058B),
    (0x10593, 0x10593), (0x10596, 0x10596), (0x105A2, 0x105A2), (0x105B2, 0x105B2),
    (0x105BA, 0x105BA), (0x105BD, 0x105FF), (0x10737, 0x1073F), (0x10756, 0x1075F),
    (0x10768, 0x1077F), (0x10786, 0x10786), (0x107B1, 0x107B1), (0x107BB, 0x107FF),
    (0x10806, 0x10807), (0x10809, 0x10809), (0x10836, 0x10836), (0x10839, 0x1083B),
    (0x1083D, 0x1083E), (0x10856, 0x10856), (0x1089F, 0x108A6), (0x108B0, 0x108DF),
    (0x108F3, 0x108F3), (0x108F6, 0x108FA), (0x1091C, 0x1091E), (0x1093A, 0x1093E),
    (0x10940, 0x1097F), (0x109B8, 0x109BB), (0x109D0, 0x109D1), (0x10A04, 0x10A04),
    (0x10A07, 0x10A0B), (0x10A14, 0x10A14), (0x10A18, 0x10A18), (0x10A36, 0x10A37),
    (0x10A3B, 0x10A3E), (0x10A49, 0x10A4F), (0x10A59, 0x10A5F), (0x10AA0, 0x10ABF),
    (0x10AE7, 0x10AEA), (0x10AF7, 0x10AFF), (0x10B36, 0x10B38), (0x10B56, 0x10B57),
    (0x10B73, 0x10B77), (0x10B92, 0x10B98), (0x10B9D, 0x10BA8), (0x10BB0, 0x10BFF),
    (0x10C49, 0x10C7F), (0x10CB3, 0x10CBF), (0x10CF3, 0x10CF9), (0x10D28, 0x10D2F),
    (0x10D3A, 0x10E5F), (0x10E7F, 0x10E7F), (0x10EAA, 0x10EAA), (0x10EAE, 0x10EAF),
    (0x10EB2, 0x10EFC), (0x10F28, 0x10F2F), (0x10F5A, 0x10F6F), (0x10F8A, 0x10FAF),
    (0x10FCC, 0x10FDF), (0x10FF7, 0x10FFF), (0x1104E, 0x11051), (0x11076, 0x1107E),
    (0x110BD, 0x110BD), (0x110C3, 0x110CF), (0x110E9, 0x110EF), (0x110FA, 0x110FF),
    (0x11135, 0x11135), (0x11148, 0x1114F), (0x11177, 0x1117F), (0x111E0, 0x111E0),
    (0x111F5, 0x111FF), (0x11212, 0x11212), (0x11242, 0x1127F), (0x11287, 0x11287),
    (0x11289, 0x11289), (0x1128E, 0x1128E), (0x1129E, 0x1129E), (0x112AA, 0x112AF),
    (0x112EB, 0x112EF), (0x112FA, 0x112FF), (0x11304, 0x11304), (0x1130D, 0x1130E),
    (0x11311, 0x11312), (0x11329, 0x11329), (0x11331, 0x11331), (0x11334, 0x11334),
    (0x1133A, 0x1133A), (0x11345, 0x11346), (0x11349, 0x1134A), (0x1134E, 0x1134F),
    (0x11351, 0x11356), (0x11358, 0x1135C), (0x11364, 0x11365), (0x1136D, 0x1136F),
    (0x11375, 0x113FF), (0x1145C, 0x1145C), (0x11462, 0x1147F), (0x114C8, 0x114CF),
    (0x114DA, 0x1157F), (0x115B6, 0x115B7), (0x115DE, 0x115FF), (0x11645, 0x1164F),
    (0x1165A, 0x1165F), (0x1166D, 0x1167F), (0x116BA, 0x116BF), (0x116CA, 0x116FF),
    (0x1171B, 0x1171C), (0x1172C, 0x1172F), (0x11747, 0x117FF), (0x1183C, 0x1189F),
    (0x118F3, 0x118FE), (0x11907, 0x11908), (0x1190A, 0x1190B), (0x11914, 0x11914),
    (0x11917, 0x11917), (0x11936, 0x11936), (0x11939, 0x1193A), (0x11947, 0x1194F),
    (0x1195A, 0x1199F), (0x119A8, 0x119A9), (0x119D8, 0x119D9), (0x119E5, 0x119FF),
    (0x11A48, 0x11A4F), (0x11AA3, 0x11AAF), (0x11AF9, 0x11AFF), (0x11B0A, 0x11BFF),
    (0x11C09, 0x11C09), (0x11C37, 0x11C37), (0x11C46, 0x11C4F), (0x11C6D, 0x11C6F),
    (0x11C90, 0x11C91), (0x11CA8, 0x11CA8), (0x11CB7, 0x11CFF), (0x11D07, 0x11D07),
    (0x11D0A, 0x11D0A), (0x11D37, 0x11D39), (0x11D3B, 0x11D3B), (0x11D3E, 0x11D3E),
    (0x11D48, 0x11D4F), (0x11D5A, 0x11D5F), (0x11D66, 0x11D66), (0x11D69, 0x11D69),
    (0x11D8F, 0x11D8F), (0x11D92, 0x11D92), (0x11D99, 0x11D9F), (0x11DAA, 0x11EDF),
    (0x11EF9, 0x11EFF), (0x11F11, 0x11F11), (0x11F3B, 0x11F3D), (0x11F5A, 0x11FAF),
    (0x11FB1, 0x11FBF), (0x11FF2, 0x11FFE), (0x1239A, 0x123FF), (0x1246F, 0x1246F),
    (0x12475, 0x1247F), (0x12544, 0x12F8F), (0x12FF3, 0x12FFF), (0x13430, 0x1343F),
    (0x13456, 0x143FF), (0x14647, 0x167FF), (0x16A39, 0x16A3F), (0x16A5F, 0x16A5F),
    (0x16A6A, 0x16A6D), (0x16ABF, 0x16ABF), (0x16ACA, 0x16ACF), (0x16AEE, 0x16AEF),
    (0x16AF6, 0x16AFF), (0x16B46, 0x16B4F), (0x16B5A, 0x16B5A), (0x16B62, 0x16B62),
    (0x16B78, 0x16B7C), (0x16B90, 0x16E3F), (0x16E9B, 0x16EFF), (0x16F4B, 0x16F4E),
    (0x16F88, 0x16F8E), (0x16FA0, 0x16FDF), (0x16FE5, 0x16FEF), (0x16FF2, 0x16FFF),
    (0x187F8, 0x187FF), (0x18CD6, 0x18CFF), (0x18D09, 0x1AFEF), (0x1AFF4, 0x1AFF4),
    (0x1AFFC, 0x1AFFC), (0x1AFFF, 0x1AFFF), (0x1B123, 0x1B131), (0x1B133, 0x1B14F),
    (0x1B153, 0x1B154), (0x1B156, 0x1B163), (0x1B168, 0x1B16F), (0x1B2FC, 0x1BBFF),
    (0x1BC6B, 0x1BC6F), (0x1BC7D, 0x1BC7F), (0x1BC89, 0x1BC8F), (0x1BC9A, 0x1BC9B),
    (0x1BCA0, 0x1CEFF), (0x1CF2E, 0x1CF2F), (0x1CF47, 0x1CF4F), (0x1CFC4, 0x1CFFF),
    (0x1D0F6, 0x1D0FF), (0x1D127, 0x1D128), (0x1D173, 0x1D17A), (0x1D1EB, 0x1D1FF),
    (0x1D246, 0x1D2BF), (0x1D2D4, 0x1D2DF), (0x1D2F4, 0x1D2FF), (0x1D357, 0x1D35F),
    (0x1D379, 0x1D3FF), (0x1D455, 0x1D455), (0x1D49D, 0x1D49D), (0x1D4A0, 0x1D4A1),
    (0x1D4A3, 0x1D4A4), (0x1D4A7, 0x1D4A8), (0x1D4AD, 0x1D4AD), (0x1D4BA, 0x1D4BA),
    (0x1D4BC, 0x1D4BC), (0x1D4C4, 0x1D4C4), (0x1D506, 0x1D506), (0x1D50B, 0x1D50C),
    (0x1D515, 0x1D515), (0x1D51D, 0x1D51D), (0x1D53A, 0x1D53A), (0x1D53F, 0x1D53F),
    (0x1D545, 0x1D545), (0x1D547, 0x1D549), (0x1D551, 0x1D551), (0x1D6A6, 0x1D6A7),
    (0x1D7CC, 0x1D7CD), (0x1DA8C, 0x1DA9A), (0x1DAA0, 0x1DAA0), (0x1DAB0, 0x1DEFF),
    (0x1DF1F, 0x1DF24), (0x1DF2B, 0x1DFFF), (0x1E007, 0x1E007), (0x1E019, 0x1E01A),
    (0x1E022, 0x1E022), (0x1E025, 0x1E025), (0x1E02B, 0x1E02F), (0x1E06E, 0x1E08E),
    (0x1E090, 0x1E0FF), (0x1E12D, 0x1E12F), (0x1E13E, 0x1E13F), (0x1E14A, 0x1E14D),
    (0x1E150, 0x1E28F), (0x1E2AF, 0x1E2BF), (0x1E2FA, 0x1E2FE), (0x1E300, 0x1E4CF),
    (0x1E4FA, 0x1E7DF), (0x1E7E7, 0x1E7E7), (0x1E7EC, 0x1E7EC), (0x1E7EF, 0x1E7EF),
    (0x1E7FF, 0x1E7FF), (0x1E8C5, 0x1E8C6), (0x1E8D7, 0x1E8FF), (0x1E94C, 0x1E94F),
    (0x1E95A, 0x1E95D), (0x1E960, 0x1EC70), (0x1ECB5, 0x1ED00), (0x1ED3E, 0x1EDFF),
    (0x1EE04, 0x1EE04), (0x1EE20, 0x1EE20), (0x1EE23, 0x1EE23), (0x1EE25, 0x1EE26),
    (0x1EE28, 0x1EE28), (0x1EE33, 0x1EE33), (0x1EE38, 0x1EE38), (0x1EE3A, 0x1EE3A),
    (0x1EE3C, 0x1EE41), (0x1EE43, 0x1EE46), (0x1EE48, 0x1EE48), (0x1EE4A, 0x1EE4A),
    (0x1EE4C, 0x1EE4C), (0x1EE50, 0x1EE50), (0x1EE53, 0x1EE53), (0x1EE55, 0x1EE56),
    (0x1EE58, 0x1EE58), (0x1EE5A, 0x1EE5A), (0x1EE5C, 0x1EE5C), (0x1EE5E, 0x1EE5E),
    (0x1EE60, 0x1EE60), (0x1EE63, 0x1EE63), (0x1EE65, 0x1EE66), (0x1EE6B, 0x1EE6B),
    (0x1EE73, 0x1EE73), (0x1EE78, 0x1EE78), (0x1EE7D, 0x1EE7D), (0x1EE7F, 0x1EE7F),
    (0x1EE8A, 0x1EE8A), (0x1EE9C, 0x1EEA0), (0x1EEA4, 0x1EEA4), (0x1EEAA, 0x1EEAA),
    (0x1EEBC, 0x1EEEF), (0x1EEF2, 0x1EFFF), (0x1F02C, 0x1F02F), (0x1F094, 0x1F09F),
    (0x1F0AF, 0x1F0B0), (0x1F0C0, 0x1F0C0), (0x1F0D0, 0x1F0D0), (0x1F0F6, 0x1F0FF),
    (0x1F1AE, 0x1F1E5), (0x1F203, 0x1F20F), (0x1F23C, 0x1F23F), (0x1F249, 0x1F24F),
    (0x1F252, 0x1F25F), (0x1F266, 0x1F2FF), (0x1F6D8, 0x1F6DB), (0x1F6ED, 0x1F6EF),
    (0x1F6FD, 0x1F6FF), (0x1F777, 0x1F77A), (0x1F7DA, 0x1F7DF), (0x1F7EC, 0x1F7EF),
    (0x1F7F1, 0x1F7FF), (0x1F80C, 0x1F80F), (0x1F848, 0x1F84F), (0x1F85A, 0x1F85F),
    (0x1F888, 0x1F88F), (0x1F8AE, 0x1F8AF), (0x1F8B2, 0x1F8FF), (0x1FA54, 0x1FA5F),
    (0x1FA6E, 0x1FA6F), (0x1FA7D, 0x1FA7F), (0x1FA89, 0x1FA8F), (0x1FABE, 0x1FABE),
    (0x1FAC6, 0x1FACD), (0x1FADC, 0x1FADF), (0x1FAE9, 0x1FAEF), (0x1FAF9, 0x1FAFF),
    (0x1FB93, 0x1FB93), (0x1FBCB, 0x1FBEF), (0x1FBFA, 0x1FFFF), (0x2A6E0, 0x2A6FF),
    (0x2B73A, 0x2B73F), (0x2B81E, 0x2B81F), (0x2CEA2, 0x2CEAF), (0x2EBE1, 0x2F7FF),
    (0x2FA1E, 0x2FFFF), (0x3134B, 0x3134F), (0x323B0, 0xE00FF), (0xE01F0, 0xEFFFF),
    (0xFFFFE, 0xFFFFF), (0x10FFFE, 0x10FFFF),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes from hex; whitespace is ignored.
    use crate::decode::hex;

    fn parse(bytes: &[u8]) -> DnsMessage {
        parse_message(bytes).expect("DNS message")
    }

    fn names(msg: &DnsMessage) -> Vec<&str> {
        msg.questions.iter().map(|q| q.name.as_str()).collect()
    }

    fn answer(name: &str, ttl: u32, data: DnsRdata) -> DnsAnswer {
        DnsAnswer {
            name: name.to_owned(),
            ttl,
            data,
        }
    }

    /// A standard query (id 0x1234, type A, class IN) for a name made of `labels`.
    fn query_for(labels: &[&[u8]]) -> Vec<u8> {
        let mut msg = hex("1234 0100 0001 0000 0000 0000");
        for label in labels {
            msg.push(label.len() as u8);
            msg.extend_from_slice(label);
        }
        msg.extend_from_slice(&[0, 0, 1, 0, 1]);
        msg
    }

    // ndpi__http_connect.pcap frame 6: query apache.org A, EDNS OPT without options.
    const APACHE_QUERY: &str = "
        f5b7 0100 0001 0000 0000 0001 06617061636865 036f7267 00 0001 0001
        00 0029 0200 00000000 0000";
    // Frame 7: its response, one A record, TTL 842.
    const APACHE_RESPONSE: &str = "
        f5b7 8180 0001 0001 0000 0001 06617061636865 036f7267 00 0001 0001
        c00c 0001 0001 0000034a 0004 97650284
        00 0029 04d0 00000000 0000";
    // zeek__pcapng-multi-interface.pcapng frame 2: www.apple.com through three CNAMEs.
    const APPLE_CNAME_CHAIN: &str = "
        4fe8 8180 0001 0004 0000 0001 03777777 056170706c65 03636f6d 00 0001 0001
        c00c 0005 0001 0000010f 001a 0d7777772d6170706c652d636f6d 0176 076161706c696d67 c016
        c02b 0005 0001 0000010f 001b 03777777 056170706c65 03636f6d 07656467656b6579
             036e6574 00
        c051 0005 0001 0000010f 0019 056536383538 056473636539 0a616b616d616965646765 c067
        c078 0001 0001 00000009 0004 17c26518
        00 0029 04d0 00000000 0000";
    // zeek__dns-https.pcap frame 2: HTTPS (type 65) answer with alpn, ipv4hint, ipv6hint.
    const HTTPS_RESPONSE: &str = "
        f29f 8180 0001 0001 0000 0001 0a636c6f7564666c617265 03636f6d 00 0041 0001
        c00c 0041 0001 00000081 004f 0001 00
             0001 0018 026833 0568332d3239 0568332d3238 0568332d3237 026832
             0004 0008 681084e5 681085e5
             0006 0020 26064700000000000000000068 1084e5 26064700000000000000000068 1085e5
        00 0029 1000 00000000 0000";
    // tcpdump__edns-opts.pcap frame 41: query with DO set and four EDNS options:
    // CHAIN (13) "com", DHU (6), PADDING (12) and NSID (3).
    const EDNS_OPTIONS_QUERY: &str = "
        42e2 0120 0001 0000 0000 0001 076578616d706c65 03636f6d 00 0001 0001
        00 0029 1000 00008000 0020
           000d 0005 03636f6d00  0006 0001 03  000c 0004 00000000  0003 0006 aabbccddeeff";
    // tcpdump__dns_udp_2.pcap frame 2: captured with snaplen 98, so the response ends inside
    // its second answer (ANCOUNT 2, NSCOUNT 2, ARCOUNT 5 on the wire).
    const SNAPLEN_CUT_RESPONSE: &str = "
        5934 8500 0001 0002 0002 0005 03777777 0774637064756d70 036f7267 00 0001 0001
        c00c 0001 0001 0000003c 0004 c08b2e42
        c00c 0001 0001 00";
    // zeek__geneve-vxlan-dns-truncated.pcap frame 1: query cut inside its OPT record.
    const SNAPLEN_CUT_QUERY: &str = "
        fa48 0120 0001 0000 0000 0001 09636f72656c69676874 03636f6d 00 0001 0001
        00 0029 1000 00000000 000c 000a 0008 8731";
    // tcpdump__dns_tcp.pcap frame 6: a response over TCP, without its 2-byte length prefix.
    const TCP_RESPONSE: &str = "
        4319 8500 0001 0002 0002 0005 03777777 0774637064756d70 036f7267 00 0001 0001
        c00c 0001 0001 0000003c 0004 c08b2e42
        c00c 0001 0001 0000003c 0004 c6c75868
        c010 0002 0001 00015180 0012 036e6963 0973616e64656c6d616e 026361 00
        c010 0002 0001 00015180 0012 03736e73 08636f6f7065726978 036e6574 00
        c04d 0001 0001 0000012c 0004 d157f912
        c04d 001c 0001 0000012c 0010 2607f0b0000f000000000000babef00d
        c06b 0001 0001 00001c20 0004 616b850f
        c06b 001c 0001 00001c20 0010 26003c0300000000f03c91fffe96e8ef
        00 0029 1000 00000000 0000";
    // zeek__mdns.pcap frame 11: mDNS probe, three ANY questions and four authority records.
    const MDNS_PROBE: &str = "
        0000 0000 0003 0000 0004 0000
        0134 0163 0164 0134 0131 0165 0165 0166 0166 0166 0136 0164 0163 0133 0138 0138
        0135 0133 0132 0138 0163 0133 0130 0163 0165 0139 0132 0134 0132 0135 0164 0166
        03697036 0461727061 00 00ff 0001
        1c6a6f68616e6e612d51454d552d5669727475616c2d4d616368696e65 056c6f63616c 00 00ff 0001
        0166 0132 0138 0166 0133 0136 0135 0131 0136 0163 0162 0135 0138 0136 0139 0135 c02c
             00ff 0001
        c05a 001c 0001 00000078 0010 fd52429ec03c823559685bc61563f82f
        c082 000c 0001 00000078 0002 c05a
        c05a 001c 0001 00000078 0010 fd52429ec03c8235883cd6fffee14dc4
        c00c 000c 0001 00000078 0002 c05a";
    // zeek__mdns.pcap frame 24: mDNS announcement, PTR and AAAA answers with the
    // cache-flush bit in their class.
    const MDNS_ANNOUNCE: &str = "
        0000 8400 0000 0004 0000 0000
        0134 0163 0164 0134 0131 0165 0165 0166 0166 0166 0136 0164 0163 0133 0138 0138
        0135 0133 0132 0138 0163 0133 0130 0163 0165 0139 0132 0134 0132 0135 0164 0166
        03697036 0461727061 00 000c 8001 00000078 0024
             1c6a6f68616e6e612d51454d552d5669727475616c2d4d616368696e65 056c6f63616c 00
        0166 0132 0138 0166 0133 0136 0135 0131 0136 0163 0162 0135 0138 0136 0139 0135 c02c
             000c 8001 00000078 0002 c060
        c060 001c 8001 00000078 0010 fd52429ec03c823559685bc61563f82f
        c060 001c 8001 00000078 0010 fd52429ec03c8235883cd6fffee14dc4";
    // ndpi__malformed_dns.pcap frame 2, built to break parsers: the second question's name
    // runs 1 KiB in place through 63-byte labels whose bytes look like pointers (60 jumps in
    // all); the CNAME answer points into it. tshark shows both as `<Name too long>`.
    const NDPI_MALFORMED: &str = "
        84b4810000020002000000000377777702787403636f6d00000100012241414141414141414141414141
        4141414141414141414141414141414141414141413f000000003f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f
        3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f
        3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f
        3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f
        3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f
        3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f
        3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f
        3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f
        3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f
        3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f
        3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f
        3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f
        3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f
        3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f
        3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f
        3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f
        3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f
        3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f
        3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3e3f3f3f3f3f3f
        3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f
        3f3f3f3f3f3f3f3f3f3f3f3f3f3fc0403d3e3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f
        3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3fc041c0423b3c
        3d3e3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f
        3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3fc043c044c045c0463738393a3b3c3d3e3f3f3f3f3f3f3f3f3f3f
        3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3fc047c048
        c049c04ac04bc04cc04dc04e2f303132333435363738393a3b3c3d3e3f3f3f3f3f3f3f3f3f3f3f3f3f3f
        3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3fc04fc050c051c052c053c054c055c056c057c058c059c05a
        c05bc05cc05dc05e1f202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3ec05f
        c060c061c062c063c064c065c066c067c068c069c06ac06bc06cc06dc06ec06fc070c071c072c073c074
        c075c076c077c078c079c07ac07bc07cc07dc07e00010001c00c0001000100000000000442424242c00c
        0005000100000000004c034141413f303030303130303032303031313030313230303231303032323031
        303130323031313130313132303132313031323230323032313130323132303232313032050000000000
        c0ff";

    #[test]
    fn plain_a_query_and_response() {
        let query = parse(&hex(APACHE_QUERY));
        assert_eq!(query.id, 0xf5b7);
        assert!(!query.is_response && !query.malformed);
        assert_eq!(
            query.questions,
            vec![DnsQuestion {
                name: "apache.org".into(),
                qtype: 1,
                qclass: 1
            }]
        );
        assert!(query.answers.is_empty());

        let response = parse(&hex(APACHE_RESPONSE));
        assert!(response.is_response && !response.malformed && !response.truncated);
        assert_eq!((response.opcode, response.rcode), (0, 0));
        assert_eq!(names(&response), ["apache.org"]);
        let addr = Ipv4Addr::new(151, 101, 2, 132);
        assert_eq!(
            response.answers,
            [answer("apache.org", 842, DnsRdata::A(addr))]
        );
    }

    #[test]
    fn cname_chain_keeps_order_and_ttls() {
        let msg = parse(&hex(APPLE_CNAME_CHAIN));
        assert!(!msg.malformed);
        let cname = |name: &str| DnsRdata::Cname(name.to_owned());
        assert_eq!(
            msg.answers,
            [
                answer("www.apple.com", 271, cname("www-apple-com.v.aaplimg.com")),
                answer(
                    "www-apple-com.v.aaplimg.com",
                    271,
                    cname("www.apple.com.edgekey.net")
                ),
                answer(
                    "www.apple.com.edgekey.net",
                    271,
                    cname("e6858.dsce9.akamaiedge.net")
                ),
                answer(
                    "e6858.dsce9.akamaiedge.net",
                    9,
                    DnsRdata::A([23, 194, 101, 24].into())
                ),
            ]
        );
    }

    /// The values `tshark -V` shows for zeek__dns-https.pcap frame 2.
    fn cloudflare_binding() -> ServiceBinding {
        ServiceBinding {
            rtype: 65,
            priority: 1,
            target: ROOT_NAME.into(),
            alpn: ["h3", "h3-29", "h3-28", "h3-27", "h2"]
                .map(String::from)
                .into(),
            hints: [
                "104.16.132.229",
                "104.16.133.229",
                "2606:4700::6810:84e5",
                "2606:4700::6810:85e5",
            ]
            .map(|a| a.parse().unwrap())
            .into(),
        }
    }

    #[test]
    fn https_record_gives_alpn_and_address_hints() {
        let msg = parse(&hex(HTTPS_RESPONSE));
        assert!(!msg.malformed);
        assert_eq!(msg.questions[0].qtype, 65);
        let binding = cloudflare_binding();
        let hints = binding.hints.clone();
        assert_eq!(
            msg.answers,
            [answer(
                "cloudflare.com",
                129,
                DnsRdata::Service(Box::new(binding))
            )]
        );
        assert_eq!(msg.answers[0].data.addresses().collect::<Vec<_>>(), hints);
    }

    #[test]
    fn cut_or_odd_service_parameters_make_the_record_unreadable() {
        let bytes = hex(HTTPS_RESPONSE);
        // RDLENGTH is at offset 42 (after the question and the answer's name, type, class,
        // TTL); shrinking it cuts the last parameter, and the rest of the message with it.
        let rdlength_at = 42;
        assert_eq!(be16(&bytes, rdlength_at), 0x4f);
        for cut in [1u16, 3, 16, 77, 79] {
            let mut short = bytes.clone();
            short[rdlength_at..rdlength_at + 2].copy_from_slice(&(0x4f - cut).to_be_bytes());
            let msg = parse(&short);
            assert!(msg.malformed, "RDLENGTH cut by {cut}");
            assert!(
                msg.answers
                    .iter()
                    .all(|a| a.data.addresses().next().is_none()),
                "RDLENGTH cut by {cut}: {:?}",
                msg.answers
            );
        }
        // An ipv4hint of 7 bytes: its length field follows priority, root target and alpn.
        let mut odd = bytes.clone();
        let v4_len_at = 44 + 2 + 1 + 2 + 2 + 24 + 2;
        assert_eq!(be16(&odd, v4_len_at), 8);
        odd[v4_len_at + 1] = 7;
        assert!(parse(&odd).malformed);
    }

    #[test]
    fn service_values_are_bounded() {
        let many = (0..40u8).flat_map(|i| [10, 0, 0, i]).collect::<Vec<_>>();
        let mut params = vec![0, 4];
        params.extend_from_slice(&(many.len() as u16).to_be_bytes());
        params.extend_from_slice(&many);
        let binding = service_binding(64, 1, ROOT_NAME.into(), &params).unwrap();
        assert_eq!(binding.hints.len(), MAX_SERVICE_VALUES);
        assert_eq!(service_binding(64, 1, ROOT_NAME.into(), &params[..5]), None);
    }

    #[test]
    fn edns_options_are_walked_by_length() {
        let bytes = hex(EDNS_OPTIONS_QUERY);
        let msg = parse(&bytes);
        assert!(!msg.malformed);
        assert_eq!(names(&msg), ["example.com"]);
        // The OPT record is checked against the end of the message: one byte less is a cut.
        let cut = parse(&bytes[..bytes.len() - 1]);
        assert!(cut.malformed);
        assert_eq!(cut.questions, msg.questions);
    }

    #[test]
    fn snaplen_cut_response_keeps_what_was_read() {
        let msg = parse(&hex(SNAPLEN_CUT_RESPONSE));
        assert!(msg.malformed && msg.is_response);
        assert_eq!(msg.id, 0x5934);
        assert_eq!(names(&msg), ["www.tcpdump.org"]);
        let addr = Ipv4Addr::new(192, 139, 46, 66);
        assert_eq!(
            msg.answers,
            [answer("www.tcpdump.org", 60, DnsRdata::A(addr))]
        );

        let query = parse(&hex(SNAPLEN_CUT_QUERY));
        assert!(query.malformed);
        assert_eq!(names(&query), ["corelight.com"]);
    }

    #[test]
    fn tcp_message_without_length_prefix() {
        let msg = parse(&hex(TCP_RESPONSE));
        assert!(!msg.malformed);
        // Authority and additional records are walked but only answers are kept.
        let addrs = [[192, 139, 46, 66], [198, 199, 88, 104]];
        let expected: Vec<_> = addrs
            .into_iter()
            .map(|a| answer("www.tcpdump.org", 60, DnsRdata::A(a.into())))
            .collect();
        assert_eq!(msg.answers, expected);
    }

    #[test]
    fn mdns_probe_has_several_questions() {
        let msg = parse(&hex(MDNS_PROBE));
        assert!(!msg.malformed && !msg.is_response);
        let arpa6 = "4.c.d.4.1.e.e.f.f.f.6.d.c.3.8.8.5.3.2.8.c.3.0.c.e.9.2.4.2.5.d.f.ip6.arpa";
        let arpa6b = "f.2.8.f.3.6.5.1.6.c.b.5.8.6.9.5.5.3.2.8.c.3.0.c.e.9.2.4.2.5.d.f.ip6.arpa";
        assert_eq!(
            names(&msg),
            [arpa6, "johanna-QEMU-Virtual-Machine.local", arpa6b]
        );
        assert!(
            msg.questions
                .iter()
                .all(|q| q.qtype == 255 && q.qclass == 1)
        );
        assert!(msg.answers.is_empty());
    }

    #[test]
    fn mdns_announcement_answers() {
        let msg = parse(&hex(MDNS_ANNOUNCE));
        assert!(!msg.malformed && msg.is_response && msg.questions.is_empty());
        let host = "johanna-QEMU-Virtual-Machine.local";
        let aaaa = |text: &str| DnsRdata::Aaaa(text.parse().unwrap());
        assert_eq!(
            msg.answers,
            [
                answer(
                    "4.c.d.4.1.e.e.f.f.f.6.d.c.3.8.8.5.3.2.8.c.3.0.c.e.9.2.4.2.5.d.f.ip6.arpa",
                    120,
                    DnsRdata::Other(12)
                ),
                answer(
                    "f.2.8.f.3.6.5.1.6.c.b.5.8.6.9.5.5.3.2.8.c.3.0.c.e.9.2.4.2.5.d.f.ip6.arpa",
                    120,
                    DnsRdata::Other(12)
                ),
                answer(host, 120, aaaa("fd52:429e:c03c:8235:5968:5bc6:1563:f82f")),
                answer(host, 120, aaaa("fd52:429e:c03c:8235:883c:d6ff:fee1:4dc4")),
            ]
        );
    }

    #[test]
    fn over_long_names_read_as_tshark_reads_them() {
        let msg = parse(&hex(NDPI_MALFORMED));
        assert!(msg.malformed && !msg.over_limit);
        // The second question's type is read after its 1 KiB name, so the walk stayed aligned.
        let types: Vec<_> = msg.questions.iter().map(|q| q.qtype).collect();
        assert_eq!(names(&msg), ["www.xt.com", TOO_LONG_NAME]);
        assert_eq!(types, [1, 1]);
        assert_eq!(
            msg.answers,
            [
                answer("www.xt.com", 0, DnsRdata::A([66, 66, 66, 66].into())),
                answer("www.xt.com", 0, DnsRdata::Cname(TOO_LONG_NAME.into())),
            ]
        );
    }

    #[test]
    fn text_limit_is_253_bytes() {
        let a63 = [b'a'; 63];
        let fits = parse(&query_for(&[&a63, &a63, &a63, &[b'b'; 61]]));
        assert_eq!(fits.questions[0].name.len(), 253);
        assert!(!fits.malformed);
        let over = parse(&query_for(&[&a63, &a63, &a63, &[b'b'; 62]]));
        assert_eq!(names(&over), [TOO_LONG_NAME]);
        assert!(over.malformed);
        // 127 one-byte labels make 253 bytes of text; 128 do not fit.
        assert!(!parse(&query_for(&[&b"a"[..]; 127])).malformed);
        assert_eq!(
            names(&parse(&query_for(&[&b"a"[..]; 128]))),
            [TOO_LONG_NAME]
        );
    }

    #[test]
    fn compression_pointers() {
        // Forward pointer: www + a name stored after the question.
        let forward = parse(&hex(
            "0001 0100 0001 0000 0000 0000 03777777 c016 0001 0001 076578616d706c65 036f7267 00",
        ));
        assert_eq!(names(&forward), ["www.example.org"]);
        // A pointer to itself, a label looping back, two pointers to each other: all loops,
        // and the question's type after the pointer is still read.
        for looping in [
            "0002 0100 0001 0000 0000 0000 c00c 0001 0001",
            "0003 0100 0001 0000 0000 0000 0161 c00c 0001 0001",
            "0004 0100 0001 0000 0000 0000 c012 0001 0001 c014 c012",
        ] {
            let msg = parse(&hex(looping));
            assert_eq!(names(&msg), [LOOP_NAME], "{looping}");
            assert_eq!(msg.questions[0].qtype, 1);
            assert!(msg.malformed);
        }
        // tshark's self-pointer test fires on a pointer to two bytes past itself.
        let quirk = parse(&hex(
            "0006 0100 0001 0000 0000 0000 c010 0001 0001 03616263 00",
        ));
        assert_eq!(names(&quirk), [LOOP_NAME]);
        // A pointer past the end makes the name unreadable.
        let out = hex("0006 0100 0001 0000 0000 0000 03777777 c0ff 0001 0001");
        assert_eq!(parse_message(&out), Err(DnsError::NotDns));
    }

    /// A query whose name is a pointer into a chain of `n` pointers that ends at the root.
    fn pointer_chain(n: usize) -> Vec<u8> {
        let mut msg = hex("0000 0100 0001 0000 0000 0000 c012 0001 0001");
        for i in 0..n {
            let next = 18 + 2 * (i + 1);
            msg.extend_from_slice(&(0xC000 | next as u16).to_be_bytes());
        }
        msg.push(0);
        msg
    }

    #[test]
    fn pointer_limit_matches_tshark() {
        // The question's own pointer plus the chain: 255 jumps read, 256 loop.
        let longest = parse(&pointer_chain(MAX_POINTER_JUMPS as usize - 1));
        assert_eq!(names(&longest), [ROOT_NAME]);
        assert!(!longest.malformed);
        assert_eq!(
            names(&parse(&pointer_chain(MAX_POINTER_JUMPS as usize))),
            [LOOP_NAME]
        );
    }

    #[test]
    fn name_text_matches_tshark() {
        // Expected texts are tshark 4.0.17's dns.qry.name for the same queries.
        let cases: [(&[&[u8]], &str); 17] = [
            (&[b"a.b", b"com"], "a.b.com"),
            (&[b"a\\b", b"com"], "a\\b.com"),
            (&[b"WWW", b"Example", b"COM"], "WWW.Example.COM"),
            (
                &[b"My Printer", b"_ipp", b"_tcp", b"local"],
                "My Printer._ipp._tcp.local",
            ),
            (
                &["Büro-Drucker ☃".as_bytes(), b"local"],
                "Büro-Drucker ☃.local",
            ),
            (&[b"a\x01b\x7fc", b"com"], "a\\001b\\177c.com"),
            (
                &[b"a\x07b\x08c\x0cd\x0be\x1bf", b"x"],
                "a\\ab\\bc\\fd\\ve\\033f.x",
            ),
            (&[b"a\tb\nc\rd", b"com"], "a\\tb\\nc\\rd.com"),
            (&[b"ab\x00cd", b"com"], "ab\\000cd.com"),
            (&[b"caf\xe9", b"com"], "caf\u{FFFD}.com"),
            (&[b"\xff\xfe", b"com"], "\u{FFFD}\u{FFFD}.com"),
            (&[b"\xe2\x28\xa1", b"x"], "\u{FFFD}(\u{FFFD}.x"),
            (&[b"\xed\xa0\x80", b"x"], "\u{FFFD}.x"),
            (&[b"\xc0\x80", b"x"], "\\u0000.x"),
            (&[b"a\xc2\x85b", b"a\xe2\x80\x8bb"], "a\\u0085b.a\\u200Bb"),
            (&[b"\xcd\xb8", b"\xf3\xa0\x80\x81"], "\\u0378.\\U000E0001"),
            (
                &["\u{1F600}".as_bytes(), "\u{30000}".as_bytes()],
                "\u{1F600}.\u{30000}",
            ),
        ];
        for (labels, expected) in cases {
            let msg = parse(&query_for(labels));
            assert_eq!(names(&msg), [expected]);
            assert!(!msg.malformed, "{expected}");
        }
        assert_eq!(names(&parse(&query_for(&[]))), [ROOT_NAME]);
    }

    #[test]
    fn tshark_quirks_for_odd_labels() {
        // Bit-string labels are written but not counted, so only part of the text shows.
        let bits = parse(&hex(
            "0001 0100 0001 0000 0000 0000 03616263 4108ff 03636f6d 00 0001 0001",
        ));
        assert_eq!(names(&bits), ["abc\\[xf"]);
        assert!(bits.malformed);
        // Another extended label ends the name where it stands; the type follows it.
        let ext = parse(&hex("0004 0100 0001 0000 0000 0000 03616263 62 0001 0001"));
        assert_eq!(names(&ext), [UNKNOWN_LABEL_NAME]);
        assert_eq!(ext.questions[0].qtype, 1);
        // As the first byte it is unreadable, like a label of type 10.
        assert!(parse_message(&hex("0005 0100 0001 0000 0000 0000 62 0001 0001")).is_err());
        assert!(
            parse_message(&hex("1234 0100 0001 0000 0000 0000 83616263 00 0001 0001")).is_err()
        );
        // A bare pointer to text that starts with a NUL byte shows as the root.
        let nul = parse(&hex(
            "0001 0100 0002 0000 0000 0000 0400616263 00 0001 0001 c00c 0001 0001",
        ));
        assert_eq!(names(&nul), ["\\000abc", ROOT_NAME]);
    }

    #[test]
    fn errors_only_when_not_dns() {
        assert_eq!(parse_message(&[0; 11]), Err(DnsError::NotDns));
        assert_eq!(parse_message(&[]), Err(DnsError::NotDns));
        // The first question cut inside its name or its type.
        assert!(parse_message(&hex("0005 0100 0001 0000 0000 0000 03777777 10 6162")).is_err());
        assert!(
            parse_message(&hex(
                "000a 0100 0001 0000 0000 0000 066e6f74797065 03636f6d 00"
            ))
            .is_err()
        );
        // No questions: a bare header is a message.
        let bare = parse(&hex("abcd aa03 0000 0000 0000 0000"));
        assert_eq!((bare.id, bare.opcode, bare.rcode), (0xabcd, 5, 3));
        assert!(bare.is_response && bare.truncated && !bare.malformed);
        // A second question cut short keeps the first.
        let second = parse(&hex(
            "0009 0100 0002 0000 0000 0000 056669727374 03636f6d 00 0001 0001 067365636f6e64",
        ));
        assert_eq!(names(&second), ["first.com"]);
        assert!(second.malformed);
        // Bytes after the last record are ignored.
        let mut padded = hex(APACHE_RESPONSE);
        padded.extend_from_slice(&[0; 7]);
        assert!(!parse(&padded).malformed);
    }

    #[test]
    fn unreadable_rdata_is_marked() {
        // Answers owned by "a": an A of 3 bytes, an AAAA of 4, a CNAME running past its RDATA.
        let msg = parse(&hex("
            0001 8180 0000 0003 0000 0000
            0161 00 0001 0001 00000005 0003 0a0000
            c00c 001c 0001 00000005 0004 0a000001
            c00c 0005 0001 00000005 0002 0162 00"));
        assert!(msg.malformed);
        let data: Vec<_> = msg.answers.iter().map(|a| a.data.clone()).collect();
        assert_eq!(
            data,
            [DnsRdata::Other(1), DnsRdata::Other(28), DnsRdata::Other(5)]
        );
        assert_eq!(msg.answers[0].name, "a");
    }

    #[test]
    fn limits_stop_reading_without_marking_malformed() {
        // MAX_QUESTIONS + 10 questions, all pointing to the first, then one A answer.
        let mut msg = hex("0000 0100 0000 0001 0000 0000 0161 00 0001 0001");
        let count = MAX_QUESTIONS + 10;
        msg[4..6].copy_from_slice(&(count as u16).to_be_bytes());
        for _ in 1..count {
            msg.extend_from_slice(&hex("c00c 0001 0001"));
        }
        msg.extend_from_slice(&hex("c00c 0001 0001 00000005 0004 0a000001"));
        let parsed = parse(&msg);
        assert_eq!(parsed.questions.len(), MAX_QUESTIONS);
        assert!(parsed.over_limit && !parsed.malformed);
        assert_eq!(
            parsed.answers,
            [answer("a", 5, DnsRdata::A([10, 0, 0, 1].into()))]
        );

        // Answers whose names all loop through one self-pointer spend the walking budget:
        // each name costs MAX_POINTER_JUMPS + 1 steps.
        let mut looping = hex("0000 8000 0000 0000 0000 0000");
        looping[6..8].copy_from_slice(&1000u16.to_be_bytes());
        for _ in 0..1000 {
            looping.extend_from_slice(&hex("c00c 0010 0001 00000000 0000"));
        }
        let parsed = parse(&looping);
        let affordable = (message_steps(looping.len()) / (MAX_POINTER_JUMPS + 1)) as usize;
        assert_eq!(parsed.answers.len(), affordable);
        assert!(parsed.over_limit);
        assert!(parsed.answers.iter().all(|a| a.name == LOOP_NAME));
    }

    /// Found by the `dns` fuzz target (tests/data/fuzz/): 1143 bytes claiming 2827 questions
    /// whose names run through long pointer walks spent the whole fixed budget of 65,536
    /// steps (1.3 ms a message). A small message now gets a budget in proportion.
    #[test]
    fn a_small_hostile_message_spends_a_budget_in_proportion_to_its_size() {
        let message = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data/fuzz/dns-walk-budget.bin"),
        )
        .unwrap();
        assert_eq!(message_steps(message.len()), 2 * message.len() as u32);
        let parsed = parse(&message);
        assert!(parsed.over_limit);
        // A kept question or answer took at least one step.
        let kept = parsed.questions.len() + parsed.answers.len();
        assert!(kept <= message_steps(message.len()) as usize);
        assert!(message_steps(10) == MIN_MESSAGE_STEPS);
        assert!(message_steps(usize::MAX) == MAX_MESSAGE_STEPS);
    }

    #[test]
    fn type_and_rcode_names() {
        let types = [
            (1, "A"),
            (5, "CNAME"),
            (28, "AAAA"),
            (33, "SRV"),
            (64, "SVCB"),
        ];
        for (code, name) in
            types
                .into_iter()
                .chain([(65, "HTTPS"), (255, "*"), (65534, "query-65534")])
        {
            assert_eq!(qtype_name(code), name);
        }
        let rcodes = [
            (0, "NOERROR"),
            (2, "SERVFAIL"),
            (3, "NXDOMAIN"),
            (5, "REFUSED"),
        ];
        for (code, name) in
            rcodes
                .into_iter()
                .chain([(8, "NXRRSet"), (12, "unassigned-12"), (99, "rcode-99")])
        {
            assert_eq!(rcode_name(code), name);
        }
    }

    /// xorshift64*: a fixed-seed generator, so failures reproduce.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Every name shown fits in 4 bytes per byte of text (`\ooo` is the widest escape).
    fn assert_bounded(msg: &DnsMessage) {
        assert!(msg.questions.len() <= MAX_QUESTIONS && msg.answers.len() <= MAX_ANSWERS);
        let mut shown = msg
            .questions
            .iter()
            .map(|q| &q.name)
            .chain(msg.answers.iter().map(|a| &a.name));
        assert!(shown.all(|name| name.len() <= 4 * (NAME_BUF_LEN - 2)));
    }

    #[test]
    fn truncations_and_mutations_never_panic() {
        let corpus = [
            APACHE_QUERY,
            APACHE_RESPONSE,
            APPLE_CNAME_CHAIN,
            HTTPS_RESPONSE,
            EDNS_OPTIONS_QUERY,
            TCP_RESPONSE,
            MDNS_PROBE,
            MDNS_ANNOUNCE,
            NDPI_MALFORMED,
        ];
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for text in corpus {
            let whole = hex(text);
            let full = parse(&whole);
            // A cut message reads a prefix of what the whole one reads, and says it is cut.
            for len in 0..whole.len() {
                let Ok(cut) = parse_message(&whole[..len]) else {
                    continue;
                };
                assert_bounded(&cut);
                assert!(cut.malformed, "{len} of {}", whole.len());
                assert_eq!(cut.questions[..], full.questions[..cut.questions.len()]);
                assert_eq!(cut.answers[..], full.answers[..cut.answers.len()]);
            }
            for _ in 0..2000 {
                let mut bytes = whole.clone();
                for _ in 0..1 + rng.below(8) {
                    let at = rng.below(bytes.len());
                    bytes[at] = match rng.below(4) {
                        0 => rng.next() as u8,
                        1 => bytes[at] ^ 1 << rng.below(8),
                        2 => [0x00, 0x3F, 0x40, 0x41, 0x80, 0xC0, 0xFF][rng.below(7)],
                        _ => 0xC0 | rng.below(4) as u8,
                    };
                }
                bytes.truncate(bytes.len() - rng.below(8).min(bytes.len()));
                if let Ok(msg) = parse_message(&bytes) {
                    assert_bounded(&msg);
                }
            }
        }
    }
}
