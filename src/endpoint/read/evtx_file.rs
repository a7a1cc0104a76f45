//! Windows event log files (EVTX), through the `evtx` crate: each record rendered to XML and
//! read by [`super::xml`] like every other XML input. A chunk or record the crate cannot
//! read is a problem at its place (the record's id, or the chunk's byte offset); the rest of
//! the file is still read, as the crate resumes at the next record or chunk.
use super::{Location, Sink, xml};
use ::evtx::err::EvtxError;
use ::evtx::{EvtxParser, ParserSettings};
use std::io::{Read, Seek};

/// The file header block and chunk size of the format (libyal's EVTX documentation).
const FILE_HEADER_BYTES: u64 = 4096;
const CHUNK_BYTES: u64 = 65536;

/// What the crate needs from its input; boxed so one code path reads files and buffers.
pub(super) trait Input: Read + Seek {}
impl<T: Read + Seek> Input for T {}

/// Where an error of the crate lies in the file.
fn location(error: &EvtxError) -> Location {
    let chunk_start = |chunk: u64| {
        chunk
            .saturating_mul(CHUNK_BYTES)
            .saturating_add(FILE_HEADER_BYTES)
    };
    match error {
        EvtxError::FailedToParseChunk { chunk_id, .. } => Location::Byte(chunk_start(*chunk_id)),
        EvtxError::FailedToParseRecord { record_id, .. } => Location::Record(*record_id),
        EvtxError::FailedToReadRecordAt {
            chunk: Some(chunk),
            offset,
            ..
        } => Location::Byte(chunk_start(*chunk).saturating_add(*offset)),
        _ => Location::File,
    }
}

/// An error with its causes: the crate's outer messages alone ("Failed to parse chunk
/// number 3") do not say what was wrong.
pub(super) fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Reads every record of an EVTX file of `size` bytes. Err: the file header is unreadable.
pub(super) fn read(
    input: Box<dyn Input + '_>,
    size: u64,
    sink: &mut Sink<'_>,
) -> Result<(), String> {
    let parser = EvtxParser::from_read_seek(input).map_err(|e| describe(&e))?;
    // One thread (the crate's pool is off), unindented XML: only our parser reads it.
    let mut parser = parser.with_configuration(ParserSettings::new().indent(false));
    for record in parser.records() {
        match record {
            Ok(record) => {
                let at = Location::Record(record.event_record_id);
                sink.outcome(at, xml::parse_event(&record.data));
            }
            Err(error) => sink.malformed(location(&error), describe(&error)),
        }
    }
    // The crate walks whole chunks only; a file cut inside its last chunk loses that
    // chunk's records without an error of its own.
    let tail = size.saturating_sub(FILE_HEADER_BYTES) % CHUNK_BYTES;
    if size > FILE_HEADER_BYTES && tail != 0 {
        sink.malformed(
            Location::Byte(size - tail),
            format!(
                "incomplete chunk of {tail} bytes at the end of the file: its records are not read"
            ),
        );
    }
    Ok(())
}
