//! tungstenite logs the whole upgrade request (the `Authorization` header and the URL's
//! `?token=` included) and every frame's payload at TRACE, through the `log` crate. With
//! the usual `tracing-subscriber` setup and its `log` bridge, the crate's
//! `LOG_FILTER_DIRECTIVE` keeps them out; without it they do appear (the control, so
//! this test can fail).

mod support;

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use connection_transport_ws::{LOG_FILTER_DIRECTIVE, Message, WsClient};
use support::{Options, WsServer, echo};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;

const TOKEN: &str = "query-secret-4711";
const BEARER: &str = "bearer-secret-0815";
const PAYLOAD: &str = "payload-secret-1234";

/// Everything the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().expect("capture lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl MakeWriter<'_> for Captured {
    type Writer = Captured;

    fn make_writer(&self) -> Captured {
        self.clone()
    }
}

/// Connects with a token in the query and a bearer token, sends a secret and reads its
/// echo, all under a TRACE subscriber filtered by `directives`; returns the log.
async fn log_of_a_session(directives: &str) -> String {
    // The `log` bridge, as `tracing_subscriber::fmt().init()` installs it. Global and set
    // once per process; it hands each record to the thread's current subscriber.
    let _ = tracing_log::LogTracer::init();
    let captured = Captured::default();
    let subscriber = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(captured.clone()),
        )
        .with(directives.parse::<Targets>().expect("valid directives"));
    // Thread-local, and this test's runtime runs every task on this thread.
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = WsServer::start(Options::default(), echo).await;
    let url = format!("{}?token={TOKEN}", server.url());
    let mut client = WsClient::builder(url)
        .configure(|c| c.bearer_auth(BEARER))
        .spawn()
        .expect("client");
    client.wait_connected().await.expect("connected");
    client.send_text(PAYLOAD).await.expect("sent");
    let echoed = tokio::time::timeout(Duration::from_secs(10), client.recv())
        .await
        .expect("echo in time");
    assert_eq!(echoed, Some(Message::text(PAYLOAD)));
    client.close(Duration::from_secs(2)).await;
    let headers = server.log.headers.lock().expect("log")[0].clone();
    assert_eq!(
        headers.get("authorization").expect("sent"),
        &format!("Bearer {BEARER}")
    );
    let log = captured.0.lock().expect("capture lock").clone();
    String::from_utf8(log).expect("utf-8 log")
}

#[tokio::test]
async fn tungstenite_logs_secrets_at_trace_without_the_filter() {
    let log = log_of_a_session("trace").await;
    for secret in [TOKEN, BEARER, PAYLOAD] {
        assert!(
            log.contains(secret),
            "{secret} not in the control log:\n{log}"
        );
    }
}

#[tokio::test]
async fn the_recommended_filter_keeps_secrets_out_of_a_trace_log() {
    let log = log_of_a_session(&format!("trace,{LOG_FILTER_DIRECTIVE}")).await;
    for secret in [TOKEN, BEARER, PAYLOAD] {
        assert!(!log.contains(secret), "{secret} leaked:\n{log}");
    }
    // Still a TRACE log: our own records and tungstenite's DEBUG ones are there.
    assert!(log.contains("connected"), "{log}");
    assert!(log.contains("Client handshake done"), "{log}");
    assert!(log.contains("token=***"), "the redacted URL: {log}");
}
