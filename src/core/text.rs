//! Text that came from another agent (ids, titles, reasons, paths it named) reaches a terminal or a
//! model's context only as one line with no control characters: an escape sequence of theirs
//! (`ESC ]0;...BEL`, a cursor move, a fake prompt after a newline) is shown as spaces, never run.
//! The same rule as the JS layer's `oneLine` (lib/text.js); a test holds them alike.

/// `s` with every control character (C0, DEL, C1, and the line and paragraph separators) made a
/// space and runs of whitespace made one, trimmed.
pub fn clean(s: &str) -> String {
    let spaced: String = s.chars().map(|c| if c.is_control() || c == '\u{2028}' || c == '\u{2029}' { ' ' } else { c }).collect();
    spaced.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `clean(s)`, cut to `max` characters (the last one then an ellipsis).
pub fn one_line(s: &str, max: usize) -> String {
    let t = clean(s);
    if t.chars().count() <= max {
        return t;
    }
    let mut out: String = t.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_and_newlines_become_spaces() {
        assert_eq!(clean("agent\u{1b}]0;pwned\u{7}\nrm -rf /\r\u{9b}31m"), "agent ]0;pwned rm -rf / 31m");
        assert_eq!(clean("  a\tb\u{2028}c "), "a b c");
        assert_eq!(one_line(&"é".repeat(300), 200).chars().count(), 200);
        assert!(one_line(&"x".repeat(300), 10).ends_with('…'));
    }
}
