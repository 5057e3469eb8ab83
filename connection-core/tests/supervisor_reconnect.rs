//! The supervisor reconnects after the server goes away and comes back.

mod support;

use std::time::Duration;

use connection_core::{
    ConnectionState, ConstantBackoff, DisconnectReason, EventFilter, EventKind, EventType,
    Supervisor,
};
use connection_testkit::{TcpEchoServer, TcpEchoTransport};
use support::{next_matching, wait_state};

#[tokio::test(start_paused = true)]
async fn reconnects_after_server_restart() {
    let mut server = TcpEchoServer::start().await.unwrap();
    let transport = TcpEchoTransport::new(server.addr()).unwrap();
    let handle = Supervisor::new(transport.clone())
        .backoff(ConstantBackoff::new(Duration::from_millis(100)))
        .spawn()
        .unwrap();
    let mut events = handle.subscribe(EventFilter::all());
    wait_state(&handle, ConnectionState::Connected).await;
    assert_eq!(handle.metrics().reconnects, 0);

    server.stop().await;
    let lost = next_matching(&mut events, |e| e.event_type() == EventType::Disconnected).await;
    assert!(
        matches!(
            &lost.kind,
            EventKind::Disconnected {
                reason: DisconnectReason::PeerClosed | DisconnectReason::Error(_)
            }
        ),
        "{lost}"
    );
    let retry = next_matching(&mut events, |e| e.event_type() == EventType::Reconnecting).await;
    assert!(
        matches!(retry.kind, EventKind::Reconnecting { attempt: 1, delay } if delay == Duration::from_millis(100))
    );
    // While the server is down every attempt is refused and retried.
    next_matching(&mut events, |e| {
        matches!(e.kind, EventKind::Reconnecting { attempt: 3, .. })
    })
    .await;
    assert_ne!(handle.state(), ConnectionState::Connected);

    server.restart().await.unwrap();
    wait_state(&handle, ConnectionState::Connected).await;
    let snapshot = handle.metrics();
    assert_eq!(snapshot.reconnects, 1);
    assert!(
        snapshot.errors >= 2,
        "refused attempts count as errors: {snapshot:?}"
    );
    assert!(snapshot.connected);
    assert!(transport.attempts() >= 4);

    assert_eq!(
        handle.shutdown(Duration::from_secs(1)).await,
        connection_core::ShutdownOutcome::Graceful
    );
    assert_eq!(handle.state(), ConnectionState::Closed);
}

#[tokio::test(start_paused = true)]
async fn every_state_change_is_a_legal_transition_and_published() {
    let mut server = TcpEchoServer::start().await.unwrap();
    let handle = Supervisor::new(TcpEchoTransport::new(server.addr()).unwrap())
        .backoff(ConstantBackoff::new(Duration::from_millis(50)))
        .spawn()
        .unwrap();
    let mut changes = handle.subscribe(EventFilter::all().types([EventType::StateChanged]));
    wait_state(&handle, ConnectionState::Connected).await;
    server.stop().await;
    wait_state(&handle, ConnectionState::Reconnecting).await;
    server.restart().await.unwrap();
    wait_state(&handle, ConnectionState::Connected).await;
    handle.restart();
    next_matching(&mut changes, |e| {
        matches!(
            e.kind,
            EventKind::StateChanged {
                from: ConnectionState::Connected,
                to: ConnectionState::Reconnecting
            }
        )
    })
    .await;
    wait_state(&handle, ConnectionState::Connected).await;
    handle.shutdown(Duration::from_secs(1)).await;

    let mut seen = vec![];
    while let Ok(Some(Ok(e))) = tokio::time::timeout(
        Duration::from_millis(1),
        futures::StreamExt::next(&mut changes),
    )
    .await
    {
        seen.push(e);
    }
    let mut last = None;
    for e in &seen {
        let EventKind::StateChanged { from, to } = e.kind else {
            unreachable!()
        };
        assert!(from.can_transition_to(to), "{from} -> {to}");
        if let Some(prev) = last {
            assert_eq!(prev, from, "state changes must chain");
        }
        last = Some(to);
    }
    assert_eq!(last, Some(ConnectionState::Closed));
}
