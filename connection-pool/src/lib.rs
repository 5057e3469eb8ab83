//! # connection-pool
//!
//! A pool of connections of any [`Transport`](connection_core::Transport): bounded,
//! fair, cancellation-safe, and kept healthy in the background.
//!
//! It exists because the pools in the ecosystem each miss something a long-running
//! service needs: deadpool is fair but has no `min_idle`, lifetime, idle timeout or
//! background health check (an idle deadpool can be entirely dead); bb8 has those but
//! does not serve waiters first-come first-served and reports every failure as a
//! timeout. This pool does all of it:
//!
//! - strict FIFO service by default, with a returned connection handed straight to the
//!   oldest waiter; a [`Fairness::Throughput`] mode lets newcomers take idle
//!   connections (barging), which is faster under heavy contention;
//! - errors that say why: [`PoolError::Timeout`] carries the pool's [`Status`] and the
//!   last connect error, [`PoolError::Connect`] the transport's own error;
//! - validation on checkout (skipped for connections used within `recycle_window`),
//!   lifetime with jitter, idle timeout, keepalive probes of idle connections and
//!   `min_idle` refill with backoff and slow start, by one maintainer task per pool;
//! - [`KeyedPool`]: one pool per key under a total cap, making room from cold keys;
//! - [`Pool::resize`] at run time; leak detection (`leak_threshold`: a checkout held
//!   too long is reported once, naming the `get` call's file and line); pool events on
//!   a core `EventBus` ([`PoolBuilder::events`]); [`PoolConfig::from_env`].
//!
//! # Design
//!
//! - **Slots.** `size` counts slots: connections idle, in use, being validated or
//!   probed, and connects in progress. A slot is taken under the pool lock before a
//!   connect starts, so `size <= max_size` always holds, and every slot outside the idle
//!   deque is owned by one value whose `Drop` gives it back.
//! - **Handoff.** In strict mode a waiter queues a oneshot; a returned connection (or a
//!   freed slot, as the right to connect) is sent straight to the oldest waiter. If that
//!   waiter was cancelled, the send fails and the next one is tried; if it is cancelled
//!   after the send, the slot's `Drop` inside the channel releases it again. Nothing is
//!   stranded in a dead waiter.
//! - **Cancellation.** Dropping `get` at any await gives back what it held: a queued
//!   waiter leaves the queue, a slot being connected is freed, and a connection being
//!   validated is discarded (a half-done probe may leave bytes in flight), or returned
//!   if [`CancelledValidation::Return`] says so.
//! - **Lock order.** One mutex guards idle deque, waiter queue and counts;
//!   it is never held across an await or while a slot is dropped, and nothing but a
//!   oneshot's or `Notify`'s internal lock is taken under it.
//! - **Hot path.** With a connection idle and nobody waiting, `get` and drop each take
//!   that lock once, briefly, and allocate nothing; the clock is read only when a
//!   setting needs connection times. Waiting allocates one oneshot. Leak detection,
//!   when on, records the checkout under that same lock (one clock read, a `&'static`
//!   location) and leaves the scanning to the maintainer.
//!
//! ```
//! use connection_core::Connection;
//! use connection_pool::Pool;
//! use connection_testkit::{TcpEchoServer, TcpEchoTransport};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = TcpEchoServer::start().await?;
//! let pool = Pool::builder(TcpEchoTransport::new(server.addr())?)
//!     .max_size(4)
//!     .spawn()?;
//!
//! let mut conn = pool.get().await?;       // opens a connection
//! conn.probe().await?;                    // use it through Deref
//! drop(conn);                             // back to the pool
//!
//! let again = pool.get().await?;         // the same connection, reused
//! assert_eq!(pool.status().size, 1);
//! drop(again);
//! pool.close().await;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod config;
mod error;
pub mod events;
mod inner;
mod keyed;
mod maintainer;
mod pool;
mod status;

pub use config::{
    CancelledValidation, Fairness, MAX_POOL_SIZE, PoolConfig, PoolConfigBuilder, QueueOrder,
};
pub use error::PoolError;
pub use events::ConnectionLeak;
pub use keyed::KeyedPool;
pub use pool::{Pool, PoolBuilder, PoolGuard};
pub use status::{ClosedCounts, PoolMetrics, Status};
