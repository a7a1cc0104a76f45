//! A file read in large chunks that other threads may hold on to.
//!
//! Records are parsed in place in the current chunk; only the record cut by a chunk's end is
//! moved, to the start of the next chunk. Chunks are `Arc<Vec<u8>>` so that frames can be handed
//! to worker threads without a copy, and a chunk is written only while its `Arc` is unique.
use std::fs::File;
use std::io::{ErrorKind, Read};
use std::sync::Arc;

/// Chunk size: large enough that per-read and per-refill costs vanish, small enough that a
/// few chunks in flight in the sharded pipeline stay cheap.
pub(super) const CHUNK_SIZE: usize = 4 << 20;
/// Retired chunks kept for reuse. Workers hold a chunk only for a bounded number of batches,
/// so few are ever needed; extras are dropped (freed when their last holder lets go).
const POOL_CAP: usize = 16;

/// Chunks retired by the files of one reader, reused once nobody else holds them.
pub(super) struct ChunkPool {
    size: usize,
    retired: Vec<Arc<Vec<u8>>>,
    /// Chunks allocated so far (lets tests check that the pool bounds memory).
    pub(super) allocated: usize,
}

impl ChunkPool {
    pub(super) fn new(size: usize) -> ChunkPool {
        ChunkPool {
            size: size.max(1),
            retired: Vec::new(),
            allocated: 0,
        }
    }

    /// A chunk of at least `len` bytes (and at least the pool's size) that nobody else holds.
    fn take(&mut self, len: usize) -> Arc<Vec<u8>> {
        let len = len.max(self.size);
        if let Some(i) = self
            .retired
            .iter_mut()
            .position(|c| Arc::get_mut(c).is_some())
        {
            let mut chunk = self.retired.swap_remove(i);
            if let Some(buf) = Arc::get_mut(&mut chunk) {
                if buf.len() < len {
                    buf.resize(len, 0);
                }
                return chunk;
            }
        }
        self.allocated += 1;
        // Zeroed once at allocation: safe code cannot read into uninitialised memory.
        Arc::new(vec![0; len])
    }

    fn retire(&mut self, chunk: Arc<Vec<u8>>) {
        // Chunks grown for one huge frame are not worth keeping.
        if self.retired.len() < POOL_CAP && chunk.len() == self.size {
            self.retired.push(chunk);
        }
    }
}

pub(super) struct Chunks {
    file: File,
    chunk: Arc<Vec<u8>>,
    /// Start of the unparsed bytes in `chunk`.
    pos: usize,
    /// End of the bytes read into `chunk`.
    end: usize,
    /// File offset of `chunk[0]`.
    base: u64,
    eof: bool,
}

impl Chunks {
    /// Opens on `file` and reads its first chunk.
    pub(super) fn new(file: File, pool: &mut ChunkPool) -> std::io::Result<Chunks> {
        let mut chunks = Chunks {
            file,
            chunk: pool.take(pool.size),
            pos: 0,
            end: 0,
            base: 0,
            eof: false,
        };
        chunks.fill(pool.size, pool)?;
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
        self.base + self.pos as u64
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
        let rest = self.end - self.pos;
        let len = need.max(pool.size);
        match Arc::get_mut(&mut self.chunk) {
            Some(buf) => {
                buf.copy_within(self.pos..self.end, 0);
                if buf.len() < len {
                    buf.resize(len, 0);
                }
            }
            None => {
                let mut fresh = pool.take(len);
                if let (Some(buf), Some(old)) =
                    (Arc::get_mut(&mut fresh), self.chunk.get(self.pos..self.end))
                    && let Some(dst) = buf.get_mut(..rest)
                {
                    dst.copy_from_slice(old);
                }
                pool.retire(std::mem::replace(&mut self.chunk, fresh));
            }
        }
        self.base += self.pos as u64;
        self.pos = 0;
        self.end = rest;
        let Some(buf) = Arc::get_mut(&mut self.chunk) else {
            // Unreachable: the chunk was just made unique above.
            return Err(std::io::Error::other("read buffer is shared"));
        };
        while self.end < need {
            let Some(space) = buf.get_mut(self.end..) else {
                break;
            };
            match self.file.read(space) {
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
}
