//! SSE like every transport: in a `ConnectionManager`, in a failover group (traffic
//! follows the primary), and as an attached `SseClient`.

mod support;

use std::time::Duration;

use connection_health::{ConnectionManager, ConnectionOptions, HealthStatus};
use connection_transport_sse::{SseClient, SseConfig, SseEvents, SseItem, SseTransport};
use support::{Reply, SseServer};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(30);

fn transport(server: &SseServer) -> SseTransport {
    let config = SseConfig::builder(server.url("/feed"))
        .reconnect_delays(Duration::from_millis(100), Duration::from_millis(200))
        .build()
        .expect("valid config");
    SseTransport::new(config).expect("a transport")
}

async fn next_data(events: &SseEvents) -> String {
    loop {
        let item = timeout(LIMIT, events.recv())
            .await
            .expect("an item in time")
            .expect("open");
        if let SseItem::Event(e) = item {
            return e.into_data();
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_failover_group_of_streams_moves_traffic_to_the_standby() {
    let mut a = SseServer::start(|_, _| Reply::stream().send("data: from a\n\n").hold()).await;
    let b = SseServer::start(|_, _| Reply::stream().send("data: from b\n\n").hold()).await;
    let manager = ConnectionManager::builder().build().unwrap();
    let (ta, tb) = (transport(&a), transport(&b));
    let options = |t: &SseTransport| {
        ConnectionOptions::builder()
            .backoff(t.backoff_factory())
            .build()
            .unwrap()
    };
    let (oa, ob) = (options(&ta), options(&tb));
    manager.add("a", ta, oa).unwrap();
    manager.add("b", tb, ob).unwrap();
    let group = manager
        .failover_group("feed")
        .route("a", 0)
        .route("b", 1)
        .parallel(true)
        .build()
        .unwrap();
    let link = group.link::<SseEvents>().unwrap();
    let (route, events) = link.ready(LIMIT).await.unwrap();
    assert_eq!(&*route, "a");
    assert_eq!(next_data(&events).await, "from a");

    a.stop().await;
    let mut primary = group.watch_primary();
    timeout(LIMIT, primary.wait_for(|p| p.as_deref() == Some("b")))
        .await
        .unwrap()
        .unwrap();
    let (route, events) = link.ready(LIMIT).await.unwrap();
    assert_eq!(&*route, "b");
    assert_eq!(next_data(&events).await, "from b");
    manager.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn an_attached_client_is_rated_and_reachable_by_name() {
    let server = SseServer::start(|_, _| Reply::stream().send("data: hi\n\n").hold()).await;
    let manager = ConnectionManager::builder().build().unwrap();
    let client = SseClient::builder(server.url("/"))
        .events(manager.event_bus().clone())
        .name("feed")
        .spawn()
        .unwrap();
    manager
        .attach("feed", &client, ConnectionOptions::default())
        .unwrap();
    client.wait_connected().await.unwrap();
    let events = manager
        .link::<SseEvents>("feed")
        .unwrap()
        .ready(LIMIT)
        .await
        .unwrap();
    assert_eq!(next_data(&events).await, "hi");
    assert_eq!(manager.health("feed").unwrap(), HealthStatus::Healthy);
    manager.shutdown(Duration::from_secs(1)).await;
}
