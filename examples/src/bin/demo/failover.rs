//! The demo's failover section: a failover group of two local echo servers, `primary`
//! (preferred) and `standby`, both kept connected (hot standby) by a connection manager
//! that probes them every 250 ms. The primary's server is killed: the group fails over
//! to the standby the moment the connection drops, without waiting for a probe. The
//! server comes back: once the primary passed two probes in a row it takes back over
//! (`auto_recover`). Every switch and health change is printed as it happens; a switch
//! that does not happen within its bound ends the demo with an error.

use std::time::Duration;

use connection_kit::core::EventStream;
use connection_kit::health::{
    ConnectionManager, ConnectionOptions, FailoverGroup, HealthCheck, HealthStatus,
};
use connection_kit::{Event, EventFilter, EventKind, EventType};
use connection_testkit::{TcpEchoServer, TcpEchoTransport};
use futures::{FutureExt, StreamExt};
use tokio::time::{Instant, sleep, timeout_at};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Bound on the first election and on each switch.
const SWITCH_BOUND: Duration = Duration::from_secs(5);

/// Runs the failover section; fails if a switch does not happen within its bound.
pub(crate) async fn run() -> Result<(), BoxError> {
    let started = Instant::now();
    let mut primary_server = TcpEchoServer::start().await?;
    let standby_server = TcpEchoServer::start().await?;
    println!(
        "primary server on {}, standby server on {}",
        primary_server.addr(),
        standby_server.addr()
    );

    let manager = ConnectionManager::builder()
        .health_check(
            HealthCheck::builder()
                .interval(Duration::from_millis(250))
                .timeout(Duration::from_millis(200))
                .failure_threshold(2)
                .recovery_threshold(2)
                .build()?,
        )
        .build()?;
    let options = ConnectionOptions::builder()
        .connect_timeout(Duration::from_millis(500))
        .reconnect_delay(Duration::from_millis(200))
        .close_timeout(Duration::from_secs(1))
        .build()?;
    manager.add(
        "primary",
        TcpEchoTransport::new(primary_server.addr())?,
        options.clone(),
    )?;
    manager.add(
        "standby",
        TcpEchoTransport::new(standby_server.addr())?,
        options,
    )?;
    // Route health changes and the group's own switches, on one stream.
    let mut events = manager.subscribe(EventFilter::all().types([
        EventType::HealthChanged,
        EventType::Failover,
        EventType::PrimaryChanged,
    ]));
    let group = manager
        .failover_group("service")
        .route("primary", 0)
        .route("standby", 1)
        .parallel(true)
        .auto_recover(true)
        .build()?;

    let show = |event: &Event| {
        println!(
            "{:>7.3}s  {:<8} {}",
            started.elapsed().as_secs_f64(),
            event.name,
            event.kind
        );
    };
    switch_to(&group, &mut events, "primary", &show).await?;
    let standby_healthy = group
        .routes()
        .iter()
        .any(|r| &*r.name == "standby" && r.health == HealthStatus::Healthy);
    if !standby_healthy {
        until(&mut events, "the standby to be healthy", &show, |e| {
            &*e.name == "standby"
                && matches!(
                    e.kind,
                    EventKind::HealthChanged {
                        to: HealthStatus::Healthy,
                        ..
                    }
                )
        })
        .await?;
    }

    sleep(Duration::from_millis(300)).await;
    drain(&mut events, &show);

    println!("\n--- killing the primary's server");
    let killed = Instant::now();
    primary_server.stop().await;
    switch_to(&group, &mut events, "standby", &show).await?;
    println!(
        "          failed over {:.1} ms after the kill, without waiting for a probe",
        killed.elapsed().as_secs_f64() * 1e3
    );
    sleep(Duration::from_millis(500)).await;

    println!("\n--- restarting the primary's server on the same port");
    let restarted = Instant::now();
    primary_server.restart().await?;
    switch_to(&group, &mut events, "primary", &show).await?;
    println!(
        "          the primary took back over {:.0} ms after its server returned \
         (a reconnect and 2 passing probes)",
        restarted.elapsed().as_secs_f64() * 1e3
    );

    let report = manager.shutdown(Duration::from_secs(2)).await;
    println!(
        "\nfailover section finished in {:.1} s ({} connections closed gracefully, {} aborted)",
        started.elapsed().as_secs_f64(),
        report.graceful.len(),
        report.aborted.len()
    );
    Ok(())
}

/// Prints events until the group's primary becomes `route`, by a failover or a planned
/// change. Fails after [`SWITCH_BOUND`].
async fn switch_to(
    group: &FailoverGroup,
    events: &mut EventStream,
    route: &str,
    show: &impl Fn(&Event),
) -> Result<(), BoxError> {
    let what = format!("group {} to switch to {route}", group.name());
    until(events, &what, show, |e| {
        e.connection == group.id()
            && match &e.kind {
                EventKind::Failover { to, .. } | EventKind::PrimaryChanged { to, .. } => {
                    &**to == route
                }
                _ => false,
            }
    })
    .await?;
    if group.primary().as_deref() != Some(route) {
        return Err(format!("{what}: the primary is {:?}", group.primary()).into());
    }
    Ok(())
}

/// Prints the events already received, without waiting for more.
fn drain(events: &mut EventStream, show: &impl Fn(&Event)) {
    while let Some(Some(next)) = events.next().now_or_never() {
        match next {
            Ok(event) => show(&event),
            Err(lagged) => println!("          ({lagged})"),
        }
    }
}

/// Prints events until one matches `done`. Fails after [`SWITCH_BOUND`].
async fn until(
    events: &mut EventStream,
    what: &str,
    show: &impl Fn(&Event),
    done: impl Fn(&Event) -> bool,
) -> Result<(), BoxError> {
    let deadline = Instant::now() + SWITCH_BOUND;
    loop {
        let next = timeout_at(deadline, events.next())
            .await
            .map_err(|_| format!("waited {SWITCH_BOUND:?} for {what}"))?;
        match next {
            Some(Ok(event)) => {
                show(&event);
                if done(&event) {
                    return Ok(());
                }
            }
            Some(Err(lagged)) => println!("          ({lagged})"),
            None => return Err(format!("the event stream ended while waiting for {what}").into()),
        }
    }
}
