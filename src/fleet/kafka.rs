//! Optional Kafka export of the fleet messages (`--features kafka`), for shops that already run
//! Kafka: the same payloads as on NATS, on topics "<prefix>.windows" and "<prefix>.alerts",
//! keyed by site so one site's messages stay in order on one partition.
//!
//! librdkafka (built from source by rdkafka-sys) owns the queue and the connections; a
//! `ThreadedProducer` polls it on its own thread, where delivery reports update the counters.
//! `send` only enqueues (librdkafka's produce call without the blocking flag), so the packet
//! path never waits on the brokers: when they are slow or down, messages wait in a queue of
//! `queue_messages` and beyond that are dropped and counted.
use rdkafka::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// librdkafka's upper bound for queue.buffering.max.messages.
const MAX_QUEUE_MESSAGES: usize = 2_147_483_647;
/// Kafka's longest topic name.
const MAX_TOPIC_LEN: usize = 249;
/// The longest suffix appended to the prefix (".windows").
const LONGEST_KIND: usize = 8;

#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// bootstrap.servers, e.g. "127.0.0.1:9092"; empty = Kafka export off.
    pub brokers: String,
    /// Topics are "<prefix>.windows" and "<prefix>.alerts" (default prefix "egresswatch").
    pub topic_prefix: String,
    /// Messages held while the brokers are slow or unreachable (librdkafka's
    /// queue.buffering.max.messages); beyond it, sends are dropped and counted.
    pub queue_messages: usize,
    /// Extra librdkafka properties (security.protocol, sasl.*, ssl.*, compression.type ...).
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: String::new(),
            topic_prefix: "egresswatch".into(),
            queue_messages: 100_000,
            properties: BTreeMap::new(),
        }
    }
}

/// A setting that cannot start the export; each names the setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("fleet.kafka.brokers is empty: give bootstrap servers such as \"127.0.0.1:9092\"")]
    NoBrokers,
    #[error(
        "fleet.kafka.topic_prefix {0:?}: use 1 to {max} of [A-Za-z0-9._-] (Kafka's topic names)",
        max = MAX_TOPIC_LEN - LONGEST_KIND
    )]
    TopicPrefix(String),
    #[error("fleet.kafka.queue_messages {0}: must be 1 to {MAX_QUEUE_MESSAGES}")]
    QueueMessages(usize),
    #[error("fleet.kafka.properties.\"{key}\": set it with fleet.kafka.{setting} instead")]
    Reserved { key: String, setting: &'static str },
    #[error("fleet.kafka.properties.\"{key}\" = {value:?}: {reason}")]
    Property {
        key: String,
        value: String,
        reason: String,
    },
    #[error("kafka producer: {0}")]
    Client(String),
}

pub use super::KafkaCounters;

#[derive(Default)]
struct Shared {
    queued: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    /// librdkafka's latest client-level error (e.g. all brokers down), for status output.
    last_error: Mutex<Option<String>>,
}

/// Runs on librdkafka's threads (delivery reports on the polling thread).
struct Context(Arc<Shared>);

impl ClientContext for Context {
    fn log(&self, _level: RDKafkaLogLevel, _fac: &str, _log_message: &str) {
        // Errors reach `error` below and the counters; librdkafka's chatter is not ours to print.
    }

    fn error(&self, error: RdError, reason: &str) {
        if let Ok(mut last) = self.0.last_error.lock() {
            *last = Some(format!("{error}: {reason}"));
        }
    }
}

impl ProducerContext for Context {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let counter = match result {
            Ok(_) => &self.0.delivered,
            Err(_) => &self.0.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

pub struct KafkaExport {
    producer: ThreadedProducer<Context>,
    shared: Arc<Shared>,
    windows_topic: String,
    alerts_topic: String,
    prefix: String,
}

impl std::fmt::Debug for KafkaExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaExport")
            .field("prefix", &self.prefix)
            .field("counters", &self.counters())
            .finish_non_exhaustive()
    }
}

impl KafkaExport {
    /// Checks the settings and creates the producer. Connecting happens in the background:
    /// unreachable brokers are no error here, they show as queued messages that fail later.
    pub fn start(config: &KafkaConfig) -> Result<KafkaExport, KafkaError> {
        let brokers = config.brokers.trim();
        if brokers.is_empty() {
            return Err(KafkaError::NoBrokers);
        }
        let prefix = &config.topic_prefix;
        let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if prefix.is_empty()
            || prefix.len() > MAX_TOPIC_LEN - LONGEST_KIND
            || !prefix.chars().all(legal)
        {
            return Err(KafkaError::TopicPrefix(prefix.clone()));
        }
        if !(1..=MAX_QUEUE_MESSAGES).contains(&config.queue_messages) {
            return Err(KafkaError::QueueMessages(config.queue_messages));
        }
        let mut client = ClientConfig::new();
        for (key, value) in &config.properties {
            let setting = match key.as_str() {
                "bootstrap.servers" | "metadata.broker.list" => Some("brokers"),
                "queue.buffering.max.messages" => Some("queue_messages"),
                _ => None,
            };
            if let Some(setting) = setting {
                return Err(KafkaError::Reserved {
                    key: key.clone(),
                    setting,
                });
            }
            client.set(key, value);
        }
        client
            .set("bootstrap.servers", brokers)
            .set(
                "queue.buffering.max.messages",
                config.queue_messages.to_string(),
            )
            // Our log() drops librdkafka's log lines: do not build them at all.
            .set_log_level(RDKafkaLogLevel::Error);
        let shared = Arc::new(Shared::default());
        let producer = client
            .create_with_context(Context(Arc::clone(&shared)))
            .map_err(|e| match e {
                RdError::ClientConfig(_, reason, key, value) => {
                    KafkaError::Property { key, value, reason }
                }
                other => KafkaError::Client(other.to_string()),
            })?;
        Ok(KafkaExport {
            producer,
            shared,
            windows_topic: format!("{prefix}.windows"),
            alerts_topic: format!("{prefix}.alerts"),
            prefix: prefix.clone(),
        })
    }

    /// Never blocks the caller (the packet path): queues one message keyed by `key` (the site)
    /// on topic "<prefix>.<kind>" where kind is "windows" or "alerts"; false (and counted as
    /// dropped) when the queue is full.
    pub fn send(&self, kind: &str, key: &str, payload: &[u8]) -> bool {
        let other;
        let topic = match kind {
            "windows" => &self.windows_topic,
            "alerts" => &self.alerts_topic,
            _ => {
                other = format!("{}.{kind}", self.prefix);
                &other
            }
        };
        let record = BaseRecord::to(topic).key(key).payload(payload);
        match self.producer.send(record) {
            Ok(()) => {
                self.shared.queued.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err((error, _)) => {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                // Queue full is the expected refusal; anything else (a message over
                // message.max.bytes, a bad topic) is remembered for status output.
                if error.rdkafka_error_code() != Some(RDKafkaErrorCode::QueueFull)
                    && let Ok(mut last) = self.shared.last_error.lock()
                {
                    *last = Some(format!("send to {topic}: {error}"));
                }
                false
            }
        }
    }

    pub fn counters(&self) -> KafkaCounters {
        let s = &self.shared;
        KafkaCounters {
            queued: s.queued.load(Ordering::Relaxed),
            delivered: s.delivered.load(Ordering::Relaxed),
            failed: s.failed.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
        }
    }

    /// librdkafka's latest error (e.g. "all brokers are down"), or a send refused for a reason
    /// other than a full queue; for status output beside the counters.
    pub fn last_error(&self) -> Option<String> {
        self.shared.last_error.lock().ok().and_then(|l| l.clone())
    }

    /// End of run: waits up to `timeout` for queued messages to be delivered. Read the
    /// counters after it: dropping the export purges what is still queued.
    pub fn flush(&self, timeout: Duration) {
        // A timeout only means messages are still outstanding, which the counters show.
        let _ = self.producer.flush(timeout);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(f: impl FnOnce(&mut KafkaConfig)) -> KafkaConfig {
        let mut c = KafkaConfig {
            brokers: "127.0.0.1:9".into(),
            ..KafkaConfig::default()
        };
        f(&mut c);
        c
    }

    fn error(c: &KafkaConfig) -> String {
        KafkaExport::start(c).unwrap_err().to_string()
    }

    #[test]
    fn toml_defaults_and_unknown_keys() {
        let c: KafkaConfig = toml::from_str("brokers = \"b:9092\"").unwrap();
        assert_eq!(
            c,
            KafkaConfig {
                brokers: "b:9092".into(),
                ..KafkaConfig::default()
            }
        );
        let c: KafkaConfig =
            toml::from_str("brokers = \"b:9092\"\n[properties]\n\"compression.type\" = \"lz4\"\n")
                .unwrap();
        assert_eq!(c.properties["compression.type"], "lz4");
        assert!(toml::from_str::<KafkaConfig>("broker = \"b:9092\"").is_err());
    }

    #[test]
    fn each_bad_setting_is_named() {
        assert!(error(&with(|c| c.brokers = " ".into())).starts_with("kafka.brokers"));
        for bad in ["", "a/b", "été", &"x".repeat(242)] {
            let e = error(&with(|c| c.topic_prefix = bad.into()));
            assert!(e.starts_with("kafka.topic_prefix"), "{bad:?}: {e}");
        }
        assert!(error(&with(|c| c.queue_messages = 0)).starts_with("kafka.queue_messages"));
        let reserved = |key: &str| {
            error(&with(|c| {
                c.properties.insert(key.into(), "x".into());
            }))
        };
        assert!(reserved("bootstrap.servers").contains("kafka.brokers"));
        assert!(reserved("queue.buffering.max.messages").contains("kafka.queue_messages"));
        // librdkafka's own checks, reported under the property's name.
        assert!(reserved("no.such.property").starts_with("kafka.properties.\"no.such.property\""));
        assert!(reserved("compression.type").starts_with("kafka.properties.\"compression.type\""));
    }

    #[test]
    fn longest_prefix_and_extra_kinds_are_accepted() {
        let export = KafkaExport::start(&with(|c| c.topic_prefix = "x".repeat(241))).unwrap();
        // Nothing listens on port 9: queued, not delivered, never dropped while there is room.
        assert!(export.send("windows", "s", b"w"));
        assert!(export.send("baseline", "s", b"b"));
        assert_eq!(export.counters().queued, 2);
    }
}
