//! Proxyware service domain list and whole-label suffix matcher. HELPER-OWNED.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainMatch<'a> {
    pub service: &'a str,
    /// The listed domain that matched (a suffix of the name on a label boundary).
    pub domain: &'a str,
}

#[derive(Debug, thiserror::Error)]
pub enum DomainListError {
    #[error("line {line}: {reason}")]
    Syntax { line: usize, reason: String },
}

#[derive(Debug, Clone, Default)]
pub struct DomainMatcher {}

impl DomainMatcher {
    pub fn parse(_text: &str) -> Result<DomainMatcher, DomainListError> {
        Ok(DomainMatcher {})
    }

    /// Case-insensitive; a trailing dot is ignored.
    pub fn find(&self, _name: &str) -> Option<DomainMatch<'_>> {
        None
    }

    pub fn service_count(&self) -> usize {
        0
    }
}
