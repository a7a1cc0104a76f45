//! Text for a person at a terminal: display widths, cutting with an ellipsis, wrapping, and
//! severity colours (only on a terminal, never with NO_COLOR; never in JSON).
use std::io::IsTerminal;
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

/// Columns assumed when the terminal's size is unknown (not a terminal, no `COLUMNS`).
pub const DEFAULT_WIDTH: usize = 100;
/// Narrower "terminals" are taken as unknown: a pty whose size was never set reports 0.
const MIN_WIDTH: usize = 20;
const ELLIPSIS: char = '…';

/// How text is laid out: the columns it must fit in, and whether ANSI colours may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    pub width: usize,
    pub colour: bool,
}

impl Style {
    /// No colours, `width` columns.
    pub fn plain(width: usize) -> Style {
        Style {
            width,
            colour: false,
        }
    }

    /// For stdout: the terminal's width and colours when stdout is a terminal; otherwise
    /// `COLUMNS` or [`DEFAULT_WIDTH`] and no colours. `NO_COLOR` (non-empty) always wins.
    pub fn for_stdout() -> Style {
        let terminal = std::io::stdout().is_terminal();
        let size = if terminal {
            console::Term::stdout()
                .size_checked()
                .map(|(_rows, cols)| usize::from(cols))
        } else {
            None
        };
        Style {
            width: choose_width(size, std::env::var("COLUMNS").ok().as_deref()),
            colour: terminal && !no_color(std::env::var_os("NO_COLOR").as_deref()),
        }
    }
}

/// The terminal's columns when known, else `COLUMNS`, else [`DEFAULT_WIDTH`].
fn choose_width(terminal: Option<usize>, columns_env: Option<&str>) -> usize {
    terminal
        .filter(|&w| w >= MIN_WIDTH)
        .or_else(|| {
            columns_env
                .and_then(|c| c.trim().parse().ok())
                .filter(|&w| w >= MIN_WIDTH)
        })
        .unwrap_or(DEFAULT_WIDTH)
}

/// no-color.org: colours are off when `NO_COLOR` is present and not empty.
pub fn no_color(value: Option<&std::ffi::OsStr>) -> bool {
    value.is_some_and(|v| !v.is_empty())
}

/// Columns `s` takes on a terminal.
pub fn width(s: &str) -> usize {
    UnicodeWidthStr::width(s)
}

/// Safe to print: control characters (which could move the cursor or start an escape
/// sequence: names come off the wire) become spaces or U+FFFD.
pub fn clean(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\n' | '\r' | '\t' => ' ',
            c if c.is_control() => char::REPLACEMENT_CHARACTER,
            c => c,
        })
        .collect()
}

/// `s` in at most `max` columns: cut with `…` when longer.
pub fn cut(s: &str, max: usize) -> String {
    if width(s) <= max {
        return s.to_string();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let w = c.width().unwrap_or(0);
        if used + w + 1 > max {
            break;
        }
        out.push(c);
        used += w;
    }
    if max > 0 {
        out.push(ELLIPSIS);
    }
    out
}

/// `s` cut to `w` columns and padded with spaces to exactly `w` (right-aligned if `right`).
pub fn pad(s: &str, w: usize, right: bool) -> String {
    let s = cut(s, w);
    let fill = " ".repeat(w.saturating_sub(width(&s)));
    if right { fill + &s } else { s + &fill }
}

/// Word-wraps `s` into lines of at most `w` columns; a word longer than a line is split.
pub fn wrap(s: &str, w: usize) -> Vec<String> {
    let w = w.max(1);
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in s.split_whitespace() {
        let sep = usize::from(!line.is_empty());
        if width(&line) + sep + width(word) <= w {
            if sep == 1 {
                line.push(' ');
            }
            line.push_str(word);
            continue;
        }
        if !line.is_empty() {
            lines.push(std::mem::take(&mut line));
        }
        let mut rest = word;
        while width(rest) > w {
            let mut used = 0;
            let split = rest
                .char_indices()
                .find(|(_, c)| {
                    used += c.width().unwrap_or(0);
                    used > w
                })
                .map_or(rest.len(), |(i, _)| i.max(1));
            let (head, tail) = rest.split_at(split);
            lines.push(head.to_string());
            rest = tail;
        }
        line.push_str(rest);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// At most `max_lines` wrapped lines; the last one is cut with `…` when text was left out.
pub fn wrap_cut(s: &str, w: usize, max_lines: usize) -> Vec<String> {
    let mut lines = wrap(s, w);
    if max_lines > 0 && lines.len() > max_lines {
        let rest = lines.split_off(max_lines - 1).join(" ");
        lines.push(cut(&rest, w));
    }
    lines
}

/// What a terminal shows of `s`: the text without ANSI escape sequences (CSI ... final byte).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `text` in the colour of `severity` when `style.colour` (high red, medium yellow, low cyan).
/// Call on text already padded: escape sequences take no columns.
pub fn paint_severity(style: Style, severity: &str, text: &str) -> String {
    if !style.colour {
        return text.to_string();
    }
    use anstyle::AnsiColor;
    let colour = match severity {
        "high" => AnsiColor::Red.on_default().bold(),
        "medium" => AnsiColor::Yellow.on_default(),
        _ => AnsiColor::Cyan.on_default(),
    };
    format!("{}{text}{}", colour.render(), colour.render_reset())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn no_color_means_present_and_not_empty() {
        assert!(!no_color(None));
        assert!(!no_color(Some(OsStr::new(""))));
        assert!(no_color(Some(OsStr::new("1"))));
        assert!(no_color(Some(OsStr::new("false"))));
    }

    #[test]
    fn width_from_terminal_then_columns_then_default() {
        assert_eq!(choose_width(Some(132), Some("80")), 132);
        assert_eq!(choose_width(Some(0), Some("80")), 80);
        assert_eq!(choose_width(None, Some("nonsense")), DEFAULT_WIDTH);
        assert_eq!(choose_width(None, None), DEFAULT_WIDTH);
    }

    #[test]
    fn cut_and_pad_respect_display_width() {
        assert_eq!(cut("abcdef", 6), "abcdef");
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(width(&cut("日本語テキスト", 5)), 5);
        assert_eq!(pad("ab", 4, true), "  ab");
        assert_eq!(pad("abcdef", 4, false), "abc…");
        assert_eq!(cut("abc", 0), "");
    }

    #[test]
    fn wrap_keeps_words_and_splits_long_ones() {
        assert_eq!(wrap("aa bb cc", 5), ["aa bb", "cc"]);
        assert_eq!(wrap("abcdefgh", 3), ["abc", "def", "gh"]);
        assert!(wrap("", 10).is_empty());
        let cut = wrap_cut("one two three four five", 9, 2);
        assert_eq!(cut, ["one two", "three fo…"]);
        assert!(cut.iter().all(|l| width(l) <= 9));
    }

    #[test]
    fn control_characters_never_reach_the_terminal() {
        assert_eq!(clean("a\u{1b}[31mb\nc"), "a\u{fffd}[31mb c");
    }

    #[test]
    fn colour_only_when_asked() {
        let plain = paint_severity(Style::plain(80), "high", "high");
        assert_eq!(plain, "high");
        let on = Style {
            width: 80,
            colour: true,
        };
        let painted = paint_severity(on, "high", "high");
        assert!(painted.starts_with('\u{1b}') && painted.contains("high"));
    }
}
