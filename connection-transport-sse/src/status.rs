//! [`StatusSet`]: which failing HTTP statuses are worth a new attempt.

use std::fmt;
use std::str::FromStr;

use connection_core::ConfigError;

/// A set of HTTP statuses, written `408,429,500-599`: the statuses after which the
/// client tries again (with its backoff) instead of giving up.
///
/// The default retries 408 (Request Timeout), 429 (Too Many Requests) and every 5xx,
/// and no other 4xx: a request the server refuses as it stands (400, 401, 403, 404,
/// 405...) fails the same way next time.
///
/// ```
/// use connection_transport_sse::StatusSet;
///
/// let default = StatusSet::default();
/// assert!(default.contains(503) && default.contains(429) && !default.contains(404));
/// let custom: StatusSet = "404, 500-504".parse()?;
/// assert!(custom.contains(404) && custom.contains(502) && !custom.contains(505));
/// assert_eq!(custom.to_string(), "404,500-504");
/// # Ok::<(), connection_transport_sse::ConfigError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct StatusSet {
    /// Inclusive ranges, as given.
    ranges: Vec<(u16, u16)>,
}

impl StatusSet {
    /// No status: every failing status is final.
    pub fn none() -> Self {
        Self { ranges: Vec::new() }
    }

    /// Whether `status` is in the set.
    pub fn contains(&self, status: u16) -> bool {
        self.ranges
            .iter()
            .any(|&(lo, hi)| (lo..=hi).contains(&status))
    }

    /// Adds one status.
    #[must_use]
    pub fn with(mut self, status: u16) -> Self {
        self.ranges.push((status, status));
        self
    }

    /// Adds the statuses `lo..=hi`.
    #[must_use]
    pub fn with_range(mut self, lo: u16, hi: u16) -> Self {
        self.ranges.push((lo, hi));
        self
    }

    pub(crate) fn validate(&self, field: &'static str) -> Result<(), ConfigError> {
        for &(lo, hi) in &self.ranges {
            if !(100..=599).contains(&lo) || !(100..=599).contains(&hi) || lo > hi {
                return Err(ConfigError::new(
                    field,
                    format!("{lo}-{hi} is not a range of HTTP statuses (100..=599)"),
                ));
            }
        }
        Ok(())
    }
}

impl Default for StatusSet {
    fn default() -> Self {
        Self::none().with(408).with(429).with_range(500, 599)
    }
}

impl fmt::Display for StatusSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, &(lo, hi)) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if lo == hi {
                write!(f, "{lo}")?;
            } else {
                write!(f, "{lo}-{hi}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for StatusSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StatusSet({self})")
    }
}

impl FromStr for StatusSet {
    type Err = ConfigError;

    /// Parses `408,429,500-599` (spaces allowed; empty is the empty set).
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        let bad = |part: &str| {
            ConfigError::new(
                "retry_statuses",
                format!("{part:?} is not a status or a range like 500-599"),
            )
        };
        let mut set = Self::none();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (lo, hi) = match part.split_once('-') {
                Some((lo, hi)) => (lo.trim(), hi.trim()),
                None => (part, part),
            };
            let lo: u16 = lo.parse().map_err(|_| bad(part))?;
            let hi: u16 = hi.parse().map_err(|_| bad(part))?;
            set.ranges.push((lo, hi));
        }
        set.validate("retry_statuses")?;
        Ok(set)
    }
}

impl serde::Serialize for StatusSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for StatusSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prints_and_refuses() {
        let s: StatusSet = " 408 , 429,500-599 ".parse().unwrap();
        assert_eq!(s, StatusSet::default());
        assert_eq!(s.to_string(), "408,429,500-599");
        assert_eq!("".parse::<StatusSet>().unwrap(), StatusSet::none());
        for bad in ["x", "600", "99", "500-400", "1-2-3", "-", "404-"] {
            assert!(bad.parse::<StatusSet>().is_err(), "{bad}");
        }
    }
}
