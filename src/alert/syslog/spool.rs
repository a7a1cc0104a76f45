//! Disk spool of one target: append-only segment files of length-prefixed messages.
//!
//! Layout: `DIR/NNNNNNNNNNNNNNNNNNNN.spool`, each record a 4-byte big-endian length and the
//! formatted message. The writer appends to the newest segment; the reader takes whole closed
//! segments, oldest first (closing the open one when nothing else is left), and deletes a
//! segment once every message in it is delivered. Segments left by an earlier run are replayed
//! first, so alerts survive a restart (delivery is at least once: a segment half delivered
//! when the process stopped is sent again from its start).
use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// A segment is closed for reading at this size so delivery can start while writing goes on.
const SEGMENT_BYTES: u64 = 1 << 20;
const EXT: &str = "spool";
const FIRST_SEQ: u64 = 1 << 40;

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    /// Bytes in all segment files, closed and open.
    bytes: u64,
    closed: VecDeque<(PathBuf, u64)>,
    open: Option<OpenSegment>,
    next_seq: u64,
}

struct OpenSegment {
    path: PathBuf,
    file: BufWriter<File>,
    bytes: u64,
}

/// Why an append did not happen.
#[derive(Debug, PartialEq, Eq)]
pub enum AppendError {
    Full,
    Io,
}

impl Spool {
    /// Opens (creating) `dir` and adopts segments an earlier run left there.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<Spool> {
        fs::create_dir_all(dir)?;
        let mut found: Vec<(u64, PathBuf, u64)> = Vec::new();
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) != Some(EXT) {
                continue;
            }
            let Some(seq) = seq_of(&path) else {
                continue;
            };
            let len = fs::metadata(&path)?.len();
            found.push((seq, path, len));
        }
        found.sort();
        // A fresh spool starts mid-range so `put_back` can number segments before the first.
        let next_seq = found.last().map_or(FIRST_SEQ, |(s, _, _)| s + 1);
        Ok(Spool {
            dir: dir.to_path_buf(),
            max_bytes,
            bytes: found.iter().map(|(_, _, l)| l).sum(),
            closed: found.into_iter().map(|(_, p, l)| (p, l)).collect(),
            open: None,
            next_seq,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn append(&mut self, message: &[u8]) -> Result<(), AppendError> {
        let record = 4 + message.len() as u64;
        if self.bytes + record > self.max_bytes {
            return Err(AppendError::Full);
        }
        if self.open.is_none() {
            let path = self.dir.join(format!("{:020}.{EXT}", self.next_seq));
            self.next_seq += 1;
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|_| AppendError::Io)?;
            self.open = Some(OpenSegment {
                path,
                file: BufWriter::new(file),
                bytes: 0,
            });
        }
        let Some(seg) = self.open.as_mut() else {
            return Err(AppendError::Io);
        };
        let len = u32::try_from(message.len()).map_err(|_| AppendError::Io)?;
        let written = seg
            .file
            .write_all(&len.to_be_bytes())
            .and_then(|()| seg.file.write_all(message));
        if written.is_err() {
            // A partial record would corrupt the segment for the reader: start a new one.
            self.close_open();
            return Err(AppendError::Io);
        }
        seg.bytes += record;
        self.bytes += record;
        if seg.bytes >= SEGMENT_BYTES {
            self.close_open();
        }
        Ok(())
    }

    /// Flushes the open segment so a crash loses at most what the OS had not written.
    pub fn flush(&mut self) {
        if let Some(seg) = self.open.as_mut() {
            let _ = seg.file.flush();
        }
    }

    fn close_open(&mut self) {
        if let Some(mut seg) = self.open.take() {
            // Records whose flush failed are lost: count the bytes the file really holds.
            let _ = seg.file.flush();
            let on_disk = fs::metadata(&seg.path).map_or(0, |m| m.len());
            self.bytes = self.bytes.saturating_sub(seg.bytes) + on_disk;
            if on_disk > 0 {
                self.closed.push_back((seg.path, on_disk));
            } else {
                let _ = fs::remove_file(&seg.path);
            }
        }
    }

    /// The oldest segment to deliver, closing the open one if it is all there is.
    pub fn take_segment(&mut self) -> Option<PathBuf> {
        if self.closed.is_empty() {
            self.close_open();
        }
        self.closed.front().map(|(p, _)| p.clone())
    }

    /// Stores `messages` ahead of every segment, in place of `taken` (a segment returned by
    /// `take_segment`, partly delivered, whose rest is in `messages`): what was undelivered at
    /// shutdown is sent first, in order, after the next start. Returns how many were stored;
    /// the newest beyond the bound are not.
    pub fn put_back(&mut self, taken: Option<&Path>, messages: &[Vec<u8>]) -> usize {
        if let Some(path) = taken {
            self.remove_segment(path);
        }
        if messages.is_empty() {
            return 0;
        }
        let first = self
            .closed
            .iter()
            .map(|(p, _)| p.as_path())
            .chain(self.open.as_ref().map(|o| o.path.as_path()))
            .filter_map(seq_of)
            .min()
            .unwrap_or(self.next_seq);
        let path = self
            .dir
            .join(format!("{:020}.{EXT}", first.saturating_sub(1)));
        let mut data = Vec::new();
        let mut stored = 0;
        for m in messages {
            let record = 4 + m.len() as u64;
            let Ok(len) = u32::try_from(m.len()) else {
                break;
            };
            if self.bytes + data.len() as u64 + record > self.max_bytes {
                break;
            }
            data.extend_from_slice(&len.to_be_bytes());
            data.extend_from_slice(m);
            stored += 1;
        }
        if stored == 0 || fs::write(&path, &data).is_err() {
            let _ = fs::remove_file(&path);
            return 0;
        }
        self.bytes += data.len() as u64;
        self.closed.push_front((path, data.len() as u64));
        stored
    }

    /// The segment returned by `take_segment` was delivered in full.
    pub fn segment_done(&mut self, path: &Path) {
        self.remove_segment(path);
    }

    fn remove_segment(&mut self, path: &Path) {
        let Some(i) = self.closed.iter().position(|(p, _)| p == path) else {
            return;
        };
        if let Some((p, len)) = self.closed.remove(i) {
            self.bytes = self.bytes.saturating_sub(len);
            let _ = fs::remove_file(p);
        }
    }
}

fn seq_of(path: &Path) -> Option<u64> {
    path.file_stem()?.to_str()?.parse().ok()
}

/// Reads a segment's messages; a torn last record (crash mid-append) ends the list.
pub fn read_segment(path: &Path) -> io::Result<Vec<Vec<u8>>> {
    let mut data = Vec::new();
    File::open(path)?.read_to_end(&mut data)?;
    let mut messages = Vec::new();
    let mut rest = &data[..];
    while rest.len() >= 4 {
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let Some(message) = rest.get(4..4 + len) else {
            break;
        };
        messages.push(message.to_vec());
        rest = &rest[4 + len..];
    }
    Ok(messages)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TempDir;

    /// A spool directory not made yet (the spool makes it), inside a `TempDir` that goes when
    /// the test ends.
    fn dir(tag: &str) -> (TempDir, PathBuf) {
        let tmp = TempDir::new(&format!("spool-{tag}"));
        let d = tmp.path("spool");
        (tmp, d)
    }

    #[test]
    fn messages_come_back_in_order_and_segments_are_removed() {
        let (_tmp, d) = dir("order");
        let mut s = Spool::open(&d, 1000).unwrap();
        for m in ["one", "two", "three"] {
            s.append(m.as_bytes()).unwrap();
        }
        assert_eq!(s.bytes(), 3 * 4 + 11);
        let seg = s.take_segment().unwrap();
        // Appends after the take go to a new segment, after it.
        s.append(b"four").unwrap();
        assert_eq!(
            read_segment(&seg).unwrap(),
            [b"one".to_vec(), b"two".into(), b"three".into()]
        );
        s.segment_done(&seg);
        assert!(!seg.exists());
        let seg = s.take_segment().unwrap();
        assert_eq!(read_segment(&seg).unwrap(), [b"four".to_vec()]);
        s.segment_done(&seg);
        assert!(s.is_empty());
        assert!(s.take_segment().is_none());
    }

    #[test]
    fn put_back_goes_first_in_place_of_the_taken_segment() {
        let (_tmp, d) = dir("putback");
        let mut s = Spool::open(&d, 1000).unwrap();
        for m in ["s1", "s2", "s3"] {
            s.append(m.as_bytes()).unwrap();
        }
        let taken = s.take_segment().unwrap();
        s.append(b"later").unwrap();
        // s1 was delivered; m1 and m2 were in memory (older than anything spooled).
        let stored = s.put_back(
            Some(&taken),
            &[b"m1".to_vec(), b"m2".into(), b"s2".into(), b"s3".into()],
        );
        assert_eq!(stored, 4);
        drop(s);
        let mut s = Spool::open(&d, 1000).unwrap();
        let mut all = Vec::new();
        while let Some(seg) = s.take_segment() {
            all.extend(read_segment(&seg).unwrap());
            s.segment_done(&seg);
        }
        assert_eq!(
            all,
            [
                b"m1".to_vec(),
                b"m2".into(),
                b"s2".into(),
                b"s3".into(),
                b"later".into()
            ]
        );
        assert!(s.is_empty());
    }

    #[test]
    fn bound_is_enforced() {
        let (_tmp, d) = dir("bound");
        let mut s = Spool::open(&d, 20).unwrap();
        s.append(&[b'x'; 10]).unwrap();
        assert_eq!(s.append(&[b'x'; 3]), Err(AppendError::Full));
        s.append(&[b'x'; 2]).unwrap();
        assert_eq!(s.bytes(), 20);
    }

    #[test]
    fn a_restart_replays_what_was_left_and_ignores_a_torn_record() {
        let (_tmp, d) = dir("restart");
        {
            let mut s = Spool::open(&d, 1000).unwrap();
            s.append(b"kept").unwrap();
            s.flush();
        }
        // A torn record, as after a crash mid-append.
        let seg = fs::read_dir(&d).unwrap().next().unwrap().unwrap().path();
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&[0, 0, 0, 9, b'p']).unwrap();
        drop(f);
        let mut s = Spool::open(&d, 1000).unwrap();
        assert!(!s.is_empty());
        s.append(b"new").unwrap();
        let first = s.take_segment().unwrap();
        assert_eq!(read_segment(&first).unwrap(), [b"kept".to_vec()]);
        s.segment_done(&first);
        let second = s.take_segment().unwrap();
        assert_eq!(read_segment(&second).unwrap(), [b"new".to_vec()]);
    }
}
