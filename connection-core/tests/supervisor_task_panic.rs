//! A supervisor task that dies (a panic in the transport's code) does not vanish: the
//! connection turns Failed with an error that says the task ended, waiters are released
//! with it, and an Error event is published.

mod support;

use std::time::Duration;

use connection_core::task::TaskEnded;
use connection_core::{
    ConnectionState, ConstantBackoff, DisconnectReason, Error, EventFilter, EventKind, EventType,
    ShutdownOutcome, Supervisor,
};
use connection_testkit::{PANIC_MESSAGE, Panicking, TcpEchoServer, TcpEchoTransport};
use support::{next_matching, wait_state};

fn expected_message() -> String {
    format!("supervisor task ended: panicked: {PANIC_MESSAGE}")
}

fn task_ended(error: &Error) -> &TaskEnded {
    TaskEnded::find(error).unwrap_or_else(|| panic!("no TaskEnded in {error}"))
}

#[tokio::test(start_paused = true)]
async fn a_panicking_probe_turns_the_connection_failed_with_the_cause() {
    let server = TcpEchoServer::start().await.unwrap();
    let transport = Panicking::new(TcpEchoTransport::new(server.addr()).unwrap());
    let switches = transport.clone();
    let conn = Supervisor::new(transport)
        .backoff(ConstantBackoff::new(Duration::from_millis(100)))
        .keepalive(Duration::from_secs(1), Duration::from_millis(300))
        .spawn()
        .unwrap();
    let mut events = conn.subscribe(EventFilter::all());
    let echo = conn.ready(Duration::from_secs(5)).await.unwrap();
    echo.echo(b"hi").await.unwrap();

    switches.panic_on_probe(true);
    let disconnected =
        next_matching(&mut events, |e| e.event_type() == EventType::Disconnected).await;
    let EventKind::Disconnected {
        reason: DisconnectReason::Error(cause),
    } = &disconnected.kind
    else {
        panic!("expected a disconnect with an error, got {disconnected}");
    };
    assert!(cause.to_string().contains(&expected_message()), "{cause}");
    let error_event = next_matching(&mut events, |e| e.event_type() == EventType::Error).await;
    let EventKind::Error { error } = &error_event.kind else {
        unreachable!()
    };
    assert_eq!(task_ended(error).panic_message(), Some(PANIC_MESSAGE));
    assert!(!error.is_retryable());

    wait_state(&conn, ConnectionState::Failed).await;
    assert!(conn.is_finished());
    let last = conn.last_error().expect("the panic is the last error");
    assert_eq!(task_ended(&last).task(), "supervisor");
    assert!(!conn.metrics().connected);

    // The link says why, at once.
    let unavailable = conn.ready(Duration::from_secs(3600)).await.unwrap_err();
    let Error::Unavailable {
        state: ConnectionState::Failed,
        cause: Some(cause),
        ..
    } = &unavailable
    else {
        panic!("expected Unavailable with a cause, got {unavailable:?}");
    };
    assert!(cause.to_string().contains(&expected_message()), "{cause}");

    // Nobody is left to make a new attempt: a restart must not pretend otherwise.
    conn.restart();
    assert_eq!(conn.state(), ConnectionState::Failed);
    assert_eq!(
        conn.shutdown(Duration::from_secs(1)).await,
        ShutdownOutcome::Graceful
    );
}

#[tokio::test(start_paused = true)]
async fn a_panicking_connect_releases_waiters_with_the_cause() {
    let server = TcpEchoServer::start().await.unwrap();
    let transport = Panicking::new(TcpEchoTransport::new(server.addr()).unwrap());
    transport.panic_on_connect(true);
    let conn = Supervisor::new(transport.clone()).spawn().unwrap();
    let mut events = conn.subscribe(EventFilter::all().types([EventType::Error]));

    // Without the fix this waits the whole hour for a connection that never comes.
    let err = conn.ready(Duration::from_secs(3600)).await.unwrap_err();
    match &err {
        Error::Unavailable {
            state: ConnectionState::Failed,
            cause: Some(cause),
            ..
        } => assert_eq!(task_ended(cause).panic_message(), Some(PANIC_MESSAGE)),
        other => panic!("expected Unavailable with a cause, got {other:?}"),
    }
    let event = next_matching(&mut events, |_| true).await;
    assert!(event.to_string().contains(&expected_message()), "{event}");
    assert_eq!(transport.connects(), 1);
    assert_eq!(conn.state(), ConnectionState::Failed);
    assert!(conn.is_finished());
}

#[tokio::test(start_paused = true)]
async fn a_panic_while_shutting_down_still_ends_closed() {
    let server = TcpEchoServer::start().await.unwrap();
    let transport = Panicking::new(TcpEchoTransport::new(server.addr()).unwrap());
    let conn = Supervisor::new(transport.clone()).spawn().unwrap();
    let mut errors = conn.subscribe(EventFilter::all().types([EventType::Error]));
    conn.ready(Duration::from_secs(5)).await.unwrap();

    transport.panic_on_close(true);
    conn.shutdown(Duration::from_secs(1)).await;
    assert_eq!(conn.state(), ConnectionState::Closed);
    let event = next_matching(&mut errors, |_| true).await;
    assert!(event.to_string().contains(&expected_message()), "{event}");
}
