//! The README's quick start, compiled by CI.
#![allow(clippy::print_stdout, reason = "an example reports to the terminal")]

use std::time::Duration;

use connection_kit::{ConnectionState, ConstantBackoff, EventFilter, Supervisor};
use connection_testkit::{TcpEchoServer, TcpEchoTransport};
use futures::StreamExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = TcpEchoServer::start().await?;
    let handle = Supervisor::new(TcpEchoTransport::new(server.addr())?)
        .backoff(ConstantBackoff::new(Duration::from_millis(200)))
        .keepalive(Duration::from_secs(5), Duration::from_secs(1))
        .spawn()?;

    let mut events = handle.subscribe(EventFilter::all());
    handle
        .watch_state()
        .wait_for(|s| *s == ConnectionState::Connected)
        .await?;
    if let Some(event) = events.next().await {
        println!("{}", event?);
    }
    println!("{:?}", handle.metrics());
    handle.shutdown(Duration::from_secs(2)).await;
    Ok(())
}
