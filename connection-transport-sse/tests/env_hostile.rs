//! Every `CONNECTION_SSE_*` variable given hostile values: each is either refused with
//! the variable (and, unless secret, the value) named, or the settings it gives run a
//! short real client against a loopback server without a panic or a hang.

mod support;

use std::time::Duration;

use connection_transport_sse::SseSettings;
use support::{Reply, SseServer};

const HOSTILE: &[&str] = &[
    "0",
    "1",
    "2",
    "-1",
    "NaN",
    "inf",
    "",
    " ",
    "0.5",
    "1e3",
    "4294967296",
    "100000000000",
    "18446744073709551615",
    "99999999999999999999999",
    "true",
    "null",
    "x",
    "GET",
    "500-400",
    "http://127.0.0.1:1/",
];

#[tokio::test]
async fn sse_settings_refuse_or_run() {
    let server =
        SseServer::start(|_, _| Reply::stream().send(": hi\nretry: 10\ndata: x\n\n").hold()).await;
    let url = server.url("/events");
    let mut accepted = 0;
    for var in SseSettings::ENV.vars() {
        for &value in HOSTILE {
            let mut vars = vec![(var.name(), value)];
            if var.name() != "CONNECTION_SSE_URL" {
                vars.push(("CONNECTION_SSE_URL", "http://127.0.0.1:1/"));
            }
            match SseSettings::from_vars(vars) {
                Err(err) => {
                    let named = err
                        .variable()
                        .is_some_and(|v| v.split(", ").any(|n| n == var.name()));
                    assert!(
                        named,
                        "{}={value:?} refused without naming it: {err}",
                        var.name()
                    );
                    if var.is_secret() {
                        assert_eq!(err.value(), None);
                    } else {
                        assert!(err.to_string().contains(value.trim()), "{err}");
                    }
                }
                Ok(mut settings) => {
                    accepted += 1;
                    // `null` leaves the URL unset, which only a client refuses.
                    if var.name() != "CONNECTION_SSE_URL" || settings.url.is_none() {
                        settings.url = Some(url.clone());
                    }
                    let run = async {
                        let mut client = settings.client_builder().unwrap().spawn().unwrap();
                        let _ =
                            tokio::time::timeout(Duration::from_millis(300), client.recv()).await;
                        client.close(Duration::from_millis(500)).await;
                    };
                    tokio::time::timeout(Duration::from_secs(10), run)
                        .await
                        .unwrap_or_else(|_| panic!("{}={value:?}: the client hung", var.name()));
                }
            }
        }
    }
    assert!(accepted > 0);
}
