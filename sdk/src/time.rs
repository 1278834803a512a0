//! Times as networks write them: RFC 3339 (ISO 8601 with a zone).

use chrono::DateTime;

/// Unix milliseconds of an RFC 3339 time (`2026-11-23T08:15:00.123+02:00`,
/// `…Z`, with or without fractions); None if it is not one or is before 1970.
pub fn parse_rfc3339_ms(text: &str) -> Option<u64> {
    DateTime::parse_from_rfc3339(text.trim()).ok().and_then(|t| u64::try_from(t.timestamp_millis()).ok())
}

/// RFC 3339 in UTC with milliseconds and a numeric zone
/// (`2026-11-23T08:15:00.123+00:00`), as the ThingPark LRC writes `Time`.
pub fn format_rfc3339_ms(unix_ms: u64) -> String {
    DateTime::from_timestamp_millis(unix_ms as i64).unwrap_or_default().format("%Y-%m-%dT%H:%M:%S%.3f+00:00").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_back_in_every_zone_form() {
        let ms = 1_795_000_000_123;
        assert_eq!(parse_rfc3339_ms(&format_rfc3339_ms(ms)), Some(ms));
        assert_eq!(parse_rfc3339_ms("2016-01-11T14:28:00.333+02:00"), Some(1_452_515_280_333));
        assert_eq!(parse_rfc3339_ms("2016-01-11T12:28:00Z"), Some(1_452_515_280_000));
        assert_eq!(parse_rfc3339_ms("2016-01-11T14:28:00"), None, "no zone");
        assert_eq!(parse_rfc3339_ms("1969-12-31T23:59:59Z"), None);
    }
}
