//! JSON lines of the shippers: Winlogbeat, Elastic Agent's Windows integration (ECS), and
//! Splunk's search export.
//!
//! - Winlogbeat (8.x file/Kafka/Logstash output): `winlog.event_data` holds the Sysmon fields
//!   by name; they are taken in the order the line has them (Winlogbeat itself does not keep
//!   Sysmon's order, so neither can we). System fields: `winlog.provider_name` (else
//!   `event.provider`, else `winlog.channel`), `winlog.event_id` (string or number; else
//!   `event.code`), `winlog.record_id`, `winlog.computer_name`; time `winlog.time_created`
//!   when present (TimeCreated itself), else `@timestamp`; `host.name` -> host.
//! - Elastic Agent (the `windows.sysmon_operational` data stream) indexes the same document
//!   after its ingest pipeline has moved most Sysmon fields to ECS fields. The reverse
//!   mapping below follows that pipeline (elastic/integrations,
//!   packages/windows/data_stream/sysmon_operational/elasticsearch/ingest_pipeline/default.yml,
//!   which also backs Winlogbeat 8's sysmon module). What is left in `winlog.event_data` is
//!   kept first and wins; the fields rebuilt from ECS follow in the order of [`from_ecs`].
//!   Rebuilt values are as close to Sysmon's rendering as the pipeline lets them be: hashes
//!   upper-cased again (`SHA1=..,MD5=..,SHA256=..,IMPHASH=..`), `Initiated` from
//!   `network.direction`, `QueryResults` from `dns.resolved_ip` (`::ffff:` before IPv4, as
//!   Sysmon writes them), a DWORD registry value as `DWORD (0x0000002a)`; `sysmon.dns.status`
//!   `SUCCESS` is `0`, other status names stay names.
//! - Splunk export (`{"preview":false,"result":{...}}`, or the result object alone): `_raw`
//!   is the event as `XmlWinEventLog` renders it (or a Sysmon for Linux syslog line);
//!   `host` -> host; `_time` is not used, TimeCreated is the time.
//!
//! Keys match nested (`{"process":{"executable":..}}`) or dotted (`{"process.executable":..}`),
//! as Kibana's exports write either.
use super::{InputFormat, Outcome};
use crate::endpoint::Platform;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

/// A JSON value that keeps the members of objects in the order of the text (serde_json's
/// `Value` does so only with a crate feature another dependency happens to turn on).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Json {
    Null,
    Bool(bool),
    Number(String),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Json, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
        Ok(Json::Number(v.to_string()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
        Ok(Json::Number(v.to_string()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Json, E> {
        Ok(Json::Number(v.to_string()))
    }
    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        Ok(Json::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Json, E> {
        Ok(Json::String(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut members = Vec::new();
        while let Some(member) = map.next_entry::<String, Json>()? {
            members.push(member);
        }
        Ok(Json::Object(members))
    }
}

impl Json {
    /// Parses one JSON text (serde_json's nesting limit keeps hostile depth off the stack).
    pub(super) fn parse(text: &str) -> Result<Json, String> {
        serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))
    }

    /// The member `key` of an object, exactly.
    fn member(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The value at a dotted path, through nested objects, dotted keys, or a mix.
    pub(super) fn get(&self, path: &str) -> Option<&Json> {
        if let Some(value) = self.member(path) {
            return Some(value);
        }
        path.match_indices('.').find_map(|(dot, _)| {
            let (head, tail) = (path.get(..dot)?, path.get(dot + 1..)?);
            self.member(head)?.get(tail)
        })
    }

    /// A scalar's text (numbers as written, booleans as `true`/`false`); an array's first
    /// scalar (ECS fields may be arrays); None for null and objects.
    pub(super) fn text(&self) -> Option<Cow<'_, str>> {
        match self {
            Json::String(s) | Json::Number(s) => Some(Cow::Borrowed(s)),
            Json::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
            Json::Array(items) => items.first().and_then(Json::text),
            Json::Null | Json::Object(_) => None,
        }
    }

    fn text_at(&self, path: &str) -> Option<Cow<'_, str>> {
        self.get(path).and_then(Json::text)
    }

    fn is_object(&self) -> bool {
        matches!(self, Json::Object(_))
    }

    /// Whether an ECS field group is present, nested or as dotted keys.
    fn has_group(&self, group: &str) -> bool {
        match self {
            Json::Object(members) => members.iter().any(|(k, _)| {
                k.strip_prefix(group)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
            }),
            _ => false,
        }
    }
}

/// Top-level ECS groups the Elastic Agent pipeline fills from Sysmon fields; Winlogbeat's own
/// output has none of them (it keeps everything under `winlog`).
const ECS_GROUPS: [&str; 9] = [
    "process",
    "source",
    "destination",
    "dns",
    "registry",
    "file",
    "network",
    "user",
    "data_stream",
];

/// The Splunk result object of a line: `result`, or the line itself when it has `_raw`.
fn splunk_result(doc: &Json) -> Option<&Json> {
    match doc.member("result") {
        Some(result) if result.is_object() => Some(result),
        _ => doc.member("_raw").map(|_| doc),
    }
}

/// Which shipper wrote a JSON line; None when it is none of them.
pub(super) fn classify(doc: &Json) -> Option<InputFormat> {
    if splunk_result(doc).is_some() {
        return Some(InputFormat::SplunkJson);
    }
    if !doc.has_group("winlog") {
        return None;
    }
    let ecs = doc.get("winlog.event_data").is_none() && !doc.has_group("winlog.event_data")
        || ECS_GROUPS.iter().any(|g| doc.has_group(g));
    Some(if ecs {
        InputFormat::ElasticEcsJson
    } else {
        InputFormat::WinlogbeatJson
    })
}

/// The event of one JSON line of any of the three shippers.
pub(super) fn outcome(doc: &Json) -> Outcome {
    if let Some(result) = splunk_result(doc) {
        return splunk(result);
    }
    match doc.has_group("winlog") {
        true => winlog_event(doc),
        false => Outcome::Unsupported(
            "a JSON object with neither winlog (Winlogbeat, Elastic Agent) nor _raw (Splunk)"
                .to_string(),
        ),
    }
}

fn splunk(result: &Json) -> Outcome {
    let Some(raw) = result.member("_raw") else {
        return Outcome::Unsupported("a Splunk result without _raw".to_string());
    };
    let Json::String(raw) = raw else {
        return Outcome::Malformed("Splunk _raw is not a string".to_string());
    };
    let host = result.text_at("host").map(Cow::into_owned);
    match super::text_event(raw) {
        Outcome::Event(mut event) => {
            event.host = host.or(event.host);
            Outcome::Event(event)
        }
        Outcome::Malformed(reason) if !raw.trim_start().starts_with('<') => {
            Outcome::Unsupported(format!(
                "Splunk _raw is neither an XML event nor a syslog line ({reason}); \
                 export sourcetype XmlWinEventLog, WinEventLog's text rendering is not read"
            ))
        }
        other => other,
    }
}

fn winlog_event(doc: &Json) -> Outcome {
    let text = |path: &str| doc.text_at(path);
    let provider = text("winlog.provider_name").or_else(|| text("event.provider"));
    let platform = match provider {
        Some(name) => Platform::from_provider(&name),
        None => match text("winlog.channel").as_deref() {
            Some("Microsoft-Windows-Sysmon/Operational") => Some(Platform::Windows),
            Some("Linux-Sysmon/Operational") => Some(Platform::Linux),
            Some(_) => None,
            None => {
                return Outcome::Malformed(
                    "neither winlog.provider_name nor winlog.channel".to_string(),
                );
            }
        },
    };
    let Some(platform) = platform else {
        return Outcome::NotSysmon;
    };
    let Some(event_id) = text("winlog.event_id").or_else(|| text("event.code")) else {
        return Outcome::Malformed("neither winlog.event_id nor event.code".to_string());
    };
    let Ok(event_id) = event_id.trim().parse::<u16>() else {
        return Outcome::Malformed(format!("event id {event_id:?} is not a number 0..65535"));
    };
    let Some((time_field, time)) = ["winlog.time_created", "@timestamp"]
        .into_iter()
        .find_map(|field| Some((field, text(field)?)))
    else {
        return Outcome::Malformed("neither winlog.time_created nor @timestamp".to_string());
    };
    let time_ns = match super::xml::parse_time(&time) {
        Ok(ns) => ns,
        Err(reason) => return Outcome::Malformed(format!("{time_field}: {reason}")),
    };
    let record_id = match text("winlog.record_id") {
        None => None,
        Some(id) => match id.trim().parse::<u64>() {
            Ok(id) => Some(id),
            Err(_) => {
                return Outcome::Malformed(format!("winlog.record_id {id:?} is not a number"));
            }
        },
    };
    let computer = ["winlog.computer_name", "host.hostname", "host.name"]
        .into_iter()
        .find_map(text)
        .unwrap_or_default()
        .into_owned();
    let mut data = event_data(doc);
    from_ecs(doc, event_id, &mut data);
    Outcome::Event(crate::endpoint::SysmonEvent {
        platform,
        event_id,
        time_ns,
        computer,
        record_id,
        host: text("host.name").map(Cow::into_owned),
        data,
    })
}

/// `winlog.event_data`'s fields in the line's order, nested or as dotted keys. Winlogbeat
/// writes every value as a string; a structured value is not a Sysmon field and is skipped.
fn event_data(doc: &Json) -> Vec<(String, String)> {
    let scalar = |value: &Json| match value {
        Json::String(s) | Json::Number(s) => Some(s.clone()),
        Json::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    let mut data = Vec::new();
    if let Some(Json::Object(members)) = doc.get("winlog.event_data") {
        for (name, value) in members {
            if let Some(value) = scalar(value) {
                data.push((name.clone(), value));
            }
        }
    } else if let Json::Object(members) = doc {
        for (key, value) in members {
            if let Some(name) = key.strip_prefix("winlog.event_data.")
                && let Some(value) = scalar(value)
            {
                data.push((name.to_string(), value));
            }
        }
    }
    data
}

/// Adds the Sysmon fields the Elastic pipeline moved to ECS fields, unless `data` (what was
/// left in `winlog.event_data`) has them already.
fn from_ecs(doc: &Json, event_id: u16, data: &mut Vec<(String, String)>) {
    let mut put = |name: &str, value: Option<Cow<'_, str>>| {
        if let Some(value) = value.filter(|v| !v.is_empty())
            && !data.iter().any(|(n, _)| n == name)
        {
            data.push((name.to_string(), value.into_owned()));
        }
    };
    let text = |path: &str| doc.text_at(path);
    put("RuleName", text("rule.name"));
    // Events 8 (CreateRemoteThread) and 10 (ProcessAccess) name a source process; the
    // pipeline moves its Source* fields to process.*.
    let (guid, pid, image) = if matches!(event_id, 8 | 10) {
        ("SourceProcessGuid", "SourceProcessId", "SourceImage")
    } else {
        ("ProcessGuid", "ProcessId", "Image")
    };
    put(guid, text("process.entity_id"));
    put(pid, text("process.pid"));
    put(image, text("process.executable"));
    // Event 7 (ImageLoaded) describes the loaded file, the others the process.
    let (hashed, original) = if event_id == 7 {
        ("file", text("file.pe.original_file_name"))
    } else if matches!(event_id, 6 | 15 | 26 | 29) {
        ("file", text("process.pe.original_file_name"))
    } else {
        ("process", text("process.pe.original_file_name"))
    };
    put("OriginalFileName", original);
    put("CommandLine", text("process.command_line"));
    put("CurrentDirectory", text("process.working_directory"));
    put("User", user(doc));
    put("Hashes", hashes(doc, hashed).map(Cow::Owned));
    put("ParentProcessGuid", text("process.parent.entity_id"));
    put("ParentProcessId", text("process.parent.pid"));
    put("ParentImage", text("process.parent.executable"));
    put("ParentCommandLine", text("process.parent.command_line"));
    put("Protocol", text("network.transport"));
    let initiated = match text("network.direction").as_deref() {
        Some("egress") => Some(Cow::Borrowed("true")),
        Some("ingress") => Some(Cow::Borrowed("false")),
        _ => None,
    };
    put("Initiated", initiated);
    put("SourceIp", text("source.ip"));
    put("SourceHostname", text("source.domain"));
    put("SourcePort", text("source.port"));
    put("DestinationIp", text("destination.ip"));
    put("DestinationHostname", text("destination.domain"));
    put("DestinationPort", text("destination.port"));
    put("QueryName", text("dns.question.name"));
    let status = text("sysmon.dns.status").map(|s| match s.as_ref() {
        "SUCCESS" => Cow::Borrowed("0"),
        _ => s,
    });
    put("QueryStatus", status);
    put("QueryResults", query_results(doc).map(Cow::Owned));
    put("TargetObject", text("registry.path"));
    put("Details", registry_details(doc));
    let file = match event_id {
        6 | 7 => "ImageLoaded",
        9 => "Device",
        _ => "TargetFilename",
    };
    put(file, text("file.path"));
    if matches!(event_id, 17 | 18) {
        put("PipeName", text("file.name"));
    }
}

/// `DOMAIN\name` as Sysmon writes User (the pipeline splits it at the backslash).
fn user(doc: &Json) -> Option<Cow<'_, str>> {
    let name = doc.text_at("user.name")?;
    Some(match doc.text_at("user.domain") {
        Some(domain) if !domain.is_empty() => Cow::Owned(format!("{domain}\\{name}")),
        _ => name,
    })
}

/// Sysmon's `Hashes` from `<group>.hash.*` and `<group>.pe.imphash` (lower-cased by the
/// pipeline; Sysmon writes upper-case hex).
fn hashes(doc: &Json, group: &str) -> Option<String> {
    let hash = doc.get(&format!("{group}.hash"));
    let mut parts = Vec::new();
    for (key, label) in [("sha1", "SHA1"), ("md5", "MD5"), ("sha256", "SHA256")] {
        if let Some(value) = hash.and_then(|h| h.text_at(key)) {
            parts.push(format!("{label}={}", value.to_ascii_uppercase()));
        }
    }
    if let Some(value) = doc.text_at(&format!("{group}.pe.imphash")) {
        parts.push(format!("IMPHASH={}", value.to_ascii_uppercase()));
    }
    (!parts.is_empty()).then(|| parts.join(","))
}

/// Sysmon's `QueryResults` (`::ffff:203.0.113.50;`) from `dns.resolved_ip`, CNAMEs first as
/// Sysmon lists them (`type:  5 name;`).
fn query_results(doc: &Json) -> Option<String> {
    let mut out = String::new();
    if let Some(Json::Array(answers)) = doc.get("dns.answers") {
        for answer in answers {
            if answer.text_at("type").as_deref() == Some("CNAME")
                && let Some(name) = answer.text_at("data")
            {
                out.push_str(&format!("type:  5 {name};"));
            }
        }
    }
    let ips = match doc.get("dns.resolved_ip") {
        Some(Json::Array(ips)) => ips.iter().filter_map(Json::text).collect(),
        Some(ip) => ip.text().into_iter().collect(),
        None => Vec::new(),
    };
    for ip in ips {
        match ip.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(_)) => out.push_str(&format!("::ffff:{ip};")),
            _ => out.push_str(&format!("{ip};")),
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Sysmon's `Details` from `registry.data.strings[0]`; the pipeline turned a DWORD into its
/// decimal value, Sysmon writes `DWORD (0x0000002a)`.
fn registry_details(doc: &Json) -> Option<Cow<'_, str>> {
    let value = doc.text_at("registry.data.strings")?;
    if doc.text_at("registry.data.type").as_deref() == Some("SZ_DWORD")
        && let Ok(n) = value.parse::<u32>()
    {
        return Some(Cow::Owned(format!("DWORD (0x{n:08x})")));
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_keep_their_order_and_paths_mix_nesting_and_dots() {
        let doc =
            Json::parse(r#"{"b":1,"a":{"x.y":{"z":true}},"a.q":"s","n":null,"l":[2,3]}"#).unwrap();
        let Json::Object(members) = &doc else {
            panic!("not an object")
        };
        let keys: Vec<&str> = members.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["b", "a", "a.q", "n", "l"]);
        assert_eq!(doc.text_at("a.x.y.z").as_deref(), Some("true"));
        assert_eq!(doc.text_at("a.q").as_deref(), Some("s"));
        assert_eq!(doc.text_at("b").as_deref(), Some("1"));
        assert_eq!(doc.text_at("l").as_deref(), Some("2"));
        assert_eq!(doc.text_at("n"), None);
        assert_eq!(doc.text_at("a"), None);
        assert_eq!(doc.text_at("a.x"), None);
        assert!(doc.has_group("a") && !doc.has_group("x"));
    }

    #[test]
    fn depth_is_bounded() {
        let deep = "[".repeat(100_000);
        assert!(Json::parse(&deep).unwrap_err().contains("recursion"));
    }

    #[test]
    fn classification() {
        let kind = |text: &str| classify(&Json::parse(text).unwrap());
        assert_eq!(
            kind(r#"{"preview":false,"result":{"_raw":"<Event/>"}}"#),
            Some(InputFormat::SplunkJson)
        );
        assert_eq!(
            kind(r#"{"_raw":"x","host":"h"}"#),
            Some(InputFormat::SplunkJson)
        );
        assert_eq!(
            kind(r#"{"winlog":{"event_data":{"Image":"x"}},"host":{"name":"h"}}"#),
            Some(InputFormat::WinlogbeatJson)
        );
        assert_eq!(
            kind(r#"{"winlog":{"event_data":{"LogonId":"0x1"}},"process":{"pid":1}}"#),
            Some(InputFormat::ElasticEcsJson)
        );
        assert_eq!(
            kind(r#"{"winlog":{"event_id":"1"}}"#),
            Some(InputFormat::ElasticEcsJson)
        );
        assert_eq!(
            kind(r#"{"winlog":{},"process.pid":1,"winlog.event_data":{}}"#),
            Some(InputFormat::ElasticEcsJson)
        );
        assert_eq!(kind(r#"{"preview":false,"lastrow":true}"#), None);
        assert_eq!(kind(r#"[1]"#), None);
    }
}
