//! Time as stored: unix milliseconds (`i64`) everywhere in the database, RFC 3339 at the API.

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::OffsetDateTime;

/// Milliseconds since the unix epoch.
pub type UnixMs = i64;

pub const SECOND_MS: i64 = 1_000;
pub const HOUR_MS: i64 = 3_600 * SECOND_MS;
pub const DAY_MS: i64 = 24 * HOUR_MS;

pub fn now_ms() -> UnixMs {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// Microseconds since the unix epoch (rate-limit slots are finer than a millisecond).
pub fn now_us() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000) as i64
}

/// `2024-01-15T11:30:00.123Z`: always UTC, always milliseconds, so strings sort like times.
pub fn format_ms(ms: UnixMs) -> String {
    let format =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| ms.to_string())
}

/// Accepts RFC 3339 (any offset) or unix seconds, the two spellings clients send in query strings.
pub fn parse_timestamp(s: &str) -> Option<UnixMs> {
    if let Ok(seconds) = s.parse::<i64>() {
        return seconds.checked_mul(SECOND_MS);
    }
    let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_milliseconds_in_utc() {
        assert_eq!(format_ms(1_705_318_200_123), "2024-01-15T11:30:00.123Z");
    }

    #[test]
    fn parses_rfc3339_with_offsets_and_unix_seconds() {
        assert_eq!(parse_timestamp("2024-01-15T11:30:00Z"), Some(1_705_318_200_000));
        assert_eq!(parse_timestamp("2024-01-15T12:30:00+01:00"), Some(1_705_318_200_000));
        assert_eq!(parse_timestamp("1705318200"), Some(1_705_318_200_000));
        assert_eq!(parse_timestamp("yesterday"), None);
        assert_eq!(parse_timestamp("99999999999999999"), None);
    }
}
