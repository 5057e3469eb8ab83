//! The demo's TCP section: a TLS listener (an rcgen certificate made now, a cap of 4
//! connections) that answers lines in upper case; clients reach it through a
//! `ConnectionCache` keyed by peer id (capacity 3, so the least recently used peer is
//! evicted); a burst of connections over the cap is refused, not queued; then the
//! listener shuts down gracefully and prints its report. The section fails if a line
//! goes unanswered, a refusal or an eviction does not happen, or the drain is not clean.

use std::time::Duration;

use connection_kit::Error;
use connection_kit::core::{Endpoint, Transport};
use connection_kit::tcp::{
    CacheEvent, ConnectionCache, Inbound, Lines, Listener, ListenerEvent, TcpConnection,
    TcpTransport,
};
use connection_kit::tls::{ServerTls, TlsSource};
use futures::{SinkExt, StreamExt};
use tokio::time::{Instant, timeout};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const LIMIT: Duration = Duration::from_secs(5);

/// Runs the TCP section.
pub(crate) async fn run() -> Result<(), BoxError> {
    let started = Instant::now();
    let stamp = move || format!("{:>7.3}s", started.elapsed().as_secs_f64());

    // The server: TLS with a certificate made for this run, at most 4 connections.
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
    let server_tls =
        ServerTls::from_pem(cert.cert.pem(), cert.signing_key.serialize_pem()).build()?;
    let listener = Listener::builder()
        .tls(server_tls)
        .max_connections(4)
        .bind("127.0.0.1:0".parse()?)
        .await?;
    let addr = listener.local_addr();
    let mut listener_events = listener.events();
    let server = listener.serve(Lines::default(), |mut conn: Inbound<Lines>| async move {
        while let Some(Ok(line)) = conn.next().await {
            if conn.send(line.to_uppercase()).await.is_err() {
                return;
            }
        }
    });
    println!("TLS listener on {addr}, at most 4 connections");
    let printer = tokio::spawn(async move {
        while let Ok(event) = listener_events.recv().await {
            match event {
                ListenerEvent::Rejected { peer } => {
                    println!("{}  listener   refused {peer}: 4 connections open", stamp());
                }
                ListenerEvent::HandshakeFailed { peer, error } => {
                    println!(
                        "{}  listener   handshake with {peer} failed: {error}",
                        stamp()
                    );
                }
                ListenerEvent::ShutdownStarted { in_flight } => {
                    println!("{}  listener   shutting down, {in_flight} open", stamp());
                }
                _ => {}
            }
        }
    });

    // The clients: one TLS connection per peer id, through the cache.
    let mut roots = TlsSource::default();
    roots.add_root(cert.cert.der().clone())?;
    let transport = move |roots: TlsSource| {
        TcpTransport::builder(
            Endpoint::host_port("127.0.0.1", addr.port())?,
            Lines::default(),
        )
        .tls(roots)
        .server_name("localhost")
        .build()
        .map_err(Error::from)
    };
    let make = {
        let roots = roots.clone();
        move |_peer: &String| transport(roots.clone())
    };
    let cache: ConnectionCache<String, TcpConnection<Lines>> =
        ConnectionCache::builder(make).capacity(3).build()?;
    let mut cache_events = cache.subscribe();
    let cache_printer = tokio::spawn(async move {
        while let Ok(event) = cache_events.recv().await {
            match event {
                CacheEvent::Inserted { key, id } => {
                    println!("          cache      {key}: connected ({id})");
                }
                CacheEvent::Evicted { key, reason, .. } => {
                    println!("          cache      {key}: evicted ({reason})");
                }
                CacheEvent::ConnectFailed { key, error } => {
                    println!("          cache      {key}: connect failed: {error}");
                }
                _ => {}
            }
        }
    });

    let ask = async |peer: &str, line: &str| -> Result<String, BoxError> {
        let io = cache.get(&peer.to_owned()).await?;
        io.send(line.to_owned()).await?;
        match timeout(LIMIT, io.recv()).await? {
            Some(Ok(reply)) => Ok(reply),
            Some(Err(e)) => Err(e.into()),
            None => Err("the connection closed".into()),
        }
    };
    for peer in ["peer-1", "peer-2", "peer-3"] {
        let reply = ask(peer, &format!("hello from {peer}")).await?;
        println!("          {peer:<10} <- {reply}");
    }
    // 100 concurrent gets of a cached peer: hits, no new connection.
    let peer_1 = "peer-1".to_owned();
    let gets = futures::future::join_all((0..100).map(|_| cache.get(&peer_1))).await;
    let ok = gets.iter().filter(|g| g.is_ok()).count();
    println!("          100 concurrent gets of peer-1: {ok} served from the cache");
    // peer-1 and peer-3 are used again; peer-2 is now the least recently used.
    ask("peer-1", "again").await?;
    tokio::time::sleep(Duration::from_millis(20)).await;
    ask("peer-3", "again").await?;
    tokio::time::sleep(Duration::from_millis(20)).await;

    // Over the cap: 3 cached + these 2 = 5 against a cap of 4; one is refused.
    let extra = transport(roots.clone())?;
    let (a, b) = (extra.connect().await, extra.connect().await);
    let refused = [&a, &b].iter().filter(|c| c.is_err()).count()
        + refused_after_handshake(&a).await
        + refused_after_handshake(&b).await;
    println!("          2 connections over the cap: {refused} refused");
    drop((a, b));
    if refused == 0 {
        return Err("the listener accepted a connection over its cap".into());
    }
    tokio::time::sleep(Duration::from_millis(50)).await;

    // A fourth peer: the cache holds 3, so the least recently used one goes.
    let reply = ask("peer-4", "hello from peer-4").await?;
    println!("          peer-4     <- {reply}");

    let m = cache.metrics();
    println!(
        "\ncache: {} connections, {} hits, {} misses, {} connects, {:.0} messages/s, {} B buffered",
        m.connections, m.hits, m.misses, m.connects, m.messages_per_second, m.buffered_bytes
    );

    let report = server.shutdown(Duration::from_secs(2)).await;
    println!(
        "shutdown: {} open, {} closed cleanly, {} aborted, in {:.1?} ({} accepted, {} refused, {} handshake failures, {} B in, {} B out)",
        report.in_flight,
        report.closed_cleanly,
        report.aborted,
        report.took,
        report.metrics.accepted,
        report.metrics.rejected,
        report.metrics.handshake_failures,
        report.metrics.bytes_in,
        report.metrics.bytes_out,
    );
    let evicted = m.evictions.capacity;
    cache.clear();
    tokio::time::sleep(Duration::from_millis(20)).await;
    cache_printer.abort();
    printer.abort();
    if evicted == 0 {
        return Err("no peer was evicted from the cache".into());
    }
    if report.aborted > 0 || report.metrics.rejected == 0 {
        return Err("the listener did not refuse over its cap or drain cleanly".into());
    }
    Ok(())
}

/// A connection the listener closed at accept may complete the client's side of the
/// TLS 1.3 handshake first: it then ends at once instead of carrying a line.
async fn refused_after_handshake(conn: &Result<TcpConnection<Lines>, Error>) -> usize {
    let Ok(conn) = conn else { return 0 };
    let _ = conn.send("anyone?".to_owned()).await;
    match timeout(LIMIT, conn.recv()).await {
        Ok(Some(Ok(_))) => 0,
        _ => 1,
    }
}
