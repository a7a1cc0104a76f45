//! The chunked reader against an oracle: pcap-parser's streaming reader driven the way this
//! module drove it before it read files in chunks. Captures are built here (both byte orders,
//! both timestamp precisions, pcapng sections, interfaces, options, odd blocks), then cut and
//! corrupted, and read with chunk sizes small enough that every record crosses a chunk edge.
use super::*;
use crate::testing::TempDir;
use pcap_parser::{PcapBlockOwned, create_reader};

/// Frame bytes, shown short in assertion messages.
#[derive(PartialEq, Eq)]
struct Bytes(Vec<u8>);

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::hash::{DefaultHasher, Hash, Hasher};
        let mut h = DefaultHasher::new();
        self.0.hash(&mut h);
        write!(f, "{} bytes #{:016x}", self.0.len(), h.finish())
    }
}

/// Everything a reader reports for one file.
#[derive(Debug, Default, PartialEq, Eq)]
struct Seen {
    /// (ts_ns, linktype, orig_len, bytes)
    frames: Vec<(u64, u32, u32, Bytes)>,
    /// (offset, what)
    problems: Vec<(u64, String)>,
    unsupported_link: u64,
    unknown_interface: u64,
}

/// A file that fails to open is described by the kind of error.
fn open_error(e: &SourceError) -> String {
    match e {
        SourceError::Open { .. } => "open".into(),
        SourceError::NotACapture { .. } => "not a capture".into(),
        SourceError::Empty { .. } => "empty".into(),
        SourceError::UnsupportedLinkType { linktype, .. } => format!("link type {linktype}"),
    }
}

/// Files read inline and by a read-ahead thread.
const READ_AHEAD: [bool; 2] = [false, true];

/// What the reader reports, with files read inline and read ahead: the two must be equal.
fn read_new(path: &Path, chunk_size: usize) -> Result<Seen, String> {
    let inline = read_new_with(path, false, chunk_size);
    let ahead = read_new_with(path, true, chunk_size);
    assert_eq!(inline, ahead, "{} chunk size {chunk_size}", path.display());
    inline
}

fn read_new_with(path: &Path, read_ahead: bool, chunk_size: usize) -> Result<Seen, String> {
    let mut reader =
        CaptureReader::open_with_chunk_size(&[path.to_path_buf()], read_ahead, chunk_size)
            .map_err(|e| open_error(&e))?;
    let mut seen = Seen::default();
    while let Some(frame) = reader.next_shared() {
        let p = frame.packet;
        assert_eq!(
            frame.buffer.get(frame.start..frame.start + p.data.len()),
            Some(p.data)
        );
        seen.frames
            .push((p.ts_ns, p.linktype, p.orig_len, Bytes(p.data.to_vec())));
    }
    assert!(reader.next_packet().is_none(), "reading past the end");
    seen.problems = reader
        .problems()
        .iter()
        .map(|p| {
            assert_eq!(p.path, path);
            (p.offset, p.what.clone())
        })
        .collect();
    seen.unsupported_link = reader.counters.frames_on_unsupported_link;
    seen.unknown_interface = reader.counters.frames_on_unknown_interface;
    assert_eq!(reader.counters.frames, seen.frames.len() as u64);
    Ok(seen)
}

/// The reader this module had before chunked reading, for one file.
fn read_oracle(path: &Path) -> Result<Seen, String> {
    let file = File::open(path).map_err(|_| "open".to_string())?;
    let mut reader = match create_reader(1 << 20, file) {
        Ok(r) => r,
        Err(PcapError::Eof) => return Err("empty".into()),
        Err(_) => return Err("not a capture".into()),
    };
    let mut seen = Seen::default();
    // (linktype, units per second, offset seconds)
    let mut interfaces: Vec<(i32, u64, i64)> = Vec::new();
    let mut offset = 0u64;
    let mut last_ts = 0u64;
    let problem = |seen: &mut Seen, offset, what: &str| seen.problems.push((offset, what.into()));
    loop {
        match reader.next() {
            Ok((consumed, block)) => {
                let frame = match block {
                    PcapBlockOwned::LegacyHeader(header) => {
                        if !link_type_supported(header.network.0) {
                            return Err(format!("link type {}", header.network.0));
                        }
                        let units = if header.is_nanosecond_precision() {
                            1_000_000_000
                        } else {
                            1_000_000
                        };
                        interfaces = vec![(header.network.0, units, 0)];
                        None
                    }
                    PcapBlockOwned::Legacy(b) => interfaces.first().map(|&(lt, units, _)| {
                        let ts = u64::from(b.ts_sec)
                            .saturating_mul(1_000_000_000)
                            .saturating_add(u64::from(b.ts_usec) * (1_000_000_000 / units));
                        (ts, lt, b.origlen, b.data)
                    }),
                    PcapBlockOwned::NG(Block::SectionHeader(_)) => {
                        interfaces.clear();
                        None
                    }
                    PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                        interfaces.push((
                            idb.linktype.0,
                            idb.ts_resolution().unwrap_or(1_000_000),
                            idb.if_tsoffset,
                        ));
                        None
                    }
                    PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                        match interfaces.get(epb.if_id as usize) {
                            Some(&(lt, units, off)) => {
                                let raw = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                                let ns = u128::from(raw) * 1_000_000_000 / u128::from(units.max(1));
                                let ts = (ns as i128 + i128::from(off) * 1_000_000_000)
                                    .clamp(0, i128::from(u64::MAX))
                                    as u64;
                                let caplen = (epb.caplen as usize).min(epb.data.len());
                                Some((ts, lt, epb.origlen, &epb.data[..caplen]))
                            }
                            None => {
                                seen.unknown_interface += 1;
                                None
                            }
                        }
                    }
                    PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                        interfaces.first().map(|&(lt, _, _)| {
                            let caplen = (spb.origlen as usize).min(spb.data.len());
                            (last_ts, lt, spb.origlen, &spb.data[..caplen])
                        })
                    }
                    PcapBlockOwned::NG(_) => None,
                };
                if let Some((ts, lt, orig, data)) = frame {
                    if link_type_supported(lt) {
                        let orig = orig.max(data.len() as u32);
                        seen.frames
                            .push((ts, lt as u32, orig, Bytes(data.to_vec())));
                        last_ts = ts;
                    } else {
                        seen.unsupported_link += 1;
                    }
                }
                offset += consumed as u64;
                reader.consume(consumed);
            }
            Err(PcapError::Eof) => break,
            Err(PcapError::Incomplete(_)) => {
                if reader.reader_exhausted() {
                    problem(&mut seen, offset, TRUNCATED);
                    break;
                } else if reader.refill().is_err() {
                    problem(&mut seen, offset, "read error");
                    break;
                }
            }
            Err(PcapError::BufferTooSmall) => {
                let size = reader.data().len().max(1 << 20) * 2;
                if size > MAX_RECORD || !reader.grow(size) {
                    let what = format!("record larger than {MAX_RECORD} bytes (corrupt length)");
                    problem(&mut seen, offset, &what);
                    break;
                }
            }
            Err(PcapError::UnexpectedEof) => {
                problem(&mut seen, offset, TRUNCATED);
                break;
            }
            Err(PcapError::NomError(_, kind)) => {
                problem(&mut seen, offset, &corrupt_record(kind));
                break;
            }
            Err(_) => {
                problem(&mut seen, offset, "corrupt record");
                break;
            }
        }
    }
    Ok(seen)
}

/// Chunk sizes that put chunk edges everywhere, plus the real one.
const CHUNK_SIZES: [usize; 6] = [1, 7, 64, 100, 1000, CHUNK_SIZE];

fn write(tmp: &TempDir, tag: &str, bytes: &[u8]) -> PathBuf {
    let path = tmp.path(tag);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn assert_same_as_oracle(path: &Path, chunk_sizes: &[usize]) -> Result<Seen, String> {
    let want = read_oracle(path);
    for &size in chunk_sizes {
        assert_eq!(read_new(path, size), want, "chunk size {size}");
    }
    want
}

/// A deterministic frame: `len` bytes derived from `seed`.
fn frame_bytes(seed: u32, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (seed as usize * 31 + i * 7) as u8)
        .collect()
}

/// Frame lengths: empty, tiny, usual, and larger than the small chunk sizes.
const LENGTHS: [usize; 9] = [0, 1, 3, 60, 61, 62, 1514, 3000, 63];

#[derive(Clone, Copy)]
enum Magic {
    Micro,
    Nano,
    Modified,
}

fn legacy_file(magic: Magic, big_endian: bool, linktype: u32) -> Vec<u8> {
    let u32b = |v: u32| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let magic_value = match magic {
        Magic::Micro => 0xa1b2_c3d4u32,
        Magic::Nano => 0xa1b2_3c4d,
        Magic::Modified => 0xa1b2_cd34,
    };
    let mut out = Vec::new();
    out.extend_from_slice(&u32b(magic_value));
    let (major, minor) = if big_endian {
        (2u16.to_be_bytes(), 4u16.to_be_bytes())
    } else {
        (2u16.to_le_bytes(), 4u16.to_le_bytes())
    };
    out.extend_from_slice(&major);
    out.extend_from_slice(&minor);
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&u32b(65535));
    out.extend_from_slice(&u32b(linktype));
    for (i, &len) in LENGTHS.iter().enumerate() {
        let i = i as u32;
        out.extend_from_slice(&u32b(1_700_000_000 + i));
        out.extend_from_slice(&u32b(999_999 - i * 1000));
        out.extend_from_slice(&u32b(len as u32));
        // Some frames claim a shorter orig_len than captured, one claims 0.
        out.extend_from_slice(&u32b(if i.is_multiple_of(3) {
            len as u32 + 40
        } else {
            i
        }));
        if let Magic::Modified = magic {
            out.extend_from_slice(&[0; 8]);
        }
        out.extend_from_slice(&frame_bytes(i, len));
    }
    out
}

/// A pcapng writer: each block in the byte order of its section.
struct Ng {
    out: Vec<u8>,
    big_endian: bool,
}

impl Ng {
    fn new() -> Ng {
        Ng {
            out: Vec::new(),
            big_endian: false,
        }
    }

    fn u32b(&self, v: u32) -> [u8; 4] {
        if self.big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }

    fn u16b(&self, v: u16) -> [u8; 2] {
        if self.big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }

    fn options(&self, options: &[(u16, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        if options.is_empty() {
            return out;
        }
        for (code, value) in options {
            out.extend_from_slice(&self.u16b(*code));
            out.extend_from_slice(&self.u16b(value.len() as u16));
            out.extend_from_slice(value);
            out.resize(out.len().next_multiple_of(4), 0);
        }
        out.extend_from_slice(&[0; 4]);
        out
    }

    fn block(&mut self, block_type: u32, body: &[u8]) {
        let len = 12 + body.len().next_multiple_of(4);
        let start = self.out.len();
        self.out.extend_from_slice(&self.u32b(block_type));
        self.out.extend_from_slice(&self.u32b(len as u32));
        self.out.extend_from_slice(body);
        self.out.resize(start + len - 4, 0);
        self.out.extend_from_slice(&self.u32b(len as u32));
    }

    fn shb(&mut self, big_endian: bool) {
        self.big_endian = big_endian;
        let mut body = self.u32b(0x1A2B_3C4D).to_vec();
        body.extend_from_slice(&self.u16b(1));
        body.extend_from_slice(&self.u16b(0));
        body.extend_from_slice(&[0xff; 8]);
        body.extend_from_slice(&self.options(&[(4, b"egresswatch test")]));
        self.block(SHB_MAGIC, &body);
    }

    fn idb(&mut self, linktype: u16, options: &[(u16, &[u8])]) {
        let mut body = self.u16b(linktype).to_vec();
        body.extend_from_slice(&[0, 0]);
        body.extend_from_slice(&self.u32b(0));
        body.extend_from_slice(&self.options(options));
        self.block(1, &body);
    }

    fn epb(&mut self, if_id: u32, ts: u64, data: &[u8], orig_len: u32, options: &[(u16, &[u8])]) {
        let mut body = self.u32b(if_id).to_vec();
        body.extend_from_slice(&self.u32b((ts >> 32) as u32));
        body.extend_from_slice(&self.u32b(ts as u32));
        body.extend_from_slice(&self.u32b(data.len() as u32));
        body.extend_from_slice(&self.u32b(orig_len));
        body.extend_from_slice(data);
        body.resize(body.len().next_multiple_of(4), 0);
        body.extend_from_slice(&self.options(options));
        self.block(EPB_MAGIC, &body);
    }

    fn spb(&mut self, data: &[u8], orig_len: u32) {
        let mut body = self.u32b(orig_len).to_vec();
        body.extend_from_slice(data);
        self.block(3, &body);
    }
}

/// Two sections (the first in `first_big_endian` order, the second in the other), with
/// interfaces of several resolutions and offsets, options, simple packets, statistics and
/// unknown blocks, a frame on an unsupported link and one on an undeclared interface.
fn pcapng_file(first_big_endian: bool) -> Vec<u8> {
    let mut ng = Ng::new();
    ng.shb(first_big_endian);
    // A simple packet before any interface is skipped.
    ng.spb(&frame_bytes(99, 20), 20);
    ng.idb(1, &[]);
    ng.idb(101, &[(9, &[9]), (14, &1000i64.to_le_bytes())]); // raw IP, ns, +1000 s
    ng.idb(189, &[]); // USB: unsupported
    ng.idb(1, &[(9, &[3])]); // milliseconds
    ng.idb(1, &[(9, &[0x94])]); // 2^-20 s
    ng.idb(1, &[(9, &[19])]); // 10^-19 s: more than a nanosecond
    for (i, &len) in LENGTHS.iter().enumerate() {
        let if_id = (i % 6) as u32;
        let ts = 1_700_000_000_000_000 + i as u64 * 1_234_567;
        let data = frame_bytes(i as u32, len);
        let options: &[(u16, &[u8])] = if i % 4 == 1 {
            &[(1, b"a comment"), (2, &[0, 0, 0, 1])]
        } else {
            &[]
        };
        ng.epb(if_id, ts, &data, len as u32 + (i as u32 % 2) * 10, options);
    }
    ng.epb(42, 5, &frame_bytes(1, 30), 30, &[]); // undeclared interface
    ng.spb(&frame_bytes(7, 61), 50); // orig_len below the block's data
    ng.spb(&frame_bytes(8, 40), 80);
    ng.block(5, &[0; 20]); // interface statistics
    ng.block(0x0BAD_F00D, &[1, 2, 3, 4, 5]); // unknown
    ng.shb(!first_big_endian);
    ng.idb(1, &[(9, &[6])]);
    for i in 0..5u32 {
        ng.epb(
            0,
            1_700_000_100_000_000 + u64::from(i),
            &frame_bytes(i, 100 + i as usize),
            0,
            &[],
        );
    }
    ng.spb(&frame_bytes(3, 70), 70);
    ng.out
}

#[test]
fn legacy_files_read_as_before() {
    let tmp = TempDir::new("reader");
    for magic in [Magic::Micro, Magic::Nano, Magic::Modified] {
        for big_endian in [false, true] {
            let path = write(&tmp, "legacy", &legacy_file(magic, big_endian, 1));
            let seen = assert_same_as_oracle(&path, &CHUNK_SIZES);
            let seen = match (magic, big_endian) {
                // pcap-parser knows the modified format in little-endian order only.
                (Magic::Modified, true) => {
                    assert_eq!(seen, Err("not a capture".into()));
                    continue;
                }
                _ => seen.unwrap(),
            };
            assert!(seen.problems.is_empty(), "{:?}", seen.problems);
            assert_eq!(seen.frames.len(), LENGTHS.len());
            let frac_ns = match magic {
                Magic::Nano => 999_999,
                _ => 999_999_000,
            };
            assert_eq!(seen.frames[0].0, 1_700_000_000_000_000_000 + frac_ns);
            assert_eq!(seen.frames[6].3, Bytes(frame_bytes(6, 1514)));
            // orig_len as written, but never below what was captured.
            assert_eq!(seen.frames[6].2, 1554);
            assert_eq!(seen.frames[7].2, 3000);
            assert_eq!(seen.frames[0].2, 40);
        }
    }
    let path = write(&tmp, "legacy-usb", &legacy_file(Magic::Micro, false, 189));
    assert_eq!(
        assert_same_as_oracle(&path, &[64]),
        Err("link type 189".into())
    );
}

#[test]
fn pcapng_files_read_as_before() {
    let tmp = TempDir::new("reader");
    for big_endian in [false, true] {
        let path = write(&tmp, "ng", &pcapng_file(big_endian));
        let seen = assert_same_as_oracle(&path, &CHUNK_SIZES).unwrap();
        assert!(seen.problems.is_empty(), "{:?}", seen.problems);
        assert_eq!(seen.unsupported_link, 2);
        assert_eq!(seen.unknown_interface, 1);
        // Every frame of the first section's 6 interfaces but the 2 on USB, the 3 simple
        // packets after the interfaces, and the second section's 6 frames.
        assert_eq!(seen.frames.len(), 9 - 2 + 2 + 6);
        if !big_endian {
            // Interface 1: nanoseconds shifted by if_tsoffset (pcap-parser reads that option
            // in little-endian order only).
            let raw = 1_700_000_000_000_000 + 1_234_567;
            assert_eq!(seen.frames[1].0, raw + 1000 * 1_000_000_000);
            assert_eq!(seen.frames[1].1, 101);
        }
        // Interface 0: microseconds.
        assert_eq!(seen.frames[0].0, 1_700_000_000_000_000_000);
        // A simple packet keeps the previous timestamp and is cut to its orig_len.
        let spb = seen.frames.iter().find(|f| f.2 == 50).unwrap();
        assert_eq!(spb.3, Bytes(frame_bytes(7, 50)));
    }
}

#[test]
fn public_captures_read_as_before() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/captures/public");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    paths.retain(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"));
    paths.sort();
    assert!(paths.len() > 10, "public captures in {}", dir.display());
    for path in &paths {
        let seen = assert_same_as_oracle(path, &[1000, CHUNK_SIZE]);
        assert!(
            seen.is_ok_and(|s| !s.frames.is_empty()),
            "{}",
            path.display()
        );
    }
}

/// Every prefix of a capture: same frames, same problem at the same offset.
#[test]
fn cut_files_read_as_before() {
    let tmp = TempDir::new("reader");
    let files = [
        ("cut-legacy", legacy_file(Magic::Micro, false, 1)),
        ("cut-legacy-be", legacy_file(Magic::Nano, true, 1)),
        ("cut-ng", pcapng_file(false)),
        ("cut-ng-be", pcapng_file(true)),
    ];
    for (tag, bytes) in &files {
        let mut truncated = 0;
        for cut in 0..=bytes.len() {
            let path = write(&tmp, tag, &bytes[..cut]);
            let seen = assert_same_as_oracle(&path, &[64, CHUNK_SIZE]);
            truncated += seen.is_ok_and(|s| !s.problems.is_empty()) as usize;
        }
        assert!(truncated > bytes.len() / 2, "{tag}: {truncated} truncated");
    }
}

/// Every byte of a capture set to 0xff in turn: same frames, and a problem at the same
/// offset. The message may differ where the old reader was wrong: it called any record over
/// about 2 MiB too large (its buffer stopped growing), and read on to the end of the file
/// when a block's contents overran its length.
#[test]
fn corrupt_files_read_as_before() {
    let tmp = TempDir::new("reader");
    let files = [
        ("bad-legacy", legacy_file(Magic::Micro, false, 1)),
        ("bad-ng", pcapng_file(false)),
        ("bad-ng-be", pcapng_file(true)),
    ];
    for (tag, bytes) in &files {
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] = 0xff;
            let path = write(&tmp, tag, &bad);
            let want = read_oracle(&path);
            for size in [64, CHUNK_SIZE] {
                let got = read_new(&path, size);
                let (Ok(got), Ok(want)) = (&got, &want) else {
                    assert_eq!(got, want, "{tag} byte {at}");
                    continue;
                };
                assert_eq!(got.frames, want.frames, "{tag} byte {at}");
                assert_eq!(got.unsupported_link, want.unsupported_link);
                assert_eq!(got.unknown_interface, want.unknown_interface);
                let offsets = |s: &Seen| s.problems.iter().map(|p| p.0).collect::<Vec<_>>();
                assert_eq!(offsets(got), offsets(want), "{tag} byte {at}");
                for (g, w) in got.problems.iter().zip(&want.problems) {
                    let fixed = g.1.starts_with("record larger than")
                        || g.1.starts_with("corrupt record (contents overrun")
                        || (g.1 == TRUNCATED && w.1.starts_with("record larger than"));
                    assert!(g.1 == w.1 || fixed, "{tag} byte {at}: {g:?} vs {w:?}");
                }
            }
        }
    }
}

#[test]
fn absurd_lengths_are_corruption_without_allocating_them() {
    let tmp = TempDir::new("reader");
    let mut legacy = legacy_file(Magic::Micro, false, 1);
    let second = 24 + 16; // second record: the first frame is empty
    legacy[second + 8..second + 12].copy_from_slice(&0x7fff_fff0u32.to_le_bytes());
    let mut ng = Ng::new();
    ng.shb(false);
    ng.idb(1, &[]);
    ng.epb(0, 1, &[1, 2, 3], 3, &[]);
    let epb_at = ng.out.len() as u64;
    ng.out.extend_from_slice(&EPB_MAGIC.to_le_bytes());
    ng.out
        .extend_from_slice(&(MAX_RECORD as u32 + 4).to_le_bytes());
    ng.out.extend_from_slice(&[0; 64]);
    for (tag, bytes, offset) in [
        ("huge-legacy", legacy, second as u64),
        ("huge-ng", ng.out, epb_at),
    ] {
        let path = write(&tmp, tag, &bytes);
        for (size, ahead) in [64, CHUNK_SIZE]
            .into_iter()
            .flat_map(|s| READ_AHEAD.map(|a| (s, a)))
        {
            let mut reader =
                CaptureReader::open_with_chunk_size(std::slice::from_ref(&path), ahead, size)
                    .unwrap();
            let mut frames = 0;
            while reader.next_packet().is_some() {
                frames += 1;
            }
            assert_eq!(frames, 1, "{tag}");
            let problems = reader.problems();
            assert_eq!(problems.len(), 1, "{tag}");
            assert_eq!(problems[0].offset, offset, "{tag}");
            assert!(problems[0].what.contains("corrupt length"), "{problems:?}");
            assert!(
                problems[0]
                    .to_string()
                    .contains(&format!("at byte offset {offset}"))
            );
            assert!(
                reader.files[0].chunks.chunk().len() <= size.max(64) + reader.pool.headroom() + 64,
                "{tag}"
            );
        }
    }
}

#[test]
fn frames_larger_than_a_chunk_are_read_whole() {
    let tmp = TempDir::new("reader");
    let big = frame_bytes(5, (CHUNK_SIZE * 5) / 2);
    let mut file = legacy_file(Magic::Micro, false, 1);
    file.extend_from_slice(&2_000_000_000u32.to_le_bytes());
    file.extend_from_slice(&0u32.to_le_bytes());
    file.extend_from_slice(&(big.len() as u32).to_le_bytes());
    file.extend_from_slice(&(big.len() as u32).to_le_bytes());
    file.extend_from_slice(&big);
    file.extend_from_slice(&legacy_file(Magic::Micro, false, 1)[24..]);
    let path = write(&tmp, "big-frame", &file);
    let seen = read_new(&path, CHUNK_SIZE).unwrap();
    assert!(seen.problems.is_empty(), "{:?}", seen.problems);
    assert_eq!(seen.frames.len(), 2 * LENGTHS.len() + 1);
    assert_eq!(seen.frames[LENGTHS.len()].3, Bytes(big));
    assert_eq!(seen.frames.last().unwrap().3, Bytes(frame_bytes(8, 63)));
}

/// A worker may hold a frame's chunk while the reader reads on: the reader must never write
/// into a chunk that someone else holds.
#[test]
fn held_chunks_never_change() {
    let tmp = TempDir::new("reader");
    // What a worker holds, and the frame's bytes when it was handed out.
    struct Held {
        chunk: Arc<Vec<u8>>,
        start: usize,
        bytes: Vec<u8>,
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/captures/public");
    let paths = [
        write(&tmp, "held-legacy", &legacy_file(Magic::Micro, false, 1)),
        write(&tmp, "held-ng", &pcapng_file(true)),
        dir.join("ndpi__tls_2_reasms.pcapng"),
        dir.join("tcpdump__dns_tcp.pcap"),
    ];
    for path in &paths {
        let want = read_oracle(path).unwrap();
        let sizes = [7, 100, 1000, CHUNK_SIZE];
        for (size, ahead) in sizes.into_iter().flat_map(|s| READ_AHEAD.map(|a| (s, a))) {
            let mut reader =
                CaptureReader::open_with_chunk_size(std::slice::from_ref(path), ahead, size)
                    .unwrap();
            let mut held: Vec<Held> = Vec::new();
            while let Some(frame) = reader.next_shared() {
                held.push(Held {
                    chunk: Arc::clone(frame.buffer),
                    start: frame.start,
                    bytes: frame.packet.data.to_vec(),
                });
                for h in &held {
                    let now = h.chunk.get(h.start..h.start + h.bytes.len());
                    assert_eq!(now, Some(&h.bytes[..]));
                }
            }
            let got: Vec<&[u8]> = held.iter().map(|h| &h.bytes[..]).collect();
            let want: Vec<&[u8]> = want.frames.iter().map(|f| &f.3.0[..]).collect();
            assert_eq!(
                got,
                want,
                "{} chunk size {size} ahead {ahead}",
                path.display()
            );
        }
    }
}

/// Chunks come back to the pool once their holders let go, so memory stays bounded by what
/// is in flight.
#[test]
fn chunk_pool_stays_bounded() {
    let tmp = TempDir::new("reader");
    let mut bytes = legacy_file(Magic::Micro, false, 1);
    let records = bytes[24..].to_vec();
    for _ in 0..50 {
        bytes.extend_from_slice(&records);
    }
    let path = write(&tmp, "pool", &bytes);
    // Nothing held: the one chunk is reused in place.
    let mut reader =
        CaptureReader::open_with_chunk_size(std::slice::from_ref(&path), false, 4000).unwrap();
    while reader.next_packet().is_some() {}
    assert_eq!(reader.pool.allocated, 1);
    // A window of frames held, as workers would: new chunks only while the window fills.
    const WINDOW: usize = 4;
    let mut reader = CaptureReader::open_with_chunk_size(&[path], false, 4000).unwrap();
    let mut window = std::collections::VecDeque::new();
    let mut frames = 0;
    while let Some(frame) = reader.next_shared() {
        window.push_back(Arc::clone(frame.buffer));
        if window.len() > WINDOW {
            window.pop_front();
        }
        frames += 1;
    }
    assert_eq!(frames, 51 * LENGTHS.len());
    assert!(
        (2..=WINDOW + 2).contains(&reader.pool.allocated),
        "{} chunks",
        reader.pool.allocated
    );
}

#[test]
fn files_merge_in_timestamp_order() {
    let tmp = TempDir::new("reader");
    let a = write(&tmp, "merge-a", &legacy_file(Magic::Micro, false, 1));
    let b = write(&tmp, "merge-b", &pcapng_file(false));
    let c = write(&tmp, "merge-c", &legacy_file(Magic::Nano, true, 1));
    let paths = [a, b, c];
    let mut streams: Vec<std::collections::VecDeque<_>> = paths
        .iter()
        .map(|p| read_oracle(p).unwrap().frames.into())
        .collect();
    // Smallest head first; ties go to the earlier file.
    let mut want = Vec::new();
    loop {
        let next = streams
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.front().map(|f| (f.0, i)))
            .min();
        let Some((_, i)) = next else { break };
        want.push(streams[i].pop_front().unwrap());
    }
    for (size, ahead) in [64, CHUNK_SIZE]
        .into_iter()
        .flat_map(|s| READ_AHEAD.map(|a| (s, a)))
    {
        let mut reader = CaptureReader::open_with_chunk_size(&paths, ahead, size).unwrap();
        let mut got = Vec::new();
        while let Some(p) = reader.next_packet() {
            got.push((p.ts_ns, p.linktype, p.orig_len, Bytes(p.data.to_vec())));
        }
        assert_eq!(got, want);
        assert!(
            reader.problems().is_empty(),
            "{:?} {size} {ahead}",
            reader.problems()
        );
    }
}

#[test]
fn a_directory_is_an_error_naming_it() {
    let tmp = TempDir::new("reader");
    let dir = tmp.dir().to_path_buf();
    let err = CaptureReader::open(std::slice::from_ref(&dir))
        .err()
        .unwrap();
    assert!(
        err.to_string().contains(&dir.display().to_string()),
        "{err}"
    );
}

/// Found by the `capture_file` fuzz target (a leak report): the read-ahead thread could
/// outlive its reader. It is joined on drop, so the file is closed once the reader is gone.
#[test]
fn dropping_a_reader_ends_its_read_ahead_thread() {
    let tmp = TempDir::new("reader");
    let mut bytes = legacy_file(Magic::Micro, false, 1);
    let records = bytes[24..].to_vec();
    for _ in 0..20 {
        bytes.extend_from_slice(&records);
    }
    let path = write(&tmp, "read-ahead-drop", &bytes);
    let open_fds = || {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|target| *target == path)
            .count()
    };
    for _ in 0..20 {
        // Small chunks: the thread is blocked handing over chunks when the reader goes.
        let mut reader =
            CaptureReader::open_with_chunk_size(std::slice::from_ref(&path), true, 64).unwrap();
        assert!(reader.next_packet().is_some());
        assert_eq!(open_fds(), 1);
        drop(reader);
        assert_eq!(open_fds(), 0);
    }
}
