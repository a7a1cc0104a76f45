//! The `endpoint` scenario's files (captures/endpoint.pcap, captures/endpoint.truth.json and
//! captures/endpoint/*) against the event list they are written from
//! (`egresswatch::generate::endpoint_events`), each parsed here on its own terms with
//! serde_json, quick-xml and a header walk of the pcap — not with the crate's readers.
mod common;
use common::TempDir;
use egresswatch::config::Config;
use egresswatch::endpoint::{Platform, SysmonEvent};
use egresswatch::generate::{GenerateOptions, Scenario, endpoint_events, generate};
use egresswatch::pipeline::{ReplayOptions, replay};
use quick_xml::events::Event;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

const FILES: [&str; 8] = [
    "sysmon-WIN-DESK-07.evtx",
    "sysmon-WIN-LAB-03.evtx",
    "sysmon-WIN-SRV-12.evtx",
    "sysmon-WIN-DESK-08.evtx",
    "winlogbeat.ndjson",
    "elastic-agent.ndjson",
    "splunk.json",
    "sysmon-linux.log",
];
const SOURCETYPE: &str = "XmlWinEventLog:Microsoft-Windows-Sysmon/Operational";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn committed(name: &str) -> PathBuf {
    repo("captures/endpoint").join(name)
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn events() -> Vec<SysmonEvent> {
    endpoint_events(1).unwrap()
}

fn windows(events: &[SysmonEvent]) -> Vec<&SysmonEvent> {
    events
        .iter()
        .filter(|e| e.platform == Platform::Windows)
        .collect()
}

fn ms(e: &SysmonEvent) -> u64 {
    e.time_ns / 1_000_000
}

fn ms_of_rfc3339(s: &str) -> u64 {
    let t = chrono::DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("{s}: {e}"));
    t.timestamp_millis() as u64
}

/// The truth without the fields that name where it was written.
fn without_paths(mut truth: Value) -> Value {
    truth["generator_command"] = Value::Null;
    truth["files"]["dir"] = Value::Null;
    truth
}

// ---------------------------------------------------------------------------------------
// An event's XML, read with quick-xml

#[derive(Debug, Default)]
struct XmlEvent {
    xmlns: Option<String>,
    provider: String,
    provider_guid: String,
    event_id: u16,
    version: u8,
    system_time: String,
    record_id: u64,
    channel: String,
    computer: String,
    data: Vec<(String, String)>,
}

fn attr(e: &quick_xml::events::BytesStart<'_>, name: &str) -> Option<String> {
    e.attributes()
        .map(|a| a.unwrap())
        .find(|a| a.key.as_ref() == name.as_bytes())
        .map(|a| a.unescape_value().unwrap().into_owned())
}

fn parse_event_xml(xml: &str) -> XmlEvent {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut ev = XmlEvent::default();
    let mut path: Vec<String> = Vec::new();
    let mut text = String::new();
    let mut data_name: Option<String> = None;
    loop {
        match reader.read_event().unwrap() {
            Event::Start(e) => {
                let name = String::from_utf8(e.name().as_ref().to_vec()).unwrap();
                if name == "Event" {
                    ev.xmlns = attr(&e, "xmlns");
                }
                if name == "Data" {
                    data_name = Some(attr(&e, "Name").expect("Data has a Name"));
                }
                path.push(name);
                text.clear();
            }
            Event::Empty(e) => match e.name().as_ref() {
                b"Provider" => {
                    ev.provider = attr(&e, "Name").unwrap();
                    ev.provider_guid = attr(&e, "Guid").unwrap();
                }
                b"TimeCreated" => ev.system_time = attr(&e, "SystemTime").unwrap(),
                b"Data" => ev.data.push((attr(&e, "Name").unwrap(), String::new())),
                _ => {}
            },
            Event::Text(t) => text.push_str(&t.decode().unwrap()),
            Event::GeneralRef(r) => match r.resolve_char_ref().unwrap() {
                Some(c) => text.push(c),
                None => text.push(match r.decode().unwrap().as_ref() {
                    "amp" => '&',
                    "lt" => '<',
                    "gt" => '>',
                    "apos" => '\'',
                    "quot" => '"',
                    other => panic!("unknown entity &{other};"),
                }),
            },
            Event::End(_) => {
                let name = path.pop().unwrap();
                match name.as_str() {
                    "EventID" => ev.event_id = text.parse().unwrap(),
                    "Version" => ev.version = text.parse().unwrap(),
                    "EventRecordID" => ev.record_id = text.parse().unwrap(),
                    "Channel" => ev.channel = text.clone(),
                    "Computer" => ev.computer = text.clone(),
                    "Data" => ev.data.push((data_name.take().unwrap(), text.clone())),
                    _ => {}
                }
                text.clear();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    assert!(path.is_empty(), "unbalanced XML: {xml}");
    ev
}

/// The XML carries exactly the event: System fields and every Data in order.
fn assert_xml_is(x: &XmlEvent, e: &SysmonEvent) {
    let what = format!("{} record {:?}", e.computer, e.record_id);
    assert_eq!(x.provider, e.platform.provider(), "{what}");
    assert_eq!(x.event_id, e.event_id, "{what}");
    assert_eq!(Some(x.record_id), e.record_id, "{what}");
    assert_eq!(x.computer, e.computer, "{what}");
    assert_eq!(ms_of_rfc3339(&x.system_time), ms(e), "{what}");
    assert_eq!(x.data, e.data, "{what}");
    let expected_version = match e.event_id {
        11 | 13 => 2,
        _ => 5,
    };
    assert_eq!(x.version, expected_version, "{what}");
}

// ---------------------------------------------------------------------------------------
// The capture, walked by hand (IPv4 only; bulk frames are sliced to their headers)

#[derive(Debug, Clone)]
struct Packet {
    ts_us: u64,
    proto: u8,
    src: Ipv4Addr,
    sport: u16,
    dst: Ipv4Addr,
    dport: u16,
    tcp_flags: u8,
    payload: Vec<u8>,
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

fn packets(pcap: &[u8]) -> Vec<Packet> {
    assert_eq!(&pcap[..4], &0xa1b2_c3d4u32.to_le_bytes(), "µs pcap");
    assert_eq!(u32::from_le_bytes(pcap[20..24].try_into().unwrap()), 1);
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= pcap.len() {
        let word = |o: usize| u32::from_le_bytes(pcap[at + o..at + o + 4].try_into().unwrap());
        let ts_us = u64::from(word(0)) * 1_000_000 + u64::from(word(4));
        let incl = word(8) as usize;
        let f = &pcap[at + 16..at + 16 + incl];
        at += 16 + incl;
        assert_eq!(u16::from_be_bytes([f[12], f[13]]), 0x0800, "IPv4 only");
        let ip = &f[14..];
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        let l4 = &ip[ihl..];
        let (hdr, flags) = match ip[9] {
            6 => (usize::from(l4[12] >> 4) * 4, l4[13]),
            17 => (8, 0),
            p => panic!("protocol {p}"),
        };
        let captured_end = ip.len().min(total);
        out.push(Packet {
            ts_us,
            proto: ip[9],
            src: Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
            sport: u16::from_be_bytes([l4[0], l4[1]]),
            dst: Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
            dport: u16::from_be_bytes([l4[2], l4[3]]),
            tcp_flags: flags,
            payload: ip[(ihl + hdr).min(captured_end)..captured_end].to_vec(),
        });
    }
    assert_eq!(at, pcap.len(), "trailing bytes");
    out
}

type Tuple = (u8, Ipv4Addr, u16, Ipv4Addr, u16);

fn tuple_of(e: &SysmonEvent) -> Tuple {
    let proto = match e.raw("Protocol").unwrap() {
        "tcp" => 6,
        "udp" => 17,
        p => panic!("protocol {p}"),
    };
    (
        proto,
        e.raw("SourceIp").unwrap().parse().unwrap(),
        e.raw("SourcePort").unwrap().parse().unwrap(),
        e.raw("DestinationIp").unwrap().parse().unwrap(),
        e.raw("DestinationPort").unwrap().parse().unwrap(),
    )
}

/// Flows by the 5-tuple of their first packet (the originator's side), packets in order.
fn flows(pkts: &[Packet]) -> BTreeMap<Tuple, Vec<Packet>> {
    let mut flows: BTreeMap<Tuple, Vec<Packet>> = BTreeMap::new();
    for p in pkts {
        let fwd = (p.proto, p.src, p.sport, p.dst, p.dport);
        let rev = (p.proto, p.dst, p.dport, p.src, p.sport);
        if let Some(f) = flows.get_mut(&rev) {
            f.push(p.clone());
        } else {
            flows.entry(fwd).or_default().push(p.clone());
        }
    }
    flows
}

fn dns_question(payload: &[u8]) -> (String, bool, Vec<Ipv4Addr>) {
    let msg = simple_dns::Packet::parse(payload).unwrap();
    let name = msg.questions[0].qname.to_string();
    let answers = msg
        .answers
        .iter()
        .filter_map(|rr| match &rr.rdata {
            simple_dns::rdata::RData::A(a) => Some(Ipv4Addr::from(a.address)),
            _ => None,
        })
        .collect();
    (
        name,
        msg.has_flags(simple_dns::PacketFlag::RESPONSE),
        answers,
    )
}

// ---------------------------------------------------------------------------------------
// Tests

/// Same seed, same bytes, and those are the committed files; another seed differs; the
/// committed set stays small; `endpoint_dir` puts the Sysmon files where asked.
#[test]
fn generation_is_deterministic_and_committed() {
    let dir = TempDir::new("endpoint", "det");
    let run = |sub: &str, seed: u64, endpoint_dir: Option<PathBuf>| {
        let d = dir.path(sub);
        std::fs::create_dir_all(&d).unwrap();
        let opts = GenerateOptions {
            scenario: Scenario::Endpoint,
            seed,
            endpoint_dir,
            ..GenerateOptions::default()
        };
        let (pcap, truth) = (d.join("endpoint.pcap"), d.join("endpoint.truth.json"));
        let summary = generate(&opts, &pcap, Some(&truth)).unwrap();
        (d, summary)
    };
    let (a, sa) = run("a", 1, None);
    let (b, _) = run("b", 1, None);
    for f in FILES {
        let fresh = std::fs::read(a.join("endpoint").join(f)).unwrap();
        assert!(!fresh.is_empty(), "{f} is empty");
        assert!(
            fresh == std::fs::read(b.join("endpoint").join(f)).unwrap(),
            "{f} differs"
        );
        assert!(
            fresh == std::fs::read(committed(f)).unwrap(),
            "regenerate captures/endpoint/{f}"
        );
    }
    let pcap = std::fs::read(a.join("endpoint.pcap")).unwrap();
    assert_eq!(pcap, std::fs::read(b.join("endpoint.pcap")).unwrap());
    assert!(
        pcap == std::fs::read(repo("captures/endpoint.pcap")).unwrap(),
        "regenerate captures/endpoint.pcap"
    );
    let truth = without_paths(read_json(&a.join("endpoint.truth.json")));
    assert_eq!(
        truth,
        without_paths(read_json(&b.join("endpoint.truth.json")))
    );
    assert!(
        truth == without_paths(read_json(&repo("captures/endpoint.truth.json"))),
        "regenerate captures/endpoint.truth.json"
    );
    assert_eq!(truth["packets"], sa.packets);

    let (c, _) = run("c", 2, None);
    assert_ne!(pcap, std::fs::read(c.join("endpoint.pcap")).unwrap());
    assert_ne!(endpoint_events(1).unwrap(), endpoint_events(2).unwrap());

    let elsewhere = dir.path("sysmon-files");
    let (d, _) = run("d", 1, Some(elsewhere.clone()));
    assert!(!d.join("endpoint").exists());
    for f in FILES {
        assert!(
            std::fs::read(elsewhere.join(f)).unwrap() == std::fs::read(committed(f)).unwrap(),
            "{f} in --endpoint-dir"
        );
    }
    let command = read_json(&d.join("endpoint.truth.json"))["generator_command"].clone();
    let command = command.as_str().unwrap();
    assert!(
        command.starts_with("egresswatch generate --scenario endpoint --seed 1 --out ")
            && command.ends_with(&format!(" --endpoint-dir {}", elsewhere.display())),
        "{command}"
    );

    let mut total = std::fs::metadata(repo("captures/endpoint.pcap"))
        .unwrap()
        .len()
        + std::fs::metadata(repo("captures/endpoint.truth.json"))
            .unwrap()
            .len();
    for entry in std::fs::read_dir(repo("captures/endpoint")).unwrap() {
        total += entry.unwrap().metadata().unwrap().len();
    }
    assert!(total < 1_000_000, "endpoint files too big: {total} bytes");
}

/// Every network event's 5-tuple is a flow of the capture starting at the event's time, and
/// every flow an inside host starts is one of them, or (Windows DNS) an Event 22's query.
#[test]
fn capture_carries_the_network_events() {
    let events = events();
    let pkts = packets(&std::fs::read(repo("captures/endpoint.pcap")).unwrap());
    let flows = flows(&pkts);
    let resolver: Ipv4Addr = "10.20.0.2".parse().unwrap();
    let mut explained: BTreeSet<Tuple> = BTreeSet::new();

    for e in events.iter().filter(|e| e.event_id == 3) {
        let t = tuple_of(e);
        let flow = flows
            .get(&t)
            .unwrap_or_else(|| panic!("no flow for Event 3 {t:?} of {}", e.computer));
        explained.insert(t);
        let first = &flow[0];
        // Same millisecond (the writer keeps packet times strictly increasing by a µs).
        assert_eq!(first.ts_us / 1_000, ms(e), "{t:?} starts with its event");
        let replies = flow.iter().filter(|p| p.src == t.3).count();
        match (t.0, t.4) {
            (6, 80) => {
                // The fan-out: a SYN and its retransmission, nothing back.
                assert_eq!(flow.len(), 2, "{t:?}");
                assert!(flow.iter().all(|p| p.tcp_flags == SYN), "{t:?}");
                assert_eq!(replies, 0, "{t:?}");
            }
            (6, 443) => {
                assert_eq!(first.tcp_flags, SYN, "{t:?}");
                assert!(
                    flow.iter()
                        .any(|p| p.src == t.3 && p.tcp_flags == SYN | ACK),
                    "{t:?} answered"
                );
                let name = e.raw("DestinationHostname").unwrap();
                assert!(
                    flow.iter().any(|p| p.src == t.1
                        && p.payload.first() == Some(&0x16)
                        && p.payload.windows(name.len()).any(|w| w == name.as_bytes())),
                    "{t:?}: no ClientHello naming {name}"
                );
            }
            (17, 53) => {
                assert_eq!(e.platform, Platform::Linux);
                let (qname, response, _) = dns_question(&first.payload);
                assert!(!response);
                let asked = e.raw("Image").unwrap();
                assert_eq!(asked, "/usr/bin/dig");
                let pid = e.raw("ProcessId").unwrap();
                let dig = events
                    .iter()
                    .find(|x| x.event_id == 1 && x.raw("ProcessId") == Some(pid))
                    .unwrap();
                assert_eq!(dig.raw("CommandLine").unwrap(), format!("dig {qname}"));
                let answer = flow.iter().find(|p| p.src == resolver).unwrap();
                let (_, response, addrs) = dns_question(&answer.payload);
                assert!(response && addrs.len() == 1, "{t:?}");
            }
            other => panic!("unexpected Event 3 {other:?}"),
        }
    }

    // Windows Event 22: the host's query for the name leaves shortly before the event and
    // is answered with the address Sysmon reports.
    for e in events.iter().filter(|e| e.event_id == 22) {
        let host: Ipv4Addr = match e.computer.as_str() {
            "WIN-DESK-07.corp.example" => "10.20.0.17",
            "WIN-LAB-03.corp.example" => "10.20.0.33",
            "WIN-SRV-12.corp.example" => "10.20.0.12",
            "WIN-DESK-08.corp.example" => "10.20.0.18",
            other => panic!("Event 22 on {other}"),
        }
        .parse()
        .unwrap();
        let name = e.raw("QueryName").unwrap();
        let want: Ipv4Addr = e
            .raw("QueryResults")
            .unwrap()
            .trim_start_matches("::ffff:")
            .trim_end_matches(';')
            .parse()
            .unwrap();
        let t = ms(e) * 1_000;
        let (tuple, flow) = flows
            .iter()
            .find(|((p, s, _, d, dp), f)| {
                *p == 17
                    && *s == host
                    && *d == resolver
                    && *dp == 53
                    && f[0].ts_us < t
                    && f[0].ts_us + 100_000 > t
                    && dns_question(&f[0].payload).0 == name
            })
            .unwrap_or_else(|| panic!("no query for {name} before {e:?}"));
        let answer = flow.iter().find(|p| p.src == resolver).unwrap();
        assert!(answer.ts_us <= t, "{name} answered after the event");
        assert_eq!(dns_question(&answer.payload).2, [want]);
        explained.insert(*tuple);
    }

    let unexplained: Vec<&Tuple> = flows.keys().filter(|t| !explained.contains(t)).collect();
    assert!(
        unexplained.is_empty(),
        "flows without an event: {unexplained:?}"
    );
}

/// winlogbeat.ndjson: one document per Windows event, in order, with Winlogbeat 8's layout.
#[test]
fn winlogbeat_holds_exactly_the_windows_events() {
    let events = events();
    let want = windows(&events);
    let docs: Vec<Value> = lines(&committed("winlogbeat.ndjson"))
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(docs.len(), want.len());
    for (doc, e) in docs.iter().zip(want) {
        let w = &doc["winlog"];
        assert_eq!(w["event_id"], e.event_id.to_string());
        assert_eq!(doc["event"]["code"], e.event_id.to_string());
        assert_eq!(w["record_id"].as_u64(), e.record_id);
        assert_eq!(w["computer_name"], e.computer.as_str());
        assert_eq!(w["provider_name"], "Microsoft-Windows-Sysmon");
        assert_eq!(w["channel"], "Microsoft-Windows-Sysmon/Operational");
        assert_eq!(ms_of_rfc3339(doc["@timestamp"].as_str().unwrap()), ms(e));
        let host = doc["host"]["name"].as_str().unwrap();
        assert_eq!(host, e.host.as_deref().unwrap().to_ascii_lowercase());
        let data: BTreeMap<&str, &str> = w["event_data"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
            .collect();
        let expected: BTreeMap<&str, &str> = e
            .data
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(data, expected, "record {:?}", e.record_id);
    }
}

/// splunk.json: one export line per Windows event, newest first; `_raw` is the event's XML.
#[test]
fn splunk_export_holds_exactly_the_windows_events() {
    let events = events();
    let want = windows(&events);
    let lines = lines(&committed("splunk.json"));
    assert_eq!(lines.len(), want.len());
    for (line, e) in lines.iter().zip(want.iter().rev()) {
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["preview"], false);
        let r = &v["result"];
        assert_eq!(r["sourcetype"], SOURCETYPE);
        assert_eq!(r["source"], SOURCETYPE);
        assert_eq!(r["index"], "wineventlog");
        assert_eq!(r["host"], e.host.as_deref().unwrap());
        assert_eq!(ms_of_rfc3339(r["_time"].as_str().unwrap()), ms(e));
        let x = parse_event_xml(r["_raw"].as_str().unwrap());
        assert_eq!(
            x.xmlns.as_deref(),
            Some("http://schemas.microsoft.com/win/2004/08/events/event")
        );
        assert_eq!(x.provider_guid, "{5770385f-c22a-43e0-bf4c-06f5698ffbd9}");
        assert_eq!(x.channel, "Microsoft-Windows-Sysmon/Operational");
        assert_xml_is(&x, e);
    }
}

/// sysmon-linux.log: rsyslog lines; the `sysmon:` ones are exactly the Linux events.
#[test]
fn syslog_holds_exactly_the_linux_events() {
    let events = events();
    let want: Vec<&SysmonEvent> = events
        .iter()
        .filter(|e| e.platform == Platform::Linux)
        .collect();
    assert_eq!(want.len(), 10);
    let mut sysmon = Vec::new();
    let mut others = 0;
    for line in lines(&committed("sysmon-linux.log")) {
        // RFC 3164 header as rsyslog's traditional file format writes it.
        let (stamp, rest) = line.split_at(15);
        let (host, rest) = rest.trim_start().split_once(' ').unwrap();
        assert_eq!(host, "ubuntu-build-2");
        let stamp =
            chrono::NaiveDateTime::parse_from_str(&format!("2026 {stamp}"), "%Y %b %e %H:%M:%S")
                .unwrap_or_else(|e| panic!("{stamp}: {e}"));
        match rest.strip_prefix("sysmon: ") {
            Some(xml) => sysmon.push((stamp, parse_event_xml(xml))),
            None => others += 1,
        }
    }
    assert_eq!(others, 2);
    assert_eq!(sysmon.len(), want.len());
    for ((stamp, x), e) in sysmon.iter().zip(want) {
        assert_eq!(stamp.and_utc().timestamp() as u64, ms(e) / 1_000);
        assert_eq!(x.xmlns, None);
        assert_eq!(x.provider_guid, "{ff032593-a8d3-4f13-b0d6-01fc615a0f97}");
        assert_eq!(x.channel, "Linux-Sysmon/Operational");
        assert!(x.system_time.ends_with("000000Z") && x.system_time.len() == 30);
        assert_xml_is(x, e);
    }
}

/// sysmon-<host>.evtx, read with the evtx crate (checksums checked): one log per Windows
/// computer holding exactly its events, in record-id order.
#[test]
fn evtx_logs_hold_exactly_the_windows_events() {
    let events = events();
    let mut read = 0;
    for file in FILES.iter().filter(|f| f.ends_with(".evtx")) {
        let host = file.trim_start_matches("sysmon-").trim_end_matches(".evtx");
        let mut want: Vec<&SysmonEvent> = windows(&events)
            .into_iter()
            .filter(|e| e.host.as_deref() == Some(host))
            .collect();
        want.sort_by_key(|e| e.record_id);
        let bytes = std::fs::read(committed(file)).unwrap();
        let mut parser = evtx::EvtxParser::from_buffer(bytes)
            .unwrap()
            .with_configuration(
                evtx::ParserSettings::new()
                    .validate_checksums(true)
                    .num_threads(1),
            );
        let records: Vec<_> = parser.records().map(|r| r.unwrap()).collect();
        assert_eq!(records.len(), want.len(), "{file}");
        assert!(!records.is_empty(), "{file}");
        for (record, e) in records.iter().zip(want) {
            assert_eq!(Some(record.event_record_id), e.record_id);
            assert_eq!(record.timestamp.as_nanosecond(), i128::from(e.time_ns));
            let x = parse_event_xml(&record.data);
            assert_eq!(x.channel, "Microsoft-Windows-Sysmon/Operational");
            assert_xml_is(&x, e);
        }
        read += records.len();
    }
    assert_eq!(read, windows(&events).len());
}

/// elastic-agent.ndjson: one document per Windows event with the integration's ECS fields.
#[test]
fn elastic_agent_maps_the_windows_events() {
    let events = events();
    let want = windows(&events);
    let docs: Vec<Value> = lines(&committed("elastic-agent.ndjson"))
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(docs.len(), want.len());
    let num = |e: &SysmonEvent, f: &str| e.raw(f).unwrap().parse::<u64>().unwrap();
    for (d, e) in docs.iter().zip(want) {
        let what = format!("record {:?}", e.record_id);
        assert_eq!(d["winlog"]["record_id"], e.record_id.unwrap().to_string());
        assert_eq!(d["winlog"]["event_id"], e.event_id.to_string());
        assert_eq!(d["winlog"]["computer_name"], e.computer.as_str());
        assert_eq!(d["data_stream"]["dataset"], "windows.sysmon_operational");
        assert_eq!(ms_of_rfc3339(d["@timestamp"].as_str().unwrap()), ms(e));
        assert_eq!(
            d["process"]["executable"],
            e.raw("Image").unwrap(),
            "{what}"
        );
        assert_eq!(d["process"]["pid"], num(e, "ProcessId"), "{what}");
        assert_eq!(d["process"]["entity_id"], e.raw("ProcessGuid").unwrap());
        let (domain, name) = e.raw("User").unwrap().split_once('\\').unwrap();
        assert_eq!(d["user"]["domain"], domain, "{what}");
        assert_eq!(d["user"]["name"], name, "{what}");
        if let Some(rest) = d["winlog"]["event_data"].as_object() {
            assert!(
                rest.values().all(|v| v != "-"),
                "{what}: `-` left in event_data"
            );
        }
        match e.event_id {
            1 => {
                assert_eq!(d["process"]["command_line"], e.raw("CommandLine").unwrap());
                assert_eq!(
                    d["process"]["parent"]["executable"],
                    e.raw("ParentImage").unwrap()
                );
                assert_eq!(d["process"]["parent"]["pid"], num(e, "ParentProcessId"));
                let original = e.raw("OriginalFileName").unwrap();
                assert_eq!(d["process"]["pe"]["original_file_name"], original);
                let sha256 = e
                    .raw("Hashes")
                    .unwrap()
                    .split(',')
                    .find_map(|h| h.strip_prefix("SHA256="));
                assert_eq!(
                    d["process"]["hash"]["sha256"].as_str(),
                    sha256.map(str::to_ascii_lowercase).as_deref(),
                    "{what}"
                );
            }
            3 => {
                assert_eq!(d["source"]["ip"], e.raw("SourceIp").unwrap());
                assert_eq!(d["source"]["port"], num(e, "SourcePort"));
                assert_eq!(d["destination"]["ip"], e.raw("DestinationIp").unwrap());
                assert_eq!(d["destination"]["port"], num(e, "DestinationPort"));
                assert_eq!(d["network"]["transport"], e.raw("Protocol").unwrap());
                assert_eq!(d["network"]["direction"], "egress");
                match e.get("DestinationHostname") {
                    Some(h) => assert_eq!(d["destination"]["domain"], h),
                    None => assert!(d["destination"].get("domain").is_none(), "{what}"),
                }
            }
            11 => assert_eq!(d["file"]["path"], e.raw("TargetFilename").unwrap()),
            13 => {
                assert_eq!(d["registry"]["path"], e.raw("TargetObject").unwrap());
                assert_eq!(
                    d["registry"]["data"]["strings"][0],
                    e.raw("Details").unwrap()
                );
                assert_eq!(d["registry"]["value"], "Traffmonetizer");
            }
            22 => {
                assert_eq!(d["dns"]["question"]["name"], e.raw("QueryName").unwrap());
                let ip = e.raw("QueryResults").unwrap();
                let ip = ip.trim_start_matches("::ffff:").trim_end_matches(';');
                assert_eq!(d["dns"]["resolved_ip"][0], ip);
            }
            other => panic!("Windows event {other}"),
        }
    }
}

/// The truth's hosts, expectations and look-alikes are those of the event list, and the list
/// keeps the clock rules (whole milliseconds, none shared, inside the ten minutes).
#[test]
fn truth_is_consistent_with_the_events() {
    let events = events();
    let truth = read_json(&repo("captures/endpoint.truth.json"));
    let start = ms_of_rfc3339(truth["start"].as_str().unwrap());
    let end = ms_of_rfc3339(truth["end"].as_str().unwrap());
    assert_eq!(end - start, 600_000);
    let mut seen = BTreeSet::new();
    for e in &events {
        assert_eq!(e.time_ns % 1_000_000, 0);
        assert!(seen.insert(ms(e)), "two events at {}", ms(e));
        assert!(start <= ms(e) && ms(e) < end);
    }
    assert!(events.windows(2).all(|w| w[0].time_ns < w[1].time_ns));
    let by_record: BTreeMap<u64, &SysmonEvent> =
        events.iter().map(|e| (e.record_id.unwrap(), e)).collect();
    assert_eq!(by_record.len(), events.len(), "record ids are unique");
    let wins = events
        .iter()
        .filter(|e| e.platform == Platform::Windows)
        .count();
    assert_eq!(truth["windows_events"], wins);
    assert_eq!(truth["linux_events"], events.len() - wins);

    let hosts = truth["hosts"].as_object().unwrap();
    assert_eq!(hosts.len(), 5);
    let mut branches: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (ip, h) in hosts {
        let computer = h["computer"].as_str().unwrap();
        let mine: Vec<&SysmonEvent> = events.iter().filter(|e| e.computer == computer).collect();
        assert_eq!(h["events"], mine.len(), "{ip}");
        assert_eq!(h["first_record_id"].as_u64(), mine[0].record_id);
        assert_eq!(h["last_record_id"].as_u64(), mine[mine.len() - 1].record_id);
        for e in &mine {
            assert_eq!(e.host.as_deref(), h["splunk_host"].as_str(), "{ip}");
            if let Some(src) = e.raw("SourceIp") {
                assert_eq!(src, ip.as_str());
            }
        }
        for x in h["expect_endpoint"]
            .as_array()
            .unwrap()
            .iter()
            .chain(h["expect_network"].as_array().unwrap())
        {
            let ids: BTreeSet<u64> = x["event_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect();
            for r in x["record_ids"].as_array().unwrap() {
                let e = by_record[&r.as_u64().unwrap()];
                assert_eq!(e.computer, computer);
                assert!(ids.contains(&u64::from(e.event_id)));
                assert_eq!(x["process"], e.raw("Image").unwrap());
            }
        }
        branches.insert(
            ip.clone(),
            h["expect_endpoint"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x["branch"].as_str().unwrap().to_string())
                .collect(),
        );
    }
    let set = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(
        branches["10.20.0.17"],
        set(&[
            "KnownProxywareBinary",
            "ProxywareFileDrop",
            "ProxywareDomain"
        ])
    );
    assert_eq!(branches["10.20.0.33"], set(&["ProxywarePersistence"]));
    assert_eq!(branches["10.20.0.12"], set(&["FanOut"]));
    assert_eq!(branches["10.20.0.42"], set(&["ProxywareDomain"]));
    assert!(branches["10.20.0.18"].is_empty());

    // The behaviours, read off the events the truth names.
    let evidence = |ip: &str, branch: &str| -> Vec<&SysmonEvent> {
        let x = hosts[ip]["expect_endpoint"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["branch"] == branch)
            .unwrap();
        x["record_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| by_record[&r.as_u64().unwrap()])
            .collect()
    };
    let binary = evidence("10.20.0.17", "KnownProxywareBinary");
    assert_eq!(binary.len(), 1);
    assert!(binary[0].raw("Image").unwrap().contains("\\AppData\\"));
    assert_eq!(
        binary[0].raw("ParentImage"),
        Some("C:\\Windows\\System32\\cmd.exe")
    );
    assert_eq!(binary[0].raw("OriginalFileName"), Some("Honeygain.exe"));
    let drop = evidence("10.20.0.17", "ProxywareFileDrop");
    assert_eq!(drop[0].raw("TargetFilename"), binary[0].raw("Image"));
    assert!(drop[0].time_ns < binary[0].time_ns);
    let domain = evidence("10.20.0.17", "ProxywareDomain");
    assert_eq!(domain.len(), 4);
    assert!(
        domain
            .iter()
            .all(|e| e.raw("QueryName").or(e.raw("DestinationHostname"))
                == Some("api.honeygain.com"))
    );
    let run = evidence("10.20.0.33", "ProxywarePersistence");
    assert!(
        run[0]
            .raw("TargetObject")
            .unwrap()
            .ends_with("\\CurrentVersion\\Run\\Traffmonetizer")
    );
    assert!(run[0].raw("Details").unwrap().contains(" --token "));
    let fan = evidence("10.20.0.12", "FanOut");
    let targets: BTreeSet<&str> = fan
        .iter()
        .map(|e| e.raw("DestinationIp").unwrap())
        .collect();
    assert_eq!(targets.len(), 80);
    assert!(fan.iter().all(|e| e.raw("DestinationPort") == Some("80")
        && e.raw("Image").unwrap().ends_with("\\powershell.exe")));
    let span = ms(fan[fan.len() - 1]) - ms(fan[0]);
    assert!((39_000..=41_000).contains(&span), "{span} ms");
    let digs: BTreeSet<&str> = evidence("10.20.0.42", "ProxywareDomain")
        .iter()
        .map(|e| e.raw("CommandLine").unwrap())
        .collect();
    assert_eq!(
        digs,
        BTreeSet::from([
            "dig honeygain.com",
            "dig peer2profit.com",
            "dig packetstream.io",
            "dig traffmonetizer.com",
            "dig earnapp.com",
        ])
    );
    let lookalikes: Vec<&SysmonEvent> = hosts["10.20.0.17"]["no_alert"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| by_record[&r["record_id"].as_u64().unwrap()])
        .collect();
    assert!(lookalikes.iter().any(
        |e| e.raw("Image") == Some("C:\\Users\\alice\\Documents\\mysterium-notes\\reader.exe")
    ));
    assert!(
        lookalikes
            .iter()
            .any(|e| e.raw("DestinationHostname") == Some("notpawns.app.example.net"))
    );
}

/// A case-insensitive regex alternation with `.` as any character and `\.` as a dot: the
/// seed's match() patterns, which are plain alternations.
fn seed_match(hay: &str, alternation: &str) -> bool {
    let hay: Vec<char> = hay.to_lowercase().chars().collect();
    alternation.split('|').any(|pat| {
        let mut toks: Vec<Option<char>> = Vec::new();
        let mut chars = pat.chars();
        while let Some(c) = chars.next() {
            toks.push(match c {
                '\\' => chars.next(),
                '.' => None,
                c => Some(c),
            });
        }
        hay.windows(toks.len())
            .any(|w| w.iter().zip(&toks).all(|(h, t)| t.is_none_or(|t| t == *h)))
    })
}

/// The truth's seed_search rows are what the seed SPL keeps of the Splunk export, and they
/// are the six the scenario describes.
#[test]
fn seed_search_rows_follow_the_seed_logic() {
    const BINARIES: &str = "honeygain|iproyal.desktop|iproyal_desktop|pawns\\.exe|peer2profit|\
        p2p-node|packetstream|psnode|traffmonetizer|traffmain|earnapp|repocket|bitping|\
        mysterium|myst\\.exe";
    const DOMAINS: &str = "honeygain|iproyal|pawns\\.app|peer2profit|packetstream|\
        traffmonetizer|earnapp|repocket|bitping|mysterium";
    // The seed's `table` columns that come from EventData.
    const TABLE: [&str; 8] = [
        "User",
        "Image",
        "CommandLine",
        "ParentImage",
        "ParentCommandLine",
        "DestinationIp",
        "DestinationHostname",
        "DestinationPort",
    ];
    let mut rows = Vec::new();
    let mut columns = Vec::new();
    for line in lines(&committed("splunk.json")) {
        let v: Value = serde_json::from_str(&line).unwrap();
        let x = parse_event_xml(v["result"]["_raw"].as_str().unwrap());
        let field = |n: &str| {
            x.data
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.as_str())
                .unwrap_or("")
        };
        let branch = match x.event_id {
            1 if seed_match(field("Image"), BINARIES) => "KnownProxywareBinary",
            3 if seed_match(field("DestinationHostname"), DOMAINS) => "ProxywareDomainConnection",
            _ => continue,
        };
        rows.push((
            x.record_id,
            x.event_id,
            branch.to_string(),
            field("Image").to_string(),
        ));
        columns.push(
            TABLE
                .iter()
                .filter(|c| x.data.iter().any(|(k, _)| k == *c))
                .map(|c| (c.to_string(), field(c).to_string()))
                .collect::<BTreeMap<String, String>>(),
        );
    }
    let truth = read_json(&repo("captures/endpoint.truth.json"));
    let listed: Vec<(u64, u16, String, String)> = truth["seed_search"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["record_id"].as_u64().unwrap(),
                r["EventCode"].as_str().unwrap().parse().unwrap(),
                r["DetectionBranch"].as_str().unwrap().to_string(),
                r["Image"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(rows, listed);
    let listed_columns: Vec<BTreeMap<String, String>> = truth["seed_search"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            TABLE
                .iter()
                .filter_map(|c| Some((c.to_string(), r.get(*c)?.as_str()?.to_string())))
                .collect()
        })
        .collect();
    assert_eq!(columns, listed_columns);
    let summary: BTreeMap<(String, String), usize> =
        rows.iter()
            .fold(BTreeMap::new(), |mut m, (_, _, b, image)| {
                let exe = image.rsplit('\\').next().unwrap().to_string();
                *m.entry((b.clone(), exe)).or_default() += 1;
                m
            });
    let want: BTreeMap<(String, String), usize> = [
        (("KnownProxywareBinary", "Honeygain.exe"), 1),
        (("KnownProxywareBinary", "reader.exe"), 1),
        (("ProxywareDomainConnection", "Honeygain.exe"), 3),
        (("ProxywareDomainConnection", "chrome.exe"), 1),
    ]
    .into_iter()
    .map(|((b, e), n)| ((b.to_string(), e.to_string()), n))
    .collect();
    assert_eq!(summary, want);
}

/// Replaying the capture alone raises the truth's network alerts and nothing else.
#[test]
fn replay_raises_the_expected_network_alerts() {
    let truth = read_json(&repo("captures/endpoint.truth.json"));
    let mut want = BTreeSet::new();
    for (ip, h) in truth["hosts"].as_object().unwrap() {
        for x in h["expect_network"].as_array().unwrap() {
            let branch = x["branch"].as_str().unwrap().to_string();
            let services = x["services"].as_array().unwrap();
            if services.is_empty() {
                want.insert((ip.clone(), branch.clone(), String::new()));
            }
            for s in services {
                want.insert((ip.clone(), branch.clone(), s.as_str().unwrap().to_string()));
            }
        }
    }
    let report = replay(
        &Config::default(),
        &[repo("captures/endpoint.pcap")],
        &ReplayOptions::default(),
        &mut |_| Ok(()),
    )
    .unwrap();
    let got: BTreeSet<(String, String, String)> = report
        .alerts
        .iter()
        .map(|a| {
            let service = a.evidence["service"].as_str().unwrap_or("").to_string();
            (a.host.to_string(), a.detection_branch.to_string(), service)
        })
        .collect();
    assert_eq!(got, want);
    assert_eq!(want.len(), 7);
}
