//! Our client against our listener on 127.0.0.1: plain TCP, TLS, and mTLS (a client
//! certificate accepted, a client without one refused), with certificates made by rcgen
//! at test time; and the listener's connection cap as our client sees it.
#![cfg(feature = "tls")]
// The helpers outside #[test] functions panic on setup failure, as tests do.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use connection_core::{Endpoint, Transport};
use connection_tls::{CertSource, KeySource, ServerTls, TlsSource};
use connection_transport_tcp::{
    Bytes, Inbound, LengthDelimited, Listener, ListenerEvent, ListenerHandle, TcpTransport,
};
use futures::{SinkExt, StreamExt};

const LIMIT: Duration = Duration::from_secs(10);

struct Identity {
    cert_pem: String,
    key_pem: String,
    der: rustls::pki_types::CertificateDer<'static>,
}

fn identity(name: &str) -> Identity {
    let c = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
    Identity {
        cert_pem: c.cert.pem(),
        key_pem: c.signing_key.serialize_pem(),
        der: c.cert.der().clone(),
    }
}

/// An echo listener, TLS when `tls` is given.
async fn echo(tls: Option<ServerTls>, max_connections: usize) -> ListenerHandle {
    let mut b = Listener::builder().max_connections(max_connections);
    if let Some(tls) = tls {
        b = b.tls(tls.build().unwrap());
    }
    b.bind("127.0.0.1:0".parse().unwrap()).await.unwrap().serve(
        LengthDelimited::new(),
        |mut c: Inbound<LengthDelimited>| async move {
            while let Some(Ok(frame)) = c.next().await {
                if c.send(frame).await.is_err() {
                    return;
                }
            }
        },
    )
}

fn endpoint(addr: SocketAddr, tls: bool) -> Endpoint {
    let scheme = if tls { "tls" } else { "tcp" };
    Endpoint::parse(&format!("{scheme}://127.0.0.1:{}", addr.port())).unwrap()
}

/// The next listener event matching `want`, within [`LIMIT`].
async fn next_event(
    events: &mut tokio::sync::broadcast::Receiver<ListenerEvent>,
    want: impl Fn(&ListenerEvent) -> bool,
) -> ListenerEvent {
    tokio::time::timeout(LIMIT, async {
        loop {
            match events.recv().await {
                Ok(e) if want(&e) => return e,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("listener events ended: {e}"),
            }
        }
    })
    .await
    .expect("the listener event in time")
}

async fn round_trip(t: &TcpTransport<LengthDelimited>) -> Result<Bytes, String> {
    let conn = t.connect().await.map_err(|e| e.to_string())?;
    conn.send(Bytes::from_static(b"hello"))
        .await
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(LIMIT, conn.recv()).await {
        Ok(Some(Ok(f))) => Ok(f),
        Ok(Some(Err(e))) => Err(e.to_string()),
        Ok(None) => Err("closed".into()),
        Err(_) => Err("no answer".into()),
    }
}

#[tokio::test]
async fn plain_and_tls_round_trips() {
    let server = echo(None, 16).await;
    let t =
        TcpTransport::new(endpoint(server.local_addr(), false), LengthDelimited::new()).unwrap();
    assert_eq!(round_trip(&t).await.unwrap(), &b"hello"[..]);

    let id = identity("localhost");
    let server = echo(Some(ServerTls::from_pem(&id.cert_pem, &id.key_pem)), 16).await;
    let t = TcpTransport::builder(endpoint(server.local_addr(), true), LengthDelimited::new())
        .add_root(id.der.clone())
        .unwrap()
        .server_name("localhost")
        .build()
        .unwrap();
    assert_eq!(round_trip(&t).await.unwrap(), &b"hello"[..]);
    let report = server.shutdown(LIMIT).await;
    assert_eq!(report.aborted, 0);
    assert!(report.metrics.bytes_in >= 9, "{:?}", report.metrics);
}

#[tokio::test]
async fn mtls_accepts_our_client_certificate_and_refuses_a_client_without_one() {
    let server_id = identity("localhost");
    let client_id = identity("client");
    let tls = ServerTls::from_pem(&server_id.cert_pem, &server_id.key_pem)
        .client_auth_required(CertSource::pem(&client_id.cert_pem));
    let server = echo(Some(tls), 16).await;
    let ep = endpoint(server.local_addr(), true);

    let mut with = TlsSource::default();
    with.add_root(server_id.der.clone()).unwrap();
    with.set_client_auth(
        &CertSource::pem(&client_id.cert_pem),
        &KeySource::pem(&client_id.key_pem),
    )
    .unwrap();
    let t = TcpTransport::builder(ep.clone(), LengthDelimited::new())
        .tls(with)
        .server_name("localhost")
        .build()
        .unwrap();
    assert_eq!(round_trip(&t).await.unwrap(), &b"hello"[..]);

    let mut without = TlsSource::default();
    without.add_root(server_id.der.clone()).unwrap();
    let t = TcpTransport::builder(ep, LengthDelimited::new())
        .tls(without)
        .server_name("localhost")
        .build()
        .unwrap();
    let mut events = server.events();
    assert!(
        round_trip(&t).await.is_err(),
        "no echo without a client certificate"
    );
    // The listener reports the failure once its side of the handshake returns, which
    // may be just after our client saw the alert.
    next_event(&mut events, |e| {
        matches!(e, ListenerEvent::HandshakeFailed { .. })
    })
    .await;
    let m = server.metrics();
    assert_eq!(m.handshake_failures, 1, "{m:?}");
}

#[tokio::test]
async fn over_the_cap_our_client_sees_the_connection_end_and_a_freed_slot_is_reused() {
    let server = echo(None, 1).await;
    let t =
        TcpTransport::new(endpoint(server.local_addr(), false), LengthDelimited::new()).unwrap();
    let first = t.connect().await.unwrap();
    first.send(Bytes::from_static(b"1")).await.unwrap();
    tokio::time::timeout(LIMIT, first.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let mut events = server.events();
    // One over the cap: accepted by the kernel, closed by the listener at once.
    assert!(round_trip(&t).await.is_err());
    next_event(&mut events, |e| matches!(e, ListenerEvent::Rejected { .. })).await;
    assert_eq!(server.metrics().rejected, 1);
    drop(first);
    // Closed is reported once the slot is free again.
    next_event(&mut events, |e| matches!(e, ListenerEvent::Closed { .. })).await;
    assert_eq!(round_trip(&t).await.unwrap(), &b"hello"[..]);
}
