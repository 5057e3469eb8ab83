//! Bounded fuzzing of the two places hostile text enters: `Endpoint` parsing and the
//! environment loader. Whatever the input, no panic; an error names what it refuses.

use connection_core::{ConnectionConfig, Endpoint};
use proptest::prelude::*;

/// URL-shaped text: a scheme, maybe userinfo, a host, a port, a path and a query, each
/// drawn from pieces that have broken URL parsers before, then mixed with noise.
fn url_like() -> impl Strategy<Value = String> {
    let scheme = prop_oneof![
        Just("ws"),
        Just("wss"),
        Just("http"),
        Just("https"),
        Just("tcp"),
        Just("tls"),
        Just(""),
        Just("WS"),
        Just("ftp"),
        Just("ws+unix"),
    ];
    let userinfo = prop_oneof![
        Just(String::new()),
        Just("user:pass@".to_owned()),
        Just(":@".to_owned()),
        Just("u%40x:p%3A@".to_owned()),
        "[a-z:@%]{0,12}@",
    ];
    let host = prop_oneof![
        Just("127.0.0.1".to_owned()),
        Just("[::1]".to_owned()),
        Just("[::1".to_owned()),
        Just("localhost".to_owned()),
        Just("".to_owned()),
        Just("xn--".to_owned()),
        Just("256.256.256.256".to_owned()),
        "[a-zA-Z0-9.\\-_~%\\[\\]:]{0,24}",
    ];
    let port = prop_oneof![
        Just(String::new()),
        Just(":0".to_owned()),
        Just(":65535".to_owned()),
        Just(":65536".to_owned()),
        Just(":99999".to_owned()),
        Just(":-1".to_owned()),
        Just(":".to_owned()),
        ":[0-9]{1,25}",
    ];
    let rest = "[ -~\\u{80}-\\u{10ffff}]{0,40}";
    (scheme, userinfo, host, port, rest).prop_map(|(s, u, h, p, r)| format!("{s}://{u}{h}{p}{r}"))
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 4000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn endpoint_parsing_never_panics(input in prop_oneof![url_like(), any::<String>()]) {
        match Endpoint::parse(&input) {
            Ok(endpoint) => {
                // Whatever parsed can be shown and redacted without a panic, and the
                // redacted form never shows a password.
                let _ = endpoint.to_string();
                let redacted = endpoint.redacted().to_owned();
                prop_assert!(!redacted.contains(":pass@"), "{redacted}");
            }
            Err(err) => {
                let _ = err.to_string();
                let _ = format!("{err:?}");
            }
        }
    }

    #[test]
    fn environment_loader_never_panics(
        suffix in prop_oneof![
            Just("CONNECT_TIMEOUT_MS".to_owned()),
            Just("RETRY_MAX_ATTEMPTS".to_owned()),
            Just("KEEPALIVE_INTERVAL_MS".to_owned()),
            "[A-Z_]{0,24}",
        ],
        value in prop_oneof![
            "[0-9]{0,25}",
            "-?[0-9]{1,5}(\\.[0-9]{1,5})?(e[0-9]{1,3})?",
            Just("NaN".to_owned()),
            Just("inf".to_owned()),
            any::<String>(),
        ],
    ) {
        let name = format!("CONNECTION_{suffix}");
        match ConnectionConfig::from_vars([(name.as_str(), value.as_str())]) {
            Ok(config) => prop_assert!(config.validate().is_ok()),
            Err(err) => {
                // Refused: the error names the variable (or leaves it to a sibling crate).
                let named = err.variable().is_some_and(|v| v.contains(name.as_str()));
                prop_assert!(named, "{name}={value:?}: {err}");
            }
        }
    }
}
