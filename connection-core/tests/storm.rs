//! A reconnect storm under the defaults: 2,000 `Supervisor::new` connections lose their
//! server at once; it stays down 2 s and comes back on the same port. The default
//! backoff must disperse them (no 10 ms bucket of reconnect attempts after the restart
//! holds more than 2 % of the clients) and bring every one back within its window.
//!
//! Attempt times come from each client's own schedule (the `Reconnecting` delays it
//! published), not from when a busy machine got round to accepting: the figure is the
//! backoff's dispersion, which is what the defaults decide. Real time, bounded.

use std::collections::HashMap;
use std::time::Duration;

use connection_core::Supervisor;
use connection_core::{ConnectionId, ConnectionState, EventBus, EventFilter, EventKind, EventType};
use connection_testkit::{TcpEchoServer, TcpEchoTransport};
use futures::StreamExt;
use tokio::time::{Instant, timeout};

const CLIENTS: usize = 2_000;
const OUTAGE: Duration = Duration::from_secs(2);
/// Far beyond the default schedule's window after a 2 s outage (about 4 s).
const BACK_WITHIN: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_backoff_disperses_a_reconnect_storm() {
    let mut server = TcpEchoServer::start().await.expect("bind");
    let transport = TcpEchoTransport::new(server.addr()).expect("port");
    // One shared bus, large enough that nothing is lost: every client publishes a few
    // events per attempt.
    let bus = EventBus::new(1 << 17);
    let mut events = bus.subscribe(EventFilter::all().types([EventType::Reconnecting]));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            Supervisor::new(transport.clone())
                .events(bus.clone())
                .spawn()
                .expect("spawn")
        })
        .collect();
    let connected = || {
        clients
            .iter()
            .filter(|c| c.state() == ConnectionState::Connected)
            .count()
    };
    wait_until(connected, "every client connected").await;

    server.stop().await;
    tokio::time::sleep(OUTAGE).await;
    server.restart().await.expect("rebind on the same port");
    let restarted = Instant::now();
    wait_until(connected, "every client back").await;
    let back_after = restarted.elapsed();
    assert!(
        back_after < BACK_WITHIN,
        "all back only after {back_after:?}"
    );

    // Each client's schedule: the loss, then its delays one after another; the attempt
    // after the last delay is the one that reconnected it (every earlier one failed:
    // the server was down). Connect attempts and a busy machine add a little real time
    // to each step, which the schedule leaves out: it is the backoff's dispersion.
    let mut delays: HashMap<ConnectionId, Vec<Duration>> = HashMap::new();
    // Every client is connected, so no more Reconnecting events will come: stop at the
    // first quiet second (a loaded machine may pause delivery for a while).
    while let Ok(Some(event)) = timeout(Duration::from_secs(1), events.next()).await {
        let event = event.expect("the bus is large enough not to lag");
        if let EventKind::Reconnecting { delay, .. } = event.kind {
            delays.entry(event.connection).or_default().push(delay);
        }
    }
    assert_eq!(delays.len(), CLIENTS, "every client reconnected");
    let mut buckets: HashMap<u128, usize> = HashMap::new();
    for schedule in delays.values() {
        let reconnected = schedule.iter().sum::<Duration>();
        *buckets.entry(reconnected.as_millis() / 10).or_default() += 1;
    }
    let peak = buckets.values().max().copied().unwrap_or(0);
    let share = peak as f64 * 100.0 / CLIENTS as f64;
    assert!(
        share <= 2.0,
        "{peak} of {CLIENTS} clients ({share:.2} %) reconnected in one 10 ms bucket"
    );
}

async fn wait_until(count: impl Fn() -> usize, what: &str) {
    timeout(BACK_WITHIN, async {
        while count() < CLIENTS {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: only {} of {CLIENTS}", count()));
}
