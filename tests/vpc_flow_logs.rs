//! AWS VPC Flow Logs reader on the sample files in tests/data/vpc (see its README.md): every
//! record, counter and reported bad line, plain and gzip.
mod common;

use common::TempDir;
use egresswatch::export::vpc::{VpcCounters, VpcError, is_vpc_flow_log, read_file};
use egresswatch::export::{FlowRecord, RecordSource};
use flate2::Compression;
use flate2::write::GzEncoder;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/vpc")
        .join(name)
}

struct Read {
    counters: VpcCounters,
    records: Vec<FlowRecord>,
    /// (line, detail) of each reported bad line.
    errors: Vec<(u64, String)>,
}

fn read(path: &Path) -> Read {
    let mut counters = VpcCounters::default();
    let (mut records, mut errors) = (Vec::new(), Vec::new());
    read_file(
        path,
        &mut counters,
        &mut |r| records.push(r),
        &mut |e| match e {
            VpcError::Line {
                path: p,
                line,
                detail,
            } => {
                assert_eq!(p, path.display().to_string());
                errors.push((line, detail));
            }
            other => panic!("unexpected {other}"),
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    Read {
        counters,
        records,
        errors,
    }
}

#[allow(clippy::too_many_arguments)]
fn record(
    src: &str,
    dst: &str,
    ports: (u16, u16),
    proto: u8,
    packets: u64,
    bytes: u64,
    start_s: u64,
    end_s: u64,
    tcp_flags: Option<u8>,
) -> FlowRecord {
    FlowRecord {
        source: RecordSource::VpcFlowLog,
        exporter: "0.0.0.0".parse().unwrap(),
        src: src.parse::<IpAddr>().unwrap(),
        dst: dst.parse::<IpAddr>().unwrap(),
        src_port: ports.0,
        dst_port: ports.1,
        proto,
        octets: bytes,
        packets,
        rev_octets: 0,
        rev_packets: 0,
        start_ns: start_s * 1_000_000_000,
        end_ns: end_s * 1_000_000_000,
        tcp_flags,
        rev_tcp_flags: None,
        sampling: 1,
        end_reason: None,
    }
}

fn default_s3_records() -> Vec<FlowRecord> {
    let (s, e) = (1418530010, 1418530070);
    vec![
        record(
            "10.0.1.25",
            "203.0.113.12",
            (49152, 443),
            6,
            20,
            4249,
            s,
            e,
            None,
        ),
        record(
            "203.0.113.12",
            "10.0.1.25",
            (443, 49152),
            6,
            18,
            13680,
            s,
            e,
            None,
        ),
        // REJECT: kept with its counters.
        record(
            "198.51.100.7",
            "10.0.1.25",
            (49761, 3389),
            6,
            20,
            4249,
            s,
            e,
            None,
        ),
        record(
            "2001:db8:1234:a100:8d6e:3477:df66:f105",
            "2001:db8:1234:a102:3304:8879:34cf:4071",
            (34892, 22),
            6,
            54,
            8855,
            1477913708,
            1477913820,
            None,
        ),
        record(
            "10.0.1.25",
            "198.51.100.200",
            (0, 0),
            1,
            4,
            336,
            1418530020,
            1418530050,
            None,
        ),
    ]
}

fn default_s3_counters() -> VpcCounters {
    VpcCounters {
        lines: 9,
        records: 5,
        no_data: 2,
        bad_lines: 2,
        rejected: 1,
        header_lines: 1,
    }
}

#[test]
fn default_format_with_header() {
    let path = data("default-s3.log");
    assert!(is_vpc_flow_log(&path));
    let got = read(&path);
    assert_eq!(got.records, default_s3_records());
    assert_eq!(got.counters, default_s3_counters());
    let c = &got.counters;
    assert_eq!(c.lines, c.records + c.no_data + c.bad_lines);
    assert_eq!(got.errors.len(), 2);
    assert_eq!(got.errors[0].0, 6);
    assert!(
        got.errors[0].1.contains("packets \"twenty\""),
        "{:?}",
        got.errors
    );
    assert_eq!(got.errors[1].0, 9);
    assert!(
        got.errors[1].1.contains("9 fields, the format has 14"),
        "{:?}",
        got.errors
    );
}

#[test]
fn default_format_without_header() {
    let path = data("cloudwatch-export.log");
    assert!(is_vpc_flow_log(&path));
    let got = read(&path);
    let (s, e) = (1418530010, 1418530070);
    assert_eq!(
        got.records,
        vec![
            record(
                "172.31.16.139",
                "172.31.16.21",
                (20641, 22),
                6,
                20,
                4249,
                s,
                e,
                None
            ),
            record(
                "172.31.9.69",
                "172.31.9.12",
                (49761, 3389),
                6,
                20,
                4249,
                s,
                e,
                None
            ),
        ]
    );
    assert_eq!(
        got.counters,
        VpcCounters {
            lines: 2,
            records: 2,
            rejected: 1,
            ..Default::default()
        }
    );
    assert!(got.errors.is_empty());
}

#[test]
fn custom_format_by_header_names() {
    let path = data("custom-tcp-flags.log");
    assert!(is_vpc_flow_log(&path));
    let got = read(&path);
    let (s, e) = (1620000000, 1620000060);
    let (s2, e2) = (1620000100, 1620000110);
    assert_eq!(
        got.records,
        vec![
            // NAT gateway interface: pkt-dstaddr names the real destination.
            record(
                "10.0.1.5",
                "203.0.113.5",
                (50318, 443),
                6,
                12,
                3120,
                s,
                e,
                Some(3)
            ),
            record(
                "10.0.0.220",
                "203.0.113.5",
                (50318, 443),
                6,
                12,
                3120,
                s,
                e,
                Some(3)
            ),
            record(
                "203.0.113.5",
                "10.0.1.5",
                (443, 50318),
                6,
                10,
                8000,
                s,
                e,
                Some(19)
            ),
            // pkt- fields unset: srcaddr/dstaddr; REJECT kept.
            record(
                "10.0.1.5",
                "198.51.100.9",
                (40000, 22),
                6,
                3,
                180,
                s2,
                e2,
                Some(2)
            ),
            // ICMP: `-` ports are 0, `-` tcp-flags is None.
            record("10.0.1.5", "198.51.100.9", (0, 0), 1, 2, 168, s2, e2, None),
        ]
    );
    assert_eq!(
        got.counters,
        VpcCounters {
            lines: 7,
            records: 5,
            no_data: 1,
            bad_lines: 1,
            rejected: 1,
            header_lines: 1,
        }
    );
    assert_eq!(got.errors.len(), 1);
    assert_eq!(got.errors[0].0, 7);
    assert!(
        got.errors[0].1.contains("tcp-flags \"300\""),
        "{:?}",
        got.errors
    );
}

fn gzip(members: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for member in members {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(member).unwrap();
        out.extend(encoder.finish().unwrap());
    }
    out
}

#[test]
fn gzip_single_and_multi_member() {
    let plain = std::fs::read(data("default-s3.log")).unwrap();
    let dir = TempDir::new("vpc", "gzip");
    // The name says nothing: detection is by the magic bytes.
    let single = dir.path("single.log");
    std::fs::write(&single, gzip(&[&plain])).unwrap();
    assert!(is_vpc_flow_log(&single));
    let got = read(&single);
    assert_eq!(got.records, default_s3_records());
    assert_eq!(got.counters, default_s3_counters());

    // Two objects concatenated: a second member, its header line included.
    let multi = dir.path("multi.log.gz");
    std::fs::write(&multi, gzip(&[&plain, &plain])).unwrap();
    let got = read(&multi);
    let twice: Vec<FlowRecord> = default_s3_records().into_iter().cycle().take(10).collect();
    assert_eq!(got.records, twice);
    assert_eq!(got.counters.header_lines, 2);
    assert_eq!(got.counters.bad_lines, 4);
    // Line numbers run on across members.
    assert_eq!(got.errors.last().map(|e| e.0), Some(20));

    // A corrupt stream ends the read with an I/O error; what came before was delivered.
    let mut corrupt = gzip(&[&plain]);
    let middle = corrupt.len() / 2;
    corrupt.truncate(middle);
    let cut = dir.path("cut.log.gz");
    std::fs::write(&cut, corrupt).unwrap();
    let mut counters = VpcCounters::default();
    let result = read_file(&cut, &mut counters, &mut |_| {}, &mut |_| {});
    assert!(matches!(result, Err(VpcError::Io { .. })), "{result:?}");
}

#[test]
fn other_files_are_not_vpc_logs() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(!is_vpc_flow_log(&repo.join("Cargo.toml")));
    assert!(!is_vpc_flow_log(&data("README.md")));
    assert!(!is_vpc_flow_log(&repo.join(
        "../shared/captures/public/akvorado__sflow-data-1140.pcap"
    )));
    assert!(!is_vpc_flow_log(&data("no-such-file.log")));
    // A gzip file of something else.
    let dir = TempDir::new("vpc", "other");
    let other = dir.path("other.gz");
    std::fs::write(&other, gzip(&[b"hello world\n"])).unwrap();
    assert!(!is_vpc_flow_log(&other));

    // A header without the fields a record needs is refused as a whole.
    let partial = dir.path("partial.log");
    std::fs::write(
        &partial,
        "version srcaddr dstaddr action\n2 10.0.0.1 10.0.0.2 ACCEPT\n",
    )
    .unwrap();
    assert!(!is_vpc_flow_log(&partial));
    let result = read_file(
        &partial,
        &mut VpcCounters::default(),
        &mut |_| {},
        &mut |_| {},
    );
    assert!(
        matches!(&result, Err(VpcError::Line { line: 1, detail, .. }) if detail.contains("protocol")),
        "{result:?}"
    );
}
