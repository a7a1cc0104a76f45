//! Country and ASN of an address from MaxMind-format databases (maxminddb).
//!
//! CONTRACT STUB: lookups return nothing until the geo work lands.
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct GeoConfig {
    /// Country database (.mmdb); empty means the one the setup script installed, if any.
    pub country_db: PathBuf,
    /// ASN database (.mmdb); empty means the one the setup script installed, if any.
    pub asn_db: PathBuf,
}

/// ISO 3166-1 alpha-2 country code, upper case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CountryCode(pub [u8; 2]);

impl CountryCode {
    pub fn parse(s: &str) -> Option<CountryCode> {
        match s.as_bytes() {
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => Some(CountryCode([
                a.to_ascii_uppercase(),
                b.to_ascii_uppercase(),
            ])),
            _ => None,
        }
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

impl std::fmt::Display for CountryCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for CountryCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for CountryCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        CountryCode::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("invalid country code '{s}'")))
    }
}

/// What the databases say about one address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GeoInfo {
    pub country: Option<CountryCode>,
    pub asn: Option<u32>,
    pub as_org: Option<Arc<str>>,
}

#[derive(Debug, thiserror::Error)]
#[error("geo database {path}: {reason}")]
pub struct GeoError {
    pub path: String,
    pub reason: String,
}

/// Open databases (either may be missing: lookups then leave that part empty).
#[derive(Default)]
pub struct Geo {}

impl Geo {
    pub fn open(_config: &GeoConfig) -> Result<Geo, GeoError> {
        Ok(Geo {})
    }

    /// No databases: every lookup is empty.
    pub fn disabled() -> Geo {
        Geo {}
    }

    pub fn lookup(&self, _ip: IpAddr) -> GeoInfo {
        GeoInfo::default()
    }

    /// One line for the run summary: which databases are loaded.
    pub fn describe(&self) -> String {
        "geo: no databases loaded".into()
    }
}
