//! One event as Windows renders it in XML (the Event schema,
//! `http://schemas.microsoft.com/win/2004/08/events/event`): EVTX records rendered by the
//! `evtx` crate, Splunk's `XmlWinEventLog` `_raw`, `wevtutil qe /f:xml`, and the message of
//! Sysmon for Linux's syslog lines (the same schema without a namespace).
//!
//! Read: `System/Provider/@Name` (which decides the platform; other providers are not
//! Sysmon), `System/EventID`, `System/TimeCreated/@SystemTime`, `System/EventRecordID`,
//! `System/Computer`, and every `EventData/Data` with a `Name`, in document order, its text
//! entity-decoded and otherwise as written (no trimming, no end-of-line normalisation, so a
//! value reads the same as in the JSON shippers). Element and attribute names match by local
//! name, so a namespace prefix (`<e:Event>`) changes nothing; elements the reader does not
//! know (`UserData`, `RenderingInfo`, ...) are skipped.
use super::Outcome;
use crate::endpoint::{Platform, SysmonEvent};
use quick_xml::Reader;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesStart, Event};

/// Real events nest four deep (`Event/EventData/Data`, `Event/UserData/x/y`); deeper input
/// is not an event and must not grow the element stack.
const MAX_DEPTH: usize = 32;

/// What an open element is, as far as the reader cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    /// An element around the event (`<Events>` of a saved log), or before it.
    Outside,
    Event,
    System,
    EventData,
    EventId,
    RecordId,
    Computer,
    /// The `Data` element at this index of `data`.
    Data(usize),
    Other,
}

#[derive(Default)]
struct Fields {
    provider: Option<String>,
    event_id: String,
    time: Option<String>,
    record_id: Option<String>,
    computer: String,
    data: Vec<(String, String)>,
}

impl Fields {
    fn text_of(&mut self, tag: Tag) -> Option<&mut String> {
        match tag {
            Tag::EventId => Some(&mut self.event_id),
            Tag::RecordId => Some(self.record_id.get_or_insert_with(String::new)),
            Tag::Computer => Some(&mut self.computer),
            Tag::Data(i) => self.data.get_mut(i).map(|(_, value)| value),
            _ => None,
        }
    }
}

/// The value of the attribute with this local name, entity-decoded.
fn attribute(
    element: &BytesStart<'_>,
    reader: &Reader<&[u8]>,
    name: &[u8],
) -> Result<Option<String>, String> {
    for attr in element.attributes() {
        let attr = attr.map_err(|e| format!("XML attribute: {e}"))?;
        if attr.key.local_name().as_ref() == name {
            let value = attr
                .decode_and_unescape_value(reader.decoder())
                .map_err(|e| format!("XML attribute: {e}"))?;
            return Ok(Some(value.into_owned()));
        }
    }
    Ok(None)
}

/// The tag of an element opened inside `parent`, reading the attributes it carries.
fn open(
    parent: Tag,
    element: &BytesStart<'_>,
    reader: &Reader<&[u8]>,
    fields: &mut Fields,
) -> Result<Tag, String> {
    let name = element.local_name();
    let name = name.as_ref();
    Ok(match (parent, name) {
        (Tag::Outside, b"Event") => Tag::Event,
        (Tag::Outside, _) => Tag::Outside,
        (Tag::Event, b"System") => Tag::System,
        (Tag::Event, b"EventData") => Tag::EventData,
        (Tag::System, b"Provider") => {
            fields.provider = attribute(element, reader, b"Name")?;
            Tag::Other
        }
        (Tag::System, b"TimeCreated") => {
            fields.time = attribute(element, reader, b"SystemTime")?;
            Tag::Other
        }
        (Tag::System, b"EventID") => Tag::EventId,
        (Tag::System, b"EventRecordID") => Tag::RecordId,
        (Tag::System, b"Computer") => Tag::Computer,
        (Tag::EventData, b"Data") => match attribute(element, reader, b"Name")? {
            Some(name) => {
                fields.data.push((name, String::new()));
                Tag::Data(fields.data.len() - 1)
            }
            // Sysmon names every field; an unnamed one means nothing to detection.
            None => Tag::Other,
        },
        _ => Tag::Other,
    })
}

/// Reads the first `Event` element of `xml`; anything after its end is ignored.
pub(super) fn parse_event(xml: &str) -> Outcome {
    match read_fields(xml) {
        Ok(fields) => build(fields),
        Err(reason) => Outcome::Malformed(reason),
    }
}

fn read_fields(xml: &str) -> Result<Fields, String> {
    let mut reader = Reader::from_str(xml);
    let mut fields = Fields::default();
    let mut stack: Vec<Tag> = Vec::new();
    let mut seen_event = false;
    loop {
        let event = reader.read_event().map_err(|e| {
            format!(
                "XML error at byte {} of the event: {e}",
                reader.error_position()
            )
        })?;
        let top = stack.last().copied().unwrap_or(Tag::Outside);
        match event {
            Event::Start(element) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(format!("XML nested deeper than {MAX_DEPTH} elements"));
                }
                let tag = open(top, &element, &reader, &mut fields)?;
                seen_event |= tag == Tag::Event;
                stack.push(tag);
            }
            Event::Empty(element) => {
                if open(top, &element, &reader, &mut fields)? == Tag::Event {
                    return Err("empty <Event/> element".to_string());
                }
            }
            Event::End(_) => {
                if stack.pop() == Some(Tag::Event) {
                    break;
                }
            }
            Event::Text(text) => {
                if let Some(out) = fields.text_of(top) {
                    let text = text.decode().map_err(|e| format!("XML text: {e}"))?;
                    out.push_str(&text);
                }
            }
            Event::CData(text) => {
                if let Some(out) = fields.text_of(top) {
                    let text = text.decode().map_err(|e| format!("XML CDATA: {e}"))?;
                    out.push_str(&text);
                }
            }
            Event::GeneralRef(reference) => {
                if let Some(out) = fields.text_of(top) {
                    let name = reference
                        .decode()
                        .map_err(|e| format!("XML reference: {e}"))?;
                    match reference.resolve_char_ref() {
                        Ok(Some(c)) => out.push(c),
                        Ok(None) => match resolve_predefined_entity(&name) {
                            Some(text) => out.push_str(text),
                            None => return Err(format!("unknown XML entity &{name};")),
                        },
                        Err(e) => return Err(format!("XML character reference &{name};: {e}")),
                    }
                }
            }
            Event::Eof => {
                return Err(if seen_event {
                    "truncated event: no </Event>".to_string()
                } else {
                    "no <Event> element".to_string()
                });
            }
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    Ok(fields)
}

fn build(fields: Fields) -> Outcome {
    let Some(provider) = fields.provider else {
        return Outcome::Malformed("no System/Provider Name".to_string());
    };
    let Some(platform) = Platform::from_provider(provider.trim()) else {
        return Outcome::NotSysmon;
    };
    let event_id = fields.event_id.trim();
    let Ok(event_id) = event_id.parse::<u16>() else {
        return Outcome::Malformed(format!("EventID {event_id:?} is not a number 0..65535"));
    };
    let Some(time) = fields.time else {
        return Outcome::Malformed("no System/TimeCreated SystemTime".to_string());
    };
    let time_ns = match parse_time(&time) {
        Ok(ns) => ns,
        Err(reason) => return Outcome::Malformed(format!("TimeCreated SystemTime: {reason}")),
    };
    let record_id = match fields.record_id.as_deref().map(str::trim) {
        None => None,
        Some(text) => match text.parse::<u64>() {
            Ok(id) => Some(id),
            Err(_) => {
                return Outcome::Malformed(format!("EventRecordID {text:?} is not a number"));
            }
        },
    };
    Outcome::Event(SysmonEvent {
        platform,
        event_id,
        time_ns,
        computer: fields.computer.trim().to_string(),
        record_id,
        host: None,
        data: fields.data,
    })
}

/// Nanoseconds since the epoch of an RFC 3339 time: Windows writes 7 fractional digits
/// (`2026-03-02T09:00:00.1234567Z`), Sysmon for Linux 9 (`...00.123456000Z`), the shippers 3.
pub(super) fn parse_time(text: &str) -> Result<u64, String> {
    let time = chrono::DateTime::parse_from_rfc3339(text.trim())
        .map_err(|e| format!("{text:?} is not an RFC 3339 time ({e})"))?;
    time.timestamp_nanos_opt()
        .and_then(|ns| u64::try_from(ns).ok())
        .ok_or_else(|| format!("{text:?} is outside 1970..2554"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(xml: &str) -> SysmonEvent {
        match parse_event(xml) {
            Outcome::Event(event) => event,
            other => panic!("not an event: {other:?}"),
        }
    }

    fn malformed(xml: &str) -> String {
        match parse_event(xml) {
            Outcome::Malformed(reason) => reason,
            other => panic!("not malformed: {other:?}"),
        }
    }

    #[test]
    fn times_with_any_precision() {
        // 2026-03-02T09:00:00Z is 1772442000 s after the epoch.
        let base = 1_772_442_000_000_000_000u64;
        assert_eq!(parse_time("2026-03-02T09:00:00Z"), Ok(base));
        assert_eq!(
            parse_time("2026-03-02T09:00:00.1234567Z"),
            Ok(base + 123_456_700)
        );
        assert_eq!(
            parse_time("2026-03-02T09:00:00.123456789Z"),
            Ok(base + 123_456_789)
        );
        assert_eq!(
            parse_time("2026-03-02T10:00:00.5+01:00"),
            Ok(base + 500_000_000)
        );
        assert!(parse_time("1969-12-31T23:59:59Z").is_err());
        assert!(parse_time("2026-03-02 09:00").is_err());
        assert!(parse_time("").is_err());
    }

    #[test]
    fn prefixed_names_and_entities() {
        let xml = "<?xml version='1.0'?><Events><e:Event xmlns:e='http://schemas.microsoft.com/win/2004/08/events/event'>\
            <e:System><e:Provider e:Name='Microsoft-Windows-Sysmon'/><e:EventID Qualifiers=''>1</e:EventID>\
            <e:TimeCreated SystemTime=\"2026-03-02T09:00:00.0000000Z\"/><e:EventRecordID> 7 </e:EventRecordID>\
            <e:Computer>PC</e:Computer></e:System><e:EventData>\
            <e:Data Name='CommandLine'>a &amp; &lt;b&gt; &#x41;&#66; <![CDATA[<c>]]></e:Data>\
            <e:Data Name='Empty'/><e:Data>unnamed</e:Data><e:Data Name='Dash'>-</e:Data>\
            </e:EventData></e:Event></Events>";
        let e = event(xml);
        assert_eq!(e.platform, Platform::Windows);
        assert_eq!((e.event_id, e.record_id), (1, Some(7)));
        assert_eq!(e.computer, "PC");
        assert_eq!(
            e.data,
            vec![
                ("CommandLine".to_string(), "a & <b> AB <c>".to_string()),
                ("Empty".to_string(), String::new()),
                ("Dash".to_string(), "-".to_string()),
            ]
        );
    }

    #[test]
    fn other_providers_are_not_sysmon_and_need_nothing_else() {
        let xml = "<Event><System><Provider Name='Microsoft-Windows-Security-Auditing'/></System></Event>";
        assert!(matches!(parse_event(xml), Outcome::NotSysmon));
    }

    #[test]
    fn what_is_wrong_is_said() {
        let head = "<Event><System><Provider Name='Linux-Sysmon'/>";
        let time = "<TimeCreated SystemTime='2026-03-02T09:00:00Z'/>";
        assert_eq!(malformed("just text"), "no <Event> element");
        assert_eq!(
            malformed(&format!("{head}<EventID>1</EventID>{time}")),
            "truncated event: no </Event>"
        );
        assert_eq!(
            malformed("<Event><System><EventID>1</EventID></System></Event>"),
            "no System/Provider Name"
        );
        assert!(
            malformed(&format!("{head}<EventID>x</EventID></System></Event>")).contains("\"x\"")
        );
        assert_eq!(
            malformed(&format!("{head}<EventID>1</EventID></System></Event>")),
            "no System/TimeCreated SystemTime"
        );
        assert!(
            malformed(&format!("{head}{time}<EventID>1</EventID></Sys></Event>"))
                .contains("XML error")
        );
        assert!(
            malformed(&format!(
                "{head}{time}<EventID>&bogus;</EventID></System></Event>"
            ))
            .contains("&bogus;")
        );
        assert!(
            malformed(&format!(
                "{head}{time}<EventID>1</EventID><EventRecordID>-3</EventRecordID></System></Event>"
            ))
            .starts_with("EventRecordID")
        );
        let deep = format!("<Event>{}", "<a>".repeat(100));
        assert!(malformed(&deep).contains("nested deeper"));
    }
}
