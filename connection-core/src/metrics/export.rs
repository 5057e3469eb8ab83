//! Rendering snapshots as Prometheus text and JSON.

use std::fmt::{self, Write as _};

use serde::Serialize;

use super::{LatencySnapshot, MetricsSnapshot};

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

struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    value: fn(&MetricsSnapshot) -> Value,
}

/// Every family but the latency summary, which has more than one sample per connection.
const FAMILIES: &[Family] = &[
    Family {
        name: "connection_up",
        help: "Whether the connection is established (1) or not (0).",
        kind: "gauge",
        value: |s| Value::Int(u64::from(s.connected)),
    },
    Family {
        name: "connection_uptime_seconds",
        help: "Seconds since the connection was established; 0 while disconnected.",
        kind: "gauge",
        value: |s| Value::Float(s.uptime.as_secs_f64()),
    },
    Family {
        name: "connection_connected_seconds_total",
        help: "Seconds the connection has been established, over all sessions.",
        kind: "counter",
        value: |s| Value::Float(s.total_connected.as_secs_f64()),
    },
    Family {
        name: "connection_bytes_in_total",
        help: "Bytes received.",
        kind: "counter",
        value: |s| Value::Int(s.bytes_in),
    },
    Family {
        name: "connection_bytes_out_total",
        help: "Bytes sent.",
        kind: "counter",
        value: |s| Value::Int(s.bytes_out),
    },
    Family {
        name: "connection_messages_in_total",
        help: "Messages received.",
        kind: "counter",
        value: |s| Value::Int(s.messages_in),
    },
    Family {
        name: "connection_messages_out_total",
        help: "Messages sent.",
        kind: "counter",
        value: |s| Value::Int(s.messages_out),
    },
    Family {
        name: "connection_requests_total",
        help: "Requests made.",
        kind: "counter",
        value: |s| Value::Int(s.requests),
    },
    Family {
        name: "connection_errors_total",
        help: "Errors seen.",
        kind: "counter",
        value: |s| Value::Int(s.errors),
    },
    Family {
        name: "connection_reconnects_total",
        help: "Reconnects made.",
        kind: "counter",
        value: |s| Value::Int(s.reconnects),
    },
];

/// A latency summary family: quantiles, sum and count, plus a max gauge.
struct Summary {
    name: &'static str,
    help: &'static str,
    of: fn(&MetricsSnapshot) -> &LatencySnapshot,
    max: Family,
}

/// Probe round trips and request latency are separate families: a fast ping says
/// nothing of how slow real requests are, and mixing them hides both.
const SUMMARIES: &[Summary] = &[
    Summary {
        name: "connection_probe_rtt_seconds",
        help: "Probe round trips. Quantiles are histogram bucket upper bounds, at most 6.25% high.",
        of: |s| &s.probe_rtt,
        max: Family {
            name: "connection_probe_rtt_max_seconds",
            help: "Largest probe round trip recorded.",
            kind: "gauge",
            value: |s| Value::Float(s.probe_rtt.max.as_secs_f64()),
        },
    },
    Summary {
        name: "connection_request_latency_seconds",
        help: "Latency of requests made on the connection. Quantiles are histogram bucket upper bounds, at most 6.25% high.",
        of: |s| &s.request_latency,
        max: Family {
            name: "connection_request_latency_max_seconds",
            help: "Largest request latency recorded.",
            kind: "gauge",
            value: |s| Value::Float(s.request_latency.max.as_secs_f64()),
        },
    },
];

/// Renders snapshots of named connections in the Prometheus text exposition format 0.0.4.
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
/// | `connection_{requests,errors,reconnects}_total` | counter |
/// | `connection_probe_rtt_seconds`, `connection_request_latency_seconds` (`quantile="0.5"`, `"0.99"`, `_sum`, `_count`) | summary |
/// | `connection_probe_rtt_max_seconds`, `connection_request_latency_max_seconds` | gauge |
///
/// Quantiles of a connection that recorded no latency are `NaN`, as Prometheus' own
/// clients report them, rather than a misleading 0. Names should be unique: duplicates
/// produce duplicate series, which a scraper rejects. No snapshots give an empty string.
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
/// ```
pub fn to_prometheus<'a>(
    snapshots: impl IntoIterator<Item = (&'a str, &'a MetricsSnapshot)>,
) -> String {
    let rows: Vec<(String, &MetricsSnapshot)> = snapshots
        .into_iter()
        .map(|(name, snapshot)| (escape_label_value(name), snapshot))
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    let mut out = String::with_capacity(rows.len() * 1024);
    // Writing into a String cannot fail.
    let _ = write_prometheus(&mut out, &rows);
    out
}

fn write_prometheus(out: &mut String, rows: &[(String, &MetricsSnapshot)]) -> fmt::Result {
    for family in FAMILIES {
        write_family(out, family, rows)?;
    }
    for summary in SUMMARIES {
        write_summary(out, summary, rows)?;
    }
    Ok(())
}

fn write_summary(
    out: &mut String,
    summary: &Summary,
    rows: &[(String, &MetricsSnapshot)],
) -> fmt::Result {
    let Summary {
        name: family,
        help,
        of,
        max,
    } = summary;
    writeln!(out, "# HELP {family} {help}")?;
    writeln!(out, "# TYPE {family} summary")?;
    for (name, s) in rows {
        let l = of(s);
        // A summary with no observations has no quantiles; NaN says so, 0 would lie.
        let (p50, p99) = if l.count == 0 {
            (f64::NAN, f64::NAN)
        } else {
            (l.p50.as_secs_f64(), l.p99.as_secs_f64())
        };
        let sum = l.mean.as_secs_f64() * l.count as f64;
        writeln!(
            out,
            "{family}{{connection=\"{name}\",quantile=\"0.5\"}} {}",
            Value::Float(p50)
        )?;
        writeln!(
            out,
            "{family}{{connection=\"{name}\",quantile=\"0.99\"}} {}",
            Value::Float(p99)
        )?;
        writeln!(
            out,
            "{family}_sum{{connection=\"{name}\"}} {}",
            Value::Float(sum)
        )?;
        writeln!(
            out,
            "{family}_count{{connection=\"{name}\"}} {}",
            Value::Int(l.count)
        )?;
    }
    write_family(out, max, rows)
}

fn write_family(
    out: &mut String,
    family: &Family,
    rows: &[(String, &MetricsSnapshot)],
) -> fmt::Result {
    let Family {
        name,
        help,
        kind,
        value,
    } = family;
    writeln!(out, "# HELP {name} {help}")?;
    writeln!(out, "# TYPE {name} {kind}")?;
    for (connection, snapshot) in rows {
        writeln!(
            out,
            "{name}{{connection=\"{connection}\"}} {}",
            value(snapshot)
        )?;
    }
    Ok(())
}

/// Escapes a label value as the text format requires: `\` `"` and newline.
fn escape_label_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str(r"\\"),
            '"' => escaped.push_str(r#"\""#),
            '\n' => escaped.push_str(r"\n"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[derive(Serialize)]
struct NamedSnapshot<'a> {
    connection: &'a str,
    #[serde(flatten)]
    snapshot: &'a MetricsSnapshot,
}

/// Renders snapshots of named connections as a JSON array, in input order, of objects
/// holding the connection's name under `"connection"` next to the fields of its
/// [`MetricsSnapshot`]:
/// `[{"connection": "db", "bytes_in": 1024, ..., "latency": {"count": 1, "p99_seconds":
/// 0.002, ...}, "connected": true, "uptime_seconds": 3.5, ...}]`.
///
/// An array rather than an object keyed by name keeps the order and survives duplicate
/// names.
pub fn to_json<'a>(snapshots: impl IntoIterator<Item = (&'a str, &'a MetricsSnapshot)>) -> String {
    let named: Vec<NamedSnapshot<'_>> = snapshots
        .into_iter()
        .map(|(connection, snapshot)| NamedSnapshot {
            connection,
            snapshot,
        })
        .collect();
    // These are plain structs with string keys and finite numbers: serde_json has no
    // failure to report for them, and a metrics endpoint must not panic regardless.
    serde_json::to_string(&named).unwrap_or_else(|_| String::from("[]"))
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
        a.inc_errors();
        a.inc_reconnects();
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
            let expected = if family.ends_with("_seconds")
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
            10 + 2 * (4 + 1)
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
            ("connection_requests_total", 2.0),
            ("connection_errors_total", 1.0),
            ("connection_reconnects_total", 1.0),
            ("connection_probe_rtt_seconds_count", 100.0),
            ("connection_probe_rtt_max_seconds", 0.1),
        ];
        for (metric, expected) in expected_a {
            assert_eq!(value(metric, QUOTED), expected, "{metric}");
        }
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
}
