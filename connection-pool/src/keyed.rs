//! [`KeyedPool`]: one [`Pool`] per key (host, peer id, cache key) under a total cap.
//!
//! Every key's pool has the per-key settings; connections of all keys together never
//! exceed `total_max`. The total is a count of units shared by the pools, taken only
//! when a connection is opened and given back when one is closed, so checkouts of
//! existing connections never touch it.
//!
//! When the total is reached, room is made from cold keys: a `get` for a key with no
//! idle connection first closes the longest-idle connection of another key; and while a
//! key has a task waiting for room, connections returned to keys nobody waits on are
//! closed instead of idling, and the freed unit goes to the waiting key (oldest waiting
//! pool first). The cap's list of waiting pools is locked only after a pool's lock is
//! released, or under a pool lock while registering: never the other way round.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use connection_core::{ConfigError, Transport};
use parking_lot::Mutex;

use crate::config::PoolConfig;
use crate::error::PoolError;
use crate::inner::{Cap, Shared};
use crate::pool::{Pool, PoolGuard};
use crate::status::Status;

type Factory<K, T> = Arc<dyn Fn(&K) -> T + Send + Sync>;

/// Pools of connections per key, with a total cap across keys.
///
/// Cheap to clone: clones share the pools.
///
/// ```
/// use connection_pool::{KeyedPool, PoolConfig};
/// use connection_testkit::{TcpEchoServer, TcpEchoTransport};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (a, b) = (TcpEchoServer::start().await?, TcpEchoServer::start().await?);
/// let addrs = [a.addr(), b.addr()];
/// let per_key = PoolConfig::builder().max_size(4).build()?;
/// let pools = KeyedPool::new(per_key, 6, move |key: &usize| {
///     TcpEchoTransport::new(addrs[*key]).expect("loopback address")
/// })?;
/// let conn = pools.get(&1).await?;
/// assert_eq!(pools.status(&1).map(|s| s.in_use), Some(1));
/// assert_eq!(pools.total(), 1);
/// drop(conn);
/// # Ok(()) }
/// ```
pub struct KeyedPool<K, T: Transport> {
    inner: Arc<KeyedInner<K, T>>,
}

struct KeyedInner<K, T: Transport> {
    per_key: PoolConfig,
    factory: Factory<K, T>,
    cap: Arc<Cap<T>>,
    total_max: usize,
    pools: Mutex<HashMap<K, Pool<T>>>,
}

impl<K, T> KeyedPool<K, T>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
    T: Transport,
{
    /// Pools with `per_key` settings, at most `total_max` connections across keys, each
    /// key's transport made by `factory` on first use.
    ///
    /// Fails with a [`ConfigError`] naming `total_max` when it is zero, or the per-key
    /// field at fault.
    pub fn new(
        per_key: PoolConfig,
        total_max: usize,
        factory: impl Fn(&K) -> T + Send + Sync + 'static,
    ) -> Result<Self, ConfigError> {
        per_key.validate()?;
        if total_max == 0 {
            return Err(ConfigError::new("total_max", "must be greater than zero"));
        }
        Ok(Self {
            inner: Arc::new(KeyedInner {
                per_key,
                factory: Arc::new(factory),
                cap: Arc::new(Cap::new(total_max)),
                total_max,
                pools: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Takes a connection for `key`, making room from cold keys when the total is
    /// reached. Errors as [`Pool::get`]; a key's pool is created on first use (which
    /// fails only for settings that need a runtime, outside one: as [`Pool::new`]).
    #[track_caller]
    pub fn get<'a>(
        &'a self,
        key: &'a K,
    ) -> impl Future<Output = Result<PoolGuard<T>, PoolError>> + 'a {
        let at = std::panic::Location::caller();
        self.get_at(key, at)
    }

    async fn get_at(
        &self,
        key: &K,
        at: &'static std::panic::Location<'static>,
    ) -> Result<PoolGuard<T>, PoolError> {
        let pool = self.pool(key).map_err(|e| PoolError::Connect {
            source: connection_core::Error::Config(e),
        })?;
        if self.inner.cap.is_full() && pool.status().idle == 0 {
            self.evict_coldest(key);
        }
        pool.get_at(at).await
    }

    /// The pool for `key`, created on first use.
    pub fn pool(&self, key: &K) -> Result<Pool<T>, ConfigError> {
        let mut pools = self.inner.pools.lock();
        if let Some(p) = pools.get(key) {
            return Ok(p.clone());
        }
        let pool = Pool::with_cap(
            (self.inner.factory)(key),
            self.inner.per_key.clone(),
            Some(Arc::clone(&self.inner.cap)),
            None,
        )?;
        pools.insert(key.clone(), pool.clone());
        Ok(pool)
    }

    /// Closes the longest-idle connection among the other keys, if any is idle.
    fn evict_coldest(&self, except: &K) {
        let candidates: Vec<Arc<Shared<T>>> = self
            .inner
            .pools
            .lock()
            .iter()
            .filter(|(k, _)| *k != except)
            .map(|(_, p)| Arc::clone(p.shared()))
            .collect();
        let coldest = candidates
            .iter()
            .filter_map(|s| s.coldest_idle().map(|t| (t, s)))
            .min_by_key(|(t, _)| *t);
        if let Some((_, shared)) = coldest {
            Shared::evict_one(shared);
        }
    }

    /// `key`'s pool status, if the key was used.
    pub fn status(&self, key: &K) -> Option<Status> {
        self.inner.pools.lock().get(key).map(Pool::status)
    }

    /// Connections open (or being opened) across all keys.
    pub fn total(&self) -> usize {
        self.inner.cap.used()
    }

    /// The cap on [`total`](Self::total).
    pub fn total_max(&self) -> usize {
        self.inner.total_max
    }

    /// The keys used so far.
    pub fn keys(&self) -> Vec<K> {
        self.inner.pools.lock().keys().cloned().collect()
    }

    /// Closes every key's pool (see [`Pool::close`]).
    pub async fn close(&self) {
        let pools: Vec<Pool<T>> = self.inner.pools.lock().values().cloned().collect();
        for p in pools {
            p.close().await;
        }
    }
}

impl<K, T: Transport> Clone for KeyedPool<K, T> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K, T: Transport> fmt::Debug for KeyedPool<K, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedPool")
            .field("keys", &self.inner.pools.lock().len())
            .field("total", &self.inner.cap.used())
            .field("total_max", &self.inner.total_max)
            .finish()
    }
}
