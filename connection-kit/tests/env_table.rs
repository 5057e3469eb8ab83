//! The README's table of environment variables is the code's table: every variable
//! every loader reads, with its default and meaning, and nothing else.

use connection_kit::core::ConnectionConfig;
use connection_kit::core::env::{EnvSection, PROJECT_PREFIX, RESERVED_SECTIONS};
use connection_kit::health::ManagerConfig;
use connection_kit::http::HttpSettings;
use connection_kit::pool::PoolConfig;
use connection_kit::retry::backoff::BackoffConfig;
use connection_kit::retry::breaker::CircuitBreakerConfig;
use connection_kit::retry::bulkhead::BulkheadConfig;
use connection_kit::retry::limit::RateLimitConfig;
use connection_kit::sse::SseSettings;
use connection_kit::tcp::{ListenerSettings, TcpConfig};
use connection_kit::ws::WsSettings;

const START: &str = "<!-- env-table:start -->";
const END: &str = "<!-- env-table:end -->";

fn sections() -> Vec<(&'static str, EnvSection)> {
    vec![
        ("`ConnectionConfig`", ConnectionConfig::ENV),
        ("`BackoffConfig` (request retries)", BackoffConfig::ENV),
        ("`CircuitBreakerConfig`", CircuitBreakerConfig::ENV),
        ("`BulkheadConfig`", BulkheadConfig::ENV),
        ("`RateLimitConfig`", RateLimitConfig::ENV),
        ("`PoolConfig`", PoolConfig::ENV),
        ("`ManagerConfig`", ManagerConfig::ENV),
        ("`ManagerConfig` (health check)", ManagerConfig::HEALTH_ENV),
        ("`WsSettings`", WsSettings::ENV),
        ("`HttpSettings`", HttpSettings::ENV),
        ("`SseSettings`", SseSettings::ENV),
        ("`TcpConfig`", TcpConfig::ENV),
        ("`ListenerSettings`", ListenerSettings::ENV),
    ]
}

fn expected_table() -> String {
    let mut out = String::from("| variable | default | meaning | read by |\n|---|---|---|---|\n");
    for (reader, section) in sections() {
        for var in section.vars() {
            out.push_str(&format!(
                "| `{}` | `{}` | {} | {} |\n",
                var.name(),
                var.default_value(),
                var.meaning(),
                reader
            ));
        }
    }
    out
}

#[test]
fn readme_table_matches_the_code() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let start = readme
        .find(START)
        .expect("README has the env-table:start marker")
        + START.len();
    let end = readme
        .find(END)
        .expect("README has the env-table:end marker");
    let table = readme[start..end].trim();
    let expected = expected_table();
    assert_eq!(
        table,
        expected.trim(),
        "README's variable table differs from the code; the code's table is:\n\n{expected}"
    );
}

#[test]
fn sections_are_disjoint_and_reserved() {
    let mut names = std::collections::HashSet::new();
    for (reader, section) in sections() {
        let prefix = section.prefix();
        if prefix != PROJECT_PREFIX {
            let rest = prefix.strip_prefix(PROJECT_PREFIX).expect("project prefix");
            assert!(
                RESERVED_SECTIONS.contains(&rest),
                "{reader}: {prefix} is not a reserved section"
            );
        }
        for var in section.vars() {
            assert!(var.name().starts_with(prefix), "{}", var.name());
            assert!(names.insert(var.name()), "{} is read twice", var.name());
        }
    }
    // Core's loader leaves every sibling section alone, and refuses the rest.
    for (_, section) in sections().into_iter().skip(1) {
        let vars = section.vars().iter().map(|v| (v.name(), v.default_value()));
        assert!(
            ConnectionConfig::from_vars(vars).is_ok(),
            "{}",
            section.prefix()
        );
    }
    assert!(ConnectionConfig::from_vars([("CONNECTION_POLL_MAX_SIZE", "1")]).is_err());
}

#[test]
fn every_loader_reads_its_documented_defaults() {
    let defaults = |s: EnvSection| -> Vec<(&'static str, &'static str)> {
        s.vars()
            .iter()
            .map(|v| (v.name(), v.default_value()))
            .collect()
    };
    assert_eq!(
        ConnectionConfig::from_vars(defaults(ConnectionConfig::ENV)).unwrap(),
        ConnectionConfig::default()
    );
    let manager = ManagerConfig::from_vars(
        defaults(ManagerConfig::ENV)
            .into_iter()
            .chain(defaults(ManagerConfig::HEALTH_ENV)),
    )
    .unwrap();
    assert_eq!(
        format!("{manager:?}"),
        format!("{:?}", ManagerConfig::default())
    );
    let http = HttpSettings::from_vars(
        defaults(HttpSettings::ENV)
            .into_iter()
            .filter(|(name, _)| *name != "CONNECTION_HTTP_URL")
            .chain([("CONNECTION_HTTP_URL", "http://127.0.0.1:1")]),
    )
    .unwrap()
    .into_builder()
    .unwrap()
    .build()
    .unwrap();
    let implicit = HttpSettings::from_vars([("CONNECTION_HTTP_URL", "http://127.0.0.1:1")])
        .unwrap()
        .into_builder()
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(format!("{http:?}"), format!("{implicit:?}"));
    assert_eq!(
        TcpConfig::from_vars(defaults(TcpConfig::ENV)).unwrap(),
        TcpConfig::default()
    );
    let none = ManagerConfig::from_vars(Vec::<(String, String)>::new()).unwrap();
    assert_eq!(
        format!("{none:?}"),
        format!("{:?}", ManagerConfig::default())
    );
}
