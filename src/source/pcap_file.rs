//! Offline replay of pcap and pcapng files with the pure-Rust `pcap-parser` crate.
//!
//! Several files are merged into one stream in timestamp order (each file keeps its own order).
//! A truncated or corrupt file is reported with its name and byte offset and the run goes on
//! with the other files.
use super::Packet;
use crate::decode::packet::link_type_supported;
use pcap_parser::pcapng::Block;
use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{PcapBlockOwned, PcapError, create_reader};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Initial read buffer; grown for larger frames up to `MAX_READ_BUFFER`.
const READ_BUFFER: usize = 1 << 20;
/// Largest frame record we accept (jumbo frames and TSO captures stay well below this);
/// a larger declared length is treated as corruption instead of a huge allocation.
const MAX_READ_BUFFER: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
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
    /// Timestamp units per second.
    units_per_second: u64,
    offset_seconds: i64,
}

struct FileReader {
    path: PathBuf,
    reader: Box<dyn PcapReaderIterator + Send>,
    /// Legacy pcap: the one interface; pcapng: one per IDB of the current section.
    interfaces: Vec<Interface>,
    legacy: bool,
    /// Bytes of the file consumed before the reader's current buffer position.
    offset: u64,
    last_ts_ns: u64,
    head: Option<Head>,
    /// Never written while another thread holds a clone (see `SharedFrame`).
    buf: Arc<Vec<u8>>,
    done: bool,
}

#[derive(Debug, Clone, Copy)]
struct Head {
    ts_ns: u64,
    linktype: u32,
    orig_len: u32,
    len: usize,
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
}

pub struct CaptureReader {
    files: Vec<FileReader>,
    current: Option<usize>,
    problems: Vec<FileProblem>,
    pub counters: ReaderCounters,
}

impl CaptureReader {
    pub fn open(paths: &[PathBuf]) -> Result<CaptureReader, SourceError> {
        let mut files = Vec::with_capacity(paths.len());
        let mut problems = Vec::new();
        for path in paths {
            let (file, early) = FileReader::open(path)?;
            files.push(file);
            problems.extend(early);
        }
        Ok(CaptureReader {
            files,
            current: None,
            problems,
            counters: ReaderCounters::default(),
        })
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
        if let Some(i) = self.current.take()
            && let Some(file) = self.files.get_mut(i)
        {
            file.head = None;
        }
        let mut best: Option<(usize, u64)> = None;
        for (i, file) in self.files.iter_mut().enumerate() {
            if file.head.is_none() && !file.done {
                file.advance(&mut self.problems, &mut self.counters);
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
        Some(SharedFrame {
            packet: Packet {
                ts_ns: head.ts_ns,
                linktype: head.linktype,
                data: file.buf.get(..head.len).unwrap_or(&[]),
                orig_len: head.orig_len,
            },
            buffer: &file.buf,
            start: 0,
        })
    }
}

impl FileReader {
    fn open(path: &Path) -> Result<(FileReader, Vec<FileProblem>), SourceError> {
        let file = File::open(path).map_err(|source| SourceError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let reader = match create_reader(READ_BUFFER, file) {
            Ok(r) => r,
            Err(PcapError::Eof) => {
                return Err(SourceError::Empty {
                    path: path.to_path_buf(),
                });
            }
            Err(_) => {
                return Err(SourceError::NotACapture {
                    path: path.to_path_buf(),
                });
            }
        };
        let mut file_reader = FileReader {
            path: path.to_path_buf(),
            reader,
            interfaces: Vec::new(),
            legacy: false,
            offset: 0,
            last_ts_ns: 0,
            head: None,
            buf: Arc::new(Vec::with_capacity(65_536)),
            done: false,
        };
        // Read up to the first frame so a legacy file's link type is checked before the run starts.
        let mut problems = Vec::new();
        file_reader.advance(&mut problems, &mut ReaderCounters::default());
        if file_reader.legacy
            && let Some(iface) = file_reader.interfaces.first()
            && !link_type_supported(iface.linktype)
        {
            return Err(SourceError::UnsupportedLinkType {
                path: path.to_path_buf(),
                linktype: iface.linktype,
            });
        }
        Ok((file_reader, problems))
    }

    /// Reads blocks until the next frame is in `head`, or the file ends.
    fn advance(&mut self, problems: &mut Vec<FileProblem>, counters: &mut ReaderCounters) {
        while !self.done {
            match self.reader.next() {
                Ok((consumed, block)) => {
                    let frame = match block {
                        PcapBlockOwned::LegacyHeader(header) => {
                            self.legacy = true;
                            let units = if header.is_nanosecond_precision() {
                                1_000_000_000
                            } else {
                                1_000_000
                            };
                            self.interfaces = vec![Interface {
                                linktype: header.network.0,
                                units_per_second: units,
                                offset_seconds: 0,
                            }];
                            None
                        }
                        PcapBlockOwned::Legacy(b) => self.interfaces.first().map(|iface| {
                            let ts = u64::from(b.ts_sec)
                                .saturating_mul(1_000_000_000)
                                .saturating_add(
                                    u64::from(b.ts_usec) * (1_000_000_000 / iface.units_per_second),
                                );
                            (ts, iface.linktype, b.origlen, b.data)
                        }),
                        PcapBlockOwned::NG(Block::SectionHeader(_)) => {
                            self.interfaces.clear();
                            None
                        }
                        PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                            self.interfaces.push(Interface {
                                linktype: idb.linktype.0,
                                // An invalid resolution falls back to the pcapng default (microseconds).
                                units_per_second: idb.ts_resolution().unwrap_or(1_000_000),
                                offset_seconds: idb.if_tsoffset,
                            });
                            None
                        }
                        PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                            match self.interfaces.get(epb.if_id as usize) {
                                Some(iface) => {
                                    let raw =
                                        (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                                    let ns = u128::from(raw) * 1_000_000_000
                                        / u128::from(iface.units_per_second.max(1));
                                    let ts = (ns as i128
                                        + i128::from(iface.offset_seconds) * 1_000_000_000)
                                        .clamp(0, i128::from(u64::MAX))
                                        as u64;
                                    let caplen = (epb.caplen as usize).min(epb.data.len());
                                    Some((
                                        ts,
                                        iface.linktype,
                                        epb.origlen,
                                        epb.data.get(..caplen).unwrap_or(&[]),
                                    ))
                                }
                                None => {
                                    counters.frames_on_unknown_interface += 1;
                                    None
                                }
                            }
                        }
                        PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                            self.interfaces.first().map(|iface| {
                                // Simple packets carry no timestamp: keep the previous one.
                                let caplen = (spb.origlen as usize).min(spb.data.len());
                                (
                                    self.last_ts_ns,
                                    iface.linktype,
                                    spb.origlen,
                                    spb.data.get(..caplen).unwrap_or(&[]),
                                )
                            })
                        }
                        PcapBlockOwned::NG(_) => None,
                    };
                    let mut got = false;
                    if let Some((ts_ns, linktype, orig_len, data)) = frame {
                        if link_type_supported(linktype) {
                            let buf = Arc::make_mut(&mut self.buf);
                            buf.clear();
                            buf.extend_from_slice(data);
                            // Some writers leave orig_len 0 or below caplen; the frame is at least what was captured.
                            let orig_len = orig_len.max(data.len() as u32);
                            self.head = Some(Head {
                                ts_ns,
                                linktype: linktype as u32,
                                orig_len,
                                len: data.len(),
                            });
                            self.last_ts_ns = ts_ns;
                            got = true;
                        } else {
                            counters.frames_on_unsupported_link += 1;
                        }
                    }
                    self.offset += consumed as u64;
                    self.reader.consume(consumed);
                    if got {
                        return;
                    }
                }
                Err(PcapError::Eof) => self.done = true,
                Err(PcapError::Incomplete(_)) => {
                    if self.reader.reader_exhausted() {
                        self.problem(
                            problems,
                            "file ends inside a record (truncated capture)".into(),
                        );
                    } else if self.reader.refill().is_err() {
                        self.problem(problems, "read error".into());
                    }
                }
                Err(PcapError::BufferTooSmall) => {
                    let size = self.reader.data().len().max(READ_BUFFER) * 2;
                    if size > MAX_READ_BUFFER || !self.reader.grow(size) {
                        self.problem(
                            problems,
                            format!("record larger than {MAX_READ_BUFFER} bytes (corrupt length)"),
                        );
                    }
                }
                Err(PcapError::UnexpectedEof) => self.problem(
                    problems,
                    "file ends inside a record (truncated capture)".into(),
                ),
                Err(PcapError::NomError(_, kind)) => {
                    self.problem(problems, format!("corrupt record ({kind:?})"))
                }
                Err(_) => self.problem(problems, "corrupt record".into()),
            }
        }
    }

    fn problem(&mut self, problems: &mut Vec<FileProblem>, what: String) {
        problems.push(FileProblem {
            path: self.path.clone(),
            offset: self.offset,
            what,
        });
        self.done = true;
    }
}
