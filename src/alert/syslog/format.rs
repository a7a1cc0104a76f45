//! Alert renderings for syslog: RFC 5424 with structured data, RFC 3164, CEF and ECS JSON.
//!
//! Pure functions: the caller passes the wall clock and a buffer it owns, so tests pin every
//! byte. Facts from RFC 5424 (sections 6 and 6.3.3), RFC 3164 (section 4.1) and the ArcSight CEF
//! specification (header and extension escaping).
use crate::alert::Alert;
use serde_json::{Map, Value, json};
use std::fmt::Write as _;

/// `egresswatch@32473`: 32473 is the private enterprise number RFC 5612 reserves for
/// documentation; an operator with a registered PEN may want their own (not configurable yet).
pub const SD_ID: &str = "egresswatch@32473";
/// RFC 5424 NILVALUE.
const NIL: &str = "-";

/// What every message of one target shares: header fields fixed at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Syslog facility code 0..=23.
    pub facility: u8,
    pub hostname: String,
    pub app_name: String,
    pub procid: String,
}

impl Envelope {
    /// Header fields cut to RFC 5424 lengths and PRINTUSASCII, so no input breaks the header.
    pub fn new(facility: u8, hostname: &str, app_name: &str, procid: &str) -> Envelope {
        Envelope {
            facility: facility.min(23),
            hostname: header_field(hostname, 255),
            app_name: header_field(app_name, 48),
            procid: header_field(procid, 128),
        }
    }

    fn pri(&self, alert: &Alert) -> u8 {
        self.facility * 8 + syslog_severity(alert.severity)
    }
}

/// high -> 2 critical, medium -> 4 warning, low -> 5 notice: an alert of ours is never an
/// outage of the sender (0 emergency, 1 alert), and a low score is still worth a look (not 6 info).
pub fn syslog_severity(severity: &str) -> u8 {
    match severity {
        "high" => 2,
        "medium" => 4,
        _ => 5,
    }
}

/// RFC 5424 header field: printable US-ASCII, no space, at most `max` octets; empty -> NILVALUE.
fn header_field(s: &str, max: usize) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .take(max)
        .collect();
    if cleaned.is_empty() {
        NIL.into()
    } else {
        cleaned
    }
}

/// PARAM-NAME: 1..=32 printable US-ASCII except `=`, space, `]` and `"`.
pub fn valid_param_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'=' | b']' | b'"'))
}

/// PARAM-VALUE escaping (RFC 5424 6.3.3): `"`, `\` and `]` take a backslash.
pub fn escape_param_value(out: &mut Vec<u8>, value: &str) {
    for b in value.bytes() {
        if matches!(b, b'"' | b'\\' | b']') {
            out.push(b'\\');
        }
        out.push(b);
    }
}

/// The alert's JSON fields in serde's order-independent form: name -> text (strings as they
/// are, numbers and `evidence` as compact JSON); null fields are left out.
pub fn alert_fields(alert: &Alert, include_evidence: bool) -> Vec<(String, String)> {
    let Ok(Value::Object(map)) = serde_json::to_value(alert) else {
        return Vec::new();
    };
    map.into_iter()
        .filter(|(k, v)| !v.is_null() && (include_evidence || k != "evidence"))
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            (k, text)
        })
        .collect()
}

/// A readable one-line sentence: the reason, then score and branch.
pub fn one_line_message(alert: &Alert) -> String {
    let reason = single_line(&alert.reason);
    format!(
        "{reason} (score {} {}, {})",
        alert.score, alert.severity, alert.detection_branch
    )
}

fn single_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// RFC 5424 header up to and including MSGID and the space after it.
fn write_5424_header(out: &mut Vec<u8>, env: &Envelope, alert: &Alert, now_ns: u64) {
    let msgid = header_field(alert.detection_branch, 32);
    let _ = write!(
        Buf(out),
        "<{}>1 {} {} {} {} {} ",
        env.pri(alert),
        crate::alert::rfc3339(now_ns),
        env.hostname,
        env.app_name,
        env.procid,
        msgid
    );
}

/// `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [egresswatch@32473 ...] MSG`.
///
/// TIMESTAMP is when the message is made (`now_ns`), as RFC 5424 defines it; the alert's own
/// times travel in the structured data (`time`, `window_start`, `window_end`). MSGID is the
/// detection branch. MSG has no BOM (MSG-ANY), so collectors that ignore BOMs show no junk.
pub fn rfc5424(out: &mut Vec<u8>, env: &Envelope, alert: &Alert, now_ns: u64, evidence: bool) {
    write_5424_header(out, env, alert, now_ns);
    out.push(b'[');
    out.extend_from_slice(SD_ID.as_bytes());
    for (name, value) in alert_fields(alert, evidence) {
        if !valid_param_name(&name) {
            continue;
        }
        out.push(b' ');
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"=\"");
        escape_param_value(out, &value);
        out.push(b'"');
    }
    out.extend_from_slice(b"] ");
    out.extend_from_slice(one_line_message(alert).as_bytes());
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// RFC 3164 TIMESTAMP `Mmm dd hh:mm:ss` (day space-padded), in UTC: the format has no zone.
fn bsd_timestamp(now_ns: u64) -> String {
    let iso = crate::alert::rfc3339(now_ns); // YYYY-MM-DDThh:mm:ss.ffffffZ
    let month: usize = iso[5..7].parse().unwrap_or(1);
    let day: u32 = iso[8..10].parse().unwrap_or(1);
    format!(
        "{} {day:>2} {}",
        MONTHS[month.clamp(1, 12) - 1],
        &iso[11..19]
    )
}

/// A key=value value: bare when it has no space, quote or backslash, else quoted with `"`
/// and `\` escaped.
fn kv_value(out: &mut Vec<u8>, value: &str) {
    let value = single_line(value);
    if !value.is_empty()
        && !value
            .bytes()
            .any(|b| matches!(b, b' ' | b'"' | b'\\' | b'='))
    {
        out.extend_from_slice(value.as_bytes());
        return;
    }
    out.push(b'"');
    for b in value.bytes() {
        if matches!(b, b'"' | b'\\') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

/// `<PRI>Mmm dd hh:mm:ss HOSTNAME TAG: MSG`, TAG = `APP-NAME[PROCID]`, MSG = the sentence
/// followed by every alert field as key=value.
pub fn rfc3164(out: &mut Vec<u8>, env: &Envelope, alert: &Alert, now_ns: u64, evidence: bool) {
    // RFC 3164 TAG is at most 32 alphanumerics; the PID in brackets is the common extension.
    let tag: String = env
        .app_name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(32)
        .collect();
    let _ = write!(
        Buf(out),
        "<{}>{} {} {}[{}]: ",
        env.pri(alert),
        bsd_timestamp(now_ns),
        if env.hostname == NIL {
            "localhost"
        } else {
            &env.hostname
        },
        tag,
        env.procid
    );
    out.extend_from_slice(one_line_message(alert).as_bytes());
    for (name, value) in alert_fields(alert, evidence) {
        out.push(b' ');
        out.extend_from_slice(name.as_bytes());
        out.push(b'=');
        kv_value(out, &value);
    }
}

/// CEF header field: `\` and `|` escaped, no line breaks.
fn cef_header(out: &mut Vec<u8>, value: &str) {
    for c in single_line(value).chars() {
        if matches!(c, '\\' | '|') {
            out.push(b'\\');
        }
        let mut b = [0; 4];
        out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
    }
}

/// CEF extension value: `\` and `=` escaped, CR and LF as `\r` and `\n`.
fn cef_value(out: &mut Vec<u8>, value: &str) {
    for b in value.bytes() {
        match b {
            b'\\' | b'=' => out.extend_from_slice(&[b'\\', b]),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
}

/// Milliseconds since the epoch of an RFC 3339 time (CEF `rt`, `start`, `end`).
fn epoch_ms(rfc3339: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// CEF severity 0..=10 from the 0..=100 score.
pub fn cef_severity(score: u8) -> u8 {
    (score / 10).min(10)
}

/// The CEF extension as (key, value) pairs; `csN`/`cnN`/`cfpN` carry labels.
pub fn cef_extension(alert: &Alert, evidence: bool) -> Vec<(&'static str, String)> {
    let mut ext: Vec<(&'static str, String)> = Vec::new();
    if let Some(ms) = epoch_ms(&alert.time) {
        ext.push(("rt", ms.to_string()));
    }
    // CEF's key for the sender's own id of the event.
    ext.push(("externalId", alert.id.clone()));
    ext.push(("src", alert.host.to_string()));
    if let Some(ip) = alert.destination_ip {
        ext.push(("dst", ip.to_string()));
    }
    if let Some(name) = &alert.destination_hostname {
        ext.push(("dhost", name.clone()));
    }
    if let Some(port) = alert.destination_port {
        ext.push(("dpt", port.to_string()));
    }
    if let Some(ms) = epoch_ms(&alert.window_start) {
        ext.push(("start", ms.to_string()));
    }
    if let Some(ms) = epoch_ms(&alert.window_end) {
        ext.push(("end", ms.to_string()));
    }
    ext.push(("out", alert.bytes_out.to_string()));
    ext.push(("in", alert.bytes_in.to_string()));
    ext.push(("cnt", alert.count.to_string()));
    ext.push(("msg", single_line(&alert.reason)));
    ext.push(("cs1Label", "DetectionBranch".into()));
    ext.push(("cs1", alert.detection_branch.into()));
    ext.push(("cs2Label", "technique".into()));
    ext.push(("cs2", alert.technique.into()));
    ext.push(("cs3Label", "analytic".into()));
    ext.push(("cs3", alert.analytic.into()));
    ext.push(("cs4Label", "severity".into()));
    ext.push(("cs4", alert.severity.into()));
    if let Some(country) = &alert.country {
        ext.push(("cs5Label", "country".into()));
        ext.push(("cs5", country.clone()));
    }
    if evidence {
        ext.push(("cs6Label", "evidence".into()));
        ext.push(("cs6", alert.evidence.to_string()));
    }
    // The program behind the alert (Sysmon): CEF's source process and user keys.
    if let Some(p) = &alert.process {
        if let Some(image) = &p.image {
            ext.push(("sproc", image.clone()));
        }
        if let Some(pid) = p.process_id {
            ext.push(("spid", pid.to_string()));
        }
        if let Some(user) = &p.user {
            ext.push(("suser", user.clone()));
        }
        ext.push(("shost", p.computer.clone()));
    }
    ext.push(("cn1Label", "score".into()));
    ext.push(("cn1", alert.score.to_string()));
    if let Some(asn) = alert.asn {
        ext.push(("cn2Label", "asn".into()));
        ext.push(("cn2", asn.to_string()));
    }
    ext.push(("cfp1Label", "duration_s".into()));
    ext.push((
        "cfp1",
        serde_json::to_string(&alert.duration_s).unwrap_or_default(),
    ));
    ext
}

/// `CEF:0|egresswatch|egresswatch|VERSION|SignatureID|Name|Severity|ext` in an RFC 5424
/// envelope without structured data: RFC 5424 because TCP/TLS framing and rsyslog's parser
/// take it as is, and CEF receivers find `CEF:0|` anywhere in the message.
pub fn cef(out: &mut Vec<u8>, env: &Envelope, alert: &Alert, now_ns: u64, evidence: bool) {
    write_5424_header(out, env, alert, now_ns);
    out.extend_from_slice(b"- ");
    out.extend_from_slice(b"CEF:0|egresswatch|egresswatch|");
    cef_header(out, env!("CARGO_PKG_VERSION"));
    out.push(b'|');
    cef_header(out, alert.detection_branch);
    out.push(b'|');
    cef_header(
        out,
        &format!(
            "Bandwidth hijacking ({}): {}",
            alert.technique, alert.detection_branch
        ),
    );
    let _ = write!(Buf(out), "|{}|", cef_severity(alert.score));
    for (i, (key, value)) in cef_extension(alert, evidence).iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(key.as_bytes());
        out.push(b'=');
        cef_value(out, value);
    }
}

/// The alert as an Elastic Common Schema document (nested objects); fields ECS has no name for
/// live under `egresswatch.*`.
pub fn ecs_document(alert: &Alert, evidence: bool) -> Value {
    let mut destination = Map::new();
    if let Some(ip) = alert.destination_ip {
        destination.insert("ip".into(), json!(ip));
    }
    if let Some(port) = alert.destination_port {
        destination.insert("port".into(), json!(port));
    }
    if let Some(name) = &alert.destination_hostname {
        destination.insert("domain".into(), json!(name));
    }
    destination.insert("bytes".into(), json!(alert.bytes_in));
    if let Some(country) = &alert.country {
        destination.insert("geo".into(), json!({ "country_iso_code": country }));
    }
    if let Some(asn) = alert.asn {
        destination.insert("as".into(), json!({ "number": asn }));
    }
    let mut own = json!({
        "severity": alert.severity,
        "analytic": alert.analytic,
        "count": alert.count,
        "duration_s": alert.duration_s,
        "window_start": alert.window_start,
        "window_end": alert.window_end,
    });
    if evidence {
        own["evidence"] = alert.evidence.clone();
    }
    let mut doc = json!({
        "@timestamp": alert.time,
        "message": single_line(&alert.reason),
        "event": {
            "id": alert.id,
            "kind": "alert",
            "category": ["network"],
            "type": ["connection"],
            "severity": alert.score,
            "risk_score": alert.score,
            "start": alert.window_start,
            "end": alert.window_end,
            "duration": (alert.duration_s * 1e9).round() as u64,
        },
        "rule": { "name": alert.detection_branch },
        "threat": {
            "framework": "MITRE ATT&CK",
            "technique": { "id": alert.technique },
        },
        "source": { "ip": alert.host, "bytes": alert.bytes_out },
        "destination": destination,
        "egresswatch": own,
    });
    // The program behind the alert (Sysmon), in ECS's process, user and host fields.
    if let Some(p) = &alert.process {
        let mut process = Map::new();
        if let Some(image) = &p.image {
            process.insert("executable".into(), json!(image));
        }
        if let Some(command) = &p.command_line {
            process.insert("command_line".into(), json!(command));
        }
        if let Some(pid) = p.process_id {
            process.insert("pid".into(), json!(pid));
        }
        if let Some(guid) = &p.process_guid {
            process.insert("entity_id".into(), json!(guid));
        }
        let mut parent = Map::new();
        if let Some(image) = &p.parent_image {
            parent.insert("executable".into(), json!(image));
        }
        if let Some(command) = &p.parent_command_line {
            parent.insert("command_line".into(), json!(command));
        }
        if !parent.is_empty() {
            process.insert("parent".into(), Value::Object(parent));
        }
        doc["process"] = Value::Object(process);
        if let Some(user) = &p.user {
            doc["user"] = json!({ "name": user });
        }
        doc["host"] = json!({ "name": p.computer });
    }
    doc
}

/// The ECS document as compact JSON, the MSG of an RFC 5424 envelope without structured data.
pub fn json(out: &mut Vec<u8>, env: &Envelope, alert: &Alert, now_ns: u64, evidence: bool) {
    write_5424_header(out, env, alert, now_ns);
    out.extend_from_slice(b"- ");
    let _ = serde_json::to_writer(&mut *out, &ecs_document(alert, evidence));
}

/// `fmt::Write` into a byte buffer (header lines are ASCII).
struct Buf<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Buf<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert() -> Alert {
        Alert {
            id: "5d41402abc4b2a76".into(),
            time: "2024-03-04T09:00:16.000000Z".into(),
            host: "10.20.1.66".parse().unwrap(),
            destination_ip: Some("203.0.113.24".parse().unwrap()),
            destination_hostname: Some("client.earnapp.com".into()),
            destination_port: Some(443),
            detection_branch: "ProxywareDomain",
            technique: "T1496.002",
            analytic: "AN0081",
            score: 80,
            severity: "high",
            bytes_out: 2229,
            bytes_in: 7691,
            duration_s: 235.0336,
            country: None,
            asn: None,
            window_start: "2024-03-04T09:00:00.000000Z".into(),
            window_end: "2024-03-04T09:15:00.000000Z".into(),
            count: 5,
            reason: "saw \"x\" \\ [y] a=b|c\nnext".into(),
            evidence: json!({"via": ["dns"], "note": "a]b"}),
            process: None,
        }
    }

    fn env() -> Envelope {
        Envelope::new(16, "sensor-1", "egresswatch", "4242")
    }

    // 2024-03-04T10:00:00.5Z
    const NOW: u64 = 1_709_546_400_500_000_000;

    #[test]
    fn the_process_behind_an_alert_in_cef_ecs_and_5424() {
        let mut a = alert();
        a.process = Some(Box::new(crate::alert::Process {
            computer: "WIN-DESK-07.corp.example".into(),
            image: Some(r"C:\Users\a\AppData\Honeygain.exe".into()),
            command_line: Some("Honeygain.exe --x".into()),
            user: Some(r"CORP\alice".into()),
            parent_image: Some(r"C:\Windows\System32\cmd.exe".into()),
            process_id: Some(4242),
            ..Default::default()
        }));
        let cef: std::collections::BTreeMap<&str, String> =
            cef_extension(&a, false).into_iter().collect();
        assert_eq!(cef["sproc"], r"C:\Users\a\AppData\Honeygain.exe");
        assert_eq!(
            (cef["spid"].as_str(), cef["suser"].as_str()),
            ("4242", r"CORP\alice")
        );
        let ecs = ecs_document(&a, false);
        assert_eq!(
            ecs["process"]["parent"]["executable"],
            r"C:\Windows\System32\cmd.exe"
        );
        assert_eq!(ecs["user"]["name"], r"CORP\alice");
        assert_eq!(ecs["host"]["name"], "WIN-DESK-07.corp.example");
        assert!(
            text(rfc5424, &a).contains("process=\""),
            "{}",
            text(rfc5424, &a)
        );
        assert!(
            cef_extension(&alert(), false)
                .iter()
                .all(|(k, _)| *k != "sproc")
        );
    }

    fn text(f: fn(&mut Vec<u8>, &Envelope, &Alert, u64, bool), a: &Alert) -> String {
        let mut out = Vec::new();
        f(&mut out, &env(), a, NOW, true);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn rfc5424_header_structured_data_and_message() {
        let s = text(rfc5424, &alert());
        // local0 (16) * 8 + critical (2) = 130.
        assert!(
            s.starts_with(
                "<130>1 2024-03-04T10:00:00.500000Z sensor-1 egresswatch 4242 ProxywareDomain \
                 [egresswatch@32473 "
            ),
            "{s}"
        );
        // Every non-null field; PARAM-VALUE escapes `"`, `\` and `]` only.
        assert!(s.contains(r#" DestinationPort="443""#), "{s}");
        assert!(s.contains(r#" id="5d41402abc4b2a76""#), "{s}");
        assert!(s.contains(r#" duration_s="235.0336""#), "{s}");
        // Line breaks are legal in PARAM-VALUE and kept: the value equals the JSON field.
        assert!(
            s.contains(" reason=\"saw \\\"x\\\" \\\\ [y\\] a=b|c\nnext\" "),
            "{s}"
        );
        assert!(
            s.contains(r#" evidence="{\"via\":[\"dns\"\],\"note\":\"a\]b\"}""#),
            "{s}"
        );
        assert!(!s.contains("country="), "null fields are left out: {s}");
        assert!(!s.contains("asn="), "{s}");
        assert!(
            s.ends_with(r#"] saw "x" \ [y] a=b|c next (score 80 high, ProxywareDomain)"#),
            "{s}"
        );
    }

    #[test]
    fn every_alert_field_is_a_valid_param_name() {
        for (name, _) in alert_fields(&alert(), true) {
            assert!(valid_param_name(&name), "{name}");
        }
        assert_eq!(alert_fields(&alert(), true).len(), 19); // 21 fields, country and asn null
        assert!(!valid_param_name(""));
        assert!(!valid_param_name("a=b"));
        assert!(!valid_param_name("a b"));
        assert!(!valid_param_name("a]"));
        assert!(!valid_param_name("a\""));
        assert!(!valid_param_name(&"x".repeat(33)));
        assert!(valid_param_name(&"x".repeat(32)));
    }

    #[test]
    fn header_fields_are_sanitised() {
        let e = Envelope::new(99, "", "my app", &"9".repeat(200));
        assert_eq!(e.facility, 23);
        assert_eq!(e.hostname, "-");
        assert_eq!(e.app_name, "my_app");
        assert_eq!(e.procid.len(), 128);
    }

    #[test]
    fn severity_maps_to_syslog_levels() {
        let mut a = alert();
        for (sev, pri) in [("high", 130), ("medium", 132), ("low", 133)] {
            a.severity = sev;
            assert!(text(rfc5424, &a).starts_with(&format!("<{pri}>1 ")));
        }
    }

    #[test]
    fn rfc3164_line() {
        let s = text(rfc3164, &alert());
        assert!(
            s.starts_with("<130>Mar  4 10:00:00 sensor-1 egresswatch[4242]: saw \"x\""),
            "{s}"
        );
        assert!(
            s.contains(" DestinationHostname=client.earnapp.com "),
            "{s}"
        );
        assert!(
            s.contains(r#" reason="saw \"x\" \\ [y] a=b|c next""#),
            "{s}"
        );
        // Keys in the order the evidence was built (serde_json's preserve_order, which the
        // evtx crate turns on for the whole build).
        assert!(s.contains(r#" evidence="{\"via\":[\"dns\"],\"note\":\"a]b\"}""#));
        assert!(!s.contains('\n'));
    }

    #[test]
    fn bsd_timestamp_pads_the_day() {
        assert_eq!(bsd_timestamp(NOW), "Mar  4 10:00:00");
        assert_eq!(bsd_timestamp(0), "Jan  1 00:00:00");
        // 2021-09-12 13:52:02 UTC
        assert_eq!(bsd_timestamp(1_631_454_722_864_133_000), "Sep 12 13:52:02");
    }

    #[test]
    fn cef_header_and_extension_escaping() {
        let mut a = alert();
        a.detection_branch = "Odd|Branch\\";
        a.country = Some("NL".into());
        a.asn = Some(64500);
        let s = text(cef, &a);
        let version = env!("CARGO_PKG_VERSION");
        assert!(
            s.contains(&format!(
                "sensor-1 egresswatch 4242 Odd|Branch\\ - CEF:0|egresswatch|egresswatch|{version}|\
                 Odd\\|Branch\\\\|Bandwidth hijacking (T1496.002): Odd\\|Branch\\\\|8|rt=1709542816000 "
            )),
            "{s}"
        );
        assert!(s.contains(" externalId=5d41402abc4b2a76 "), "{s}");
        assert!(s.contains(" src=10.20.1.66 dst=203.0.113.24 dhost=client.earnapp.com dpt=443 "));
        assert!(s.contains(" start=1709542800000 end=1709543700000 out=2229 in=7691 cnt=5 "));
        assert!(s.contains(r#" msg=saw "x" \\ [y] a\=b|c next "#), "{s}");
        assert!(s.contains(" cs5Label=country cs5=NL "), "{s}");
        assert!(s.contains(" cn2Label=asn cn2=64500 "), "{s}");
        assert!(s.ends_with(" cfp1Label=duration_s cfp1=235.0336"), "{s}");
        assert!(!s.contains('\n'));
        let mut v = Vec::new();
        cef_value(&mut v, "a\nb\rc");
        assert_eq!(v, b"a\\nb\\rc");
    }

    #[test]
    fn json_is_ecs() {
        let s = text(json, &alert());
        let (head, body) = s.split_once(" - ").unwrap();
        assert_eq!(
            head,
            "<130>1 2024-03-04T10:00:00.500000Z sensor-1 egresswatch 4242 ProxywareDomain"
        );
        let v: Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["@timestamp"], "2024-03-04T09:00:16.000000Z");
        assert_eq!(v["event"]["kind"], "alert");
        assert_eq!(v["event"]["id"], "5d41402abc4b2a76");
        assert_eq!(v["event"]["category"], json!(["network"]));
        assert_eq!(v["event"]["severity"], 80);
        assert_eq!(v["event"]["duration"], 235_033_600_000u64);
        assert_eq!(v["source"]["ip"], "10.20.1.66");
        assert_eq!(v["source"]["bytes"], 2229);
        assert_eq!(v["destination"]["ip"], "203.0.113.24");
        assert_eq!(v["destination"]["port"], 443);
        assert_eq!(v["destination"]["domain"], "client.earnapp.com");
        assert_eq!(v["destination"]["bytes"], 7691);
        assert_eq!(v["threat"]["technique"]["id"], "T1496.002");
        assert_eq!(v["rule"]["name"], "ProxywareDomain");
        assert_eq!(v["egresswatch"]["evidence"]["note"], "a]b");
        assert!(v["destination"].get("geo").is_none());
    }

    #[test]
    fn evidence_can_be_left_out() {
        let mut out = Vec::new();
        rfc5424(&mut out, &env(), &alert(), NOW, false);
        let s = String::from_utf8(out).unwrap();
        assert!(!s.contains("evidence="));
        assert!(s.contains(" window_end="));
    }
}
