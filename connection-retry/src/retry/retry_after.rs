//! Parsing the HTTP `Retry-After` header.

use std::time::{Duration, SystemTime};

/// Parses a `Retry-After` value (RFC 9110 §10.2.3) into how long to wait from `now`.
///
/// Accepts both forms: delta-seconds (`"120"`) and an HTTP-date (`"Wed, 21 Oct 2015
/// 07:28:00 GMT"`, plus the obsolete RFC 850 and asctime forms). A date in the past
/// means "now": zero. Anything else (negative or fractional numbers, garbage) is
/// `None`, so the caller falls back to its own backoff. A number of seconds too large
/// for a `u64` saturates rather than being refused: the server clearly meant "long".
///
/// ```
/// use connection_retry::retry::parse_retry_after;
/// use std::time::{Duration, SystemTime, UNIX_EPOCH};
///
/// let now = UNIX_EPOCH + Duration::from_secs(1_445_412_400); // 2015-10-21 07:26:40 UTC
/// assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
/// assert_eq!(
///     parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
///     Some(Duration::from_secs(80)),
/// );
/// assert_eq!(parse_retry_after("Tue, 20 Oct 2015 07:28:00 GMT", now), Some(Duration::ZERO));
/// assert_eq!(parse_retry_after("soon", now), None);
/// ```
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    /// Wed, 21 Oct 2015 07:28:00 GMT.
    const DATE: u64 = 1_445_412_480;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn delta_seconds() {
        let now = SystemTime::now();
        assert_eq!(parse_retry_after("0", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn http_dates_in_all_three_forms() {
        let now = at(DATE - 30);
        for form in [
            "Wed, 21 Oct 2015 07:28:00 GMT",
            "Wednesday, 21-Oct-15 07:28:00 GMT",
            "Wed Oct 21 07:28:00 2015",
        ] {
            assert_eq!(
                parse_retry_after(form, now),
                Some(Duration::from_secs(30)),
                "{form}"
            );
        }
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", at(DATE + 3600)),
            Some(Duration::ZERO),
            "past dates mean now"
        );
    }

    #[test]
    fn garbage_is_none() {
        let now = at(DATE);
        for bad in [
            "",
            "   ",
            "-5",
            "+5",
            "1.5",
            "12s",
            "soon",
            "Wed, 32 Oct 2015 07:28:00 GMT",
            "Wed, 21 Oct 2015 07:28:00 PST",
            "٣",
        ] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }
}
