//! A file read in large chunks that other threads may hold on to.
//!
//! Records are parsed in place in the current chunk; only the record cut by a chunk's end is
//! moved, to the start of the next chunk. Chunks are `Arc<Vec<u8>>` so that frames can be handed
//! to worker threads without a copy, and a chunk is written only while its `Arc` is unique.
//!
//! A file can be read ahead by a thread of its own: the kernel's copy from the page cache is
//! the largest single cost of a replay (about a third of one thread on whole frames), and the
//! thread moves it to another core. Its chunks leave `headroom` bytes free at the front, where
//! the record cut by the previous chunk's end is copied, so records stay contiguous.
// Readers meet hostile bytes: a panic here would stop the sensor (RELIABILITY.md).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]
use std::fs::File;
use std::io::{ErrorKind, Read};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

/// Chunk size: large enough that per-read costs vanish, and about a core's L2 cache, so the
/// bytes the read-ahead thread writes are parsed while still near: on whole frames 1 and 2 MiB
/// chunks took 0.42-0.47 s where 4 MiB took 0.54-0.60 s (BENCHMARKS.md).
pub(super) const CHUNK_SIZE: usize = 1 << 20;
/// The smallest chunk a small file is read in.
const MIN_CHUNK_SIZE: usize = 64 << 10;
/// Chunks read ahead and waiting for the parser (each holds `CHUNK_SIZE` bytes).
const CHUNKS_AHEAD: usize = 2;
/// Room before a read-ahead chunk's bytes for the record cut by the previous chunk: larger
/// than any ordinary frame record. A longer one is joined with a copy.
const HEADROOM: usize = 64 << 10;
/// Reads land at a cache-line boundary of their buffer. The kernel's copy from the page
/// cache runs at half speed or worse into a misaligned destination: reading 2.5 GB in 4 MiB
/// reads took 0.14 s of system time at 64-byte alignment, 0.31 s at 16 bytes off (where an
/// allocation of this size starts) and 0.78 s at 8 bytes off (BENCHMARKS.md).
const READ_ALIGN: usize = 64;
/// Retired chunks kept for reuse. Workers hold a chunk only for a bounded number of batches,
/// so few are ever needed; extras are dropped (freed when their last holder lets go).
const POOL_CAP: usize = 16;

/// Chunks retired by the files of one reader, reused once nobody else holds them.
pub(super) struct ChunkPool {
    size: usize,
    /// Free bytes before a read-ahead chunk's data (0 when files are read inline).
    headroom: usize,
    retired: Vec<Arc<Vec<u8>>>,
    /// Chunks allocated so far (lets tests check that the pool bounds memory).
    pub(super) allocated: usize,
}

impl ChunkPool {
    /// `read_ahead`: the files of this pool are read by threads of their own.
    pub(super) fn new(size: usize, read_ahead: bool) -> ChunkPool {
        let size = size.max(1);
        ChunkPool {
            size,
            headroom: if read_ahead { HEADROOM.min(size) } else { 0 },
            retired: Vec::new(),
            allocated: 0,
        }
    }

    /// A chunk of at least `len` bytes that nobody else holds.
    fn take(&mut self, len: usize) -> Arc<Vec<u8>> {
        let buf = match self.take_unheld() {
            Some(mut buf) => {
                if buf.len() < len {
                    buf.resize(len, 0);
                }
                buf
            }
            None => {
                self.allocated += 1;
                // Zeroed once at allocation: safe code cannot read into uninitialised memory.
                vec![0; len]
            }
        };
        Arc::new(buf)
    }

    fn retire(&mut self, chunk: Arc<Vec<u8>>) {
        // Chunks grown for one huge frame are not worth keeping.
        if self.retired.len() < POOL_CAP && chunk.len() == chunk_len(self.headroom, self.size) {
            self.retired.push(chunk);
        }
    }

    #[cfg(test)]
    pub(super) fn headroom(&self) -> usize {
        self.headroom
    }

    /// A retired chunk nobody holds any more, for a read-ahead thread to fill again.
    fn take_unheld(&mut self) -> Option<Vec<u8>> {
        let i = self
            .retired
            .iter_mut()
            .position(|c| Arc::get_mut(c).is_some())?;
        Arc::try_unwrap(self.retired.swap_remove(i)).ok()
    }
}

/// Length of a chunk that reads `size` bytes after `headroom`, with room to align the read.
fn chunk_len(headroom: usize, size: usize) -> usize {
    headroom + READ_ALIGN + size
}

/// The first index at or after `from` whose byte lies on a `READ_ALIGN` boundary.
fn aligned_index(buf: &[u8], from: usize) -> usize {
    let addr = (buf.as_ptr() as usize).wrapping_add(from);
    from + (READ_ALIGN - addr % READ_ALIGN) % READ_ALIGN
}

/// Where a file's bytes come from.
enum Source {
    /// Read by the parsing thread when it needs more.
    Inline(File),
    ReadAhead(ReadAhead),
}

/// The parser's end of a read-ahead thread.
struct ReadAhead {
    filled: Receiver<std::io::Result<Filled>>,
    empty: SyncSender<Vec<u8>>,
    /// File offset of the next filled chunk's first byte.
    next_offset: u64,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for ReadAhead {
    /// Ends the thread before the file is gone: with the receiving end closed, its next send
    /// fails and it returns (a read from a regular file does not block for long).
    fn drop(&mut self) {
        let (_, closed) = sync_channel(0);
        drop(std::mem::replace(&mut self.filled, closed));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A chunk read ahead: `len` bytes of the file at `buf[start..]`, `start` at least the
/// headroom.
struct Filled {
    buf: Vec<u8>,
    start: usize,
    len: usize,
    eof: bool,
}

pub(super) struct Chunks {
    source: Source,
    /// Bytes read at a time: the pool's size, or less for a small file.
    size: usize,
    chunk: Arc<Vec<u8>>,
    /// Start of the unparsed bytes in `chunk`.
    pos: usize,
    /// End of the bytes read into `chunk`.
    end: usize,
    /// File offset of `chunk[0]` (wrapping: with headroom it can lie before the file's start).
    base: u64,
    eof: bool,
}

impl Chunks {
    /// Opens on `file` and reads its first chunk (by a read-ahead thread if the pool is for
    /// read-ahead files).
    pub(super) fn new(file: File, pool: &mut ChunkPool) -> std::io::Result<Chunks> {
        // A small file gets small chunks: opening it must not cost megabytes.
        let regular_len = file
            .metadata()
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len());
        let size = regular_len.map_or(pool.size, |len| {
            usize::try_from(len.saturating_add(1)).map_or(pool.size, |len| {
                len.clamp(MIN_CHUNK_SIZE.min(pool.size), pool.size)
            })
        });
        // Only regular files are read ahead: a read from a pipe can block for ever, and the
        // read-ahead thread is joined when the file is dropped.
        let source = if pool.headroom > 0 && regular_len.is_some() {
            Source::ReadAhead(ReadAhead::start(file, size, pool.headroom)?)
        } else {
            Source::Inline(file)
        };
        let chunk = match source {
            Source::Inline(_) => pool.take(chunk_len(0, size)),
            Source::ReadAhead(_) => Arc::new(Vec::new()),
        };
        let mut chunks = Chunks {
            source,
            size,
            chunk,
            pos: 0,
            end: 0,
            base: 0,
            eof: false,
        };
        chunks.fill(size, pool)?;
        Ok(chunks)
    }

    /// The bytes read and not yet consumed.
    #[inline]
    pub(super) fn data(&self) -> &[u8] {
        self.chunk.get(self.pos..self.end).unwrap_or(&[])
    }

    /// The chunk `data()` lies in; `data()` starts at `pos()`.
    #[inline]
    pub(super) fn chunk(&self) -> &Arc<Vec<u8>> {
        &self.chunk
    }

    #[inline]
    pub(super) fn pos(&self) -> usize {
        self.pos
    }

    #[inline]
    pub(super) fn consume(&mut self, n: usize) {
        self.pos = self.pos.saturating_add(n).min(self.end);
    }

    /// File offset of the first byte of `data()`.
    pub(super) fn offset(&self) -> u64 {
        self.base.wrapping_add(self.pos as u64)
    }

    /// True once the file has no bytes beyond `data()`.
    #[inline]
    pub(super) fn at_eof(&self) -> bool {
        self.eof
    }

    /// Makes `data()` at least `need` bytes long, unless the file ends first. The unconsumed
    /// bytes move to the start of a chunk nobody else holds: the current one if its `Arc` is
    /// unique, else one from the pool.
    pub(super) fn fill(&mut self, need: usize, pool: &mut ChunkPool) -> std::io::Result<()> {
        if self.end - self.pos >= need || self.eof {
            return Ok(());
        }
        let file = match &mut self.source {
            Source::Inline(file) => file,
            Source::ReadAhead(_) => return self.fill_ahead(need, pool),
        };
        let rest = self.end - self.pos;
        let len = chunk_len(0, need.max(self.size));
        // The unconsumed bytes go just before an aligned index, where the read starts.
        let shift = match Arc::get_mut(&mut self.chunk) {
            Some(buf) => {
                if buf.len() < len {
                    buf.resize(len, 0);
                }
                let shift = aligned_index(buf, rest) - rest;
                buf.copy_within(self.pos..self.end, shift);
                shift
            }
            None => {
                let mut fresh = pool.take(len);
                let mut shift = 0;
                if let (Some(buf), Some(old)) =
                    (Arc::get_mut(&mut fresh), self.chunk.get(self.pos..self.end))
                {
                    shift = aligned_index(buf, rest) - rest;
                    if let Some(dst) = buf.get_mut(shift..shift + rest) {
                        dst.copy_from_slice(old);
                    }
                }
                pool.retire(std::mem::replace(&mut self.chunk, fresh));
                shift
            }
        };
        self.base = self
            .base
            .wrapping_add(self.pos as u64)
            .wrapping_sub(shift as u64);
        self.pos = shift;
        self.end = shift + rest;
        let Some(buf) = Arc::get_mut(&mut self.chunk) else {
            // Unreachable: the chunk was just made unique above.
            return Err(std::io::Error::other("read buffer is shared"));
        };
        while self.end - self.pos < need {
            let Some(space) = buf.get_mut(self.end..) else {
                break;
            };
            match file.read(space) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => self.end += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// `fill` from the read-ahead thread: each filled chunk becomes the current one, with the
    /// unconsumed bytes copied into its headroom just before its data.
    fn fill_ahead(&mut self, need: usize, pool: &mut ChunkPool) -> std::io::Result<()> {
        let Source::ReadAhead(ahead) = &mut self.source else {
            return Ok(());
        };
        while self.end - self.pos < need && !self.eof {
            while let Some(buf) = pool.take_unheld() {
                if ahead.empty.try_send(buf).is_err() {
                    break;
                }
            }
            let filled = match ahead.filled.recv() {
                Ok(Ok(filled)) => filled,
                Ok(Err(e)) => return Err(e),
                // The thread ended after the last chunk or an error: nothing more.
                Err(_) => {
                    self.eof = true;
                    break;
                }
            };
            let offset = ahead.next_offset;
            ahead.next_offset += filled.len as u64;
            let rest = self.chunk.get(self.pos..self.end).unwrap_or(&[]);
            let start = filled.start;
            let data_end = start + filled.len;
            let mut buf = filled.buf;
            let (pos, end) = if rest.len() <= start {
                let pos = start - rest.len();
                if let Some(room) = buf.get_mut(pos..start) {
                    room.copy_from_slice(rest);
                }
                (pos, data_end)
            } else {
                // A record longer than the headroom: join it with the new bytes.
                let mut joined = Vec::with_capacity(rest.len() + filled.len);
                joined.extend_from_slice(rest);
                joined.extend_from_slice(buf.get(start..data_end).unwrap_or(&[]));
                buf = joined;
                (0, buf.len())
            };
            self.base = offset
                .wrapping_sub(rest.len() as u64)
                .wrapping_sub(pos as u64);
            pool.retire(std::mem::replace(&mut self.chunk, Arc::new(buf)));
            self.pos = pos;
            self.end = end;
            self.eof = filled.eof;
        }
        Ok(())
    }
}

impl ReadAhead {
    fn start(file: File, size: usize, headroom: usize) -> std::io::Result<ReadAhead> {
        let (filled_tx, filled) = sync_channel(CHUNKS_AHEAD);
        let (empty, empty_rx) = sync_channel(CHUNKS_AHEAD + 1);
        let thread = std::thread::Builder::new()
            .name("egresswatch-read".into())
            .spawn(move || read_ahead(file, size, headroom, &filled_tx, &empty_rx))?;
        Ok(ReadAhead {
            filled,
            empty,
            next_offset: 0,
            thread: Some(thread),
        })
    }
}

/// The read-ahead thread: fills chunks of `size` bytes after `headroom` free ones, in file
/// order, until the end of the file, an error, or the parser is gone.
fn read_ahead(
    mut file: File,
    size: usize,
    headroom: usize,
    filled: &SyncSender<std::io::Result<Filled>>,
    empty: &Receiver<Vec<u8>>,
) {
    loop {
        let mut buf = empty.try_recv().unwrap_or_default();
        // Zeroed when new: safe code cannot read into uninitialised memory.
        buf.resize(chunk_len(headroom, size), 0);
        let start = aligned_index(&buf, headroom);
        let mut len = 0;
        let mut eof = false;
        while len < size {
            let Some(space) = buf.get_mut(start + len..start + size) else {
                break;
            };
            match file.read(space) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => len += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = filled.send(Err(e));
                    return;
                }
            }
        }
        if filled
            .send(Ok(Filled {
                buf,
                start,
                len,
                eof,
            }))
            .is_err()
            || eof
        {
            return;
        }
    }
}
