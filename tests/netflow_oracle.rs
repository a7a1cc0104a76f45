//! NetFlow v5/v9 and IPFIX decoding checked against tshark 4.0's decode of the public export
//! captures (`../shared/captures/public/*.oracle.json`, key `flow_export`).
//!
//! Every UDP payload that `looks_like_netflow` goes, in file order, to one decoder. Each
//! oracle record with flow keys must match one of our records from the same frame, in order:
//! addresses, ports, protocol, octets and packets (times our sampling interval), and start and
//! end. Where tshark decodes less than the capture holds (akvorado v9: a data set before its
//! template), the extra records are checked against the capture's own bytes.
use chrono::{DateTime, NaiveDateTime};
use egresswatch::decode::packet::{Decoded, Layer, decode_frame};
use egresswatch::export::netflow::{NetflowDecoder, looks_like_netflow};
use egresswatch::export::{ExportConfig, FlowRecord};
use egresswatch::source::pcap_file::CaptureReader;
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

fn public_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/captures/public")
}

/// One export datagram of a capture and the records we decoded from it.
struct Datagram {
    frame: u64,
    exporter: SocketAddr,
    payload: Vec<u8>,
    records: Vec<FlowRecord>,
}

struct Decoding {
    datagrams: Vec<Datagram>,
    decoder: NetflowDecoder,
}

fn decode_capture(name: &str) -> Decoding {
    let path = public_dir().join(name);
    let mut reader = CaptureReader::open(&[path]).expect("open capture");
    let mut decoder = NetflowDecoder::new(&ExportConfig::default());
    let mut datagrams = Vec::new();
    let mut frame = 0u64;
    while let Some(packet) = reader.next_packet() {
        frame += 1;
        let mut decoded = Decoded::default();
        decode_frame(packet.linktype, packet.data, &mut decoded);
        let Some(Layer::Transport(t)) = decoded.layers.last() else {
            continue;
        };
        if t.proto != 17 || looks_like_netflow(t.payload).is_none() {
            continue;
        }
        assert_eq!(
            t.payload.len() as u32,
            t.payload_len,
            "{name} frame {frame} sliced"
        );
        let exporter = SocketAddr::new(t.src, t.sport);
        let mut records = Vec::new();
        decoder
            .decode(exporter, packet.ts_ns, t.payload, &mut records)
            .unwrap_or_else(|e| panic!("{name} frame {frame}: {e}"));
        datagrams.push(Datagram {
            frame,
            exporter,
            payload: t.payload.to_vec(),
            records,
        });
    }
    Decoding { datagrams, decoder }
}

fn oracle(name: &str) -> Value {
    let path = public_dir().join(format!("{name}.oracle.json"));
    let text = std::fs::read_to_string(&path).expect("read oracle");
    serde_json::from_str(&text).expect("oracle json")
}

/// A scalar or a list of scalars (tshark lists a field that occurs more than once).
fn values(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a.clone(),
        other => vec![other.clone()],
    }
}

fn be16(d: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([d[at], d[at + 1]])
}

fn be32(d: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]])
}

/// "116800.990000000" (seconds since boot) as ns.
fn decimal_seconds_ns(text: &str) -> i128 {
    let (secs, frac) = text.split_once('.').unwrap_or((text, "0"));
    let frac = format!("{frac:0<9}");
    i128::from(secs.parse::<u64>().unwrap()) * 1_000_000_000
        + i128::from(frac[..9].parse::<u64>().unwrap())
}

fn rfc3339_ns(text: &str) -> i128 {
    let t = DateTime::parse_from_rfc3339(text).expect("rfc3339");
    i128::from(t.timestamp()) * 1_000_000_000 + i128::from(t.timestamp_subsec_nanos())
}

/// tshark's absolute time display, "Jan  7, 2025 05:57:55.000000000 UTC".
fn tshark_time_ns(text: &str) -> i128 {
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let t = NaiveDateTime::parse_from_str(&collapsed, "%b %d, %Y %H:%M:%S%.f UTC")
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .and_utc();
    i128::from(t.timestamp()) * 1_000_000_000 + i128::from(t.timestamp_subsec_nanos())
}

/// Expected absolute ns of an oracle start/end, converting boot-relative times with the
/// datagram's header (v5/v9) or the record's systemInitTime (IPFIX).
fn expected_time(record: &Value, key: &str, datagram: &[u8]) -> i128 {
    let text = record[key].as_str().expect("time");
    match record[format!("{key}_kind")].as_str() {
        Some("absolute_utc") => rfc3339_ns(text),
        Some("seconds_since_exporter_boot") => {
            let since_boot = decimal_seconds_ns(text);
            match be16(datagram, 0) {
                5 | 9 => {
                    let uptime_ns = i128::from(be32(datagram, 4)) * 1_000_000;
                    let mut export_ns = i128::from(be32(datagram, 8)) * 1_000_000_000;
                    if be16(datagram, 0) == 5 {
                        export_ns += i128::from(be32(datagram, 12));
                    }
                    export_ns - (uptime_ns - since_boot)
                }
                _ => {
                    let init = record["fields"]["cflow.sys_init_time"]
                        .as_str()
                        .expect("IPFIX boot-relative time needs systemInitTime");
                    tshark_time_ns(init) + since_boot
                }
            }
        }
        other => panic!("unknown time kind {other:?}"),
    }
}

/// Why `ours` is not `theirs`, or `None` when they agree.
fn mismatch(ours: &FlowRecord, theirs: &Value, datagram: &[u8]) -> Option<String> {
    let s = u64::from(ours.sampling);
    let ip_in = |ip: IpAddr, v: &Value| {
        values(v)
            .iter()
            .any(|x| x.as_str().and_then(|t| t.parse::<IpAddr>().ok()) == Some(ip))
    };
    let num_in = |n: u64, v: &Value| values(v).iter().any(|x| x.as_u64() == Some(n));
    if !ip_in(ours.src, &theirs["src_addr"]) || !ip_in(ours.dst, &theirs["dst_addr"]) {
        return Some(format!("addresses {} -> {}", ours.src, ours.dst));
    }
    if !num_in(u64::from(ours.src_port), &theirs["src_port"])
        || !num_in(u64::from(ours.dst_port), &theirs["dst_port"])
        || !num_in(u64::from(ours.proto), &theirs["protocol"])
    {
        return Some(format!(
            "ports/proto {} {} {}",
            ours.src_port, ours.dst_port, ours.proto
        ));
    }
    let octets = values(&theirs["octets"]);
    let packets = values(&theirs["packets"]);
    let want = |v: &[Value], i: usize| v.get(i).and_then(Value::as_u64).map(|n| n * s);
    if Some(ours.octets) != want(&octets, 0) || Some(ours.packets) != want(&packets, 0) {
        return Some(format!("counters {} {} x{s}", ours.octets, ours.packets));
    }
    // Biflow: the second value is the reverse direction (RFC 5103).
    let rev = (
        want(&octets, 1).unwrap_or(0),
        want(&packets, 1).unwrap_or(0),
    );
    if (ours.rev_octets, ours.rev_packets) != rev {
        return Some(format!(
            "reverse counters {:?}",
            (ours.rev_octets, ours.rev_packets)
        ));
    }
    let start = expected_time(theirs, "start", datagram);
    let end = expected_time(theirs, "end", datagram);
    if i128::from(ours.start_ns) != start || i128::from(ours.end_ns) != end {
        return Some(format!(
            "times {} {} vs {start} {end}",
            ours.start_ns, ours.end_ns
        ));
    }
    None
}

struct Outcome {
    matched: usize,
    /// Our records tshark did not decode, per frame.
    extra: Vec<(u64, FlowRecord)>,
    decoding: Decoding,
}

/// Matches every oracle flow record to ours, frame by frame and in order.
fn compare(name: &str) -> Outcome {
    let decoding = decode_capture(name);
    let oracle = oracle(name);
    let records = oracle["flow_export"]["records"]
        .as_array()
        .expect("records");
    let flows: Vec<&Value> = records
        .iter()
        .filter(|r| r["has_flow_keys"].as_bool() == Some(true))
        .collect();
    assert_eq!(
        Some(flows.len() as u64),
        oracle["flow_export"]["records_with_flow_keys"].as_u64(),
        "{name}: oracle consistency"
    );
    let mut matched = 0;
    let mut extra = Vec::new();
    for datagram in &decoding.datagrams {
        let theirs: Vec<&&Value> = flows
            .iter()
            .filter(|r| r["frame"].as_u64() == Some(datagram.frame))
            .collect();
        let mut next = 0;
        for ours in &datagram.records {
            assert_eq!(ours.exporter, datagram.exporter.ip());
            match theirs.get(next) {
                Some(t) if mismatch(ours, t, &datagram.payload).is_none() => {
                    assert_eq!(
                        t["exporter"]
                            .as_str()
                            .and_then(|e| e.parse::<IpAddr>().ok()),
                        Some(ours.exporter)
                    );
                    next += 1;
                    matched += 1;
                }
                _ => extra.push((datagram.frame, ours.clone())),
            }
        }
        if let Some(missed) = theirs.get(next) {
            let why = datagram
                .records
                .iter()
                .map(|r| mismatch(r, missed, &datagram.payload).unwrap_or_default())
                .collect::<Vec<_>>();
            panic!(
                "{name} frame {}: oracle record {} not decoded; closest differences {why:?}",
                datagram.frame, missed["record"]
            );
        }
    }
    assert_eq!(
        matched,
        flows.len(),
        "{name}: every oracle flow record matched"
    );
    let frames: Vec<u64> = decoding.datagrams.iter().map(|d| d.frame).collect();
    for f in &flows {
        assert!(
            frames.contains(&f["frame"].as_u64().unwrap()),
            "{name}: frame {} not recognised as NetFlow",
            f["frame"]
        );
    }
    Outcome {
        matched,
        extra,
        decoding,
    }
}

fn assert_exact(name: &str, want_records: usize, want_sampling: u32) -> Outcome {
    let outcome = compare(name);
    assert_eq!(outcome.matched, want_records, "{name}");
    assert!(
        outcome.extra.is_empty(),
        "{name}: extra {:?}",
        outcome.extra
    );
    for d in &outcome.decoding.datagrams {
        for r in &d.records {
            assert_eq!(r.sampling, want_sampling, "{name}");
        }
    }
    assert_eq!(outcome.decoding.decoder.counters.malformed, 0, "{name}");
    outcome
}

#[test]
fn netflow_v5_matches_tshark() {
    let outcome = assert_exact("akvorado__nfv5.pcap", 29, 1);
    let d = &outcome.decoding.datagrams[0];
    // The header's sampling field is 0 here (unsampled); tcp flags come from the record.
    assert_eq!(be16(&d.payload, 22) & 0x3fff, 0);
    assert_eq!(d.records[0].tcp_flags, Some(0x18));
}

#[test]
fn ipfix_biflow_with_reverse_enterprise_fields_matches_tshark() {
    let outcome = assert_exact("akvorado__ipfixprobe-templates+data.pcap", 4, 1);
    let records: Vec<&FlowRecord> = outcome
        .decoding
        .datagrams
        .iter()
        .flat_map(|d| &d.records)
        .collect();
    let oracle = oracle("akvorado__ipfixprobe-templates+data.pcap");
    let theirs = oracle["flow_export"]["records"].as_array().unwrap();
    assert_eq!(records.len(), theirs.len());
    let flags =
        |v: &Value| u8::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).ok();
    for (ours, t) in records.iter().zip(theirs) {
        let f = values(&t["fields"]["cflow.tcpflags"]);
        assert_eq!(
            (ours.tcp_flags, ours.rev_tcp_flags),
            (flags(&f[0]), flags(&f[1]))
        );
        let reason = t["fields"]["cflow.flow_end_reason"]
            .as_str()
            .unwrap()
            .parse()
            .ok();
        assert_eq!(ours.end_reason, reason);
    }
    // Some records have traffic in both directions.
    assert!(
        records
            .iter()
            .any(|r| r.rev_packets > 0 && r.rev_octets > 0)
    );
}

#[test]
fn ipfix_cisco_matches_tshark() {
    let outcome = assert_exact("pmacct__100-IPFIXv10-CISCO.pcap", 12, 1);
    assert_eq!(outcome.decoding.decoder.counters.templates, 2);
}

#[test]
fn netflow_v9_cisco_matches_tshark() {
    let outcome = assert_exact("pmacct__101-NFv9-CISCO-cust_primitives.pcap", 51, 1);
    // IPv4 and unspecified IPv6 keys in one template: the IPv4 ones are the flow.
    let first = &outcome.decoding.datagrams[0].records;
    assert!(first.is_empty() || first[0].src.is_ipv4());
}

#[test]
fn ipfix_huawei_variable_length_and_system_init_time_matches_tshark() {
    let outcome = assert_exact("pmacct__106-IPFIXv10-HUAWEI-vrf_name.pcap", 3, 1);
    let counters = &outcome.decoding.decoder.counters;
    assert_eq!(counters.options_templates, 1);
    assert_eq!(counters.options_records, 1);
}

/// The akvorado v9 packet: a data set (template 257) first, then an options template and its
/// data (sampling interval 100), then template 257, then a second data set. tshark decodes
/// only the second data set; we also decode the first, once the template arrives.
#[test]
fn netflow_v9_data_before_template_is_decoded_and_sampled() {
    let name = "akvorado__nfv9-data+templates.pcap";
    let oracle = oracle(name);
    assert_eq!(
        oracle["flow_export"]["sets_without_template"].as_u64(),
        Some(1)
    );
    let interval: u64 = oracle["flow_export"]["records"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|r| r["fields"]["cflow.sampling_interval"].as_str())
        .expect("options record")
        .parse()
        .unwrap();
    assert_eq!(interval, 100);

    let outcome = compare(name);
    assert_eq!(outcome.matched, 10);
    let counters = &outcome.decoding.decoder.counters;
    assert_eq!(counters.sets_pending, 1);
    assert_eq!(counters.pending_decoded, 1);
    assert_eq!(counters.options_records, 1);
    assert_eq!(counters.malformed, 0);
    let datagram = &outcome.decoding.datagrams[0];
    for r in &datagram.records {
        assert_eq!(u64::from(r.sampling), interval);
    }

    // Read the first set independently from the capture with template 257's layout.
    let p = &datagram.payload;
    let mut at = 20;
    let mut sets = Vec::new();
    while at + 4 <= p.len() {
        let (id, len) = (be16(p, at), usize::from(be16(p, at + 2)));
        sets.push((id, at + 4, at + len));
        at += len;
    }
    assert_eq!(sets[0].0, 257, "first set is data of template 257");
    let (_, tpl_start, tpl_end) = *sets
        .iter()
        .find(|(id, s, _)| *id == 0 && be16(p, *s) == 257)
        .expect("template 257");
    let field_count = usize::from(be16(p, tpl_start + 2));
    let mut layout = Vec::new();
    let mut offset = 0;
    for i in 0..field_count {
        let spec = tpl_start + 4 + 4 * i;
        assert!(spec + 4 <= tpl_end);
        let (ty, len) = (be16(p, spec), usize::from(be16(p, spec + 2)));
        layout.push((ty, offset, len));
        offset += len;
    }
    let record_len = offset;
    let field = |body: &[u8], ty: u16| -> u64 {
        let &(_, off, len) = layout
            .iter()
            .find(|f| f.0 == ty)
            .expect("field in template");
        body[off..off + len]
            .iter()
            .fold(0, |a, &b| (a << 8) | u64::from(b))
    };
    let (_, first_start, first_end) = sets[0];
    let raw_records: Vec<&[u8]> = p[first_start..first_end].chunks_exact(record_len).collect();
    // 660 bytes of 60-byte records: 11 flows tshark leaves undecoded.
    assert_eq!(raw_records.len(), 11);
    assert_eq!(outcome.extra.len(), raw_records.len());
    for ((frame, ours), raw) in outcome.extra.iter().zip(&raw_records) {
        assert_eq!(*frame, 1);
        assert_eq!(ours.src, IpAddr::V4(Ipv4Addr::from(field(raw, 8) as u32)));
        assert_eq!(ours.dst, IpAddr::V4(Ipv4Addr::from(field(raw, 12) as u32)));
        assert_eq!(u64::from(ours.src_port), field(raw, 7));
        assert_eq!(u64::from(ours.dst_port), field(raw, 11));
        assert_eq!(u64::from(ours.proto), field(raw, 4));
        assert_eq!(ours.octets, field(raw, 1) * interval);
        assert_eq!(ours.packets, field(raw, 2) * interval);
        let uptime = i128::from(be32(p, 4));
        let export_ms = i128::from(be32(p, 8)) * 1000;
        let expect = |switched: u64| (export_ms - (uptime - i128::from(switched))) * 1_000_000;
        assert_eq!(i128::from(ours.start_ns), expect(field(raw, 22)));
        assert_eq!(i128::from(ours.end_ns), expect(field(raw, 21)));
    }
}

/// Every frame of the export captures is recognised; no payload of the other public
/// captures (DNS, TLS, QUIC, sFlow, ...) is taken for NetFlow.
#[test]
fn looks_like_netflow_on_all_public_captures() {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(public_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.ends_with(".pcap") || n.ends_with(".pcapng")
        })
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let oracle = oracle(&name);
        let cflow_frames = oracle["flow_export"]["cflow_packets"].as_u64().unwrap_or(0);
        let mut reader = CaptureReader::open(std::slice::from_ref(&path)).unwrap();
        let mut recognised = 0u64;
        while let Some(packet) = reader.next_packet() {
            let mut decoded = Decoded::default();
            decode_frame(packet.linktype, packet.data, &mut decoded);
            for layer in &decoded.layers {
                if let Layer::Transport(t) = layer
                    && t.proto == 17
                    && looks_like_netflow(t.payload).is_some()
                {
                    recognised += 1;
                }
            }
        }
        // tcpdump's sFlow capture also holds 5 NetFlow v5 frames tshark does not decode.
        let expected = if name == "tcpdump__sflow_multiple_counter_30_pdus.pcap" {
            cflow_frames + 5
        } else {
            cflow_frames
        };
        assert_eq!(recognised, expected, "{name}");
    }
}
