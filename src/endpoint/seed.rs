//! The seed search, reproduced (`replay --seed-search`): the Splunk search this project grew
//! from (https://df00tech.com/detections/T1496.002/splunk), evaluated on Sysmon events with
//! its own semantics, false positives included, so its users can check that egresswatch
//! returns what their SIEM returned before they switch to the default mode.
//!
//! What it does, in order:
//! - only Windows Sysmon events (its base search names the sourcetype
//!   `XmlWinEventLog:Microsoft-Windows-Sysmon/Operational`; Sysmon for Linux lands elsewhere);
//! - `EventCode` 1 and 3 only;
//! - `KnownProxywareBinary`: Event 1 whose lower-cased Image contains one of its binary
//!   patterns anywhere (a substring, so `...\mysterium-notes\reader.exe` is a hit);
//! - `ProxywareDomain`: Event 3 whose lower-cased DestinationHostname contains one of its
//!   domain patterns anywhere (so `notpawns.app.example.net` is a hit);
//! - `DetectionBranch`: `KnownProxywareBinary`, else `ProxywareDomainConnection`;
//! - the table's 14 fields, values as Splunk's Sysmon add-on (TA-microsoft-sysmon, whose
//!   stanza is the seed's sourcetype) extracts them: the text between the tags of the raw
//!   XML, entities not decoded (Windows writes `&`, `<`, `>` as `&amp;`, `&lt;`, `&gt;` and
//!   quotes as they are), Sysmon's `-` kept, an empty or missing field left out, as Splunk's
//!   export leaves out null fields; every value a string, as Splunk's JSON export writes
//!   them; `_time` with milliseconds and the UTC offset;
//! - newest first (Splunk's default order for events), ties in reverse input order.
use super::event::{Platform, SysmonEvent};

/// The patterns of the seed's two `match()` calls, as alternatives: `.` is any character but
/// a newline, `\.` a dot (its regexes use nothing else).
const BINARY_PATTERNS: &[&str] = &[
    "honeygain",
    "iproyal.desktop",
    "iproyal_desktop",
    r"pawns\.exe",
    "peer2profit",
    "p2p-node",
    "packetstream",
    "psnode",
    "traffmonetizer",
    "traffmain",
    "earnapp",
    "repocket",
    "bitping",
    "mysterium",
    r"myst\.exe",
];
const DOMAIN_PATTERNS: &[&str] = &[
    "honeygain",
    "iproyal",
    r"pawns\.app",
    "peer2profit",
    "packetstream",
    "traffmonetizer",
    "earnapp",
    "repocket",
    "bitping",
    "mysterium",
];

/// The table command's fields, in its order.
pub const FIELDS: [&str; 14] = [
    "_time",
    "host",
    "User",
    "EventCode",
    "Image",
    "CommandLine",
    "ParentImage",
    "ParentCommandLine",
    "DestinationIp",
    "DestinationHostname",
    "DestinationPort",
    "KnownProxywareBinary",
    "ProxywareDomain",
    "DetectionBranch",
];

/// One result row: (field, value) in table order, absent fields left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedRow {
    pub time_ns: u64,
    /// Position of the event in the input, for Splunk's tie order.
    pub order: u64,
    pub fields: Vec<(&'static str, String)>,
}

impl SeedRow {
    pub fn get(&self, field: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, v)| v.as_str())
    }

    /// One line of Splunk's JSON export (`output_mode=json`'s `result`): keys in table order.
    pub fn to_json(&self) -> String {
        let body: Vec<String> = self
            .fields
            .iter()
            .map(|(k, v)| {
                format!(
                    "{}:{}",
                    serde_json::Value::from(*k),
                    serde_json::Value::from(v.as_str())
                )
            })
            .collect();
        format!("{{{}}}", body.join(","))
    }
}

/// The seed search on one event: its row, or None when the search drops the event.
pub fn evaluate(ev: &SysmonEvent, order: u64) -> Option<SeedRow> {
    if ev.platform != Platform::Windows || !matches!(ev.event_id, 1 | 3) {
        return None;
    }
    // Splunk's field extraction makes no field of an empty element.
    let field = |name: &str| ev.raw(name).filter(|v| !v.is_empty());
    let binary = ev.event_id == 1
        && field("Image").is_some_and(|i| matches_any(&i.to_lowercase(), BINARY_PATTERNS));
    let domain = ev.event_id == 3
        && matches_any(
            &field("DestinationHostname").unwrap_or("").to_lowercase(),
            DOMAIN_PATTERNS,
        );
    let branch = if binary {
        "KnownProxywareBinary"
    } else if domain {
        "ProxywareDomainConnection"
    } else {
        return None;
    };
    let mut fields = Vec::with_capacity(FIELDS.len());
    fields.push(("_time", splunk_time(ev.time_ns)));
    fields.push(("host", ev.host_name().to_string()));
    for name in &FIELDS[2..11] {
        let value = match *name {
            "EventCode" => Some(ev.event_id.to_string()),
            _ => field(name).map(as_in_raw_xml),
        };
        if let Some(v) = value {
            fields.push((name, v));
        }
    }
    fields.push(("KnownProxywareBinary", u8::from(binary).to_string()));
    fields.push(("ProxywareDomain", u8::from(domain).to_string()));
    fields.push(("DetectionBranch", branch.to_string()));
    Some(SeedRow {
        time_ns: ev.time_ns,
        order,
        fields,
    })
}

/// A value as the Windows-rendered XML holds it (what the add-on's regex extracts).
fn as_in_raw_xml(value: &str) -> String {
    value
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Splunk's result order: newest first, later input first on a tie.
pub fn sort(rows: &mut [SeedRow]) {
    rows.sort_by_key(|r| std::cmp::Reverse((r.time_ns, r.order)));
}

/// `_time` as Splunk's export writes it in UTC: `2026-03-02T09:01:00.123+00:00`.
pub fn splunk_time(ns: u64) -> String {
    let micros = crate::alert::rfc3339(ns);
    // rfc3339 gives microseconds and `Z`; Splunk shows milliseconds and the offset.
    format!("{}+00:00", &micros[..micros.len() - 4])
}

/// An unanchored search for any of the alternatives.
fn matches_any(text: &str, patterns: &[&str]) -> bool {
    let chars: Vec<char> = text.chars().collect();
    patterns.iter().any(|p| {
        let pattern = compile(p);
        (0..chars.len()).any(|start| matches_at(&chars[start..], &pattern))
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Atom {
    Any,
    Char(char),
}

fn compile(pattern: &str) -> Vec<Atom> {
    let mut atoms = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        atoms.push(match c {
            '\\' => Atom::Char(chars.next().unwrap_or('\\')),
            '.' => Atom::Any,
            c => Atom::Char(c),
        });
    }
    atoms
}

fn matches_at(text: &[char], pattern: &[Atom]) -> bool {
    text.len() >= pattern.len()
        && pattern.iter().zip(text).all(|(a, c)| match a {
            Atom::Any => *c != '\n',
            Atom::Char(p) => p == c,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: u16, data: &[(&str, &str)]) -> SysmonEvent {
        SysmonEvent {
            record_id: Some(7),
            host: Some("PC".into()),
            ..SysmonEvent::new(
                Platform::Windows,
                id,
                1_772_442_060_123_000_000,
                "PC.corp",
                data,
            )
        }
    }

    #[test]
    fn substring_semantics_with_its_false_positives() {
        let reader = evaluate(
            &event(1, &[("Image", r"C:\Docs\Mysterium-Notes\reader.exe")]),
            0,
        )
        .unwrap();
        assert_eq!(reader.get("DetectionBranch"), Some("KnownProxywareBinary"));
        let iproyal = evaluate(&event(1, &[("Image", r"C:\x\IPRoyal Desktop.exe")]), 0).unwrap();
        assert_eq!(iproyal.get("KnownProxywareBinary"), Some("1"));
        let lookalike = evaluate(
            &event(
                3,
                &[
                    ("DestinationHostname", "notpawns.app.example.net"),
                    ("DestinationPort", "443"),
                ],
            ),
            0,
        )
        .unwrap();
        assert_eq!(
            lookalike.get("DetectionBranch"),
            Some("ProxywareDomainConnection")
        );
        assert_eq!(lookalike.get("KnownProxywareBinary"), Some("0"));
        assert!(evaluate(&event(3, &[("DestinationHostname", "-")]), 0).is_none());
        assert!(evaluate(&event(22, &[("QueryName", "honeygain.com")]), 0).is_none());
        assert!(evaluate(&event(1, &[("Image", r"C:\x\pawnsXexe")]), 0).is_none());
        // An Event 3 from a proxyware binary is no KnownProxywareBinary: that branch is Event 1's.
        assert!(evaluate(&event(3, &[("Image", r"C:\x\honeygain.exe")]), 0).is_none());
    }

    #[test]
    fn rows_in_table_order_as_splunk_exports_them() {
        let row = evaluate(
            &event(
                1,
                &[
                    ("Image", r"C:\A\Honeygain.exe"),
                    ("User", "CORP\\a"),
                    ("CommandLine", ""),
                ],
            ),
            0,
        )
        .unwrap();
        assert_eq!(
            row.to_json(),
            r#"{"_time":"2026-03-02T09:01:00.123+00:00","host":"PC","User":"CORP\\a","EventCode":"1","Image":"C:\\A\\Honeygain.exe","KnownProxywareBinary":"1","ProxywareDomain":"0","DetectionBranch":"KnownProxywareBinary"}"#
        );
        let mut linux = event(1, &[("Image", "/opt/honeygain")]);
        linux.platform = Platform::Linux;
        assert!(evaluate(&linux, 0).is_none());
        let escaped = evaluate(
            &event(
                1,
                &[
                    ("Image", r"C:\H\honeygain.exe"),
                    ("CommandLine", r#"a & "b" <c>"#),
                ],
            ),
            0,
        )
        .unwrap();
        assert_eq!(escaped.get("CommandLine"), Some(r#"a &amp; "b" &lt;c&gt;"#));
    }

    #[test]
    fn newest_first_then_later_input_first() {
        let mut rows: Vec<SeedRow> = [(5, 0), (9, 1), (5, 2)]
            .iter()
            .map(|&(t, o)| SeedRow {
                time_ns: t,
                order: o,
                fields: vec![],
            })
            .collect();
        sort(&mut rows);
        let order: Vec<u64> = rows.iter().map(|r| r.order).collect();
        assert_eq!(order, [1, 2, 0]);
    }
}
