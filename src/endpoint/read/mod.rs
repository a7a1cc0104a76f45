//! Readers of the files `egresswatch replay --endpoint-events FILE` takes: Sysmon events from
//! Windows event logs (EVTX), the JSON lines of Winlogbeat, Elastic Agent and Splunk's
//! export, Windows event XML, and Sysmon for Linux's syslog output; plain or gzip.
//!
//! The format is told by the content, never the name: the EVTX magic `ElfFile\0`; else text
//! (UTF-8, or UTF-16LE with its byte-order mark as PowerShell redirects `wevtutil`),
//! classified by its first non-empty lines:
//! - a JSON object: Winlogbeat (`winlog.event_data`), Elastic Agent (`winlog` beside the ECS
//!   groups the pipeline fills), Splunk export (`result._raw`, or `_raw`) -- see [`json`];
//! - an XML event (`<Event ...>`, `<?xml`, a saved log's `<Events>`): one or many events per
//!   line or spread over lines, as `wevtutil qe /f:xml` and Splunk's XmlWinEventLog write;
//! - a syslog line (RFC 3164, rsyslog's RFC 3339 files, RFC 5424) -- see [`syslog`].
//!
//! Bad input never stops a file: a line or record that cannot be read is counted in
//! [`ReadCounters::malformed`] and reported as a [`Problem`] naming the file and the line,
//! record or byte (the first [`MAX_PROBLEMS`] of a file; the rest are only counted). Memory is
//! bounded: a line or event longer than [`MAX_LINE_BYTES`] is skipped, never buffered whole.
// Hostile files: a panic here would stop the replay.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]
mod evtx_file;
mod json;
mod syslog;
#[cfg(test)]
mod tests;
mod utf16;
mod xml;

use crate::endpoint::SysmonEvent;
use flate2::read::MultiGzDecoder;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Cursor, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The input formats, as detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InputFormat {
    /// A Windows event log file (`.evtx`).
    Evtx,
    /// Winlogbeat's JSON lines (`winlog.event_data` holds the Sysmon fields).
    WinlogbeatJson,
    /// Elastic Agent's Windows integration, as indexed (ECS fields).
    ElasticEcsJson,
    /// Splunk's search export, `_raw` rendered by `XmlWinEventLog`.
    SplunkJson,
    /// Windows event XML (`wevtutil qe /f:xml`, a saved log, Splunk raw events).
    SysmonXml,
    /// Sysmon for Linux's events in syslog lines.
    LinuxSyslog,
}

impl InputFormat {
    pub fn name(self) -> &'static str {
        match self {
            InputFormat::Evtx => "EVTX",
            InputFormat::WinlogbeatJson => "Winlogbeat JSON",
            InputFormat::ElasticEcsJson => "Elastic Agent (ECS) JSON",
            InputFormat::SplunkJson => "Splunk export JSON",
            InputFormat::SysmonXml => "Windows event XML",
            InputFormat::LinuxSyslog => "Sysmon for Linux syslog",
        }
    }
}

impl std::fmt::Display for InputFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the readers saw, summed over the files read with the same counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadCounters {
    /// Sysmon events delivered.
    pub events: u64,
    /// Well-formed events of other providers (an EVTX of the Security log, Winlogbeat's other
    /// channels) and syslog lines of other programs.
    pub not_sysmon: u64,
    /// Lines, events or records that could not be read (each one a [`Problem`], kept or not).
    pub malformed: u64,
    /// Well-formed lines that hold no event a reader knows: JSON without `winlog` or `_raw`,
    /// Splunk's non-XML renderings. The first of a file is also a [`Problem`].
    pub unsupported_lines: u64,
    /// Lines or XML events over [`MAX_LINE_BYTES`], skipped (also in `malformed`).
    pub oversized: u64,
    /// Problems counted but not kept, past [`MAX_PROBLEMS`] in a file.
    pub problems_dropped: u64,
}

/// Where in a file a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// Byte offset in the file (EVTX chunks and records the crate could not place by id).
    Byte(u64),
    /// Line number, from 1 (in the decompressed text of a gzip file).
    Line(u64),
    /// EVTX EventRecordID.
    Record(u64),
    /// The file as a whole (an EVTX error the crate did not place).
    File,
}

/// Something in a file that could not be read; the rest of the file was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub at: Location,
    pub reason: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let file = self.file.display();
        match self.at {
            Location::Byte(n) => write!(f, "{file}: byte {n}: {}", self.reason),
            Location::Line(n) => write!(f, "{file}: line {n}: {}", self.reason),
            Location::Record(n) => write!(f, "{file}: record {n}: {}", self.reason),
            Location::File => write!(f, "{file}: {}", self.reason),
        }
    }
}

/// Why a file could not be read at all (or stopped being readable).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{}: cannot open: {source}", file.display())]
    Open { file: PathBuf, source: io::Error },
    #[error("{}: empty file", file.display())]
    Empty { file: PathBuf },
    #[error(
        "{}: not a Sysmon event file this reader knows ({detail}); expected EVTX, JSON lines \
         (Winlogbeat, Elastic Agent, Splunk export), Windows event XML or Sysmon for Linux syslog",
        file.display()
    )]
    UnknownFormat { file: PathBuf, detail: String },
    /// Reading stopped (a corrupt gzip stream, a disk error); what came before was delivered.
    #[error("{}: read error after line {line}: {source}", file.display())]
    Read {
        file: PathBuf,
        line: u64,
        source: io::Error,
    },
    #[error("{}: not a readable EVTX file: {reason}", file.display())]
    Evtx { file: PathBuf, reason: String },
    #[error(
        "{}: the gzip-compressed EVTX file is larger than {} MiB uncompressed; decompress it first",
        file.display(), MAX_GZIP_EVTX_BYTES >> 20
    )]
    GzipEvtxTooLarge { file: PathBuf },
}

/// A line (or one XML event) longer than this is skipped: a Sysmon event is a few KiB, and
/// its longest field (a command line of 32767 UTF-16 units) stays well below it even
/// JSON-escaped. Without a limit, a file with no newlines would be buffered whole.
pub const MAX_LINE_BYTES: usize = 1 << 20;
/// Problems kept per file: enough to see what is wrong, bounded however broken the file.
pub const MAX_PROBLEMS: usize = 100;
/// A gzip-compressed EVTX file is decompressed into memory (the crate seeks); Windows' own
/// maximum log size is far below this.
pub const MAX_GZIP_EVTX_BYTES: u64 = 1 << 30;
/// Non-empty lines looked at to tell the format (a syslog file may start with other
/// programs' lines, a Splunk export with a message line).
const SNIFF_LINES: usize = 20;
/// Bytes looked at to tell the format: at least one whole line of the longest kind.
const SNIFF_BYTES: u64 = 2 * MAX_LINE_BYTES as u64;
/// Bytes taken from the input at a time when splitting XML events.
const XML_STEP_BYTES: usize = 64 << 10;

const EVTX_MAGIC: &[u8; 8] = b"ElfFile\0";
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const UTF16LE_BOM: [u8; 2] = [0xff, 0xfe];
const UTF8_BOM: [u8; 3] = [0xef, 0xbb, 0xbf];

/// What one line, event or record held.
#[derive(Debug)]
enum Outcome {
    Event(SysmonEvent),
    NotSysmon,
    Unsupported(String),
    Malformed(String),
}

/// Where the readers deliver events, count and report.
struct Sink<'a> {
    file: &'a Path,
    counters: &'a mut ReadCounters,
    problems: &'a mut Vec<Problem>,
    each: &'a mut dyn FnMut(SysmonEvent),
    kept: usize,
    told_unsupported: bool,
}

impl Sink<'_> {
    fn outcome(&mut self, at: Location, outcome: Outcome) {
        match outcome {
            Outcome::Event(event) => {
                self.counters.events += 1;
                (self.each)(event);
            }
            Outcome::NotSysmon => self.counters.not_sysmon += 1,
            Outcome::Unsupported(reason) => {
                self.counters.unsupported_lines += 1;
                if !self.told_unsupported {
                    self.told_unsupported = true;
                    self.keep(
                        at,
                        format!("{reason} (such lines are skipped and only counted)"),
                    );
                }
            }
            Outcome::Malformed(reason) => self.malformed(at, reason),
        }
    }

    fn malformed(&mut self, at: Location, reason: String) {
        self.counters.malformed += 1;
        self.keep(at, reason);
    }

    fn oversized(&mut self, at: Location, what: &str) {
        self.counters.oversized += 1;
        self.malformed(
            at,
            format!("{what} longer than {MAX_LINE_BYTES} bytes, skipped"),
        );
    }

    fn keep(&mut self, at: Location, reason: String) {
        if self.kept < MAX_PROBLEMS {
            self.kept += 1;
            self.problems.push(Problem {
                file: self.file.to_path_buf(),
                at,
                reason,
            });
        } else {
            self.counters.problems_dropped += 1;
        }
    }

    fn read_error(&self, line: u64, source: io::Error) -> ReadError {
        ReadError::Read {
            file: self.file.to_path_buf(),
            line,
            source,
        }
    }
}

/// Reads the Sysmon events of a file, calling `each` for every one in file order, and
/// returns the format it found. Lines and records that cannot be read are counted and
/// reported in `problems`; the read goes on. Err: the file cannot be opened, is empty, is in
/// no format this reader knows, or could not be read on (events before were delivered).
pub fn read_events(
    path: &Path,
    counters: &mut ReadCounters,
    problems: &mut Vec<Problem>,
    each: &mut dyn FnMut(SysmonEvent),
) -> Result<InputFormat, ReadError> {
    let mut file = File::open(path).map_err(|source| ReadError::Open {
        file: path.to_path_buf(),
        source,
    })?;
    let mut sink = Sink {
        file: path,
        counters,
        problems,
        each,
        kept: 0,
        told_unsupported: false,
    };
    let head = read_head(&mut file).map_err(|e| sink.read_error(0, e))?;
    if head.starts_with(EVTX_MAGIC) {
        let size = file.metadata().map_err(|e| sink.read_error(0, e))?.len();
        file.seek(SeekFrom::Start(0))
            .map_err(|e| sink.read_error(0, e))?;
        return read_evtx(Box::new(file), size, &mut sink);
    }
    let rest = Cursor::new(head).chain(BufReader::new(file));
    read_unpacked(Box::new(rest), &mut sink)
}

/// [`read_events`] on the bytes of a file (`name` only names it in problems and errors).
pub fn read_bytes(
    name: &Path,
    bytes: &[u8],
    counters: &mut ReadCounters,
    problems: &mut Vec<Problem>,
    each: &mut dyn FnMut(SysmonEvent),
) -> Result<InputFormat, ReadError> {
    let mut sink = Sink {
        file: name,
        counters,
        problems,
        each,
        kept: 0,
        told_unsupported: false,
    };
    if bytes.starts_with(EVTX_MAGIC) {
        return read_evtx(Box::new(Cursor::new(bytes)), bytes.len() as u64, &mut sink);
    }
    read_unpacked(Box::new(bytes), &mut sink)
}

/// Up to the first 8 bytes, enough for every magic.
fn read_head(reader: &mut dyn Read) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(EVTX_MAGIC.len());
    reader
        .take(EVTX_MAGIC.len() as u64)
        .read_to_end(&mut head)?;
    Ok(head)
}

fn read_evtx(
    input: Box<dyn evtx_file::Input + '_>,
    size: u64,
    sink: &mut Sink<'_>,
) -> Result<InputFormat, ReadError> {
    evtx_file::read(input, size, sink).map_err(|reason| ReadError::Evtx {
        file: sink.file.to_path_buf(),
        reason,
    })?;
    Ok(InputFormat::Evtx)
}

/// A stream that is not an uncompressed EVTX file: gzip (of EVTX or text), or text.
fn read_unpacked(
    mut input: Box<dyn BufRead + '_>,
    sink: &mut Sink<'_>,
) -> Result<InputFormat, ReadError> {
    // The callers' first buffer holds the first 8 bytes of the file (or all of it).
    let first = input.fill_buf().map_err(|e| sink.read_error(0, e))?;
    if first.is_empty() {
        return Err(ReadError::Empty {
            file: sink.file.to_path_buf(),
        });
    }
    if !first.starts_with(&GZIP_MAGIC) {
        return read_text(input, sink);
    }
    let mut gunzip = BufReader::new(MultiGzDecoder::new(input));
    let head = read_head(&mut gunzip).map_err(|e| sink.read_error(0, e))?;
    if head.is_empty() {
        return Err(ReadError::Empty {
            file: sink.file.to_path_buf(),
        });
    }
    if head.starts_with(EVTX_MAGIC) {
        let mut whole = head;
        gunzip
            .take(MAX_GZIP_EVTX_BYTES)
            .read_to_end(&mut whole)
            .map_err(|e| sink.read_error(0, e))?;
        if whole.len() as u64 >= MAX_GZIP_EVTX_BYTES {
            return Err(ReadError::GzipEvtxTooLarge {
                file: sink.file.to_path_buf(),
            });
        }
        let size = whole.len() as u64;
        return read_evtx(Box::new(Cursor::new(whole)), size, sink);
    }
    read_text(Box::new(Cursor::new(head).chain(gunzip)), sink)
}

/// Text: tells the format from its start, then reads it line by line (XML event by event).
fn read_text(
    mut input: Box<dyn BufRead + '_>,
    sink: &mut Sink<'_>,
) -> Result<InputFormat, ReadError> {
    if input
        .fill_buf()
        .map_err(|e| sink.read_error(0, e))?
        .starts_with(&UTF16LE_BOM)
    {
        input = Box::new(BufReader::new(utf16::Utf16LeToUtf8::new(input)));
    }
    let mut head = Vec::new();
    (&mut input)
        .take(SNIFF_BYTES)
        .read_to_end(&mut head)
        .map_err(|e| sink.read_error(0, e))?;
    let whole = (head.len() as u64) < SNIFF_BYTES;
    let format = sniff(&head, whole).map_err(|detail| ReadError::UnknownFormat {
        file: sink.file.to_path_buf(),
        detail,
    })?;
    let mut all = Cursor::new(head).chain(input);
    match format {
        InputFormat::SysmonXml => read_xml_stream(&mut all, sink)?,
        _ => read_lines(&mut all, format, sink)?,
    }
    Ok(format)
}

/// What a line says about the format.
enum Sniffed {
    Format(InputFormat),
    /// Not a line of any format; look at the next.
    Unknown,
    /// Cannot tell without more than the sniffed bytes.
    Stop,
}

fn without_bom(line: &[u8]) -> &[u8] {
    line.strip_prefix(&UTF8_BOM).unwrap_or(line)
}

/// An element name longer than this is no `Event` (bounds the scan at every `<`).
const NAME_MAX: usize = 64;

/// The element name at the start of `text` (after `<`), if it ends within [`NAME_MAX`].
fn tag_name(text: &[u8]) -> Option<&[u8]> {
    let rest = text.strip_prefix(b"<")?;
    let head = rest.get(..NAME_MAX + 1).unwrap_or(rest);
    let end = head
        .iter()
        .position(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'>' | b'/'))
        .unwrap_or(head.len());
    head.get(..end).filter(|name| name.len() <= NAME_MAX)
}

/// The local part of a possibly prefixed name (`e:Event` -> `Event`).
fn local_name(name: &[u8]) -> &[u8] {
    name.rsplit(|&b| b == b':').next().unwrap_or_default()
}

/// Whether text starts with an XML declaration or an `Event`/`Events` element (any prefix).
fn starts_like_event_xml(text: &[u8]) -> bool {
    text.starts_with(b"<?xml")
        || tag_name(text).is_some_and(|name| matches!(local_name(name), b"Event" | b"Events"))
}

/// Whether text starts with an `Event` start tag (`<Event`, `<e:Event`).
fn starts_with_event_tag(text: &[u8]) -> bool {
    tag_name(text).is_some_and(|name| local_name(name) == b"Event")
}

fn sniff_line(line: &[u8], complete: bool) -> Sniffed {
    let line = without_bom(line).trim_ascii();
    match line.first() {
        None => Sniffed::Unknown,
        Some(b'{') if !complete => Sniffed::Stop,
        Some(b'{') => {
            let parsed = std::str::from_utf8(line)
                .ok()
                .and_then(|text| json::Json::parse(text).ok())
                .and_then(|doc| json::classify(&doc));
            parsed.map_or(Sniffed::Unknown, Sniffed::Format)
        }
        Some(b'<') if starts_like_event_xml(line) => Sniffed::Format(InputFormat::SysmonXml),
        Some(_) => {
            // A line cut by the sniff window may end inside a character; its start decides.
            let text = match std::str::from_utf8(line) {
                Ok(text) => text,
                Err(e) => std::str::from_utf8(line.get(..e.valid_up_to()).unwrap_or_default())
                    .unwrap_or_default(),
            };
            if syslog::split(text).is_ok() {
                Sniffed::Format(InputFormat::LinuxSyslog)
            } else {
                Sniffed::Unknown
            }
        }
    }
}

/// The format of text that starts with `head` (`whole`: the text is no longer).
fn sniff(head: &[u8], whole: bool) -> Result<InputFormat, String> {
    let mut lines = head.split(|&b| b == b'\n').peekable();
    let mut looked = 0;
    let mut first: Option<&[u8]> = None;
    while let Some(line) = lines.next() {
        let complete = whole || lines.peek().is_some();
        if without_bom(line).trim_ascii().is_empty() {
            continue;
        }
        first.get_or_insert(line);
        match sniff_line(line, complete) {
            Sniffed::Format(format) => return Ok(format),
            Sniffed::Stop => break,
            Sniffed::Unknown => {}
        }
        looked += 1;
        if looked == SNIFF_LINES {
            break;
        }
    }
    Err(match first {
        None => "only blank lines".to_string(),
        Some(line) => {
            let line = String::from_utf8_lossy(without_bom(line).trim_ascii());
            let start: String = line.chars().take(60).collect();
            format!("the first non-empty line starts {start:?}")
        }
    })
}

/// Reads one line into `buf` (without its `\n`), keeping at most [`MAX_LINE_BYTES`].
/// None at the end of input, else whether the line was longer and cut.
fn read_line(reader: &mut dyn BufRead, buf: &mut Vec<u8>) -> io::Result<Option<bool>> {
    buf.clear();
    let mut any = false;
    let mut cut = false;
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
        let line_part = newline.and_then(|n| chunk.get(..n)).unwrap_or(chunk);
        let room = MAX_LINE_BYTES.saturating_sub(buf.len());
        cut |= line_part.len() > room;
        buf.extend_from_slice(line_part.get(..room).unwrap_or(line_part));
        let used = newline.map_or(chunk.len(), |n| n + 1);
        reader.consume(used);
        if newline.is_some() {
            return Ok(Some(cut));
        }
    }
}

/// An event given as text: XML, or a syslog line whose message is one (Splunk `_raw` can be
/// either; syslog files hold the second).
fn text_event(text: &str) -> Outcome {
    let text = text.trim();
    if starts_like_event_xml(text.as_bytes()) {
        return xml::parse_event(text);
    }
    let line = match syslog::split(text) {
        Ok(line) => line,
        Err(reason) => return Outcome::Malformed(reason),
    };
    let message = line.message.trim();
    // Other programs log to the same file.
    if !starts_like_event_xml(message.as_bytes()) {
        return Outcome::NotSysmon;
    }
    match xml::parse_event(message) {
        Outcome::Event(mut event) => {
            event.host = line.host.map(str::to_string);
            Outcome::Event(event)
        }
        other => other,
    }
}

/// JSON lines and syslog lines.
fn read_lines(
    reader: &mut dyn BufRead,
    format: InputFormat,
    sink: &mut Sink<'_>,
) -> Result<(), ReadError> {
    let mut buf = Vec::new();
    let mut number = 0u64;
    while let Some(cut) = read_line(reader, &mut buf).map_err(|e| sink.read_error(number, e))? {
        number += 1;
        let at = Location::Line(number);
        if cut {
            sink.oversized(at, "line");
            continue;
        }
        let Ok(text) = std::str::from_utf8(without_bom(&buf)) else {
            sink.malformed(at, "not UTF-8 text".to_string());
            continue;
        };
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let outcome = match format {
            InputFormat::LinuxSyslog => text_event(text),
            _ => match json::Json::parse(text) {
                Ok(doc) => json::outcome(&doc),
                Err(reason) => Outcome::Malformed(reason),
            },
        };
        sink.outcome(at, outcome);
    }
    Ok(())
}

/// The longest end tag looked for: `</` + a namespace prefix + `:Event>`.
const END_TAG_MAX: usize = 64;

/// The index just past the first `</Event>` (or `</prefix:Event>`) at or after `from`.
fn end_of_event(buf: &[u8], from: usize) -> Option<usize> {
    const NAME: &[u8] = b"Event>";
    let mut start = from;
    loop {
        let window = buf.get(start..)?;
        let at = start + window.windows(NAME.len()).position(|w| w == NAME)?;
        let before = buf.get(..at).unwrap_or_default();
        let before = match before.strip_suffix(b":") {
            Some(prefixed) => {
                let name_start = prefixed
                    .iter()
                    .rposition(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')))
                    .map_or(0, |i| i + 1);
                prefixed.get(..name_start).unwrap_or_default()
            }
            None => before,
        };
        if before.ends_with(b"</") {
            return Some(at + NAME.len());
        }
        start = at + 1;
    }
}

/// The line of the event's start tag in `bytes`, which begin at line `line`.
fn event_line(bytes: &[u8], line: u64) -> u64 {
    let start = (0..bytes.len())
        .find(|&i| bytes.get(i..).is_some_and(starts_with_event_tag))
        .or_else(|| bytes.iter().position(|b| !b.is_ascii_whitespace()))
        .unwrap_or(0);
    line + newlines(bytes.get(..start).unwrap_or_default())
}

fn newlines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

/// Whether what is left after the last event is only closing tags (`</Events>`) and space.
fn only_closing_tags(mut rest: &[u8]) -> bool {
    loop {
        rest = rest.trim_ascii_start();
        if rest.is_empty() {
            return true;
        }
        let Some(tag) = rest.strip_prefix(b"</") else {
            return false;
        };
        let Some(end) = tag.iter().position(|&b| b == b'>') else {
            return false;
        };
        rest = tag.get(end + 1..).unwrap_or_default();
    }
}

/// Windows event XML: events split at their end tags, however they sit on lines.
fn read_xml_stream(reader: &mut dyn BufRead, sink: &mut Sink<'_>) -> Result<(), ReadError> {
    let mut pending: Vec<u8> = Vec::new();
    // The line `pending` starts on, and how far it is known to hold no end tag.
    let mut line = 1u64;
    let mut searched = 0usize;
    // Dropping an oversized event up to its end tag.
    let mut skipping = false;
    loop {
        let chunk = match reader.fill_buf() {
            Ok(chunk) => chunk,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(sink.read_error(line, e)),
        };
        if chunk.is_empty() {
            break;
        }
        let step = chunk.len().min(XML_STEP_BYTES);
        pending.extend_from_slice(chunk.get(..step).unwrap_or(chunk));
        reader.consume(step);
        // Events are taken from `begin` on and drained once per step: hostile input with
        // thousands of tiny events per step must not cost a move of the buffer each.
        let mut begin = 0;
        while let Some(end) = end_of_event(&pending, begin + searched) {
            let event = pending.get(begin..end).unwrap_or_default();
            if skipping {
                skipping = false;
            } else {
                let at = Location::Line(event_line(event, line));
                let outcome = match std::str::from_utf8(without_bom(event)) {
                    Ok(text) => xml::parse_event(text),
                    Err(_) => Outcome::Malformed("not UTF-8 text".to_string()),
                };
                sink.outcome(at, outcome);
            }
            line += newlines(event);
            begin = end;
            searched = 0;
        }
        pending.drain(..begin);
        searched = pending.len().saturating_sub(END_TAG_MAX);
        if pending.len() > MAX_LINE_BYTES {
            if !skipping {
                sink.oversized(Location::Line(event_line(&pending, line)), "XML event");
                skipping = true;
            }
            // Keep what could be the start of the end tag.
            let drop = pending.len() - END_TAG_MAX;
            line += newlines(pending.get(..drop).unwrap_or_default());
            pending.drain(..drop);
            searched = 0;
        }
    }
    if !skipping && !only_closing_tags(&pending) {
        let at = Location::Line(event_line(&pending, line));
        let reason =
            if (0..pending.len()).any(|i| pending.get(i..).is_some_and(starts_with_event_tag)) {
                "event cut short at the end of the file"
            } else {
                "text outside an event"
            };
        sink.malformed(at, reason.to_string());
    }
    Ok(())
}
