//! wss:// against an in-process TLS server with an rcgen certificate.
#![cfg(feature = "tls")]

mod support;

use std::sync::Arc;
use std::time::Duration;

use connection_core::{ConnectionState, ConstantBackoff, Error, Transport};
use connection_testkit::LoopbackServer;
use connection_transport_ws::rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer,
};
use connection_transport_ws::{Message, WsClient, WsConfig, WsError, WsTransport};
use futures::{SinkExt, StreamExt};

struct TlsServer {
    server: LoopbackServer,
    ca: CertificateDer<'static>,
}

async fn tls_echo_server() -> TlsServer {
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
            let Ok(mut ws) = tokio_tungstenite::accept_async(tls).await else {
                return;
            };
            while let Some(Ok(msg)) = ws.next().await {
                if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                    break;
                }
            }
        }
    })
    .await
    .expect("start TLS server");
    TlsServer { server, ca: der }
}

#[tokio::test]
async fn accepted_with_the_right_root() {
    let tls = tls_echo_server().await;
    let url = format!("wss://127.0.0.1:{}/", tls.server.port());
    let config = WsConfig::builder(&url)
        .add_root_certificate(tls.ca.clone())
        .build()
        .unwrap();
    let mut client = WsClient::with_config(config).spawn().unwrap();
    client.send_text("secure").await.unwrap();
    assert_eq!(client.recv().await, Some(Message::text("secure")));
    client.close(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn rejected_without_it_and_not_retried() {
    let tls = tls_echo_server().await;
    let url = format!("wss://127.0.0.1:{}/", tls.server.port());
    // Default roots (webpki): the self-signed certificate does not verify.
    let transport = WsTransport::new(WsConfig::builder(&url).build().unwrap());
    let err = transport.open().await.unwrap_err();
    assert!(matches!(err, WsError::Tls { .. }), "{err}");
    assert!(err.to_string().contains("certificate"), "{err}");
    assert!(!err.is_retryable());
    let core: Error = transport.connect().await.unwrap_err();
    assert!(matches!(core, Error::Tls { .. }));

    let client = WsClient::builder(&url)
        .backoff(ConstantBackoff::new(Duration::from_millis(10)))
        .spawn()
        .unwrap();
    let cause = client.wait_ready().await.unwrap_err();
    assert!(matches!(*cause, Error::Tls { .. }), "{cause}");
    assert_eq!(client.state(), ConnectionState::Failed);
}

#[tokio::test]
async fn client_certificates_for_mutual_tls() {
    // One CA signs the server's and the client's certificates.
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf = |names: Vec<String>| {
        let key = rcgen::KeyPair::generate().expect("leaf key");
        let cert = rcgen::CertificateParams::new(names)
            .expect("leaf params")
            .signed_by(&key, &issuer)
            .expect("leaf certificate");
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (cert.der().clone(), der)
    };
    let (server_cert, server_key) = leaf(vec!["127.0.0.1".into()]);
    let (client_cert, client_key) = leaf(vec!["client".into()]);

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).expect("CA root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .expect("client verifier");
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![server_cert], server_key)
        .expect("server certificate");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let server = LoopbackServer::start(move |tcp, _| {
        let acceptor = acceptor.clone();
        async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let Ok(mut ws) = tokio_tungstenite::accept_async(tls).await else {
                return;
            };
            while let Some(Ok(msg)) = ws.next().await {
                if msg.is_text() && ws.send(msg).await.is_err() {
                    break;
                }
            }
        }
    })
    .await
    .expect("start mTLS server");
    let url = format!("wss://127.0.0.1:{}/", server.port());

    // Without a client certificate the server refuses us.
    let anonymous = WsTransport::new(
        WsConfig::builder(&url)
            .add_root_certificate(ca.der().clone())
            .build()
            .expect("config"),
    );
    let err = anonymous
        .open()
        .await
        .expect_err("a client certificate is required");
    assert!(matches!(err, WsError::Tls { .. }), "{err}");

    let config = WsConfig::builder(&url)
        .add_root_certificate(ca.der().clone())
        .client_certificate(vec![client_cert], client_key)
        .build()
        .expect("config");
    let mut conn = WsTransport::new(config).open().await.expect("mTLS connect");
    conn.send_text("mutual").await.expect("send");
    assert_eq!(conn.recv().await, Some(Message::text("mutual")));
}
