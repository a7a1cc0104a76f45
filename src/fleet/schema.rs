//! The fleet messages, version 1: what sensors publish and the aggregator sends back. JSON
//! (serde), one message per NATS message. Readers reject other versions by `schema`;
//! fields may be added within a version (readers ignore unknown fields), never renamed.
//!
//! Subjects (prefix `egresswatch` by default, `[fleet] subject_prefix`):
//! - `<prefix>.site.<site>.windows`: [`Body::Window`], one per closed window (split in parts);
//! - `<prefix>.site.<site>.alerts`: [`Body::Alert`], every alert the sensor raised;
//! - `<prefix>.fleet.baseline.<window start, unix s>`: [`Body::Baseline`] from the aggregator;
//! - `<prefix>.fleet.alerts`: [`Body::FleetAlert`] from the aggregator.
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// The `schema` field of every message this build writes and the one it reads.
pub const SCHEMA: &str = "egresswatch.fleet.v1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub schema: String,
    /// Site name (`[fleet] site`): letters, digits, `-` and `_` (it is a subject token).
    pub site: String,
    /// Sensor name (`[fleet] sensor`, the host name by default).
    pub sensor: String,
    /// This sensor process's start (unix ns): with `seq` it names the message for
    /// JetStream's duplicate detection, so a restarted sensor is not taken for a repeat.
    pub run: u64,
    /// 1, 2, ... per sensor run, over all kinds: a gap is a message the sensor dropped.
    pub seq: u64,
    /// Event time the message is about (a window's end; an alert's window end), unix ns.
    pub event_time_ns: u64,
    /// Messages this sensor run dropped so far (buffer full while the bus was away).
    pub dropped: u64,
    #[serde(flatten)]
    pub body: Body,
}

impl Message {
    /// JetStream's `Nats-Msg-Id`: the same message published twice (a retry after a lost
    /// acknowledgement) is stored once.
    pub fn msg_id(&self) -> String {
        format!("{}.{}.{}.{}", self.site, self.sensor, self.run, self.seq)
    }

    pub fn is_current(&self) -> bool {
        self.schema == SCHEMA
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Body {
    Window(WindowSummary),
    /// The alert as the JSON-lines output writes it (`DetectionBranch`, `host`, `evidence`...).
    Alert {
        alert: serde_json::Value,
    },
    Baseline(FleetBaseline),
    /// Nested like `Alert`: the fleet alert's own `kind` would clash with the envelope's.
    FleetAlert {
        alert: Box<FleetAlert>,
    },
}

/// One site's closed window: every host that sent unallowlisted traffic in it (the
/// population the p90 is taken over). Sites with many hosts split it into `parts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowSummary {
    pub window_start_ns: u64,
    pub window_end_ns: u64,
    /// 0-based part and number of parts of this window's summary.
    pub part: u32,
    pub parts: u32,
    /// Hosts in the population over all parts.
    pub hosts_total: u64,
    /// The site's own p90 of bytes_out (None below `population_min_hosts`).
    pub site_p90_bytes_out: Option<u64>,
    /// Which population the sensor scored this window against: "site" or "fleet".
    pub scored_against: String,
    pub hosts: Vec<HostSummary>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostSummary {
    pub host: IpAddr,
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub flows_opened: u64,
    pub distinct_destinations: u64,
    /// What the host's history predicts for this window (None while cold).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_bytes_out: Option<f64>,
    /// Long-lived sessions that carried more out than in during the window (bounded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub long_uploads: Vec<LongUpload>,
}

/// A session open at least `[windows] long_session_seconds` that sent more than it received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LongUpload {
    pub ip: IpAddr,
    pub port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asn: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// Sent and received in this window.
    pub bytes_out: u64,
    pub bytes_in: u64,
    /// Session age at its last packet in the window.
    pub duration_s: f64,
}

/// The fleet's population figure for one window, over every site that reported it so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetBaseline {
    pub window_start_ns: u64,
    pub window_end_ns: u64,
    /// 90th percentile of bytes_out over all sites' hosts (interpolated, as a sensor's own);
    /// None below the aggregator's `population_min_hosts`.
    pub p90_bytes_out: Option<u64>,
    pub hosts: u64,
    /// Sites that reported the window, sorted.
    pub sites: Vec<String>,
}

/// A finding no single sensor can make.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetAlert {
    /// Stable: the same finding over the same sites always has the same id.
    pub id: String,
    pub time: String,
    /// SharedRelayEndpoint, SharedRelayAsn, ProxywareAcrossSites or SiteEgressShift.
    pub kind: String,
    pub technique: String,
    pub score: u8,
    pub severity: String,
    /// Sites involved, sorted.
    pub sites: Vec<String>,
    /// (site, inside host) pairs involved, sorted.
    pub hosts: Vec<SiteHost>,
    #[serde(
        rename = "DestinationIp",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub destination_ip: Option<IpAddr>,
    #[serde(
        rename = "DestinationPort",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub destination_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub asn: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub service: Option<String>,
    pub window_start: String,
    pub window_end: String,
    pub reason: String,
    pub evidence: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SiteHost {
    pub site: String,
    pub host: IpAddr,
}

/// Subject names, one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    pub prefix: String,
}

impl Subjects {
    pub fn windows(&self, site: &str) -> String {
        format!("{}.site.{site}.windows", self.prefix)
    }
    pub fn alerts(&self, site: &str) -> String {
        format!("{}.site.{site}.alerts", self.prefix)
    }
    /// Everything sensors publish (the sites stream; the aggregator's consumer).
    pub fn all_sites(&self) -> String {
        format!("{}.site.>", self.prefix)
    }
    pub fn baseline(&self, window_start_ns: u64) -> String {
        format!(
            "{}.fleet.baseline.{}",
            self.prefix,
            window_start_ns / 1_000_000_000
        )
    }
    pub fn all_baselines(&self) -> String {
        format!("{}.fleet.baseline.>", self.prefix)
    }
    pub fn fleet_alerts(&self) -> String {
        format!("{}.fleet.alerts", self.prefix)
    }
    /// Stream names, derived from the prefix so deployments with different prefixes can
    /// share one NATS. Sensors' messages; the latest baseline per window; fleet alerts.
    /// (A subject may not be in two streams, and the baselines keep one message a subject.)
    pub fn sites_stream(&self) -> String {
        format!("{}_SITES", self.stream_stem())
    }
    pub fn baselines_stream(&self) -> String {
        format!("{}_BASELINES", self.stream_stem())
    }
    pub fn fleet_alerts_stream(&self) -> String {
        format!("{}_FLEET_ALERTS", self.stream_stem())
    }
    fn stream_stem(&self) -> String {
        self.prefix.replace('.', "_").to_ascii_uppercase()
    }
}

/// Site and sensor names become subject tokens and KV keys.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window_message() -> Message {
        Message {
            schema: SCHEMA.into(),
            site: "site-1".into(),
            sensor: "span-a".into(),
            run: 7,
            seq: 3,
            event_time_ns: 900_000_000_000,
            dropped: 0,
            body: Body::Window(WindowSummary {
                window_start_ns: 0,
                window_end_ns: 900_000_000_000,
                part: 0,
                parts: 1,
                hosts_total: 1,
                site_p90_bytes_out: None,
                scored_against: "site".into(),
                hosts: vec![HostSummary {
                    host: "10.31.0.10".parse().unwrap(),
                    bytes_out: 5,
                    bytes_in: 6,
                    flows_opened: 1,
                    distinct_destinations: 1,
                    baseline_bytes_out: None,
                    long_uploads: vec![LongUpload {
                        ip: "198.51.100.200".parse().unwrap(),
                        port: 443,
                        asn: Some(64500),
                        country: None,
                        bytes_out: 5,
                        bytes_in: 1,
                        duration_s: 700.0,
                    }],
                }],
            }),
        }
    }

    #[test]
    fn messages_round_trip_with_kind_beside_the_envelope() {
        let m = window_message();
        let text = serde_json::to_string(&m).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["kind"], "window");
        assert_eq!(value["schema"], SCHEMA);
        assert_eq!(value["hosts"][0]["long_uploads"][0]["asn"], 64500);
        assert_eq!(serde_json::from_str::<Message>(&text).unwrap(), m);
        assert_eq!(m.msg_id(), "site-1.span-a.7.3");
    }

    #[test]
    fn names_are_subject_tokens() {
        assert!(valid_name("site-1_a"));
        for bad in ["", "a.b", "a b", "a*", "a>", "ü"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        let s = Subjects {
            prefix: "egresswatch".into(),
        };
        assert_eq!(s.windows("x"), "egresswatch.site.x.windows");
        assert_eq!(s.sites_stream(), "EGRESSWATCH_SITES");
        assert_eq!(
            s.baseline(1_709_539_200_000_000_000),
            "egresswatch.fleet.baseline.1709539200"
        );
    }
}
