//! UTF-16LE text to UTF-8, for XML that PowerShell 5 redirected (`wevtutil qe ... > file`
//! writes UTF-16LE with a byte-order mark). Unpaired surrogates become U+FFFD.
use std::io::{self, Read};

/// Bytes read from the inner reader at a time.
const STEP_BYTES: usize = 8 << 10;

pub(super) struct Utf16LeToUtf8<R> {
    inner: R,
    /// Converted bytes not yet read, from `pos`.
    out: Vec<u8>,
    pos: usize,
    /// A byte of a code unit whose other byte is in the next read.
    odd: Option<u8>,
    /// A high surrogate waiting for its low half.
    high: Option<u16>,
    started: bool,
}

impl<R: Read> Utf16LeToUtf8<R> {
    pub(super) fn new(inner: R) -> Self {
        Utf16LeToUtf8 {
            inner,
            out: Vec::new(),
            pos: 0,
            odd: None,
            high: None,
            started: false,
        }
    }

    fn push(&mut self, c: char) {
        // The byte-order mark is no text.
        if !self.started {
            self.started = true;
            if c == '\u{feff}' {
                return;
            }
        }
        let mut utf8 = [0u8; 4];
        self.out
            .extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
    }

    fn unit(&mut self, unit: u16) {
        if let Some(high) = self.high.take() {
            if (0xdc00..=0xdfff).contains(&unit) {
                let c = 0x10000 + ((u32::from(high) - 0xd800) << 10) + (u32::from(unit) - 0xdc00);
                self.push(char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER));
                return;
            }
            self.push(char::REPLACEMENT_CHARACTER);
        }
        if (0xd800..=0xdbff).contains(&unit) {
            self.high = Some(unit);
        } else {
            self.push(char::from_u32(u32::from(unit)).unwrap_or(char::REPLACEMENT_CHARACTER));
        }
    }

    /// Converts the next bytes of the inner reader; false at its end with nothing left.
    fn refill(&mut self) -> io::Result<bool> {
        self.out.clear();
        self.pos = 0;
        let mut raw = [0u8; STEP_BYTES];
        let n = self.inner.read(&mut raw)?;
        if n == 0 {
            if self.odd.take().is_some() || self.high.take().is_some() {
                self.push(char::REPLACEMENT_CHARACTER);
            }
            return Ok(!self.out.is_empty());
        }
        for &byte in raw.iter().take(n) {
            match self.odd.take() {
                None => self.odd = Some(byte),
                Some(low) => self.unit(u16::from_le_bytes([low, byte])),
            }
        }
        Ok(true)
    }
}

impl<R: Read> Read for Utf16LeToUtf8<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.out.len() {
            if !self.refill()? {
                return Ok(0);
            }
        }
        let left = self.out.get(self.pos..).unwrap_or_default();
        let n = left.len().min(buf.len());
        if let (Some(to), Some(from)) = (buf.get_mut(..n), left.get(..n)) {
            to.copy_from_slice(from);
        }
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convert(bytes: &[u8]) -> String {
        let mut out = String::new();
        // One byte at a time: code units and surrogate pairs split across reads.
        let reader = Utf16LeToUtf8::new(io::BufReader::with_capacity(1, bytes));
        io::BufReader::new(reader).read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn converts_across_reads() {
        let text = "<Event>é 😀</Event>\r\n";
        let mut bytes = vec![0xff, 0xfe];
        bytes.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
        assert_eq!(convert(&bytes), text);
    }

    #[test]
    fn broken_units_become_replacement_characters() {
        // A lone low surrogate, a high surrogate before a plain unit, and an odd last byte.
        let bytes = [0x00, 0xdc, 0x3d, 0xd8, 0x41, 0x00, 0x42];
        assert_eq!(convert(&bytes), "\u{fffd}\u{fffd}A\u{fffd}");
    }
}
