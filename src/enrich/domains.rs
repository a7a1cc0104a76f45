//! Proxyware service domain list and whole-label suffix matcher.
//!
//! The list format is documented in the header of
//! `config/proxyware-domains.txt`: `[Service]` blocks of `domain  source`
//! lines, `#` comments. A listed domain matches itself and its subdomains.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

/// Longest DNS name in text form, without the root dot (RFC 1035 limits).
const MAX_NAME_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;

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
    #[error(
        "line {line}: domain {domain} (for {service}) is already listed at line {first_line} (for {first_service})"
    )]
    DuplicateDomain {
        domain: String,
        line: usize,
        service: String,
        first_line: usize,
        first_service: String,
    },
    #[error("line {line}: service [{service}] is already opened at line {first_line}")]
    DuplicateService {
        service: String,
        line: usize,
        first_line: usize,
    },
}

impl DomainListError {
    /// The (1-based) line the error was found on.
    pub fn line(&self) -> usize {
        match self {
            Self::Syntax { line, .. }
            | Self::DuplicateDomain { line, .. }
            | Self::DuplicateService { line, .. } => *line,
        }
    }
}

fn syntax(line: usize, reason: impl Into<String>) -> DomainListError {
    DomainListError::Syntax {
        line,
        reason: reason.into(),
    }
}

#[derive(Debug, Clone, Default)]
pub struct DomainMatcher {
    /// Service names in file order.
    services: Vec<Box<str>>,
    /// Lower-case listed domain -> index into `services`.
    domains: HashMap<Box<str>, usize>,
}

/// The block being filled while parsing.
struct OpenBlock<'t> {
    index: usize,
    name: &'t str,
    header_line: usize,
    domains: usize,
}

impl DomainMatcher {
    pub fn parse(text: &str) -> Result<DomainMatcher, DomainListError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut services: Vec<Box<str>> = Vec::new();
        let mut service_lines: HashMap<&str, usize> = HashMap::new();
        // Domain -> (service index, line), the line kept for duplicate reports.
        let mut domains: HashMap<Box<str>, (usize, usize)> = HashMap::new();
        let mut open: Option<OpenBlock<'_>> = None;

        for (idx, raw) in text.lines().enumerate() {
            let line_no = idx + 1;
            let line = strip_comment(raw).trim();
            if line.is_empty() {
                continue;
            }

            if let Some(rest) = line.strip_prefix('[') {
                if let Some(block) = &open {
                    check_not_empty(block)?;
                }
                let name = parse_header(rest).map_err(|reason| syntax(line_no, reason))?;
                if let Some(&first_line) = service_lines.get(name) {
                    return Err(DomainListError::DuplicateService {
                        service: name.to_string(),
                        line: line_no,
                        first_line,
                    });
                }
                service_lines.insert(name, line_no);
                let index = services.len();
                services.push(name.into());
                open = Some(OpenBlock {
                    index,
                    name,
                    header_line: line_no,
                    domains: 0,
                });
                continue;
            }

            let Some(block) = open.as_mut() else {
                return Err(syntax(line_no, "domain line before any [service] header"));
            };
            let (domain, source) = match line.split_once(char::is_whitespace) {
                Some((domain, source)) => (domain, source.trim()),
                None => (line, ""),
            };
            validate_domain(domain).map_err(|reason| syntax(line_no, reason))?;
            if source.is_empty() {
                return Err(syntax(line_no, format!("domain {domain} has no source")));
            }
            match domains.entry(domain.into()) {
                Entry::Occupied(seen) => {
                    let (first_index, first_line) = *seen.get();
                    let first_service = services
                        .get(first_index)
                        .map(|s| s.to_string())
                        .unwrap_or_default();
                    return Err(DomainListError::DuplicateDomain {
                        domain: domain.to_string(),
                        line: line_no,
                        service: block.name.to_string(),
                        first_line,
                        first_service,
                    });
                }
                Entry::Vacant(slot) => {
                    slot.insert((block.index, line_no));
                }
            }
            block.domains += 1;
        }
        if let Some(block) = &open {
            check_not_empty(block)?;
        }

        Ok(DomainMatcher {
            services,
            domains: domains
                .into_iter()
                .map(|(domain, (index, _))| (domain, index))
                .collect(),
        })
    }

    /// A matcher for a plain list of domains from the config (allowlists), one service `key`.
    pub fn from_list(key: &str, domains: &[String]) -> Result<DomainMatcher, DomainListError> {
        if domains.is_empty() {
            return Ok(DomainMatcher::default());
        }
        let text: String = std::iter::once(format!("[{key}]"))
            .chain(
                domains
                    .iter()
                    .map(|d| format!("{} config", d.trim().to_ascii_lowercase())),
            )
            .collect::<Vec<_>>()
            .join("\n");
        DomainMatcher::parse(&text)
    }

    /// Case-insensitive; a trailing dot is ignored.
    ///
    /// Walks the name's label suffixes from the longest, so the most specific
    /// listed domain wins. No allocation: the name is lower-cased into a stack
    /// buffer, and names longer than a DNS name can be simply do not match.
    pub fn find(&self, name: &str) -> Option<DomainMatch<'_>> {
        let name = name.strip_suffix('.').unwrap_or(name);
        if name.is_empty() || name.len() > MAX_NAME_LEN || self.domains.is_empty() {
            return None;
        }
        let mut buf = [0u8; MAX_NAME_LEN];
        let lowered = buf.get_mut(..name.len())?;
        for (dst, src) in lowered.iter_mut().zip(name.bytes()) {
            *dst = src.to_ascii_lowercase();
        }
        // Only ASCII bytes changed, so this stays valid UTF-8.
        let mut suffix = std::str::from_utf8(lowered).ok()?;
        loop {
            if let Some((domain, &index)) = self.domains.get_key_value(suffix) {
                let service = self.services.get(index)?;
                return Some(DomainMatch { service, domain });
            }
            suffix = suffix.split_once('.')?.1;
        }
    }

    pub fn service_count(&self) -> usize {
        self.services.len()
    }

    pub fn domain_count(&self) -> usize {
        self.domains.len()
    }

    /// Service names in the order the list declares them.
    pub fn services(&self) -> impl Iterator<Item = &str> {
        self.services.iter().map(|s| &**s)
    }
}

/// Cuts a `#` comment. Only a `#` at the start or after whitespace counts, so
/// URL fragments in a source survive.
pub(crate) fn strip_comment(line: &str) -> &str {
    let mut after_space = true;
    for (i, c) in line.char_indices() {
        if c == '#' && after_space {
            return line.get(..i).unwrap_or("");
        }
        after_space = c.is_whitespace();
    }
    line
}

/// `rest` is a header line after its `[`; returns the service name.
fn parse_header(rest: &str) -> Result<&str, String> {
    let Some(inner) = rest.strip_suffix(']') else {
        return Err("service header must be `[Service Name]` alone on its line".into());
    };
    let name = inner.trim();
    if name.is_empty() {
        return Err("empty service name".into());
    }
    if name.contains(['[', ']']) || name.chars().any(char::is_control) {
        return Err(format!("invalid service name {name:?}"));
    }
    Ok(name)
}

fn check_not_empty(block: &OpenBlock<'_>) -> Result<(), DomainListError> {
    if block.domains == 0 {
        return Err(syntax(
            block.header_line,
            format!("service [{}] lists no domains", block.name),
        ));
    }
    Ok(())
}

/// Keeps the list canonical so lookups can compare lower-cased names exactly,
/// and refuses entries that would match far more than one service.
fn validate_domain(domain: &str) -> Result<(), String> {
    if domain.contains('*') {
        return Err(format!(
            "wildcard in {domain:?}: a listed domain already matches its subdomains"
        ));
    }
    if domain.starts_with('.') {
        return Err(format!("leading dot in {domain:?}"));
    }
    if domain.ends_with('.') {
        return Err(format!("trailing dot in {domain:?}"));
    }
    if domain.len() > MAX_NAME_LEN {
        return Err(format!("domain longer than {MAX_NAME_LEN} bytes"));
    }
    if domain.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!("{domain:?} must be lower-case"));
    }
    let mut labels = 0usize;
    let mut last = "";
    for label in domain.split('.') {
        if label.is_empty() {
            return Err(format!("empty label in {domain:?}"));
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(format!(
                "label longer than {MAX_LABEL_LEN} bytes in {domain:?}"
            ));
        }
        if let Some(bad) = label
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(format!("invalid character {bad:?} in {domain:?}"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label {label:?} starts or ends with '-'"));
        }
        labels += 1;
        last = label;
    }
    if labels < 2 {
        return Err(format!(
            "{domain:?} is a single label and would match a whole top-level domain"
        ));
    }
    if last.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{domain:?} looks like an IP address, not a domain"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
# sample list
[Honeygain]
honeygain.com   https://example.org/hg   # trailing comment

[IPRoyal Pawns]
pawns.app       https://example.org/pawns#fragment
[EarnApp]
earnapp.com     short citation with spaces
[Outer]
outer.test      src
[Inner]
api.outer.test src
";

    fn sample() -> DomainMatcher {
        match DomainMatcher::parse(SAMPLE) {
            Ok(m) => m,
            Err(e) => panic!("sample list must parse: {e}"),
        }
    }

    fn service_of(m: &DomainMatcher, name: &str) -> Option<String> {
        m.find(name).map(|hit| hit.service.to_string())
    }

    /// Parses `text` expecting a failure; returns the error.
    fn parse_err(text: &str) -> DomainListError {
        match DomainMatcher::parse(text) {
            Ok(m) => panic!(
                "expected an error for {text:?}, got {} services",
                m.service_count()
            ),
            Err(e) => e,
        }
    }

    /// Asserts a syntax error on `line` whose reason mentions `needle`.
    fn assert_syntax(text: &str, line: usize, needle: &str) {
        match parse_err(text) {
            DomainListError::Syntax { line: l, reason } => {
                assert_eq!(l, line, "wrong line for {text:?}: {reason}");
                assert!(
                    reason.contains(needle),
                    "reason {reason:?} should mention {needle:?}"
                );
            }
            other => panic!("expected a syntax error for {text:?}, got {other:?}"),
        }
    }

    #[test]
    fn counts_and_service_order() {
        let m = sample();
        assert_eq!(m.service_count(), 5);
        assert_eq!(m.domain_count(), 5);
        let names: Vec<&str> = m.services().collect();
        assert_eq!(
            names,
            ["Honeygain", "IPRoyal Pawns", "EarnApp", "Outer", "Inner"]
        );
    }

    #[test]
    fn exact_and_subdomain_matches() {
        let m = sample();
        assert_eq!(
            m.find("honeygain.com"),
            Some(DomainMatch {
                service: "Honeygain",
                domain: "honeygain.com"
            })
        );
        assert_eq!(
            m.find("api.pawns.app"),
            Some(DomainMatch {
                service: "IPRoyal Pawns",
                domain: "pawns.app"
            })
        );
        assert_eq!(
            service_of(&m, "a.b.c.earnapp.com").as_deref(),
            Some("EarnApp")
        );
    }

    #[test]
    fn look_alikes_do_not_match() {
        let m = sample();
        for name in [
            "notpawns.app",
            "pawns.app.example.net",
            "pawns.apps",
            "myhoneygain.com",
            "honeygain.com.example.org",
            "earnapp.community",
            "earnapp.co",
            "pawns",
            "app",
            "com",
            "",
            ".",
            "..",
        ] {
            assert_eq!(m.find(name), None, "{name:?} must not match");
        }
    }

    #[test]
    fn case_and_trailing_dot_are_ignored() {
        let m = sample();
        let hit = m.find("API.PawNs.App.");
        assert_eq!(
            hit.map(|h| (h.service, h.domain)),
            Some(("IPRoyal Pawns", "pawns.app"))
        );
        assert_eq!(
            service_of(&m, "HONEYGAIN.COM").as_deref(),
            Some("Honeygain")
        );
        assert_eq!(
            service_of(&m, "honeygain.com.").as_deref(),
            Some("Honeygain")
        );
        // Only one root dot is stripped; a doubled one is not a DNS name.
        assert_eq!(m.find("honeygain.com.."), None);
    }

    #[test]
    fn non_ascii_prefix_still_matches_on_its_suffix() {
        let m = sample();
        assert_eq!(
            service_of(&m, "ü.pawns.app").as_deref(),
            Some("IPRoyal Pawns")
        );
        assert_eq!(m.find("pawns.äpp"), None);
    }

    #[test]
    fn most_specific_listed_suffix_wins() {
        let m = sample();
        let domain_of = |n: &str| m.find(n).map(|h| (h.service, h.domain));
        assert_eq!(
            domain_of("api.outer.test"),
            Some(("Inner", "api.outer.test"))
        );
        assert_eq!(
            domain_of("x.API.outer.test"),
            Some(("Inner", "api.outer.test"))
        );
        assert_eq!(domain_of("www.outer.test"), Some(("Outer", "outer.test")));
        assert_eq!(domain_of("xapi.outer.test"), Some(("Outer", "outer.test")));
        assert_eq!(domain_of("outer.test"), Some(("Outer", "outer.test")));
    }

    #[test]
    fn name_length_limit() {
        let m = sample();
        let suffix = ".pawns.app";
        // Labels of 63 'a's joined by dots, padded to exactly `len` bytes.
        let name_of_len = |len: usize| {
            let mut prefix = String::new();
            while prefix.len() + suffix.len() < len {
                if prefix.len() % 64 == 63 {
                    prefix.push('.');
                } else {
                    prefix.push('a');
                }
            }
            format!("{prefix}{suffix}")
        };
        let longest = name_of_len(MAX_NAME_LEN);
        assert_eq!(longest.len(), MAX_NAME_LEN);
        assert!(
            m.find(&longest).is_some(),
            "a 253-byte name is a valid DNS name"
        );
        assert!(
            m.find(&format!("{longest}.")).is_some(),
            "root dot is not counted"
        );
        let too_long = name_of_len(MAX_NAME_LEN + 1);
        assert_eq!(too_long.len(), MAX_NAME_LEN + 1);
        assert_eq!(m.find(&too_long), None);
    }

    #[test]
    fn empty_list_matches_nothing() {
        let m = match DomainMatcher::parse("# nothing here\n\n") {
            Ok(m) => m,
            Err(e) => panic!("comment-only list must parse: {e}"),
        };
        assert_eq!(m.service_count(), 0);
        assert_eq!(m.domain_count(), 0);
        assert_eq!(m.find("honeygain.com"), None);
        assert_eq!(DomainMatcher::default().find("honeygain.com"), None);
    }

    #[test]
    fn crlf_bom_and_indentation_are_accepted() {
        let text = "\u{feff}[A]\r\n  a.example  src\r\n\t[B] # note\r\nb.example\tsrc\r\n";
        let m = match DomainMatcher::parse(text) {
            Ok(m) => m,
            Err(e) => panic!("must parse: {e}"),
        };
        assert_eq!(service_of(&m, "x.a.example").as_deref(), Some("A"));
        assert_eq!(service_of(&m, "b.example").as_deref(), Some("B"));
    }

    #[test]
    fn comment_only_starts_at_line_start_or_after_whitespace() {
        assert_eq!(strip_comment("# all comment"), "");
        assert_eq!(strip_comment("a.com src # note"), "a.com src ");
        assert_eq!(strip_comment("a.com\tsrc\t#note"), "a.com\tsrc\t");
        assert_eq!(
            strip_comment("a.com https://x.org/#frag"),
            "a.com https://x.org/#frag"
        );
        assert_eq!(strip_comment("a.com src#x"), "a.com src#x");
    }

    #[test]
    fn domain_before_any_header() {
        assert_syntax(
            "honeygain.com src\n[Honeygain]\n",
            1,
            "before any [service]",
        );
    }

    #[test]
    fn malformed_headers() {
        assert_syntax("[Honeygain\nhoneygain.com src\n", 1, "alone on its line");
        assert_syntax(
            "[Honeygain] extra\nhoneygain.com src\n",
            1,
            "alone on its line",
        );
        assert_syntax("[   ]\nhoneygain.com src\n", 1, "empty service name");
        assert_syntax(
            "[Honey[gain]\nhoneygain.com src\n",
            1,
            "invalid service name",
        );
    }

    #[test]
    fn block_without_domains() {
        assert_syntax(
            "[A]\n# nothing\n[B]\nb.example src\n",
            1,
            "lists no domains",
        );
        assert_syntax("[A]\na.example src\n\n[B]\n", 4, "lists no domains");
    }

    #[test]
    fn missing_source() {
        assert_syntax("[A]\na.example\n", 2, "has no source");
        // A comment is not a source.
        assert_syntax("[A]\na.example   # only a comment\n", 2, "has no source");
    }

    #[test]
    fn invalid_domains() {
        let cases = [
            ("Honeygain.com", "lower-case"),
            (".honeygain.com", "leading dot"),
            ("honeygain.com.", "trailing dot"),
            ("*.honeygain.com", "wildcard"),
            ("honey*gain.com", "wildcard"),
            ("honeygain..com", "empty label"),
            ("honey_gain.com", "invalid character"),
            ("hönigain.com", "invalid character"),
            ("-honeygain.com", "starts or ends with '-'"),
            ("honeygain-.com", "starts or ends with '-'"),
            ("com", "single label"),
            ("10.0.0.1", "IP address"),
        ];
        for (domain, needle) in cases {
            assert_syntax(&format!("[A]\n{domain} src\n"), 2, needle);
        }
        let long_label = format!("{}.com", "a".repeat(MAX_LABEL_LEN + 1));
        assert_syntax(&format!("[A]\n{long_label} src\n"), 2, "label longer");
        let max_label = format!("{}.com", "a".repeat(MAX_LABEL_LEN));
        assert!(DomainMatcher::parse(&format!("[A]\n{max_label} src\n")).is_ok());
        let long_name = format!("{}com", "abcdefghi.".repeat(26));
        assert!(long_name.len() > MAX_NAME_LEN);
        assert_syntax(&format!("[A]\n{long_name} src\n"), 2, "longer than 253");
    }

    #[test]
    fn duplicate_domain_across_services_names_both_lines() {
        let err = parse_err("[A]\nshared.example src\n[B]\nb.example src\nshared.example src\n");
        match &err {
            DomainListError::DuplicateDomain {
                domain,
                line,
                service,
                first_line,
                first_service,
            } => {
                assert_eq!(domain, "shared.example");
                assert_eq!((*line, service.as_str()), (5, "B"));
                assert_eq!((*first_line, first_service.as_str()), (2, "A"));
            }
            other => panic!("expected DuplicateDomain, got {other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains("line 5") && msg.contains("line 2"), "{msg}");
        assert_eq!(err.line(), 5);
    }

    #[test]
    fn duplicate_domain_within_a_service() {
        match parse_err("[A]\na.example src\na.example other\n") {
            DomainListError::DuplicateDomain {
                line, first_line, ..
            } => assert_eq!((line, first_line), (3, 2)),
            other => panic!("expected DuplicateDomain, got {other:?}"),
        }
    }

    #[test]
    fn duplicate_service_header() {
        let err = parse_err("[A]\na.example src\n[A]\nb.example src\n");
        match &err {
            DomainListError::DuplicateService {
                service,
                line,
                first_line,
            } => assert_eq!((service.as_str(), *line, *first_line), ("A", 3, 1)),
            other => panic!("expected DuplicateService, got {other:?}"),
        }
        assert!(err.to_string().starts_with("line 3:"), "{err}");
    }

    #[test]
    fn syntax_error_display_names_the_line() {
        let err = parse_err("[A]\na.example src\nB.example src\n");
        assert_eq!(err.line(), 3);
        assert!(err.to_string().starts_with("line 3: "), "{err}");
    }

    const SHIPPED: &str = include_str!("../../config/proxyware-domains.txt");

    const REQUIRED_SERVICES: [&str; 20] = [
        "Honeygain",
        "IPRoyal Pawns",
        "Peer2Profit",
        "PacketStream",
        "Traffmonetizer",
        "EarnApp",
        "Repocket",
        "Bitping",
        "Mysterium",
        "ProxyRack",
        "Grass",
        "Speedshare",
        "PacketShare",
        "Earn.fm",
        "ProxyLite",
        "Wipter",
        "Titan",
        "Nodepay",
        "Gradient",
        "Dawn",
    ];

    fn shipped() -> DomainMatcher {
        match DomainMatcher::parse(SHIPPED) {
            Ok(m) => m,
            Err(e) => panic!("config/proxyware-domains.txt must parse: {e}"),
        }
    }

    #[test]
    fn shipped_list_has_every_required_service() {
        let m = shipped();
        let names: Vec<&str> = m.services().collect();
        for required in REQUIRED_SERVICES {
            assert!(names.contains(&required), "missing service [{required}]");
        }
        assert!(m.domain_count() >= m.service_count());
    }

    #[test]
    fn shipped_list_cites_a_source_on_every_domain_line() {
        // Independent of the parser: every non-comment, non-header line must
        // carry at least a domain and one more token.
        let mut domain_lines = 0;
        for (idx, raw) in SHIPPED.lines().enumerate() {
            let line = strip_comment(raw).trim();
            if line.is_empty() || line.starts_with('[') {
                continue;
            }
            domain_lines += 1;
            assert!(
                line.split_whitespace().count() >= 2,
                "line {}: domain without a source: {line:?}",
                idx + 1
            );
        }
        assert_eq!(domain_lines, shipped().domain_count());
    }

    #[test]
    fn shipped_list_maps_test_capture_domains() {
        let m = shipped();
        for (name, service) in [
            ("honeygain.com", "Honeygain"),
            ("pawns.app", "IPRoyal Pawns"),
            ("earnapp.com", "EarnApp"),
            ("traffmonetizer.com", "Traffmonetizer"),
            ("packetstream.io", "PacketStream"),
            ("api.honeygain.com.", "Honeygain"),
            ("API.PAWNS.APP", "IPRoyal Pawns"),
        ] {
            assert_eq!(service_of(&m, name).as_deref(), Some(service), "{name}");
        }
    }

    #[test]
    fn shipped_list_leaves_out_shared_domains() {
        let m = shipped();
        for name in [
            "brightdata.com",
            "iproyal.com",
            "proxyrack.com",
            "www.proxyrack.com",
            "ipinfo.io",
            "identitytoolkit.googleapis.com",
            "google.com",
            "example.com",
        ] {
            assert_eq!(
                m.find(name),
                None,
                "{name} must not be attributed to a service"
            );
        }
    }
}
