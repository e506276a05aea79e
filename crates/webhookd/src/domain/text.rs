//! The one rule for text taken from requests, so both backends accept exactly the same values.
//! PostgreSQL cannot store a NUL character in a text column (SQLite can), so text with control
//! characters is refused as bad input everywhere rather than stored by one backend and refused
//! with a server error by the other. Tabs are the only control character kept (people paste them).

/// `value` when it is not blank, has at most `max` characters and no control characters. Not
/// trimmed: identifiers (call ids, idempotency keys) are kept exactly as the client sent them.
pub fn parse_exact(value: &str, max: usize) -> Result<&str, String> {
    if value.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if value.chars().count() > max {
        return Err(format!("must be at most {max} characters"));
    }
    if let Some(bad) = value.chars().find(|c| c.is_control() && *c != '\t') {
        return Err(format!(
            "must not contain control characters (found U+{:04X})",
            u32::from(bad)
        ));
    }
    Ok(value)
}

/// [`parse_exact`] on the trimmed value: for names and other free text.
pub fn parse_trimmed(value: &str, max: usize) -> Result<String, String> {
    parse_exact(value.trim(), max).map(str::to_string)
}

/// A free-text filter (a query parameter): at most `max` characters, no control characters; an
/// empty filter is allowed and matches nothing special, so only the character rule applies.
pub fn parse_filter(value: &str, max: usize) -> Result<String, String> {
    if value.is_empty() {
        return Ok(String::new());
    }
    parse_exact(value, max).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_and_other_control_characters_are_refused_with_their_code_point() {
        let error = parse_exact("call\0id", 255).unwrap_err();
        assert!(error.contains("U+0000"), "{error}");
        assert!(parse_exact("line\nbreak", 255).is_err());
        assert!(parse_exact("tab\tis fine", 255).is_ok());
        assert!(parse_trimmed("  Support line  ", 255).unwrap() == "Support line");
    }

    #[test]
    fn blank_and_too_long_text_is_refused_counting_characters_not_bytes() {
        assert!(parse_exact("   ", 255).is_err());
        assert!(parse_exact(&"é".repeat(255), 255).is_ok());
        assert!(parse_exact(&"é".repeat(256), 255).is_err());
        assert_eq!(parse_filter("", 255).unwrap(), "");
        assert!(parse_filter("a\0", 255).is_err());
    }
}
