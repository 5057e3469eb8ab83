//! https:// against an in-process hyper server behind tokio-rustls, with an rcgen
//! certificate made at test time: accepted with its root, rejected without it (a clear
//! TLS error, never retried).
#![cfg(feature = "tls")]

mod support;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use connection_core::{Error, ErrorKind};
use connection_testkit::LoopbackServer;
use connection_transport_http::rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer,
};
use connection_transport_http::{HttpClient, HttpError};
use support::{serve_http, text};

struct TlsServer {
    server: LoopbackServer,
    ca: CertificateDer<'static>,
}

async fn tls_server() -> TlsServer {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
        .expect("certificate");
    let der = cert.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)
        .expect("server certificate");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let server = LoopbackServer::start(move |tcp, _| {
        let acceptor = acceptor.clone();
        async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let handler: Arc<
                dyn Fn(support::Req) -> futures::future::BoxFuture<'static, support::Resp>
                    + Send
                    + Sync,
            > = Arc::new(|_| Box::pin(async { text(200, "secure") }));
            serve_http(tls, handler, Arc::new(AtomicU64::new(0))).await;
        }
    })
    .await
    .expect("start TLS server");
    TlsServer { server, ca: der }
}

#[tokio::test]
async fn accepted_with_its_root() {
    let tls = tls_server().await;
    let client = HttpClient::builder(format!("https://127.0.0.1:{}/", tls.server.port()))
        .add_root_certificate(tls.ca.clone())
        .build_client()
        .expect("client");
    let response = client.get("/").await.expect("verified");
    assert_eq!(response.text().expect("utf-8"), "secure");
    // The same for the name in the certificate.
    let client = HttpClient::builder(format!("https://localhost:{}", tls.server.port()))
        .add_root_certificate(tls.ca.clone())
        .build_client()
        .expect("client");
    assert_eq!(client.get("/").await.expect("verified").status(), 200);
}

#[tokio::test]
async fn rejected_without_it_clearly_and_not_retried() {
    let tls = tls_server().await;
    // Default roots (webpki): the self-signed certificate does not verify.
    let client = HttpClient::builder(format!("https://127.0.0.1:{}/", tls.server.port()))
        .build_client()
        .expect("client");
    let err = client.get("/").await.expect_err("not trusted");
    assert!(matches!(err, HttpError::Tls { .. }), "{err}");
    assert!(err.to_string().contains("certificate"), "{err}");
    assert!(!err.is_retryable());
    assert_eq!(Error::from(err).kind(), ErrorKind::Tls);
    // Retries are on by default, yet one handshake was all it took.
    assert_eq!(tls.server.accepted(), 1);
    assert_eq!(client.metrics().retries, 0);
}
