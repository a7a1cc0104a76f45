use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use pcap_parser::pcap::parse_pcap;
use serde_json::Value;

use super::*;
use crate::testing::TempDir;

fn opts(scenario: Scenario, packets: u64, snaplen: Option<u32>) -> GenerateOptions {
    GenerateOptions {
        scenario,
        seed: 1,
        packets,
        snaplen,
        ..Default::default()
    }
}

/// (proto, orig_h, orig_p, resp_h, resp_p) as the truth file writes them.
type FlowKey = (String, String, u16, String, u16);

/// Minimal header walk that works on sliced frames: addresses, ports and the IP total
/// length (from the header, not from the captured bytes).
fn l3l4(frame: &[u8]) -> (String, IpAddr, u16, IpAddr, u16, u64) {
    let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    let (proto, src, dst, l4, ip_len) = match ethertype {
        0x0800 => {
            let ip = &frame[14..];
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let s = IpAddr::V4(Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]));
            let d = IpAddr::V4(Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]));
            (
                ip[9],
                s,
                d,
                14 + ihl,
                u64::from(u16::from_be_bytes([ip[2], ip[3]])),
            )
        }
        0x86dd => {
            let ip = &frame[14..];
            let s: [u8; 16] = ip[8..24].try_into().unwrap();
            let d: [u8; 16] = ip[24..40].try_into().unwrap();
            let plen = u64::from(u16::from_be_bytes([ip[4], ip[5]]));
            (
                ip[6],
                IpAddr::V6(Ipv6Addr::from(s)),
                IpAddr::V6(Ipv6Addr::from(d)),
                54,
                40 + plen,
            )
        }
        other => panic!("unexpected ethertype {other:#x}"),
    };
    let sp = u16::from_be_bytes([frame[l4], frame[l4 + 1]]);
    let dp = u16::from_be_bytes([frame[l4 + 2], frame[l4 + 3]]);
    let p = match proto {
        6 => "tcp",
        17 => "udp",
        other => panic!("unexpected protocol {other}"),
    };
    (p.to_string(), src, sp, dst, dp, ip_len)
}

/// Per-flow (orig_pkts, resp_pkts, orig_ip_bytes, resp_ip_bytes) recomputed from a pcap,
/// using the truth's flow list to know which side is the originator.
fn volumes_from_pcap(data: &[u8], truth: &Value) -> HashMap<FlowKey, [u64; 4]> {
    let mut vols: HashMap<FlowKey, [u64; 4]> = HashMap::new();
    for f in truth["flows"].as_array().unwrap() {
        let key = (
            f["proto"].as_str().unwrap().to_string(),
            f["orig_h"].as_str().unwrap().to_string(),
            f["orig_p"].as_u64().unwrap() as u16,
            f["resp_h"].as_str().unwrap().to_string(),
            f["resp_p"].as_u64().unwrap() as u16,
        );
        assert!(vols.insert(key, [0; 4]).is_none(), "5-tuple reused");
    }
    let (_, cap) = parse_pcap(data).unwrap();
    for b in &cap.blocks {
        let (p, s, sp, d, dp, ip_len) = l3l4(b.data);
        let fwd = (p.clone(), s.to_string(), sp, d.to_string(), dp);
        let rev = (p, d.to_string(), dp, s.to_string(), sp);
        if let Some(v) = vols.get_mut(&fwd) {
            v[0] += 1;
            v[2] += ip_len;
        } else if let Some(v) = vols.get_mut(&rev) {
            v[1] += 1;
            v[3] += ip_len;
        } else {
            panic!("packet outside every truth flow: {fwd:?}");
        }
    }
    vols
}

fn check_volumes(data: &[u8], truth: &Value) {
    let vols = volumes_from_pcap(data, truth);
    for f in truth["flows"].as_array().unwrap() {
        let key = (
            f["proto"].as_str().unwrap().to_string(),
            f["orig_h"].as_str().unwrap().to_string(),
            f["orig_p"].as_u64().unwrap() as u16,
            f["resp_h"].as_str().unwrap().to_string(),
            f["resp_p"].as_u64().unwrap() as u16,
        );
        let want = [
            f["orig_pkts"].as_u64().unwrap(),
            f["resp_pkts"].as_u64().unwrap(),
            f["orig_ip_bytes"].as_u64().unwrap(),
            f["resp_ip_bytes"].as_u64().unwrap(),
        ];
        assert_eq!(vols[&key], want, "volumes of {key:?}");
    }
}

/// Checks framing, timestamps and every IPv4/TCP/UDP checksum of an unsliced capture.
fn check_packets(data: &[u8], expect_packets: u64) -> (u64, u64) {
    let (rest, cap) = parse_pcap(data).unwrap();
    assert!(rest.is_empty());
    assert_eq!(cap.header.magic_number, 0xa1b2_c3d4);
    assert_eq!(cap.header.network.0, 1);
    assert_eq!(cap.blocks.len() as u64, expect_packets);
    let mut last = 0u64;
    let (mut v4, mut v6) = (0, 0);
    for b in &cap.blocks {
        let ts = u64::from(b.ts_sec) * 1_000_000 + u64::from(b.ts_usec);
        assert!(ts > last, "timestamps must increase");
        assert!(b.ts_usec < 1_000_000);
        last = ts;
        assert_eq!(b.caplen, b.origlen);
        let p = SlicedPacket::from_ethernet(b.data).unwrap();
        let payload_of = |t: &TransportSlice<'_>| match t {
            TransportSlice::Tcp(t) => t.payload().len(),
            TransportSlice::Udp(u) => u.payload().len(),
            _ => panic!("unexpected transport"),
        };
        let transport = p.transport.as_ref().expect("transport header");
        match p.net.as_ref().expect("IP header") {
            NetSlice::Ipv4(ip) => {
                v4 += 1;
                let h = ip.header().to_header();
                assert_eq!(
                    h.header_checksum,
                    h.calc_header_checksum(),
                    "IPv4 header checksum"
                );
                assert_eq!(usize::from(h.total_len), b.data.len() - 14);
                let (s, d) = (h.source, h.destination);
                match transport {
                    TransportSlice::Tcp(t) => {
                        assert_eq!(t.checksum(), t.calc_checksum_ipv4(s, d).unwrap());
                    }
                    TransportSlice::Udp(u) => {
                        let uh = u.to_header();
                        assert_eq!(
                            uh.checksum,
                            uh.calc_checksum_ipv4_raw(s, d, u.payload()).unwrap()
                        );
                    }
                    _ => panic!("unexpected transport"),
                }
            }
            NetSlice::Ipv6(ip) => {
                v6 += 1;
                let h = ip.header().to_header();
                let (s, d) = (h.source, h.destination);
                match transport {
                    TransportSlice::Tcp(t) => {
                        assert_eq!(t.checksum(), t.calc_checksum_ipv6(s, d).unwrap());
                    }
                    TransportSlice::Udp(u) => {
                        let uh = u.to_header();
                        assert_eq!(
                            uh.checksum,
                            uh.calc_checksum_ipv6_raw(s, d, u.payload()).unwrap()
                        );
                    }
                    _ => panic!("unexpected transport"),
                }
            }
            NetSlice::Arp(_) => panic!("unexpected ARP"),
        }
        assert!(payload_of(transport) <= 1460);
    }
    (v4, v6)
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

#[test]
fn scenario_names_parse() {
    assert_eq!("office".parse::<Scenario>(), Ok(Scenario::Office));
    assert_eq!("Bench".parse::<Scenario>(), Ok(Scenario::Bench));
    assert!("lab".parse::<Scenario>().is_err());
    assert_eq!(Scenario::Bench.to_string(), "bench");
    assert_eq!("behaviour".parse::<Scenario>(), Ok(Scenario::Behaviour));
    assert_eq!("behavior".parse::<Scenario>(), Ok(Scenario::Behaviour));
    assert_eq!("flood".parse::<Scenario>(), Ok(Scenario::Flood));
    assert_eq!("concurrent".parse::<Scenario>(), Ok(Scenario::Concurrent));
    assert_eq!(
        "hidden-names".parse::<Scenario>(),
        Ok(Scenario::HiddenNames)
    );
    assert_eq!("site".parse::<Scenario>(), Ok(Scenario::Site));
    assert_eq!(Scenario::Site.to_string(), "site");
    for name in [
        "syn-flood",
        "dns-flood",
        "tiny-hello",
        "fragment-flood",
        "template-storm",
    ] {
        let scenario: Scenario = name.parse().unwrap();
        assert!(matches!(scenario, Scenario::Hostile(_)));
        assert_eq!(scenario.to_string(), name);
    }
}

/// Each hostile scenario: the same seed gives the same bytes, every frame is one a decoder
/// accepts, and the office's frames all come through, interleaved in time order.
#[test]
fn hostile_scenarios_are_deterministic_and_hold_the_office_capture() {
    let dir = TempDir::new("gen-hostile");
    let office =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/office.pcap")).unwrap();
    let (_, office_cap) = parse_pcap(&office).unwrap();
    for attack in [
        Attack::SynFlood,
        Attack::DnsFlood,
        Attack::TinyHello,
        Attack::FragmentFlood,
        Attack::TemplateStorm,
    ] {
        let scenario = Scenario::Hostile(attack);
        let (a, b, truth) = (dir.path("a.pcap"), dir.path("b.pcap"), dir.path("t.json"));
        let s = generate(&opts(scenario, 6000, None), &a, Some(&truth)).unwrap();
        generate(&opts(scenario, 6000, None), &b, None).unwrap();
        let data = std::fs::read(&a).unwrap();
        assert_eq!(data, std::fs::read(&b).unwrap(), "{scenario}");
        let t = read_json(&truth);
        let attack_packets = t["attack"]["packets"].as_u64().unwrap();
        assert!(
            (3000..=6016).contains(&attack_packets),
            "{scenario}: {attack_packets}"
        );
        assert_eq!(s.packets, attack_packets + office_cap.blocks.len() as u64);
        let (_, cap) = parse_pcap(&data).unwrap();
        let mut last = 0;
        for block in &cap.blocks {
            let ts = u64::from(block.ts_sec) * 1_000_000 + u64::from(block.ts_usec);
            assert!(ts > last, "{scenario}: timestamps must increase");
            last = ts;
            assert!(
                SlicedPacket::from_ethernet(block.data).is_ok(),
                "{scenario}"
            );
        }
        // The office frames, in order, with their bytes.
        let office_frames: Vec<&[u8]> = office_cap.blocks.iter().map(|b| b.data).collect();
        let mut next = office_frames.iter().peekable();
        for block in &cap.blocks {
            if next.peek().is_some_and(|f| **f == block.data) {
                next.next();
            }
        }
        assert!(next.peek().is_none(), "{scenario}: office frames missing");
        assert_eq!(t["hosts"]["10.20.1.66"]["role"], "proxyware");
    }
}

/// Sliced behaviour frames: the record's wire length is the IP total length plus Ethernet,
/// the captured part holds whole, valid headers, and unsliced frames have valid checksums.
#[test]
fn behaviour_frames_keep_wire_lengths_and_valid_headers() {
    let dir = TempDir::new("gen-behaviour-frames");
    let pcap = dir.path("b.pcap");
    let truth = dir.path("b.json");
    let s = generate(&opts(Scenario::Behaviour, 0, None), &pcap, Some(&truth)).unwrap();
    let data = std::fs::read(&pcap).unwrap();
    assert_eq!(s.bytes, data.len() as u64);
    let (rest, cap) = parse_pcap(&data).unwrap();
    assert!(rest.is_empty());
    assert_eq!(cap.blocks.len() as u64, s.packets);
    let (mut sliced, mut full, mut wire) = (0u64, 0u64, 0u64);
    let mut last = 0u64;
    for b in &cap.blocks {
        let ts = u64::from(b.ts_sec) * 1_000_000 + u64::from(b.ts_usec);
        assert!(ts > last, "timestamps must increase");
        last = ts;
        let (_, _, _, _, _, ip_len) = l3l4(b.data);
        assert_eq!(u64::from(b.origlen), 14 + ip_len);
        wire += u64::from(b.origlen);
        let ip = etherparse::Ipv4HeaderSlice::from_slice(&b.data[14..]).unwrap();
        let h = ip.to_header();
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        if b.caplen < b.origlen {
            sliced += 1;
            assert_eq!(b.caplen, 54, "headers only");
            continue;
        }
        full += 1;
        let p = SlicedPacket::from_ethernet(b.data).unwrap();
        let (s, d) = (h.source, h.destination);
        match p.transport.expect("transport") {
            TransportSlice::Tcp(t) => {
                assert_eq!(t.checksum(), t.calc_checksum_ipv4(s, d).unwrap())
            }
            TransportSlice::Udp(u) => {
                let uh = u.to_header();
                assert_eq!(
                    uh.checksum,
                    uh.calc_checksum_ipv4_raw(s, d, u.payload()).unwrap()
                );
            }
            _ => panic!("unexpected transport"),
        }
    }
    assert!(
        sliced > 20_000 && full > 10_000,
        "{sliced} sliced, {full} full"
    );
    assert!(wire > 1_000_000_000, "{wire} bytes on the wire");
    let t = read_json(&truth);
    assert_eq!(t["scenario"], "behaviour");
    assert_eq!(t["packets"], s.packets);
    let hosts = t["hosts"].as_object().unwrap();
    let sent: u64 = hosts
        .values()
        .map(|h| h["bytes_out"].as_u64().unwrap())
        .sum();
    assert!(sent > 500_000_000);
}

#[test]
fn office_is_deterministic_with_sane_truth() {
    let dir = TempDir::new("gen-det");
    let pcap = dir.path("office.pcap");
    let truth = dir.path("office.truth.json");
    let o = opts(Scenario::Office, 0, None);
    let s1 = generate(&o, &pcap, Some(&truth)).unwrap();
    let (p1, t1) = (
        std::fs::read(&pcap).unwrap(),
        std::fs::read(&truth).unwrap(),
    );
    let s2 = generate(&o, &pcap, Some(&truth)).unwrap();
    assert_eq!(s1, s2);
    assert_eq!(
        p1,
        std::fs::read(&pcap).unwrap(),
        "pcap must be byte-identical"
    );
    assert_eq!(
        t1,
        std::fs::read(&truth).unwrap(),
        "truth must be byte-identical"
    );
    assert_eq!(s1.bytes, p1.len() as u64);
    assert!(
        p1.len() < 400_000,
        "office capture too big: {} bytes",
        p1.len()
    );

    let other = generate(
        &GenerateOptions {
            seed: 2,
            ..o.clone()
        },
        &pcap,
        None,
    )
    .unwrap();
    assert_ne!(p1, std::fs::read(&pcap).unwrap());
    assert!(other.packets > 0);

    let t = read_json(&truth);
    assert_eq!(t["scenario"], "office");
    assert_eq!(t["packets"].as_u64(), Some(s1.packets));
    assert_eq!(
        t["home_nets"],
        serde_json::json!(["10.20.0.0/16", "fd00:20::/64"])
    );
    let hosts = t["hosts"].as_object().unwrap();
    assert_eq!(hosts.len(), 9);
    let pw = &hosts["10.20.1.66"];
    assert_eq!(pw["role"], "proxyware");
    let alerts = pw["expect_alerts"].as_array().unwrap();
    let services: Vec<&str> = alerts
        .iter()
        .map(|a| a["service"].as_str().unwrap())
        .collect();
    assert_eq!(
        services,
        [
            "Honeygain",
            "IPRoyal Pawns",
            "EarnApp",
            "Traffmonetizer",
            "PacketStream"
        ]
    );
    for a in alerts {
        assert_eq!(a["branch"], "ProxywareDomain");
    }
    assert_eq!(alerts[0]["via"], serde_json::json!(["dns", "sni", "http"]));
    assert_eq!(alerts[0]["names"], serde_json::json!(["api.honeygain.com"]));
    assert_eq!(
        alerts[1]["names"],
        serde_json::json!(["pawns.app", "api.pawns.app"])
    );
    assert_eq!(alerts[4]["via"], serde_json::json!(["dns", "dns_cache"]));
    assert_eq!(hosts["10.20.1.77"]["role"], "lookalike");
    assert_eq!(hosts["10.20.1.77"]["expect_alerts"], serde_json::json!([]));
    for ip in ["10.20.1.10", "10.20.1.15", "fd00:20::10"] {
        assert_eq!(hosts[ip]["role"], "office");
        assert_eq!(hosts[ip]["expect_alerts"], serde_json::json!([]));
    }
    // Repeat folding needs the same question asked many times.
    let honeygain_dns = t["flows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["proto"] == "udp" && f["name"] == "api.honeygain.com")
        .count();
    assert!(honeygain_dns >= 10);
}

/// The committed hidden-names capture is what the generator writes, every frame is valid,
/// and the truth's volumes match the packets.
#[test]
fn hidden_names_matches_the_committed_capture() {
    let dir = TempDir::new("gen-hidden");
    let pcap = dir.path("hidden-names.pcap");
    let truth = dir.path("hidden-names.truth.json");
    let s = generate(&opts(Scenario::HiddenNames, 0, None), &pcap, Some(&truth)).unwrap();
    let data = std::fs::read(&pcap).unwrap();
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/hidden-names.pcap");
    assert!(
        data == std::fs::read(committed).unwrap(),
        "regenerate captures/hidden-names.pcap"
    );
    check_packets(&data, s.packets);
    let t = read_json(&truth);
    check_volumes(&data, &t);
    let hidden: Vec<&Value> = t["hosts"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(|h| h.get("hidden"))
        .collect();
    assert_eq!(hidden.len(), 6);
}

#[test]
fn office_pcap_reparses_with_valid_checksums_and_volumes() {
    let dir = TempDir::new("gen-parse");
    let pcap = dir.path("office.pcap");
    let truth = dir.path("office.truth.json");
    let s = generate(&opts(Scenario::Office, 0, None), &pcap, Some(&truth)).unwrap();
    let data = std::fs::read(&pcap).unwrap();
    let (v4, v6) = check_packets(&data, s.packets);
    assert!(v4 > 500 && v6 > 30, "v4 {v4} v6 {v6}");
    let t = read_json(&truth);
    check_volumes(&data, &t);

    // Ten minutes of event time.
    let (_, cap) = parse_pcap(&data).unwrap();
    let first = cap.blocks.first().unwrap().ts_sec;
    let last = cap.blocks.last().unwrap().ts_sec;
    assert!(
        (540..=640).contains(&(last - first)),
        "span {}",
        last - first
    );

    // Every DNS payload is a well-formed message, and each building block is present.
    let (mut dns, mut https_rr, mut nx, mut cname, mut connect, mut hg_host) = (0, 0, 0, 0, 0, 0);
    let (mut split_hello, mut snis) = (0, Vec::new());
    for b in &cap.blocks {
        let p = SlicedPacket::from_ethernet(b.data).unwrap();
        match &p.transport {
            Some(TransportSlice::Udp(u)) => {
                let m = simple_dns::Packet::parse(u.payload()).unwrap();
                assert_eq!(m.questions.len(), 1);
                dns += 1;
                https_rr += usize::from(u16::from(m.questions[0].qtype) == 65);
                nx += usize::from(m.rcode() == simple_dns::RCODE::NameError);
                cname += m
                    .answers
                    .iter()
                    .filter(|a| matches!(a.rdata, simple_dns::rdata::RData::CNAME(_)))
                    .count();
            }
            Some(TransportSlice::Tcp(t)) => {
                let pl = t.payload();
                connect += usize::from(pl.starts_with(b"CONNECT github.com:443 "));
                hg_host += usize::from(
                    pl.starts_with(b"GET ")
                        && pl.windows(25).any(|w| w == b"\r\nHost: api.honeygain.com"),
                );
                if pl.len() > 5 && pl[..3] == [0x16, 0x03, 0x01] {
                    let rec_len = 5 + usize::from(u16::from_be_bytes([pl[3], pl[4]]));
                    if pl.len() < rec_len {
                        split_hello += 1;
                    } else if let Ok((_, rec)) = tls_parser::parse_tls_plaintext(pl)
                        && let tls_parser::TlsMessage::Handshake(
                            tls_parser::TlsMessageHandshake::ClientHello(ch),
                        ) = &rec.msg[0]
                    {
                        let (_, exts) =
                            tls_parser::parse_tls_client_hello_extensions(ch.ext.unwrap()).unwrap();
                        for e in exts {
                            if let tls_parser::TlsExtension::SNI(v) = e {
                                snis.push(String::from_utf8(v[0].1.to_vec()).unwrap());
                            }
                        }
                    }
                }
            }
            _ => panic!("unexpected transport"),
        }
    }
    assert!(dns > 100);
    assert!(https_rr >= 4, "HTTPS queries+answers: {https_rr}");
    assert!(nx >= 1 && cname >= 2 && connect == 1 && hg_host == 1);
    assert_eq!(
        split_hello, 2,
        "login.microsoftonline.com and api.pawns.app"
    );
    for name in [
        "api.honeygain.com",
        "pawns.app",
        "client.earnapp.com",
        "notpawns.app",
        "pawns.app.example.net",
        "myhoneygain.com",
        "honeygain.com.example.org",
        "earnapp.community",
        "github.com",
    ] {
        assert!(snis.iter().any(|s| s == name), "no SNI {name}");
    }
    assert!(
        !snis
            .iter()
            .any(|s| s == "packetstream.io" || s == "traffmonetizer.com")
    );
}

#[test]
fn sliced_office_keeps_volumes() {
    let dir = TempDir::new("gen-slice");
    let full = dir.path("full.pcap");
    let full_t = dir.path("full.json");
    let cut = dir.path("cut.pcap");
    let cut_t = dir.path("cut.json");
    generate(&opts(Scenario::Office, 0, None), &full, Some(&full_t)).unwrap();
    let s = generate(&opts(Scenario::Office, 0, Some(96)), &cut, Some(&cut_t)).unwrap();
    let (a, b) = (read_json(&full_t), read_json(&cut_t));
    assert_eq!(a["flows"], b["flows"]);
    assert_eq!(a["hosts"], b["hosts"]);
    assert!(
        b["generator_command"]
            .as_str()
            .unwrap()
            .ends_with("--snaplen 96")
    );
    let data = std::fs::read(&cut).unwrap();
    let full_data = std::fs::read(&full).unwrap();
    let (_, c1) = parse_pcap(&full_data).unwrap();
    let (_, c2) = parse_pcap(&data).unwrap();
    assert_eq!(c1.blocks.len() as u64, s.packets);
    assert_eq!(c2.header.snaplen, 96);
    for (x, y) in c1.blocks.iter().zip(&c2.blocks) {
        assert_eq!(x.origlen, y.origlen);
        assert_eq!(y.caplen, x.caplen.min(96));
        assert_eq!(&x.data[..y.data.len()], y.data);
    }
    check_volumes(&data, &b);
}

#[test]
fn bench_writes_exact_count_with_valid_packets() {
    let dir = TempDir::new("gen-bench");
    let pcap = dir.path("bench.pcap");
    let truth = dir.path("bench.json");
    let s = generate(&opts(Scenario::Bench, 30_000, None), &pcap, Some(&truth)).unwrap();
    assert_eq!(s.packets, 30_000);
    let data = std::fs::read(&pcap).unwrap();
    assert_eq!(s.bytes, data.len() as u64);
    let (v4, v6) = check_packets(&data, 30_000);
    assert!(v6 > 0 && v4 > v6);
    let t = read_json(&truth);
    check_volumes(&data, &t);
    let flows = t["flows"].as_array().unwrap();
    assert!(flows.len() > 100);
    let proxy = t["hosts"]
        .as_object()
        .unwrap()
        .values()
        .filter(|h| h["role"] == "proxyware")
        .count();
    assert_eq!(proxy, 3);
    // Mostly bulk: the average frame is large.
    assert!(data.len() as u64 / s.packets > 700);

    let again = dir.path("again.pcap");
    generate(&opts(Scenario::Bench, 30_000, None), &again, None).unwrap();
    assert_eq!(data, std::fs::read(&again).unwrap());
}

#[test]
fn concurrent_opens_distinct_live_flows_within_the_idle_timeouts() {
    let dir = TempDir::new("gen-concurrent");
    let pcap = dir.path("c.pcap");
    let truth = dir.path("c.json");
    let o = GenerateOptions {
        scenario: Scenario::Concurrent,
        flows: 3000,
        ..Default::default()
    };
    let s = generate(&o, &pcap, Some(&truth)).unwrap();
    let data = std::fs::read(&pcap).unwrap();
    assert_eq!(s.bytes, data.len() as u64);
    let (v4, v6) = check_packets(&data, s.packets);
    assert!(v6 > 0 && v4 > v6);
    let t = read_json(&truth);
    // volumes_from_pcap also proves that no 5-tuple repeats and every packet is in a flow.
    check_volumes(&data, &t);
    let flows = t["flows"].as_array().unwrap();
    assert_eq!(flows.len(), 3000);
    let tcp = flows.iter().filter(|f| f["proto"] == "tcp").count();
    assert!(tcp > 2000 && tcp < 3000, "{tcp} TCP flows");
    let (_, cap) = parse_pcap(&data).unwrap();
    let mut flags_seen = 0u8;
    for b in &cap.blocks {
        if let Some(TransportSlice::Tcp(t)) = SlicedPacket::from_ethernet(b.data).unwrap().transport
        {
            assert!(!t.fin() && !t.rst(), "flows stay open");
            flags_seen |= u8::from(t.syn());
        }
    }
    assert_eq!(flags_seen, 1);
    let ts = |b: &pcap_parser::LegacyPcapBlock<'_>| {
        u64::from(b.ts_sec) * 1_000_000 + u64::from(b.ts_usec)
    };
    let span = ts(cap.blocks.last().unwrap()) - ts(&cap.blocks[0]);
    assert!(
        span < 55_000_000,
        "all flows live under the 60 s UDP timeout: {span} us"
    );

    let again = dir.path("again.pcap");
    generate(&o, &again, None).unwrap();
    assert_eq!(data, std::fs::read(&again).unwrap());
}

#[test]
fn rejects_bad_options() {
    let dir = TempDir::new("gen-bad");
    let p = dir.path("x.pcap");
    assert!(matches!(
        generate(&opts(Scenario::Office, 0, Some(0)), &p, None),
        Err(GenerateError::InvalidOptions(_))
    ));
    assert!(matches!(
        generate(&opts(Scenario::Bench, 0, None), &p, None),
        Err(GenerateError::InvalidOptions(_))
    ));
    let no_flows = GenerateOptions {
        scenario: Scenario::Concurrent,
        flows: 0,
        ..Default::default()
    };
    assert!(matches!(
        generate(&no_flows, &p, None),
        Err(GenerateError::InvalidOptions(_))
    ));
    let missing = dir.path("no/such/dir/x.pcap");
    assert!(matches!(
        generate(&opts(Scenario::Office, 0, None), &missing, None),
        Err(GenerateError::Io { .. })
    ));
}

/// Regenerates the committed captures. Run from the crate root:
/// `cargo test --release --lib generate::tests::write_committed_captures -- --ignored`
#[test]
#[ignore]
fn write_committed_captures() {
    let dir = Path::new("captures");
    std::fs::create_dir_all(dir).unwrap();
    for (scenario, seed, snaplen, stem) in [
        (Scenario::Office, 1, None, "office"),
        (Scenario::Office, 1, Some(96), "office-sliced"),
        (Scenario::Behaviour, 1, None, "behaviour"),
        (Scenario::HiddenNames, 1, None, "hidden-names"),
        (Scenario::Site, 1, None, "site-1"),
        (Scenario::Site, 2, None, "site-2"),
        (Scenario::Site, 3, None, "site-3"),
    ] {
        let pcap = dir.join(format!("{stem}.pcap"));
        let truth = dir.join(format!("{stem}.truth.json"));
        let o = GenerateOptions {
            seed,
            ..opts(scenario, 0, snaplen)
        };
        let s = generate(&o, &pcap, Some(&truth)).unwrap();
        println!(
            "{}: {} packets, {} bytes",
            pcap.display(),
            s.packets,
            s.bytes
        );
    }
}

/// Throughput check: `cargo test --release --lib generate::tests::bench_speed -- --ignored --nocapture`
#[test]
#[ignore]
fn bench_speed() {
    let out = std::env::var("EGRESSWATCH_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir().join("egresswatch-bench.pcap"));
    let packets = std::env::var("EGRESSWATCH_BENCH_PACKETS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_BENCH_PACKETS);
    let start = std::time::Instant::now();
    let s = generate(&opts(Scenario::Bench, packets, None), &out, None).unwrap();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "bench: {} packets, {} bytes in {:.2}s = {:.2} Mpkt/s, {:.0} MB/s -> {}",
        s.packets,
        s.bytes,
        secs,
        s.packets as f64 / secs / 1e6,
        s.bytes as f64 / secs / 1e6,
        out.display()
    );
}
