//! A transport whose code panics inside the background maintainer stalls nothing.
//! (Durations too large to add to an instant, which validation refuses, are tested on
//! the runtime directly: `pool::tests` in the crate.)

use std::time::Duration;

use connection_core::{EventBus, EventFilter, EventKind, EventType};
use connection_pool::Pool;
use connection_testkit::events::next_matching;
use connection_testkit::{PANIC_MESSAGE, Panicking, TcpEchoServer, TcpEchoTransport};

const WAIT: Duration = Duration::from_secs(60);

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    tokio::time::timeout(WAIT, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
}

#[tokio::test(start_paused = true)]
async fn a_connect_that_panics_in_the_maintainer_gives_its_slot_back() {
    let server = TcpEchoServer::start().await.unwrap();
    let transport = Panicking::new(TcpEchoTransport::new(server.addr()).unwrap());
    transport.panic_on_connect(true);
    let bus = EventBus::new(64);
    let mut errors = bus.subscribe(EventFilter::all().types([EventType::Error]));
    let pool = Pool::builder(transport.clone())
        .configure(|c| {
            c.max_size(1)
                .min_idle(1)
                .wait_timeout(Some(Duration::from_secs(5)))
        })
        .events(bus, "db")
        .spawn()
        .unwrap();

    wait_until("the maintainer panicked", || {
        pool.metrics().maintainer_restarts >= 1
    })
    .await;
    let event = next_matching(&mut errors, |_| true).await;
    let EventKind::Error { error } = &event.kind else {
        unreachable!()
    };
    assert!(
        error.to_string().contains(&format!(
            "pool maintainer task ended: panicked: {PANIC_MESSAGE}"
        )),
        "{error}"
    );
    // The one slot is free again: a checkout gets it instead of waiting 5 s and failing.
    assert_eq!(pool.status().size, 0);
    transport.panic_on_connect(false);
    let mut conn = pool.get().await.unwrap();
    conn.get_mut().echo(b"hi").await.unwrap();
    drop(conn);

    // The maintainer goes on: it keeps min_idle again.
    wait_until("min_idle is kept", || pool.status().idle == 1).await;
}

#[tokio::test(start_paused = true)]
async fn a_probe_that_panics_in_the_maintainer_discards_the_connection_and_goes_on() {
    let server = TcpEchoServer::start().await.unwrap();
    let transport = Panicking::new(TcpEchoTransport::new(server.addr()).unwrap());
    let pool = Pool::builder(transport.clone())
        .configure(|c| {
            c.max_size(1)
                .min_idle(1)
                .keepalive_interval(Some(Duration::from_secs(1)))
                .wait_timeout(Some(Duration::from_secs(5)))
        })
        .spawn()
        .unwrap();
    wait_until("min_idle is kept", || pool.status().idle == 1).await;

    transport.panic_on_probe(true);
    wait_until("the maintainer panicked", || {
        pool.metrics().maintainer_restarts >= 1
    })
    .await;
    transport.panic_on_probe(false);
    assert!(pool.metrics().closed.broken >= 1, "{:?}", pool.metrics());
    // The slot of the connection that was being probed came back.
    let mut conn = pool.get().await.unwrap();
    conn.get_mut().echo(b"hi").await.unwrap();
    assert_eq!(pool.status().size, 1);
}
