//! sFlow v5 decoder against tshark 4.0: sample counts from the public captures' oracle files,
//! and every sampled packet against tests/data/sflow/sflow_samples.tsv (what tshark dissects
//! inside each flow sample; made by tests/data/sflow/make_sflow_expect.py).
use egresswatch::decode::packet::{Decoded, Layer, decode_frame};
use egresswatch::export::sflow::{SflowDecoder, looks_like_sflow};
use egresswatch::export::{ExportConfig, FlowRecord, RecordSource};
use egresswatch::source::pcap_file::CaptureReader;
use serde_json::Value;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

fn public(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/captures/public")
        .join(name)
}

fn oracle(name: &str) -> Value {
    let path = public(&format!("{name}.oracle.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap()
}

struct Replay {
    decoder: SflowDecoder,
    records: Vec<(u64, FlowRecord)>,
    /// UDP datagrams that `looks_like_sflow` rejected.
    rejected: u64,
    errors: Vec<String>,
}

/// Every UDP payload of the capture that looks like sFlow goes through the decoder.
fn replay(name: &str) -> Replay {
    let mut reader = CaptureReader::open(&[public(name)]).unwrap();
    let mut decoder = SflowDecoder::new(&ExportConfig::default());
    let (mut records, mut rejected, mut errors) = (Vec::new(), 0, Vec::new());
    while let Some(packet) = reader.next_packet() {
        let mut decoded = Decoded::default();
        decode_frame(packet.linktype, packet.data, &mut decoded);
        let Some(Layer::Transport(udp)) = decoded.layers.first() else {
            continue;
        };
        if udp.proto != 17 {
            continue;
        }
        if !looks_like_sflow(udp.payload) {
            rejected += 1;
            continue;
        }
        let mut out = Vec::new();
        let sender = SocketAddr::new(udp.src, udp.sport);
        if let Err(e) = decoder.decode(sender, packet.ts_ns, udp.payload, &mut out) {
            errors.push(format!("{}: {e}", packet.ts_ns));
        }
        records.extend(out.into_iter().map(|r| (packet.ts_ns, r)));
    }
    assert!(reader.problems().is_empty(), "{:?}", reader.problems());
    Replay {
        decoder,
        records,
        rejected,
        errors,
    }
}

fn expected_samples(capture: &str) -> Vec<HashMap<String, String>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sflow/sflow_samples.tsv");
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let columns: Vec<&str> = lines.next().unwrap().split('\t').collect();
    lines
        .map(|l| {
            columns
                .iter()
                .map(|c| c.to_string())
                .zip(l.split('\t').map(String::from))
                .collect::<HashMap<_, _>>()
        })
        .filter(|row| row["capture"] == capture)
        .collect()
}

fn count(v: &Value, key: &str) -> u64 {
    v["flow_export"][key]
        .as_u64()
        .unwrap_or_else(|| panic!("oracle lacks flow_export.{key}"))
}

#[test]
fn akvorado_flow_samples_match_tshark() {
    let name = "akvorado__sflow-data-1140.pcap";
    let oracle = oracle(name);
    let run = replay(name);
    assert!(run.errors.is_empty(), "{:?}", run.errors);
    let c = &run.decoder.counters;
    assert_eq!(c.datagrams, count(&oracle, "sflow_packets"));
    assert_eq!(c.flow_samples, count(&oracle, "sflow_flow_samples"));
    assert_eq!(c.counter_samples, count(&oracle, "sflow_counter_samples"));
    assert_eq!(c.headers_decoded, c.flow_samples);
    assert_eq!(c.headers_undecoded, 0);

    let expected = expected_samples(name);
    assert_eq!(expected.len() as u64, c.flow_samples);
    assert_eq!(run.records.len(), expected.len());
    for ((ts, r), want) in run.records.iter().zip(&expected) {
        let num = |k: &str| -> u64 { want[k].parse().unwrap() };
        let addr = |k: &str| -> IpAddr { want[k].parse().unwrap() };
        let rate = num("sampling_rate");
        assert_eq!(r.source, RecordSource::Sflow);
        assert_eq!(r.exporter, addr("agent"), "sample {}", want["sample_seq"]);
        assert_eq!((r.src, r.dst), (addr("src"), addr("dst")));
        assert_eq!(u64::from(r.proto), num("proto"));
        assert_eq!(u64::from(r.src_port), num("sport"));
        assert_eq!(u64::from(r.dst_port), num("dport"));
        assert_eq!(r.tcp_flags.map(u64::from), Some(num("tcp_flags")));
        assert_eq!(u64::from(r.sampling), rate);
        assert_eq!(r.packets, rate);
        assert_eq!(r.octets, num("ip_len") * rate);
        assert_eq!((r.start_ns, r.end_ns), (*ts, *ts));
        assert_eq!((r.rev_octets, r.rev_packets), (0, 0));
    }
}

#[test]
fn tcpdump_counter_samples_match_tshark_and_netflow_is_rejected() {
    let name = "tcpdump__sflow_multiple_counter_30_pdus.pcap";
    let oracle = oracle(name);
    let run = replay(name);
    // tshark marks two frames malformed (it misreads host counter records); their sample
    // chains are intact, so they decode.
    assert!(run.errors.is_empty(), "{:?}", run.errors);
    let c = &run.decoder.counters;
    assert_eq!(c.datagrams, count(&oracle, "sflow_packets"));
    assert_eq!(c.counter_samples, count(&oracle, "sflow_counter_samples"));
    assert_eq!(c.flow_samples, count(&oracle, "sflow_flow_samples"));
    assert_eq!(c.malformed, 0);
    assert!(run.records.is_empty());
    // The other frames are the NetFlow v5 datagrams tshark leaves undecoded.
    let packets = oracle["packet_count"].as_u64().unwrap();
    assert_eq!(run.rejected, packets - count(&oracle, "sflow_packets"));
    assert_eq!(run.rejected, 5);
    assert!(expected_samples(name).is_empty());
}
