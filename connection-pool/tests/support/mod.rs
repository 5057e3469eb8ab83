//! An in-memory transport whose connects, probes and failures tests control.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use connection_core::{
    Connection, ConnectionId, ConnectionState, DisconnectReason, Endpoint, Error, Transport,
};

#[derive(Debug, Default)]
pub struct Knobs {
    pub connects: AtomicU64,
    pub fail_connect: AtomicBool,
    pub dead: AtomicBool,
    pub connect_delay_ms: AtomicU64,
    pub in_flight: AtomicUsize,
    pub peak_in_flight: AtomicUsize,
    pub probes: AtomicU64,
    pub probe_delay_ms: AtomicU64,
    pub closes: AtomicU64,
}

#[derive(Clone, Debug)]
pub struct Mem {
    endpoint: Endpoint,
    pub knobs: Arc<Knobs>,
}

impl Mem {
    pub fn new() -> Self {
        Self {
            endpoint: Endpoint::host_port("127.0.0.1", 9).expect("valid endpoint"),
            knobs: Arc::default(),
        }
    }
}

#[derive(Debug)]
pub struct MemConn {
    id: ConnectionId,
    pub state: ConnectionState,
    knobs: Arc<Knobs>,
    endpoint: Endpoint,
}

impl Transport for Mem {
    type Connection = MemConn;

    async fn connect(&self) -> Result<MemConn, Error> {
        let k = &self.knobs;
        k.connects.fetch_add(1, Ordering::SeqCst);
        let now = k.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        k.peak_in_flight.fetch_max(now, Ordering::SeqCst);
        let delay = k.connect_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        k.in_flight.fetch_sub(1, Ordering::SeqCst);
        if k.fail_connect.load(Ordering::SeqCst) {
            return Err(Error::connect(
                &self.endpoint,
                std::io::ErrorKind::ConnectionRefused.into(),
            ));
        }
        Ok(MemConn {
            id: ConnectionId::next(),
            state: ConnectionState::Connected,
            knobs: Arc::clone(k),
            endpoint: self.endpoint.clone(),
        })
    }

    fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }
}

impl Connection for MemConn {
    type Io = ();

    fn io(&self) {}

    fn id(&self) -> ConnectionId {
        self.id
    }

    fn state(&self) -> ConnectionState {
        self.state
    }

    async fn probe(&mut self) -> Result<Duration, Error> {
        self.knobs.probes.fetch_add(1, Ordering::SeqCst);
        let delay = self.knobs.probe_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if self.knobs.dead.load(Ordering::SeqCst) {
            self.state = ConnectionState::Failed;
            Err(Error::Closed {
                endpoint: self.endpoint.clone(),
            })
        } else {
            Ok(Duration::ZERO)
        }
    }

    async fn closed(&mut self) -> DisconnectReason {
        std::future::pending().await
    }

    async fn close(&mut self) -> Result<(), Error> {
        self.knobs.closes.fetch_add(1, Ordering::SeqCst);
        self.state = ConnectionState::Closed;
        Ok(())
    }
}
