//! The listener on real loopback sockets: echo over TCP, TLS and mTLS; bad input while
//! another client is served the whole time; the connection cap; graceful shutdown; accept
//! errors. Every wait is bounded.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use connection_transport_tcp::codec::{FrameTooLarge, LengthWidth};
use connection_transport_tcp::{
    LengthDelimited, Listener, ListenerBuilder, ListenerEvent, ListenerHandle, ListenerMetrics,
    TcpError,
};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::broadcast::error::TryRecvError;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::codec::Framed;

const BOUND: Duration = Duration::from_secs(20);

fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().expect("an address")
}

/// How each connection's handler ended: `None` for the peer closing or shutdown.
type Ends = mpsc::UnboundedReceiver<Option<TcpError>>;

/// An echo server on LengthDelimited frames (with `codec`'s limits) that reports how each
/// handler ended.
async fn echo(builder: ListenerBuilder, codec: LengthDelimited) -> (ListenerHandle, Ends) {
    let listener = builder.bind(localhost()).await.expect("bind");
    let (tx, rx) = mpsc::unbounded_channel();
    let handle = listener.serve(codec, move |mut conn| {
        let tx = tx.clone();
        async move {
            let end = loop {
                match conn.next().await {
                    Some(Ok(frame)) => {
                        if let Err(e) = conn.send(frame).await {
                            break Some(e);
                        }
                    }
                    Some(Err(e)) => break Some(e),
                    None => break None,
                }
            };
            let _ = tx.send(end);
        }
    });
    (handle, rx)
}

async fn plain_client(addr: SocketAddr) -> Framed<TcpStream, LengthDelimited> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    Framed::new(tcp, LengthDelimited::new())
}

async fn ping<T: AsyncRead + AsyncWrite + Unpin>(c: &mut Framed<T, LengthDelimited>, msg: &str) {
    c.send(Bytes::copy_from_slice(msg.as_bytes()))
        .await
        .expect("send");
    let got = tokio::time::timeout(Duration::from_secs(5), c.next())
        .await
        .expect("the echo is timely")
        .expect("the connection stays open")
        .expect("a frame");
    assert_eq!(got, msg.as_bytes());
}

/// A client pinging every 20 ms until stopped: the listener must serve it the whole time.
struct Keeper {
    stop: Arc<AtomicBool>,
    pings: watch::Receiver<u64>,
    task: JoinHandle<()>,
}

impl Keeper {
    fn start<T>(mut client: Framed<T, LengthDelimited>) -> Self
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let (p, pings) = watch::channel(0u64);
        let s = stop.clone();
        let task = tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                ping(&mut client, "keep").await;
                p.send_modify(|n| *n += 1);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        Self { stop, pings, task }
    }

    /// Waits for two more answered pings (so the listener served it after whatever the
    /// test did), then stops it; panics if any ping failed; returns how many succeeded.
    async fn finish(mut self) -> u64 {
        let before = *self.pings.borrow();
        // Ends early when the keeper's task does (its sender is dropped).
        let served = tokio::time::timeout(BOUND, self.pings.wait_for(|n| *n >= before + 2))
            .await
            .is_ok_and(|r| r.is_ok());
        assert!(
            served || self.task.is_finished(),
            "the keeper is no longer served"
        );
        self.stop.store(true, Ordering::Relaxed);
        tokio::time::timeout(BOUND, self.task)
            .await
            .expect("the keeper stops")
            .expect("every ping was answered");
        *self.pings.borrow()
    }
}

/// Waits (bounded) until the listener's metrics satisfy `cond`, looking again at each of
/// its events: every counter but the byte counts moves before the event that goes with it
/// (a connection's `Closed` comes after its slot and `active` are released).
async fn wait_for(
    handle: &ListenerHandle,
    what: &str,
    cond: impl Fn(&ListenerMetrics) -> bool,
) -> ListenerMetrics {
    let mut events = handle.events();
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        let m = handle.metrics();
        if cond(&m) {
            return m;
        }
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(_) | Err(broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(broadcast::error::RecvError::Closed)) => {
                panic!("the listener stopped before {what}: {m:?}")
            }
            Err(_) => panic!("waited too long for {what}: {m:?}"),
        }
    }
}

/// Reads until the peer closes (or resets); panics if it does not within 5 s.
async fn closed_by_peer(tcp: &mut TcpStream) {
    let mut buf = [0u8; 256];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return,
            Ok(Ok(_)) => continue,
            Err(_) => panic!("the listener did not close the connection"),
        }
    }
}

async fn next_end(ends: &mut Ends) -> Option<TcpError> {
    tokio::time::timeout(BOUND, ends.recv())
        .await
        .expect("a handler ends")
        .expect("the server is alive")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_echo_of_length_delimited_frames_and_byte_counts() {
    let (server, mut ends) = echo(Listener::builder(), LengthDelimited::new()).await;
    assert_ne!(server.local_addr().port(), 0, "port 0 picks a port");
    let mut c = plain_client(server.local_addr()).await;
    for msg in ["one", "two", ""] {
        ping(&mut c, msg).await;
    }
    drop(c);
    assert!(next_end(&mut ends).await.is_none(), "peer closed cleanly");
    let m = wait_for(&server, "the close", |m| m.active == 0).await;
    assert_eq!((m.accepted, m.rejected, m.peak_active), (1, 0, 1));
    // Three frames of 4-byte prefix + payload each way.
    assert_eq!((m.bytes_in, m.bytes_out), (18, 18));
    let report = server.shutdown(Duration::from_secs(1)).await;
    assert_eq!(report.in_flight, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_over_the_limit_closes_that_connection_and_only_that_one() {
    let codec = LengthDelimited::new().max_frame_len(1024);
    let (server, mut ends) = echo(Listener::builder(), codec).await;
    let addr = server.local_addr();
    let keeper = Keeper::start(plain_client(addr).await);

    let mut bad = Framed::new(
        TcpStream::connect(addr).await.expect("connect"),
        LengthDelimited::new(),
    );
    ping(&mut bad, "small is fine").await;
    bad.send(Bytes::from(vec![7u8; 2048])).await.expect("send");
    let end = next_end(&mut ends).await;
    assert!(
        matches!(
            end,
            Some(TcpError::FrameTooLarge {
                limit: 1024,
                claimed: Some(2048),
                ..
            })
        ),
        "{end:?}"
    );
    closed_by_peer(bad.get_mut()).await;
    assert!(keeper.finish().await > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_length_prefix_claiming_4_gib_is_refused_at_once() {
    let codec = LengthDelimited::new().width(LengthWidth::U64);
    let (server, mut ends) = echo(Listener::builder(), codec).await;
    let addr = server.local_addr();
    let keeper = Keeper::start(Framed::new(
        TcpStream::connect(addr).await.expect("connect"),
        codec,
    ));

    let mut evil = TcpStream::connect(addr).await.expect("connect");
    evil.write_all(&(4u64 << 30).to_be_bytes())
        .await
        .expect("write");
    let end = next_end(&mut ends).await;
    let too_large = end.as_ref().and_then(|e| match e {
        TcpError::FrameTooLarge { limit, claimed, .. } => Some(FrameTooLarge {
            limit: *limit,
            claimed: *claimed,
        }),
        _ => None,
    });
    assert_eq!(
        too_large,
        Some(FrameTooLarge {
            limit: LengthDelimited::DEFAULT_MAX_FRAME_LEN,
            claimed: Some(4 << 30)
        }),
        "refused from the prefix alone (the codec's unit tests show nothing is reserved)"
    );
    closed_by_peer(&mut evil).await;
    assert!(keeper.finish().await > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_plain_client_is_closed_by_the_read_idle_timeout() {
    let idle = Duration::from_millis(300);
    let builder = Listener::builder().read_idle_timeout(Some(idle));
    let (server, mut ends) = echo(builder, LengthDelimited::new()).await;
    let addr = server.local_addr();
    // Pings every 20 ms: never idle for 300 ms.
    let keeper = Keeper::start(plain_client(addr).await);

    let started = Instant::now();
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    let end = next_end(&mut ends).await;
    assert!(
        matches!(end, Some(TcpError::Timeout { after, .. }) if after == idle),
        "{end:?}"
    );
    closed_by_peer(&mut silent).await;
    assert!(started.elapsed() >= idle);
    let m = wait_for(&server, "the idle close", |m| m.active == 1).await;
    assert_eq!(m.idle_timeouts, 1);
    assert!(keeper.finish().await > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_connections_at_once_against_a_cap_of_100() {
    const CLIENTS: usize = 2000;
    const CAP: usize = 100;
    // Each client is two descriptors in this process (its end and the accepted one).
    let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).expect("getrlimit");
    if soft < 3 * CLIENTS as u64 {
        rlimit::increase_nofile_limit(3 * CLIENTS as u64).expect("raise the fd limit");
    }
    let builder = Listener::builder().max_connections(CAP).backlog(4096);
    let (server, _ends) = echo(builder, LengthDelimited::new()).await;
    let addr = server.local_addr();
    let mut rejected_events = server.events();

    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            tokio::spawn(async move {
                let mut c = plain_client(addr).await;
                let msg = Bytes::from(format!("client {i}"));
                if c.send(msg.clone()).await.is_err() {
                    return None;
                }
                match tokio::time::timeout(BOUND, c.next()).await {
                    Ok(Some(Ok(echoed))) => {
                        assert_eq!(echoed, msg);
                        Some(c)
                    }
                    Ok(None | Some(Err(_))) => None,
                    Err(_) => panic!("client {i} got neither an echo nor a close"),
                }
            })
        })
        .collect();
    let mut served = Vec::new();
    for c in clients {
        if let Some(c) = c.await.expect("client task") {
            served.push(c);
        }
    }
    // The served ones still hold their slots, so every other connection was refused.
    assert_eq!(served.len(), CAP);
    let m = server.metrics();
    assert_eq!(m.accepted, CAP as u64);
    assert_eq!(m.rejected, (CLIENTS - CAP) as u64);
    assert_eq!(m.peak_active, CAP as u64, "never more than the cap at once");
    let (mut seen_rejected, mut lagged) = (0, 0);
    loop {
        match rejected_events.try_recv() {
            Ok(e) => seen_rejected += u64::from(matches!(e, ListenerEvent::Rejected { .. })),
            Err(TryRecvError::Lagged(n)) => lagged += n,
            Err(_) => break,
        }
    }
    assert!(seen_rejected > 0, "rejections are events");
    assert!(
        lagged > 0,
        "the bus keeps the last 64 events, not all 2,100"
    );

    drop(served);
    wait_for(&server, "the slots to free", |m| m.active == 0).await;
    let mut after = plain_client(addr).await;
    ping(&mut after, "still serving").await;
    let m = server.metrics();
    assert_eq!(m.accepted, CAP as u64 + 1);
    assert!(m.peak_active <= CAP as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_counts_a_handler_that_finishes_as_clean_and_aborts_one_that_does_not() {
    let listener = Listener::bind(localhost()).await.expect("bind");
    let addr = listener.local_addr();
    let mut events = listener.events();
    let server = listener.serve(LengthDelimited::new(), |mut conn| async move {
        let Some(Ok(first)) = conn.next().await else {
            return;
        };
        let stubborn = &first[..] == b"stubborn";
        if conn.send(first).await.is_err() {
            return;
        }
        if stubborn {
            // Ignores the shutdown signal and its stream: only an abort ends it.
            std::future::pending::<()>().await;
        } else {
            conn.shutdown_signal().cancelled().await;
        }
    });
    let mut polite = plain_client(addr).await;
    ping(&mut polite, "polite").await;
    let mut stubborn = plain_client(addr).await;
    ping(&mut stubborn, "stubborn").await;

    let deadline = Duration::from_millis(300);
    let started = Instant::now();
    let report = server.shutdown(deadline).await;
    let took = started.elapsed();
    assert_eq!(report.in_flight, 2);
    assert_eq!(report.closed_cleanly, 1);
    assert_eq!(report.aborted, 1);
    assert!(
        took >= deadline,
        "the stubborn handler held it to the deadline"
    );
    assert!(
        took < deadline + Duration::from_secs(1),
        "bounded: {took:?}"
    );
    assert_eq!(report.metrics.active, 0);

    closed_by_peer(polite.get_mut()).await;
    closed_by_peer(stubborn.get_mut()).await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
    let mut finished = None;
    while let Ok(e) = events.try_recv() {
        if let ListenerEvent::ShutdownFinished(r) = e {
            finished = Some(r);
        }
    }
    assert_eq!(finished, Some(report));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_reading_its_stream_ends_cleanly_on_shutdown() {
    let (server, mut ends) = echo(Listener::builder(), LengthDelimited::new()).await;
    let mut c = plain_client(server.local_addr()).await;
    ping(&mut c, "hi").await;
    let report = server.shutdown(Duration::from_secs(5)).await;
    assert_eq!((report.closed_cleanly, report.aborted), (1, 0));
    assert!(report.took < Duration::from_secs(1), "{:?}", report.took);
    assert!(
        next_end(&mut ends).await.is_none(),
        "the stream ended without error"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_handle_stops_the_listener_and_aborts_its_handlers() {
    let (server, _ends) = echo(Listener::builder(), LengthDelimited::new()).await;
    let addr = server.local_addr();
    let mut c = plain_client(addr).await;
    ping(&mut c, "hi").await;
    drop(server);
    closed_by_peer(c.get_mut()).await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}

const EMFILE_CHILD: &str = "CONNECTION_TCP_EMFILE_CHILD";

/// Runs [`emfile_child`] in a child process, whose descriptor limit it may lower
/// without starving the tests that run beside it in this one.
#[test]
fn accept_errors_such_as_emfile_back_off_instead_of_spinning() {
    let exe = std::env::current_exe().expect("the test binary");
    let out = std::process::Command::new(exe)
        .args([
            "--exact",
            "emfile_child",
            "--include-ignored",
            "--nocapture",
        ])
        .env(EMFILE_CHILD, "1")
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("emfile child: ok"),
        "the child ran:\n{stdout}\n{stderr}"
    );
}

#[test]
#[ignore = "run in a child process by accept_errors_such_as_emfile_back_off_instead_of_spinning"]
fn emfile_child() {
    use std::os::fd::AsRawFd;
    if std::env::var_os(EMFILE_CHILD).is_none() {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let listener = Listener::bind(localhost()).await.expect("bind");
        let addr = listener.local_addr();
        let mut events = listener.events();
        // Connections complete in the kernel's backlog before we accept any.
        let mut clients = Vec::new();
        for _ in 0..3 {
            clients.push(plain_client(addr).await);
        }
        // The lowest free descriptor number: with the limit there, accept gets EMFILE.
        let lowest_free = std::fs::File::open("/dev/null").expect("open").as_raw_fd();
        let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).expect("getrlimit");
        rlimit::setrlimit(rlimit::Resource::NOFILE, lowest_free as u64, hard).expect("lower");

        let server = listener.serve(LengthDelimited::new(), |mut conn| async move {
            while let Some(Ok(f)) = conn.next().await {
                if conn.send(f).await.is_err() {
                    break;
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(700)).await;
        let errors = server.metrics().accept_errors;
        // 10, 20, 40, 80, 160, 320 ms pauses: about 6 errors in 700 ms; a spinning loop
        // would count thousands.
        assert!(
            (3..=12).contains(&errors),
            "{errors} accept errors in 700 ms"
        );
        match events.recv().await.expect("an event") {
            ListenerEvent::AcceptError { error, retry_in } => {
                assert_eq!(error.raw_os_error(), Some(24), "EMFILE: {error}");
                assert_eq!(retry_in, Duration::from_millis(10));
            }
            other => panic!("expected an accept error, got {other:?}"),
        }
        assert_eq!(server.metrics().accepted, 0);

        rlimit::setrlimit(rlimit::Resource::NOFILE, soft, hard).expect("restore");
        // The next retry is at most 1 s away.
        wait_for(&server, "the queued connections", |m| m.accepted == 3).await;
        for c in &mut clients {
            ping(c, "after EMFILE").await;
        }
        println!("emfile child: ok");
    });
}

#[cfg(feature = "tls")]
mod tls {
    use super::*;
    use connection_tls::{CertSource, KeySource, ServerTls, TlsSource};
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
        KeyUsagePurpose,
    };
    use rustls::pki_types::ServerName;
    use tokio_rustls::TlsConnector;
    use tokio_rustls::client::TlsStream;

    /// A CA and a server and a client certificate it signed, as PEM (made at test time).
    struct Pki {
        ca: String,
        server: (String, String),
        client: (String, String),
    }

    fn pki() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().expect("key");
        let ca_cert = params.self_signed(&ca_key).expect("ca");
        let issuer = Issuer::new(params, ca_key);
        let leaf = |eku| {
            let mut p = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
            p.extended_key_usages = vec![eku];
            let key = KeyPair::generate().expect("key");
            let cert = p.signed_by(&key, &issuer).expect("leaf");
            (cert.pem(), key.serialize_pem())
        };
        Pki {
            ca: ca_cert.pem(),
            server: leaf(ExtendedKeyUsagePurpose::ServerAuth),
            client: leaf(ExtendedKeyUsagePurpose::ClientAuth),
        }
    }

    fn server_tls(pki: &Pki) -> ServerTls {
        ServerTls::from_pem(&pki.server.0, &pki.server.1)
    }

    async fn tls_client(
        addr: SocketAddr,
        pki: &Pki,
        with_cert: bool,
    ) -> std::io::Result<Framed<TlsStream<TcpStream>, LengthDelimited>> {
        let mut source = TlsSource::default();
        source.add_roots(&CertSource::pem(&pki.ca)).expect("roots");
        if with_cert {
            source
                .set_client_auth(
                    &CertSource::pem(&pki.client.0),
                    &KeySource::pem(&pki.client.1),
                )
                .expect("client cert");
        }
        let connector = TlsConnector::from(source.client_config().expect("config"));
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from("localhost").expect("name");
        let tls = connector.connect(name, tcp).await?;
        Ok(Framed::new(tls, LengthDelimited::new()))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tls_echo() {
        let pki = pki();
        let builder = Listener::builder().tls(server_tls(&pki).build().expect("tls"));
        let (server, _ends) = echo(builder, LengthDelimited::new()).await;
        let mut c = tls_client(server.local_addr(), &pki, false)
            .await
            .expect("handshake");
        ping(&mut c, "over tls").await;
        // The server counts a write when the write call returns, which may be just
        // after the client has the bytes; once the connection is over, all is counted.
        drop(c);
        let m = wait_for(&server, "the connection's end", |m| m.active == 0).await;
        assert_eq!((m.accepted, m.handshake_failures), (1, 0));
        assert_eq!((m.bytes_in, m.bytes_out), (12, 12), "application bytes");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mtls_accepts_a_client_certificate_and_refuses_a_client_without_one() {
        let pki = pki();
        let config = server_tls(&pki)
            .client_auth_required(CertSource::pem(&pki.ca))
            .build()
            .expect("tls");
        let (server, _ends) = echo(Listener::builder().tls(config), LengthDelimited::new()).await;
        let addr = server.local_addr();
        let mut with = tls_client(addr, &pki, true).await.expect("handshake");
        ping(&mut with, "mutual").await;

        let mut events = server.events();
        // TLS 1.3: the client finishes its side first and learns of the refusal on read.
        if let Ok(mut without) = tls_client(addr, &pki, false).await {
            let _ = without.send(Bytes::from_static(b"let me in")).await;
            let got = tokio::time::timeout(Duration::from_secs(5), without.next())
                .await
                .expect("refused in time");
            assert!(!matches!(got, Some(Ok(_))), "no echo without a certificate");
        }
        let m = wait_for(&server, "the refusal", |m| m.handshake_failures == 1).await;
        assert_eq!(m.handshake_timeouts, 0);
        let refused = loop {
            match tokio::time::timeout(BOUND, events.recv()).await {
                Ok(Ok(ListenerEvent::HandshakeFailed { error, .. })) => break error,
                Ok(Ok(_)) => continue,
                other => panic!("no handshake failure event: {other:?}"),
            }
        };
        assert!(matches!(refused, TcpError::Tls { .. }), "{refused:?}");
        ping(&mut with, "still mutual").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn garbage_before_the_tls_handshake_is_a_counted_handshake_failure() {
        let pki = pki();
        let builder = Listener::builder().tls(server_tls(&pki).build().expect("tls"));
        let (server, _ends) = echo(builder, LengthDelimited::new()).await;
        let addr = server.local_addr();
        let keeper = Keeper::start(tls_client(addr, &pki, false).await.expect("handshake"));

        let mut garbage = TcpStream::connect(addr).await.expect("connect");
        garbage
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        closed_by_peer(&mut garbage).await;
        let m = wait_for(&server, "the failure", |m| m.handshake_failures == 1).await;
        assert_eq!(m.handshake_timeouts, 0);
        assert!(keeper.finish().await > 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_silent_tls_client_loses_its_slot_at_the_handshake_timeout() {
        let pki = pki();
        let timeout = Duration::from_millis(300);
        let builder = Listener::builder()
            .tls(server_tls(&pki).build().expect("tls"))
            .max_connections(2)
            .handshake_timeout(timeout);
        let (server, _ends) = echo(builder, LengthDelimited::new()).await;
        let addr = server.local_addr();
        let keeper = Keeper::start(tls_client(addr, &pki, false).await.expect("handshake"));

        let started = Instant::now();
        let mut silent = TcpStream::connect(addr).await.expect("connect");
        wait_for(&server, "the silent client's slot", |m| m.active == 2).await;
        closed_by_peer(&mut silent).await;
        assert!(started.elapsed() >= timeout);
        let m = wait_for(&server, "the slot to free", |m| m.active == 1).await;
        assert_eq!((m.handshake_failures, m.handshake_timeouts), (1, 1));

        // The freed slot serves a new client.
        let mut next = tls_client(addr, &pki, false).await.expect("handshake");
        ping(&mut next, "my turn").await;
        assert_eq!(server.metrics().rejected, 0);
        assert!(keeper.finish().await > 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_handshake_cap_queues_a_client_behind_a_slow_one_and_still_serves_it() {
        let pki = pki();
        let timeout = Duration::from_millis(400);
        let builder = Listener::builder()
            .tls(server_tls(&pki).build().expect("tls"))
            .max_handshakes(1)
            .handshake_timeout(timeout);
        let (server, _ends) = echo(builder, LengthDelimited::new()).await;
        let addr = server.local_addr();

        // The silent client takes the only handshake slot and holds it to its timeout.
        let mut silent = TcpStream::connect(addr).await.expect("connect");
        wait_for(&server, "the silent client", |m| m.active == 1).await;
        // A margin, so the queued client's own wait outlasts the silent one's slot.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = Instant::now();
        let mut queued = tls_client(addr, &pki, false).await.expect("handshake");
        let waited = started.elapsed();
        ping(&mut queued, "served after the wait").await;
        closed_by_peer(&mut silent).await;
        assert!(
            waited >= Duration::from_millis(200),
            "the cap of 1 made it wait for the slot: {waited:?}"
        );
        let m = wait_for(&server, "the silent one's end", |m| m.active == 1).await;
        assert_eq!((m.handshake_failures, m.handshake_timeouts), (1, 1));
    }
}

#[tokio::test]
async fn settings_out_of_range_are_refused_naming_the_setting() {
    use connection_transport_tcp::{Listener, MAX_CONNECTIONS};
    let addr: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    for (builder, setting) in [
        (Listener::builder().max_connections(0), "max_connections"),
        (
            Listener::builder().max_connections(MAX_CONNECTIONS + 1),
            "max_connections",
        ),
        (Listener::builder().max_handshakes(0), "max_handshakes"),
        (
            Listener::builder().handshake_timeout(Duration::ZERO),
            "handshake_timeout",
        ),
        (
            Listener::builder().read_idle_timeout(Some(Duration::MAX)),
            "read_idle_timeout",
        ),
        (Listener::builder().event_capacity(0), "event_capacity"),
    ] {
        let err = builder.bind(addr).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        let config = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<connection_core::ConfigError>())
            .unwrap();
        assert_eq!(config.field(), setting);
    }
}

#[tokio::test]
async fn a_shutdown_deadline_of_duration_max_does_not_overflow() {
    let server = connection_transport_tcp::Listener::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
        .serve(connection_transport_tcp::Lines::default(), |_conn| async {});
    let report = tokio::time::timeout(BOUND, server.shutdown(Duration::MAX))
        .await
        .unwrap();
    assert_eq!(report.in_flight, 0);
}
