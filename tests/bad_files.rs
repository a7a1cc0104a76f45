//! Broken capture files given to `egresswatch replay`: each gives a clear message that names
//! the file (and the byte offset, once the file was recognised), never a panic; the exit
//! status is non-zero when nothing at all could be read, zero when the rest of the input was
//! used. The files are cut and corrupted from the bundled office capture.
mod common;

use common::TempDir;
use std::path::Path;
use std::process::Command;

const OFFICE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/captures/office.pcap");

struct Outcome {
    code: i32,
    stderr: String,
    frames: u64,
}

fn replay(files: &[&Path]) -> Outcome {
    let out = Command::new(env!("CARGO_BIN_EXE_egresswatch"))
        .args(["replay", "--format", "json"])
        .args(files)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    let frames = stderr
        .lines()
        .find_map(|l| l.split(" frames,").next()?.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0);
    Outcome {
        code: out.status.code().expect("exited, not killed by a signal"),
        stderr,
        frames,
    }
}

fn office() -> Vec<u8> {
    std::fs::read(OFFICE).unwrap()
}

/// A pcapng file: section header, one Ethernet interface, then `blocks` as given.
fn pcapng(blocks: &[Vec<u8>]) -> Vec<u8> {
    let mut out = block(0x0a0d_0d0a, &{
        let mut body = 0x1a2b_3c4du32.to_le_bytes().to_vec();
        body.extend_from_slice(&1u16.to_le_bytes());
        body.extend_from_slice(&0u16.to_le_bytes());
        body.extend_from_slice(&(-1i64).to_le_bytes());
        body
    });
    out.extend(block(1, &[1, 0, 0, 0, 0, 0, 4, 0]));
    for b in blocks {
        out.extend_from_slice(b);
    }
    out
}

/// A well-formed pcapng block.
fn block(kind: u32, body: &[u8]) -> Vec<u8> {
    let len = (12 + body.len().div_ceil(4) * 4) as u32;
    let mut out = kind.to_le_bytes().to_vec();
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(body);
    out.resize(len as usize - 4, 0);
    out.extend_from_slice(&len.to_le_bytes());
    out
}

/// An enhanced packet block with the first frame of the office capture.
fn epb() -> Vec<u8> {
    let data = office();
    let caplen = u32::from_le_bytes(data[32..36].try_into().unwrap()) as usize;
    let frame = &data[40..40 + caplen];
    let mut body = 0u32.to_le_bytes().to_vec();
    body.extend_from_slice(&[0; 8]);
    body.extend_from_slice(&(caplen as u32).to_le_bytes());
    body.extend_from_slice(&(caplen as u32).to_le_bytes());
    body.extend_from_slice(frame);
    block(6, &body)
}

fn set_u32(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

#[test]
fn unreadable_files_exit_non_zero_with_the_file_named() {
    let dir = TempDir::new("bad-files", "unreadable");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("zero-length", Vec::new(), "empty file"),
        (
            "wrong-magic",
            b"GIF89a, not a capture at all".repeat(4),
            "not a pcap or pcapng file",
        ),
        (
            "cut-header",
            office()[..10].to_vec(),
            "not a pcap or pcapng file",
        ),
        (
            "unknown-link-type",
            {
                let mut d = office();
                set_u32(&mut d, 20, 4242);
                d
            },
            "unsupported link type 4242",
        ),
        (
            "first-record-absurd-caplen",
            {
                let mut d = office();
                set_u32(&mut d, 32, 0x7fff_ffff);
                d
            },
            "at byte offset 24: record larger than",
        ),
        (
            "pcapng-block-length-not-multiple-of-4",
            {
                let mut b = epb();
                let len = b.len() as u32 - 3;
                set_u32(&mut b, 4, len);
                pcapng(&[b])
            },
            "at byte offset 48",
        ),
        (
            "pcapng-block-shorter-than-its-header",
            {
                let mut b = epb();
                set_u32(&mut b, 4, 8);
                pcapng(&[b])
            },
            "at byte offset 48",
        ),
        (
            "pcapng-trailer-mismatch",
            {
                let mut b = epb();
                let at = b.len() - 4;
                set_u32(&mut b, at, 12);
                pcapng(&[b])
            },
            "at byte offset 48",
        ),
        (
            "pcapng-epb-overruns-its-block",
            {
                let mut b = epb();
                set_u32(&mut b, 20, 4000);
                pcapng(&[b])
            },
            "at byte offset 48",
        ),
        (
            "pcapng-huge-block",
            {
                let mut b = epb();
                set_u32(&mut b, 4, 0xffff_fff0);
                pcapng(&[b])
            },
            "at byte offset 48",
        ),
    ];
    for (name, bytes, want) in &cases {
        let path = dir.path(&format!("{name}.pcap"));
        std::fs::write(&path, bytes).unwrap();
        let out = replay(&[&path]);
        assert_eq!(out.code, 1, "{name}: {}", out.stderr);
        assert_eq!(out.frames, 0, "{name}: {}", out.stderr);
        assert!(
            out.stderr.contains(&path.display().to_string()),
            "{name}: {}",
            out.stderr
        );
        assert!(
            out.stderr.contains(want),
            "{name}: want {want:?} in {}",
            out.stderr
        );
    }
    // A directory is not a file.
    let out = replay(&[&dir.0]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(&dir.0.display().to_string()),
        "{}",
        out.stderr
    );
}

#[test]
fn damaged_files_keep_what_could_be_read() {
    let dir = TempDir::new("bad-files", "damaged");
    let whole = replay(&[Path::new(OFFICE)]);
    assert_eq!(whole.code, 0);
    // Cut inside the 10th record: 9 frames are read, the cut is reported where it starts.
    let cut = dir.path("cut.pcap");
    std::fs::write(&cut, &office()[..2000]).unwrap();
    let out = replay(&[&cut]);
    assert_eq!((out.code, out.frames), (0, 9), "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "{} at byte offset 1161: file ends inside a record",
            cut.display()
        )),
        "{}",
        out.stderr
    );
    // An absurd snaplen in the file header is not trusted: records carry their own lengths.
    let snaplen = dir.path("snaplen.pcap");
    let mut d = office();
    set_u32(&mut d, 16, u32::MAX);
    std::fs::write(&snaplen, &d).unwrap();
    let out = replay(&[&snaplen]);
    assert_eq!((out.code, out.frames), (0, whole.frames), "{}", out.stderr);
    // A corrupt length mid-file: the frames before it are kept, and a good file given with
    // it is read whole.
    let mid = dir.path("mid.pcap");
    let mut d = office();
    set_u32(&mut d, 1161 + 8, 0x7fff_ffff);
    std::fs::write(&mid, &d).unwrap();
    let out = replay(&[&mid, Path::new(OFFICE)]);
    assert_eq!(
        (out.code, out.frames),
        (0, 9 + whole.frames),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&format!(
            "{} at byte offset 1161: record larger than",
            mid.display()
        )),
        "{}",
        out.stderr
    );
    // A good frame then a bad pcapng block: one frame, the problem at the block.
    let ng = dir.path("ng.pcapng");
    let mut b = epb();
    set_u32(&mut b, 4, 8);
    std::fs::write(&ng, pcapng(&[epb(), b])).unwrap();
    let out = replay(&[&ng]);
    assert_eq!((out.code, out.frames), (0, 1), "{}", out.stderr);
    let at = 48 + epb().len();
    assert!(
        out.stderr.contains(&format!("at byte offset {at}")),
        "{}",
        out.stderr
    );
}
