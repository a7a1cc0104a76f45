//! Offline replay of pcap and pcapng files.
//!
//! Files are read in large chunks and records are parsed in place (see `chunks`): the hot
//! records (legacy pcap records, enhanced packet blocks without options) are decoded here
//! directly; rare pcapng blocks go through `pcap-parser`'s slice parsers.
//!
//! Several files are merged into one stream in timestamp order (each file keeps its own order).
//! A truncated or corrupt file is reported with its name and byte offset and the run goes on
//! with the other files.
// Readers meet hostile bytes: a panic here would stop the sensor (RELIABILITY.md).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]
use super::chunks::{CHUNK_SIZE, ChunkPool, Chunks};
use super::{Packet, prefetch_head};
use crate::decode::packet::link_type_supported;
use pcap_parser::pcapng::{Block, parse_block_be, parse_block_le, parse_sectionheaderblock};
use pcap_parser::{BOM_MAGIC, EPB_MAGIC, PcapError, SHB_MAGIC, parse_pcap_header};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Largest record we accept (jumbo frames and TSO captures stay well below this); a larger
/// declared length is treated as corruption instead of a huge allocation.
const MAX_RECORD: usize = 64 << 20;
/// How much of a file's start is searched for a capture header (what `create_reader` reads).
const DETECT_BYTES: usize = 1 << 20;
/// Files merged at most for each to be read ahead by a thread of its own: each such file holds
/// a few chunks, so a merge of many files (a rotated capture) reads them inline.
const MAX_READ_AHEAD_FILES: usize = 4;
/// The smallest pcapng block: type, length, trailing length.
const MIN_BLOCK: usize = 12;
/// Every pcapng block parser's fixed header fits in this many bytes, so a parser given at
/// least this much (or the whole rest of the file) never needs more to reject a short block.
const MAX_BLOCK_HEADER: usize = 32;
/// Enhanced packet block: fixed part before the frame, and fixed part in total.
const EPB_DATA_AT: usize = 28;
const EPB_FIXED: usize = 32;
/// Simple packet block: fixed part before the frame.
const SPB_DATA_AT: usize = 12;
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The I/O error is part of the message, not a source: printed once.
    #[error("{path}: {error}")]
    Open {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: not a pcap or pcapng file")]
    NotACapture { path: PathBuf },
    #[error("{path}: empty file")]
    Empty { path: PathBuf },
    #[error(
        "{path}: unsupported link type {linktype} (supported: Ethernet, Linux SLL/SLL2, raw IP, BSD loopback)"
    )]
    UnsupportedLinkType { path: PathBuf, linktype: i32 },
}

/// Something that went wrong inside a file after it was opened; the run went on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProblem {
    pub path: PathBuf,
    pub offset: u64,
    pub what: String,
}

impl std::fmt::Display for FileProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} at byte offset {}: {}",
            self.path.display(),
            self.offset,
            self.what
        )
    }
}

#[derive(Debug, Clone, Copy)]
struct Interface {
    linktype: i32,
    supported: bool,
    /// Timestamp units per second.
    units_per_second: u64,
    /// Nanoseconds per unit when that is a whole number (the usual resolutions): saves a
    /// 128-bit division per frame.
    ns_per_unit: Option<u64>,
    offset_seconds: i64,
}

impl Interface {
    fn new(linktype: i32, units_per_second: u64, offset_seconds: i64) -> Interface {
        let units = units_per_second.max(1);
        Interface {
            linktype,
            supported: link_type_supported(linktype),
            units_per_second: units,
            ns_per_unit: (1_000_000_000 % units == 0).then(|| 1_000_000_000 / units),
            offset_seconds,
        }
    }

    /// A pcapng timestamp in nanoseconds since the epoch, clamped to `u64`.
    #[inline]
    fn ng_ts_ns(&self, raw: u64) -> u64 {
        let ns = match self.ns_per_unit {
            Some(per) => u128::from(raw) * u128::from(per),
            None => u128::from(raw) * 1_000_000_000 / u128::from(self.units_per_second),
        };
        if self.offset_seconds == 0 {
            return u64::try_from(ns).unwrap_or(u64::MAX);
        }
        (ns as i128 + i128::from(self.offset_seconds) * 1_000_000_000)
            .clamp(0, i128::from(u64::MAX)) as u64
    }
}

#[derive(Debug, Clone, Copy)]
enum Format {
    /// Classic pcap, with its one interface.
    Legacy(Legacy, Interface),
    /// pcapng: byte order of the current section.
    Ng { big_endian: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Legacy {
    Le,
    Be,
    /// The little-endian "modified" (Kuznetzov) format: 24-byte record headers.
    Modified,
}

struct FileReader {
    path: PathBuf,
    chunks: Chunks,
    format: Format,
    /// pcapng: one per IDB of the current section.
    interfaces: Vec<Interface>,
    last_ts_ns: u64,
    head: Option<Head>,
    done: bool,
}

#[derive(Debug, Clone, Copy)]
struct Head {
    ts_ns: u64,
    linktype: u32,
    orig_len: u32,
    /// Where the frame lies in the file's current chunk.
    start: usize,
    len: usize,
}

/// What parsing at the current position gave.
enum Step {
    /// A frame is in `head`.
    Frame,
    /// A block without a frame for us was consumed.
    Skipped,
    /// The record needs this many bytes from the current position.
    Need(usize),
    Problem(String),
}

/// Counters of what the reader skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReaderCounters {
    pub frames: u64,
    pub frames_on_unsupported_link: u64,
    pub frames_on_unknown_interface: u64,
}

/// A frame with the read buffer it lies in, so it can be handed to another thread without
/// copying: `packet.data` is `buffer[start..start + packet.data.len()]`, and the reader never
/// writes to a buffer while a clone of its `Arc` is alive elsewhere.
pub struct SharedFrame<'a> {
    pub packet: Packet<'a>,
    pub buffer: &'a Arc<Vec<u8>>,
    pub start: usize,
    /// The frame two after this one when the reader already sees it (same link type), else
    /// empty: for loading its flow ahead of time (`FlowTable::look_ahead`).
    pub two_ahead: &'a [u8],
}

pub struct CaptureReader {
    files: Vec<FileReader>,
    current: Option<usize>,
    problems: Vec<FileProblem>,
    pool: ChunkPool,
    pub counters: ReaderCounters,
    /// Sizes of the regular files among the inputs.
    bytes_total: u64,
}

impl CaptureReader {
    pub fn open(paths: &[PathBuf]) -> Result<CaptureReader, SourceError> {
        // A read-ahead thread pays only with a core of its own: on one core the parser
        // finds the bytes it has just read itself still in cache (BENCHMARKS.md).
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let read_ahead = cores > 1 && paths.len() <= MAX_READ_AHEAD_FILES;
        Self::open_with_chunk_size(paths, read_ahead, CHUNK_SIZE)
    }

    /// `read_ahead`: each file is read by a thread of its own (see `chunks`).
    fn open_with_chunk_size(
        paths: &[PathBuf],
        read_ahead: bool,
        chunk_size: usize,
    ) -> Result<CaptureReader, SourceError> {
        let mut pool = ChunkPool::new(chunk_size, read_ahead);
        let mut files = Vec::with_capacity(paths.len());
        for path in paths {
            files.push(FileReader::open(path, &mut pool)?);
        }
        let bytes_total = paths
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum();
        Ok(CaptureReader {
            files,
            current: None,
            problems: Vec::new(),
            pool,
            counters: ReaderCounters::default(),
            bytes_total,
        })
    }

    /// Bytes of the files parsed so far, and their total size, for the progress bar.
    pub fn progress(&self, snapshot: &mut crate::telemetry::Snapshot) {
        snapshot.bytes_read = self.files.iter().map(|f| f.chunks.offset()).sum();
        snapshot.bytes_total = self.bytes_total;
    }

    /// Problems found so far (truncation, corruption), each naming its file and offset.
    pub fn problems(&self) -> &[FileProblem] {
        &self.problems
    }

    /// The next frame in timestamp order across all files.
    pub fn next_packet(&mut self) -> Option<Packet<'_>> {
        self.next_shared().map(|frame| frame.packet)
    }

    /// The next frame, with the buffer it lies in (for the sharded pipeline).
    pub fn next_shared(&mut self) -> Option<SharedFrame<'_>> {
        if self.files.len() == 1 {
            // One file, the common case: nothing to merge.
            let file = self.files.first_mut()?;
            file.head = None;
            file.advance(&mut self.problems, &mut self.counters, &mut self.pool);
            let head = file.head?;
            self.counters.frames += 1;
            return Some(file.shared(head));
        }
        if let Some(i) = self.current.take()
            && let Some(file) = self.files.get_mut(i)
        {
            file.head = None;
        }
        let mut best: Option<(usize, u64)> = None;
        for (i, file) in self.files.iter_mut().enumerate() {
            if file.head.is_none() {
                file.advance(&mut self.problems, &mut self.counters, &mut self.pool);
            }
            if let Some(head) = file.head
                && best.is_none_or(|(_, ts)| head.ts_ns < ts)
            {
                best = Some((i, head.ts_ns));
            }
        }
        let (i, _) = best?;
        self.current = Some(i);
        let file = self.files.get(i)?;
        let head = file.head?;
        self.counters.frames += 1;
        Some(file.shared(head))
    }
}

impl FileReader {
    fn shared(&self, head: Head) -> SharedFrame<'_> {
        let buffer = self.chunks.chunk();
        SharedFrame {
            packet: Packet {
                ts_ns: head.ts_ns,
                linktype: head.linktype,
                data: buffer.get(head.start..head.start + head.len).unwrap_or(&[]),
                orig_len: head.orig_len,
            },
            buffer,
            start: head.start,
            two_ahead: self.look_ahead(head.linktype),
        }
    }

    /// The frame two records past the current one, if it lies whole in the chunk on the
    /// current frame's link type, after asking the CPU for the record past that one: each
    /// record's header and first bytes are then loaded three frames before they are parsed,
    /// and the frame returned here can be read without waiting. The lengths are not checked
    /// as the parser checks them: what this returns is only a guess.
    fn look_ahead(&self, linktype: u32) -> &[u8] {
        let data = self.chunks.data();
        // (frame start, frame end, record end) of the record at `at`.
        let record = |at: usize| -> Option<(usize, usize, usize)> {
            let bytes = data.get(at..)?;
            match self.format {
                Format::Legacy(order, _) => {
                    let header = if order == Legacy::Modified { 24 } else { 16 };
                    let caplen = read_u32(bytes.get(..header)?, 8, order == Legacy::Be);
                    let end = (at + header).checked_add(caplen as usize)?;
                    Some((at + header, end, end))
                }
                Format::Ng { big_endian } => {
                    let field =
                        |at| read_u32(bytes.get(..EPB_DATA_AT).unwrap_or(&[]), at, big_endian);
                    let block_len = field(4) as usize;
                    let caplen = field(20) as usize;
                    let on_link = self
                        .interfaces
                        .get(field(8) as usize)
                        .is_some_and(|i| i.linktype as u32 == linktype);
                    let fits = caplen.checked_add(EPB_FIXED)? <= block_len;
                    (field(0) == EPB_MAGIC && on_link && fits).then_some((
                        at + EPB_DATA_AT,
                        at + EPB_DATA_AT + caplen,
                        at.checked_add(block_len)?,
                    ))
                }
            }
        };
        let Some((_, _, next)) = record(0) else {
            return &[];
        };
        let Some((start, end, after)) = record(next) else {
            return &[];
        };
        prefetch_head(data.get(after..).unwrap_or(&[]));
        data.get(start..end).unwrap_or(&[])
    }

    fn open(path: &Path, pool: &mut ChunkPool) -> Result<FileReader, SourceError> {
        let open_error = |error| SourceError::Open {
            path: path.to_path_buf(),
            error,
        };
        let file = File::open(path).map_err(open_error)?;
        let mut chunks = Chunks::new(file, pool).map_err(open_error)?;
        if chunks.data().is_empty() {
            return Err(SourceError::Empty {
                path: path.to_path_buf(),
            });
        }
        let not_a_capture = || SourceError::NotACapture {
            path: path.to_path_buf(),
        };
        // Same tests and order as pcap-parser's `create_reader`: a whole section header block
        // makes a pcapng file, else a legacy pcap header. Like it, look at no more than the
        // first `DETECT_BYTES`.
        let header = loop {
            let data = chunks.data();
            let shb = parse_sectionheaderblock(data);
            if shb.is_ok() {
                break None;
            }
            let legacy = parse_pcap_header(data);
            if let Ok((_, header)) = legacy {
                break Some(header);
            }
            let incomplete = |e: &pcap_parser::nom::Err<_>| e.is_incomplete();
            let more = shb.as_ref().err().is_some_and(incomplete)
                || legacy.as_ref().err().is_some_and(incomplete);
            if !more || chunks.at_eof() || data.len() >= DETECT_BYTES {
                return Err(not_a_capture());
            }
            let need = (data.len() * 2).min(DETECT_BYTES);
            chunks.fill(need, pool).map_err(open_error)?;
        };
        let format = match header {
            None => Format::Ng { big_endian: false },
            Some(header) => {
                if !link_type_supported(header.network.0) {
                    return Err(SourceError::UnsupportedLinkType {
                        path: path.to_path_buf(),
                        linktype: header.network.0,
                    });
                }
                let units = if header.is_nanosecond_precision() {
                    1_000_000_000
                } else {
                    1_000_000
                };
                chunks.consume(header.size());
                let layout = if header.is_modified_format() {
                    Legacy::Modified
                } else if header.is_bigendian() {
                    Legacy::Be
                } else {
                    Legacy::Le
                };
                Format::Legacy(layout, Interface::new(header.network.0, units, 0))
            }
        };
        Ok(FileReader {
            path: path.to_path_buf(),
            chunks,
            format,
            interfaces: Vec::new(),
            last_ts_ns: 0,
            head: None,
            done: false,
        })
    }

    /// Reads records until the next frame is in `head`, or the file ends.
    #[inline]
    fn advance(
        &mut self,
        problems: &mut Vec<FileProblem>,
        counters: &mut ReaderCounters,
        pool: &mut ChunkPool,
    ) {
        // Inline for the common case: the next record is a frame lying whole in the chunk.
        if self.done {
            return;
        }
        let step = self.step(counters);
        if !matches!(step, Step::Frame) {
            self.advance_slow(step, problems, counters, pool);
        }
    }

    #[inline(never)]
    fn advance_slow(
        &mut self,
        mut step: Step,
        problems: &mut Vec<FileProblem>,
        counters: &mut ReaderCounters,
        pool: &mut ChunkPool,
    ) {
        loop {
            match step {
                Step::Frame => return,
                Step::Skipped => {}
                Step::Need(need) => {
                    if need > MAX_RECORD {
                        self.problem(
                            problems,
                            format!("record larger than {MAX_RECORD} bytes (corrupt length)"),
                        );
                    } else if self.chunks.at_eof() {
                        if self.chunks.data().is_empty() {
                            self.done = true;
                        } else {
                            self.problem(problems, TRUNCATED.into());
                        }
                    } else if self.chunks.fill(need, pool).is_err() {
                        self.problem(problems, "read error".into());
                    }
                }
                Step::Problem(what) => self.problem(problems, what),
            }
            if self.done {
                return;
            }
            step = self.step(counters);
        }
    }

    /// Parses the record at the current position.
    #[inline(always)]
    fn step(&mut self, counters: &mut ReaderCounters) -> Step {
        match self.format {
            // One copy per record layout: no byte-order test per field.
            Format::Legacy(Legacy::Le, iface) => self.legacy_record::<false, 16>(iface, counters),
            Format::Legacy(Legacy::Be, iface) => self.legacy_record::<true, 16>(iface, counters),
            Format::Legacy(Legacy::Modified, iface) => {
                self.legacy_record::<false, 24>(iface, counters)
            }
            Format::Ng { big_endian: false } => self.ng_block::<false>(counters),
            Format::Ng { big_endian: true } => self.ng_block::<true>(counters),
        }
    }

    /// A legacy record with a `HEADER`-byte header (fixed sizes let the compiler drop the
    /// per-field bounds checks).
    #[inline(always)]
    fn legacy_record<const BIG_ENDIAN: bool, const HEADER: usize>(
        &mut self,
        iface: Interface,
        counters: &mut ReaderCounters,
    ) -> Step {
        let data = self.chunks.data();
        let Some(header) = data.first_chunk::<HEADER>() else {
            return Step::Need(HEADER);
        };
        let field = |at| read_u32(header, at, BIG_ENDIAN);
        let caplen = field(8) as usize;
        let total = HEADER.saturating_add(caplen);
        if data.len() < total {
            return Step::Need(total);
        }
        let ts_ns = u64::from(field(0))
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(field(4)) * iface.ns_per_unit.unwrap_or(1));
        let orig_len = field(12);
        let start = self.chunks.pos() + HEADER;
        self.chunks.consume(total);
        self.frame(&iface, ts_ns, orig_len, start, caplen, counters)
    }

    /// A pcapng block in a section of the given byte order (one copy per order: no
    /// byte-order test per field).
    #[inline(always)]
    fn ng_block<const BIG_ENDIAN: bool>(&mut self, counters: &mut ReaderCounters) -> Step {
        let Some(epb) = plain_epb::<BIG_ENDIAN>(self.chunks.data()) else {
            return self.ng_block_other(BIG_ENDIAN, counters);
        };
        let start = self.chunks.pos() + EPB_DATA_AT;
        self.chunks.consume(epb.block_len);
        match self.interfaces.get(epb.if_id as usize) {
            Some(&iface) => {
                let ts_ns = iface.ng_ts_ns(epb.raw_ts);
                self.frame(&iface, ts_ns, epb.orig_len, start, epb.caplen, counters)
            }
            None => {
                counters.frames_on_unknown_interface += 1;
                Step::Skipped
            }
        }
    }

    /// Any block but a plain EPB lying whole in the chunk.
    #[inline(never)]
    fn ng_block_other(&mut self, mut big_endian: bool, counters: &mut ReaderCounters) -> Step {
        let data = self.chunks.data();
        let Some(header) = data.get(..MIN_BLOCK) else {
            return Step::Need(MIN_BLOCK);
        };
        if read_u32(header, 0, big_endian) == SHB_MAGIC {
            // A section header sets the byte order of its own section.
            big_endian = match read_u32(header, 8, false) {
                BOM_MAGIC => false,
                bom if bom == BOM_MAGIC.swap_bytes() => true,
                _ => return Step::Problem("corrupt record".into()),
            };
        }
        let block_len = read_u32(header, 4, big_endian) as usize;
        if block_len < MIN_BLOCK {
            return Step::Problem(corrupt_record(pcap_parser::nom::error::ErrorKind::Verify));
        }
        if data.len() < block_len {
            return Step::Need(block_len);
        }
        self.ng_block_slow(big_endian, block_len, counters)
    }

    /// Any pcapng block, through pcap-parser; `data()` holds at least the whole block.
    fn ng_block_slow(
        &mut self,
        big_endian: bool,
        block_len: usize,
        counters: &mut ReaderCounters,
    ) -> Step {
        let data = self.chunks.data();
        let parsed = if big_endian {
            parse_block_be(data)
        } else {
            parse_block_le(data)
        };
        // A frame as (interface, timestamp, orig_len, offset in the block, captured length).
        let mut frame = None;
        let consumed = match parsed {
            Ok((rest, block)) => {
                match block {
                    Block::SectionHeader(shb) => {
                        self.interfaces.clear();
                        self.format = Format::Ng {
                            big_endian: shb.big_endian(),
                        };
                    }
                    Block::InterfaceDescription(idb) => {
                        self.interfaces.push(Interface::new(
                            idb.linktype.0,
                            // An invalid resolution falls back to the pcapng default (microseconds).
                            idb.ts_resolution().unwrap_or(1_000_000),
                            idb.if_tsoffset,
                        ))
                    }
                    Block::EnhancedPacket(epb) => match self.interfaces.get(epb.if_id as usize) {
                        Some(iface) => {
                            let raw = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                            let caplen = (epb.caplen as usize).min(epb.data.len());
                            frame = Some((
                                *iface,
                                iface.ng_ts_ns(raw),
                                epb.origlen,
                                EPB_DATA_AT,
                                caplen,
                            ));
                        }
                        None => counters.frames_on_unknown_interface += 1,
                    },
                    Block::SimplePacket(spb) => {
                        if let Some(iface) = self.interfaces.first() {
                            // Simple packets carry no timestamp: keep the previous one.
                            let caplen = (spb.origlen as usize).min(spb.data.len());
                            frame =
                                Some((*iface, self.last_ts_ns, spb.origlen, SPB_DATA_AT, caplen));
                        }
                    }
                    _ => {}
                }
                data.len() - rest.len()
            }
            Err(pcap_parser::nom::Err::Incomplete(_)) => {
                return if data.len() < MAX_BLOCK_HEADER && !self.chunks.at_eof() {
                    Step::Need(block_len.max(MAX_BLOCK_HEADER))
                } else {
                    // The whole block is here (`ng_block_other` waited for it), so its
                    // contents contradict its length.
                    Step::Problem("corrupt record (contents overrun the block length)".into())
                };
            }
            Err(
                pcap_parser::nom::Err::Error(PcapError::NomError(_, kind))
                | pcap_parser::nom::Err::Failure(PcapError::NomError(_, kind)),
            ) => return Step::Problem(corrupt_record(kind)),
            Err(_) => return Step::Problem("corrupt record".into()),
        };
        let start = self.chunks.pos();
        self.chunks.consume(consumed);
        match frame {
            Some((iface, ts_ns, orig_len, at, caplen)) => {
                self.frame(&iface, ts_ns, orig_len, start + at, caplen, counters)
            }
            None => Step::Skipped,
        }
    }

    /// Takes the frame at `start..start + len` of the chunk if its link type is supported.
    #[inline]
    fn frame(
        &mut self,
        iface: &Interface,
        ts_ns: u64,
        orig_len: u32,
        start: usize,
        len: usize,
        counters: &mut ReaderCounters,
    ) -> Step {
        if !iface.supported {
            counters.frames_on_unsupported_link += 1;
            return Step::Skipped;
        }
        self.head = Some(Head {
            ts_ns,
            linktype: iface.linktype as u32,
            // Some writers leave orig_len 0 or below caplen; the frame is at least what was captured.
            orig_len: orig_len.max(len as u32),
            start,
            len,
        });
        self.last_ts_ns = ts_ns;
        Step::Frame
    }

    fn problem(&mut self, problems: &mut Vec<FileProblem>, what: String) {
        problems.push(FileProblem {
            path: self.path.clone(),
            offset: self.chunks.offset(),
            what,
        });
        self.done = true;
    }
}

/// The fields of an enhanced packet block.
struct Epb {
    block_len: usize,
    if_id: u32,
    raw_ts: u64,
    caplen: usize,
    orig_len: u32,
}

/// An enhanced packet block at the start of `data` if it lies there whole and carries no
/// options, the common case; anything else is for pcap-parser.
#[inline(always)]
fn plain_epb<const BIG_ENDIAN: bool>(data: &[u8]) -> Option<Epb> {
    let header = data.first_chunk::<EPB_DATA_AT>()?;
    let field = |at| read_u32(header, at, BIG_ENDIAN);
    if field(0) != EPB_MAGIC {
        return None;
    }
    let block_len = field(4) as usize;
    let caplen = field(20) as usize;
    // The frame padded to 32 bits fills the block: no options.
    if (caplen.checked_add(EPB_FIXED + 3)? & !3) != block_len {
        return None;
    }
    let trailer = data.get(..block_len)?.last_chunk::<4>()?;
    if read_u32(trailer, 0, BIG_ENDIAN) as usize != block_len {
        return None;
    }
    Some(Epb {
        block_len,
        if_id: field(8),
        raw_ts: (u64::from(field(12)) << 32) | u64::from(field(16)),
        caplen,
        orig_len: field(24),
    })
}

const TRUNCATED: &str = "file ends inside a record (truncated capture)";

/// What a pcapng block parser's complaint means, for the problem report.
fn corrupt_record(kind: pcap_parser::nom::error::ErrorKind) -> String {
    use pcap_parser::nom::error::ErrorKind;
    match kind {
        ErrorKind::Verify => {
            "corrupt record (Verify: a length field does not fit the block, or the block's \
             two lengths differ)"
                .into()
        }
        other => format!("corrupt record ({other:?})"),
    }
}

/// The 32-bit field at `at` (0 past the end: callers check lengths first).
#[inline]
fn read_u32(bytes: &[u8], at: usize, big_endian: bool) -> u32 {
    let Some(&field) = bytes.get(at..).and_then(|b| b.first_chunk::<4>()) else {
        return 0;
    };
    if big_endian {
        u32::from_be_bytes(field)
    } else {
        u32::from_le_bytes(field)
    }
}

#[cfg(test)]
#[path = "pcap_file_tests.rs"]
mod tests;
