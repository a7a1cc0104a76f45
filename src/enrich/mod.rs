//! Enrichment: names for addresses, service lists.
pub mod dns_cache;
pub mod domains;
