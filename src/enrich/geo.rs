//! Country and ASN of an address from MaxMind-format databases (maxminddb).
//!
//! Two record layouts are read, detected per record: MaxMind's GeoIP2/GeoLite2
//! (`country.iso_code`, else `registered_country.iso_code`; `autonomous_system_number` and
//! `autonomous_system_organization`) and ip-location-db's (`country_code`; the same two ASN
//! fields). Empty config paths mean the databases `scripts/setup-geo.sh` installed.
use maxminddb::Reader;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Overrides the default install directory of the setup script (else `./geo`).
pub const GEO_DIR_ENV: &str = "EGRESSWATCH_GEO_DIR";
/// File names the setup script installs in the default directory.
pub const DEFAULT_COUNTRY_FILE: &str = "country.mmdb";
pub const DEFAULT_ASN_FILE: &str = "asn.mmdb";
/// Decoded ASN records kept by data offset (many addresses share one record); when full the
/// cache starts over, which bounds it and keeps repeated organisations interned.
const MAX_ASN_CACHE: usize = 16_384;

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

impl GeoInfo {
    /// The country as a Finding's `country` field carries it.
    pub fn country_string(&self) -> Option<String> {
        self.country.map(|c| c.to_string())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("geo database {path}: {reason}")]
pub struct GeoError {
    pub path: String,
    pub reason: String,
}

/// The fields of both layouts, borrowed from the database; absent fields stay None, others
/// are skipped without decoding.
#[derive(Deserialize)]
struct CountryRecord<'a> {
    #[serde(borrow, default)]
    country: Option<IsoCode<'a>>,
    #[serde(borrow, default)]
    registered_country: Option<IsoCode<'a>>,
    #[serde(borrow, default)]
    country_code: Option<&'a str>,
}

impl CountryRecord<'_> {
    /// Where the address is, else (anycast, satellite) the country its network is registered in.
    fn code(&self) -> Option<CountryCode> {
        let code = self
            .country
            .as_ref()
            .and_then(|c| c.iso_code)
            .or(self.country_code)
            .or(self.registered_country.as_ref().and_then(|c| c.iso_code))?;
        CountryCode::parse(code)
    }
}

#[derive(Deserialize)]
struct IsoCode<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
}

#[derive(Deserialize)]
struct AsnRecord<'a> {
    #[serde(default)]
    autonomous_system_number: Option<u32>,
    #[serde(borrow, default)]
    autonomous_system_organization: Option<&'a str>,
}

struct Db {
    reader: Reader<Vec<u8>>,
    path: PathBuf,
}

impl Db {
    fn open(path: &Path) -> Result<Db, GeoError> {
        let reader = Reader::open_readfile(path).map_err(|e| GeoError {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Ok(Db {
            reader,
            path: path.to_path_buf(),
        })
    }

    /// "geo/country.mmdb (GeoLite2-Country, built 2019-06-04)"
    fn describe(&self) -> String {
        let meta = self.reader.metadata();
        let built = crate::alert::rfc3339(meta.build_epoch.saturating_mul(1_000_000_000));
        format!(
            "{} ({}, built {})",
            self.path.display(),
            meta.database_type,
            built.get(..10).unwrap_or(&built),
        )
    }
}

/// Number and organisation of an ASN record.
type AsnFields = (Option<u32>, Option<Arc<str>>);

/// Open databases (either may be missing: lookups then leave that part empty).
#[derive(Default)]
pub struct Geo {
    country: Option<Db>,
    asn: Option<Db>,
    /// ASN record by data offset.
    asn_cache: Mutex<FxHashMap<usize, AsnFields>>,
}

impl Geo {
    /// Opens the configured databases; empty paths fall back to the setup script's install
    /// directory (`$EGRESSWATCH_GEO_DIR`, else `./geo`), where missing files mean no geo.
    pub fn open(config: &GeoConfig) -> Result<Geo, GeoError> {
        let dir = std::env::var_os(GEO_DIR_ENV)
            .filter(|d| !d.is_empty())
            .map_or_else(|| PathBuf::from("geo"), PathBuf::from);
        Geo::open_in(config, &dir)
    }

    /// [`Geo::open`] with the default directory given.
    pub fn open_in(config: &GeoConfig, default_dir: &Path) -> Result<Geo, GeoError> {
        Ok(Geo {
            country: open_one(&config.country_db, &default_dir.join(DEFAULT_COUNTRY_FILE))?,
            asn: open_one(&config.asn_db, &default_dir.join(DEFAULT_ASN_FILE))?,
            asn_cache: Mutex::default(),
        })
    }

    /// No databases: every lookup is empty.
    pub fn disabled() -> Geo {
        Geo::default()
    }

    pub fn is_enabled(&self) -> bool {
        self.country.is_some() || self.asn.is_some()
    }

    pub fn lookup(&self, ip: IpAddr) -> GeoInfo {
        let (asn, as_org) = self.lookup_asn(ip);
        GeoInfo {
            country: self.lookup_country(ip),
            asn,
            as_org,
        }
    }

    fn lookup_country(&self, ip: IpAddr) -> Option<CountryCode> {
        let db = self.country.as_ref()?;
        // A record that fails to decode is treated as unknown: one bad record must not stop a run.
        let record: CountryRecord<'_> = db.reader.lookup(ip).ok()?.decode().ok()??;
        record.code()
    }

    fn lookup_asn(&self, ip: IpAddr) -> AsnFields {
        let Some(db) = self.asn.as_ref() else {
            return (None, None);
        };
        let Ok(result) = db.reader.lookup(ip) else {
            return (None, None);
        };
        let Some(offset) = result.offset() else {
            return (None, None);
        };
        // A poisoned lock only means another thread panicked mid-insert; the map is still valid.
        let mut cache = self
            .asn_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(hit) = cache.get(&offset) {
            return hit.clone();
        }
        let decoded = match result.decode::<AsnRecord<'_>>() {
            Ok(Some(r)) => (
                r.autonomous_system_number,
                r.autonomous_system_organization
                    .filter(|o| !o.is_empty())
                    .map(Arc::from),
            ),
            _ => (None, None),
        };
        if cache.len() >= MAX_ASN_CACHE {
            cache.clear();
        }
        cache.insert(offset, decoded.clone());
        decoded
    }

    /// One line for the run summary: which databases are loaded.
    pub fn describe(&self) -> String {
        match (&self.country, &self.asn) {
            (None, None) => "geo: no databases (run scripts/setup-geo.sh)".into(),
            (c, a) => format!(
                "geo: country {}, asn {}",
                c.as_ref().map_or_else(|| "none".into(), Db::describe),
                a.as_ref().map_or_else(|| "none".into(), Db::describe),
            ),
        }
    }
}

/// An explicit path must open; the default file is optional.
fn open_one(configured: &Path, default: &Path) -> Result<Option<Db>, GeoError> {
    if !configured.as_os_str().is_empty() {
        return Db::open(configured).map(Some);
    }
    if default.is_file() {
        Db::open(default).map(Some)
    } else {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn maxmind(file: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/geo/maxmind-test")
            .join(file)
    }

    fn test_data(file: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/geo")
            .join(file)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn open(country: PathBuf, asn: PathBuf) -> Geo {
        let config = GeoConfig {
            country_db: country,
            asn_db: asn,
        };
        Geo::open_in(&config, Path::new("/nonexistent")).unwrap()
    }

    #[test]
    fn maxmind_country_and_asn_layouts() {
        let geo = open(
            maxmind("GeoIP2-Country-Test.mmdb"),
            maxmind("GeoLite2-ASN-Test.mmdb"),
        );
        let gb = geo.lookup(ip("81.2.69.142"));
        assert_eq!(gb.country, CountryCode::parse("GB"));
        assert_eq!(
            geo.lookup(ip("2001:218::1")).country,
            CountryCode::parse("JP")
        );
        let telstra = geo.lookup(ip("1.128.0.1"));
        assert_eq!(telstra.asn, Some(1221));
        assert_eq!(telstra.as_org.as_deref(), Some("Telstra Pty Ltd"));
        // Unknown address: nothing, not an error.
        assert_eq!(geo.lookup(ip("192.0.2.1")), GeoInfo::default());
        let line = geo.describe();
        assert!(line.starts_with("geo: country "), "{line}");
        assert!(
            line.contains("GeoIP2-Country-Test.mmdb (GeoIP2-Country, built 20"),
            "{line}"
        );
        assert!(line.contains(", asn "), "{line}");
        assert!(
            line.contains("GeoLite2-ASN-Test.mmdb (GeoLite2-ASN, built 20"),
            "{line}"
        );
    }

    #[test]
    fn country_field_precedence() {
        // MaxMind's test databases have no record with only registered_country, so the
        // precedence is checked on the record type itself.
        let code = |json: &str| {
            serde_json::from_str::<CountryRecord<'_>>(json)
                .unwrap()
                .code()
        };
        let registered_only =
            r#"{"registered_country":{"iso_code":"DE","names":{"en":"Germany"}}}"#;
        assert_eq!(code(registered_only), CountryCode::parse("DE"));
        let both = r#"{"country":{"iso_code":"US"},"registered_country":{"iso_code":"DE"}}"#;
        assert_eq!(code(both), CountryCode::parse("US"));
        assert_eq!(code(r#"{"country_code":"nl"}"#), CountryCode::parse("NL"));
        assert_eq!(
            code(r#"{"country":{"names":{}},"country_code":"ZZZ"}"#),
            None
        );
        // In GeoIP2-Country-Test 214.1.1.0/24 has neither country nor registered_country.
        let geo = open(maxmind("GeoIP2-Country-Test.mmdb"), PathBuf::new());
        assert_eq!(geo.lookup(ip("214.1.1.1")).country, None);
        assert_eq!(
            geo.lookup(ip("81.2.69.160")).country,
            CountryCode::parse("GB")
        );
    }

    #[test]
    fn generated_test_databases_are_valid_mmdb() {
        for file in ["country-test.mmdb", "asn-test.mmdb"] {
            let reader = Reader::open_readfile(test_data(file)).unwrap();
            reader.verify().unwrap();
            assert_eq!(reader.metadata().ip_version, 6);
        }
    }

    #[test]
    fn ip_location_db_layouts() {
        // Made by scripts/csv-to-mmdb.mjs from the CSVs beside them (tests/data/geo/README.md).
        let geo = open(test_data("country-test.mmdb"), test_data("asn-test.mmdb"));
        let google = geo.lookup(ip("8.8.8.8"));
        assert_eq!(google.country, CountryCode::parse("US"));
        assert_eq!(google.asn, Some(15169));
        assert_eq!(google.as_org.as_deref(), Some("Google LLC"));
        let v6 = geo.lookup(ip("2001:200::1"));
        assert_eq!(v6.country, CountryCode::parse("JP"));
        assert_eq!(v6.asn, Some(2500));
        // A quoted organisation with a comma survives the CSV and the database.
        let cf = geo.lookup(ip("1.0.0.1"));
        assert_eq!(cf.as_org.as_deref(), Some("Cloudflare, Inc."));
        assert_eq!(geo.lookup(ip("198.51.100.7")), GeoInfo::default());
    }

    #[test]
    fn repeated_orgs_share_one_allocation() {
        let geo = open(PathBuf::new(), test_data("asn-test.mmdb"));
        let a = geo.lookup(ip("8.8.8.8")).as_org.unwrap();
        let b = geo.lookup(ip("8.8.4.4")).as_org.unwrap();
        assert!(Arc::ptr_eq(&a, &b));
    }

    #[test]
    fn missing_defaults_mean_no_geo_but_explicit_paths_must_open() {
        let geo = Geo::open_in(&GeoConfig::default(), Path::new("/nonexistent")).unwrap();
        assert!(!geo.is_enabled());
        assert_eq!(geo.lookup(ip("8.8.8.8")), GeoInfo::default());
        assert_eq!(
            geo.describe(),
            "geo: no databases (run scripts/setup-geo.sh)"
        );

        let config = GeoConfig {
            country_db: PathBuf::from("/nonexistent/GeoLite2-Country.mmdb"),
            asn_db: PathBuf::new(),
        };
        let err = Geo::open_in(&config, Path::new("/nonexistent"))
            .err()
            .unwrap();
        assert_eq!(err.path, "/nonexistent/GeoLite2-Country.mmdb");
        assert!(
            err.to_string()
                .starts_with("geo database /nonexistent/GeoLite2-Country.mmdb: ")
        );

        // A file that is not a database is an error naming it, never a panic.
        let config = GeoConfig {
            country_db: PathBuf::new(),
            asn_db: test_data("README.md"),
        };
        let err = Geo::open_in(&config, Path::new("/nonexistent"))
            .err()
            .unwrap();
        assert!(
            err.path.ends_with("tests/data/geo/README.md"),
            "{}",
            err.path
        );
    }

    #[test]
    fn default_dir_is_used_when_paths_are_empty() {
        // tests/data/geo holds no country.mmdb/asn.mmdb, so point at a dir that does.
        let dir = crate::testing::TempDir::new("geo");
        std::fs::copy(test_data("asn-test.mmdb"), dir.path(DEFAULT_ASN_FILE)).unwrap();
        let geo = Geo::open_in(&GeoConfig::default(), dir.dir()).unwrap();
        drop(dir);
        assert_eq!(geo.lookup(ip("8.8.8.8")).asn, Some(15169));
        assert_eq!(geo.lookup(ip("8.8.8.8")).country, None);
        let line = geo.describe();
        assert!(line.starts_with("geo: country none, asn "), "{line}");
        assert!(
            line.ends_with("asn.mmdb (ip-location-db-asn, built 2026-01-01)"),
            "{line}"
        );
    }

    /// The databases scripts/setup-geo.sh installs, when present (never needed by CI).
    #[test]
    fn installed_databases_when_present() {
        let dir = std::env::var_os(GEO_DIR_ENV).map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("geo"),
            PathBuf::from,
        );
        if !dir.join(DEFAULT_COUNTRY_FILE).is_file() || !dir.join(DEFAULT_ASN_FILE).is_file() {
            eprintln!(
                "skipped: no databases in {} (run scripts/setup-geo.sh)",
                dir.display()
            );
            return;
        }
        let geo = Geo::open_in(&GeoConfig::default(), &dir).unwrap();
        let google = geo.lookup(ip("8.8.8.8"));
        assert_eq!(google.country, CountryCode::parse("US"));
        assert_eq!(google.asn, Some(15169));
    }
}
