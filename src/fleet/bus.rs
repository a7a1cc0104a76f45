//! Connecting to NATS and declaring the streams: one place for the sensor and the aggregator.
use super::schema::Subjects;
use async_nats::jetstream::{self, stream};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("fleet.url {url:?}: {reason}")]
    Connect { url: String, reason: String },
    #[error("stream {stream}: {reason}")]
    Stream { stream: String, reason: String },
    #[error("{0}")]
    Other(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamSettings {
    pub replicas: usize,
    pub max_age: Duration,
}

/// Connects in the background: the client retries the first connection as well as later
/// ones, so a sensor started before the bus keeps running and catches up.
pub async fn connect(url: &str, name: &str) -> Result<async_nats::Client, BusError> {
    let urls: Vec<async_nats::ServerAddr> = url
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| u.parse())
        .collect::<Result<_, _>>()
        .map_err(|e: std::io::Error| BusError::Connect {
            url: url.into(),
            reason: e.to_string(),
        })?;
    if urls.is_empty() {
        return Err(BusError::Connect {
            url: url.into(),
            reason: "no server address".into(),
        });
    }
    async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(2))
        .connect(urls)
        .await
        .map_err(|e| BusError::Connect {
            url: url.into(),
            reason: e.to_string(),
        })
}

/// Declares the three streams (an existing stream is used as it is).
pub async fn ensure_streams(
    js: &jetstream::Context,
    subjects: &Subjects,
    settings: StreamSettings,
) -> Result<(), BusError> {
    let common = stream::Config {
        storage: stream::StorageType::File,
        num_replicas: settings.replicas,
        max_age: settings.max_age,
        // Retries of a message whose acknowledgement was lost are stored once.
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    };
    let streams = [
        stream::Config {
            name: subjects.sites_stream(),
            subjects: vec![subjects.all_sites()],
            ..common.clone()
        },
        stream::Config {
            name: subjects.baselines_stream(),
            subjects: vec![subjects.all_baselines()],
            // Only the latest figure of a window matters.
            max_messages_per_subject: 1,
            ..common.clone()
        },
        stream::Config {
            name: subjects.fleet_alerts_stream(),
            subjects: vec![subjects.fleet_alerts()],
            ..common
        },
    ];
    for config in streams {
        let name = config.name.clone();
        js.get_or_create_stream(config)
            .await
            .map_err(|e| BusError::Stream {
                stream: name,
                reason: e.to_string(),
            })?;
    }
    Ok(())
}
