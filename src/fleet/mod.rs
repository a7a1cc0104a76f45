//! Fleet mode: sensors publish window summaries and alerts to NATS JetStream; `egresswatch
//! aggregate` computes the fleet's population baseline and cross-site findings from them and
//! sends the baseline back. The bus and its storage (streams, a durable consumer, a key-value
//! bucket) are NATS's; nothing here is a cluster of its own.
pub mod aggregate;
pub mod bus;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod link;
pub mod schema;

use serde::{Deserialize, Serialize};

/// What happened to the messages given to the Kafka export's `send` (here, not in the
/// feature-gated `kafka` module, so the summary and metrics need no feature gate).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KafkaCounters {
    /// Accepted into librdkafka's queue.
    pub queued: u64,
    /// Acknowledged by the brokers (per the producer's acks, librdkafka's default "all").
    pub delivered: u64,
    /// Queued but given up on: message.timeout.ms passed, a broker refused it, or purged.
    pub failed: u64,
    /// Refused by `send` without queueing: queue full (or a message librdkafka rejects).
    pub dropped: u64,
}

/// `[fleet]`: the sensor's link to the bus (`live`, `collect`, `replay`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct FleetConfig {
    /// NATS server URL(s), comma-separated for a cluster (`nats://host:4222`, `tls://...`,
    /// user and password in the URL if the server wants them). Empty: fleet mode off.
    pub url: String,
    /// This sensor's site (a subject token: letters, digits, `-`, `_`). Required with `url`.
    pub site: String,
    /// This sensor's name; empty: the machine's host name.
    pub sensor: String,
    pub subject_prefix: String,
    /// Messages held while the bus is slow or away; beyond it new messages are dropped and
    /// counted (the sensor goes on detecting locally).
    pub buffer_messages: usize,
    /// Hosts per window-summary message; bigger sites send a window in several parts.
    pub max_hosts_per_message: usize,
    /// Score windows against the fleet's p90 (from the aggregator) when one is fresh.
    pub use_fleet_baseline: bool,
    /// A fleet baseline is fresh for windows starting at most this many windows after it.
    pub baseline_max_age_windows: u32,
    /// At start, wait up to this long for the bus and the baselines it holds, so a replay
    /// scores its first windows against them. 0: do not wait.
    pub startup_sync_seconds: u64,
    /// At the end of a run, wait up to this long for held messages to reach the bus.
    pub flush_seconds: u64,
    /// Replicas of the streams this sensor creates if they do not exist (NATS cluster size).
    pub stream_replicas: usize,
    /// How long the streams keep messages.
    pub stream_max_age_hours: u64,
    /// Kafka export of the same messages (`--features kafka`): `[fleet.kafka]`.
    #[cfg(feature = "kafka")]
    pub kafka: kafka::KafkaConfig,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            url: String::new(),
            site: String::new(),
            sensor: String::new(),
            subject_prefix: "egresswatch".into(),
            buffer_messages: 10_000,
            max_hosts_per_message: 2_000,
            use_fleet_baseline: true,
            baseline_max_age_windows: 4,
            startup_sync_seconds: 3,
            flush_seconds: 10,
            stream_replicas: 1,
            stream_max_age_hours: 72,
            #[cfg(feature = "kafka")]
            kafka: kafka::KafkaConfig::default(),
        }
    }
}

impl FleetConfig {
    /// Publishing to NATS.
    pub fn enabled(&self) -> bool {
        !self.url.trim().is_empty()
    }

    /// Exporting to Kafka (built with `--features kafka` and `[fleet.kafka] brokers` set).
    pub fn kafka_enabled(&self) -> bool {
        #[cfg(feature = "kafka")]
        return !self.kafka.brokers.trim().is_empty();
        #[cfg(not(feature = "kafka"))]
        false
    }

    /// The sensor has a link: to NATS, Kafka or both.
    pub fn linked(&self) -> bool {
        self.enabled() || self.kafka_enabled()
    }

    pub fn subjects(&self) -> schema::Subjects {
        schema::Subjects {
            prefix: self.subject_prefix.clone(),
        }
    }

    pub fn streams(&self) -> bus::StreamSettings {
        bus::StreamSettings {
            replicas: self.stream_replicas.max(1),
            max_age: std::time::Duration::from_secs(self.stream_max_age_hours.max(1) * 3600),
        }
    }

    /// Checks what `check-config` and the start of a run check.
    pub fn validate(&self) -> Result<(), String> {
        if !self.linked() {
            return Ok(());
        }
        if !schema::valid_name(&self.site) {
            return Err(format!(
                "fleet.site {:?}: required with fleet.url or fleet.kafka; letters, digits, '-' and '_' only (it is a NATS subject token)",
                self.site
            ));
        }
        if !self.sensor.is_empty() && !schema::valid_name(&self.sensor) {
            return Err(format!(
                "fleet.sensor {:?}: letters, digits, '-' and '_' only",
                self.sensor
            ));
        }
        if !valid_prefix(&self.subject_prefix) {
            return Err(format!(
                "fleet.subject_prefix {:?}: dot-separated tokens of letters, digits, '-' and '_'",
                self.subject_prefix
            ));
        }
        if self.buffer_messages == 0 || self.max_hosts_per_message == 0 {
            return Err("fleet.buffer_messages and fleet.max_hosts_per_message must be > 0".into());
        }
        Ok(())
    }
}

pub fn valid_prefix(prefix: &str) -> bool {
    prefix.split('.').all(schema::valid_name)
}

/// The sensor name when the config leaves it empty: the host name, made a subject token.
pub fn default_sensor_name() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name: String = raw
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if name.is_empty() {
        "sensor".into()
    } else {
        name
    }
}
