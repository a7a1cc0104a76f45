//! Syslog export into a real rsyslogd that the test starts on loopback (UDP, TCP, TLS and
//! mutual TLS inputs), with alerts from replaying the committed captures. Every message rsyslog
//! writes is parsed strictly here (RFC 5424, CEF, ECS JSON) and compared with the JSON alert.
mod common;

use common::TempDir;
use egresswatch::alert::Alert;
use egresswatch::alert::syslog::{SinkCounters, SyslogFormat, SyslogSinks, SyslogTarget};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

#[path = "common/syslog.rs"]
mod syslog_helpers;
use syslog_helpers::*;

/// A strictly parsed RFC 5424 message.
#[derive(Debug)]
struct Rfc5424 {
    pri: u8,
    timestamp: String,
    hostname: String,
    app_name: String,
    procid: String,
    msgid: String,
    sd: Vec<(String, Vec<(String, String)>)>,
    msg: String,
}

fn parse_rfc5424(s: &str) -> Result<Rfc5424, String> {
    let rest = s.strip_prefix('<').ok_or("no PRI")?;
    let (pri, rest) = rest.split_once('>').ok_or("unclosed PRI")?;
    if pri.is_empty() || pri.len() > 3 || !pri.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("bad PRI {pri}"));
    }
    let pri: u8 = pri.parse().map_err(|_| "PRI")?;
    if pri > 191 {
        return Err("PRI > 191".into());
    }
    let rest = rest.strip_prefix("1 ").ok_or("VERSION is not 1")?;
    let mut fields = Vec::new();
    let mut rest = rest;
    for (name, max) in [
        ("TIMESTAMP", 64),
        ("HOSTNAME", 255),
        ("APP-NAME", 48),
        ("PROCID", 128),
        ("MSGID", 32),
    ] {
        let (f, r) = rest.split_once(' ').ok_or(format!("no {name}"))?;
        if f.is_empty() || f.len() > max || !f.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!("bad {name} '{f}'"));
        }
        fields.push(f.to_string());
        rest = r;
    }
    if fields[0] != "-" {
        chrono::DateTime::parse_from_rfc3339(&fields[0]).map_err(|e| format!("TIMESTAMP: {e}"))?;
    }
    let mut sd = Vec::new();
    let bytes = rest.as_bytes();
    let mut i = 0;
    if rest.starts_with('-') {
        i = 1;
    } else {
        while bytes.get(i) == Some(&b'[') {
            i += 1;
            let start = i;
            while i < bytes.len() && !matches!(bytes[i], b' ' | b']') {
                i += 1;
            }
            let id = rest[start..i].to_string();
            if id.is_empty() || id.len() > 32 || id.contains(['=', '"']) {
                return Err(format!("bad SD-ID {id}"));
            }
            let mut params = Vec::new();
            while bytes.get(i) == Some(&b' ') {
                i += 1;
                let start = i;
                while i < bytes.len() && bytes[i] != b'=' {
                    i += 1;
                }
                let name = &rest[start..i];
                if name.is_empty() || name.len() > 32 || name.contains([' ', ']', '"']) {
                    return Err(format!("bad PARAM-NAME {name}"));
                }
                if rest.get(i..i + 2) != Some("=\"") {
                    return Err(format!("PARAM {name}: no =\""));
                }
                i += 2;
                let mut value = Vec::new();
                loop {
                    match bytes.get(i) {
                        None => return Err(format!("PARAM {name}: unterminated")),
                        Some(b'"') => break,
                        Some(b']') => return Err(format!("PARAM {name}: unescaped ]")),
                        Some(b'\\') if matches!(bytes.get(i + 1), Some(b'"' | b'\\' | b']')) => {
                            value.push(bytes[i + 1]);
                            i += 2;
                        }
                        Some(&b) => {
                            value.push(b);
                            i += 1;
                        }
                    }
                }
                i += 1;
                params.push((
                    name.to_string(),
                    String::from_utf8(value).map_err(|_| "UTF-8")?,
                ));
            }
            if bytes.get(i) != Some(&b']') {
                return Err(format!("SD element {id} not closed"));
            }
            i += 1;
            sd.push((id, params));
        }
        if sd.is_empty() {
            return Err("no STRUCTURED-DATA".into());
        }
    }
    let msg = match &rest[i..] {
        "" => String::new(),
        m => m.strip_prefix(' ').ok_or("no SP before MSG")?.to_string(),
    };
    let mut f = fields.into_iter();
    Ok(Rfc5424 {
        pri,
        timestamp: f.next().unwrap(),
        hostname: f.next().unwrap(),
        app_name: f.next().unwrap(),
        procid: f.next().unwrap(),
        msgid: f.next().unwrap(),
        sd,
        msg,
    })
}

/// The alert's JSON fields as text, nulls left out: what the structured data must hold.
fn json_fields(alert: &Alert) -> BTreeMap<String, String> {
    let Value::Object(map) = serde_json::to_value(alert).unwrap() else {
        unreachable!()
    };
    map.into_iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            (k, text)
        })
        .collect()
}

fn sd_fields(m: &Rfc5424) -> BTreeMap<String, String> {
    assert_eq!(m.sd.len(), 1, "{m:?}");
    assert_eq!(m.sd[0].0, "egresswatch@32473");
    m.sd[0].1.iter().cloned().collect()
}

fn check_rfc5424(line: &str, alert: &Alert) {
    let m = parse_rfc5424(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    let severity = match alert.severity {
        "high" => 2,
        "medium" => 4,
        _ => 5,
    };
    assert_eq!(m.pri, 16 * 8 + severity, "{line}");
    assert_eq!(m.app_name, "egresswatch");
    assert_eq!(m.procid, std::process::id().to_string());
    assert_eq!(m.msgid, alert.detection_branch);
    assert!(!m.hostname.is_empty() && !m.timestamp.is_empty());
    assert_eq!(sd_fields(&m), json_fields(alert), "{line}");
    assert!(m.msg.starts_with(&alert.reason), "{line}");
    assert!(m.msg.ends_with(&format!(
        "(score {} {}, {})",
        alert.score, alert.severity, alert.detection_branch
    )));
}

/// CEF header fields (split on unescaped `|`) and extension (key=value, `\=` `\\` `\n` escaped).
fn parse_cef(text: &str) -> (Vec<String>, BTreeMap<String, String>) {
    let body = text
        .strip_prefix("CEF:")
        .unwrap_or_else(|| panic!("no CEF: {text}"));
    let mut header = Vec::new();
    let mut field = String::new();
    let mut chars = body.chars();
    while header.len() < 7 {
        match chars.next().expect("7 header fields") {
            '\\' => field.push(chars.next().expect("escaped char")),
            '|' => header.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    let ext: String = chars.collect();
    // Keys are the words before unescaped `=`; a value runs to the space before the next key.
    let b = ext.as_bytes();
    let mut eqs = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'=' => {
                eqs.push(i);
                i += 1
            }
            _ => i += 1,
        }
    }
    let mut out = BTreeMap::new();
    for (n, &eq) in eqs.iter().enumerate() {
        let key_start = ext[..eq].rfind(' ').map_or(0, |s| s + 1);
        let key = &ext[key_start..eq];
        let value_end = match eqs.get(n + 1) {
            Some(&next) => ext[..next].rfind(' ').unwrap(),
            None => ext.len(),
        };
        let raw = &ext[eq + 1..value_end];
        let mut value = String::new();
        let mut cs = raw.chars();
        while let Some(c) = cs.next() {
            if c == '\\' {
                match cs.next() {
                    Some('n') => value.push('\n'),
                    Some('r') => value.push('\r'),
                    Some(o) => value.push(o),
                    None => value.push('\\'),
                }
            } else {
                value.push(c);
            }
        }
        assert!(
            out.insert(key.to_string(), value).is_none(),
            "duplicate key {key}"
        );
    }
    (header, out)
}

fn ms(rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp_millis()
        .to_string()
}

fn check_cef(line: &str, alert: &Alert) {
    let m = parse_rfc5424(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert!(m.sd.is_empty());
    let (header, ext) = parse_cef(&m.msg);
    assert_eq!(header[0], "0");
    assert_eq!(&header[1..3], ["egresswatch", "egresswatch"]);
    assert_eq!(header[4], alert.detection_branch);
    assert_eq!(header[6], (alert.score / 10).to_string());
    // Every alert field, by its CEF key (custom fields through their labels).
    let mut labelled = BTreeMap::new();
    for (k, v) in &ext {
        if let Some(slot) = k.strip_suffix("Label") {
            labelled.insert(v.clone(), ext[slot].clone());
        }
    }
    let json = json_fields(alert);
    let mut expect = BTreeMap::new();
    expect.insert("rt", ms(&alert.time));
    expect.insert("externalId", alert.id.clone());
    expect.insert("src", json["host"].clone());
    expect.insert("start", ms(&alert.window_start));
    expect.insert("end", ms(&alert.window_end));
    expect.insert("out", json["bytes_out"].clone());
    expect.insert("in", json["bytes_in"].clone());
    expect.insert("cnt", json["count"].clone());
    expect.insert("msg", alert.reason.clone());
    for (key, field) in [
        ("dst", "DestinationIp"),
        ("dhost", "DestinationHostname"),
        ("dpt", "DestinationPort"),
    ] {
        if let Some(v) = json.get(field) {
            expect.insert(key, v.clone());
        }
    }
    for (k, v) in expect {
        assert_eq!(ext.get(k), Some(&v), "CEF {k} in {line}");
    }
    for field in [
        "DetectionBranch",
        "technique",
        "analytic",
        "severity",
        "score",
        "duration_s",
        "country",
        "asn",
        "evidence",
    ] {
        assert_eq!(
            labelled.get(field),
            json.get(field),
            "CEF {field} in {line}"
        );
    }
}

fn check_json(line: &str, alert: &Alert) {
    let m = parse_rfc5424(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    let doc: Value = serde_json::from_str(&m.msg).unwrap_or_else(|e| panic!("{e}: {line}"));
    let a = serde_json::to_value(alert).unwrap();
    assert_eq!(doc["@timestamp"], a["time"]);
    assert_eq!(doc["event"]["kind"], "alert");
    assert_eq!(doc["event"]["id"], a["id"]);
    assert_eq!(doc["event"]["category"], serde_json::json!(["network"]));
    assert_eq!(doc["event"]["severity"], a["score"]);
    assert_eq!(doc["source"]["ip"], a["host"]);
    assert_eq!(doc["source"]["bytes"], a["bytes_out"]);
    assert_eq!(doc["destination"]["bytes"], a["bytes_in"]);
    for (ecs, field) in [
        ("ip", "DestinationIp"),
        ("port", "DestinationPort"),
        ("domain", "DestinationHostname"),
    ] {
        assert_eq!(
            doc["destination"].get(ecs).unwrap_or(&Value::Null),
            &a[field],
            "{field}"
        );
    }
    assert_eq!(doc["destination"]["geo"]["country_iso_code"], a["country"]);
    assert_eq!(doc["destination"]["as"]["number"], a["asn"]);
    assert_eq!(doc["threat"]["technique"]["id"], a["technique"]);
    assert_eq!(doc["rule"]["name"], a["DetectionBranch"]);
    assert_eq!(doc["message"], a["reason"]);
    assert_eq!(
        doc["event"]["duration"],
        (alert.duration_s * 1e9).round() as u64
    );
    assert_eq!(doc["egresswatch"]["evidence"], a["evidence"]);
    assert_eq!(doc["egresswatch"]["count"], a["count"]);
}

fn counters_of<'a>(all: &'a [(String, SinkCounters)], url: &str) -> &'a SinkCounters {
    &all.iter().find(|(u, _)| u == url).unwrap().1
}

#[test]
fn every_alert_arrives_over_udp_tcp_tls_and_mutual_tls_and_parses() {
    let alerts = replay_alerts("captures/behaviour.pcap", Some("captures/behaviour.toml"));
    assert!(alerts.len() >= 10, "{}", alerts.len());
    assert!(
        alerts
            .iter()
            .any(|a| a.country.is_some() && a.asn.is_some())
    );
    let dir = TempDir::new("rsyslog", "formats");
    let pki = make_pki(&dir.0);
    let rsyslog = Rsyslog::start(
        &dir.0,
        Some(&pki),
        &[
            ("udp", Input::Udp),
            ("tcp", Input::Tcp),
            ("tls", Input::Tls),
            ("mtls", Input::MutualTls),
            ("cef", Input::Tcp),
            ("json", Input::Tls),
            ("bsd", Input::Tcp),
        ],
    );
    let target = |name: &str, format| SyslogTarget::from_url(&rsyslog.url(name), format).unwrap();
    let mut tls = target("tls", SyslogFormat::Rfc5424);
    tls.ca_file = Some(pki.ca.clone());
    tls.server_name = Some("localhost".into());
    let mut mtls = target("mtls", SyslogFormat::Rfc5424);
    mtls.ca_file = Some(pki.ca.clone());
    mtls.cert_file = Some(pki.client_cert.clone());
    mtls.key_file = Some(pki.client_key.clone());
    let mut json = target("json", SyslogFormat::Json);
    json.ca_file = Some(pki.ca.clone());
    let targets = vec![
        target("udp", SyslogFormat::Rfc5424),
        target("tcp", SyslogFormat::Rfc5424),
        tls,
        mtls,
        target("cef", SyslogFormat::Cef),
        json,
        target("bsd", SyslogFormat::Rfc3164),
    ];
    let sinks = SyslogSinks::start(&targets).unwrap();
    // In two batches, as windows close.
    let (first, second) = alerts.split_at(alerts.len() / 2);
    sinks.send(first);
    sinks.send(second);
    let counters = sinks.finish(PATIENCE);
    for t in &targets {
        let c = counters_of(&counters, &t.url);
        assert_eq!(c.sent, alerts.len() as u64, "{}: {c:?}", t.url);
        assert_eq!(
            c.dropped_total() + c.truncated + c.send_errors,
            0,
            "{}: {c:?}",
            t.url
        );
    }
    let n = alerts.len();
    for name in ["tcp", "tls", "mtls"] {
        let lines = rsyslog.wait_messages(name, n);
        assert_eq!(lines.len(), n, "{name}");
        for (line, alert) in lines.iter().zip(&alerts) {
            check_rfc5424(line, alert);
        }
    }
    // UDP may reorder in principle: match by content.
    let mut udp = rsyslog.wait_messages("udp", n);
    assert_eq!(udp.len(), n);
    for alert in &alerts {
        let want = json_fields(alert);
        let i = udp
            .iter()
            .position(|l| parse_rfc5424(l).is_ok_and(|m| sd_fields(&m) == want))
            .unwrap_or_else(|| panic!("alert not received over UDP: {}", alert.reason));
        check_rfc5424(&udp.remove(i), alert);
    }
    for (line, alert) in rsyslog.wait_messages("cef", n).iter().zip(&alerts) {
        check_cef(line, alert);
    }
    for (line, alert) in rsyslog.wait_messages("json", n).iter().zip(&alerts) {
        check_json(line, alert);
    }
    for (line, alert) in rsyslog.wait_messages("bsd", n).iter().zip(&alerts) {
        // <PRI>Mmm dd hh:mm:ss HOSTNAME egresswatch[PID]: sentence key=value...
        let (_, rest) = line.split_once('>').unwrap();
        let tag = format!(" egresswatch[{}]: {}", std::process::id(), alert.reason);
        assert!(rest.get(15..).is_some_and(|r| r.contains(&tag)), "{line}");
        assert!(
            line.contains(&format!(" DetectionBranch={} ", alert.detection_branch)),
            "{line}"
        );
    }
}

#[test]
fn tls_with_an_unknown_ca_or_without_a_client_certificate_delivers_nothing_and_says_why() {
    let alerts = replay_alerts("captures/office.pcap", None);
    assert_eq!(alerts.len(), 5);
    let dir = TempDir::new("rsyslog", "tls-refused");
    let pki = make_pki(&dir.0);
    let other = make_pki(&dir.path("other").tap_mkdir());
    let rsyslog = Rsyslog::start(
        &dir.0,
        Some(&pki),
        &[("tls", Input::Tls), ("mtls", Input::MutualTls)],
    );
    let mut wrong_ca = SyslogTarget::from_url(&rsyslog.url("tls"), SyslogFormat::Rfc5424).unwrap();
    wrong_ca.ca_file = Some(other.ca.clone());
    let mut no_client_cert =
        SyslogTarget::from_url(&rsyslog.url("mtls"), SyslogFormat::Rfc5424).unwrap();
    no_client_cert.ca_file = Some(pki.ca.clone());
    let sinks = SyslogSinks::start(&[wrong_ca.clone(), no_client_cert.clone()]).unwrap();
    sinks.send(&alerts);
    // Wait until each target has failed at least once, then stop without delivering.
    wait_for("failed TLS attempts", || {
        sinks
            .counters()
            .iter()
            .all(|(_, c)| c.connect_errors + c.closed_by_peer + c.send_errors > 0)
    });
    let counters = sinks.finish(Duration::ZERO);
    let c = counters_of(&counters, &wrong_ca.url);
    assert_eq!(c.sent, 0, "{c:?}");
    assert!(
        c.last_error
            .as_deref()
            .is_some_and(|e| e.contains("certificate")),
        "{c:?}"
    );
    assert_eq!(c.dropped["shutdown"], 5, "{c:?}");
    // rsyslog refuses the client without a certificate just after the handshake; the close is
    // seen before anything is written.
    let c = counters_of(&counters, &no_client_cert.url);
    assert_eq!(c.sent, 0, "{c:?}");
    assert!(
        c.last_error
            .as_deref()
            .is_some_and(|e| e.contains("closed the connection")),
        "{c:?}"
    );
    assert_eq!(c.dropped["shutdown"], 5, "{c:?}");
    assert!(rsyslog.messages("tls").is_empty());
    assert!(rsyslog.messages("mtls").is_empty());
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}

impl TapMkdir for PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}

#[test]
fn alerts_sent_while_rsyslog_is_down_arrive_after_it_restarts_and_overflow_is_counted() {
    let mut alerts = replay_alerts("captures/office.pcap", None);
    alerts.extend(replay_alerts(
        "captures/behaviour.pcap",
        Some("captures/behaviour.toml"),
    ));
    let n = alerts.len();
    let dir = TempDir::new("rsyslog", "outage");
    let mut rsyslog = Rsyslog::start(&dir.0, None, &[("tcp", Input::Tcp)]);
    let url = rsyslog.url("tcp");
    // Roomy: everything sent during the outage fits in memory.
    let mut roomy = SyslogTarget::from_url(&url, SyslogFormat::Rfc5424).unwrap();
    roomy.reconnect_max_seconds = 1;
    // Tiny: 2 in memory and a spool of a few messages, so most of the outage overflows.
    let mut tiny = roomy.clone();
    tiny.app_name = "tiny".into();
    tiny.queue_alerts = 2;
    tiny.spool_dir = Some(dir.path("spool"));
    tiny.spool_max_bytes = 3 * 3000;
    let sinks = SyslogSinks::start(&[roomy.clone()]).unwrap();
    let (before, during) = alerts.split_at(5);
    sinks.send(before);
    rsyslog.wait_messages("tcp", 5);
    rsyslog.kill();
    sinks.send(during);
    let tiny_sinks = SyslogSinks::start(&[tiny.clone()]).unwrap();
    tiny_sinks.send(&alerts);
    let c = &sinks.counters()[0].1;
    assert_eq!(
        c.sent, 5,
        "nothing is written into the dead connection: {c:?}"
    );
    let t = &tiny_sinks.counters()[0].1;
    assert!(t.spooled > 0 && t.dropped["spool_full"] > 0, "{t:?}");
    assert_eq!(t.queued + t.spooled + t.dropped_total(), n as u64, "{t:?}");
    rsyslog.restart();
    let c = sinks.finish(PATIENCE);
    let t = tiny_sinks.finish(PATIENCE);
    let (c, t) = (&c[0].1, &t[0].1);
    assert_eq!(c.sent, n as u64, "{c:?}");
    assert_eq!(c.dropped_total(), 0, "{c:?}");
    assert!(c.reconnects >= 1 && c.closed_by_peer >= 1, "{c:?}");
    // Tiny: what was not dropped (and counted) arrives.
    assert_eq!(t.sent + t.dropped_total(), n as u64, "{t:?}");
    assert_eq!(t.spool_bytes, 0, "{t:?}");
    let lines = rsyslog.wait_messages("tcp", n + t.sent as usize);
    let (tiny_lines, roomy_lines): (Vec<&String>, Vec<&String>) = lines
        .iter()
        .partition(|l| parse_rfc5424(l).unwrap().app_name == "tiny");
    assert_eq!(roomy_lines.len(), n);
    for (line, alert) in roomy_lines.iter().zip(&alerts) {
        check_rfc5424(line, alert);
    }
    assert_eq!(tiny_lines.len() as u64, t.sent);
    // In the order they were made: each delivered alert after the one before it.
    let mut next = 0;
    for line in tiny_lines {
        let fields = sd_fields(&parse_rfc5424(line).unwrap());
        let i = alerts[next..]
            .iter()
            .position(|a| json_fields(a) == fields)
            .unwrap_or_else(|| panic!("out of order or unknown: {line}"));
        next += i + 1;
    }
}

#[test]
fn replay_binary_sends_its_alerts_to_rsyslog_and_reports_them() {
    let dir = TempDir::new("rsyslog", "binary");
    let rsyslog = Rsyslog::start(&dir.0, None, &[("tcp", Input::Tcp)]);
    let url = rsyslog.url("tcp");
    let out = Command::new(env!("CARGO_BIN_EXE_egresswatch"))
        .args(["replay", "--format", "json", "--syslog", &url])
        .arg(repo("captures/office.pcap"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "syslog {url}: 5 sent, 0 spooled, 0 dropped, 0 reconnects"
        )),
        "{stderr}"
    );
    let stdout: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(stdout.len(), 5);
    let lines = rsyslog.wait_messages("tcp", 5);
    assert_eq!(lines.len(), 5);
    for (line, json) in lines.iter().zip(&stdout) {
        let m = parse_rfc5424(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let Value::Object(map) = json else { panic!() };
        let want: BTreeMap<String, String> = map
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_str().map_or_else(|| v.to_string(), str::to_string),
                )
            })
            .collect();
        assert_eq!(sd_fields(&m), want, "{line}");
        assert_ne!(
            m.procid,
            std::process::id().to_string(),
            "the binary's own PID"
        );
    }
    let _ = rsyslog.port("tcp");
}
