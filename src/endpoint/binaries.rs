//! The proxyware binary list (config/proxyware-binaries.txt): file names, SHA-256 hashes and
//! signers per service. File names match whole path components, never substrings, so
//! `mysterium-notes\reader.exe` is no hit where the seed search's substring match is one.
use crate::enrich::domains::strip_comment;
use std::collections::BTreeMap;

pub const BUILTIN_BINARIES: &str = include_str!("../../config/proxyware-binaries.txt");

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct BinaryListError {
    pub line: usize,
    pub reason: String,
}

/// What a hit matched on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchedBy {
    FileName,
    OriginalFileName,
    Hash,
    Signer,
}

impl MatchedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchedBy::FileName => "file name",
            MatchedBy::OriginalFileName => "original file name",
            MatchedBy::Hash => "SHA-256",
            MatchedBy::Signer => "signer",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryHit<'a> {
    pub service: &'a str,
    /// The list entry that matched (file name, hash or signer as listed).
    pub entry: &'a str,
    pub by: MatchedBy,
}

#[derive(Debug, Clone, Default)]
pub struct BinaryMatcher {
    /// Lower-case file name -> (service, entry).
    names: BTreeMap<String, (String, String)>,
    /// Lower-case hex SHA-256 -> service.
    hashes: BTreeMap<String, String>,
    signers: BTreeMap<String, String>,
}

impl BinaryMatcher {
    pub fn parse(text: &str) -> Result<BinaryMatcher, BinaryListError> {
        let mut m = BinaryMatcher::default();
        let mut service: Option<String> = None;
        for (i, raw) in text.lines().enumerate() {
            let line_no = i + 1;
            let err = |reason: String| BinaryListError {
                line: line_no,
                reason,
            };
            let line = strip_comment(raw).trim();
            if line.is_empty() {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                let name = name.trim();
                if name.is_empty() {
                    return Err(err("empty service name".into()));
                }
                service = Some(name.to_string());
                continue;
            }
            let Some(service) = &service else {
                return Err(err("entry before the first [Service]".into()));
            };
            let (entry, source) = split_entry(line);
            if source.is_empty() {
                return Err(err(format!("{entry}: no source")));
            }
            let duplicate = || err(format!("{entry}: listed twice"));
            if let Some(hex) = entry.strip_prefix("sha256:") {
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(err(format!("{entry}: not 64 hex digits")));
                }
                if m.hashes
                    .insert(hex.to_ascii_lowercase(), service.clone())
                    .is_some()
                {
                    return Err(duplicate());
                }
            } else if let Some(signer) = entry.strip_prefix("signer:") {
                let signer = signer.trim_matches('"');
                if signer.is_empty() {
                    return Err(err("empty signer".into()));
                }
                if m.signers
                    .insert(signer.to_string(), service.clone())
                    .is_some()
                {
                    return Err(duplicate());
                }
            } else {
                if entry.contains(['/', '\\']) {
                    return Err(err(format!("{entry}: a file name, not a path")));
                }
                if m.names
                    .insert(
                        entry.to_ascii_lowercase(),
                        (service.clone(), entry.to_string()),
                    )
                    .is_some()
                {
                    return Err(duplicate());
                }
            }
        }
        Ok(m)
    }

    pub fn entries(&self) -> usize {
        self.names.len() + self.hashes.len() + self.signers.len()
    }

    /// A path (Windows or POSIX) whose last component is a listed file name.
    pub fn path(&self, path: &str) -> Option<BinaryHit<'_>> {
        self.file_name(file_name(path), MatchedBy::FileName)
    }

    pub fn file_name(&self, name: &str, by: MatchedBy) -> Option<BinaryHit<'_>> {
        let name = name.trim().trim_matches('"');
        if name.is_empty() {
            return None;
        }
        self.names
            .get(&name.to_ascii_lowercase())
            .map(|(service, entry)| BinaryHit { service, entry, by })
    }

    /// Sysmon's Hashes field (`SHA1=..,MD5=..,SHA256=..,IMPHASH=..`).
    pub fn hashes(&self, hashes: &str) -> Option<BinaryHit<'_>> {
        hashes
            .split(',')
            .filter_map(|h| h.trim().split_once('='))
            .filter(|(kind, _)| kind.eq_ignore_ascii_case("SHA256"))
            .find_map(|(_, hex)| {
                self.hashes
                    .get_key_value(&hex.trim().to_ascii_lowercase())
                    .map(|(entry, service)| BinaryHit {
                        service,
                        entry,
                        by: MatchedBy::Hash,
                    })
            })
    }

    pub fn signer(&self, signature: &str) -> Option<BinaryHit<'_>> {
        self.signers
            .get_key_value(signature.trim())
            .map(|(entry, service)| BinaryHit {
                service,
                entry,
                by: MatchedBy::Signer,
            })
    }
}

/// The last component of a Windows or POSIX path.
pub fn file_name(path: &str) -> &str {
    let path = path.trim().trim_matches('"');
    path.rsplit(['\\', '/']).next().unwrap_or(path)
}

/// The program of a command line (a Run value, a CommandLine): the quoted first word, or the
/// first word.
pub fn program(command: &str) -> &str {
    let command = command.trim_start();
    if let Some(rest) = command.strip_prefix('"') {
        return rest.split('"').next().unwrap_or(rest);
    }
    command.split_whitespace().next().unwrap_or("")
}

/// `ENTRY  source`; a quoted signer may hold spaces.
fn split_entry(line: &str) -> (&str, &str) {
    if let Some(rest) = line.strip_prefix("signer:\"")
        && let Some(end) = rest.find('"')
    {
        let cut = "signer:\"".len() + end + 1;
        return (&line[..cut], line[cut..].trim());
    }
    match line.split_once(char::is_whitespace) {
        Some((entry, source)) => (entry, source.trim()),
        None => (line, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_list_parses_and_matches_whole_file_names() {
        let m = BinaryMatcher::parse(BUILTIN_BINARIES).unwrap();
        assert!(m.entries() >= 16);
        let hit = m
            .path(r"C:\Users\alice\AppData\Local\Programs\Honeygain\Honeygain.exe")
            .unwrap();
        assert_eq!((hit.service, hit.entry), ("Honeygain", "honeygain.exe"));
        assert!(
            m.path(r"C:\Users\alice\mysterium-notes\reader.exe")
                .is_none()
        );
        assert!(m.path(r"C:\Tools\notpawns.exe").is_none());
        assert_eq!(m.path("/opt/p2p/p2pclient").unwrap().service, "Peer2Profit");
    }

    #[test]
    fn hashes_signers_and_errors() {
        let hex = "ab".repeat(32);
        let text = format!(
            "[X]\nsha256:{hex}  a source\nsigner:\"X Corp, Ltd\"  another\nx.exe  s # comment\n"
        );
        let m = BinaryMatcher::parse(&text).unwrap();
        let hashes = format!("SHA1=00,MD5=11,SHA256={},IMPHASH=22", hex.to_uppercase());
        assert_eq!(m.hashes(&hashes).unwrap().by, MatchedBy::Hash);
        assert_eq!(m.signer("X Corp, Ltd").unwrap().service, "X");
        assert!(m.signer("X Corp").is_none());
        for (bad, why) in [
            ("x.exe source", "before the first"),
            ("[X]\nx.exe", "no source"),
            ("[X]\nsha256:12 s", "64 hex"),
            ("[X]\nC:\\x.exe s", "not a path"),
            ("[X]\nx.exe s\n[Y]\nX.EXE t", "twice"),
        ] {
            let e = BinaryMatcher::parse(bad).unwrap_err();
            assert!(e.to_string().contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn programs_of_command_lines() {
        assert_eq!(program(r#""C:\a b\T.exe" --token 1"#), r"C:\a b\T.exe");
        assert_eq!(program("dig honeygain.com"), "dig");
        assert_eq!(file_name("/usr/bin/dig"), "dig");
        assert_eq!(file_name(r#""C:\x\y.exe""#), "y.exe");
    }
}
