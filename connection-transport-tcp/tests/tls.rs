//! The client over TLS against a tokio-rustls echo server on 127.0.0.1 with an rcgen
//! certificate made at test time: accepted with its root, refused (not retryable)
//! without it or under another name, and a client certificate presented on request.
#![cfg(feature = "tls")]
// The server helpers outside #[test] functions panic on setup failure, as tests do.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use connection_core::{Endpoint, Error, Transport};
use connection_tls::TlsSource;
use connection_transport_tcp::{LengthDelimited, TcpTransport};
use futures::{SinkExt, StreamExt};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

const LIMIT: Duration = Duration::from_secs(10);

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

struct Cert {
    der: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

fn cert(name: &str) -> Cert {
    let c = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
    Cert {
        der: c.cert.der().clone(),
        key: PrivatePkcs8KeyDer::from(c.signing_key.serialize_der()),
    }
}

/// A TLS echo server; with `client_root`, it requires a client certificate under it.
async fn tls_echo(server: &Cert, client_root: Option<&Cert>) -> SocketAddr {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_root {
        Some(root) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(root.der.clone()).unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                roots.into(),
                provider(),
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(
            vec![server.der.clone()],
            PrivateKeyDer::Pkcs8(server.key.clone_key()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(s) = acceptor.accept(s).await else {
                    return;
                };
                let mut f = Framed::new(s, LengthDelimitedCodec::new());
                while let Some(Ok(frame)) = f.next().await {
                    if f.send(frame.freeze()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn endpoint(addr: SocketAddr) -> Endpoint {
    Endpoint::parse(&format!("tls://127.0.0.1:{}", addr.port())).unwrap()
}

#[tokio::test]
async fn frames_echo_over_tls_with_the_servers_root() {
    let server = cert("localhost");
    let addr = tls_echo(&server, None).await;
    let t = TcpTransport::builder(endpoint(addr), LengthDelimited::new())
        .add_root(server.der.clone())
        .unwrap()
        .server_name("localhost")
        .build()
        .unwrap();
    let conn = t.connect().await.unwrap();
    assert!(conn.is_tls());
    for size in [1usize, 64 << 10, 1 << 20] {
        conn.send(Bytes::from(vec![9u8; size])).await.unwrap();
        let f = tokio::time::timeout(LIMIT, conn.recv())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(f.len(), size);
    }
}

#[tokio::test]
async fn a_certificate_that_does_not_verify_is_a_final_tls_error() {
    let server = cert("localhost");
    let addr = tls_echo(&server, None).await;
    // The webpki roots do not know a self-signed certificate.
    let t = TcpTransport::builder(endpoint(addr), LengthDelimited::new())
        .server_name("localhost")
        .build()
        .unwrap();
    let err = t.connect().await.unwrap_err();
    assert!(matches!(err, Error::Tls { .. }), "{err}");
    assert!(!err.is_retryable());

    // The right root under the wrong name fails the same way.
    let t = TcpTransport::builder(endpoint(addr), LengthDelimited::new())
        .add_root(server.der.clone())
        .unwrap()
        .server_name("elsewhere.example")
        .build()
        .unwrap();
    let err = t.connect().await.unwrap_err();
    assert!(matches!(err, Error::Tls { .. }), "{err}");
}

#[tokio::test]
async fn a_client_certificate_is_presented_when_the_server_asks() {
    let server = cert("localhost");
    let client = cert("client");
    let addr = tls_echo(&server, Some(&client)).await;

    let mut with = TlsSource::default();
    with.add_root(server.der.clone()).unwrap();
    with.client_auth = Some(Arc::new((
        vec![client.der.clone()],
        PrivateKeyDer::Pkcs8(client.key.clone_key()),
    )));
    let t = TcpTransport::builder(endpoint(addr), LengthDelimited::new())
        .tls(with)
        .server_name("localhost")
        .build()
        .unwrap();
    let conn = t.connect().await.unwrap();
    conn.send(Bytes::from_static(b"mtls")).await.unwrap();
    let f = tokio::time::timeout(LIMIT, conn.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(&f[..], b"mtls");

    // Without one, TLS 1.3 reports the refusal after the handshake: the connection
    // fails at once instead of carrying traffic.
    let mut without = TlsSource::default();
    without.add_root(server.der.clone()).unwrap();
    let t = TcpTransport::builder(endpoint(addr), LengthDelimited::new())
        .tls(without)
        .server_name("localhost")
        .build()
        .unwrap();
    match t.connect().await {
        Err(e) => assert!(matches!(e, Error::Tls { .. } | Error::Io { .. }), "{e}"),
        Ok(conn) => {
            let _ = conn.send(Bytes::from_static(b"x")).await;
            let got = tokio::time::timeout(LIMIT, conn.recv()).await.unwrap();
            assert!(
                !matches!(got, Some(Ok(_))),
                "no echo without a client certificate"
            );
        }
    }
}
