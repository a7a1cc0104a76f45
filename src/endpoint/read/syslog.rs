//! Syslog lines as rsyslog stores Sysmon for Linux's output (`/var/log/syslog`,
//! `/var/log/messages`, or a remote collector): the event's XML is the message.
//!
//! Headers read (only the host name is kept; the event's own TimeCreated is its time):
//! - RFC 3164 / rsyslog's traditional file format: `[<PRI>]Mmm dd hh:mm:ss HOST TAG: MSG`,
//!   the day space-padded (`Mar  2`) or not; TAG is `sysmon` or `sysmon[PID]`.
//! - rsyslog's high-precision file format: `[<PRI>]2026-03-02T09:03:00.123456+00:00 HOST TAG: MSG`.
//! - RFC 5424: `<PRI>1 TIMESTAMP HOST APP PROCID MSGID SD [MSG]`, SD `-` or `[...]` elements,
//!   MSG optionally after a UTF-8 BOM.

/// A syslog line split into what the reader needs.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Line<'a> {
    /// The HOSTNAME field; None for RFC 5424's `-`.
    pub host: Option<&'a str>,
    /// The message: the event's XML when it starts with `<`, else another program's text.
    pub message: &'a str,
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// The first space-separated token and the rest after the spaces that follow it.
fn token(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start_matches(' ');
    let end = s.find(' ').unwrap_or(s.len());
    let (token, rest) = s.split_at(end);
    (!token.is_empty()).then(|| (token, rest.trim_start_matches(' ')))
}

/// `<PRI>` (0..=191) at the start, if any.
fn strip_pri(line: &str) -> Result<&str, String> {
    let Some(rest) = line.strip_prefix('<') else {
        return Ok(line);
    };
    let close = rest
        .find('>')
        .filter(|&n| (1..=3).contains(&n))
        .ok_or("syslog PRI is not <0..191>")?;
    let (digits, rest) = rest.split_at(close);
    match (digits.parse::<u8>(), rest.strip_prefix('>')) {
        (Ok(pri), Some(rest)) if pri <= 191 && digits.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(rest)
        }
        _ => Err(format!("syslog PRI <{digits}> is not <0..191>")),
    }
}

/// Whether `token` looks like an RFC 3339 timestamp (`2026-03-02T...`).
fn is_rfc3339(token: &str) -> bool {
    let b = token.as_bytes();
    b.len() >= 19
        && b.iter().take(4).all(u8::is_ascii_digit)
        && b.get(4) == Some(&b'-')
        && matches!(b.get(10), Some(b'T' | b't'))
}

/// Skips RFC 5424's STRUCTURED-DATA: `-` or one or more `[id param="value"...]`, where a
/// value escapes `"`, `\` and `]` with a backslash.
fn skip_structured_data(s: &str) -> Result<&str, String> {
    if let Some(rest) = s.strip_prefix('-') {
        return Ok(rest);
    }
    let bytes = s.as_bytes();
    let mut i = 0;
    while bytes.get(i) == Some(&b'[') {
        let mut quoted = false;
        i += 1;
        loop {
            match bytes.get(i) {
                None => return Err("RFC 5424 structured data without its closing ]".to_string()),
                Some(b'\\') if quoted => i += 2,
                Some(b'"') => {
                    quoted = !quoted;
                    i += 1;
                }
                Some(b']') if !quoted => {
                    i += 1;
                    break;
                }
                Some(_) => i += 1,
            }
        }
    }
    if i == 0 {
        return Err("RFC 5424 structured data is neither - nor [...]".to_string());
    }
    s.get(i..)
        .ok_or_else(|| "RFC 5424 structured data cut inside a character".to_string())
}

/// Splits a syslog line into host and message.
pub(super) fn split(line: &str) -> Result<Line<'_>, String> {
    let after_pri = strip_pri(line)?;
    if let Some(rest) = after_pri.strip_prefix("1 ") {
        // RFC 5424: TIMESTAMP HOSTNAME APP-NAME PROCID MSGID, then STRUCTURED-DATA.
        let mut rest = rest;
        let mut fields = [""; 5];
        for field in &mut fields {
            let (value, next) = token(rest).ok_or("RFC 5424 header cut short")?;
            *field = value;
            rest = next;
        }
        let [_, host, ..] = fields;
        let message = skip_structured_data(rest)?;
        let message = message.strip_prefix(' ').unwrap_or(message);
        let message = message.strip_prefix('\u{feff}').unwrap_or(message);
        return Ok(Line {
            host: (host != "-").then_some(host),
            message,
        });
    }
    let (first, rest) = token(after_pri).ok_or("empty syslog line")?;
    let rest = if MONTHS.contains(&first) {
        let (day, rest) = token(rest).ok_or("syslog timestamp cut short")?;
        let (time, rest) = token(rest).ok_or("syslog timestamp cut short")?;
        let day_ok = day.len() <= 2 && day.bytes().all(|b| b.is_ascii_digit());
        let time_ok = time.len() == 8 && time.bytes().filter(|&b| b == b':').count() == 2;
        if !(day_ok && time_ok) {
            return Err(format!(
                "syslog timestamp {first} {day} {time} is not Mmm dd hh:mm:ss"
            ));
        }
        rest
    } else if is_rfc3339(first) {
        rest
    } else {
        return Err("no syslog timestamp (Mmm dd hh:mm:ss or RFC 3339) at the start".to_string());
    };
    let (host, rest) = token(rest).ok_or("syslog line without a host name")?;
    // `TAG: MSG` where TAG has no spaces (`sysmon`, `sysmon[812]`); else all is message.
    let message = match rest.split_once(": ") {
        Some((tag, message)) if !tag.contains(' ') => message,
        _ => rest,
    };
    Ok(Line {
        host: Some(host),
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(host: &'a str, message: &'a str) -> Line<'a> {
        Line {
            host: Some(host),
            message,
        }
    }

    #[test]
    fn bsd_headers() {
        assert_eq!(
            split("Mar  2 09:03:00 ubuntu-build-2 sysmon: <Event/>"),
            Ok(line("ubuntu-build-2", "<Event/>"))
        );
        assert_eq!(
            split("<14>Mar 12 09:03:00 h sysmon[812]: <Event/>"),
            Ok(line("h", "<Event/>"))
        );
        assert_eq!(
            split("2025-12-10T22:27:58.152234+09:00 x sysmon: <Event/>"),
            Ok(line("x", "<Event/>"))
        );
        // Another program's line: a message that is no event.
        assert_eq!(
            split("Mar  2 09:03:01 h CRON[99]: (root) CMD (true)"),
            Ok(line("h", "(root) CMD (true)"))
        );
    }

    #[test]
    fn rfc5424_headers() {
        assert_eq!(
            split("<134>1 2026-03-02T09:03:00.000Z ubuntu-build-2 sysmon 812 - - <Event/>"),
            Ok(line("ubuntu-build-2", "<Event/>"))
        );
        let sd = r#"<134>1 2026-03-02T09:03:00Z h sysmon - ID47 [a x="1\]" y="\"q"][b@1 z="]"] "#;
        assert_eq!(
            split(&format!("{sd}\u{feff}<Event/>")),
            Ok(line("h", "<Event/>"))
        );
        assert_eq!(
            split("<134>1 2026-03-02T09:03:00Z - sysmon - - -"),
            Ok(Line {
                host: None,
                message: ""
            })
        );
    }

    #[test]
    fn bad_headers_say_why() {
        assert!(
            split("<999>Mar  2 09:03:00 h x: y")
                .unwrap_err()
                .contains("PRI")
        );
        assert!(split("<1").unwrap_err().contains("PRI"));
        assert!(split("Mar 2 9h h x: y").unwrap_err().contains("Mmm dd"));
        assert!(
            split("hello world")
                .unwrap_err()
                .contains("no syslog timestamp")
        );
        assert!(
            split("<13>1 2026-03-02T09:03:00Z h")
                .unwrap_err()
                .contains("cut short")
        );
        assert!(
            split("<13>1 2026-03-02T09:03:00Z h a p m [x y=\"]")
                .unwrap_err()
                .contains("closing ]")
        );
        assert!(split("Mar  2 09:03:00").unwrap_err().contains("host"));
    }
}
