//! Enrichment: names for addresses, service lists, country and ASN.
pub mod dns_cache;
pub mod domains;
pub mod geo;
pub mod naming;
