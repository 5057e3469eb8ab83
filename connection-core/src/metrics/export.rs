//! Streaming snapshots or live metrics out as Prometheus text and JSON.
//!
//! The text format wants every family's samples together, so a Prometheus export walks
//! its rows once per family rather than once per connection: memory stays one row's
//! values and a write buffer, whatever the number of connections and the length of their
//! names. Live metrics are read as each family is written, only the part that family
//! needs (a histogram pass for a summary, one atomic for a counter); a scrape is not
//! atomic across series anyway.

use std::borrow::Cow;
use std::fmt;
use std::io::{self, BufWriter, Write};

use serde::Serialize;

use super::{ConnectionMetrics, LatencyRecorder, LatencySnapshot, MetricsSnapshot};

/// The write buffer of the streaming exports: large enough that a file or a socket sees
/// few writes, small next to what the text of many connections weighs.
const WRITE_BUFFER: usize = 32 * 1024;

/// A sample value: counters stay integers so large ones print exactly.
enum Value {
    Int(u64),
    Float(f64),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Value::Int(n) => write!(f, "{n}"),
            // Rust's `NaN`/`inf` spellings are not what Prometheus (Go's ParseFloat)
            // accepts; finite values print in plain decimal, which it does.
            Value::Float(x) if x.is_nan() => f.write_str("NaN"),
            Value::Float(x) if x == f64::INFINITY => f.write_str("+Inf"),
            Value::Float(x) if x == f64::NEG_INFINITY => f.write_str("-Inf"),
            Value::Float(x) => write!(f, "{x}"),
        }
    }
}

/// What part of a connection's metrics a family reads: live metrics read only that.
#[derive(Clone, Copy)]
enum Part {
    Counters,
    Window,
    Buffers,
    ProbeRtt,
    ProbeRttMax,
    RequestLatency,
    RequestLatencyMax,
}

struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    part: Part,
    /// `None`: the connection has no sample in this family.
    value: fn(&MetricsSnapshot) -> Option<Value>,
}

/// Every family but the latency summaries, which have more than one sample per
/// connection.
const FAMILIES: &[Family] = &[
    Family {
        name: "connection_up",
        help: "Whether the connection is established (1) or not (0).",
        kind: "gauge",
        part: Part::Counters,
        value: |s| Some(Value::Int(u64::from(s.connected))),
    },
    Family {
        name: "connection_uptime_seconds",
        help: "Seconds since the connection was established; 0 while disconnected.",
        kind: "gauge",
        part: Part::Counters,
        value: |s| Some(Value::Float(s.uptime.as_secs_f64())),
    },
    Family {
        name: "connection_connected_seconds_total",
        help: "Seconds the connection has been established, over all sessions.",
        kind: "counter",
        part: Part::Counters,
        value: |s| Some(Value::Float(s.total_connected.as_secs_f64())),
    },
    Family {
        name: "connection_bytes_in_total",
        help: "Bytes received.",
        kind: "counter",
        part: Part::Counters,
        value: |s| Some(Value::Int(s.bytes_in)),
    },
    Family {
        name: "connection_bytes_out_total",
        help: "Bytes sent.",
        kind: "counter",
        part: Part::Counters,
        value: |s| Some(Value::Int(s.bytes_out)),
    },
    Family {
        name: "connection_messages_in_total",
        help: "Messages received.",
        kind: "counter",
        part: Part::Counters,
        value: |s| Some(Value::Int(s.messages_in)),
    },
    Family {
        name: "connection_messages_out_total",
        help: "Messages sent.",
        kind: "counter",
        part: Part::Counters,
        value: |s| Some(Value::Int(s.messages_out)),
    },
    Family {
        name: "connection_requests_total",
        help: "Requests made, failed ones included.",
        kind: "counter",
        part: Part::Counters,
        value: |s| Some(Value::Int(s.requests)),
    },
    Family {
        name: "connection_failed_requests_total",
        help: "Requests that failed.",
        kind: "counter",
        part: Part::Counters,
        value: |s| Some(Value::Int(s.failed_requests)),
    },
    Family {
        name: "connection_errors_total",
        help: "Errors seen: failed requests, other failures on traffic, lost connections.",
        kind: "counter",
        part: Part::Counters,
        value: |s| Some(Value::Int(s.errors)),
    },
    Family {
        name: "connection_reconnects_total",
        help: "Reconnects made.",
        kind: "counter",
        part: Part::Counters,
        value: |s| Some(Value::Int(s.reconnects)),
    },
    Family {
        name: "connection_messages_in_per_second",
        help: "Messages received per second over the last 10 s.",
        kind: "gauge",
        part: Part::Window,
        value: |s| Some(Value::Float(s.window.rates().messages_in_per_second)),
    },
    Family {
        name: "connection_messages_out_per_second",
        help: "Messages sent per second over the last 10 s.",
        kind: "gauge",
        part: Part::Window,
        value: |s| Some(Value::Float(s.window.rates().messages_out_per_second)),
    },
    Family {
        name: "connection_bytes_in_per_second",
        help: "Bytes received per second over the last 10 s.",
        kind: "gauge",
        part: Part::Window,
        value: |s| Some(Value::Float(s.window.rates().bytes_in_per_second)),
    },
    Family {
        name: "connection_bytes_out_per_second",
        help: "Bytes sent per second over the last 10 s.",
        kind: "gauge",
        part: Part::Window,
        value: |s| Some(Value::Float(s.window.rates().bytes_out_per_second)),
    },
    Family {
        name: "connection_requests_per_second",
        help: "Requests made per second over the last 10 s.",
        kind: "gauge",
        part: Part::Window,
        value: |s| Some(Value::Float(s.window.rates().requests_per_second)),
    },
    Family {
        name: "connection_request_error_ratio",
        help: "Failed requests over requests in the last 10 s; NaN without requests.",
        kind: "gauge",
        part: Part::Window,
        value: |s| {
            Some(Value::Float(
                s.window.rates().error_rate.unwrap_or(f64::NAN),
            ))
        },
    },
    Family {
        name: "connection_buffered_bytes",
        help: "Bytes held in the connection's own buffers and queues, as its transport reports them (absent when it reports none).",
        kind: "gauge",
        part: Part::Buffers,
        value: |s| s.buffered_bytes.map(Value::Int),
    },
];

/// A latency summary family: quantiles, sum and count, plus a max gauge.
struct Summary {
    name: &'static str,
    help: &'static str,
    part: Part,
    of: fn(&MetricsSnapshot) -> &LatencySnapshot,
    max: Family,
}

/// Probe round trips and request latency are separate families: a fast ping says
/// nothing of how slow real requests are, and mixing them hides both.
const SUMMARIES: &[Summary] = &[
    Summary {
        name: "connection_probe_rtt_seconds",
        help: "Probe round trips. Quantiles are histogram bucket upper bounds, at most 6.25% high.",
        part: Part::ProbeRtt,
        of: |s| &s.probe_rtt,
        max: Family {
            name: "connection_probe_rtt_max_seconds",
            help: "Largest probe round trip recorded.",
            kind: "gauge",
            part: Part::ProbeRttMax,
            value: |s| Some(Value::Float(s.probe_rtt.max.as_secs_f64())),
        },
    },
    Summary {
        name: "connection_request_latency_seconds",
        help: "Latency of requests made on the connection. Quantiles are histogram bucket upper bounds, at most 6.25% high.",
        part: Part::RequestLatency,
        of: |s| &s.request_latency,
        max: Family {
            name: "connection_request_latency_max_seconds",
            help: "Largest request latency recorded.",
            kind: "gauge",
            part: Part::RequestLatencyMax,
            value: |s| Some(Value::Float(s.request_latency.max.as_secs_f64())),
        },
    },
];

/// A row of an export: a snapshot taken earlier, or live metrics read part by part.
trait Row {
    fn read(&self, part: Part) -> Cow<'_, MetricsSnapshot>;
    fn full(&self) -> Cow<'_, MetricsSnapshot>;
}

impl Row for MetricsSnapshot {
    fn read(&self, _: Part) -> Cow<'_, MetricsSnapshot> {
        Cow::Borrowed(self)
    }
    fn full(&self) -> Cow<'_, MetricsSnapshot> {
        Cow::Borrowed(self)
    }
}

impl Row for ConnectionMetrics {
    fn read(&self, part: Part) -> Cow<'_, MetricsSnapshot> {
        let latency =
            |r: Option<&LatencyRecorder>| r.map(LatencyRecorder::snapshot).unwrap_or_default();
        let max = |r: Option<&LatencyRecorder>| LatencySnapshot {
            max: r.map(LatencyRecorder::max).unwrap_or_default(),
            ..LatencySnapshot::default()
        };
        let mut s = MetricsSnapshot::default();
        match part {
            Part::Counters => s = self.plain_counters(),
            Part::Window => s.window = self.window_snapshot(),
            Part::Buffers => s.buffered_bytes = self.buffered_bytes(),
            Part::ProbeRtt => s.probe_rtt = latency(self.recorded_probe_rtt()),
            Part::ProbeRttMax => s.probe_rtt = max(self.recorded_probe_rtt()),
            Part::RequestLatency => s.request_latency = latency(self.recorded_request_latency()),
            Part::RequestLatencyMax => s.request_latency = max(self.recorded_request_latency()),
        }
        Cow::Owned(s)
    }
    fn full(&self) -> Cow<'_, MetricsSnapshot> {
        Cow::Owned(self.snapshot())
    }
}

/// Renders snapshots of named connections in the Prometheus text exposition format 0.0.4.
///
/// The same text as [`write_prometheus`], returned as a `String`; for many connections
/// prefer streaming it into the response or file with `write_prometheus`, which does not
/// hold the whole text.
///
/// ```
/// use connection_core::metrics::{ConnectionMetrics, to_prometheus};
/// use std::time::Duration;
///
/// let db = ConnectionMetrics::new();
/// db.mark_connected();
/// db.add_bytes_in(1024);
/// db.record_request(Duration::from_millis(2));
/// let cache = ConnectionMetrics::new();
///
/// let (db, cache) = (db.snapshot(), cache.snapshot());
/// let text = to_prometheus([("db", &db), ("cache", &cache)]);
/// assert!(text.contains("# TYPE connection_bytes_in_total counter\n"));
/// assert!(text.contains("connection_bytes_in_total{connection=\"db\"} 1024\n"));
/// assert!(text.contains("connection_up{connection=\"cache\"} 0\n"));
/// assert!(text.contains("connection_request_latency_seconds_count{connection=\"db\"} 1\n"));
/// assert!(text.contains("connection_probe_rtt_seconds_count{connection=\"db\"} 0\n"));
/// assert!(text.contains("connection_bytes_in_per_second{connection=\"db\"} 1024\n"));
/// ```
pub fn to_prometheus<'a>(
    snapshots: impl IntoIterator<Item = (&'a str, &'a MetricsSnapshot)>,
) -> String {
    // References only: the iterator given may not be walkable twice, the rows must be.
    let rows: Vec<(&str, &MetricsSnapshot)> = snapshots.into_iter().collect();
    let mut out = Vec::with_capacity(rows.len() * 2048);
    // Writing into a Vec cannot fail.
    let _ = prometheus_rows(&mut out, rows.iter().copied());
    into_string(out)
}

/// Streams snapshots of named connections into `w` in the Prometheus text exposition
/// format 0.0.4.
///
/// Each family gets one `# HELP` and one `# TYPE` line followed by the samples of every
/// connection, in input order, labelled `connection="<name>"` (backslash, double quote
/// and newline escaped). Families:
///
/// | family | type |
/// | --- | --- |
/// | `connection_up` (0 or 1), `connection_uptime_seconds` | gauge |
/// | `connection_connected_seconds_total` | counter |
/// | `connection_{bytes,messages}_{in,out}_total` | counter |
/// | `connection_{requests,failed_requests,errors,reconnects}_total` | counter |
/// | `connection_{messages,bytes}_{in,out}_per_second`, `connection_requests_per_second` (last 10 s) | gauge |
/// | `connection_request_error_ratio` (failed over all requests in the last 10 s; `NaN` without requests) | gauge |
/// | `connection_buffered_bytes` (only connections whose transport reports it) | gauge |
/// | `connection_probe_rtt_seconds`, `connection_request_latency_seconds` (`quantile="0.5"`, `"0.99"`, `_sum`, `_count`) | summary |
/// | `connection_probe_rtt_max_seconds`, `connection_request_latency_max_seconds` | gauge |
///
/// Quantiles of a connection that recorded no latency are `NaN`, as Prometheus' own
/// clients report them, rather than a misleading 0. Names should be unique: duplicates
/// produce duplicate series, which a scraper rejects. No rows write nothing.
///
/// The text format keeps each family's samples together, so the rows are walked once
/// per family (hence `Clone` on the iterator); what this holds at any time is one row
/// and a 32 KiB write buffer, so `w` can be a file or a socket as it is. Errors are
/// `w`'s own.
///
/// ```
/// use connection_core::metrics::{ConnectionMetrics, write_prometheus};
///
/// let db = ConnectionMetrics::new();
/// db.record_received(3, 300);
/// let snapshots = vec![("db".to_owned(), db.snapshot())];
///
/// let mut out = Vec::new(); // or a File, a TcpStream, a response body writer
/// write_prometheus(&mut out, snapshots.iter().map(|(n, s)| (n, s)))?;
/// let text = String::from_utf8(out).unwrap();
/// assert!(text.contains("connection_messages_in_total{connection=\"db\"} 3\n"));
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn write_prometheus<W, I, N, S>(w: &mut W, snapshots: I) -> io::Result<()>
where
    W: Write + ?Sized,
    I: IntoIterator<Item = (N, S)>,
    I::IntoIter: Clone,
    N: AsRef<str>,
    S: AsRef<MetricsSnapshot>,
{
    let mut out = BufWriter::with_capacity(WRITE_BUFFER, w);
    prometheus_rows(&mut out, snapshots.into_iter())?;
    out.flush()
}

/// [`write_prometheus`] from live metrics: each family reads, as it is written, only
/// what it shows of each connection (a counter is one atomic load, a summary one pass
/// over a histogram), so nothing is collected first. Samples of one connection may
/// therefore be a few microseconds apart, as in any scrape of live counters.
///
/// ```
/// use connection_core::metrics::{ConnectionMetrics, write_prometheus_live};
/// use std::sync::Arc;
///
/// let connections = vec![("db", Arc::new(ConnectionMetrics::new()))];
/// connections[0].1.record_sent(1, 64);
///
/// let mut out = Vec::new();
/// write_prometheus_live(&mut out, connections.iter().map(|(n, m)| (n, m)))?;
/// assert!(String::from_utf8(out).unwrap().contains("connection_bytes_out_total{connection=\"db\"} 64\n"));
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn write_prometheus_live<W, I, N, M>(w: &mut W, metrics: I) -> io::Result<()>
where
    W: Write + ?Sized,
    I: IntoIterator<Item = (N, M)>,
    I::IntoIter: Clone,
    N: AsRef<str>,
    M: AsRef<ConnectionMetrics>,
{
    let mut out = BufWriter::with_capacity(WRITE_BUFFER, w);
    prometheus_rows(&mut out, metrics.into_iter())?;
    out.flush()
}

fn into_string(bytes: Vec<u8>) -> String {
    // Everything written came from `&str` names and ASCII text: always UTF-8.
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Writes every family over `rows`, walking them once per family.
fn prometheus_rows<W, I, N, R, T>(out: &mut W, rows: I) -> io::Result<()>
where
    W: Write + ?Sized,
    I: Iterator<Item = (N, R)> + Clone,
    N: AsRef<str>,
    R: AsRef<T>,
    T: Row + ?Sized,
{
    // Whether each name needs escaping, found once: a name is written once per sample,
    // and scanning a long one each time would cost more than writing it.
    let plain: Vec<bool> = rows.clone().map(|(n, _)| is_plain(n.as_ref())).collect();
    if plain.is_empty() {
        return Ok(());
    }
    let labelled = || {
        rows.clone()
            .zip(plain.iter().copied())
            .map(|((name, row), plain)| (Label(name, plain), row))
    };
    for family in FAMILIES {
        write_family(out, family, labelled())?;
    }
    for summary in SUMMARIES {
        write_summary(out, summary, labelled())?;
        write_family(out, &summary.max, labelled())?;
    }
    Ok(())
}

/// A connection name as a label value, and whether it can be written as it is.
struct Label<N>(N, bool);

impl<N: AsRef<str>> Label<N> {
    fn write(&self, out: &mut (impl Write + ?Sized)) -> io::Result<()> {
        let name = self.0.as_ref();
        if self.1 {
            return out.write_all(name.as_bytes());
        }
        let mut rest = name;
        while let Some(at) = rest.find(['\\', '"', '\n']) {
            out.write_all(&rest.as_bytes()[..at])?;
            out.write_all(match rest.as_bytes()[at] {
                b'\\' => br"\\",
                b'"' => br#"\""#,
                _ => br"\n",
            })?;
            rest = &rest[at + 1..];
        }
        out.write_all(rest.as_bytes())
    }
}

fn is_plain(name: &str) -> bool {
    !name.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n'))
}

/// One sample line: `{family}{suffix}{connection="<name>"<extra>} {value}`.
fn sample<N: AsRef<str>>(
    out: &mut (impl Write + ?Sized),
    (family, suffix): (&str, &str),
    label: &Label<N>,
    extra: &str,
    value: &Value,
) -> io::Result<()> {
    out.write_all(family.as_bytes())?;
    out.write_all(suffix.as_bytes())?;
    out.write_all(b"{connection=\"")?;
    label.write(out)?;
    writeln!(out, "\"{extra}}} {value}")
}

fn write_summary<N, R, T>(
    out: &mut (impl Write + ?Sized),
    summary: &Summary,
    rows: impl Iterator<Item = (Label<N>, R)>,
) -> io::Result<()>
where
    N: AsRef<str>,
    R: AsRef<T>,
    T: Row + ?Sized,
{
    let Summary {
        name: family,
        help,
        part,
        of,
        ..
    } = summary;
    writeln!(out, "# HELP {family} {help}")?;
    writeln!(out, "# TYPE {family} summary")?;
    for (label, row) in rows {
        let snapshot = row.as_ref().read(*part);
        let l = of(&snapshot);
        // A summary with no observations has no quantiles; NaN says so, 0 would lie.
        let (p50, p99) = if l.count == 0 {
            (f64::NAN, f64::NAN)
        } else {
            (l.p50.as_secs_f64(), l.p99.as_secs_f64())
        };
        let sum = l.mean.as_secs_f64() * l.count as f64;
        let q = |suffix| (*family, suffix);
        sample(out, q(""), &label, ",quantile=\"0.5\"", &Value::Float(p50))?;
        sample(out, q(""), &label, ",quantile=\"0.99\"", &Value::Float(p99))?;
        sample(out, q("_sum"), &label, "", &Value::Float(sum))?;
        sample(out, q("_count"), &label, "", &Value::Int(l.count))?;
    }
    Ok(())
}

fn write_family<N, R, T>(
    out: &mut (impl Write + ?Sized),
    family: &Family,
    rows: impl Iterator<Item = (Label<N>, R)>,
) -> io::Result<()>
where
    N: AsRef<str>,
    R: AsRef<T>,
    T: Row + ?Sized,
{
    let Family {
        name,
        help,
        kind,
        part,
        value,
    } = family;
    writeln!(out, "# HELP {name} {help}")?;
    writeln!(out, "# TYPE {name} {kind}")?;
    for (label, row) in rows {
        if let Some(v) = value(&row.as_ref().read(*part)) {
            sample(out, (*name, ""), &label, "", &v)?;
        }
    }
    Ok(())
}

/// Escapes a label value as the text format requires: `\` `"` and newline.
#[cfg(test)]
fn escape_label_value(value: &str) -> String {
    let mut out = Vec::new();
    let _ = Label(value, is_plain(value)).write(&mut out);
    into_string(out)
}

#[derive(Serialize)]
struct NamedSnapshot<'a> {
    connection: &'a str,
    #[serde(flatten)]
    snapshot: &'a MetricsSnapshot,
}

/// Renders snapshots of named connections as a JSON array; the same text as
/// [`write_json`], returned as a `String`.
pub fn to_json<'a>(snapshots: impl IntoIterator<Item = (&'a str, &'a MetricsSnapshot)>) -> String {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail, and these plain structs (string keys, finite
    // numbers) give serde_json nothing to refuse; a metrics endpoint must not panic
    // regardless.
    match json_rows(&mut out, snapshots.into_iter()) {
        Ok(()) => into_string(out),
        Err(_) => String::from("[]"),
    }
}

/// Streams snapshots of named connections into `w` as a JSON array, in input order, of
/// objects holding the connection's name under `"connection"` next to the fields of its
/// [`MetricsSnapshot`]:
/// `[{"connection": "db", "bytes_in": 1024, ..., "window": {"seconds": 9.5, ...,
/// "messages_per_second": 20.0, ...}, "buffered_bytes": 512, "probe_rtt": {"count": 1,
/// "p99_seconds": 0.002, ...}, "connected": true, "uptime_seconds": 3.5, ...}]`.
///
/// An array rather than an object keyed by name keeps the order and survives duplicate
/// names. One connection is serialized at a time into a 32 KiB write buffer.
pub fn write_json<W, I, N, S>(w: &mut W, snapshots: I) -> io::Result<()>
where
    W: Write + ?Sized,
    I: IntoIterator<Item = (N, S)>,
    N: AsRef<str>,
    S: AsRef<MetricsSnapshot>,
{
    let mut out = BufWriter::with_capacity(WRITE_BUFFER, w);
    json_rows(&mut out, snapshots.into_iter())?;
    out.flush()
}

/// [`write_json`] from live metrics, each snapshot taken as its connection is written.
pub fn write_json_live<W, I, N, M>(w: &mut W, metrics: I) -> io::Result<()>
where
    W: Write + ?Sized,
    I: IntoIterator<Item = (N, M)>,
    N: AsRef<str>,
    M: AsRef<ConnectionMetrics>,
{
    let mut out = BufWriter::with_capacity(WRITE_BUFFER, w);
    json_rows(&mut out, metrics.into_iter())?;
    out.flush()
}

fn json_rows<W, N, R, T>(out: &mut W, rows: impl Iterator<Item = (N, R)>) -> io::Result<()>
where
    W: Write + ?Sized,
    N: AsRef<str>,
    R: AsRef<T>,
    T: Row + ?Sized,
{
    out.write_all(b"[")?;
    for (i, (name, row)) in rows.enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        let snapshot = row.as_ref().full();
        let named = NamedSnapshot {
            connection: name.as_ref(),
            snapshot: &snapshot,
        };
        serde_json::to_writer(&mut *out, &named)?;
    }
    out.write_all(b"]")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::ConnectionMetrics;
    use std::collections::{HashMap, HashSet};
    use std::time::Duration;

    const QUOTED: &str = "a\"b\\c";
    const MULTILINE: &str = "line1\nline2";

    /// Two connections with distinct, known values; the first one is connected.
    fn two_snapshots() -> (MetricsSnapshot, MetricsSnapshot) {
        let a = ConnectionMetrics::new();
        a.mark_connected();
        a.add_bytes_in(1000);
        a.add_bytes_out(2000);
        a.add_messages_in(10);
        a.add_messages_out(20);
        a.inc_requests();
        a.inc_requests();
        a.record_failed_request();
        a.inc_errors();
        a.inc_reconnects();
        a.report_buffers(|| 4096);
        for ms in 1..=100 {
            a.record_probe_rtt(Duration::from_millis(ms));
        }
        let b = ConnectionMetrics::new();
        b.add_bytes_in(u64::MAX);
        b.add_bytes_out(7);
        b.inc_errors();
        b.inc_errors();
        b.inc_errors();
        (a.snapshot(), b.snapshot())
    }

    /// Undoes the text format's label escaping, which prometheus-parse leaves in place.
    fn unescape(s: &str) -> String {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some('n') => out.push('\n'),
                    Some(other) => out.push(other),
                    None => panic!("dangling backslash in {s:?}"),
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label_value(QUOTED), r#"a\"b\\c"#);
        assert_eq!(escape_label_value(MULTILINE), r"line1\nline2");
        assert_eq!(escape_label_value("plain-name:1"), "plain-name:1");
        assert_eq!(unescape(&escape_label_value("x\\n\"\n")), "x\\n\"\n");
    }

    #[test]
    fn floats_print_as_prometheus_reads_them() {
        assert_eq!(Value::Float(f64::NAN).to_string(), "NaN");
        assert_eq!(Value::Float(f64::INFINITY).to_string(), "+Inf");
        assert_eq!(Value::Float(f64::NEG_INFINITY).to_string(), "-Inf");
        assert_eq!(Value::Float(1.5).to_string(), "1.5");
        assert_eq!(Value::Float(0.0).to_string(), "0");
        assert_eq!(Value::Float(1e-7).to_string().parse::<f64>().unwrap(), 1e-7);
        assert_eq!(Value::Int(u64::MAX).to_string(), "18446744073709551615");
    }

    #[test]
    fn exposition_is_well_formed() {
        let (a, b) = two_snapshots();
        let text = to_prometheus([(QUOTED, &a), (MULTILINE, &b)]);
        assert!(text.ends_with('\n'));

        // The rules a strict scraper applies and prometheus-parse does not: one HELP and
        // one TYPE per family, before its samples, and each family's samples contiguous.
        let mut families_seen = HashSet::new();
        let mut current: Option<(String, String)> = None; // (family, type)
        let mut samples_per_family: HashMap<String, usize> = HashMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap().to_owned();
                assert!(families_seen.insert(name.clone()), "second HELP for {name}");
                current = Some((name, String::new()));
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split(' ');
                let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
                assert!(["counter", "gauge", "summary"].contains(&kind), "{line}");
                let cur = current.as_mut().unwrap();
                assert_eq!(cur.0, name, "TYPE without its HELP");
                assert!(cur.1.is_empty(), "second TYPE for {name}");
                cur.1 = kind.to_owned();
                if kind == "counter" {
                    assert!(name.ends_with("_total"), "counter {name} lacks _total");
                }
            } else {
                let (family, kind) = current.as_ref().expect("sample before any HELP");
                assert!(!kind.is_empty(), "sample before TYPE: {line}");
                let (metric, rest) = line.split_once('{').unwrap();
                let allowed = if kind == "summary" {
                    vec![
                        family.clone(),
                        format!("{family}_sum"),
                        format!("{family}_count"),
                    ]
                } else {
                    vec![family.clone()]
                };
                assert!(
                    allowed.contains(&metric.to_owned()),
                    "{metric} outside its family"
                );
                assert!(rest.starts_with("connection=\""), "{line}");
                let value = line.rsplit(' ').next().unwrap();
                assert!(
                    value == "NaN" || value.parse::<f64>().is_ok(),
                    "bad value in {line}"
                );
                *samples_per_family.entry(family.clone()).or_default() += 1;
            }
        }
        assert_eq!(families_seen.len(), FAMILIES.len() + 4);
        for (family, n) in samples_per_family {
            let expected = if family == "connection_buffered_bytes" {
                // Only the first connection reports its buffers.
                1
            } else if family.ends_with("_seconds")
                && !family.contains("max")
                && !family.contains("uptime")
                && !family.contains("connected")
            {
                8
            } else {
                2
            };
            assert_eq!(n, expected, "{family}");
        }
    }

    #[test]
    fn exposition_parses_to_the_recorded_values() {
        let (a, b) = two_snapshots();
        let text = to_prometheus([(QUOTED, &a), (MULTILINE, &b)]);
        // The escaped newline must not split a sample over two lines.
        assert_eq!(
            text.lines().filter(|l| l.contains("line2")).count(),
            (FAMILIES.len() - 1) + 2 * (4 + 1)
        );

        let scrape =
            prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
        let mut values: HashMap<(String, String), prometheus_parse::Value> = HashMap::new();
        for sample in &scrape.samples {
            let connection = unescape(sample.labels.get("connection").unwrap());
            let previous = values.insert((sample.metric.clone(), connection), sample.value.clone());
            assert!(previous.is_none(), "duplicate series {}", sample.metric);
        }
        let value = |metric: &str, connection: &str| -> f64 {
            match values.get(&(metric.to_owned(), connection.to_owned())) {
                Some(
                    prometheus_parse::Value::Counter(v)
                    | prometheus_parse::Value::Gauge(v)
                    | prometheus_parse::Value::Untyped(v),
                ) => *v,
                other => panic!("{metric}{{connection={connection:?}}}: {other:?}"),
            }
        };
        // Types come through.
        assert!(matches!(
            values[&("connection_bytes_in_total".to_owned(), QUOTED.to_owned())],
            prometheus_parse::Value::Counter(_)
        ));
        assert!(matches!(
            values[&("connection_up".to_owned(), MULTILINE.to_owned())],
            prometheus_parse::Value::Gauge(_)
        ));

        let expected_a = [
            ("connection_up", 1.0),
            ("connection_bytes_in_total", 1000.0),
            ("connection_bytes_out_total", 2000.0),
            ("connection_messages_in_total", 10.0),
            ("connection_messages_out_total", 20.0),
            ("connection_requests_total", 3.0),
            ("connection_failed_requests_total", 1.0),
            ("connection_errors_total", 2.0),
            ("connection_reconnects_total", 1.0),
            ("connection_probe_rtt_seconds_count", 100.0),
            ("connection_probe_rtt_max_seconds", 0.1),
            ("connection_buffered_bytes", 4096.0),
        ];
        for (metric, expected) in expected_a {
            assert_eq!(value(metric, QUOTED), expected, "{metric}");
        }
        // Rates are the window's counts over its span (at least 1 s).
        let rates = a.window.rates();
        assert_eq!((a.window.messages_in, a.window.bytes_out), (10, 2000));
        let expected_rates = [
            (
                "connection_messages_in_per_second",
                rates.messages_in_per_second,
            ),
            (
                "connection_messages_out_per_second",
                rates.messages_out_per_second,
            ),
            ("connection_bytes_in_per_second", rates.bytes_in_per_second),
            (
                "connection_bytes_out_per_second",
                rates.bytes_out_per_second,
            ),
            ("connection_requests_per_second", rates.requests_per_second),
            ("connection_request_error_ratio", 1.0 / 3.0),
        ];
        for (metric, expected) in expected_rates {
            assert_eq!(value(metric, QUOTED), expected, "{metric}");
        }
        let span = a.window.span.as_secs_f64();
        assert_eq!(rates.bytes_out_per_second, 2000.0 / span);
        assert!(
            !values.contains_key(&("connection_buffered_bytes".to_owned(), MULTILINE.to_owned())),
            "a transport that reports no buffers has no sample"
        );
        assert!(value("connection_request_error_ratio", MULTILINE).is_nan());
        let expected_b = [
            ("connection_up", 0.0),
            ("connection_uptime_seconds", 0.0),
            ("connection_bytes_in_total", u64::MAX as f64),
            ("connection_bytes_out_total", 7.0),
            ("connection_errors_total", 3.0),
            ("connection_requests_total", 0.0),
            ("connection_probe_rtt_seconds_count", 0.0),
            ("connection_probe_rtt_seconds_sum", 0.0),
            ("connection_probe_rtt_max_seconds", 0.0),
        ];
        for (metric, expected) in expected_b {
            assert_eq!(value(metric, MULTILINE), expected, "{metric}");
        }
        // Sum of 1..=100 ms.
        let sum = value("connection_probe_rtt_seconds_sum", QUOTED);
        assert!((sum - 5.05).abs() < 1e-9, "{sum}");
        assert!(value("connection_uptime_seconds", QUOTED) >= 0.0);

        let quantiles = |connection: &str| -> Vec<(f64, f64)> {
            match &values[&(
                "connection_probe_rtt_seconds".to_owned(),
                connection.to_owned(),
            )] {
                prometheus_parse::Value::Summary(qs) => {
                    qs.iter().map(|q| (q.quantile, q.count)).collect()
                }
                other => panic!("{other:?}"),
            }
        };
        let qa = quantiles(QUOTED);
        assert_eq!(qa.len(), 2);
        assert_eq!(qa[0], (0.5, a.probe_rtt.p50.as_secs_f64()));
        assert_eq!(qa[1], (0.99, a.probe_rtt.p99.as_secs_f64()));
        assert!(qa[0].1 >= 0.050 && qa[0].1 <= 0.050 * 1.0625, "{qa:?}");
        assert!(qa[1].1 >= 0.099 && qa[1].1 <= 0.1, "{qa:?}");
        let qb = quantiles(MULTILINE);
        assert_eq!(qb.len(), 2);
        assert!(qb.iter().all(|(_, v)| v.is_nan()), "{qb:?}");

        assert_eq!(scrape.docs.len(), FAMILIES.len() + 4);
    }

    #[test]
    fn no_snapshots_render_nothing() {
        assert_eq!(to_prometheus(std::iter::empty()), "");
        assert_eq!(to_json(std::iter::empty()), "[]");
    }

    #[test]
    fn json_lists_named_snapshots_in_order() {
        let (a, b) = two_snapshots();
        let json = to_json([(QUOTED, &a), (MULTILINE, &b)]);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let items = v.as_array().unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0]["connection"], QUOTED);
        assert_eq!(items[1]["connection"], MULTILINE);
        assert_eq!(items[0]["bytes_in"], 1000);
        assert_eq!(items[0]["bytes_out"], 2000);
        assert_eq!(items[0]["reconnects"], 1);
        assert_eq!(items[0]["failed_requests"], 1);
        assert_eq!(items[0]["buffered_bytes"], 4096);
        assert!(items[1]["buffered_bytes"].is_null());
        assert_eq!(items[0]["window"]["messages_in"], 10);
        assert_eq!(
            items[0]["window"]["messages_per_second"],
            a.window.rates().messages_per_second()
        );
        assert_eq!(items[0]["window"]["error_rate"], 1.0 / 3.0);
        assert!(items[1]["window"]["error_rate"].is_null());
        assert_eq!(items[0]["connected"], true);
        assert_eq!(items[1]["connected"], false);
        assert_eq!(items[1]["bytes_in"], u64::MAX);
        assert_eq!(items[1]["errors"], 3);
        assert_eq!(items[1]["uptime_seconds"], 0.0);
        assert_eq!(items[0]["probe_rtt"]["count"], 100);
        assert_eq!(items[0]["probe_rtt"]["max_seconds"], 0.1);
        assert_eq!(items[0]["probe_rtt"]["mean_seconds"], 0.0505);
        assert_eq!(
            items[0]["probe_rtt"]["p99_seconds"],
            a.probe_rtt.p99.as_secs_f64()
        );
        // Each item minus its name deserializes back to the snapshot it came from.
        let mut first = items[0].clone();
        first.as_object_mut().unwrap().remove("connection");
        assert_eq!(serde_json::from_value::<MetricsSnapshot>(first).unwrap(), a);
    }

    #[tokio::test(start_paused = true)]
    async fn live_exports_match_snapshot_exports() {
        // A paused clock: nothing moves between the live reads and the snapshot.
        let a = ConnectionMetrics::new();
        a.mark_connected();
        a.record_sent(3, 300);
        a.record_request(Duration::from_millis(7));
        a.record_failed_request();
        a.record_probe_rtt(Duration::from_millis(2));
        a.report_buffers(|| 77);
        let b = ConnectionMetrics::new();
        b.add_bytes_in(5);
        tokio::time::advance(Duration::from_millis(2_500)).await;
        let live = [(QUOTED, &a), ("b", &b)];
        let mut streamed = Vec::new();
        write_prometheus_live(&mut streamed, live).unwrap();
        let (sa, sb) = (a.snapshot(), b.snapshot());
        let text = to_prometheus([(QUOTED, &sa), ("b", &sb)]);
        assert_eq!(String::from_utf8(streamed).unwrap(), text);
        assert!(
            text.contains("connection_uptime_seconds{connection=\"a\\\"b\\\\c\"} 2.5\n"),
            "{text}"
        );
        // 3 messages over 2.5 s.
        assert!(
            text.contains("connection_messages_out_per_second{connection=\"a\\\"b\\\\c\"} 1.2\n"),
            "{text}"
        );
        let mut streamed = Vec::new();
        write_json_live(&mut streamed, live).unwrap();
        assert_eq!(
            String::from_utf8(streamed).unwrap(),
            to_json([(QUOTED, &sa), ("b", &sb)])
        );
        assert_eq!(sa.window.rates().messages_out_per_second, 3.0 / 2.5);
    }

    /// A writer that takes `room` bytes, then fails.
    struct Full {
        room: usize,
        largest_write: usize,
    }

    impl Write for Full {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.largest_write = self.largest_write.max(buf.len());
            if buf.len() > self.room {
                return Err(io::Error::new(io::ErrorKind::WriteZero, "full"));
            }
            self.room -= buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn streaming_hands_the_writer_bounded_chunks_and_its_errors() {
        let metrics: Vec<(String, ConnectionMetrics)> = (0..2_000)
            .map(|i| (format!("connection-{i}"), ConnectionMetrics::new()))
            .collect();
        let rows = || metrics.iter().map(|(n, m)| (n, m));
        let mut sink = Full {
            room: usize::MAX,
            largest_write: 0,
        };
        write_prometheus_live(&mut sink, rows()).unwrap();
        let written = usize::MAX - sink.room;
        assert!(written > 2_000 * 1_000, "{written}");
        // The text is megabytes; what reaches the writer comes in buffer-sized pieces.
        assert!(sink.largest_write <= WRITE_BUFFER, "{}", sink.largest_write);

        let mut full = Full {
            room: 100_000,
            largest_write: 0,
        };
        let err = write_prometheus_live(&mut full, rows()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WriteZero);
        let err = write_json_live(&mut full, rows()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WriteZero);
    }
}
