//! Windows XML Event Log (EVTX) writer for Sysmon events: the generator's EVTX fixtures.
//!
//! No Windows machine makes our fixtures, so this writes the file format as libyal's
//! "Windows XML Event Log (EVTX)" document and MS-EVEN6 describe it, the way Windows lays out
//! a cleanly closed log:
//!
//! * a 4096-byte file header (`ElfFile\0`, format 3.1, CRC32 of its first 120 bytes, no
//!   dirty or full flag), then 64 KiB chunks;
//! * each chunk: a 512-byte header (`ElfChnk\0`, first/last record ids, last record and free
//!   space offsets, CRC32 of the records, the common-string and template tables, CRC32 of
//!   bytes 0..120 and 128..512), then records, zeros after the last one;
//! * each record: `**\0\0`, size, record id, FILETIME, Binary XML, size again;
//! * each record's Binary XML is a fragment holding one template instance and its values,
//!   then an end-of-file token, as Windows writes them: the first record of a chunk that uses
//!   a template carries its definition inline, later ones point back at it, and element and
//!   attribute names are likewise stored once per chunk (inline on first use, linked into the
//!   string table) and referenced by offset after. python-evtx only renders records made of a
//!   template instance, and a plain element tree outside a template is read differently by
//!   readers (the dependency id that template definitions carry), so every record uses one.
//!
//! The template is the whole `<Event>`: System values are typed substitutions as Windows
//! types them (EventID and Task UInt16, Version/Level/Opcode UInt8, Keywords HexInt64,
//! TimeCreated FILETIME, EventRecordID UInt64, ProcessID/ThreadID UInt32, UserID SID), so
//! readers render them as they render real logs; Provider, Channel and the `Data Name`s are
//! text in the template; Computer and every Data value are UTF-16 string substitutions.
//! Sysmon's manifest types some Data fields (ProcessId UInt32, ProcessGuid GUID, ...): we
//! only know their text, which is what every reader renders, so all are strings here.
//!
//! Events the format or the readers cannot carry faithfully are refused with an
//! `InvalidInput` error naming the event, never written approximately or with a panic.
//!
//! The tests read what this writes with three independent readers, each checking every
//! checksum: the `evtx` crate, python-evtx and libevtx (evtxinfo/evtxexport).

use std::collections::HashMap;
use std::io::{self, Write};

use crate::endpoint::{Platform, SysmonEvent};

const FILE_HEADER_SIZE: usize = 4096;
const CHUNK_SIZE: usize = 65536;
const CHUNK_HEADER_SIZE: usize = 512;
/// The copy of the size that ends every record.
const RECORD_TRAILER_SIZE: usize = 4;
/// The chunk-count field of the file header is 16 bits.
const MAX_CHUNKS: usize = u16::MAX as usize;
/// Sysmon's longest field name is about 25 characters; this leaves room and keeps a name's
/// 16-bit length field far from wrapping.
const MAX_NAME_CHARS: usize = 256;
/// FILETIME counts 100 ns ticks since 1601-01-01; this is 1970-01-01 in those ticks.
const FILETIME_UNIX_EPOCH: u64 = 116_444_736_000_000_000;

/// Sysmon's Keywords: every Sysmon event carries only the "classic" bit 63.
const SYSMON_KEYWORDS: u64 = 0x8000_0000_0000_0000;
/// Sysmon writes every event at level 4 (Information) with opcode 0 (Info).
const SYSMON_LEVEL: u8 = 4;
const SYSMON_OPCODE: u8 = 0;
/// `S-1-5-18` (LocalSystem), the account the Sysmon service logs as: revision 1, one
/// sub-authority, identifier authority 5 (NT, 48-bit big-endian), sub-authority 18.
const LOCAL_SYSTEM_SID: [u8; 12] = [1, 1, 0, 0, 0, 0, 0, 5, 18, 0, 0, 0];

/// Binary XML tokens (MS-EVEN6 2.2.12); `MORE` (0x40) marks an attribute that has another
/// after it, or an element start with an attribute list.
mod token {
    pub const END_OF_FILE: u8 = 0x00;
    pub const OPEN_START_ELEMENT: u8 = 0x01;
    pub const CLOSE_START_ELEMENT: u8 = 0x02;
    pub const CLOSE_EMPTY_ELEMENT: u8 = 0x03;
    pub const END_ELEMENT: u8 = 0x04;
    pub const VALUE: u8 = 0x05;
    pub const ATTRIBUTE: u8 = 0x06;
    pub const TEMPLATE_INSTANCE: u8 = 0x0c;
    pub const NORMAL_SUBSTITUTION: u8 = 0x0d;
    pub const FRAGMENT_HEADER: u8 = 0x0f;
    pub const MORE: u8 = 0x40;
}

/// Binary XML value types used here.
mod value_type {
    pub const STRING: u8 = 0x01;
    pub const UINT8: u8 = 0x04;
    pub const UINT16: u8 = 0x06;
    pub const UINT32: u8 = 0x08;
    pub const UINT64: u8 = 0x0a;
    pub const FILETIME: u8 = 0x11;
    pub const SID: u8 = 0x13;
    pub const HEX_INT64: u8 = 0x15;
}

/// Fragment header: token, major version 1, minor version 1, flags 0.
const FRAGMENT_HEADER: [u8; 4] = [token::FRAGMENT_HEADER, 1, 1, 0];
/// Element starts in a template definition carry a dependency id; 0xFFFF is "none".
const NO_DEPENDENCY: u16 = 0xffff;

/// The System substitutions, in the order of their ids; EventData values follow.
const SUB_EVENT_ID: u16 = 0;
const SUB_VERSION: u16 = 1;
const SUB_LEVEL: u16 = 2;
const SUB_TASK: u16 = 3;
const SUB_OPCODE: u16 = 4;
const SUB_KEYWORDS: u16 = 5;
const SUB_TIME_CREATED: u16 = 6;
const SUB_RECORD_ID: u16 = 7;
const SUB_PROCESS_ID: u16 = 8;
const SUB_THREAD_ID: u16 = 9;
const SUB_COMPUTER: u16 = 10;
const SUB_USER_ID: u16 = 11;
const SYSTEM_SUBSTITUTIONS: u16 = 12;

const EVENT_NAMESPACE: &str = "http://schemas.microsoft.com/win/2004/08/events/event";

/// Provider name, provider GUID (as Sysmon's events show it) and channel of a platform.
fn provider(platform: Platform) -> (&'static str, &'static str, &'static str) {
    match platform {
        Platform::Windows => (
            platform.provider(),
            "{5770385f-c22a-43e0-bf4c-06f5698ffbd9}",
            "Microsoft-Windows-Sysmon/Operational",
        ),
        Platform::Linux => (
            platform.provider(),
            "{ff032593-a8d3-4f13-b0d6-01fc615a0f97}",
            "Linux-Sysmon/Operational",
        ),
    }
}

/// The System/Version Sysmon's manifest gives an event id, as Sysmon 15 (and Sysmon for
/// Linux 1.x) render it; Task always equals the event id. Taken from published events; 12
/// and 14 share event 13's registry template. None: not known, so not written.
pub(crate) fn sysmon_version(event_id: u16) -> Option<u8> {
    match event_id {
        1 | 3 | 22 => Some(5),
        5 | 10 => Some(3),
        11..=14 => Some(2),
        _ => None,
    }
}

/// Write `events` as an EVTX log of Sysmon's channel: one record each, in order, over as
/// many 64 KiB chunks as they need. Record ids are consecutive, as a log's are: the first
/// event's `record_id` (1 when absent), then one more per event; an event that carries a
/// record id must carry that one (libevtx calls a log with gaps corrupted).
///
/// Refused (`InvalidInput`, naming the event): an event id whose Sysmon version is unknown, a
/// time that is not a whole 100 ns (FILETIME's resolution), a record id that is 0 or breaks
/// the sequence, a Data name other than ASCII letters, digits and `_`, text with a character
/// XML cannot carry, a value over 32767 UTF-16 units, or a record too big for one chunk.
pub fn write_evtx(out: &mut impl Write, events: &[SysmonEvent]) -> io::Result<()> {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    let mut chunk = Chunk::new();
    let mut previous_id: Option<u64> = None;
    for (index, event) in events.iter().enumerate() {
        let record_id = match (previous_id, event.record_id) {
            (None, None) => 1,
            (None, Some(0)) => return Err(refuse(index, Some(0), "record ids start at 1")),
            (None, Some(id)) => id,
            (Some(prev), given) => {
                let next = prev
                    .checked_add(1)
                    .ok_or_else(|| refuse(index, None, "record id overflows"))?;
                match given {
                    Some(id) if id != next => {
                        return Err(refuse(
                            index,
                            Some(id),
                            &format!("record id does not follow {prev} (a log's are consecutive)"),
                        ));
                    }
                    _ => next,
                }
            }
        };
        let record = RecordInput::new(event, record_id)
            .map_err(|why| refuse(index, Some(record_id), &why))?;
        if !chunk.try_append(&record) {
            if !chunk.is_empty() {
                chunks.push(chunk.finish());
                chunk = Chunk::new();
            }
            if !chunk.try_append(&record) {
                return Err(refuse(
                    index,
                    Some(record_id),
                    "record does not fit in one 64 KiB chunk",
                ));
            }
            if chunks.len() >= MAX_CHUNKS {
                return Err(refuse(
                    index,
                    Some(record_id),
                    "more chunks than an EVTX file header can count (65535)",
                ));
            }
        }
        previous_id = Some(record_id);
    }
    if !chunk.is_empty() {
        chunks.push(chunk.finish());
    }
    let next_record_id = previous_id.map_or(1, |id| id.saturating_add(1));
    out.write_all(&file_header(chunks.len(), next_record_id))?;
    for chunk in &chunks {
        out.write_all(chunk)?;
    }
    Ok(())
}

fn refuse(index: usize, record_id: Option<u64>, why: &str) -> io::Error {
    let record = record_id.map_or_else(String::new, |id| format!(" (record id {id})"));
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("EVTX writer: event {index}{record}: {why}"),
    )
}

/// 4096 bytes: format 3.1 (what python-evtx accepts), chunks 0..count, flags 0 (a log
/// closed cleanly and not full), CRC32 of the first 120 bytes.
fn file_header(chunk_count: usize, next_record_id: u64) -> Vec<u8> {
    let mut header = vec![0u8; FILE_HEADER_SIZE];
    put(&mut header, 0, b"ElfFile\0");
    put(&mut header, 8, &0u64.to_le_bytes());
    let last_chunk = chunk_count.saturating_sub(1) as u64;
    put(&mut header, 16, &last_chunk.to_le_bytes());
    put(&mut header, 24, &next_record_id.to_le_bytes());
    put(&mut header, 32, &128u32.to_le_bytes());
    put(&mut header, 36, &1u16.to_le_bytes());
    put(&mut header, 38, &3u16.to_le_bytes());
    put(&mut header, 40, &(FILE_HEADER_SIZE as u16).to_le_bytes());
    put(&mut header, 42, &(chunk_count as u16).to_le_bytes());
    put(&mut header, 120, &0u32.to_le_bytes());
    let crc = crc32(&[header.get(..120).unwrap_or_default()]);
    put(&mut header, 124, &crc.to_le_bytes());
    header
}

/// Copy `bytes` into `buf` at `at`; positions are our own, so a miss is a bug that the
/// readers in the tests would catch, not a panic.
fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(dst) = buf.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

/// What one record needs, checked and encoded once (so a retry in a new chunk only redoes
/// the parts that depend on the chunk).
struct RecordInput {
    record_id: u64,
    filetime: u64,
    platform: Platform,
    template: TemplateKey,
    /// Substitution descriptors and values, ready to write after the template instance.
    instance_data: Vec<u8>,
}

/// What a template's XML depends on besides its substitutions.
#[derive(Clone, PartialEq, Eq, Hash)]
struct TemplateKey {
    platform: Platform,
    event_id: u16,
    names: Vec<String>,
}

impl TemplateKey {
    /// A GUID that names this template: stable across runs, distinct per key (FNV-1a).
    fn guid(&self) -> [u8; 16] {
        let mut text = format!("{:?}/{}", self.platform, self.event_id);
        for name in &self.names {
            text.push('/');
            text.push_str(name);
        }
        let low = fnv1a64(text.as_bytes(), 0xcbf2_9ce4_8422_2325);
        let high = fnv1a64(text.as_bytes(), 0x6c62_272e_07bb_0142);
        let mut guid = [0u8; 16];
        put(&mut guid, 0, &low.to_le_bytes());
        put(&mut guid, 8, &high.to_le_bytes());
        guid
    }
}

impl RecordInput {
    fn new(event: &SysmonEvent, record_id: u64) -> Result<RecordInput, String> {
        let version = sysmon_version(event.event_id)
            .ok_or_else(|| format!("no Sysmon version known for EventID {}", event.event_id))?;
        if !event.time_ns.is_multiple_of(100) {
            return Err(format!(
                "time {} ns is not a whole 100 ns (FILETIME's resolution)",
                event.time_ns
            ));
        }
        let filetime = event.time_ns / 100 + FILETIME_UNIX_EPOCH;
        let (pid, tid) = sysmon_process(&event.computer);

        let count = usize::from(SYSTEM_SUBSTITUTIONS) + event.data.len();
        let count = u32::try_from(count).map_err(|_| "too many Data fields".to_string())?;
        let mut values: Vec<(u8, Vec<u8>)> = vec![
            (value_type::UINT16, event.event_id.to_le_bytes().to_vec()),
            (value_type::UINT8, vec![version]),
            (value_type::UINT8, vec![SYSMON_LEVEL]),
            (value_type::UINT16, event.event_id.to_le_bytes().to_vec()),
            (value_type::UINT8, vec![SYSMON_OPCODE]),
            (
                value_type::HEX_INT64,
                SYSMON_KEYWORDS.to_le_bytes().to_vec(),
            ),
            (value_type::FILETIME, filetime.to_le_bytes().to_vec()),
            (value_type::UINT64, record_id.to_le_bytes().to_vec()),
            (value_type::UINT32, pid.to_le_bytes().to_vec()),
            (value_type::UINT32, tid.to_le_bytes().to_vec()),
            (
                value_type::STRING,
                utf16_value("Computer", &event.computer)?,
            ),
            (value_type::SID, LOCAL_SYSTEM_SID.to_vec()),
        ];
        let mut names = Vec::with_capacity(event.data.len());
        for (name, value) in &event.data {
            check_data_name(name)?;
            values.push((value_type::STRING, utf16_value(name, value)?));
            names.push(name.clone());
        }

        let mut instance_data = Vec::new();
        instance_data.extend_from_slice(&count.to_le_bytes());
        for (ty, bytes) in &values {
            // utf16_value bounds strings to u16; the others are fixed and small.
            let size = u16::try_from(bytes.len()).map_err(|_| "value too long".to_string())?;
            instance_data.extend_from_slice(&size.to_le_bytes());
            instance_data.push(*ty);
            instance_data.push(0);
        }
        for (_, bytes) in &values {
            instance_data.extend_from_slice(bytes);
        }

        Ok(RecordInput {
            record_id,
            filetime,
            platform: event.platform,
            template: TemplateKey {
                platform: event.platform,
                event_id: event.event_id,
                names,
            },
            instance_data,
        })
    }
}

/// Process and thread id of the Sysmon service that "wrote" a computer's events: stable per
/// computer, multiples of 4 as Windows hands them out.
fn sysmon_process(computer: &str) -> (u32, u32) {
    let h = fnv1a64(computer.as_bytes(), 0xcbf2_9ce4_8422_2325);
    let pid = 1000 + 4 * (h % 2000) as u32;
    let tid = pid + 4 * (1 + ((h >> 32) % 500) as u32);
    (pid, tid)
}

/// Sysmon's field names are identifiers; python-evtx writes attribute values between double
/// quotes without escaping them, so anything else would not come back out as written.
/// Longer names are refused before their 16-bit length could wrap.
fn check_data_name(name: &str) -> Result<(), String> {
    if !name.is_empty()
        && name.len() <= MAX_NAME_CHARS
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        Ok(())
    } else {
        Err(format!(
            "Data name {name:?} is not 1 to {MAX_NAME_CHARS} ASCII letters, digits and '_'"
        ))
    }
}

/// `value` as UTF-16LE without a terminator (a string substitution's size says where it
/// ends). Refuses characters XML 1.0 cannot carry (readers drop or replace them) and values
/// longer than a substitution's 16-bit byte size allows.
fn utf16_value(field: &str, value: &str) -> Result<Vec<u8>, String> {
    if let Some(bad) = value.chars().find(|&c| !xml_char(c)) {
        return Err(format!(
            "{field} holds U+{:04X}, which XML cannot carry",
            u32::from(bad)
        ));
    }
    let bytes = utf16le(value);
    if bytes.len() > usize::from(u16::MAX) {
        return Err(format!(
            "{field} is {} UTF-16 units long, over a substitution's 32767",
            bytes.len() / 2
        ));
    }
    Ok(bytes)
}

/// XML 1.0's Char production.
fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..)
}

fn utf16le(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// MS-EVEN6's name hash: low 16 bits of `h = h * 65599 + unit` over the UTF-16 units.
fn name_hash(name: &str) -> u16 {
    let h = name.encode_utf16().fold(0u32, |h, unit| {
        h.wrapping_mul(65599).wrapping_add(u32::from(unit))
    });
    (h & 0xffff) as u16
}

fn fnv1a64(bytes: &[u8], basis: u64) -> u64 {
    bytes.iter().fold(basis, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// One chunk being filled: its bytes, and the names and templates its records already hold.
struct Chunk {
    data: Vec<u8>,
    /// Where the next record goes (the header's free space offset).
    free: usize,
    last_record_offset: usize,
    first_id: u64,
    last_id: u64,
    /// Name -> chunk offset of its stored copy (the string table entry).
    names: HashMap<String, u32>,
    name_buckets: [u32; 64],
    /// Template -> chunk offset of its definition.
    templates: HashMap<TemplateKey, u32>,
    template_buckets: [u32; 32],
}

impl Chunk {
    fn new() -> Chunk {
        Chunk {
            data: vec![0u8; CHUNK_SIZE],
            free: CHUNK_HEADER_SIZE,
            last_record_offset: 0,
            first_id: 0,
            last_id: 0,
            names: HashMap::new(),
            name_buckets: [0; 64],
            templates: HashMap::new(),
            template_buckets: [0; 32],
        }
    }

    fn is_empty(&self) -> bool {
        self.free == CHUNK_HEADER_SIZE
    }

    /// Encode `record` at the free space; false (and the chunk unchanged) when it does not fit.
    fn try_append(&mut self, record: &RecordInput) -> bool {
        let start = self.free;
        let mut enc = RecordEncoder::new(self, start);
        enc.record(record);
        let RecordEncoder {
            out,
            new_names,
            name_buckets,
            new_template,
            template_buckets,
            ..
        } = enc;
        let Some(end) = start
            .checked_add(out.len())
            .filter(|&end| end <= CHUNK_SIZE)
        else {
            return false;
        };
        put(&mut self.data, start, &out);
        self.names.extend(new_names);
        self.name_buckets = name_buckets;
        if let Some((key, offset)) = new_template {
            self.templates.insert(key, offset);
        }
        self.template_buckets = template_buckets;
        if self.is_empty() {
            self.first_id = record.record_id;
        }
        self.last_id = record.record_id;
        self.last_record_offset = start;
        self.free = end;
        true
    }

    /// The chunk's bytes with its header written and both CRC32s computed.
    fn finish(mut self) -> Vec<u8> {
        let mut header = [0u8; CHUNK_HEADER_SIZE];
        put(&mut header, 0, b"ElfChnk\0");
        // Record numbers and identifiers are the same in a log that was never cleared.
        put(&mut header, 8, &self.first_id.to_le_bytes());
        put(&mut header, 16, &self.last_id.to_le_bytes());
        put(&mut header, 24, &self.first_id.to_le_bytes());
        put(&mut header, 32, &self.last_id.to_le_bytes());
        put(&mut header, 40, &128u32.to_le_bytes());
        put(
            &mut header,
            44,
            &(self.last_record_offset as u32).to_le_bytes(),
        );
        put(&mut header, 48, &(self.free as u32).to_le_bytes());
        let records = self
            .data
            .get(CHUNK_HEADER_SIZE..self.free)
            .unwrap_or_default();
        put(&mut header, 52, &crc32(&[records]).to_le_bytes());
        for (i, offset) in self.name_buckets.iter().enumerate() {
            put(&mut header, 128 + 4 * i, &offset.to_le_bytes());
        }
        for (i, offset) in self.template_buckets.iter().enumerate() {
            put(&mut header, 384 + 4 * i, &offset.to_le_bytes());
        }
        let crc = crc32(&[&header[..120], &header[128..]]);
        put(&mut header, 124, &crc.to_le_bytes());
        put(&mut self.data, 0, &header);
        self.data
    }
}

/// A substitution slot or literal text, where the template puts a value.
#[derive(Clone, Copy)]
enum Piece<'t> {
    Text(&'t str),
    Substitution(u16, u8),
}

/// Encodes one record at a chunk offset; names and templates it adds stay pending here
/// until the chunk knows the record fits.
struct RecordEncoder<'c> {
    chunk: &'c Chunk,
    /// Chunk offset of `out[0]`.
    base: usize,
    out: Vec<u8>,
    new_names: HashMap<String, u32>,
    name_buckets: [u32; 64],
    new_template: Option<(TemplateKey, u32)>,
    template_buckets: [u32; 32],
}

impl<'c> RecordEncoder<'c> {
    fn new(chunk: &'c Chunk, base: usize) -> RecordEncoder<'c> {
        RecordEncoder {
            chunk,
            base,
            out: Vec::with_capacity(1024),
            new_names: HashMap::new(),
            name_buckets: chunk.name_buckets,
            new_template: None,
            template_buckets: chunk.template_buckets,
        }
    }

    /// Chunk offset of the next byte written (saturating: an overflow only means "too big").
    fn pos(&self) -> u32 {
        u32::try_from(self.base + self.out.len()).unwrap_or(u32::MAX)
    }

    fn u8(&mut self, v: u8) {
        self.out.push(v);
    }

    fn u16(&mut self, v: u16) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    fn patch_u32(&mut self, at: usize, v: u32) {
        put(&mut self.out, at, &v.to_le_bytes());
    }

    fn record(&mut self, record: &RecordInput) {
        self.out.extend_from_slice(b"\x2a\x2a\x00\x00");
        let size_at = self.out.len();
        self.u32(0);
        self.out.extend_from_slice(&record.record_id.to_le_bytes());
        self.out.extend_from_slice(&record.filetime.to_le_bytes());

        self.out.extend_from_slice(&FRAGMENT_HEADER);
        self.template_instance(record);
        self.out.extend_from_slice(&record.instance_data);
        // MS-EVEN6: a document ends with an EOF token; libevtx reads on past the values
        // for one (evtx and python-evtx stop after the template instance either way).
        self.u8(token::END_OF_FILE);

        let size = u32::try_from(self.out.len() + RECORD_TRAILER_SIZE).unwrap_or(u32::MAX);
        self.patch_u32(size_at, size);
        self.u32(size);
    }

    /// Template instance: token, 1, template id, definition offset, and the definition itself
    /// when this chunk does not hold it yet (the offset then points just past itself).
    fn template_instance(&mut self, record: &RecordInput) {
        let guid = record.template.guid();
        let template_id = u32::from_le_bytes([guid[0], guid[1], guid[2], guid[3]]);
        self.u8(token::TEMPLATE_INSTANCE);
        self.u8(1);
        self.u32(template_id);
        if let Some(&offset) = self.chunk.templates.get(&record.template) {
            self.u32(offset);
            return;
        }
        let offset = self.pos() + 4;
        self.u32(offset);
        // Definition header: next definition in the same table bucket, GUID, data size.
        let bucket = (template_id % 32) as usize;
        let next = self.template_buckets.get(bucket).copied().unwrap_or(0);
        self.u32(next);
        self.out.extend_from_slice(&guid);
        let size_at = self.out.len();
        self.u32(0);
        let body_start = self.out.len();
        self.out.extend_from_slice(&FRAGMENT_HEADER);
        self.event_element(record);
        self.u8(token::END_OF_FILE);
        let body_size = (self.out.len() - body_start) as u32;
        self.patch_u32(size_at, body_size);
        if let Some(head) = self.template_buckets.get_mut(bucket) {
            *head = offset;
        }
        self.new_template = Some((record.template.clone(), offset));
    }

    fn event_element(&mut self, record: &RecordInput) {
        let (provider_name, provider_guid, channel) = provider(record.platform);
        let event = self.start("Event", &[("xmlns", Piece::Text(EVENT_NAMESPACE))]);
        self.u8(token::CLOSE_START_ELEMENT);

        let system = self.start("System", &[]);
        self.u8(token::CLOSE_START_ELEMENT);
        let p = self.start(
            "Provider",
            &[
                ("Name", Piece::Text(provider_name)),
                ("Guid", Piece::Text(provider_guid)),
            ],
        );
        self.close_empty(p);
        self.leaf(
            "EventID",
            Piece::Substitution(SUB_EVENT_ID, value_type::UINT16),
        );
        self.leaf(
            "Version",
            Piece::Substitution(SUB_VERSION, value_type::UINT8),
        );
        self.leaf("Level", Piece::Substitution(SUB_LEVEL, value_type::UINT8));
        self.leaf("Task", Piece::Substitution(SUB_TASK, value_type::UINT16));
        self.leaf("Opcode", Piece::Substitution(SUB_OPCODE, value_type::UINT8));
        self.leaf(
            "Keywords",
            Piece::Substitution(SUB_KEYWORDS, value_type::HEX_INT64),
        );
        let t = self.start(
            "TimeCreated",
            &[(
                "SystemTime",
                Piece::Substitution(SUB_TIME_CREATED, value_type::FILETIME),
            )],
        );
        self.close_empty(t);
        self.leaf(
            "EventRecordID",
            Piece::Substitution(SUB_RECORD_ID, value_type::UINT64),
        );
        let c = self.start("Correlation", &[]);
        self.close_empty(c);
        let x = self.start(
            "Execution",
            &[
                (
                    "ProcessID",
                    Piece::Substitution(SUB_PROCESS_ID, value_type::UINT32),
                ),
                (
                    "ThreadID",
                    Piece::Substitution(SUB_THREAD_ID, value_type::UINT32),
                ),
            ],
        );
        self.close_empty(x);
        self.leaf("Channel", Piece::Text(channel));
        self.leaf(
            "Computer",
            Piece::Substitution(SUB_COMPUTER, value_type::STRING),
        );
        let s = self.start(
            "Security",
            &[("UserID", Piece::Substitution(SUB_USER_ID, value_type::SID))],
        );
        self.close_empty(s);
        self.end(system);

        let data = self.start("EventData", &[]);
        let names = &record.template.names;
        if names.is_empty() {
            self.close_empty(data);
        } else {
            self.u8(token::CLOSE_START_ELEMENT);
            for (i, name) in names.iter().enumerate() {
                let id = SYSTEM_SUBSTITUTIONS.saturating_add(i as u16);
                let d = self.start("Data", &[("Name", Piece::Text(name))]);
                self.u8(token::CLOSE_START_ELEMENT);
                self.piece(Piece::Substitution(id, value_type::STRING));
                self.end(d);
            }
            self.end(data);
        }
        self.end(event);
    }

    /// `<name>piece</name>` without attributes.
    fn leaf(&mut self, name: &str, piece: Piece<'_>) {
        let at = self.start(name, &[]);
        self.u8(token::CLOSE_START_ELEMENT);
        self.piece(piece);
        self.end(at);
    }

    /// Element start with its attributes; returns where it starts, for its data size.
    fn start(&mut self, name: &str, attributes: &[(&str, Piece<'_>)]) -> usize {
        let at = self.out.len();
        let has_attributes = !attributes.is_empty();
        self.u8(if has_attributes {
            token::OPEN_START_ELEMENT | token::MORE
        } else {
            token::OPEN_START_ELEMENT
        });
        self.u16(NO_DEPENDENCY);
        self.u32(0); // data size, set when the element ends
        self.name(name);
        if has_attributes {
            let list_at = self.out.len();
            self.u32(0);
            for (i, (attribute, piece)) in attributes.iter().enumerate() {
                let more = i + 1 < attributes.len();
                self.u8(if more {
                    token::ATTRIBUTE | token::MORE
                } else {
                    token::ATTRIBUTE
                });
                self.name(attribute);
                self.piece(*piece);
            }
            let list_size = (self.out.len() - list_at - 4) as u32;
            self.patch_u32(list_at, list_size);
        }
        at
    }

    fn close_empty(&mut self, at: usize) {
        self.u8(token::CLOSE_EMPTY_ELEMENT);
        self.set_element_size(at);
    }

    fn end(&mut self, at: usize) {
        self.u8(token::END_ELEMENT);
        self.set_element_size(at);
    }

    /// An element's data size counts everything after its token, dependency id and the
    /// size itself (7 bytes), through its end token.
    fn set_element_size(&mut self, at: usize) {
        let size = (self.out.len() - at - 7) as u32;
        self.patch_u32(at + 3, size);
    }

    fn piece(&mut self, piece: Piece<'_>) {
        match piece {
            Piece::Text(text) => {
                self.u8(token::VALUE);
                self.u8(value_type::STRING);
                let units: Vec<u16> = text.encode_utf16().collect();
                self.u16(units.len() as u16);
                for unit in units {
                    self.u16(unit);
                }
            }
            Piece::Substitution(id, ty) => {
                self.u8(token::NORMAL_SUBSTITUTION);
                self.u16(id);
                self.u8(ty);
            }
        }
    }

    /// A name reference: the offset of the chunk's copy of the name, or a new copy right
    /// here (next string in its table bucket, hash, length, UTF-16, NUL).
    fn name(&mut self, name: &str) {
        if let Some(&offset) = self
            .chunk
            .names
            .get(name)
            .or_else(|| self.new_names.get(name))
        {
            self.u32(offset);
            return;
        }
        let offset = self.pos() + 4;
        self.u32(offset);
        let hash = name_hash(name);
        let bucket = usize::from(hash % 64);
        let next = self.name_buckets.get(bucket).copied().unwrap_or(0);
        self.u32(next);
        self.u16(hash);
        let units: Vec<u16> = name.encode_utf16().collect();
        self.u16(units.len() as u16);
        for unit in units {
            self.u16(unit);
        }
        self.u16(0);
        if let Some(head) = self.name_buckets.get_mut(bucket) {
            *head = offset;
        }
        self.new_names.insert(name.to_string(), offset);
    }
}

/// CRC-32 (IEEE 802.3, reflected, as zlib and RFC 1952 compute it) over `parts` in order.
fn crc32(parts: &[&[u8]]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    let mut crc = !0u32;
    for part in parts {
        for &b in *part {
            crc = TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::collections::BTreeMap;
    use std::path::Path;
    use std::process::Command;

    use quick_xml::events::Event as XmlEvent;

    /// 2026-03-02T09:00:00Z, the scenario's start, in ns.
    const START_NS: u64 = 1_772_442_000_000_000_000;

    fn event(
        platform: Platform,
        event_id: u16,
        ms: u64,
        computer: &str,
        data: &[(&str, &str)],
    ) -> SysmonEvent {
        SysmonEvent::new(
            platform,
            event_id,
            START_NS + ms * 1_000_000,
            computer,
            data,
        )
    }

    /// Events whose values are hard to carry: XML metacharacters, non-ASCII (with a UTF-16
    /// surrogate pair), empty values, tabs and newlines, a CommandLine over 4 KB, a Linux one.
    fn awkward_events() -> Vec<SysmonEvent> {
        let long_command = format!("powershell.exe -EncodedCommand {}", "QUJD".repeat(1500));
        assert!(long_command.len() > 4096);
        vec![
            event(
                Platform::Windows,
                1,
                0,
                "WIN-DESK-07.corp.example",
                &[
                    ("RuleName", "-"),
                    ("UtcTime", "2026-03-02 09:00:00.000"),
                    ("Image", r"C:\Users\José\AppData\Local\日本\😀.exe"),
                    (
                        "CommandLine",
                        r#"cmd.exe /c echo a & b < c > d 'e' "f" &amp;"#,
                    ),
                    ("CurrentDirectory", ""),
                    ("User", r"CORP\alice"),
                ],
            ),
            event(
                Platform::Windows,
                1,
                1,
                "WIN-SRV-12.corp.example",
                &[
                    ("RuleName", "-"),
                    ("CommandLine", &long_command),
                    ("ParentCommandLine", "line1\nline2\tend"),
                ],
            ),
            event(
                Platform::Windows,
                3,
                2,
                "WIN-SRV-12.corp.example",
                &[
                    ("Protocol", "tcp"),
                    ("Initiated", "true"),
                    ("DestinationIp", "8.8.1.1"),
                    ("DestinationHostname", "-"),
                ],
            ),
            event(
                Platform::Windows,
                11,
                3,
                "WIN-DESK-07.corp.example",
                &[(
                    "TargetFilename",
                    r"C:\Users\alice\AppData\Local\Programs\Honeygain\Honeygain.exe",
                )],
            ),
            event(
                Platform::Windows,
                13,
                4,
                "WIN-LAB-03.corp.example",
                &[("Details", r#""C:\x.exe" --token 4f2a9c0e7b1d4e8f"#)],
            ),
            event(
                Platform::Windows,
                22,
                5,
                "WIN-DESK-07.corp.example",
                &[
                    ("QueryName", "api.honeygain.com"),
                    ("QueryResults", "::ffff:203.0.113.50;"),
                ],
            ),
            event(Platform::Windows, 22, 6, "WIN-DESK-08.corp.example", &[]),
            event(
                Platform::Linux,
                3,
                7,
                "ubuntu-build-2",
                &[("Image", "/usr/bin/dig"), ("DestinationPort", "53")],
            ),
        ]
    }

    /// `count` events over five computers and the five event ids the scenario uses, enough
    /// to fill several chunks; ids from `first_id`, carried by the first and every tenth.
    fn many_events(count: u64, first_id: u64) -> Vec<SysmonEvent> {
        let computers = [
            "WIN-DESK-07.corp.example",
            "WIN-LAB-03.corp.example",
            "WIN-SRV-12.corp.example",
            "WIN-DESK-08.corp.example",
            "ubuntu-build-2",
        ];
        (0..count)
            .map(|i| {
                let event_id = [1u16, 3, 11, 13, 22][(i % 5) as usize];
                let computer = computers[(i % 5) as usize];
                let port = (51000 + i).to_string();
                let address = format!("8.8.{}.1", i % 256);
                let mut e = event(
                    Platform::Windows,
                    event_id,
                    i * 500,
                    computer,
                    &[
                        ("RuleName", "-"),
                        ("UtcTime", "2026-03-02 09:00:00.000"),
                        (
                            "Image",
                            r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe",
                        ),
                        ("SourcePort", &port),
                        ("DestinationIp", &address),
                    ],
                );
                if i % 10 == 0 {
                    e.record_id = Some(first_id + i);
                }
                e
            })
            .collect()
    }

    /// The record ids the writer gives `events` (its documented rule).
    fn expected_ids(events: &[SysmonEvent]) -> Vec<u64> {
        let mut previous = 0;
        events
            .iter()
            .map(|e| {
                previous = e.record_id.unwrap_or(previous + 1);
                previous
            })
            .collect()
    }

    /// One rendered record, as a reader's XML gives it.
    #[derive(Debug, Default)]
    struct Rendered {
        /// System children by name, attributes as `Element@Attribute`.
        system: BTreeMap<String, String>,
        data: Vec<(String, String)>,
    }

    fn parse_rendered(xml: &str) -> Rendered {
        let mut reader = quick_xml::Reader::from_str(xml);
        let mut rendered = Rendered::default();
        let mut path: Vec<String> = Vec::new();
        let mut text = String::new();
        let mut data_name = String::new();
        let element = |path: &[String],
                       name: &str,
                       attributes: quick_xml::events::attributes::Attributes<'_>,
                       data_name: &mut String,
                       rendered: &mut Rendered| {
            for attribute in attributes {
                let attribute = attribute.expect("attribute");
                let key = String::from_utf8(attribute.key.as_ref().to_vec()).expect("utf-8 name");
                let value = attribute
                    .unescape_value()
                    .expect("attribute value")
                    .into_owned();
                if name == "Data" && key == "Name" {
                    *data_name = value;
                } else if path.last().map(String::as_str) == Some("System") {
                    rendered.system.insert(format!("{name}@{key}"), value);
                } else if name == "Event" {
                    rendered.system.insert(format!("Event@{key}"), value);
                }
            }
        };
        loop {
            match reader.read_event().expect("well-formed XML") {
                XmlEvent::Start(e) => {
                    let name = String::from_utf8(e.name().as_ref().to_vec()).expect("utf-8");
                    element(&path, &name, e.attributes(), &mut data_name, &mut rendered);
                    path.push(name);
                    text.clear();
                }
                XmlEvent::Empty(e) => {
                    let name = String::from_utf8(e.name().as_ref().to_vec()).expect("utf-8");
                    element(&path, &name, e.attributes(), &mut data_name, &mut rendered);
                    if name == "Data" {
                        rendered
                            .data
                            .push((std::mem::take(&mut data_name), String::new()));
                    } else if path.last().map(String::as_str) == Some("System") {
                        rendered.system.insert(name, String::new());
                    }
                }
                XmlEvent::Text(t) => text.push_str(&t.decode().expect("text")),
                XmlEvent::GeneralRef(r) => {
                    let c = match r.resolve_char_ref().expect("character reference") {
                        Some(c) => c,
                        None => match r.decode().expect("entity").as_ref() {
                            "amp" => '&',
                            "lt" => '<',
                            "gt" => '>',
                            "apos" => '\'',
                            "quot" => '"',
                            other => panic!("unknown entity &{other};"),
                        },
                    };
                    text.push(c);
                }
                XmlEvent::End(_) => {
                    let name = path.pop().expect("balanced");
                    let parent = path.last().map(String::as_str);
                    if name == "Data" {
                        rendered
                            .data
                            .push((std::mem::take(&mut data_name), text.clone()));
                    } else if parent == Some("System") {
                        rendered.system.insert(name, text.clone());
                    }
                    text.clear();
                }
                XmlEvent::Eof => break,
                _ => {}
            }
        }
        rendered
    }

    /// `2026-03-02T09:00:00.1230000Z` (evtx, Windows) or `2026-03-02 09:00:00.123000`
    /// (python-evtx) as ns since the epoch.
    fn parse_time_ns(text: &str) -> i128 {
        let text = text.trim_end_matches('Z').replacen(' ', "T", 1);
        let t = chrono::NaiveDateTime::parse_from_str(&text, "%Y-%m-%dT%H:%M:%S%.f")
            .unwrap_or_else(|e| panic!("time {text:?}: {e}"));
        i128::from(t.and_utc().timestamp_nanos_opt().expect("in range"))
    }

    /// What the record of `event` must render, apart from TimeCreated and Execution (checked
    /// on their own): the System values Sysmon writes, and the Data pairs in order.
    fn assert_record_matches(
        rendered: &Rendered,
        event: &SysmonEvent,
        record_id: u64,
        reader: &str,
    ) {
        let (provider_name, provider_guid, channel) = match event.platform {
            Platform::Windows => (
                "Microsoft-Windows-Sysmon",
                "{5770385f-c22a-43e0-bf4c-06f5698ffbd9}",
                "Microsoft-Windows-Sysmon/Operational",
            ),
            Platform::Linux => (
                "Linux-Sysmon",
                "{ff032593-a8d3-4f13-b0d6-01fc615a0f97}",
                "Linux-Sysmon/Operational",
            ),
        };
        let version = match event.event_id {
            1 | 3 | 22 => "5",
            11 | 13 => "2",
            other => panic!("test uses EventID {other}"),
        };
        let s = &rendered.system;
        let get = |key: &str| {
            s.get(key)
                .map(String::as_str)
                .unwrap_or_else(|| panic!("{reader}: record {record_id} has no {key}"))
        };
        let id = event.event_id.to_string();
        let record = record_id.to_string();
        let expected = [
            (
                "Event@xmlns",
                "http://schemas.microsoft.com/win/2004/08/events/event",
            ),
            ("Provider@Name", provider_name),
            ("Provider@Guid", provider_guid),
            ("EventID", id.as_str()),
            ("Version", version),
            ("Level", "4"),
            ("Task", id.as_str()),
            ("Opcode", "0"),
            ("Keywords", "0x8000000000000000"),
            ("EventRecordID", record.as_str()),
            ("Channel", channel),
            ("Computer", event.computer.as_str()),
            ("Security@UserID", "S-1-5-18"),
        ];
        for (key, want) in expected {
            assert_eq!(get(key), want, "{reader}: record {record_id} {key}");
        }
        assert!(
            s.contains_key("Correlation"),
            "{reader}: record {record_id} has no Correlation"
        );
        for key in ["Execution@ProcessID", "Execution@ThreadID"] {
            let v: u32 = get(key)
                .parse()
                .unwrap_or_else(|e| panic!("{reader}: {key}: {e}"));
            assert!(v > 0 && v.is_multiple_of(4), "{reader}: {key} {v}");
        }
        assert_eq!(
            rendered.data, event.data,
            "{reader}: record {record_id} EventData"
        );
    }

    fn write(events: &[SysmonEvent]) -> Vec<u8> {
        let mut out = Vec::new();
        write_evtx(&mut out, events).expect("write");
        out
    }

    /// Read `file` with the evtx crate, checksums checked, and compare every record.
    fn check_with_evtx_crate(file: Vec<u8>, events: &[SysmonEvent]) {
        let chunks = (file.len() - FILE_HEADER_SIZE) / CHUNK_SIZE;
        assert_eq!(file.len(), FILE_HEADER_SIZE + chunks * CHUNK_SIZE);
        let ids = expected_ids(events);
        let mut parser = ::evtx::EvtxParser::from_buffer(file)
            .expect("evtx opens the file")
            .with_configuration(
                ::evtx::ParserSettings::new()
                    .validate_checksums(true)
                    .num_threads(1),
            );
        let header = parser.header();
        assert!(header.validate_checksum(), "file header CRC32");
        assert_eq!(usize::from(header.chunk_count), chunks);
        assert_eq!(header.next_record_id, ids.last().map_or(1, |id| id + 1));
        assert_eq!((header.major_version, header.minor_version), (3, 1));
        assert!(
            header.flags.is_empty(),
            "a cleanly closed log has no flags: {:?}",
            header.flags
        );
        let records: Vec<_> = parser
            .records()
            .map(|r| r.unwrap_or_else(|e| panic!("evtx: {e}")))
            .collect();
        assert_eq!(records.len(), events.len());
        for ((record, event), id) in records.iter().zip(events).zip(&ids) {
            assert_eq!(record.event_record_id, *id);
            assert_eq!(record.timestamp.as_nanosecond(), i128::from(event.time_ns));
            let rendered = parse_rendered(&record.data);
            assert_record_matches(&rendered, event, *id, "evtx");
            // evtx renders FILETIME in full, as Windows does: exact to the 100 ns.
            assert_eq!(
                parse_time_ns(&rendered.system["TimeCreated@SystemTime"]),
                i128::from(event.time_ns)
            );
        }
    }

    #[test]
    fn evtx_crate_reads_awkward_values_back() {
        let events = awkward_events();
        let file = write(&events);
        assert_eq!(
            file.len(),
            FILE_HEADER_SIZE + CHUNK_SIZE,
            "eight events fit one chunk"
        );
        check_with_evtx_crate(file.clone(), &events);

        // The checksums are really checked: one changed byte in a record fails the chunk.
        let mut damaged = file;
        damaged[FILE_HEADER_SIZE + CHUNK_HEADER_SIZE + 100] ^= 0x20;
        let mut parser = ::evtx::EvtxParser::from_buffer(damaged)
            .expect("header intact")
            .with_configuration(::evtx::ParserSettings::new().validate_checksums(true));
        assert!(
            parser.records().any(|r| r.is_err()),
            "a damaged chunk is reported"
        );
    }

    #[test]
    fn evtx_crate_reads_thousands_of_events_over_several_chunks() {
        let events = many_events(3000, 100);
        let file = write(&events);
        let chunks = (file.len() - FILE_HEADER_SIZE) / CHUNK_SIZE;
        assert!(
            chunks >= 3,
            "3000 events should fill several chunks, got {chunks}"
        );
        check_with_evtx_crate(file, &events);
    }

    #[test]
    fn a_record_that_only_fits_an_empty_chunk_starts_one() {
        // ~62 KB of value: fits an empty chunk, not one that already holds ~4 KB.
        let big = "x".repeat(31_000);
        let mut events = vec![
            event(
                Platform::Windows,
                1,
                0,
                "WIN-SRV-12.corp.example",
                &[("CommandLine", &"s".repeat(2000))],
            ),
            event(
                Platform::Windows,
                1,
                1,
                "WIN-SRV-12.corp.example",
                &[("CommandLine", &big)],
            ),
            event(
                Platform::Windows,
                1,
                2,
                "WIN-SRV-12.corp.example",
                &[("CommandLine", &big)],
            ),
        ];
        events.extend(awkward_events());
        let file = write(&events);
        let chunk_ids: Vec<(u64, u64)> = file[FILE_HEADER_SIZE..]
            .chunks(CHUNK_SIZE)
            .map(|chunk| {
                let header = ::evtx::EvtxChunkHeader::from_bytes(chunk).expect("chunk header");
                (header.first_event_record_id, header.last_event_record_id)
            })
            .collect();
        assert_eq!(
            chunk_ids[..2],
            [(1, 1), (2, 2)],
            "each big record starts a chunk"
        );
        assert_eq!(chunk_ids[2].0, 3);
        assert_eq!(chunk_ids.last().map(|c| c.1), Some(events.len() as u64));
        check_with_evtx_crate(file, &events);
    }

    #[test]
    fn no_events_make_an_empty_log() {
        let file = write(&[]);
        assert_eq!(file.len(), FILE_HEADER_SIZE);
        check_with_evtx_crate(file, &[]);
    }

    fn refused(events: &[SysmonEvent]) -> String {
        let mut out = Vec::new();
        let err = write_evtx(&mut out, events).expect_err("refused");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(out.is_empty(), "nothing is written for a refused log");
        err.to_string()
    }

    #[test]
    fn bad_events_are_refused_by_name_without_panicking() {
        let ok = || event(Platform::Windows, 3, 0, "h", &[("Image", "a")]);
        let with = |f: &dyn Fn(&mut SysmonEvent)| {
            let mut e = ok();
            f(&mut e);
            vec![ok(), e]
        };
        // Two values of 30000 UTF-16 units each: 120 KB, no chunk holds it.
        let huge = "y".repeat(30_000);
        let too_big = with(&|e| {
            e.record_id = Some(2);
            e.data = vec![("A".into(), huge.clone()), ("B".into(), huge.clone())];
        });
        let message = refused(&too_big);
        assert!(
            message.contains("event 1 (record id 2)") && message.contains("chunk"),
            "{message}"
        );

        let too_long = with(&|e| e.data = vec![("CommandLine".into(), "z".repeat(40_000))]);
        assert!(
            refused(&too_long).contains("event 1 (record id 2): CommandLine is 40000 UTF-16 units")
        );

        let unknown_id = with(&|e| e.event_id = 999);
        assert!(refused(&unknown_id).contains("no Sysmon version known for EventID 999"));

        let odd_time = with(&|e| e.time_ns += 1);
        assert!(refused(&odd_time).contains("100 ns"));

        let going_back = with(&|e| e.record_id = Some(1));
        assert!(refused(&going_back).contains("record id does not follow 1"));
        let gap = with(&|e| e.record_id = Some(5));
        assert!(refused(&gap).contains("event 1 (record id 5): record id does not follow 1"));
        assert!(
            refused(&[SysmonEvent {
                record_id: Some(0),
                ..ok()
            }])
            .contains("start at 1")
        );

        let bad_name = with(&|e| e.data = vec![("Na\"me".into(), "v".into())]);
        assert!(refused(&bad_name).contains("Data name"));

        let nul = with(&|e| e.data = vec![("Image".into(), "a\0b".into())]);
        assert!(refused(&nul).contains("U+0000"));

        let bad_computer = with(&|e| e.computer = "h\u{1}".into());
        assert!(refused(&bad_computer).contains("Computer holds U+0001"));
    }

    #[test]
    fn crc32_and_name_hash_match_their_definitions() {
        // The CRC-32 check value of RFC 1952's CRC (as in every CRC catalogue).
        assert_eq!(crc32(&[b"123456789"]), 0xcbf4_3926);
        assert_eq!(crc32(&[b"1234", b"56789"]), 0xcbf4_3926);
        // MS-EVEN6 NameHash by hand: "AB" = 65 * 65599 + 66 = 4264001, low 16 bits 0x1041.
        assert_eq!(name_hash("AB"), 0x1041);
    }

    /// python-evtx (Debian's python3-evtx, Willi Ballenthin's parser): checks the file header
    /// and every chunk (magic, both CRC32s) and prints each record as JSON.
    const PYTHON_EVTX_DUMP: &str = r#"
import json, sys
try:
    import Evtx.Evtx as evtx
except ImportError as e:
    print("NO_PYTHON_EVTX " + str(e))
    sys.exit(3)
with evtx.Evtx(sys.argv[1]) as log:
    header = log.get_file_header()
    print(json.dumps({"header_ok": header.verify(), "chunks": header.chunk_count(), "next": header.next_record_number(), "dirty": header.is_dirty(), "full": header.is_full()}))
    for chunk in log.chunks():
        print(json.dumps({"chunk_ok": chunk.verify()}))
        for record in chunk.records():
            print(json.dumps({"id": record.record_num(), "time": str(record.timestamp()), "size_ok": record.verify(), "xml": record.xml()}))
"#;

    /// Run python-evtx on `path`; the project's test setup installs it.
    fn python_evtx(path: &Path) -> Vec<serde_json::Value> {
        let python = ["/usr/bin/python3", "python3"]
            .into_iter()
            .find(|p| !p.starts_with('/') || Path::new(p).exists())
            .unwrap_or("python3");
        let output = Command::new(python)
            .arg("-c")
            .arg(PYTHON_EVTX_DUMP)
            .arg(path)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {python} ({e}): run `bash scripts/setup.sh --test` to install python3 and python3-evtx"));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            !stdout.starts_with("NO_PYTHON_EVTX"),
            "python-evtx is missing ({stdout}): run `bash scripts/setup.sh --test` to install python3-evtx"
        );
        assert!(
            output.status.success(),
            "python-evtx failed: {}\n{stdout}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect()
    }

    /// Write `events` to a fresh file in the temp dir for an outside reader; the directory
    /// goes when the guard drops.
    struct TempLog(crate::testing::TempDir);

    impl TempLog {
        fn new(name: &str, events: &[SysmonEvent]) -> TempLog {
            let dir = crate::testing::TempDir::new(&format!("evtx-{name}"));
            std::fs::write(dir.path("sysmon.evtx"), write(events)).expect("write file");
            TempLog(dir)
        }

        fn path(&self) -> std::path::PathBuf {
            self.0.path("sysmon.evtx")
        }
    }

    /// Run one of libevtx's tools; missing, the test setup has not been run.
    fn libevtx_tool(tool: &str, args: &[&str], path: &Path) -> String {
        let output = Command::new(tool).args(args).arg(path).output().unwrap_or_else(|e| {
            panic!("cannot run {tool} ({e}): run `bash scripts/setup.sh --test` to install libevtx-utils")
        });
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{tool} failed: {}\n{stdout}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    /// libevtx (Debian's libevtx-utils, by the author of the format document that this
    /// writer follows): evtxinfo checks the file header, both CRC32s of every chunk and the
    /// record sequence, and says "Is corrupted" when one fails; evtxexport renders XML.
    #[test]
    fn libevtx_reads_what_we_wrote() {
        // libevtx 20181227 decodes a UTF-16 surrogate pair wrongly (U+1F600 comes out as
        // U+1F201), so its events keep to the Basic Multilingual Plane.
        let mut events = awkward_events();
        for event in &mut events {
            for (_, value) in &mut event.data {
                *value = value.replace('\u{1F600}', "\u{263A}");
            }
        }
        let next_id = events.len() as u64 + 1;
        events.extend(many_events(1500, next_id));
        let log = TempLog::new("libevtx", &events);

        let info = libevtx_tool("evtxinfo", &[], &log.path());
        assert!(info.contains("Version\t\t\t\t: 3.1"), "{info}");
        assert!(
            info.contains(&format!("Number of records\t\t: {}", events.len())),
            "{info}"
        );
        assert!(
            !info.contains("corrupted"),
            "libevtx finds the log corrupted:\n{info}"
        );

        let xml = libevtx_tool("evtxexport", &["-f", "xml"], &log.path());
        let documents: Vec<&str> = xml
            .split("<Event ")
            .skip(1)
            .map(|rest| rest.split_once("</Event>").map_or(rest, |(event, _)| event))
            .collect();
        assert_eq!(documents.len(), events.len());
        for ((document, event), id) in documents.iter().zip(&events).zip(expected_ids(&events)) {
            let rendered = parse_rendered(&format!("<Event {document}</Event>"));
            assert_record_matches(&rendered, event, id, "libevtx");
            let time = &rendered.system["TimeCreated@SystemTime"];
            assert_eq!(
                parse_time_ns(time),
                i128::from(event.time_ns),
                "libevtx time {time}"
            );
        }
    }

    #[test]
    fn python_evtx_reads_what_we_wrote() {
        let mut events = awkward_events();
        let next_id = events.len() as u64 + 1;
        events.extend(many_events(1500, next_id).into_iter().map(|mut e| {
            e.time_ns += 10_000_000_000;
            e
        }));
        let ids = expected_ids(&events);
        let log = TempLog::new("python", &events);
        let lines = python_evtx(&log.path());

        let header = &lines[0];
        assert_eq!(
            header["header_ok"], true,
            "python-evtx: file header (magic, 3.1, CRC32)"
        );
        assert_eq!(header["dirty"], false);
        assert_eq!(header["full"], false);
        assert_eq!(header["next"], ids.last().expect("events") + 1);
        let chunks: Vec<_> = lines
            .iter()
            .filter(|l| l.get("chunk_ok").is_some())
            .collect();
        assert_eq!(Some(chunks.len() as u64), header["chunks"].as_u64());
        assert!(chunks.len() >= 2, "several chunks");
        assert!(
            chunks.iter().all(|c| c["chunk_ok"] == true),
            "python-evtx: chunk magic and CRC32s"
        );

        let records: Vec<_> = lines.iter().filter(|l| l.get("xml").is_some()).collect();
        assert_eq!(records.len(), events.len());
        for ((record, event), id) in records.iter().zip(&events).zip(&ids) {
            assert_eq!(record["id"], *id);
            assert_eq!(record["size_ok"], true);
            let rendered = parse_rendered(record["xml"].as_str().expect("xml"));
            assert_record_matches(&rendered, event, *id, "python-evtx");
            // python-evtx turns FILETIME into seconds as a float, then into microseconds:
            // a µs or two off at today's dates.
            for time in [
                record["time"].as_str().expect("time"),
                &rendered.system["TimeCreated@SystemTime"],
            ] {
                let error = parse_time_ns(time) - i128::from(event.time_ns);
                assert!(
                    error.abs() <= 2_000,
                    "python-evtx time {time} is {error} ns off"
                );
            }
        }
    }
}
