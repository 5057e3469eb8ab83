//! [`HealthReport`]: what [`HttpClient::health_check`](crate::HttpClient::health_check)
//! finds.

use std::time::Duration;

use serde::Serialize;

/// The outcome of one health check: healthy or not, how long the probe took, and the
/// details (status, error, circuit state), as the TypeScript seed's `healthCheck`
/// reports them. Serializes with the response time in seconds.
///
/// ```
/// use connection_transport_http::HealthReport;
/// fn log(report: &HealthReport) {
///     println!("{}", serde_json::to_string(report).unwrap());
/// }
/// # let _ = log;
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct HealthReport {
    /// Whether the probe got a status it accepts.
    pub healthy: bool,
    /// From sending the probe to its last byte (or to its failure).
    #[serde(rename = "response_time_seconds", serialize_with = "secs")]
    pub response_time: Duration,
    /// The status the server answered with, if it answered.
    pub status: Option<u16>,
    /// Why the probe failed, if it did.
    pub error: Option<String>,
    /// The endpoint, redacted.
    pub endpoint: String,
    /// The circuit breaker's state (`closed`, `open`, `half-open`, `isolated`), if the
    /// client has one.
    pub circuit: Option<&'static str>,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}
