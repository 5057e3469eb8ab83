//! The demo's failover section: a failover group of two local echo servers, `primary`
//! (preferred) and `standby`, both kept connected (hot standby) by a connection manager
//! that probes them every 250 ms. The primary's server is killed: the group fails over
//! to the standby the moment the connection drops, without waiting for a probe. The
//! server comes back: once the primary passed two probes in a row it takes back over
//! (`auto_recover`). Every switch and health change is printed as it happens; a switch
//! that does not happen within its bound ends the demo with an error.
//!
//! The whole time, the application sends one idempotent request per millisecond
//! *through the group* (`GroupLink::run_idempotent`): each goes to the current primary,
//! and one caught on the dying connection runs once more on the standby. The demo prints
//! how many requests failed (the goal, and the demo's condition, is none) and how long
//! traffic took to move each way.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use connection_kit::core::EventStream;
use connection_kit::health::{
    ConnectionManager, ConnectionOptions, Failover, FailoverGroup, GroupLink, HealthCheck,
    HealthStatus, PrimaryChanged,
};
use connection_kit::{Event, EventFilter, EventKind, EventType};
use connection_testkit::{EchoClient, TcpEchoServer, TcpEchoTransport};
use futures::{FutureExt, StreamExt};
use tokio::sync::watch;
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
                .probe_timeout(Duration::from_millis(200))
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
    let mut events = manager.subscribe(
        EventFilter::all()
            .types([EventType::HealthChanged])
            .extensions([Failover::NAME, PrimaryChanged::NAME]),
    );
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

    let traffic = Traffic::start(group.link::<EchoClient>()?, standby_server.addr().port());
    println!("sending one request per millisecond through the group");
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
    let moved = traffic.first_completion(true, killed).await?;
    println!(
        "          traffic: first request completed on the standby {:.1} ms after the kill",
        moved.duration_since(killed).as_secs_f64() * 1e3
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
    let back = traffic.first_completion(false, restarted).await?;
    println!(
        "          traffic: back on the primary {:.0} ms after its server returned",
        back.duration_since(restarted).as_secs_f64() * 1e3
    );
    sleep(Duration::from_millis(200)).await;
    let (ok, failed) = traffic.stop().await;
    println!("\ntraffic through the group: {ok} requests succeeded, {failed} failed (goal: 0)");
    if failed > 0 {
        return Err(format!("{failed} idempotent requests through the group failed").into());
    }

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
            && (e
                .kind
                .downcast_ref::<Failover>()
                .is_some_and(|f| &*f.to == route)
                || e.kind
                    .downcast_ref::<PrimaryChanged>()
                    .is_some_and(|p| &*p.to == route))
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

/// The application's side: one idempotent echo request per millisecond through the
/// group, counted, with the last completion (when, and whether the standby served it).
struct Traffic {
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    last: watch::Receiver<Option<(Instant, bool)>>,
    task: tokio::task::JoinHandle<()>,
}

impl Traffic {
    fn start(api: GroupLink<EchoClient>, standby_port: u16) -> Self {
        let (ok, failed, stop) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let (last_tx, last) = watch::channel(None);
        let task = {
            let (ok, failed, stop) = (ok.clone(), failed.clone(), stop.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(1));
                // Bounded twice: by the stop flag, and by a count no run comes near.
                for _ in 0..1_000_000u32 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    tick.tick().await;
                    let result = api
                        .run_idempotent(|c| async move {
                            c.echo(b"GET /status\n").await?;
                            Ok(c.endpoint().port() == standby_port)
                        })
                        .await;
                    match result {
                        Ok(on_standby) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                            last_tx.send_replace(Some((Instant::now(), on_standby)));
                        }
                        Err(e) => {
                            println!("          request failed: {e}");
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        };
        Self {
            ok,
            failed,
            stop,
            last,
            task,
        }
    }

    /// When the first request after `since` completed on the standby (`true`) or the
    /// primary (`false`). Fails after [`SWITCH_BOUND`].
    async fn first_completion(
        &self,
        on_standby: bool,
        since: Instant,
    ) -> Result<Instant, BoxError> {
        let mut last = self.last.clone();
        let found = tokio::time::timeout(
            SWITCH_BOUND,
            last.wait_for(|l| matches!(l, Some((at, s)) if *s == on_standby && *at >= since)),
        )
        .await
        .map_err(|_| {
            format!(
                "no request completed on the {} within {SWITCH_BOUND:?}",
                if on_standby { "standby" } else { "primary" }
            )
        })??;
        Ok(found.map_or(since, |(at, _)| at))
    }

    async fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = tokio::time::timeout(SWITCH_BOUND, self.task).await;
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}
