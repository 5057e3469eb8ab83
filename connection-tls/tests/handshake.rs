//! Our client and server configurations against each other over a real loopback socket,
//! with certificates generated at test time.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use connection_tls::{CertSource, KeySource, ServerTls, TlsSource};
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// A CA and a server and a client certificate it signed, as PEM.
struct Pki {
    ca: String,
    server: (String, String),
    client: (String, String),
}

fn pki() -> Pki {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("test setup");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().expect("test setup");
    let ca_cert = params.self_signed(&ca_key).expect("test setup");
    let issuer = Issuer::new(params, ca_key);
    let leaf = |eku| {
        let mut p = CertificateParams::new(vec!["localhost".to_string()]).expect("test setup");
        p.extended_key_usages = vec![eku];
        let key = KeyPair::generate().expect("test setup");
        let cert = p.signed_by(&key, &issuer).expect("test setup");
        (cert.pem(), key.serialize_pem())
    };
    Pki {
        ca: ca_cert.pem(),
        server: leaf(ExtendedKeyUsagePurpose::ServerAuth),
        client: leaf(ExtendedKeyUsagePurpose::ClientAuth),
    }
}

fn client_trusting(ca: &str) -> TlsSource {
    let mut tls = TlsSource::default();
    tls.add_roots(&CertSource::pem(ca)).expect("test setup");
    tls
}

/// One handshake and a 5-byte echo; the server's and the client's outcomes.
async fn exchange(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
) -> (io::Result<()>, io::Result<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("test setup");
    let addr = listener.local_addr().expect("test setup");
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        let mut tls = TlsAcceptor::from(server).accept(tcp).await?;
        let mut buf = [0; 5];
        tls.read_exact(&mut buf).await?;
        tls.write_all(&buf).await?;
        tls.shutdown().await
    });
    let client = async move {
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from("localhost").expect("test setup");
        let mut tls = TlsConnector::from(client).connect(name, tcp).await?;
        tls.write_all(b"hello").await?;
        let mut buf = [0; 5];
        tls.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"hello");
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(10), async move {
        let c = client.await;
        let s = server.await.expect("test setup");
        (s, c)
    })
    .await
    .expect("the exchange is bounded")
}

#[tokio::test]
async fn our_client_and_server_configs_complete_a_handshake_and_negotiate_alpn() {
    let pki = pki();
    let server = ServerTls::from_pem(&pki.server.0, &pki.server.1)
        .alpn(["echo/1"])
        .build()
        .unwrap();
    let mut client = (*client_trusting(&pki.ca).client_config().unwrap()).clone();
    client.alpn_protocols = vec![b"echo/1".to_vec()];
    let (s, c) = exchange(server, Arc::new(client)).await;
    s.unwrap();
    c.unwrap();
}

#[tokio::test]
async fn pem_files_load_like_pem_text() {
    let pki = pki();
    let dir = std::env::temp_dir().join(format!("connection-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key, ca) = (dir.join("s.pem"), dir.join("s.key"), dir.join("ca.pem"));
    std::fs::write(&cert, &pki.server.0).unwrap();
    std::fs::write(&key, &pki.server.1).unwrap();
    std::fs::write(&ca, &pki.ca).unwrap();
    let server = ServerTls::from_pem_files(&cert, &key).build().unwrap();
    let mut client = TlsSource::default();
    client.add_roots(&CertSource::pem_file(&ca)).unwrap();
    let (s, c) = exchange(server, client.client_config().unwrap()).await;
    std::fs::remove_dir_all(&dir).unwrap();
    s.unwrap();
    c.unwrap();
}

#[tokio::test]
async fn mtls_accepts_a_client_certificate_and_refuses_a_client_without_one() {
    let pki = pki();
    let server = ServerTls::from_pem(&pki.server.0, &pki.server.1)
        .client_auth_required(CertSource::pem(&pki.ca))
        .build()
        .unwrap();

    let mut with_cert = client_trusting(&pki.ca);
    with_cert
        .set_client_auth(
            &CertSource::pem(&pki.client.0),
            &KeySource::pem(&pki.client.1),
        )
        .unwrap();
    let (s, c) = exchange(server.clone(), with_cert.client_config().unwrap()).await;
    s.unwrap();
    c.unwrap();

    let without = client_trusting(&pki.ca).client_config().unwrap();
    let (s, c) = exchange(server, without).await;
    let err = s.unwrap_err().to_string();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    assert!(c.is_err(), "the client sees the refusal");
}

#[tokio::test]
async fn optional_client_auth_lets_in_a_client_without_a_certificate() {
    let pki = pki();
    let server = ServerTls::from_pem(&pki.server.0, &pki.server.1)
        .client_auth_optional(CertSource::pem(&pki.ca))
        .build()
        .unwrap();
    let (s, c) = exchange(server, client_trusting(&pki.ca).client_config().unwrap()).await;
    s.unwrap();
    c.unwrap();
}

#[tokio::test]
async fn the_dangerous_verifier_accepts_a_self_signed_certificate_the_default_refuses() {
    let own = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let server = ServerTls::from_pem(own.cert.pem(), own.signing_key.serialize_pem())
        .build()
        .unwrap();

    let default = TlsSource::default().client_config().unwrap();
    let (_, c) = exchange(server.clone(), default).await;
    let err = c.unwrap_err().to_string();
    assert!(
        err.contains("UnknownIssuer") || err.contains("issuer"),
        "{err}"
    );

    let insecure = TlsSource::default().dangerous_accept_any_server_certificate();
    assert!(format!("{insecure:?}").contains("dangerous_accept_any_server_certificate: true"));
    assert!(
        format!("{:?}", TlsSource::default())
            .contains("dangerous_accept_any_server_certificate: false")
    );
    let (s, c) = exchange(server, insecure.client_config().unwrap()).await;
    s.unwrap();
    c.unwrap();
}

#[test]
fn bad_pem_and_a_mismatched_key_name_the_setting_and_never_show_the_key() {
    let pki = pki();
    let err = ServerTls::from_pem("not pem", &pki.server.1)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "server_certificate");

    let err = ServerTls::from_pem(&pki.server.0, "-----BEGIN PRIVATE KEY-----\n!!!\n")
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "server_private_key");

    // The client's key with the server's certificate.
    let err = ServerTls::from_pem(&pki.server.0, &pki.client.1)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "server_private_key");
    assert!(err.reason().contains("does not match"), "{err}");
    let key_body = pki.client.1.lines().nth(1).unwrap();
    assert!(!err.to_string().contains(key_body));
    assert!(!format!("{err:?}").contains(key_body));

    let err = ServerTls::from_pem(&pki.server.0, &pki.server.1)
        .client_auth_required(CertSource::pem("garbage"))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "client_ca_certificates");

    let err = ServerTls::from_pem_files("/nonexistent/s.pem", "/nonexistent/s.key")
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "server_certificate");
    assert!(err.reason().contains("/nonexistent/s.pem"), "{err}");

    let mut tls = TlsSource::default();
    let err = tls.add_roots(&CertSource::pem("")).unwrap_err();
    assert_eq!(err.field(), "root_certificates");
    let err = tls
        .set_client_auth(&CertSource::pem(&pki.client.0), &KeySource::pem("nope"))
        .unwrap_err();
    assert_eq!(err.field(), "client_private_key");

    let shown = format!("{:?}", KeySource::pem(&pki.client.1));
    assert!(!shown.contains(key_body), "{shown}");
}
