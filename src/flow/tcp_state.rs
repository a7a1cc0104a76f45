//! Zeek-compatible TCP connection state (`conn_state`), `history` and payload
//! byte counts, plus the UDP and ICMP equivalents. HELPER-OWNED.
//!
//! The model follows Zeek's TCP analyzer (`TCPSessionAdapter`, `TCP_Endpoint`),
//! and `scripts/base/protocols/conn/main.zeek` for the mapping of the two
//! endpoint states to `conn_state`. Each endpoint runs Zeek's little state
//! machine (inactive, SYN sent, SYN-ACK sent, partial, established, closed,
//! reset) and Zeek's sequence bookkeeping (start, last and acked sequence
//! numbers with 32-bit wrap counters). A `TcpState` lives in every entry of a
//! very large flow table, so it is 64 bytes: what most connections need is
//! inline, and the rest (FIN/RST positions, retransmission counts, wraps, long
//! histories) is allocated once for the connections that need it.
//!
//! # History letters (upper case: originator, lower case: responder)
//!
//! Per packet, counting only the SYN, FIN and RST bits:
//! * two or more of them: `I` when FIN and RST are both set, `Q` otherwise
//!   (SYN+FIN, SYN+RST); at most once per direction.
//! * exactly one: `S` (SYN without ACK) or `H` (SYN with ACK), `F` or `R`.
//!   These are recorded the first time and then again each time the packet's
//!   relative sequence number differs from the previous packet of the same
//!   kind (for FIN: sequence number plus payload length), so a plain
//!   retransmission adds nothing. `S` and `H` share one "seen" bit per side.
//! * none of them: `D` if the packet carries payload, else `A` if the ACK bit
//!   is set (a "pure ACK"); at most once per direction. A FIN or RST that
//!   carries data gives `F`/`R`, not `D`.
//! * `T`: payload that does not advance the sender's highest sequence number
//!   (retransmission). `W`: zero window advertised (only via
//!   [`TcpState::observe_with_window`]). `C`: bad checksum (only via
//!   [`TcpState::record_bad_checksum`]). These three are logarithmic: the
//!   letter is added at the 1st, 10th, 100th, ... occurrence.
//! * `^`: the caller swapped originator and responder ([`TcpState::record_flip`]).
//!
//! Not produced: `G` (content gap, needs Zeek's reassembler), `X` (analysis
//! limits). The history is capped at [`HISTORY_CAPACITY`] letters; Zeek has no
//! cap, but only pathological flows (dozens of SYN/FIN/RST with changing
//! sequence numbers) get near it.
//!
//! # Byte counts
//!
//! Zeek's `orig_bytes`/`resp_bytes` for TCP come from sequence numbers, not
//! from summing payloads: `max(highest seq sent + 1, highest seq acked by the
//! peer) - initial seq`, in a 64-bit space that counts 32-bit wraparounds,
//! minus one for the SYN and minus one more if a FIN was sent. Without a SYN
//! the initial sequence number is taken as "first seen seq - 1". Data that was
//! acknowledged but never captured therefore counts (it is also what Zeek
//! reports in `missed_bytes`). Zeek logs these fields only when the
//! connection's duration is greater than zero; that is left to the caller.

/// TCP flag bits as on the wire (byte 13 of the TCP header).
pub mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
}

/// Largest number of history letters kept per connection.
pub const HISTORY_CAPACITY: usize = 30;

/// Zeek ignores sequence jumps larger than this on SYN and RST packets.
const TOO_LARGE_SEQ_DELTA: i32 = 1_048_576;

/// "Seen" bits for letters recorded once per direction (each side has its own).
mod seen {
    pub const SYN: u8 = 0x01;
    pub const FIN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const FIN_RST: u8 = 0x08;
    pub const DATA: u8 = 0x10;
    pub const ACK: u8 = 0x20;
    pub const MULTI_FLAG: u8 = 0x40;
}

/// Zeek's per-endpoint TCP state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum EpState {
    /// Nothing seen from this side yet.
    #[default]
    Inactive,
    /// SYN seen, no SYN-ACK.
    SynSent,
    /// SYN-ACK seen from the originator, no initial SYN.
    SynAckSent,
    /// Data seen, but no SYN.
    Partial,
    /// Handshake seen (or inferred).
    Established,
    /// FIN seen.
    Closed,
    /// RST seen.
    Reset,
}

impl EpState {
    /// Zeek's `TCP_INACTIVE || TCP_PARTIAL`, used by the conn_state mapping.
    fn inactive_or_partial(self) -> bool {
        matches!(self, EpState::Inactive | EpState::Partial)
    }
}

/// The flag bits that matter here, decoded once per packet.
#[derive(Clone, Copy)]
struct Bits {
    syn: bool,
    fin: bool,
    rst: bool,
    ack: bool,
}

impl Bits {
    fn new(f: u8) -> Self {
        Bits {
            syn: f & flags::SYN != 0,
            fin: f & flags::FIN != 0,
            rst: f & flags::RST != 0,
            ack: f & flags::ACK != 0,
        }
    }
}

/// Signed distance from `b` to `a` in 32-bit sequence space.
fn seq_delta(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

/// A 32-bit sequence number widened by its wrap count.
fn full_seq(seq: u32, wraps: u32) -> u64 {
    (u64::from(wraps) << 32) | u64::from(seq)
}

/// Zeek's relative sequence number of `cur` for an endpoint that started at
/// `start` and whose tracked number `last` has wrapped `wraps` times. Returns
/// the value and whether it lies before `start` ("underflow"). A negative
/// distance is returned sign-extended, as Zeek does.
fn relative_seq(start: u32, cur: u32, last: u32, wraps: u32) -> (u64, bool) {
    let delta = seq_delta(cur, last);
    let mut wraps = wraps;
    if delta < 0 {
        if wraps > 0 && cur > last {
            // Part of the previous 32-bit sequence space.
            wraps -= 1;
        }
    } else if delta > 0 && cur < last {
        // The sequence space wrapped around.
        wraps = wraps.wrapping_add(1);
    }
    if wraps == 0 {
        let d = seq_delta(cur, start);
        return (d as i64 as u64, d < 0);
    }
    (full_seq(cur, wraps).wrapping_sub(u64::from(start)), false)
}

/// True for 1, 10, 100, ...: where Zeek adds another `T`/`W`/`C` letter.
fn is_power_of_ten(n: u32) -> bool {
    matches!(
        n,
        1 | 10
            | 100
            | 1_000
            | 10_000
            | 100_000
            | 1_000_000
            | 10_000_000
            | 100_000_000
            | 1_000_000_000
    )
}

/// Counts one more event and says whether it earns a history letter.
fn scaled_event(counter: &mut u32) -> bool {
    *counter = counter.saturating_add(1);
    is_power_of_ten(*counter)
}

/// Upper case for the originator, lower case for the responder.
fn letter(code: u8, from_orig: bool) -> u8 {
    if from_orig {
        code.to_ascii_uppercase()
    } else {
        code.to_ascii_lowercase()
    }
}

/// Every letter Zeek's history can hold; a letter is stored as its index here plus one, in
/// five bits, so that 0 ends the string.
const ALPHABET: &[u8; 27] = b"SHFRDAIQTWCGXshfrdaiqtwcgx^";
/// Letters per `u64` word, and letters kept inline; the rest (rare: dozens of SYN/FIN/RST)
/// go to the [`Cold`] part.
const LETTERS_PER_WORD: usize = 12;
const INLINE_LETTERS: usize = 2 * LETTERS_PER_WORD;

/// The first [`INLINE_LETTERS`] history letters, packed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Letters([u64; 2]);

/// Letter to code (0: not a history letter), for [`push_letter`].
// Evaluated at compile time: an index out of range fails the build, not a run.
#[allow(clippy::indexing_slicing)]
const CODES: [u8; 128] = {
    let mut codes = [0u8; 128];
    let mut i = 0;
    while i < ALPHABET.len() {
        codes[ALPHABET[i] as usize] = i as u8 + 1;
        i += 1;
    }
    codes
};

impl Letters {
    fn code(&self, i: usize) -> u8 {
        let word = self.0.get(i / LETTERS_PER_WORD).copied().unwrap_or(0);
        ((word >> (5 * (i % LETTERS_PER_WORD))) & 0x1f) as u8
    }

    /// Codes are never 0 and fill each word from the low bits, so a word's highest set bit
    /// tells how many it holds.
    fn len(&self) -> usize {
        let in_word = |w: u64| (64 - w.leading_zeros() as usize).div_ceil(5);
        match in_word(self.0[0]) {
            LETTERS_PER_WORD => LETTERS_PER_WORD + in_word(self.0[1]),
            n => n,
        }
    }
}

fn decode_letter(code: u8) -> Option<u8> {
    ALPHABET.get(usize::from(code).checked_sub(1)?).copied()
}

/// Appends a letter; beyond [`HISTORY_CAPACITY`] letters are dropped.
fn push_letter(letters: &mut Letters, cold: &mut Option<Box<Cold>>, c: u8) {
    let code = CODES.get(usize::from(c)).copied().unwrap_or(0);
    if code == 0 {
        return;
    }
    let len = letters.len();
    if let Some(word) = letters.0.get_mut(len / LETTERS_PER_WORD) {
        *word |= u64::from(code) << (5 * (len % LETTERS_PER_WORD));
    } else if let Some(slot) = cold_mut(cold).more_letters.iter_mut().find(|s| **s == 0) {
        *slot = c;
    }
}

/// Zeek's `CheckHistory`: adds the letter the first time the mask is seen
/// for that side and returns false; returns true if it was already seen.
fn check_history(
    ep: &mut Endpoint,
    letters: &mut Letters,
    cold: &mut Option<Box<Cold>>,
    mask: u8,
    code: u8,
    from_orig: bool,
) -> bool {
    if ep.seen & mask == 0 {
        ep.seen |= mask;
        push_letter(letters, cold, letter(code, from_orig));
        false
    } else {
        true
    }
}

/// One side's fields that stay zero on most connections, kept out of the flow table's
/// entries: 32-bit wraps (over 4 GB sent), the last FIN/RST positions, the T/W/C counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct ColdSide {
    seq_wraps: u32,
    ack_wraps: u32,
    /// Low 32 bits of the relative seq of the last FIN/RST (history).
    hist_last_fin: u32,
    hist_last_rst: u32,
    rxmit_count: u32,
    zero_window_count: u32,
    bad_checksum_count: u32,
}

/// Both sides' [`ColdSide`] plus history letters past the inline ones, allocated the first
/// time any of it is needed (once per connection at most).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Cold {
    orig: ColdSide,
    resp: ColdSide,
    more_letters: [u8; HISTORY_CAPACITY - INLINE_LETTERS],
}

impl Cold {
    fn side(&self, orig: bool) -> &ColdSide {
        if orig { &self.orig } else { &self.resp }
    }

    fn side_mut(&mut self, orig: bool) -> &mut ColdSide {
        if orig { &mut self.orig } else { &mut self.resp }
    }
}

fn cold_mut(cold: &mut Option<Box<Cold>>) -> &mut Cold {
    cold.get_or_insert_with(Box::default)
}

/// A side's cold fields (all zero while none was needed).
fn cold_side(cold: &Option<Box<Cold>>, orig: bool) -> ColdSide {
    cold.as_ref()
        .map_or_else(ColdSide::default, |c| *c.side(orig))
}

/// One side of the connection: what every packet touches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Endpoint {
    state: EpState,
    prev_state: EpState,
    fin_seen: bool,
    /// Zeek's "seen" bits of this side's once-per-direction letters.
    seen: u8,
    /// Initial sequence number (that of the SYN, or first seen seq - 1).
    start_seq: u32,
    /// One past the highest sequence number sent.
    last_seq: u32,
    /// Highest sequence number of this side acknowledged by the peer.
    ack_seq: u32,
    /// Low 32 bits of the relative seq of the last SYN (history).
    hist_last_syn: u32,
}

impl Endpoint {
    const NEW: Endpoint = Endpoint {
        state: EpState::Inactive,
        prev_state: EpState::Inactive,
        fin_seen: false,
        seen: 0,
        start_seq: 0,
        last_seq: 0,
        ack_seq: 0,
        hist_last_syn: 0,
    };

    fn set_state(&mut self, new: EpState) {
        if new != self.state {
            self.prev_state = self.state;
            self.state = new;
        }
    }

    fn restart(&mut self, seq: u32, seq_end: u32) {
        self.start_seq = seq;
        self.ack_seq = seq;
        self.last_seq = seq_end;
    }

    /// Zeek's `init_endpoint`: (re)initialise sequence numbers on the first
    /// packet of this side, and on SYNs that restart the sequence space.
    fn init(&mut self, b: Bits, seq: u32, seq_end: u32) {
        match self.state {
            EpState::Inactive => {
                if b.syn {
                    self.restart(seq, seq_end);
                } else {
                    // Partial connection: number as though a SYN came first,
                    // but do not count this packet as a retransmission.
                    self.start_seq = seq.wrapping_sub(1);
                    self.ack_seq = seq.wrapping_sub(1);
                    self.last_seq = seq;
                }
            }
            EpState::SynSent | EpState::SynAckSent => {
                if b.syn && seq != self.start_seq {
                    self.restart(seq, seq_end);
                }
            }
            EpState::Established | EpState::Partial => {
                if b.syn {
                    self.restart(seq, seq_end);
                }
            }
            EpState::Reset => {
                if b.syn && self.prev_state == EpState::Inactive {
                    self.restart(seq, seq_end);
                }
            }
            EpState::Closed => {}
        }
    }

    /// Zeek's `init_peer`: an ACK from the other side sets our numbering as
    /// though we had sent a SYN just before the acknowledged byte.
    fn init_from_peer_ack(&mut self, ack: u32) {
        let s = ack.wrapping_sub(1);
        self.start_seq = s;
        self.ack_seq = s;
        self.last_seq = s;
    }

    /// `side` says which side this is, for its wrap counter in `cold`.
    fn update_last_seq(&mut self, seq: u32, cold: &mut Option<Box<Cold>>, side: bool) {
        if seq < self.last_seq {
            let c = cold_mut(cold).side_mut(side);
            c.seq_wraps = c.seq_wraps.wrapping_add(1);
        }
        self.last_seq = seq;
    }

    /// Zeek's `update_ack_seq`: the peer acknowledged our data up to `ack`.
    fn update_ack_seq(&mut self, ack: u32, cold: &mut Option<Box<Cold>>, side: bool) {
        let delta = seq_delta(ack, self.ack_seq);
        if ack == 0 && delta > TOO_LARGE_SEQ_DELTA {
            // More likely a broken ack than a wrap landing exactly on 0.
        } else if delta > 0 {
            if ack < self.ack_seq {
                let c = cold_mut(cold).side_mut(side);
                c.ack_wraps = c.ack_wraps.wrapping_add(1);
            }
            self.ack_seq = ack;
        }
    }

    /// Zeek's `update_last_seq` for a segment ending at `seq_end`; returns
    /// true when the segment is a retransmission.
    fn advance(
        &mut self,
        b: Bits,
        seq_end: u32,
        len: u32,
        cold: &mut Option<Box<Cold>>,
        side: bool,
    ) -> bool {
        let delta = seq_delta(seq_end, self.last_seq);
        let too_large = !(-TOO_LARGE_SEQ_DELTA..=TOO_LARGE_SEQ_DELTA).contains(&delta);
        if (b.syn || b.rst) && too_large {
            // Don't trust wild SYN/RST sequence numbers.
            false
        } else if b.fin && self.last_seq == self.start_seq.wrapping_add(1) {
            // Only the SYN and this FIN seen: trust the FIN even if it looks
            // backwards (connections of more than 2 GB).
            self.update_last_seq(seq_end, cold, side);
            false
        } else if self.state == EpState::Reset {
            false
        } else if delta > 0 {
            self.update_last_seq(seq_end, cold, side);
            false
        } else {
            len > 0
        }
    }

    fn no_data_acked(&self, cold: &ColdSide) -> bool {
        let ack = full_seq(self.ack_seq, cold.ack_wraps);
        let start = u64::from(self.start_seq);
        ack == start || ack == start.wrapping_add(1)
    }

    /// Zeek's `TCP_Endpoint::Size`: payload bytes from sequence numbers.
    fn size(&self, cold: &ColdSide, peer: &Endpoint) -> u64 {
        if self.prev_state == EpState::SynSent
            && self.state == EpState::Reset
            && peer.state == EpState::Inactive
            && !self.no_data_acked(cold)
        {
            // A half-open connection discovered and aborted.
            return 0;
        }
        let last = full_seq(self.last_seq, cold.seq_wraps);
        let acked = full_seq(self.ack_seq, cold.ack_wraps);
        let top = if last > acked { last } else { acked };
        let mut size = top.wrapping_sub(u64::from(self.start_seq));
        size = size.saturating_sub(1); // the SYN octet
        if self.fin_seen {
            size = size.saturating_sub(1); // the FIN octet
        }
        size
    }
}

/// Zeek-compatible TCP state of one connection (both directions).
///
/// Feed every valid TCP segment to [`observe`](Self::observe) (or
/// [`observe_with_window`](Self::observe_with_window)) in capture order;
/// read [`conn_state`](Self::conn_state), [`history`](Self::history),
/// [`orig_bytes`](Self::orig_bytes) and [`resp_bytes`](Self::resp_bytes)
/// when the conn.log line is written.
///
/// Sized for a flow table of millions of entries: 64 bytes, plus a [`Cold`] part allocated
/// only for connections that need it (FIN or RST seen, retransmissions, zero windows, bad
/// checksums, more than 4 GB or more than 24 history letters).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TcpState {
    orig: Endpoint,
    resp: Endpoint,
    letters: Letters,
    cold: Option<Box<Cold>>,
}

impl TcpState {
    /// A connection with nothing seen yet.
    pub const NEW: TcpState = TcpState {
        orig: Endpoint::NEW,
        resp: Endpoint::NEW,
        letters: Letters([0; 2]),
        cold: None,
    };

    /// One TCP segment. `from_orig` is true when it comes from the connection
    /// originator. `payload_len` is the TCP payload length (not the capture
    /// length).
    pub fn observe(&mut self, from_orig: bool, flags: u8, seq: u32, ack: u32, payload_len: u32) {
        self.process(from_orig, flags, seq, ack, payload_len, None);
    }

    /// Like [`observe`](Self::observe), with the segment's raw window field,
    /// so that zero-window advertisements produce `W`/`w` as in Zeek (not for
    /// RSTs, not after the sender reset, not after the peer sent a FIN).
    pub fn observe_with_window(
        &mut self,
        from_orig: bool,
        flags: u8,
        seq: u32,
        ack: u32,
        payload_len: u32,
        window: u16,
    ) {
        self.process(from_orig, flags, seq, ack, payload_len, Some(window));
    }

    /// A segment from this side failed its TCP checksum. Zeek drops such a
    /// packet (do not also `observe` it) and records `C`/`c`, logarithmically.
    pub fn record_bad_checksum(&mut self, from_orig: bool) {
        if scaled_event(
            &mut cold_mut(&mut self.cold)
                .side_mut(from_orig)
                .bad_checksum_count,
        ) {
            push_letter(&mut self.letters, &mut self.cold, letter(b'C', from_orig));
        }
    }

    /// The caller swapped originator and responder: swaps the two sides and
    /// appends `^` to the history, as Zeek's `Connection::FlipRoles` does.
    /// Zeek flips while creating the connection, before the first packet is
    /// analysed, so call this before observing that packet (with the new
    /// roles); the history then starts with `^`, e.g. `^hADadFf`.
    pub fn record_flip(&mut self) {
        std::mem::swap(&mut self.orig, &mut self.resp);
        if let Some(cold) = self.cold.as_deref_mut() {
            std::mem::swap(&mut cold.orig, &mut cold.resp);
        }
        push_letter(&mut self.letters, &mut self.cold, b'^');
    }

    /// Zeek's `conn_state`: S0, S1, SF, REJ, S2, S3, RSTO, RSTR, RSTOS0, RSTRH,
    /// SH, SHR, OTH.
    pub fn conn_state(&self) -> &'static str {
        let os = self.orig.state;
        let rs = self.resp.state;
        let o_inactive = os.inactive_or_partial();
        let r_inactive = rs.inactive_or_partial();

        if rs == EpState::Reset {
            if matches!(os, EpState::SynSent | EpState::SynAckSent)
                || (os == EpState::Reset && self.orig_bytes() == 0 && self.resp_bytes() == 0)
            {
                "REJ"
            } else if o_inactive {
                "RSTRH"
            } else {
                "RSTR"
            }
        } else if os == EpState::Reset {
            if r_inactive {
                let (letters, len) = self.history_bytes();
                if history_means_rstos0(letters.get(..len).unwrap_or(&[])) {
                    "RSTOS0"
                } else {
                    "OTH"
                }
            } else {
                "RSTO"
            }
        } else if rs == EpState::Closed && os == EpState::Closed {
            "SF"
        } else if os == EpState::Closed {
            if r_inactive { "SH" } else { "S2" }
        } else if rs == EpState::Closed {
            if o_inactive { "SHR" } else { "S3" }
        } else if os == EpState::SynSent && rs == EpState::Inactive {
            "S0"
        } else if os == EpState::Established && rs == EpState::Established {
            "S1"
        } else {
            "OTH"
        }
    }

    /// The history letters and how many there are.
    fn history_bytes(&self) -> ([u8; HISTORY_CAPACITY], usize) {
        let mut out = [0u8; HISTORY_CAPACITY];
        let inline = (0..self.letters.len()).filter_map(|i| decode_letter(self.letters.code(i)));
        let more = self
            .cold
            .as_ref()
            .map_or(&[][..], |c| &c.more_letters[..])
            .iter()
            .copied()
            .take_while(|&c| c != 0);
        let mut len = 0;
        for (slot, c) in out.iter_mut().zip(inline.chain(more)) {
            *slot = c;
            len += 1;
        }
        (out, len)
    }

    /// Zeek's history string (originator upper case, responder lower case).
    /// Empty means the field is unset (`-` in conn.log).
    pub fn history(&self) -> String {
        let (letters, len) = self.history_bytes();
        letters.iter().take(len).map(|&b| char::from(b)).collect()
    }

    /// Zeek's `orig_bytes` for TCP, from sequence numbers (see module docs).
    pub fn orig_bytes(&self) -> u64 {
        self.orig.size(&cold_side(&self.cold, true), &self.resp)
    }

    /// Zeek's `resp_bytes` for TCP, from sequence numbers (see module docs).
    pub fn resp_bytes(&self) -> u64 {
        self.resp.size(&cold_side(&self.cold, false), &self.orig)
    }

    #[cfg(test)]
    pub(crate) fn cold_is_empty(&self) -> bool {
        self.cold.is_none()
    }

    /// Whether a segment with these flags and sequence number, arriving on
    /// this connection's 4-tuple, starts a new connection in Zeek's eyes
    /// (`IsReuse`): only SYNs can; a SYN-ACK only while the originator has
    /// sent nothing. While the connection is open, a SYN repeating the
    /// initial sequence number is a retransmission, not a reuse; once either
    /// side has sent FIN or RST, any SYN is a reuse. (Zeek tracks "closed"
    /// through its close events; FIN/RST state is used here instead.)
    pub fn is_reuse(&self, flags: u8, seq: u32) -> bool {
        let b = Bits::new(flags);
        if !b.syn {
            return false;
        }
        let conn_orig = if b.ack {
            if self.orig.state != EpState::Inactive {
                return false;
            }
            &self.resp
        } else {
            &self.orig
        };
        let closed = |e: &Endpoint| matches!(e.state, EpState::Closed | EpState::Reset);
        if closed(&self.orig) || closed(&self.resp) {
            return true;
        }
        if seq == conn_orig.start_seq {
            return false;
        }
        // A SYN whose SYN-ACK was seen first (reordered handshake).
        !(!b.ack
            && conn_orig.state == EpState::SynAckSent
            && self.resp.state == EpState::Inactive
            && seq == self.resp.start_seq)
    }

    fn process(
        &mut self,
        from_orig: bool,
        flag_bits: u8,
        seq: u32,
        ack: u32,
        len: u32,
        window: Option<u16>,
    ) {
        let b = Bits::new(flag_bits);
        let TcpState {
            orig,
            resp,
            letters,
            cold,
        } = self;
        let (ep, peer) = if from_orig {
            (orig, resp)
        } else {
            (resp, orig)
        };

        // Sequence space taken by the segment: SYN and FIN count one each;
        // the payload of a RST is not part of the stream.
        let mut seg_len = if b.rst { 0 } else { len };
        if b.syn {
            seg_len = seg_len.wrapping_add(1);
        }
        if b.fin {
            seg_len = seg_len.wrapping_add(1);
        }
        let seq_end = seq.wrapping_add(seg_len);

        ep.init(b, seq, seq_end);
        let seq_wraps = cold.as_ref().map_or(0, |c| c.side(from_orig).seq_wraps);
        let (rel_seq, _) = relative_seq(ep.start_seq, seq, ep.last_seq, seq_wraps);
        update_history(letters, cold, ep, b, from_orig, rel_seq, len);

        if window == Some(0)
            && !b.rst
            && peer.state != EpState::Closed
            && ep.state != EpState::Reset
            && scaled_event(&mut cold_mut(cold).side_mut(from_orig).zero_window_count)
        {
            push_letter(letters, cold, letter(b'W', from_orig));
        }

        if b.fin {
            ep.fin_seen = true;
        }

        if b.ack {
            if peer.state == EpState::Inactive {
                peer.init_from_peer_ack(ack);
            } else {
                let ack_wraps = cold.as_ref().map_or(0, |c| c.side(!from_orig).ack_wraps);
                let (_, underflow) = relative_seq(peer.start_seq, ack, peer.ack_seq, ack_wraps);
                // Acks in RSTs are not trusted.
                if !underflow && !b.rst {
                    peer.update_ack_seq(ack, cold, !from_orig);
                }
            }
        }

        if ep.advance(b, seq_end, len, cold, from_orig)
            && scaled_event(&mut cold_mut(cold).side_mut(from_orig).rxmit_count)
        {
            push_letter(letters, cold, letter(b'T', from_orig));
        }

        update_state_machine(ep, peer, b, from_orig, seq, len);
    }
}

/// Zeek's `update_history` for one segment (S/H/F/R/D/A/I/Q letters).
fn update_history(
    letters: &mut Letters,
    cold: &mut Option<Box<Cold>>,
    ep: &mut Endpoint,
    b: Bits,
    from_orig: bool,
    rel_seq: u64,
    len: u32,
) {
    let control_bits = u8::from(b.syn) + u8::from(b.fin) + u8::from(b.rst);
    if control_bits > 1 {
        if b.fin && b.rst {
            check_history(ep, letters, cold, seen::FIN_RST, b'I', from_orig);
        } else {
            check_history(ep, letters, cold, seen::MULTI_FLAG, b'Q', from_orig);
        }
    } else if control_bits == 1 {
        // Relative sequence numbers compared on their low 32 bits.
        let rel = rel_seq as u32;
        if b.syn {
            let code = if b.ack { b'H' } else { b'S' };
            if check_history(ep, letters, cold, seen::SYN, code, from_orig)
                && rel != ep.hist_last_syn
            {
                push_letter(letters, cold, letter(code, from_orig));
            }
            ep.hist_last_syn = rel;
        }
        if b.fin {
            // A FIN's sequence number is the one after its data.
            let end = rel.wrapping_add(len);
            let seen = check_history(ep, letters, cold, seen::FIN, b'F', from_orig);
            let side = cold_mut(cold).side_mut(from_orig);
            let repeat = seen && end != side.hist_last_fin;
            side.hist_last_fin = end;
            if repeat {
                push_letter(letters, cold, letter(b'F', from_orig));
            }
        }
        if b.rst {
            let seen = check_history(ep, letters, cold, seen::RST, b'R', from_orig);
            let side = cold_mut(cold).side_mut(from_orig);
            let repeat = seen && rel != side.hist_last_rst;
            side.hist_last_rst = rel;
            if repeat {
                push_letter(letters, cold, letter(b'R', from_orig));
            }
        }
    } else if len > 0 {
        check_history(ep, letters, cold, seen::DATA, b'D', from_orig);
    } else if b.ack {
        check_history(ep, letters, cold, seen::ACK, b'A', from_orig);
    }
}

/// Zeek's `UpdateStateMachine`, dispatching on the sender's state.
fn update_state_machine(
    ep: &mut Endpoint,
    peer: &mut Endpoint,
    b: Bits,
    from_orig: bool,
    seq: u32,
    len: u32,
) {
    match ep.state {
        EpState::Inactive => update_inactive(ep, peer, b, from_orig, seq, len),
        EpState::SynSent | EpState::SynAckSent => {
            if b.fin {
                ep.set_state(EpState::Closed);
            }
            if b.rst {
                ep.set_state(EpState::Reset);
            }
        }
        EpState::Established | EpState::Partial => {
            if b.syn && ep.state == EpState::Partial && peer.state == EpState::Inactive && !b.ack {
                ep.set_state(EpState::SynSent);
            }
            if b.fin && !b.rst {
                ep.set_state(EpState::Closed);
                if peer.state == EpState::Reset && peer.prev_state == EpState::Closed {
                    // The peer's FIN then RST was a normal close after all.
                    peer.set_state(EpState::Closed);
                }
            }
            if b.rst {
                ep.set_state(EpState::Reset);
            }
        }
        EpState::Closed => {
            // After a FIN exchange in both directions a RST changes nothing.
            if b.rst && peer.state != EpState::Closed {
                ep.set_state(EpState::Reset);
            }
        }
        EpState::Reset => {}
    }
}

/// Zeek's `UpdateInactiveState`: first packet(s) from this side.
fn update_inactive(
    ep: &mut Endpoint,
    peer: &mut Endpoint,
    b: Bits,
    from_orig: bool,
    seq: u32,
    len: u32,
) {
    if b.syn {
        if from_orig {
            ep.set_state(if b.ack {
                EpState::SynAckSent
            } else {
                EpState::SynSent
            });
        } else {
            if !b.ack && peer.state == EpState::SynAckSent && seq == ep.start_seq {
                // SYN seen after its SYN-ACK. Zeek flips the roles here; this
                // module leaves roles to the caller (see
                // `first_packet_is_from_responder`) and just establishes.
                peer.set_state(EpState::Established);
            }
            if peer.state == EpState::SynSent {
                peer.set_state(EpState::Established);
            }
            ep.set_state(EpState::Established);
        }
    }
    if b.fin {
        ep.set_state(EpState::Closed);
    }
    if b.rst {
        ep.set_state(EpState::Reset);
    }
    if ep.state == EpState::Inactive {
        if !from_orig && len == 0 && peer.state == EpState::SynSent {
            // Some stacks ack a SYN before answering it: not a partial
            // connection yet.
        } else if b.ack && peer.state == EpState::Established {
            // SYN-ACK seen, SYN missed, now an ACK: established.
            ep.set_state(EpState::Established);
        } else {
            ep.set_state(EpState::Partial);
        }
    }
}

/// Zeek's RSTOS0 test: the whole history matches `^?S[^HAFGIQ]*R.*`.
fn history_means_rstos0(h: &[u8]) -> bool {
    let h = h.strip_prefix(b"^").unwrap_or(h);
    let Some(rest) = h.strip_prefix(b"S") else {
        return false;
    };
    for &c in rest {
        if c == b'R' {
            return true;
        }
        if b"HAFGIQ".contains(&c) {
            return false;
        }
    }
    false
}

/// Whether the first packet of a new TCP connection was sent by the
/// responder: a SYN-ACK (SYN and ACK set, no FIN, no RST). If so, the caller
/// should make the packet's destination the originator, call
/// [`TcpState::record_flip`] (history gets `^`), then observe the packet with
/// `from_orig = false`.
///
/// Zeek itself flips a connection whose first packet is a SYN-ACK or has no
/// SYN when the source port is in `likely_server_ports` (and the destination
/// is not; if both are, only a non-SYN-ACK with source port < destination
/// port); and since Zeek 5.1 (zeek/zeek PR #2191) it also flips a connection
/// that began with a SYN-ACK as soon as an ACK or data follows. Both give the
/// same log (`^h...`, e.g. baselines core.tcp.missing-syn `^hADdFaf` and
/// core.tcp.flip-without-syn `^hADadFf`). This function applies the SYN-ACK
/// rule without the port check, so it differs from Zeek only for a SYN-ACK
/// to a non-server port that nothing follows (Zeek: history `H`, SYN-ACK
/// sender as originator, OTH; here `^h`, OTH) or only a RST/FIN follows.
/// Port-based flips of midstream packets are left to the caller (it can call
/// `record_flip` too).
pub fn first_packet_is_from_responder(flags: u8) -> bool {
    flags & (flags::SYN | flags::ACK | flags::FIN | flags::RST) == flags::SYN | flags::ACK
}

/// Zeek's `conn_state` for UDP: an endpoint is active once one valid packet
/// came from it. SF both, S0 originator only, SHR responder only, else OTH.
pub fn udp_conn_state(orig_pkts: u64, resp_pkts: u64) -> &'static str {
    match (orig_pkts > 0, resp_pkts > 0) {
        (true, true) => "SF",
        (true, false) => "S0",
        (false, true) => "SHR",
        (false, false) => "OTH",
    }
}

/// Zeek's UDP history: `D` on the first originator packet, `d` on the first
/// responder packet (with or without payload). Without a flip the originator
/// sends first, so this is `Dd`, `D` or `d` (empty: unset, `-`).
pub fn udp_history(orig_pkts: u64, resp_pkts: u64) -> &'static str {
    match (orig_pkts > 0, resp_pkts > 0) {
        (true, true) => "Dd",
        (true, false) => "D",
        (false, true) => "d",
        (false, false) => "",
    }
}

/// UDP history when the caller flipped the connection (Zeek flips a UDP flow
/// whose first packet's source port is a likely server port and destination
/// port is not): `^` first, then the responder's `d` since it sent the first
/// packet, then `D` if the originator answered.
pub fn udp_history_flipped(orig_pkts: u64, resp_pkts: u64) -> &'static str {
    match (orig_pkts > 0, resp_pkts > 0) {
        (true, true) => "^dD",
        (false, true) => "^d",
        (true, false) => "^D",
        (false, false) => "^",
    }
}

/// Zeek's `conn_state` for ICMP: always OTH (the conn_state function only
/// distinguishes TCP and UDP).
pub fn icmp_conn_state() -> &'static str {
    "OTH"
}

/// Zeek's ICMP history: the ICMP analyzer records no letters, so the field
/// is unset (`-`).
pub fn icmp_history() -> &'static str {
    ""
}

#[cfg(test)]
mod tests {
    use super::flags::{ACK, FIN, PSH, RST, SYN};
    use super::*;

    const C: u32 = 1_000; // client ISN
    const S: u32 = 5_000; // server ISN

    /// Feeds packets `(from_orig, flags, seq, ack, payload_len)`.
    fn run(pkts: &[(bool, u8, u32, u32, u32)]) -> TcpState {
        let mut st = TcpState::default();
        feed(&mut st, pkts);
        st
    }

    fn feed(st: &mut TcpState, pkts: &[(bool, u8, u32, u32, u32)]) {
        for &(o, f, seq, ack, len) in pkts {
            st.observe(o, f, seq, ack, len);
        }
    }

    /// SYN, SYN-ACK, ACK.
    fn handshake() -> Vec<(bool, u8, u32, u32, u32)> {
        vec![
            (true, SYN, C, 0, 0),
            (false, SYN | ACK, S, C + 1, 0),
            (true, ACK, C + 1, S + 1, 0),
        ]
    }

    fn established() -> TcpState {
        run(&handshake())
    }

    // ---- one test per conn_state (sequences from main.zeek's descriptions) ----

    #[test]
    fn s0_attempt_without_reply() {
        // Baseline core.tcp.rxmit-history has S0 for lone attempts; SYN
        // retransmissions with the same ISN add no letter.
        let st = run(&[(true, SYN, C, 0, 0), (true, SYN, C, 0, 0)]);
        assert_eq!(st.conn_state(), "S0");
        assert_eq!(st.history(), "S");
    }

    #[test]
    fn s1_established_not_terminated() {
        // Baseline core.tcp.rxmit-history/conn-2.log: HTTP, S1, "ShADad".
        let mut st = established();
        feed(
            &mut st,
            &[
                (true, PSH | ACK, C + 1, S + 1, 100),
                (false, ACK, S + 1, C + 101, 0),
                (false, PSH | ACK, S + 1, C + 101, 200),
            ],
        );
        assert_eq!(st.conn_state(), "S1");
        assert_eq!(st.history(), "ShADad");
    }

    #[test]
    fn sf_normal_close_history_and_bytes() {
        // Handshake, request, ack, response, FIN from each side, final ack.
        // Zeek writes "ShADadFf" for this (same letters after "^h" in
        // baseline core.tcp.flip-without-syn/conn.log: "^hADadFf", SF).
        let mut st = established();
        feed(
            &mut st,
            &[
                (true, PSH | ACK, C + 1, S + 1, 100),
                (false, ACK, S + 1, C + 101, 0),
                (false, PSH | ACK, S + 1, C + 101, 200),
                (true, FIN | ACK, C + 101, S + 201, 0),
                (false, FIN | ACK, S + 201, C + 102, 0),
                (true, ACK, C + 102, S + 202, 0),
            ],
        );
        assert_eq!(st.conn_state(), "SF");
        assert_eq!(st.history(), "ShADadFf");
        assert_eq!(st.orig_bytes(), 100);
        assert_eq!(st.resp_bytes(), 200);
    }

    #[test]
    fn sf_server_sends_and_closes_first() {
        // Baseline core.tcp.large-file-reassembly/conn.log: ftp-data, SF,
        // "ShAdfFa", orig_bytes 0.
        let mut st = established();
        feed(
            &mut st,
            &[
                (false, PSH | ACK, S + 1, C + 1, 270),
                (false, FIN | ACK, S + 271, C + 1, 0),
                (true, FIN | ACK, C + 1, S + 272, 0),
                (false, ACK, S + 272, C + 2, 0),
            ],
        );
        assert_eq!(st.history(), "ShAdfFa");
        assert_eq!(st.conn_state(), "SF");
        assert_eq!(st.orig_bytes(), 0);
        assert_eq!(st.resp_bytes(), 270);
    }

    #[test]
    fn sf_despite_rsts_after_fins() {
        // Baseline core.tcp.fin-rst-timeout/conn.log: SF, "ShADadtFRfr": the
        // originator's FIN+RST turns back into a normal close when the
        // responder's FIN follows; the responder's RST after that is ignored.
        let mut st = established();
        feed(
            &mut st,
            &[
                (true, PSH | ACK, C + 1, S + 1, 10),
                (false, ACK, S + 1, C + 11, 0),
                (false, PSH | ACK, S + 1, C + 11, 20),
                (false, PSH | ACK, S + 1, C + 11, 20), // retransmission
                (true, FIN | ACK, C + 11, S + 21, 0),
                (true, RST | ACK, C + 12, S + 21, 0),
                (false, FIN | ACK, S + 21, C + 12, 0),
                (false, RST | ACK, S + 22, C + 12, 0),
            ],
        );
        assert_eq!(st.history(), "ShADadtFRfr");
        assert_eq!(st.conn_state(), "SF");
    }

    #[test]
    fn rej_rejected_attempt() {
        let st = run(&[(true, SYN, C, 0, 0), (false, RST | ACK, 0, C + 1, 0)]);
        assert_eq!(st.conn_state(), "REJ");
        assert_eq!(st.history(), "Sr");
    }

    #[test]
    fn s2_close_by_originator_only() {
        let mut st = established();
        st.observe(true, FIN | ACK, C + 1, S + 1, 0);
        assert_eq!(st.conn_state(), "S2");
        assert_eq!(st.history(), "ShAF");
    }

    #[test]
    fn s3_close_by_responder_only() {
        let mut st = established();
        st.observe(false, FIN | ACK, S + 1, C + 1, 0);
        assert_eq!(st.conn_state(), "S3");
        assert_eq!(st.history(), "ShAf");
    }

    #[test]
    fn rsto_originator_aborts() {
        let mut st = established();
        st.observe(true, RST | ACK, C + 1, S + 1, 0);
        assert_eq!(st.conn_state(), "RSTO");
        assert_eq!(st.history(), "ShAR");
    }

    #[test]
    fn rstr_responder_aborts() {
        let mut st = established();
        st.observe(false, RST | ACK, S + 1, C + 1, 0);
        assert_eq!(st.conn_state(), "RSTR");
        assert_eq!(st.history(), "ShAr");
    }

    #[test]
    fn rstos0_syn_then_rst_no_reply() {
        let st = run(&[(true, SYN, C, 0, 0), (true, RST, C + 1, 0, 0)]);
        assert_eq!(st.conn_state(), "RSTOS0");
        assert_eq!(st.history(), "SR");
        // An ACK before the RST breaks Zeek's `^?S[^HAFGIQ]*R.*` pattern.
        let st = run(&[
            (true, SYN, C, 0, 0),
            (true, ACK, C + 1, S + 1, 0),
            (true, RST, C + 1, 0, 0),
        ]);
        assert_eq!(st.history(), "SAR");
        assert_eq!(st.conn_state(), "OTH");
    }

    #[test]
    fn rstrh_syn_ack_then_rst_from_responder() {
        let mut st = TcpState::default();
        assert!(first_packet_is_from_responder(SYN | ACK));
        st.record_flip();
        feed(
            &mut st,
            &[(false, SYN | ACK, S, C + 1, 0), (false, RST, S + 1, 0, 0)],
        );
        assert_eq!(st.conn_state(), "RSTRH");
        assert_eq!(st.history(), "^hr");
    }

    #[test]
    fn sh_syn_then_fin_no_reply() {
        let st = run(&[(true, SYN, C, 0, 0), (true, FIN, C + 1, 0, 0)]);
        assert_eq!(st.conn_state(), "SH");
        assert_eq!(st.history(), "SF");
    }

    #[test]
    fn shr_syn_ack_then_fin_from_responder() {
        let mut st = TcpState::default();
        st.record_flip();
        feed(
            &mut st,
            &[
                (false, SYN | ACK, S, C + 1, 0),
                (false, FIN | ACK, S + 1, C + 1, 0),
            ],
        );
        assert_eq!(st.conn_state(), "SHR");
        assert_eq!(st.history(), "^hf");
    }

    #[test]
    fn oth_midstream_only() {
        // Baseline core.tcp.rxmit-history/conn-2.log: OTH, "DdA".
        let st = run(&[
            (true, PSH | ACK, C, S, 300),
            (false, PSH | ACK, S, C + 300, 350),
            (true, ACK, C + 300, S + 350, 0),
        ]);
        assert_eq!(st.conn_state(), "OTH");
        assert_eq!(st.history(), "DdA");
    }

    #[test]
    fn oth_lone_flipped_syn_ack() {
        // Baseline core.tcp.rxmit-history/conn-2.log: OTH, "^h", orig_pkts 0.
        let mut st = TcpState::default();
        st.record_flip();
        st.observe(false, SYN | ACK, S, C + 1, 0);
        assert_eq!(st.conn_state(), "OTH");
        assert_eq!(st.history(), "^h");
    }

    // ---- flipped connections ----

    #[test]
    fn flipped_missing_syn_session() {
        // Baseline core.tcp.missing-syn/conn.log: SF, "^hADdFaf",
        // orig_bytes 98, resp_bytes 9417.
        assert!(first_packet_is_from_responder(SYN | ACK));
        let mut st = TcpState::default();
        st.record_flip();
        feed(
            &mut st,
            &[
                (false, SYN | ACK, S, C + 1, 0),
                (true, ACK, C + 1, S + 1, 0),
                (true, PSH | ACK, C + 1, S + 1, 98),
                (false, PSH | ACK, S + 1, C + 99, 9417),
                (true, FIN | ACK, C + 99, S + 9418, 0),
                (false, ACK, S + 9418, C + 100, 0),
                (false, FIN | ACK, S + 9418, C + 100, 0),
                (true, ACK, C + 100, S + 9419, 0),
            ],
        );
        assert_eq!(st.history(), "^hADdFaf");
        assert_eq!(st.conn_state(), "SF");
        assert_eq!(st.orig_bytes(), 98);
        assert_eq!(st.resp_bytes(), 9417);
    }

    #[test]
    fn flipped_after_syn_ack_then_data() {
        // Baseline core.tcp.flip-without-syn/conn.log: SF, "^hADadFf",
        // orig_bytes 136, resp_bytes 5007.
        let mut st = TcpState::default();
        st.record_flip();
        feed(
            &mut st,
            &[
                (false, SYN | ACK, S, C + 1, 0),
                (true, ACK, C + 1, S + 1, 0),
                (true, PSH | ACK, C + 1, S + 1, 136),
                (false, ACK, S + 1, C + 137, 0),
                (false, PSH | ACK, S + 1, C + 137, 5007),
                (true, FIN | ACK, C + 137, S + 5008, 0),
                (false, FIN | ACK, S + 5008, C + 138, 0),
                (true, ACK, C + 138, S + 5009, 0),
            ],
        );
        assert_eq!(st.history(), "^hADadFf");
        assert_eq!(st.conn_state(), "SF");
        assert_eq!((st.orig_bytes(), st.resp_bytes()), (136, 5007));
    }

    #[test]
    fn record_flip_swaps_existing_sides() {
        // Flipping after packets were seen swaps the sides' states.
        let mut st = run(&[(true, SYN, C, 0, 0)]);
        assert_eq!(st.conn_state(), "S0");
        st.record_flip();
        assert_eq!(st.history(), "S^");
        assert_eq!(st.conn_state(), "OTH");
    }

    #[test]
    fn first_packet_classification() {
        assert!(first_packet_is_from_responder(SYN | ACK));
        assert!(first_packet_is_from_responder(SYN | ACK | PSH));
        assert!(!first_packet_is_from_responder(SYN));
        assert!(!first_packet_is_from_responder(ACK));
        assert!(!first_packet_is_from_responder(SYN | ACK | RST));
        assert!(!first_packet_is_from_responder(SYN | ACK | FIN));
    }

    // ---- history details ----

    #[test]
    fn retransmissions_are_logarithmic() {
        let mut st = established();
        st.observe(true, PSH | ACK, C + 1, S + 1, 100);
        st.observe(false, ACK, S + 1, C + 101, 0);
        st.observe(true, PSH | ACK, C + 1, S + 1, 100);
        assert_eq!(st.history(), "ShADaT");
        for _ in 0..8 {
            st.observe(true, PSH | ACK, C + 1, S + 1, 100);
        }
        assert_eq!(st.history(), "ShADaT", "9 retransmissions: one T");
        st.observe(true, PSH | ACK, C + 1, S + 1, 100);
        assert_eq!(st.history(), "ShADaTT", "10th retransmission");
        for _ in 0..90 {
            st.observe(true, PSH | ACK, C + 1, S + 1, 100);
        }
        assert_eq!(st.history(), "ShADaTTT", "100th retransmission");
        // Retransmitted bytes are not counted twice.
        assert_eq!(st.orig_bytes(), 100);
    }

    #[test]
    fn partial_overlap_that_advances_is_not_retransmission() {
        let mut st = established();
        st.observe(true, PSH | ACK, C + 1, S + 1, 100);
        st.observe(true, PSH | ACK, C + 51, S + 1, 100);
        assert_eq!(st.history(), "ShAD");
    }

    #[test]
    fn fin_retransmission_adds_no_letter_but_new_fin_seq_does() {
        let mut st = established();
        st.observe(true, FIN | ACK, C + 1, S + 1, 0);
        st.observe(true, FIN | ACK, C + 1, S + 1, 0);
        assert_eq!(st.history(), "ShAF");
        // A FIN at another sequence number is recorded again.
        st.observe(true, FIN | ACK, C + 7, S + 1, 0);
        assert_eq!(st.history(), "ShAFF");
    }

    #[test]
    fn syn_ack_retransmission_and_new_syn_seq() {
        let mut st = run(&[(true, SYN, C, 0, 0), (false, SYN | ACK, S, C + 1, 0)]);
        st.observe(false, SYN | ACK, S, C + 1, 0);
        assert_eq!(st.history(), "Sh");
        // A SYN at another relative sequence number is recorded again (here
        // after a RST; Zeek would open a new connection for it, see
        // `is_reuse`, but the letter rule is the same).
        let mut st = run(&[(true, SYN, C, 0, 0), (true, RST, C + 1, 0, 0)]);
        st.observe(true, SYN, C + 500, 0, 0);
        assert_eq!(st.history(), "SRS");
    }

    #[test]
    fn fin_with_data_gives_f_not_d() {
        let mut st = established();
        st.observe(true, FIN | PSH | ACK, C + 1, S + 1, 40);
        assert_eq!(st.history(), "ShAF");
        assert_eq!(st.orig_bytes(), 40);
    }

    #[test]
    fn multi_flag_letters() {
        let mut st = established();
        st.observe(true, FIN | RST | ACK, C + 1, S + 1, 0);
        st.observe(false, SYN | FIN, S + 1, 0, 0);
        st.observe(false, SYN | RST, S + 1, 0, 0);
        assert_eq!(st.history(), "ShAIq", "q only once per side");
    }

    #[test]
    fn zero_window_letters() {
        let mut st = established();
        st.observe_with_window(false, ACK, S + 1, C + 1, 0, 0);
        assert_eq!(st.history(), "ShAaw");
        for _ in 0..9 {
            st.observe_with_window(false, ACK, S + 1, C + 1, 0, 0);
        }
        assert_eq!(st.history(), "ShAaww");
        // Non-zero windows and zero windows in RSTs do not count.
        st.observe_with_window(true, ACK, C + 1, S + 1, 0, 512);
        st.observe_with_window(true, RST | ACK, C + 1, S + 1, 0, 0);
        assert_eq!(st.history(), "ShAawwR");
    }

    #[test]
    fn zero_window_after_peer_fin_is_ignored() {
        let mut st = established();
        st.observe(false, FIN | ACK, S + 1, C + 1, 0);
        st.observe_with_window(true, ACK, C + 1, S + 2, 0, 0);
        assert_eq!(st.history(), "ShAf");
    }

    #[test]
    fn bad_checksum_letters() {
        let mut st = TcpState::default();
        st.record_bad_checksum(true);
        assert_eq!(st.history(), "C");
        for _ in 0..9 {
            st.record_bad_checksum(true);
        }
        st.record_bad_checksum(false);
        assert_eq!(st.history(), "CCc");
    }

    #[test]
    fn history_is_capped() {
        let mut st = TcpState::default();
        for i in 0..100u32 {
            st.observe(i % 2 == 0, FIN, C + i * 10, 0, 0);
        }
        // Past the inline letters, in order, up to the cap.
        assert_eq!(st.history(), "Ff".repeat(HISTORY_CAPACITY / 2));
    }

    // ---- sequence numbers and byte counts ----

    #[test]
    fn bytes_across_seq_wraparound() {
        let isn = 0xFFFF_FF00;
        let mut st = run(&[
            (true, SYN, C, 0, 0),
            (false, SYN | ACK, isn, C + 1, 0),
            (true, ACK, C + 1, isn.wrapping_add(1), 0),
            (false, PSH | ACK, isn.wrapping_add(1), C + 1, 0x100),
            (false, PSH | ACK, isn.wrapping_add(0x101), C + 1, 0x100),
        ]);
        assert_eq!(st.history(), "ShAd");
        assert_eq!(st.resp_bytes(), 0x200);
        // A retransmission from before the wrap is still recognised.
        st.observe(false, PSH | ACK, isn.wrapping_add(1), C + 1, 0x100);
        assert_eq!(st.history(), "ShAdt");
        assert_eq!(st.resp_bytes(), 0x200);
    }

    #[test]
    fn bytes_beyond_4_gib() {
        // Baseline core.tcp.large-file-reassembly/conn.log logs
        // resp_bytes 5416666670: counts go beyond 32 bits.
        let mut st = established();
        let chunk: u32 = 1_000_000;
        let mut seq = S + 1;
        for _ in 0..5_000 {
            st.observe(false, ACK, seq, C + 1, chunk);
            seq = seq.wrapping_add(chunk);
            st.observe(true, ACK, C + 1, seq, 0);
        }
        st.observe(false, FIN | ACK, seq, C + 1, 0);
        st.observe(true, FIN | ACK, C + 1, seq.wrapping_add(1), 0);
        assert_eq!(st.resp_bytes(), 5_000_000_000);
        assert_eq!(st.orig_bytes(), 0);
        assert_eq!(st.conn_state(), "SF");
    }

    #[test]
    fn bytes_from_syn_and_fin_only() {
        // Only SYN and FIN seen, 3 GB apart (a backwards-looking jump):
        // Zeek trusts the FIN.
        let st = run(&[(true, SYN, C, 0, 0), (true, FIN, C + 3_000_000_001, 0, 0)]);
        assert_eq!(st.orig_bytes(), 3_000_000_000);
    }

    #[test]
    fn acked_but_unseen_data_counts() {
        // Bytes acknowledged by the peer count even if never captured.
        let mut st = established();
        st.observe(false, ACK, S + 1, C + 1001, 0);
        assert_eq!(st.orig_bytes(), 1000);
        assert_eq!(st.history(), "ShAa");
    }

    #[test]
    fn rst_payload_is_not_stream_data() {
        let mut st = established();
        st.observe(true, RST | ACK, C + 1, S + 1, 50);
        assert_eq!(st.orig_bytes(), 0);
        // Zeek checks for retransmission before applying the RST, and a RST
        // takes no sequence space, so its payload counts as retransmitted.
        assert_eq!(st.history(), "ShART");
    }

    #[test]
    fn reuse_detection() {
        let st = run(&[(true, SYN, C, 0, 0)]);
        assert!(!st.is_reuse(SYN, C), "retransmitted SYN");
        assert!(st.is_reuse(SYN, C + 77), "new ISN");
        assert!(!st.is_reuse(ACK, C + 77), "only SYNs start connections");
        let mut st = established();
        st.observe(true, FIN | ACK, C + 1, S + 1, 0);
        st.observe(false, FIN | ACK, S + 1, C + 2, 0);
        assert!(st.is_reuse(SYN, C), "any SYN after close");
    }

    // ---- UDP and ICMP ----

    #[test]
    fn udp_states_and_history() {
        // Baseline core.tcp.rxmit-history/conn-2.log: DNS "Dd" SF, mDNS "D" S0;
        // issue zeek/zeek#3235: flipped one-way UDP "^d" SHR.
        assert_eq!((udp_conn_state(1, 1), udp_history(1, 1)), ("SF", "Dd"));
        assert_eq!((udp_conn_state(7, 0), udp_history(7, 0)), ("S0", "D"));
        assert_eq!(
            (udp_conn_state(0, 22), udp_history_flipped(0, 22)),
            ("SHR", "^d")
        );
        assert_eq!(udp_history_flipped(3, 4), "^dD");
        assert_eq!((udp_conn_state(0, 0), udp_history(0, 0)), ("OTH", ""));
    }

    #[test]
    fn icmp_state_and_history() {
        assert_eq!(icmp_conn_state(), "OTH");
        assert_eq!(icmp_history(), "");
    }

    // ---- robustness ----

    #[test]
    fn state_is_small_and_fixed_size() {
        // Every TCP flow in the table holds one; see flow::table's memory budget.
        assert!(std::mem::size_of::<TcpState>() <= 64);
        // The common case needs no cold part: handshake and data both ways.
        let mut st = established();
        st.observe(true, PSH | ACK, C + 1, S + 1, 100);
        st.observe(false, PSH | ACK, S + 1, C + 101, 200);
        assert!(st.cold.is_none());
    }

    #[test]
    fn arbitrary_input_never_panics() {
        const STATES: [&str; 13] = [
            "S0", "S1", "SF", "REJ", "S2", "S3", "RSTO", "RSTR", "RSTOS0", "RSTRH", "SH", "SHR",
            "OTH",
        ];
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..2_000 {
            let mut st = TcpState::default();
            for _ in 0..(next() % 40) {
                let r = next();
                let seq = if r & 1 == 0 {
                    r as u32
                } else {
                    u32::MAX - (r >> 40) as u32
                };
                let len = match r % 4 {
                    0 => 0,
                    1 => u32::MAX,
                    _ => (r >> 20) as u32 % 2000,
                };
                match r % 13 {
                    0 => st.record_flip(),
                    1 => st.record_bad_checksum(r & 2 == 0),
                    2 => st.observe_with_window(
                        r & 2 == 0,
                        (r >> 8) as u8,
                        seq,
                        (r >> 32) as u32,
                        len,
                        0,
                    ),
                    _ => st.observe(r & 2 == 0, (r >> 8) as u8, seq, (r >> 32) as u32, len),
                }
                let _ = st.is_reuse((r >> 16) as u8, seq);
            }
            assert!(STATES.contains(&st.conn_state()));
            assert!(st.history().len() <= HISTORY_CAPACITY);
            let _ = (st.orig_bytes(), st.resp_bytes());
        }
    }
}
