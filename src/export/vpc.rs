//! AWS VPC Flow Logs (AWS VPC user guide, "Flow log records"): space-separated text, plain or
//! gzip (detected by the magic bytes, not the name).
//!
//! Without a header line the default version 2 format is assumed: `version account-id
//! interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action
//! log-status`. A header line (S3 delivery writes one) names the fields of a custom format;
//! fields are then found by name, unknown ones ignored. A header line later in the file
//! (concatenated objects) switches to its layout.
//!
//! Mapping to [`FlowRecord`]:
//! - Addresses: `pkt-srcaddr`/`pkt-dstaddr` when the format has them and they are set, else
//!   `srcaddr`/`dstaddr`. On an intermediate interface (NAT gateway) srcaddr/dstaddr name the
//!   interface, while the pkt- fields name the hosts that really talk.
//! - `start`/`end` (Unix seconds) become ns; `tcp-flags` (OR of the flags seen) fills
//!   `tcp_flags`, otherwise `None`. `-` ports (protocols without ports) are 0.
//! - REJECT records are kept as records with the packets and bytes given (a rejected outbound
//!   attempt is still an attempt that went unanswered) and counted in `rejected`; the record
//!   itself carries no action.
//! - NODATA / SKIPDATA lines carry no flow: counted in `no_data`.
use super::{FlowRecord, RecordSource};
use flate2::read::MultiGzDecoder;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum VpcError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} line {line}: {detail}")]
    Line {
        path: String,
        line: u64,
        detail: String,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VpcCounters {
    /// Data lines (not header or blank lines): `records + no_data + bad_lines`.
    pub lines: u64,
    pub records: u64,
    /// NODATA / SKIPDATA lines (no traffic, or records the service skipped).
    pub no_data: u64,
    pub bad_lines: u64,
    /// Records whose action is REJECT (also counted in `records`).
    pub rejected: u64,
    /// Header lines naming the fields.
    pub header_lines: u64,
}

/// Longer lines are cut and reported: a real record is a few hundred bytes, and a file (or a
/// decompressed stream) without newlines must not grow memory.
const MAX_LINE_BYTES: usize = 64 * 1024;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const DEFAULT_FORMAT: [&str; 14] = [
    "version",
    "account-id",
    "interface-id",
    "srcaddr",
    "dstaddr",
    "srcport",
    "dstport",
    "protocol",
    "packets",
    "bytes",
    "start",
    "end",
    "action",
    "log-status",
];

/// Where the fields we use sit in a line.
#[derive(Debug, Clone, Default)]
struct Layout {
    fields: usize,
    version: Option<usize>,
    srcaddr: Option<usize>,
    dstaddr: Option<usize>,
    pkt_srcaddr: Option<usize>,
    pkt_dstaddr: Option<usize>,
    srcport: Option<usize>,
    dstport: Option<usize>,
    protocol: Option<usize>,
    packets: Option<usize>,
    bytes: Option<usize>,
    start: Option<usize>,
    end: Option<usize>,
    action: Option<usize>,
    log_status: Option<usize>,
    tcp_flags: Option<usize>,
    /// No header seen: lines must be version 2 default-format records.
    default_format: bool,
}

impl Layout {
    fn from_names<'a>(names: impl Iterator<Item = &'a str>) -> Layout {
        let mut layout = Layout::default();
        for (i, name) in names.enumerate() {
            layout.fields = i + 1;
            let slot = match name {
                "version" => &mut layout.version,
                "srcaddr" => &mut layout.srcaddr,
                "dstaddr" => &mut layout.dstaddr,
                "pkt-srcaddr" => &mut layout.pkt_srcaddr,
                "pkt-dstaddr" => &mut layout.pkt_dstaddr,
                "srcport" => &mut layout.srcport,
                "dstport" => &mut layout.dstport,
                "protocol" => &mut layout.protocol,
                "packets" => &mut layout.packets,
                "bytes" => &mut layout.bytes,
                "start" => &mut layout.start,
                "end" => &mut layout.end,
                "action" => &mut layout.action,
                "log-status" => &mut layout.log_status,
                "tcp-flags" => &mut layout.tcp_flags,
                _ => continue,
            };
            slot.get_or_insert(i);
        }
        layout
    }

    fn default_v2() -> Layout {
        Layout {
            default_format: true,
            ..Layout::from_names(DEFAULT_FORMAT.into_iter())
        }
    }

    /// The fields without which no record can be built.
    fn missing(&self) -> Vec<&'static str> {
        [
            ("srcaddr", self.srcaddr.or(self.pkt_srcaddr)),
            ("dstaddr", self.dstaddr.or(self.pkt_dstaddr)),
            ("protocol", self.protocol),
            ("packets", self.packets),
            ("bytes", self.bytes),
            ("start", self.start),
            ("end", self.end),
        ]
        .into_iter()
        .filter_map(|(name, at)| at.is_none().then_some(name))
        .collect()
    }
}

/// A header line: every token is a field name (lowercase, digits, hyphens, starting with a
/// letter) and at least one is a field we know. Data lines always hold a number or `-`.
fn is_header(line: &str) -> bool {
    let mut known = false;
    for token in line.split_ascii_whitespace() {
        let name_like = token.starts_with(|c: char| c.is_ascii_lowercase())
            && token
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !name_like {
            return false;
        }
        known |= DEFAULT_FORMAT.contains(&token)
            || matches!(token, "pkt-srcaddr" | "pkt-dstaddr" | "tcp-flags");
    }
    known
}

/// What one data line is.
#[derive(Debug)]
enum Line {
    Record(FlowRecord, bool),
    NoData,
}

fn parse_line(line: &str, layout: &Layout) -> Result<Line, String> {
    let tokens: Vec<&str> = line.split_ascii_whitespace().collect();
    if tokens.len() != layout.fields {
        return Err(format!(
            "{} fields, the format has {}",
            tokens.len(),
            layout.fields
        ));
    }
    let field = |at: Option<usize>| at.and_then(|i| tokens.get(i).copied());
    if layout.default_format && field(layout.version) != Some("2") {
        return Err(format!(
            "version {:?} without a header line (only version 2 default-format lines are known)",
            field(layout.version).unwrap_or("")
        ));
    }
    match field(layout.log_status) {
        None | Some("OK") => {}
        Some("NODATA" | "SKIPDATA") => return Ok(Line::NoData),
        Some(other) => return Err(format!("log-status {other:?}")),
    }
    let rejected = match field(layout.action) {
        None | Some("-" | "ACCEPT") => false,
        Some("REJECT") => true,
        Some(other) => return Err(format!("action {other:?}")),
    };

    let set = |at: Option<usize>| field(at).filter(|v| *v != "-");
    let required = |name: &str, at: Option<usize>| set(at).ok_or_else(|| format!("{name} missing"));
    let address = |name: &str, packet: Option<usize>, interface: Option<usize>| {
        let text = set(packet).map_or_else(|| required(name, interface), Ok)?;
        text.parse::<IpAddr>()
            .map_err(|_| format!("{name} {text:?} is not an address"))
    };
    fn number<T: std::str::FromStr>(name: &str, text: &str) -> Result<T, String> {
        text.parse()
            .map_err(|_| format!("{name} {text:?} is not a number in range"))
    }
    let port = |name: &str, at: Option<usize>| set(at).map_or(Ok(0), |t| number::<u16>(name, t));
    let seconds_to_ns = |name: &str, at: Option<usize>| {
        number::<u64>(name, required(name, at)?)?
            .checked_mul(1_000_000_000)
            .ok_or_else(|| format!("{name} out of range"))
    };

    let start_ns = seconds_to_ns("start", layout.start)?;
    let end_ns = seconds_to_ns("end", layout.end)?;
    if end_ns < start_ns {
        return Err("end before start".into());
    }
    let record = FlowRecord {
        source: RecordSource::VpcFlowLog,
        exporter: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        src: address("srcaddr", layout.pkt_srcaddr, layout.srcaddr)?,
        dst: address("dstaddr", layout.pkt_dstaddr, layout.dstaddr)?,
        src_port: port("srcport", layout.srcport)?,
        dst_port: port("dstport", layout.dstport)?,
        proto: number("protocol", required("protocol", layout.protocol)?)?,
        octets: number("bytes", required("bytes", layout.bytes)?)?,
        packets: number("packets", required("packets", layout.packets)?)?,
        rev_octets: 0,
        rev_packets: 0,
        start_ns,
        end_ns,
        tcp_flags: set(layout.tcp_flags)
            .map(|t| number::<u8>("tcp-flags", t))
            .transpose()?,
        rev_tcp_flags: None,
        sampling: 1,
        end_reason: None,
    };
    Ok(Line::Record(record, rejected))
}

/// Opens a file, decompressing it when it starts with the gzip magic (any number of members,
/// as concatenated S3 objects are).
fn open(path: &Path) -> io::Result<Box<dyn BufRead>> {
    let mut file = BufReader::new(File::open(path)?);
    let gzip = file.fill_buf()?.starts_with(&GZIP_MAGIC);
    Ok(if gzip {
        Box::new(BufReader::new(MultiGzDecoder::new(file)))
    } else {
        Box::new(file)
    })
}

/// Reads one line into `buf` (without the newline), keeping at most [`MAX_LINE_BYTES`].
/// Returns `None` at the end of input, else whether the line was cut.
fn read_line(reader: &mut dyn BufRead, buf: &mut Vec<u8>) -> io::Result<Option<bool>> {
    buf.clear();
    let (mut any, mut cut) = (false, false);
    loop {
        let chunk = match reader.fill_buf() {
            Ok(chunk) => chunk,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok(any.then_some(cut));
        }
        any = true;
        let newline = chunk.iter().position(|&b| b == b'\n');
        let content = newline.and_then(|n| chunk.get(..n)).unwrap_or(chunk);
        let room = MAX_LINE_BYTES.saturating_sub(buf.len());
        cut |= content.len() > room;
        buf.extend_from_slice(content.get(..room).unwrap_or(content));
        let used = newline.map_or(chunk.len(), |i| i + 1);
        reader.consume(used);
        if newline.is_some() {
            return Ok(Some(cut));
        }
    }
}

/// True when a regular file starts like a VPC flow log (gzip, or the v2 header / a v2 line).
pub fn is_vpc_flow_log(path: &Path) -> bool {
    // Sniffing a pipe (`/dev/stdin`) would consume the bytes the capture reader needs.
    if !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
        return false;
    }
    let Ok(mut reader) = open(path) else {
        return false;
    };
    let mut buf = Vec::new();
    let Ok(Some(false)) = read_line(reader.as_mut(), &mut buf) else {
        return false;
    };
    let Ok(line) = std::str::from_utf8(&buf) else {
        return false;
    };
    if is_header(line) {
        return Layout::from_names(line.split_ascii_whitespace())
            .missing()
            .is_empty();
    }
    parse_line(line.trim_end_matches('\r'), &Layout::default_v2()).is_ok()
}

/// Reads a whole VPC flow log file, calling `on_record` per record; bad lines are counted and
/// reported through `on_error` and the read goes on. A header without the fields a record
/// needs, or an I/O error (a corrupt gzip stream included), ends the read with an error;
/// records before it have been delivered.
pub fn read_file(
    path: &Path,
    counters: &mut VpcCounters,
    on_record: &mut dyn FnMut(FlowRecord),
    on_error: &mut dyn FnMut(VpcError),
) -> Result<(), VpcError> {
    let shown = path.display().to_string();
    let io_error = |source| VpcError::Io {
        path: shown.clone(),
        source,
    };
    let mut reader = open(path).map_err(io_error)?;
    let mut layout = Layout::default_v2();
    let mut buf = Vec::new();
    let mut number = 0u64;
    while let Some(cut) = read_line(reader.as_mut(), &mut buf).map_err(io_error)? {
        number += 1;
        let bad = |detail: String| VpcError::Line {
            path: shown.clone(),
            line: number,
            detail,
        };
        let text = std::str::from_utf8(&buf).map(|t| t.trim_end_matches('\r'));
        if let Ok(text) = text {
            if text.trim().is_empty() {
                continue;
            }
            if !cut && is_header(text) {
                layout = Layout::from_names(text.split_ascii_whitespace());
                let missing = layout.missing();
                if !missing.is_empty() {
                    return Err(bad(format!("header lacks field(s) {}", missing.join(", "))));
                }
                counters.header_lines += 1;
                continue;
            }
        }
        counters.lines += 1;
        let parsed = match text {
            _ if cut => Err(format!("line longer than {MAX_LINE_BYTES} bytes")),
            Err(_) => Err("not UTF-8 text".to_string()),
            Ok(text) => parse_line(text, &layout),
        };
        match parsed {
            Ok(Line::Record(record, rejected)) => {
                counters.records += 1;
                counters.rejected += u64::from(rejected);
                on_record(record);
            }
            Ok(Line::NoData) => counters.no_data += 1,
            Err(detail) => {
                counters.bad_lines += 1;
                on_error(bad(detail));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_detection() {
        assert!(is_header(&DEFAULT_FORMAT.join(" ")));
        assert!(is_header("version vpc-id srcaddr dstaddr tcp-flags az-id"));
        assert!(!is_header(
            "2 123456789010 eni-1235b8ca123456789 - - - - - - - 1431280876 1431280934 - NODATA"
        ));
        assert!(!is_header("eni-1 ACCEPT"));
        assert!(!is_header("vpc-id subnet-id"));
    }

    #[test]
    fn long_lines_are_cut_not_buffered() {
        let mut data = vec![b'x'; MAX_LINE_BYTES * 3];
        data.extend_from_slice(b"\nnext\n");
        let mut reader: &[u8] = &data;
        let mut buf = Vec::new();
        assert_eq!(read_line(&mut reader, &mut buf).unwrap(), Some(true));
        assert_eq!(buf.len(), MAX_LINE_BYTES);
        assert_eq!(read_line(&mut reader, &mut buf).unwrap(), Some(false));
        assert_eq!(buf, b"next");
        assert_eq!(read_line(&mut reader, &mut buf).unwrap(), None);
    }

    #[test]
    fn field_errors_name_the_field() {
        let layout = Layout::default_v2();
        let line = "2 1 eni-1 10.0.0.1 198.51.100.1 1 2 6 3 100 20 10 ACCEPT OK";
        assert_eq!(
            parse_line(line, &layout).err().as_deref(),
            Some("end before start")
        );
        let line = "2 1 eni-1 10.0.0.1 198.51.100.1 1 2 600 3 100 10 20 ACCEPT OK";
        assert!(
            parse_line(line, &layout)
                .unwrap_err()
                .starts_with("protocol")
        );
        let line = "3 1 eni-1 10.0.0.1 198.51.100.1 1 2 6 3 100 10 20 ACCEPT OK";
        assert!(
            parse_line(line, &layout)
                .unwrap_err()
                .starts_with("version")
        );
    }
}
