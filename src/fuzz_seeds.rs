//! Seed corpora for the fuzz targets in `fuzz/`, cut from real captures: frames, fragments,
//! DNS messages, TLS and HTTP streams, flow-export datagrams, small capture files and config
//! files, each in the input layout its target reads (see the targets' comments).
//! `fuzz/run.sh` runs `egresswatch fuzz-seeds` before fuzzing.
use crate::decode::packet::{Decoded, Layer, decode_frame, ip_proto, linktype};
use crate::decode::quic::{QuicConn, QuicLimits};
use crate::export::classify;
use crate::source::pcap_file::CaptureReader;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

/// Seeds per target and capture: enough variety, a corpus libFuzzer loads in seconds.
const PER_CAPTURE: usize = 40;
/// Capture files up to this size are seeds of the file reader as they are.
const MAX_SEED_FILE: u64 = 64 << 10;
/// Frames per capture in a `flows` seed.
const FLOW_FRAMES: usize = 64;
/// Datagrams of a capture's first QUIC flow in a `quic` seed.
const QUIC_DATAGRAMS: usize = 16;

#[derive(Default)]
struct Corpus {
    seeds: BTreeMap<&'static str, Vec<Vec<u8>>>,
    seen: HashSet<(&'static str, Vec<u8>)>,
}

impl Corpus {
    fn add(&mut self, target: &'static str, seed: Vec<u8>) {
        if self.seen.insert((target, seed.clone())) {
            self.seeds.entry(target).or_default().push(seed);
        }
    }

    fn count(&self, target: &'static str) -> usize {
        self.seeds.get(target).map_or(0, Vec::len)
    }
}

/// `endpoint_text`: the hand-written samples of every text format the endpoint readers know.
const ENDPOINT_SAMPLES: [&[u8]; 7] = [
    include_bytes!("../tests/data/endpoint/wevtutil.xml"),
    include_bytes!("../tests/data/endpoint/saved-log.xml"),
    include_bytes!("../tests/data/endpoint/winlogbeat.ndjson"),
    include_bytes!("../tests/data/endpoint/elastic-agent.ndjson"),
    include_bytes!("../tests/data/endpoint/splunk.json"),
    include_bytes!("../tests/data/endpoint/sysmon-linux.log"),
    include_bytes!("../tests/data/endpoint/sysmon-linux-5424.log"),
];

/// `endpoint_evtx`: an empty chunk's header after its magic (libyal's EVTX documentation):
/// record numbers 1..1, header size 128, the last record and the free space at 512, where
/// records start; no strings or templates yet.
fn evtx_chunk_header() -> Vec<u8> {
    let mut chunk = vec![0u8; 512 - 8];
    let mut put =
        |at: usize, bytes: &[u8]| chunk[at - 8..at - 8 + bytes.len()].copy_from_slice(bytes);
    for at in [8, 16, 24, 32] {
        put(at, &1u64.to_le_bytes());
    }
    put(40, &128u32.to_le_bytes());
    put(44, &512u32.to_le_bytes());
    put(48, &512u32.to_le_bytes());
    chunk
}

/// A length-prefixed record: `head` bytes, a 2-byte big-endian length, the bytes.
fn record(out: &mut Vec<u8>, head: u8, bytes: &[u8]) {
    let bytes = bytes.get(..usize::from(u16::MAX)).unwrap_or(bytes);
    out.push(head);
    out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Writes seeds for every target into `out/<target>/`; returns seeds per target.
pub fn write(out: &Path, captures: &[PathBuf], configs: &[PathBuf]) -> anyhow::Result<String> {
    let mut corpus = Corpus::default();
    for path in captures {
        seeds_of_capture(path, &mut corpus);
        if std::fs::metadata(path).is_ok_and(|m| m.len() <= MAX_SEED_FILE) {
            corpus.add("capture_file", std::fs::read(path)?);
        }
    }
    for path in configs {
        corpus.add("config", std::fs::read(path)?);
    }
    // `quic`: RFC 9001 A.2's CRYPTO frame as frames to seal into a v1 and a v2 Initial.
    let crypto: String = include_str!("../tests/data/quic/rfc9001_a2_crypto_frame.hex")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect();
    let crypto: Vec<u8> = crypto
        .split_whitespace()
        .flat_map(|w| w.as_bytes().chunks(2))
        .filter_map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
        .collect();
    for head in [0b011, 0b111] {
        let mut seed = Vec::new();
        record(&mut seed, head, &crypto);
        corpus.add("quic", seed);
    }
    for sample in ENDPOINT_SAMPLES {
        corpus.add("endpoint_text", sample.to_vec());
    }
    corpus.add("endpoint_evtx", evtx_chunk_header());
    let mut report = String::new();
    for (target, seeds) in &corpus.seeds {
        let dir = out.join(target);
        std::fs::create_dir_all(&dir)?;
        for (i, seed) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:05}")), seed)?;
        }
        report.push_str(&format!("{target}: {} seeds\n", seeds.len()));
    }
    Ok(report)
}

fn seeds_of_capture(path: &Path, corpus: &mut Corpus) {
    let Ok(mut reader) = CaptureReader::open(&[path.to_path_buf()]) else {
        return;
    };
    let start: BTreeMap<&str, usize> = ["packet", "dns", "tls", "http", "socks_bittorrent"]
        .into_iter()
        .map(|t| (t, corpus.count(t)))
        .collect();
    let room = |corpus: &Corpus, target: &'static str| {
        corpus.count(target) < start.get(target).copied().unwrap_or(0) + PER_CAPTURE
    };
    let mut flows = vec![0u8];
    // `quic`: the first flow whose client datagram starts a QUIC reader, both directions.
    let mut quic = Vec::new();
    let mut quic_flow = None;
    let mut quic_datagrams = 0;
    let mut flow_frames = 0;
    let mut last_s = None;
    while let Some(packet) = reader.next_packet() {
        let Some(link) = linktype::SUPPORTED
            .iter()
            .position(|&lt| lt == packet.linktype)
        else {
            continue;
        };
        if room(corpus, "packet") {
            let mut seed = vec![link as u8];
            seed.extend_from_slice(packet.data);
            corpus.add("packet", seed);
        }
        // `flows` reads raw IP (even first byte) or Ethernet (odd) frames.
        if flow_frames < FLOW_FRAMES
            && matches!(packet.linktype, linktype::ETHERNET | linktype::RAW)
        {
            if flow_frames == 0 {
                flows[0] = u8::from(packet.linktype == linktype::ETHERNET);
            }
            let s = packet.ts_ns / 1_000_000_000;
            let gap = last_s.map_or(0, |l: u64| s.saturating_sub(l).min(255) as u8);
            last_s = Some(s);
            record(&mut flows, gap, packet.data);
            flow_frames += 1;
        }
        let mut decoded = Decoded::default();
        decode_frame(packet.linktype, packet.data, &mut decoded);
        for layer in &decoded.layers {
            if let Layer::Transport(t) = layer
                && t.proto == ip_proto::UDP
                && quic_datagrams < QUIC_DATAGRAMS
            {
                let key = ((t.src, t.sport), (t.dst, t.dport));
                if quic_flow.is_none()
                    && QuicConn::start(t.payload, QuicLimits::default()).is_some()
                {
                    quic_flow = Some(key);
                }
                let from_client = quic_flow == Some(key);
                if from_client || quic_flow == Some((key.1, key.0)) {
                    record(&mut quic, u8::from(from_client), t.payload);
                    quic_datagrams += 1;
                }
            }
            match layer {
                Layer::Fragment(frag) => {
                    let mut seed = Vec::new();
                    let flags = u8::from(frag.more) << 2;
                    let off = ((frag.offset / 8) as u16).to_be_bytes();
                    let payload = frag.payload.get(..255).unwrap_or(frag.payload);
                    seed.extend_from_slice(&[flags, off[0], off[1], payload.len() as u8]);
                    seed.extend_from_slice(payload);
                    corpus.add("defrag", seed);
                }
                Layer::Transport(t) if !t.payload.is_empty() => {
                    let ports = [t.sport, t.dport];
                    if t.proto == ip_proto::UDP && classify(t.payload).is_some() {
                        let mut seed = Vec::new();
                        record(&mut seed, 0, t.payload);
                        corpus.add("flow_export", seed);
                    } else if ports.iter().any(|p| matches!(p, 53 | 5353 | 5355))
                        && room(corpus, "dns")
                    {
                        // DNS over TCP carries a 2-byte length first.
                        let msg = if t.proto == ip_proto::TCP {
                            t.payload.get(2..).unwrap_or(&[])
                        } else {
                            t.payload
                        };
                        corpus.add("dns", msg.to_vec());
                    } else if t.proto == ip_proto::TCP && t.payload.first() == Some(&0x16) {
                        if room(corpus, "tls") {
                            let cut =
                                (t.payload.len().min(usize::from(u16::MAX)) as u16).to_be_bytes();
                            let mut seed = vec![cut[0], cut[1], 200];
                            seed.extend_from_slice(t.payload);
                            corpus.add("tls", seed);
                        }
                    } else if t.proto == ip_proto::TCP
                        && t.payload.iter().take(8).all(u8::is_ascii_graphic)
                    {
                        if room(corpus, "http") {
                            let mut seed = vec![7];
                            seed.extend_from_slice(t.payload);
                            corpus.add("http", seed);
                        }
                    } else if t.proto == ip_proto::TCP && room(corpus, "socks_bittorrent") {
                        corpus.add("socks_bittorrent", t.payload.to_vec());
                    }
                }
                Layer::Transport(_) => {}
            }
        }
    }
    if flow_frames > 0 {
        corpus.add("flows", flows);
    }
    if !quic.is_empty() {
        corpus.add("quic", quic);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every target gets seeds from the real captures, each in its target's layout.
    #[test]
    fn every_target_gets_seeds_in_its_layout() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut captures: Vec<PathBuf> = std::fs::read_dir(root.join("../shared/captures/public"))
            .unwrap()
            .filter_map(|e| Some(e.ok()?.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "pcap" || x == "pcapng"))
            .collect();
        captures.push(root.join("captures/office.pcap"));
        let tmp = crate::testing::TempDir::new("seeds");
        let out = tmp.path("seeds");
        let configs = [root.join("config/egresswatch.toml")];
        write(&out, &captures, &configs).unwrap();
        let seeds = |target: &str| -> Vec<Vec<u8>> {
            std::fs::read_dir(out.join(target))
                .map(|dir| {
                    dir.filter_map(|e| std::fs::read(e.ok()?.path()).ok())
                        .collect()
                })
                .unwrap_or_default()
        };
        for target in [
            "packet",
            "defrag",
            "flows",
            "dns",
            "tls",
            "http",
            "socks_bittorrent",
            "flow_export",
            "capture_file",
            "config",
            "quic",
            "endpoint_text",
            "endpoint_evtx",
        ] {
            assert!(!seeds(target).is_empty(), "no seeds for {target}");
        }
        // `packet`: a link-type index, then a frame the decoder reads.
        for seed in seeds("packet") {
            assert!(usize::from(seed[0]) < linktype::SUPPORTED.len());
        }
        // `tls`: a 2-byte cut, a segment size, then a stream starting with a handshake record.
        assert!(seeds("tls").iter().all(|s| s.get(3) == Some(&0x16)));
        // `flow_export`: each seed is one datagram record that `classify` knows.
        for seed in seeds("flow_export") {
            let len = usize::from(u16::from_be_bytes([seed[1], seed[2]]));
            assert!(classify(&seed[3..3 + len]).is_some());
        }
    }
}
