//! NetFlow v5, v9 and IPFIX (v10) decoding with template state.
//!
//! Formats: NetFlow v5 (Cisco), NetFlow v9 (RFC 3954), IPFIX (RFC 7011, 7012; biflows RFC 5103).
//!
//! Why our own decoder and not the `netflow_parser` crate: version 1.0.6 (latest on crates.io
//! when this was written) was tried on the public captures. It decodes v5/v9/IPFIX, PEN 29305
//! reverse fields, IPFIX withdrawals, and (with `PendingFlowsConfig`) the akvorado v9 data set
//! that precedes its template. It does not fit this module because:
//! - template TTL and pending-flow TTL are measured with `Instant::now()` (wall clock). A
//!   replayed capture needs the capture's time (`recv_ns`), so expiry would be wrong there,
//!   and unit tests of expiry would have to sleep;
//! - its template bound is per parser. `AutoScopedParser` keys a parser by (source,
//!   domain/source id) and bounds the number of sources, so it has no global bound on
//!   templates across exporters with counted LRU eviction (`max_templates`);
//! - pending flows are bounded per template id and in bytes, not per exporter
//!   (`max_pending_sets`);
//! - records come out as `Vec<(field enum, value enum)>`, with the protocol, TCP flags and
//!   end reason turned into enums. That means an allocation per record and a lossy mapping
//!   back to numbers. Sampling per (exporter, domain) and the time conversion would have to be
//!   built on top in any case.
//!
//! Template state is keyed by (exporter socket, version, observation domain / source id,
//! template id). The clock is `recv_ns`: a template unused for `template_timeout_seconds`
//! expires, and a data set waiting for its template is dropped after
//! `pending_timeout_seconds`.
use super::{ExportConfig, ExportError, Exporter, ExporterSampling, FlowRecord, RecordSource};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// Counters for the stats summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetflowCounters {
    pub datagrams: u64,
    /// Flow records emitted.
    pub records: u64,
    pub options_records: u64,
    /// Template and options template records received (refreshes included).
    pub templates: u64,
    pub options_templates: u64,
    /// Templates removed by an IPFIX withdrawal (a withdraw-all counts each one it removes).
    pub templates_withdrawn: u64,
    pub templates_expired: u64,
    /// Templates evicted (least recently used) because `max_templates` was reached.
    pub templates_evicted: u64,
    /// Data sets buffered because their template had not arrived yet.
    pub sets_pending: u64,
    /// Buffered data sets decoded once their template arrived.
    pub pending_decoded: u64,
    /// Buffered data sets dropped (per-exporter or global bound, or timeout).
    pub pending_dropped: u64,
    /// Data records without source and destination addresses (not flows, not options).
    pub records_without_keys: u64,
    /// Sets with a reserved id (v9 2..=255, IPFIX 0, 1, 4..=255), skipped.
    pub sets_reserved: u64,
    /// Datagrams (or parts of them) that failed to decode.
    pub malformed: u64,
}

/// Field length that announces a variable-length IPFIX field (RFC 7011 §7).
const VARIABLE_LENGTH: u16 = 65535;
/// IANA private enterprise number for RFC 5103 reverse information elements.
const REVERSE_PEN: u32 = 29305;
/// Seconds between the NTP epoch (1900) and the Unix epoch.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;
/// What a pending data set costs besides its body (the set, its queue slot, a share of its
/// exporter's map entry), charged against `max_pending_bytes`: an empty data set still takes
/// memory, so a spoofed flood of them from many exporters cannot grow it without bound.
pub const PENDING_SET_OVERHEAD: usize = 192;
/// Sampling and system-init entries learnt from options data, across all exporters.
const MAX_OPTIONS_STATE: usize = 65_536;

/// Where templates and options state live: one exporter's one observation domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Scope {
    exporter: Exporter,
    version: u16,
    domain: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct TemplateKey {
    scope: Scope,
    id: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FieldSpec {
    id: u16,
    len: u16,
    /// Enterprise number; 0 for IANA elements.
    pen: u32,
}

/// A template compiled for decoding: what each field feeds is decided once per template,
/// not once per record.
#[derive(Debug)]
struct Template {
    /// Every field in record order: its length (`VARIABLE_LENGTH` when variable) and slot.
    fields: Vec<(u16, Slot)>,
    options: bool,
    /// Shortest record (a variable-length field counts as its 1-byte length): always >= 1.
    min_record_len: usize,
    /// Without variable-length fields every record is `min_record_len` long: the (offset,
    /// length, slot) of just the fields read, so the others are not walked.
    fixed: Option<Vec<(usize, usize, Slot)>>,
}

struct TemplateEntry {
    template: Arc<Template>,
    last_used_ns: u64,
    lru_tick: u64,
}

/// What a data set needs from its datagram's header to place its records in time.
#[derive(Debug, Clone, Copy)]
struct HeaderTime {
    /// Export time, ns since the Unix epoch.
    export_ns: u64,
    /// NetFlow v9 sysUptime in ms (`None` for IPFIX).
    uptime_ms: Option<u32>,
}

struct PendingSet {
    scope: Scope,
    set_id: u16,
    /// Offset of the set body in its datagram, for errors.
    base: usize,
    time: HeaderTime,
    recv_ns: u64,
    body: Vec<u8>,
}

impl PendingSet {
    fn key(&self) -> TemplateKey {
        TemplateKey {
            scope: self.scope,
            id: self.set_id,
        }
    }

    /// Bytes charged against `max_pending_bytes`.
    fn cost(&self) -> usize {
        self.body.len() + PENDING_SET_OVERHEAD
    }
}

/// One set waiting for its template left the queue.
fn unwait(waiting: &mut HashMap<TemplateKey, u32>, set: &PendingSet) {
    let key = set.key();
    if let Some(n) = waiting.get_mut(&key) {
        *n -= 1;
        if *n == 0 {
            waiting.remove(&key);
        }
    }
}

/// Sampler state key: a scope and the sampler / selector id (`None`: the domain's default).
type SamplerKey = (Scope, Option<u64>);

pub struct NetflowDecoder {
    pub counters: NetflowCounters,
    template_timeout_ns: u64,
    pending_timeout_ns: u64,
    max_pending_sets: usize,
    max_pending_bytes: usize,
    max_templates: usize,
    sampling_overrides: Vec<ExporterSampling>,
    templates: HashMap<TemplateKey, TemplateEntry>,
    /// LRU order of `templates`: tick -> key.
    lru: BTreeMap<u64, TemplateKey>,
    next_tick: u64,
    pending: HashMap<Exporter, VecDeque<PendingSet>>,
    /// How many buffered sets wait for each template, so that a template nobody waits for
    /// (nearly all of them) skips the queue: a template storm must not walk it per template.
    waiting: HashMap<TemplateKey, u32>,
    pending_bytes: usize,
    samplers: HashMap<SamplerKey, u32>,
    /// IPFIX systemInitTimeMilliseconds from options data, ns since the Unix epoch.
    system_init: HashMap<Scope, u64>,
    next_sweep_ns: u64,
}

impl NetflowDecoder {
    pub fn new(config: &ExportConfig) -> NetflowDecoder {
        NetflowDecoder {
            counters: NetflowCounters::default(),
            template_timeout_ns: config
                .template_timeout_seconds
                .saturating_mul(1_000_000_000),
            pending_timeout_ns: config.pending_timeout_seconds.saturating_mul(1_000_000_000),
            max_pending_sets: config.max_pending_sets,
            max_pending_bytes: config.max_pending_bytes,
            max_templates: config.max_templates.max(1),
            sampling_overrides: config.sampling.clone(),
            templates: HashMap::new(),
            lru: BTreeMap::new(),
            next_tick: 0,
            pending: HashMap::new(),
            waiting: HashMap::new(),
            pending_bytes: 0,
            samplers: HashMap::new(),
            system_init: HashMap::new(),
            next_sweep_ns: 0,
        }
    }

    /// Templates currently held (all exporters).
    pub fn template_count(&self) -> usize {
        self.templates.len()
    }

    /// Data sets currently waiting for their template (all exporters).
    pub fn pending_count(&self) -> usize {
        self.pending.values().map(VecDeque::len).sum()
    }

    /// Decodes one datagram from `exporter`, received at `recv_ns`; appends its records.
    /// On error the records of the sets before the bad one are still appended.
    pub fn decode(
        &mut self,
        exporter: Exporter,
        recv_ns: u64,
        datagram: &[u8],
        out: &mut Vec<FlowRecord>,
    ) -> Result<(), ExportError> {
        self.counters.datagrams += 1;
        self.sweep(recv_ns);
        let result = match be16(datagram, 0) {
            Some(5) => self.decode_v5(exporter, datagram, out),
            Some(9) => self.decode_v9(exporter, recv_ns, datagram, out),
            Some(10) => self.decode_ipfix(exporter, recv_ns, datagram, out),
            Some(v) => Err(ExportError::Unsupported {
                what: "netflow version",
                detail: v.to_string(),
            }),
            None => Err(ExportError::Truncated {
                what: "netflow header",
                offset: 0,
            }),
        };
        if result.is_err() {
            self.counters.malformed += 1;
        }
        result
    }

    fn decode_v5(
        &mut self,
        exporter: Exporter,
        datagram: &[u8],
        out: &mut Vec<FlowRecord>,
    ) -> Result<(), ExportError> {
        const HEADER: usize = 24;
        const RECORD: usize = 48;
        let truncated = |offset| ExportError::Truncated {
            what: "netflow v5 header",
            offset,
        };
        let count = be16(datagram, 2).ok_or(truncated(2))? as usize;
        let uptime_ms = be32(datagram, 4).ok_or(truncated(4))?;
        let unix_secs = be32(datagram, 8).ok_or(truncated(8))?;
        let unix_nsecs = be32(datagram, 12).ok_or(truncated(12))?;
        let sampling_field = be16(datagram, 22).ok_or(truncated(22))?;
        let export_ns = u64::from(unix_secs) * 1_000_000_000 + u64::from(unix_nsecs);
        let header_interval = u32::from(sampling_field & 0x3fff).max(1);
        let sampling = self
            .override_for(exporter.ip())
            .unwrap_or(header_interval)
            .max(1);
        for index in 0..count {
            let at = HEADER + index * RECORD;
            let Some(rec) = datagram.get(at..at + RECORD) else {
                return Err(ExportError::Truncated {
                    what: "netflow v5 record",
                    offset: at,
                });
            };
            // `rec` is a whole record: these fixed offsets are inside it.
            let u32_at = |o: usize| be32(rec, o).unwrap_or(0);
            let ip4 = |o: usize| IpAddr::V4(Ipv4Addr::from(u32_at(o)));
            let u16_at = |o: usize| be16(rec, o).unwrap_or(0);
            let u8_at = |o: usize| rec.get(o).copied().unwrap_or(0);
            let time = HeaderTime {
                export_ns,
                uptime_ms: Some(uptime_ms),
            };
            let start_ns = uptime_to_ns(time, u32_at(24));
            let end_ns = uptime_to_ns(time, u32_at(28));
            out.push(FlowRecord {
                source: RecordSource::NetflowV5,
                exporter: exporter.ip(),
                src: ip4(0),
                dst: ip4(4),
                src_port: u16_at(32),
                dst_port: u16_at(34),
                proto: u8_at(38),
                octets: u64::from(u32_at(20)).saturating_mul(u64::from(sampling)),
                packets: u64::from(u32_at(16)).saturating_mul(u64::from(sampling)),
                rev_octets: 0,
                rev_packets: 0,
                start_ns,
                end_ns,
                tcp_flags: Some(u8_at(37)),
                rev_tcp_flags: None,
                sampling,
                end_reason: None,
            });
            self.counters.records += 1;
        }
        Ok(())
    }

    fn decode_v9(
        &mut self,
        exporter: Exporter,
        recv_ns: u64,
        datagram: &[u8],
        out: &mut Vec<FlowRecord>,
    ) -> Result<(), ExportError> {
        const HEADER: usize = 20;
        let truncated = |offset| ExportError::Truncated {
            what: "netflow v9 header",
            offset,
        };
        let uptime_ms = be32(datagram, 4).ok_or(truncated(4))?;
        let unix_secs = be32(datagram, 8).ok_or(truncated(8))?;
        let source_id = be32(datagram, 16).ok_or(truncated(16))?;
        let scope = Scope {
            exporter,
            version: 9,
            domain: source_id,
        };
        let time = HeaderTime {
            export_ns: u64::from(unix_secs) * 1_000_000_000,
            uptime_ms: Some(uptime_ms),
        };
        self.decode_sets(scope, time, recv_ns, datagram, HEADER, out)
    }

    fn decode_ipfix(
        &mut self,
        exporter: Exporter,
        recv_ns: u64,
        datagram: &[u8],
        out: &mut Vec<FlowRecord>,
    ) -> Result<(), ExportError> {
        const HEADER: usize = 16;
        let truncated = |offset| ExportError::Truncated {
            what: "ipfix header",
            offset,
        };
        let length = usize::from(be16(datagram, 2).ok_or(truncated(2))?);
        let export_secs = be32(datagram, 4).ok_or(truncated(4))?;
        let domain = be32(datagram, 12).ok_or(truncated(12))?;
        if length < HEADER || length > datagram.len() {
            return Err(ExportError::Invalid {
                what: "ipfix message length",
                offset: 2,
                detail: format!("{length} for a datagram of {}", datagram.len()),
            });
        }
        let scope = Scope {
            exporter,
            version: 10,
            domain,
        };
        let time = HeaderTime {
            export_ns: u64::from(export_secs) * 1_000_000_000,
            uptime_ms: None,
        };
        let message = datagram.get(..length).unwrap_or(datagram);
        self.decode_sets(scope, time, recv_ns, message, HEADER, out)
    }

    /// Walks the sets after the header. A set that cannot be framed ends the walk; an error
    /// inside a well-framed set is remembered and the walk goes on to the next set.
    fn decode_sets(
        &mut self,
        scope: Scope,
        time: HeaderTime,
        recv_ns: u64,
        message: &[u8],
        header_len: usize,
        out: &mut Vec<FlowRecord>,
    ) -> Result<(), ExportError> {
        let ipfix = scope.version == 10;
        let mut first_error = None;
        let mut at = header_len;
        while at < message.len() {
            let rest = message.get(at..).unwrap_or(&[]);
            if rest.len() < 4 {
                // v9 exporters may pad the datagram; anything else is a cut set header.
                if !ipfix && rest.iter().all(|&b| b == 0) {
                    break;
                }
                return Err(first_error.unwrap_or(ExportError::Truncated {
                    what: "set header",
                    offset: at,
                }));
            }
            let set_id = be16(message, at).unwrap_or(0);
            let set_len = usize::from(be16(message, at + 2).unwrap_or(0));
            if set_len < 4 || set_len > rest.len() {
                let error = if set_len < 4 {
                    ExportError::Invalid {
                        what: "set length",
                        offset: at + 2,
                        detail: format!("{set_len} < 4"),
                    }
                } else {
                    ExportError::Truncated {
                        what: "set",
                        offset: at,
                    }
                };
                return Err(first_error.unwrap_or(error));
            }
            let body = message.get(at + 4..at + set_len).unwrap_or(&[]);
            let base = at + 4;
            let result = match (ipfix, set_id) {
                (false, 0) | (true, 2) => self.template_set(scope, recv_ns, body, base, false, out),
                (false, 1) | (true, 3) => self.template_set(scope, recv_ns, body, base, true, out),
                (_, id) if id >= 256 => self.data_set(scope, id, time, recv_ns, body, base, out),
                _ => {
                    self.counters.sets_reserved += 1;
                    Ok(())
                }
            };
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
            at += set_len;
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Reads the template records of one (options) template set, then decodes the data sets
    /// that were waiting for them.
    fn template_set(
        &mut self,
        scope: Scope,
        recv_ns: u64,
        body: &[u8],
        base: usize,
        options: bool,
        out: &mut Vec<FlowRecord>,
    ) -> Result<(), ExportError> {
        let ipfix = scope.version == 10;
        let mut at = 0;
        let mut first_error = None;
        loop {
            let rest = body.get(at..).unwrap_or(&[]);
            // Padding: fewer bytes than a template header, or zeros (template id 0 is never
            // valid, so the zero scan runs once per set).
            if rest.len() < 4 || (be16(rest, 0) == Some(0) && rest.iter().all(|&b| b == 0)) {
                break;
            }
            let parsed = if ipfix {
                parse_ipfix_template(rest, options)
            } else {
                parse_v9_template(rest, options)
            };
            let (id, template, used) = match parsed {
                Ok(parsed) => parsed,
                Err((what, offset, detail)) => {
                    return Err(first_error.unwrap_or(ExportError::Invalid {
                        what,
                        offset: base + at + offset,
                        detail,
                    }));
                }
            };
            at += used;
            let key = TemplateKey { scope, id };
            match template {
                None => self.withdraw(key, options),
                Some(template) => {
                    if options {
                        self.counters.options_templates += 1;
                    } else {
                        self.counters.templates += 1;
                    }
                    self.insert_template(key, template, recv_ns);
                    if let Err(e) = self.decode_pending(key, recv_ns, out) {
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// IPFIX withdrawal (RFC 7011 §8.1): one template, or all of a kind with id 2 (data) /
    /// 3 (options).
    fn withdraw(&mut self, key: TemplateKey, options: bool) {
        let all_id = if options { 3 } else { 2 };
        let doomed: Vec<TemplateKey> = if key.id == all_id {
            self.templates
                .iter()
                .filter(|(k, e)| k.scope == key.scope && e.template.options == options)
                .map(|(k, _)| *k)
                .collect()
        } else {
            vec![key]
        };
        for k in doomed {
            if self.remove_template(k) {
                self.counters.templates_withdrawn += 1;
            }
        }
    }

    fn remove_template(&mut self, key: TemplateKey) -> bool {
        match self.templates.remove(&key) {
            Some(entry) => {
                self.lru.remove(&entry.lru_tick);
                true
            }
            None => false,
        }
    }

    fn insert_template(&mut self, key: TemplateKey, template: Template, recv_ns: u64) {
        self.remove_template(key);
        while self.templates.len() >= self.max_templates {
            let Some((_, oldest)) = self.lru.pop_first() else {
                break;
            };
            self.templates.remove(&oldest);
            self.counters.templates_evicted += 1;
        }
        let tick = self.tick();
        self.lru.insert(tick, key);
        self.templates.insert(
            key,
            TemplateEntry {
                template: Arc::new(template),
                last_used_ns: recv_ns,
                lru_tick: tick,
            },
        );
    }

    fn tick(&mut self) -> u64 {
        self.next_tick += 1;
        self.next_tick
    }

    /// The live template for `key`, marked used; an expired one is removed (counted).
    fn lookup(&mut self, key: TemplateKey, recv_ns: u64) -> Option<Arc<Template>> {
        let entry = self.templates.get(&key)?;
        if recv_ns.saturating_sub(entry.last_used_ns) > self.template_timeout_ns {
            self.remove_template(key);
            self.counters.templates_expired += 1;
            return None;
        }
        let tick = self.tick();
        let entry = self.templates.get_mut(&key)?;
        self.lru.remove(&entry.lru_tick);
        entry.lru_tick = tick;
        entry.last_used_ns = entry.last_used_ns.max(recv_ns);
        self.lru.insert(tick, key);
        Some(Arc::clone(&entry.template))
    }

    #[allow(clippy::too_many_arguments)]
    fn data_set(
        &mut self,
        scope: Scope,
        set_id: u16,
        time: HeaderTime,
        recv_ns: u64,
        body: &[u8],
        base: usize,
        out: &mut Vec<FlowRecord>,
    ) -> Result<(), ExportError> {
        let key = TemplateKey { scope, id: set_id };
        match self.lookup(key, recv_ns) {
            Some(template) => self.decode_records(scope, &template, time, body, base, out),
            None => {
                self.buffer_pending(PendingSet {
                    scope,
                    set_id,
                    base,
                    time,
                    recv_ns,
                    body: body.to_vec(),
                });
                Ok(())
            }
        }
    }

    fn buffer_pending(&mut self, set: PendingSet) {
        self.counters.sets_pending += 1;
        if self.max_pending_sets == 0
            || self.pending_bytes.saturating_add(set.cost()) > self.max_pending_bytes
        {
            self.counters.pending_dropped += 1;
            return;
        }
        let queue = self.pending.entry(set.scope.exporter).or_default();
        while queue.len() >= self.max_pending_sets {
            if let Some(dropped) = queue.pop_front() {
                self.pending_bytes = self.pending_bytes.saturating_sub(dropped.cost());
                self.counters.pending_dropped += 1;
                unwait(&mut self.waiting, &dropped);
            }
        }
        self.pending_bytes += set.cost();
        *self.waiting.entry(set.key()).or_insert(0) += 1;
        queue.push_back(set);
    }

    /// Decodes, in arrival order, the buffered data sets of `key`'s exporter that wait for it.
    fn decode_pending(
        &mut self,
        key: TemplateKey,
        recv_ns: u64,
        out: &mut Vec<FlowRecord>,
    ) -> Result<(), ExportError> {
        if self.waiting.remove(&key).is_none() {
            return Ok(());
        }
        let Some(queue) = self.pending.get_mut(&key.scope.exporter) else {
            return Ok(());
        };
        let mut ready = Vec::new();
        let mut kept = VecDeque::with_capacity(queue.len());
        for set in queue.drain(..) {
            if set.scope == key.scope && set.set_id == key.id {
                ready.push(set);
            } else {
                kept.push_back(set);
            }
        }
        if kept.is_empty() {
            self.pending.remove(&key.scope.exporter);
        } else {
            *queue = kept;
        }
        let mut first_error = None;
        for set in ready {
            self.pending_bytes = self.pending_bytes.saturating_sub(set.cost());
            if recv_ns.saturating_sub(set.recv_ns) > self.pending_timeout_ns {
                self.counters.pending_dropped += 1;
                continue;
            }
            let Some(template) = self.lookup(key, recv_ns) else {
                continue;
            };
            self.counters.pending_decoded += 1;
            if let Err(e) =
                self.decode_records(set.scope, &template, set.time, &set.body, set.base, out)
            {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Drops expired templates and pending sets, at most a few times per timeout.
    fn sweep(&mut self, recv_ns: u64) {
        if recv_ns < self.next_sweep_ns {
            return;
        }
        let period = (self.template_timeout_ns.min(self.pending_timeout_ns) / 4).max(1_000_000_000);
        self.next_sweep_ns = recv_ns.saturating_add(period);
        let expired: Vec<TemplateKey> = self
            .templates
            .iter()
            .filter(|(_, e)| recv_ns.saturating_sub(e.last_used_ns) > self.template_timeout_ns)
            .map(|(k, _)| *k)
            .collect();
        for key in expired {
            if self.remove_template(key) {
                self.counters.templates_expired += 1;
            }
        }
        let timeout = self.pending_timeout_ns;
        let mut dropped = 0u64;
        let mut freed = 0usize;
        let waiting = &mut self.waiting;
        self.pending.retain(|_, queue| {
            queue.retain(|set| {
                let keep = recv_ns.saturating_sub(set.recv_ns) <= timeout;
                if !keep {
                    dropped += 1;
                    freed += set.cost();
                    unwait(waiting, set);
                }
                keep
            });
            !queue.is_empty()
        });
        self.counters.pending_dropped += dropped;
        self.pending_bytes = self.pending_bytes.saturating_sub(freed);
    }

    fn decode_records(
        &mut self,
        scope: Scope,
        template: &Template,
        time: HeaderTime,
        body: &[u8],
        base: usize,
        out: &mut Vec<FlowRecord>,
    ) -> Result<(), ExportError> {
        // What a record does not say itself is the same for the whole set: looked up once.
        let defaults = SetDefaults {
            sampling: self.sampling_for(scope, None),
            system_init_ns: self.system_init.get(&scope).copied(),
        };
        let mut at = 0;
        // What is left after the last whole record is padding.
        while body.len().saturating_sub(at) >= template.min_record_len {
            let mut fields = RecordFields::default();
            match &template.fixed {
                Some(plan) => {
                    let record = body.get(at..at + template.min_record_len).unwrap_or(&[]);
                    for &(offset, len, slot) in plan {
                        if let Some(value) = record.get(offset..offset + len) {
                            fields.read(slot, value);
                        }
                    }
                    at += template.min_record_len;
                }
                None => {
                    for &(spec_len, slot) in &template.fields {
                        let truncated = |offset| ExportError::Truncated {
                            what: "data record",
                            offset: base + offset,
                        };
                        let len = if spec_len == VARIABLE_LENGTH {
                            let first = *body.get(at).ok_or(truncated(at))?;
                            at += 1;
                            if first == 255 {
                                let long = be16(body, at).ok_or(truncated(at))?;
                                at += 2;
                                usize::from(long)
                            } else {
                                usize::from(first)
                            }
                        } else {
                            usize::from(spec_len)
                        };
                        let value = body.get(at..at + len).ok_or(truncated(at))?;
                        at += len;
                        fields.read(slot, value);
                    }
                }
            }
            if template.options {
                self.counters.options_records += 1;
                self.learn_options(scope, &fields);
            } else {
                self.emit(scope, time, defaults, &fields, out);
            }
        }
        Ok(())
    }

    /// Keeps what an options record says about sampling and system init time.
    fn learn_options(&mut self, scope: Scope, fields: &RecordFields) {
        let interval = fields.sampling_interval();
        if let Some(interval) = interval {
            let key = (scope, fields.sampler_id);
            if self.samplers.len() < MAX_OPTIONS_STATE || self.samplers.contains_key(&key) {
                self.samplers.insert(key, interval);
            }
        }
        if let Some(init_ns) = fields.system_init_ns
            && (self.system_init.len() < MAX_OPTIONS_STATE || self.system_init.contains_key(&scope))
        {
            self.system_init.insert(scope, init_ns);
        }
    }

    fn override_for(&self, exporter: IpAddr) -> Option<u32> {
        self.sampling_overrides
            .iter()
            .find(|s| s.exporter == exporter)
            .map(|s| s.interval)
    }

    fn sampling_for(&self, scope: Scope, sampler_id: Option<u64>) -> u32 {
        if let Some(interval) = self.override_for(scope.exporter.ip()) {
            return interval.max(1);
        }
        sampler_id
            .and_then(|id| self.samplers.get(&(scope, Some(id))))
            .or_else(|| self.samplers.get(&(scope, None)))
            .copied()
            .unwrap_or(1)
            .max(1)
    }

    fn emit(
        &mut self,
        scope: Scope,
        time: HeaderTime,
        defaults: SetDefaults,
        fields: &RecordFields,
        out: &mut Vec<FlowRecord>,
    ) {
        let Some((src, dst)) = fields.addresses() else {
            self.counters.records_without_keys += 1;
            return;
        };
        let sampling = match fields.sampler_id {
            Some(id) => self.sampling_for(scope, Some(id)),
            None => defaults.sampling,
        };
        let scale = |v: Option<u64>| v.unwrap_or(0).saturating_mul(u64::from(sampling));
        let system_init = fields.system_init_ns.or(defaults.system_init_ns);
        let to_ns = |uptime: u32| match time.uptime_ms {
            Some(_) => uptime_to_ns(time, uptime),
            None => match system_init {
                Some(init) => init.saturating_add(u64::from(uptime) * 1_000_000),
                None => time.export_ns,
            },
        };
        let before_export = |us: u64| time.export_ns.saturating_sub(us.saturating_mul(1_000));
        let start = fields
            .start_ns
            .or(fields.start_uptime_ms.map(to_ns))
            .or(fields.start_delta_us.map(before_export));
        let end = fields
            .end_ns
            .or(fields.end_uptime_ms.map(to_ns))
            .or(fields.end_delta_us.map(before_export));
        let (start_ns, end_ns) = match (start, end) {
            (Some(s), Some(e)) => (s, e),
            (Some(t), None) | (None, Some(t)) => (t, t),
            (None, None) => (time.export_ns, time.export_ns),
        };
        out.push(FlowRecord {
            source: if scope.version == 10 {
                RecordSource::Ipfix
            } else {
                RecordSource::NetflowV9
            },
            exporter: scope.exporter.ip(),
            src,
            dst,
            src_port: fields.src_port.unwrap_or(0),
            dst_port: fields.dst_port.unwrap_or(0),
            proto: fields.proto.unwrap_or(0),
            octets: scale(fields.octets.or(fields.total_octets)),
            packets: scale(fields.packets.or(fields.total_packets)),
            rev_octets: scale(fields.rev_octets.or(fields.rev_total_octets)),
            rev_packets: scale(fields.rev_packets.or(fields.rev_total_packets)),
            start_ns,
            end_ns,
            tcp_flags: fields.tcp_flags,
            rev_tcp_flags: fields.rev_tcp_flags,
            sampling,
            end_reason: fields.end_reason,
        });
        self.counters.records += 1;
    }
}

/// v5/v9: sysUptime-relative ms to absolute ns. The difference is taken modulo 2^32 and read
/// as signed, so an uptime that wrapped, or a switched time just after the header's uptime,
/// still lands next to the export time.
fn uptime_to_ns(time: HeaderTime, switched_ms: u32) -> u64 {
    let uptime = time.uptime_ms.unwrap_or(switched_ms);
    let ago_ms = i64::from(uptime.wrapping_sub(switched_ms) as i32);
    let ns = i128::from(time.export_ns) - i128::from(ago_ms) * 1_000_000;
    u64::try_from(ns.max(0)).unwrap_or(u64::MAX)
}

/// What a data set's records share unless they say otherwise.
#[derive(Debug, Clone, Copy)]
struct SetDefaults {
    /// The scope's default sampling interval (or the configured override).
    sampling: u32,
    /// The scope's systemInitTimeMilliseconds from options data, ns since the Unix epoch.
    system_init_ns: Option<u64>,
}

/// Where a template field's value goes in [`RecordFields`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Skip,
    Octets,
    Packets,
    TotalOctets,
    TotalPackets,
    RevOctets,
    RevPackets,
    RevTotalOctets,
    RevTotalPackets,
    Proto,
    TcpFlags,
    RevTcpFlags,
    SrcPort,
    DstPort,
    Src4,
    Dst4,
    Src6,
    Dst6,
    EndUptime,
    StartUptime,
    StartSecs,
    EndSecs,
    StartMillis,
    EndMillis,
    StartNtp,
    EndNtp,
    SystemInitMillis,
    StartDeltaMicros,
    EndDeltaMicros,
    EndReason,
    SamplerId,
    SamplingInterval,
    PacketInterval,
    PacketSpace,
}

impl Slot {
    /// The slot of an information element (IANA, or RFC 5103 reverse).
    fn of(spec: &FieldSpec) -> Slot {
        if spec.pen == REVERSE_PEN {
            return match spec.id {
                1 => Slot::RevOctets,
                2 => Slot::RevPackets,
                85 => Slot::RevTotalOctets,
                86 => Slot::RevTotalPackets,
                6 => Slot::RevTcpFlags,
                _ => Slot::Skip,
            };
        }
        if spec.pen != 0 {
            return Slot::Skip;
        }
        match spec.id {
            1 => Slot::Octets,
            2 => Slot::Packets,
            85 => Slot::TotalOctets,
            86 => Slot::TotalPackets,
            4 => Slot::Proto,
            6 => Slot::TcpFlags,
            7 => Slot::SrcPort,
            11 => Slot::DstPort,
            8 => Slot::Src4,
            12 => Slot::Dst4,
            27 => Slot::Src6,
            28 => Slot::Dst6,
            21 => Slot::EndUptime,
            22 => Slot::StartUptime,
            150 => Slot::StartSecs,
            151 => Slot::EndSecs,
            152 => Slot::StartMillis,
            153 => Slot::EndMillis,
            154 | 156 => Slot::StartNtp,
            155 | 157 => Slot::EndNtp,
            160 => Slot::SystemInitMillis,
            158 => Slot::StartDeltaMicros,
            159 => Slot::EndDeltaMicros,
            136 => Slot::EndReason,
            // samplerId (v9 FLOW_SAMPLER_ID) or selectorId: which sampler a record used.
            48 | 302 => Slot::SamplerId,
            34 | 50 => Slot::SamplingInterval,
            305 => Slot::PacketInterval,
            306 => Slot::PacketSpace,
            _ => Slot::Skip,
        }
    }
}

/// The elements of one data record this decoder uses; the first occurrence of each wins.
#[derive(Debug, Default)]
struct RecordFields {
    src4: Option<Ipv4Addr>,
    dst4: Option<Ipv4Addr>,
    src6: Option<Ipv6Addr>,
    dst6: Option<Ipv6Addr>,
    /// Whether the first specified address in the record was IPv6.
    v6_first: Option<bool>,
    src_port: Option<u16>,
    dst_port: Option<u16>,
    proto: Option<u8>,
    octets: Option<u64>,
    packets: Option<u64>,
    total_octets: Option<u64>,
    total_packets: Option<u64>,
    rev_octets: Option<u64>,
    rev_packets: Option<u64>,
    rev_total_octets: Option<u64>,
    rev_total_packets: Option<u64>,
    tcp_flags: Option<u8>,
    rev_tcp_flags: Option<u8>,
    start_ns: Option<u64>,
    end_ns: Option<u64>,
    start_uptime_ms: Option<u32>,
    end_uptime_ms: Option<u32>,
    system_init_ns: Option<u64>,
    /// flowStart/EndDeltaMicroseconds: how long before the export time.
    start_delta_us: Option<u64>,
    end_delta_us: Option<u64>,
    end_reason: Option<u8>,
    sampler_id: Option<u64>,
    sampling_interval: Option<u64>,
    packet_interval: Option<u64>,
    packet_space: Option<u64>,
}

fn set_once<T>(slot: &mut Option<T>, value: Option<T>) {
    if slot.is_none() {
        *slot = value;
    }
}

impl RecordFields {
    #[inline(always)]
    fn read(&mut self, slot: Slot, value: &[u8]) {
        let number = read_unsigned(value);
        match slot {
            Slot::Skip => {}
            Slot::Octets => set_once(&mut self.octets, number),
            Slot::Packets => set_once(&mut self.packets, number),
            Slot::TotalOctets => set_once(&mut self.total_octets, number),
            Slot::TotalPackets => set_once(&mut self.total_packets, number),
            Slot::RevOctets => set_once(&mut self.rev_octets, number),
            Slot::RevPackets => set_once(&mut self.rev_packets, number),
            Slot::RevTotalOctets => set_once(&mut self.rev_total_octets, number),
            Slot::RevTotalPackets => set_once(&mut self.rev_total_packets, number),
            Slot::Proto => set_once(&mut self.proto, number.map(|n| n as u8)),
            // tcpControlBits may be 2 bytes in IPFIX: the flags are the low 8 bits.
            Slot::TcpFlags => set_once(&mut self.tcp_flags, number.map(|n| n as u8)),
            Slot::RevTcpFlags => set_once(&mut self.rev_tcp_flags, number.map(|n| n as u8)),
            Slot::SrcPort => set_once(&mut self.src_port, number.map(|n| n as u16)),
            Slot::DstPort => set_once(&mut self.dst_port, number.map(|n| n as u16)),
            Slot::Src4 | Slot::Dst4 => {
                if let Ok(octets) = <[u8; 4]>::try_from(value) {
                    let addr = Ipv4Addr::from(octets);
                    if !addr.is_unspecified() && self.v6_first.is_none() {
                        self.v6_first = Some(false);
                    }
                    let slot = if slot == Slot::Src4 {
                        &mut self.src4
                    } else {
                        &mut self.dst4
                    };
                    set_once(slot, Some(addr));
                }
            }
            Slot::Src6 | Slot::Dst6 => {
                if let Ok(octets) = <[u8; 16]>::try_from(value) {
                    let addr = Ipv6Addr::from(octets);
                    if !addr.is_unspecified() && self.v6_first.is_none() {
                        self.v6_first = Some(true);
                    }
                    let slot = if slot == Slot::Src6 {
                        &mut self.src6
                    } else {
                        &mut self.dst6
                    };
                    set_once(slot, Some(addr));
                }
            }
            Slot::EndUptime => set_once(&mut self.end_uptime_ms, number.map(|n| n as u32)),
            Slot::StartUptime => set_once(&mut self.start_uptime_ms, number.map(|n| n as u32)),
            Slot::StartSecs => set_once(
                &mut self.start_ns,
                number.map(|s| s.saturating_mul(1_000_000_000)),
            ),
            Slot::EndSecs => set_once(
                &mut self.end_ns,
                number.map(|s| s.saturating_mul(1_000_000_000)),
            ),
            Slot::StartMillis => set_once(
                &mut self.start_ns,
                number.map(|ms| ms.saturating_mul(1_000_000)),
            ),
            Slot::EndMillis => set_once(
                &mut self.end_ns,
                number.map(|ms| ms.saturating_mul(1_000_000)),
            ),
            Slot::StartNtp => set_once(&mut self.start_ns, ntp_to_ns(value)),
            Slot::EndNtp => set_once(&mut self.end_ns, ntp_to_ns(value)),
            Slot::SystemInitMillis => set_once(
                &mut self.system_init_ns,
                number.map(|ms| ms.saturating_mul(1_000_000)),
            ),
            Slot::StartDeltaMicros => set_once(&mut self.start_delta_us, number),
            Slot::EndDeltaMicros => set_once(&mut self.end_delta_us, number),
            Slot::EndReason => set_once(&mut self.end_reason, number.map(|n| n as u8)),
            Slot::SamplerId => set_once(&mut self.sampler_id, number),
            Slot::SamplingInterval => set_once(&mut self.sampling_interval, number),
            Slot::PacketInterval => set_once(&mut self.packet_interval, number),
            Slot::PacketSpace => set_once(&mut self.packet_space, number),
        }
    }

    /// 1-in-N from samplingInterval / samplerRandomInterval, or from
    /// samplingPacketInterval + samplingPacketSpace (N = (interval + space) / interval).
    fn sampling_interval(&self) -> Option<u32> {
        let interval = match (self.sampling_interval, self.packet_interval) {
            (Some(n), _) => n,
            (None, Some(taken)) if taken > 0 => {
                taken.saturating_add(self.packet_space.unwrap_or(0)) / taken
            }
            _ => return None,
        };
        Some(u32::try_from(interval).unwrap_or(u32::MAX).max(1))
    }

    /// Source and destination: one family, the specified one, else the first in the record.
    fn addresses(&self) -> Option<(IpAddr, IpAddr)> {
        let v4 = match (self.src4, self.dst4) {
            (Some(s), Some(d)) => Some((IpAddr::V4(s), IpAddr::V4(d))),
            _ => None,
        };
        let v6 = match (self.src6, self.dst6) {
            (Some(s), Some(d)) => Some((IpAddr::V6(s), IpAddr::V6(d))),
            _ => None,
        };
        let specified =
            |pair: &(IpAddr, IpAddr)| !pair.0.is_unspecified() || !pair.1.is_unspecified();
        match (v4, v6) {
            (Some(a), Some(b)) => match (specified(&a), specified(&b)) {
                (true, false) => Some(a),
                (false, true) => Some(b),
                _ if self.v6_first == Some(true) => Some(b),
                _ => Some(a),
            },
            (a, b) => a.or(b),
        }
    }
}

/// An unsigned integer in network order of 1..=8 bytes (RFC 7011 reduced-size encoding).
fn read_unsigned(value: &[u8]) -> Option<u64> {
    // The usual widths in one load each.
    match *value {
        [a] => Some(u64::from(a)),
        [a, b] => Some(u64::from(u16::from_be_bytes([a, b]))),
        [a, b, c, d] => Some(u64::from(u32::from_be_bytes([a, b, c, d]))),
        [a, b, c, d, e, f, g, h] => Some(u64::from_be_bytes([a, b, c, d, e, f, g, h])),
        _ if value.is_empty() || value.len() > 8 => None,
        _ => Some(value.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b))),
    }
}

/// dateTimeMicroseconds / dateTimeNanoseconds: NTP seconds since 1900 and a 2^-32 fraction.
fn ntp_to_ns(value: &[u8]) -> Option<u64> {
    let raw = u64::from_be_bytes(<[u8; 8]>::try_from(value).ok()?);
    let seconds = (raw >> 32).checked_sub(NTP_UNIX_OFFSET)?;
    let fraction_ns = ((raw & 0xffff_ffff) * 1_000_000_000) >> 32;
    Some(seconds * 1_000_000_000 + fraction_ns)
}

type TemplateParse = Result<(u16, Option<Template>, usize), (&'static str, usize, String)>;

/// One v9 template (flowset 0) or options template (flowset 1) record at the start of
/// `rest`: its id, the template, and the bytes it used.
fn parse_v9_template(rest: &[u8], options: bool) -> TemplateParse {
    let id = be16(rest, 0).unwrap_or(0);
    if id < 256 {
        return Err(("template id", 0, format!("{id} < 256")));
    }
    let (scope_count, field_count, mut at) = if options {
        let scope_len = usize::from(be16(rest, 2).ok_or(("options template", 2, "cut".into()))?);
        let option_len = usize::from(be16(rest, 4).ok_or(("options template", 4, "cut".into()))?);
        if scope_len % 4 != 0 || option_len % 4 != 0 {
            return Err((
                "options template lengths",
                2,
                format!("scope {scope_len}, options {option_len}"),
            ));
        }
        (scope_len / 4, (scope_len + option_len) / 4, 6)
    } else {
        (0, usize::from(be16(rest, 2).unwrap_or(0)), 4)
    };
    if field_count == 0 {
        return Err(("template field count", 2, "0 (v9 has no withdrawal)".into()));
    }
    let mut fields = Vec::with_capacity(field_count.min(rest.len() / 4));
    for _ in 0..field_count {
        let (Some(field_id), Some(len)) = (be16(rest, at), be16(rest, at + 2)) else {
            return Err(("template field", at, "cut".into()));
        };
        fields.push(FieldSpec {
            id: field_id,
            len,
            pen: 0,
        });
        at += 4;
    }
    // Padding after options template records comes at the end of the flowset only.
    let template =
        build_template(fields, scope_count, options, false).map_err(|d| ("template", 0, d))?;
    Ok((id, Some(template), at))
}

/// One IPFIX template (set 2) or options template (set 3) record; `None` for a withdrawal.
fn parse_ipfix_template(rest: &[u8], options: bool) -> TemplateParse {
    let id = be16(rest, 0).unwrap_or(0);
    let field_count = usize::from(be16(rest, 2).unwrap_or(0));
    let withdraw_all_id = if options { 3 } else { 2 };
    if field_count == 0 {
        if id < 256 && id != withdraw_all_id {
            return Err(("template withdrawal id", 0, id.to_string()));
        }
        return Ok((id, None, 4));
    }
    if id < 256 {
        return Err(("template id", 0, format!("{id} < 256")));
    }
    let (scope_count, mut at) = if options {
        let scope = usize::from(be16(rest, 4).ok_or(("options template", 4, "cut".into()))?);
        if scope == 0 || scope > field_count {
            return Err((
                "scope field count",
                4,
                format!("{scope} of {field_count} fields"),
            ));
        }
        (scope, 6)
    } else {
        (0, 4)
    };
    let mut fields = Vec::with_capacity(field_count.min(rest.len() / 4));
    for _ in 0..field_count {
        let (Some(raw_id), Some(len)) = (be16(rest, at), be16(rest, at + 2)) else {
            return Err(("field specifier", at, "cut".into()));
        };
        at += 4;
        let pen = if raw_id & 0x8000 != 0 {
            let pen = be32(rest, at).ok_or(("enterprise number", at, "cut".to_string()))?;
            at += 4;
            pen
        } else {
            0
        };
        fields.push(FieldSpec {
            id: raw_id & 0x7fff,
            len,
            pen,
        });
    }
    let template =
        build_template(fields, scope_count, options, true).map_err(|d| ("template", 0, d))?;
    Ok((id, Some(template), at))
}

/// `scope_fields` leading fields are an options template's scope; as NetFlow v9 scope field
/// types (system, interface, ...) are not information elements, `read_scope` is false there.
fn build_template(
    fields: Vec<FieldSpec>,
    scope_fields: usize,
    options: bool,
    read_scope: bool,
) -> Result<Template, String> {
    let min_record_len: usize = fields
        .iter()
        .map(|f| {
            if f.len == VARIABLE_LENGTH {
                1
            } else {
                usize::from(f.len)
            }
        })
        .sum();
    // A zero-length record would never advance through a data set.
    if min_record_len == 0 {
        return Err("records of zero length".into());
    }
    let fields: Vec<(u16, Slot)> = fields
        .iter()
        .enumerate()
        .map(|(index, spec)| {
            let slot = if read_scope || index >= scope_fields {
                Slot::of(spec)
            } else {
                Slot::Skip
            };
            (spec.len, slot)
        })
        .collect();
    let fixed = (!fields.iter().any(|&(len, _)| len == VARIABLE_LENGTH)).then(|| {
        let mut offset = 0;
        let mut plan = Vec::new();
        for &(len, slot) in &fields {
            if slot != Slot::Skip {
                plan.push((offset, usize::from(len), slot));
            }
            offset += usize::from(len);
        }
        plan
    });
    Ok(Template {
        fields,
        options,
        min_record_len,
        fixed,
    })
}

fn be16(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*data.get(at)?, *data.get(at + 1)?]))
}

fn be32(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

/// Whether sets (each `id`, `length >= 4`) chain from `start` exactly to the end of `data`.
/// `trailing_padding`: up to 3 zero bytes may follow the last set (NetFlow v9 exporters pad).
fn sets_chain(data: &[u8], start: usize, ipfix: bool, trailing_padding: bool) -> bool {
    let mut at = start;
    let mut sets = 0;
    while at < data.len() {
        let rest = data.get(at..).unwrap_or(&[]);
        if rest.len() < 4 {
            return trailing_padding && sets > 0 && rest.iter().all(|&b| b == 0);
        }
        let id = be16(data, at).unwrap_or(0);
        let len = usize::from(be16(data, at + 2).unwrap_or(0));
        let id_ok = if ipfix {
            id == 2 || id == 3 || id >= 256
        } else {
            id <= 1 || id >= 256
        };
        if !id_ok || len < 4 || len > rest.len() {
            return false;
        }
        at += len;
        sets += 1;
    }
    sets > 0
}

/// The version (5, 9 or 10) when the datagram's header and lengths are consistent.
pub fn looks_like_netflow(datagram: &[u8]) -> Option<u16> {
    match be16(datagram, 0)? {
        5 => {
            let count = usize::from(be16(datagram, 2)?);
            ((1..=30).contains(&count) && datagram.len() == 24 + 48 * count).then_some(5)
        }
        9 => {
            let count = be16(datagram, 2)?;
            (datagram.len() > 20 && count > 0 && sets_chain(datagram, 20, false, true)).then_some(9)
        }
        10 => {
            let length = usize::from(be16(datagram, 2)?);
            (length == datagram.len() && length > 16 && sets_chain(datagram, 16, true, false))
                .then_some(10)
        }
        _ => None,
    }
}

/// A NetFlow v5 datagram for tests: exported at 1 700 000 000.5 s with uptime 60 s; record i
/// is 10.0.0.i -> 10.0.1.1 TCP, 3 packets, 1500 octets, uptime 50 s to 59 s.
#[cfg(test)]
pub(crate) fn v5_datagram(sampling_field: u16, count: u16) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&5u16.to_be_bytes());
    m.extend_from_slice(&count.to_be_bytes());
    m.extend_from_slice(&60_000u32.to_be_bytes()); // uptime ms
    m.extend_from_slice(&1_700_000_000u32.to_be_bytes());
    m.extend_from_slice(&500_000_000u32.to_be_bytes());
    m.extend_from_slice(&[0; 6]);
    m.extend_from_slice(&sampling_field.to_be_bytes());
    for i in 0..count {
        let mut r = vec![0u8; 48];
        r[..4].copy_from_slice(&[10, 0, 0, i as u8]);
        r[4..8].copy_from_slice(&[10, 0, 1, 1]);
        r[16..20].copy_from_slice(&3u32.to_be_bytes());
        r[20..24].copy_from_slice(&1500u32.to_be_bytes());
        r[24..28].copy_from_slice(&50_000u32.to_be_bytes());
        r[28..32].copy_from_slice(&59_000u32.to_be_bytes());
        r[37] = 0x1b;
        r[38] = 6;
        m.extend_from_slice(&r);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    const SEC: u64 = 1_000_000_000;
    const T0: u64 = 1_700_000_000 * SEC;

    fn exporter() -> Exporter {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 2055)
    }

    fn set(id: u16, body: &[u8]) -> Vec<u8> {
        let mut s = Vec::new();
        s.extend_from_slice(&id.to_be_bytes());
        s.extend_from_slice(&((body.len() + 4) as u16).to_be_bytes());
        s.extend_from_slice(body);
        s
    }

    fn ipfix(domain: u32, export_secs: u32, sets: &[Vec<u8>]) -> Vec<u8> {
        let body: Vec<u8> = sets.concat();
        let mut m = Vec::new();
        m.extend_from_slice(&10u16.to_be_bytes());
        m.extend_from_slice(&((body.len() + 16) as u16).to_be_bytes());
        m.extend_from_slice(&export_secs.to_be_bytes());
        m.extend_from_slice(&7u32.to_be_bytes());
        m.extend_from_slice(&domain.to_be_bytes());
        m.extend_from_slice(&body);
        m
    }

    fn v9(uptime_ms: u32, unix_secs: u32, source_id: u32, sets: &[Vec<u8>]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&9u16.to_be_bytes());
        m.extend_from_slice(&(sets.len() as u16).to_be_bytes());
        m.extend_from_slice(&uptime_ms.to_be_bytes());
        m.extend_from_slice(&unix_secs.to_be_bytes());
        m.extend_from_slice(&1u32.to_be_bytes());
        m.extend_from_slice(&source_id.to_be_bytes());
        m.extend_from_slice(&sets.concat());
        m
    }

    /// A template record: id, then (element id, length, enterprise number or 0).
    fn template(id: u16, fields: &[(u16, u16, u32)]) -> Vec<u8> {
        let mut t = Vec::new();
        t.extend_from_slice(&id.to_be_bytes());
        t.extend_from_slice(&(fields.len() as u16).to_be_bytes());
        for &(fid, len, pen) in fields {
            let e = if pen != 0 { 0x8000 } else { 0 };
            t.extend_from_slice(&(fid | e).to_be_bytes());
            t.extend_from_slice(&len.to_be_bytes());
            if pen != 0 {
                t.extend_from_slice(&pen.to_be_bytes());
            }
        }
        t
    }

    /// Template 256: src, dst (IPv4), ports, protocol, octets, packets.
    const FLOW_FIELDS: &[(u16, u16, u32)] = &[
        (8, 4, 0),
        (12, 4, 0),
        (7, 2, 0),
        (11, 2, 0),
        (4, 1, 0),
        (1, 4, 0),
        (2, 4, 0),
    ];

    fn flow_record(last_octet: u8, octets: u32, packets: u32) -> Vec<u8> {
        let mut r = vec![10, 0, 0, last_octet, 10, 0, 1, 1];
        r.extend_from_slice(&1234u16.to_be_bytes());
        r.extend_from_slice(&443u16.to_be_bytes());
        r.push(6);
        r.extend_from_slice(&octets.to_be_bytes());
        r.extend_from_slice(&packets.to_be_bytes());
        r
    }

    fn decoder_with(f: impl FnOnce(&mut ExportConfig)) -> NetflowDecoder {
        let mut config = ExportConfig::default();
        f(&mut config);
        NetflowDecoder::new(&config)
    }

    fn run(d: &mut NetflowDecoder, at: u64, datagram: &[u8]) -> Vec<FlowRecord> {
        let mut out = Vec::new();
        d.decode(exporter(), at, datagram, &mut out)
            .expect("decodes");
        out
    }

    #[test]
    fn ipfix_withdrawal_single_and_all() {
        let mut d = decoder_with(|_| {});
        let templates = set(
            2,
            &[template(256, FLOW_FIELDS), template(257, FLOW_FIELDS)].concat(),
        );
        let options = set(3, &[1, 2, 0, 2, 0, 1, 0, 149, 0, 4, 0, 34, 0, 4]);
        run(&mut d, T0, &ipfix(1, 1, &[templates, options]));
        assert_eq!(d.template_count(), 3);
        let data = |id| set(id, &flow_record(1, 100, 1));
        assert_eq!(run(&mut d, T0, &ipfix(1, 1, &[data(256)])).len(), 1);

        // Withdraw 256 alone: its data now waits; 257 still decodes.
        run(&mut d, T0, &ipfix(1, 1, &[set(2, &[1, 0, 0, 0])]));
        assert_eq!(d.counters.templates_withdrawn, 1);
        assert!(run(&mut d, T0, &ipfix(1, 1, &[data(256)])).is_empty());
        assert_eq!(d.counters.sets_pending, 1);
        assert_eq!(run(&mut d, T0, &ipfix(1, 1, &[data(257)])).len(), 1);

        // Withdraw all data templates (id 2): the options template stays.
        run(&mut d, T0, &ipfix(1, 1, &[set(2, &[0, 2, 0, 0])]));
        assert_eq!(d.counters.templates_withdrawn, 2);
        assert_eq!(d.template_count(), 1);
        // Withdraw all options templates (id 3).
        run(&mut d, T0, &ipfix(1, 1, &[set(3, &[0, 3, 0, 0])]));
        assert_eq!(d.template_count(), 0);
        assert_eq!(d.counters.templates_withdrawn, 3);
    }

    #[test]
    fn templates_are_scoped_per_exporter_and_domain() {
        let mut d = decoder_with(|_| {});
        run(
            &mut d,
            T0,
            &ipfix(1, 1, &[set(2, &template(256, FLOW_FIELDS))]),
        );
        let data = set(256, &flow_record(1, 100, 1));
        // Same exporter, other domain: no template.
        assert!(run(&mut d, T0, &ipfix(2, 1, std::slice::from_ref(&data))).is_empty());
        // Other exporter, same domain: no template.
        let other = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)), 2055);
        let mut out = Vec::new();
        d.decode(
            other,
            T0,
            &ipfix(1, 1, std::slice::from_ref(&data)),
            &mut out,
        )
        .unwrap();
        assert!(out.is_empty());
        assert_eq!(d.counters.sets_pending, 2);
        assert_eq!(run(&mut d, T0, &ipfix(1, 1, &[data])).len(), 1);
    }

    #[test]
    fn pending_sets_are_bounded_per_exporter_and_decoded_when_the_template_arrives() {
        let mut d = decoder_with(|c| c.max_pending_sets = 2);
        for i in 1..=3 {
            run(
                &mut d,
                T0,
                &ipfix(1, 1, &[set(256, &flow_record(i, 100, 1))]),
            );
        }
        assert_eq!(d.counters.sets_pending, 3);
        assert_eq!(d.counters.pending_dropped, 1);
        assert_eq!(d.pending_count(), 2);
        let out = run(
            &mut d,
            T0 + SEC,
            &ipfix(1, 1, &[set(2, &template(256, FLOW_FIELDS))]),
        );
        // The oldest was dropped; the two newest decode in arrival order.
        let sources: Vec<IpAddr> = out.iter().map(|r| r.src).collect();
        assert_eq!(
            sources,
            [Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 3)].map(IpAddr::V4)
        );
        assert_eq!(d.counters.pending_decoded, 2);
        assert_eq!(d.pending_count(), 0);
    }

    /// Empty data sets for unknown templates from many exporters (spoofed source ports) cost
    /// memory without body bytes: the byte bound still holds them, and drops are counted.
    #[test]
    fn empty_pending_sets_from_many_exporters_are_bounded_in_bytes() {
        let mut d = decoder_with(|c| c.max_pending_bytes = 100 * PENDING_SET_OVERHEAD);
        let empty = ipfix(1, 1, &[set(256, &[])]);
        let mut out = Vec::new();
        for port in 1..=1000u16 {
            let from = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), port);
            d.decode(from, T0, &empty, &mut out).expect("decodes");
        }
        assert_eq!(d.counters.sets_pending, 1000);
        assert_eq!(d.pending_count(), 100);
        assert_eq!(d.counters.pending_dropped, 900);
        // The charge covers what a pending set really holds.
        let held = std::mem::size_of::<PendingSet>()
            + std::mem::size_of::<(Exporter, VecDeque<PendingSet>)>();
        assert!(held <= PENDING_SET_OVERHEAD, "{held}");
    }

    #[test]
    fn pending_sets_time_out() {
        let mut d = decoder_with(|c| c.pending_timeout_seconds = 10);
        run(
            &mut d,
            T0,
            &ipfix(1, 1, &[set(256, &flow_record(1, 100, 1))]),
        );
        let late = T0 + 11 * SEC;
        let out = run(
            &mut d,
            late,
            &ipfix(1, 1, &[set(2, &template(256, FLOW_FIELDS))]),
        );
        assert!(out.is_empty());
        assert_eq!(d.counters.pending_dropped, 1);
        assert_eq!(d.counters.pending_decoded, 0);
        assert_eq!(d.pending_count(), 0);
    }

    #[test]
    fn data_set_before_its_template_in_the_same_datagram() {
        let mut d = decoder_with(|_| {});
        let message = ipfix(
            1,
            1,
            &[
                set(256, &flow_record(1, 100, 1)),
                set(2, &template(256, FLOW_FIELDS)),
                set(256, &flow_record(2, 200, 2)),
            ],
        );
        let out = run(&mut d, T0, &message);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].octets, 100);
        assert_eq!(out[1].octets, 200);
        assert_eq!(d.counters.pending_decoded, 1);
    }

    #[test]
    fn templates_expire_unused() {
        let mut d = decoder_with(|c| c.template_timeout_seconds = 60);
        run(
            &mut d,
            T0,
            &ipfix(1, 1, &[set(2, &template(256, FLOW_FIELDS))]),
        );
        let data = ipfix(1, 1, &[set(256, &flow_record(1, 100, 1))]);
        // Use keeps it alive.
        assert_eq!(run(&mut d, T0 + 50 * SEC, &data).len(), 1);
        assert_eq!(run(&mut d, T0 + 100 * SEC, &data).len(), 1);
        assert!(run(&mut d, T0 + 161 * SEC, &data).is_empty());
        assert_eq!(d.counters.templates_expired, 1);
        assert_eq!(d.template_count(), 0);
        assert_eq!(d.counters.sets_pending, 1);
    }

    #[test]
    fn template_bound_evicts_the_least_recently_used() {
        let mut d = decoder_with(|c| c.max_templates = 2);
        for id in [256u16, 257] {
            run(
                &mut d,
                T0,
                &ipfix(1, 1, &[set(2, &template(id, FLOW_FIELDS))]),
            );
        }
        // Using 256 makes 257 the least recently used.
        assert_eq!(
            run(&mut d, T0, &ipfix(1, 1, &[set(256, &flow_record(1, 1, 1))])).len(),
            1
        );
        run(
            &mut d,
            T0,
            &ipfix(1, 1, &[set(2, &template(258, FLOW_FIELDS))]),
        );
        assert_eq!(d.counters.templates_evicted, 1);
        assert_eq!(d.template_count(), 2);
        assert!(run(&mut d, T0, &ipfix(1, 1, &[set(257, &flow_record(1, 1, 1))])).is_empty());
        assert_eq!(
            run(&mut d, T0, &ipfix(1, 1, &[set(256, &flow_record(1, 1, 1))])).len(),
            1
        );
    }

    #[test]
    fn enterprise_and_variable_length_fields_are_skipped() {
        let fields = [
            (8, 4, 0),
            (12345, 4, 9),            // Cisco enterprise element
            (82, VARIABLE_LENGTH, 0), // interfaceName, short form
            (12, 4, 0),
            (94, VARIABLE_LENGTH, 0), // applicationDescription, long form
            (1, 8, 0),
            (1, 4, REVERSE_PEN), // reverseOctetDeltaCount
            (6, 2, 0),           // tcpControlBits in 2 bytes
            (6, 1, REVERSE_PEN),
            (2, 4, 0),
        ];
        let mut record = vec![10, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef, 3, b'e', b't', b'h'];
        record.extend_from_slice(&[10, 0, 1, 1]);
        record.push(255);
        record.extend_from_slice(&300u16.to_be_bytes());
        record.extend_from_slice(&[b'x'; 300]);
        record.extend_from_slice(&5_000_000_000u64.to_be_bytes());
        record.extend_from_slice(&777u32.to_be_bytes());
        record.extend_from_slice(&[0x01, 0x12]); // high byte: NS/ECN bits, low: ACK|SYN
        record.push(0x10);
        record.extend_from_slice(&9u32.to_be_bytes());
        let mut d = decoder_with(|_| {});
        let out = run(
            &mut d,
            T0,
            &ipfix(1, 1, &[set(2, &template(300, &fields)), set(300, &record)]),
        );
        assert_eq!(out.len(), 1);
        let r = &out[0];
        assert_eq!(r.src, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(r.dst, IpAddr::V4(Ipv4Addr::new(10, 0, 1, 1)));
        assert_eq!((r.octets, r.packets, r.rev_octets), (5_000_000_000, 9, 777));
        assert_eq!((r.tcp_flags, r.rev_tcp_flags), (Some(0x12), Some(0x10)));
        // No time field: the header's export time.
        assert_eq!((r.start_ns, r.end_ns), (SEC, SEC));
    }

    #[test]
    fn reduced_size_counters() {
        let fields = [(8, 4, 0), (12, 4, 0), (1, 3, 0), (2, 1, 0), (85, 8, 0)];
        let mut record = vec![10, 0, 0, 1, 10, 0, 0, 2];
        record.extend_from_slice(&[0x01, 0x02, 0x03, 0x05]);
        record.extend_from_slice(&u64::MAX.to_be_bytes());
        let mut d = decoder_with(|_| {});
        let out = run(
            &mut d,
            T0,
            &ipfix(1, 1, &[set(2, &template(256, &fields)), set(256, &record)]),
        );
        assert_eq!((out[0].octets, out[0].packets), (0x010203, 5));
        // Total counts only when the delta is absent.
        let fields = [(8, 4, 0), (12, 4, 0), (85, 2, 0), (86, 5, 0)];
        let mut record = vec![10, 0, 0, 1, 10, 0, 0, 2, 0x12, 0x34];
        record.extend_from_slice(&[1, 0, 0, 0, 0]);
        let out = run(
            &mut d,
            T0,
            &ipfix(1, 1, &[set(2, &template(257, &fields)), set(257, &record)]),
        );
        assert_eq!((out[0].octets, out[0].packets), (0x1234, 1 << 32));
    }

    #[test]
    fn ipfix_times_absolute_delta_and_system_init() {
        let mut d = decoder_with(|_| {});
        // flowStartMilliseconds, flowEndDeltaMicroseconds.
        let fields = [(8, 4, 0), (12, 4, 0), (152, 8, 0), (159, 4, 0)];
        let mut record = vec![10, 0, 0, 1, 10, 0, 0, 2];
        record.extend_from_slice(&1_000_000_500u64.to_be_bytes());
        record.extend_from_slice(&2_500_000u32.to_be_bytes());
        let out = run(
            &mut d,
            T0,
            &ipfix(
                1,
                1_000_010,
                &[set(2, &template(256, &fields)), set(256, &record)],
            ),
        );
        assert_eq!(out[0].start_ns, 1_000_000_500 * 1_000_000);
        assert_eq!(out[0].end_ns, 1_000_010 * SEC - 2_500_000_000);
        // flowStart/EndSysUpTime against systemInitTimeMilliseconds from options data.
        let options_template = [&[1u8, 1, 0, 2, 0, 1][..], &[0, 149, 0, 4, 0, 160, 0, 8]].concat();
        let options_data = [&1u32.to_be_bytes()[..], &1_600_000_000_000u64.to_be_bytes()].concat();
        let fields = [(8, 4, 0), (12, 4, 0), (22, 4, 0), (21, 4, 0)];
        let mut record = vec![10, 0, 0, 1, 10, 0, 0, 2];
        record.extend_from_slice(&5_000u32.to_be_bytes());
        record.extend_from_slice(&7_000u32.to_be_bytes());
        let out = run(
            &mut d,
            T0,
            &ipfix(
                1,
                1,
                &[
                    set(3, &options_template),
                    set(257, &options_data),
                    set(2, &template(258, &fields)),
                    set(258, &record),
                ],
            ),
        );
        assert_eq!(out[0].start_ns, 1_600_000_005_000 * 1_000_000);
        assert_eq!(out[0].end_ns, 1_600_000_007_000 * 1_000_000);
    }

    #[test]
    fn options_sampling_per_domain_and_config_override() {
        // IPFIX options: scope observationDomainId, samplingPacketInterval 1,
        // samplingPacketSpace 99 -> 1 in 100.
        let options_template = [
            &[1u8, 0, 0, 3, 0, 1][..],
            &[0, 149, 0, 4, 0x01, 0x31, 0, 4, 0x01, 0x32, 0, 4],
        ]
        .concat();
        let options_data = [1u32.to_be_bytes(), 1u32.to_be_bytes(), 99u32.to_be_bytes()].concat();
        let flows = |domain| {
            ipfix(
                domain,
                1,
                &[
                    set(2, &template(256, FLOW_FIELDS)),
                    set(256, &flow_record(1, 1000, 3)),
                ],
            )
        };
        let mut d = decoder_with(|_| {});
        run(
            &mut d,
            T0,
            &ipfix(1, 1, &[set(3, &options_template), set(256, &options_data)]),
        );
        assert_eq!(d.counters.options_records, 1);
        let sampled = run(&mut d, T0, &flows(1));
        assert_eq!(
            (sampled[0].octets, sampled[0].packets, sampled[0].sampling),
            (100_000, 300, 100)
        );
        // Another domain of the same exporter is unsampled.
        assert_eq!(run(&mut d, T0, &flows(2))[0].sampling, 1);

        let mut d = decoder_with(|c| {
            c.sampling.push(ExporterSampling {
                exporter: exporter().ip(),
                interval: 7,
            })
        });
        run(
            &mut d,
            T0,
            &ipfix(1, 1, &[set(3, &options_template), set(256, &options_data)]),
        );
        let overridden = run(&mut d, T0, &flows(1));
        assert_eq!((overridden[0].octets, overridden[0].sampling), (7000, 7));
    }

    #[test]
    fn v9_sampler_id_options_and_uptime_wrap() {
        // Options template 300: scope System (4 bytes); FLOW_SAMPLER_ID, FLOW_SAMPLER_RANDOM_INTERVAL.
        let options_template = [
            &[1u8, 44, 0, 4, 0, 8][..],
            &[0, 1, 0, 4, 0, 48, 0, 1, 0, 50, 0, 4],
        ]
        .concat();
        let options_data = [&[0u8, 0, 0, 0, 5][..], &50u32.to_be_bytes(), &[0, 0, 0]].concat();
        let fields: Vec<(u16, u16, u32)> = FLOW_FIELDS
            .iter()
            .copied()
            .chain([(48, 1, 0), (22, 4, 0), (21, 4, 0)])
            .collect();
        let mut record = flow_record(1, 10, 1);
        record.push(5);
        // Uptime wrapped: the flow started and ended before the wrap, the header is after it.
        record.extend_from_slice(&0xffff_ff00u32.to_be_bytes());
        record.extend_from_slice(&0xffff_fff0u32.to_be_bytes());
        let message = v9(
            1000,
            1_700_000_000,
            3,
            &[
                set(1, &options_template),
                set(300, &options_data),
                set(0, &template(256, &fields)),
                set(256, &record),
            ],
        );
        let mut d = decoder_with(|_| {});
        let out = run(&mut d, T0, &message);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].sampling, out[0].octets), (50, 500));
        assert_eq!(out[0].source, RecordSource::NetflowV9);
        let export_ms = 1_700_000_000_000u64;
        assert_eq!(out[0].start_ns, (export_ms - (1000 + 0x100)) * 1_000_000);
        assert_eq!(out[0].end_ns, (export_ms - (1000 + 0x10)) * 1_000_000);
    }

    #[test]
    fn v5_header_sampling() {
        // Mode 01 (deterministic) in the top 2 bits, interval 10 in the low 14.
        let datagram = v5_datagram(0x4000 | 10, 2);
        assert_eq!(looks_like_netflow(&datagram), Some(5));
        let mut d = decoder_with(|_| {});
        let out = run(&mut d, T0, &datagram);
        assert_eq!(out.len(), 2);
        assert_eq!(
            (out[0].octets, out[0].packets, out[0].sampling),
            (15_000, 30, 10)
        );
        let export = 1_700_000_000 * SEC + 500_000_000;
        assert_eq!(out[0].start_ns, export - 10 * SEC);
        assert_eq!(out[0].end_ns, export - SEC);
        assert_eq!(out[0].tcp_flags, Some(0x1b));
        // Interval 0 means unsampled.
        assert_eq!(run(&mut d, T0, &v5_datagram(0, 1))[0].sampling, 1);
        let mut d = decoder_with(|c| {
            c.sampling.push(ExporterSampling {
                exporter: exporter().ip(),
                interval: 4,
            })
        });
        assert_eq!(run(&mut d, T0, &datagram)[0].octets, 6000);
    }

    #[test]
    fn a_bad_set_keeps_the_good_sets_before_it() {
        let mut d = decoder_with(|_| {});
        let mut message = ipfix(
            1,
            1,
            &[
                set(2, &template(256, FLOW_FIELDS)),
                set(256, &flow_record(1, 100, 1)),
                set(256, &flow_record(2, 100, 1)),
            ],
        );
        // Claim a longer last set than the message holds.
        let last = message.len() - 25 + 2;
        message[last..last + 2].copy_from_slice(&200u16.to_be_bytes());
        let mut out = Vec::new();
        let err = d.decode(exporter(), T0, &message, &mut out).unwrap_err();
        assert_eq!(out.len(), 1);
        assert!(matches!(err, ExportError::Truncated { offset, .. } if offset == last - 2));
        assert_eq!(d.counters.malformed, 1);
        assert_eq!(looks_like_netflow(&message), None);
    }

    #[test]
    fn looks_like_netflow_is_strict() {
        let good = ipfix(1, 1, &[set(2, &template(256, FLOW_FIELDS))]);
        assert_eq!(looks_like_netflow(&good), Some(10));
        let mut longer = good.clone();
        longer.push(0);
        assert_eq!(looks_like_netflow(&longer), None);
        let v9_ok = v9(1, 1, 1, &[set(0, &template(256, FLOW_FIELDS))]);
        assert_eq!(looks_like_netflow(&v9_ok), Some(9));
        let mut padded = v9_ok.clone();
        padded.extend_from_slice(&[0, 0]);
        assert_eq!(looks_like_netflow(&padded), Some(9));
        let mut bad_set_id = v9_ok.clone();
        bad_set_id[21] = 5;
        assert_eq!(looks_like_netflow(&bad_set_id), None);
        assert_eq!(looks_like_netflow(&v5_datagram(0, 2)[..100]), None);
        assert_eq!(looks_like_netflow(&[0, 5]), None);
        // Pseudo-random payloads that start like a version number almost never pass.
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut passed = 0;
        for i in 0..20_000u32 {
            let len = 20 + (i as usize % 1400);
            let mut p: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            p[0] = 0;
            p[1] = [5, 9, 10][i as usize % 3];
            passed += usize::from(looks_like_netflow(&p).is_some());
        }
        assert_eq!(passed, 0);
    }

    fn capture_payloads(name: &str) -> Vec<(Exporter, Vec<u8>)> {
        use crate::decode::packet::{Decoded, Layer, decode_frame};
        use crate::source::pcap_file::CaptureReader;
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/captures/public")
            .join(name);
        let mut reader = CaptureReader::open(&[path]).expect("capture");
        let mut payloads = Vec::new();
        while let Some(packet) = reader.next_packet() {
            let mut decoded = Decoded::default();
            decode_frame(packet.linktype, packet.data, &mut decoded);
            if let Some(Layer::Transport(t)) = decoded.layers.last()
                && t.proto == 17
                && looks_like_netflow(t.payload).is_some()
            {
                payloads.push((SocketAddr::new(t.src, t.sport), t.payload.to_vec()));
            }
        }
        payloads
    }

    /// Every prefix, and every one-byte corruption, of every datagram of the export
    /// captures, decoded after the datagrams before it: never a panic; errors are counted.
    #[test]
    fn truncated_and_corrupted_real_datagrams_never_panic() {
        for name in [
            "akvorado__nfv5.pcap",
            "akvorado__nfv9-data+templates.pcap",
            "akvorado__ipfixprobe-templates+data.pcap",
            "pmacct__100-IPFIXv10-CISCO.pcap",
            "pmacct__101-NFv9-CISCO-cust_primitives.pcap",
            "pmacct__106-IPFIXv10-HUAWEI-vrf_name.pcap",
        ] {
            let payloads = capture_payloads(name);
            assert!(!payloads.is_empty(), "{name}");
            // Only the first few datagrams of the long capture: the rest repeat its shape.
            for (index, (exporter, datagram)) in payloads.iter().enumerate().take(4) {
                let primed = || {
                    let mut d = NetflowDecoder::new(&ExportConfig::default());
                    let mut out = Vec::new();
                    for (e, p) in payloads.iter().take(index) {
                        let _ = d.decode(*e, T0, p, &mut out);
                    }
                    d
                };
                let mut d = primed();
                let mut out = Vec::new();
                for cut in 0..datagram.len() {
                    let before = d.counters.malformed;
                    let result = d.decode(*exporter, T0, &datagram[..cut], &mut out);
                    if result.is_err() {
                        assert_eq!(d.counters.malformed, before + 1);
                    }
                }
                let mut d = primed();
                for at in 0..datagram.len() {
                    for byte in [0x00, 0xff, 0x80] {
                        let mut corrupt = datagram.clone();
                        corrupt[at] = byte;
                        out.clear();
                        let _ = d.decode(*exporter, T0, &corrupt, &mut out);
                    }
                }
            }
        }
    }
}
