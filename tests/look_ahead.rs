//! The flow look-ahead (`FlowTable::look_ahead`) works from guesses; where it guesses, it must
//! guess right, or it only loads memory nobody wants. On every public capture and every
//! committed one: the reader's "frame two ahead" is the frame it returns two calls later, and
//! `Probe::guess` names a flow the decoder finds in that frame. `tests/sharded.rs` checks
//! that the look-ahead changes no result (one thread looks ahead, shard workers do not).
mod common;
use egresswatch::decode::packet::{Decoded, Layer, decode_frame};
use egresswatch::flow::key::Probe;
use egresswatch::source::pcap_file::CaptureReader;
use std::path::{Path, PathBuf};

fn captures() -> Vec<PathBuf> {
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures");
    let mut files: Vec<PathBuf> = [common::public_dir(), committed]
        .iter()
        .flat_map(|dir| std::fs::read_dir(dir).expect("capture directory"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.to_string_lossy();
            name.ends_with(".pcap") || name.ends_with(".pcapng")
        })
        .collect();
    files.sort();
    files
}

/// A capture's frames (link type, bytes) and, for each, the frame two ahead the reader gave.
struct Read {
    frames: Vec<(u32, Vec<u8>)>,
    two_ahead: Vec<Vec<u8>>,
}

fn read(path: &Path) -> Option<Read> {
    let mut reader = CaptureReader::open(&[path.to_path_buf()]).ok()?;
    let mut read = Read {
        frames: Vec::new(),
        two_ahead: Vec::new(),
    };
    while let Some(frame) = reader.next_shared() {
        read.frames
            .push((frame.packet.linktype, frame.packet.data.to_vec()));
        read.two_ahead.push(frame.two_ahead.to_vec());
    }
    Some(read)
}

#[test]
fn the_frame_two_ahead_is_the_frame_read_two_calls_later() {
    let (mut files, mut pcapng_files) = (0, 0);
    for path in captures() {
        let Some(read) = read(&path) else { continue };
        let mut seen = 0;
        for (i, ahead) in read.two_ahead.iter().enumerate() {
            if ahead.is_empty() {
                continue;
            }
            let later = read.frames.get(i + 2).map(|(_, bytes)| bytes);
            assert_eq!(later, Some(ahead), "{}: frame {}", path.display(), i + 1);
            seen += 1;
        }
        // Small captures lie in one chunk: every frame but the last two looks ahead.
        if read.frames.len() > 2 && seen > 0 {
            files += 1;
            if path.to_string_lossy().ends_with(".pcapng") {
                pcapng_files += 1;
            }
        }
    }
    assert!(files > 20, "look-ahead in only {files} captures");
    assert!(pcapng_files > 0, "no pcapng capture looked ahead");
}

#[test]
fn a_guessed_flow_is_one_the_decoder_finds() {
    let (mut transports, mut guessed) = (0u64, 0u64);
    for path in captures() {
        let Some(read) = read(&path) else { continue };
        let mut decoded = Decoded::default();
        for (n, (linktype, frame)) in read.frames.iter().enumerate() {
            decode_frame(*linktype, frame, &mut decoded);
            let flows: Vec<(Probe, u8)> = decoded
                .layers
                .iter()
                .filter_map(|layer| match layer {
                    Layer::Transport(t) => {
                        Some((Probe::new((t.src, t.sport), (t.dst, t.dport)), t.proto))
                    }
                    Layer::Fragment(_) => None,
                })
                .collect();
            let guess = Probe::guess(*linktype, frame);
            if let Some(guess) = guess
                && decoded.drop.is_none()
            {
                assert!(
                    flows.contains(&guess),
                    "{}: frame {}: guessed {guess:?}, decoded {flows:?}",
                    path.display(),
                    n + 1
                );
            }
            if let Some((_, proto)) = flows.first()
                && (*proto == 6 || *proto == 17)
            {
                transports += 1;
                guessed += u64::from(guess.is_some());
            }
        }
    }
    // The guess covers plain frames, which is nearly all traffic.
    eprintln!("guessed {guessed} of {transports} TCP/UDP frames");
    assert!(transports > 10_000, "{transports} TCP/UDP frames");
    assert!(
        guessed * 100 >= transports * 95,
        "guessed {guessed} of {transports} TCP/UDP frames"
    );
}
