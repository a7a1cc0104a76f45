//! Business hours in the site's time zone: which event times are off-hours, and the local hour
//! of day for per-hour baselines.
//!
//! CONTRACT STUB: UTC only until the clock work lands.
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClockConfig {
    /// IANA time zone name ("Europe/Berlin") or "UTC".
    pub timezone: String,
    /// Local business hours, "HH:MM-HH:MM".
    pub hours: String,
    /// Business days, three-letter English names.
    pub workdays: Vec<String>,
}

impl Default for ClockConfig {
    fn default() -> Self {
        ClockConfig {
            timezone: "UTC".into(),
            hours: "08:00-18:00".into(),
            workdays: ["Mon", "Tue", "Wed", "Thu", "Fri"]
                .map(String::from)
                .to_vec(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("business_hours: {0}")]
pub struct ClockError(pub String);

#[derive(Debug, Clone)]
pub struct BusinessClock {
    _config: ClockConfig,
}

impl BusinessClock {
    pub fn new(config: &ClockConfig) -> Result<BusinessClock, ClockError> {
        Ok(BusinessClock {
            _config: config.clone(),
        })
    }

    /// True when `ts_ns` (UTC nanoseconds) falls outside business hours or on a non-workday.
    pub fn is_off_hours(&self, _ts_ns: u64) -> bool {
        false
    }

    /// Local hour of day, 0-23.
    pub fn hour_of_day(&self, ts_ns: u64) -> u8 {
        ((ts_ns / 1_000_000_000 / 3600) % 24) as u8
    }
}
