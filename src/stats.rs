//! Run counters and the end-of-run summary.
use std::collections::BTreeMap;

/// Hosts listed per kind in the summary; the rest are counted.
const MAX_LISTED_HOSTS: usize = 20;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub files: u64,
    pub frames: u64,
    /// Frame lengths on the wire.
    pub wire_bytes: u64,
    /// Frames captured shorter than they were (snaplen or slicing); still counted in full.
    pub sliced_frames: u64,
    pub drops: BTreeMap<&'static str, u64>,
    pub fragments_reassembled: u64,
    pub flows: u64,
    pub flows_evicted: u64,
    pub interim_updates: u64,
    pub connections_reused: u64,
    pub dns_messages: u64,
    pub dns_cache_evicted: u64,
    pub tls_client_hellos: u64,
    /// ClientHellos with the encrypted_client_hello extension.
    pub ech_hellos: u64,
    /// Flows to encrypted-DNS resolvers (`[dns] encrypted_resolvers`, port 853).
    pub encrypted_dns_flows: u64,
    /// Inside hosts whose outbound connections mostly carried no name.
    pub name_blind: Vec<crate::enrich::naming::NameBlindHost>,
    /// Inside hosts that resolved through encrypted DNS.
    pub encrypted_dns_hosts: Vec<crate::enrich::naming::EncryptedDnsHost>,
    /// Inside hosts whose naming was counted, and those past `max_naming_hosts`.
    pub naming_hosts: u64,
    pub naming_untracked_hosts: u64,
    pub http_requests: u64,
    pub socks_requests: u64,
    /// QUIC connections read (one per connection, whether its hello was read or not).
    pub quic_connections: u64,
    pub quic_initials_decrypted: u64,
    /// How QUIC reading ended (`QuicEnd` names) and the packets it skipped (decrypt_failed,
    /// truncated, unknown_frames).
    pub quic: BTreeMap<&'static str, u64>,
    pub proxyware_observations: u64,
    pub windows_closed: u64,
    /// SIGHUP reloads applied.
    pub config_reloads: u64,
    pub findings: u64,
    pub below_min_score: u64,
    pub suppressed_repeats: u64,
    pub suppressed_by_segment: u64,
    pub allowlisted_updates: u64,
    pub hosts_evicted: u64,
    pub geo: String,
    pub alerts: u64,
    pub file_problems: Vec<String>,
    pub export: ExportStats,
    /// Live capture, per interface (empty for replay and collect).
    pub live: Vec<InterfaceStats>,
    /// Fleet mode: the link to the bus (None when off).
    pub fleet: Option<FleetStats>,
    /// Sysmon evidence (`--endpoint-events`; None without).
    pub endpoint: Option<crate::endpoint::EndpointStats>,
    /// Replay on one thread: memory when the input ended (None where /proc is not there).
    pub held_at_input_end: Option<HeldAtInputEnd>,
}

/// Resident memory and flows held when a replay's input ended, before every flow is ended:
/// the steady state's figure. The peak comes after, as the detectors record all those flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldAtInputEnd {
    pub resident_kib: u64,
    pub flows: u64,
}

/// The sensor's fleet link, for the summary and the metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetStats {
    pub site: String,
    pub sensor: String,
    pub counters: crate::fleet::link::LinkCounters,
}

/// One live capture interface: what libpcap reports and what we dropped ourselves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceStats {
    pub interface: String,
    /// Frames the kernel filter passed (on Linux this includes kernel_dropped).
    pub received: u64,
    /// Dropped because the kernel capture buffer was full (`--buffer-mib`).
    pub kernel_dropped: u64,
    /// Dropped by the interface or its driver.
    pub if_dropped: u64,
    /// Dropped by us because the pipeline was behind (queue full).
    pub queue_dropped: u64,
    /// Handed to the pipeline.
    pub delivered: u64,
}

impl InterfaceStats {
    pub fn dropped(&self) -> u64 {
        self.kernel_dropped + self.if_dropped + self.queue_dropped
    }

    /// Frames seen at all: received (which already holds the kernel's drops) plus the
    /// interface's.
    pub fn offered(&self) -> u64 {
        self.received + self.if_dropped
    }

    /// Counters accumulated since `earlier` (a previous reading of the same interface).
    pub fn since(&self, earlier: &InterfaceStats) -> InterfaceStats {
        InterfaceStats {
            interface: self.interface.clone(),
            received: self.received.saturating_sub(earlier.received),
            kernel_dropped: self.kernel_dropped.saturating_sub(earlier.kernel_dropped),
            if_dropped: self.if_dropped.saturating_sub(earlier.if_dropped),
            queue_dropped: self.queue_dropped.saturating_sub(earlier.queue_dropped),
            delivered: self.delivered.saturating_sub(earlier.delivered),
        }
    }

    /// Dropped share of what was offered, in percent.
    pub fn drop_percent(&self) -> f64 {
        if self.offered() == 0 {
            0.0
        } else {
            100.0 * self.dropped() as f64 / self.offered() as f64
        }
    }
}

impl std::fmt::Display for InterfaceStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} received, {} delivered; drops: kernel={} interface={} queue={}",
            self.interface,
            self.received,
            self.delivered,
            self.kernel_dropped,
            self.if_dropped,
            self.queue_dropped
        )
    }
}

/// Flow export ingest (NetFlow, IPFIX, sFlow, VPC Flow Logs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportStats {
    pub netflow_datagrams: u64,
    pub sflow_datagrams: u64,
    pub vpc_files: u64,
    pub vpc_lines: u64,
    pub records: u64,
    pub flows: u64,
    pub records_stitched: u64,
    pub flows_evicted: u64,
    pub templates: u64,
    pub templates_withdrawn: u64,
    /// Evicted at `max_templates` (least recently used first).
    pub templates_evicted: u64,
    pub templates_expired: u64,
    pub sets_pending: u64,
    pub pending_decoded: u64,
    pub pending_dropped: u64,
    pub sflow_counter_samples: u64,
    /// Datagrams that failed to decode, per reason.
    pub errors: BTreeMap<&'static str, u64>,
    /// Collector: datagrams dropped because the decoder queue was full, per exporter.
    pub queue_drops: BTreeMap<String, u64>,
}

impl ExportStats {
    pub fn is_empty(&self) -> bool {
        self.netflow_datagrams == 0
            && self.sflow_datagrams == 0
            && self.vpc_files == 0
            && self.queue_drops.is_empty()
    }

    fn summary(&self) -> String {
        let mut s = format!(
            "export: {} NetFlow/IPFIX and {} sFlow datagrams, {} VPC flow log lines; {} records \
             -> {} flows ({} records stitched, {} flows evicted); {} templates ({} withdrawn, \
             {} evicted at max_templates, {} expired), {} data sets before their template \
             ({} decoded later, {} dropped); {} sFlow counter samples\n",
            self.netflow_datagrams,
            self.sflow_datagrams,
            self.vpc_lines,
            self.records,
            self.flows,
            self.records_stitched,
            self.flows_evicted,
            self.templates,
            self.templates_withdrawn,
            self.templates_evicted,
            self.templates_expired,
            self.sets_pending,
            self.pending_decoded,
            self.pending_dropped,
            self.sflow_counter_samples,
        );
        if !self.errors.is_empty() {
            let list: Vec<String> = self
                .errors
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            s.push_str(&format!("export errors: {}\n", list.join(" ")));
        }
        if !self.queue_drops.is_empty() {
            let list: Vec<String> = self
                .queue_drops
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            s.push_str(&format!("collector queue drops: {}\n", list.join(" ")));
        }
        s
    }
}

/// "memory: peak resident N MiB" for the end-of-run summary, from the kernel's high-water
/// mark of this process, and the memory held when the input ended (empty where /proc is not
/// there).
pub fn memory_lines(held: Option<HeldAtInputEnd>) -> String {
    let mut lines = match status_kib("VmHWM:") {
        Some(kib) => format!("memory: peak resident {:.1} MiB\n", kib as f64 / 1024.0),
        None => String::new(),
    };
    if let Some(held) = held {
        lines.push_str(&format!(
            "memory at end of input: {:.1} MiB resident, {} flows held\n",
            held.resident_kib as f64 / 1024.0,
            held.flows
        ));
    }
    lines
}

/// This process's resident memory now, in KiB.
pub fn resident_kib() -> Option<u64> {
    status_kib("VmRSS:")
}

fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

impl Stats {
    pub fn drop(&mut self, reason: &'static str) {
        *self.drops.entry(reason).or_insert(0) += 1;
    }

    pub fn count_quic(&mut self, info: &crate::decode::quic::QuicInfo) {
        self.quic_connections += 1;
        let p = info.packets;
        self.quic_initials_decrypted += u64::from(p.initials_decrypted);
        let counts = [
            (info.end.as_str(), 1),
            ("decrypt_failed", p.decrypt_failed),
            ("truncated", p.truncated),
            ("unknown_frames", p.unknown_frames),
        ];
        for (key, n) in counts {
            if n > 0 {
                *self.quic.entry(key).or_insert(0) += u64::from(n);
            }
        }
    }

    pub fn summary(&self) -> String {
        let mut s = format!(
            "egresswatch: {}{} frames, {} bytes ({} sliced frames counted at full length)\n\
             flows: {} ({} evicted at the max_flows bound, {} interim updates, {} connections reused)\n\
             names: {} DNS messages ({} answer cache entries evicted), {} TLS ClientHellos, \
             {} HTTP requests, {} SOCKS requests\n\
             proxyware: {} observations\n\
             behaviour: {} windows, {} findings, {} allowlisted flow updates, {} below min score, \
             {} repeats folded, {} suppressed by segment, {} hosts evicted\n\
             alerts: {}\n",
            // live and collect read no files
            if self.files > 0 {
                format!("{} file(s), ", self.files)
            } else {
                String::new()
            },
            self.frames,
            self.wire_bytes,
            self.sliced_frames,
            self.flows,
            self.flows_evicted,
            self.interim_updates,
            self.connections_reused,
            self.dns_messages,
            self.dns_cache_evicted,
            self.tls_client_hellos,
            self.http_requests,
            self.socks_requests,
            self.proxyware_observations,
            self.windows_closed,
            self.findings,
            self.allowlisted_updates,
            self.below_min_score,
            self.suppressed_repeats,
            self.suppressed_by_segment,
            self.hosts_evicted,
            self.alerts,
        );
        if self.ech_hellos + self.encrypted_dns_flows + self.naming_hosts > 0 {
            s.push_str(&format!(
                "hidden names: {} ClientHellos offered ECH, {} encrypted DNS flows, {} of {} \
                 inside hosts name-blind{}\n",
                self.ech_hellos,
                self.encrypted_dns_flows,
                self.name_blind.len(),
                self.naming_hosts,
                if self.naming_untracked_hosts > 0 {
                    format!(" ({} more hosts not counted)", self.naming_untracked_hosts)
                } else {
                    String::new()
                }
            ));
            for host in self.encrypted_dns_hosts.iter().take(MAX_LISTED_HOSTS) {
                s.push_str(&format!("  encrypted DNS {host}\n"));
            }
            for host in self.name_blind.iter().take(MAX_LISTED_HOSTS) {
                s.push_str(&format!("  name-blind {host}\n"));
            }
            let more = self
                .encrypted_dns_hosts
                .len()
                .saturating_sub(MAX_LISTED_HOSTS)
                + self.name_blind.len().saturating_sub(MAX_LISTED_HOSTS);
            if more > 0 {
                s.push_str(&format!("  ({more} more hosts not listed)\n"));
            }
        }
        if !self.geo.is_empty() {
            s.push_str(&self.geo);
            s.push('\n');
        }
        if !self.export.is_empty() {
            s.push_str(&self.export.summary());
        }
        for interface in &self.live {
            s.push_str(&format!("live {interface}\n"));
        }
        if self.fragments_reassembled > 0 {
            s.push_str(&format!(
                "fragments: {} datagrams reassembled\n",
                self.fragments_reassembled
            ));
        }
        if self.quic_connections > 0 {
            let list: Vec<String> = self.quic.iter().map(|(k, v)| format!("{k}={v}")).collect();
            s.push_str(&format!(
                "quic: {} connections, {} Initials decrypted; {}\n",
                self.quic_connections,
                self.quic_initials_decrypted,
                list.join(" ")
            ));
        }
        if self.config_reloads > 0 {
            s.push_str(&format!("config reloads: {}\n", self.config_reloads));
        }
        if let Some(e) = &self.endpoint {
            s.push_str(&e.summary());
        }
        if let Some(f) = &self.fleet {
            let c = &f.counters;
            s.push_str(&format!(
                "fleet: site {} sensor {}: {} messages queued, {} stored by the bus, {} dropped, {} retried; {} fleet baselines received; windows scored against the fleet p90: {}, the site's: {}{}\n",
                f.site,
                f.sensor,
                c.queued,
                c.acknowledged,
                c.dropped,
                c.retried,
                c.baselines_received,
                c.windows_fleet_scored,
                c.windows_site_scored,
                if c.connected || f.counters.kafka.is_some() { "" } else { " (bus never reached)" },
            ));
            if let Some(k) = &c.kafka {
                s.push_str(&format!(
                    "kafka: {} messages queued, {} delivered, {} failed, {} dropped\n",
                    k.queued, k.delivered, k.failed, k.dropped
                ));
            }
        }
        if self.drops.is_empty() {
            s.push_str("drops: none\n");
        } else {
            let list: Vec<String> = self.drops.iter().map(|(k, v)| format!("{k}={v}")).collect();
            s.push_str(&format!("drops: {}\n", list.join(" ")));
        }
        for p in &self.file_problems {
            s.push_str(&format!("problem: {p}\n"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_memory_is_read_from_proc() {
        let held = HeldAtInputEnd {
            resident_kib: resident_kib().unwrap(),
            flows: 7,
        };
        let lines = memory_lines(Some(held));
        let (line, held_line) = lines.split_once('\n').unwrap();
        let line = format!("{line}\n");
        assert!(
            held_line.starts_with("memory at end of input: ")
                && held_line.ends_with(" MiB resident, 7 flows held\n"),
            "{held_line:?}"
        );
        let mib: f64 = line
            .strip_prefix("memory: peak resident ")
            .and_then(|l| l.strip_suffix(" MiB\n"))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{line:?}"));
        assert!(mib > 0.0);
    }

    #[test]
    fn live_interval_drop_rate_and_summary() {
        let earlier = InterfaceStats {
            interface: "eth1".into(),
            received: 1_000,
            kernel_dropped: 10,
            ..InterfaceStats::default()
        };
        let now = InterfaceStats {
            received: 3_000,
            kernel_dropped: 30,
            if_dropped: 0,
            queue_dropped: 20,
            delivered: 2_950,
            ..earlier.clone()
        };
        let delta = now.since(&earlier);
        assert_eq!(delta.received, 2_000);
        assert_eq!(delta.dropped(), 40);
        assert!((delta.drop_percent() - 2.0).abs() < 1e-9);
        let stats = Stats {
            live: vec![now],
            ..Stats::default()
        };
        assert!(stats.summary().contains(
            "live eth1: 3000 received, 2950 delivered; drops: kernel=30 interface=0 queue=20\n"
        ));
    }
}
