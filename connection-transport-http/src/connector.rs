//! A layer over reqwest's connector: it tells a request on a fresh connection from one
//! on a pooled socket, applies the request's own connect timeout, and counts new
//! connections.
//!
//! How it knows: each attempt runs inside a task-local [`Attempt`]. hyper-util's pool
//! first looks for an idle socket and only when there is none calls the connector, from
//! inside the request's own future (its lazy connect is polled there), so the connector
//! marking the attempt's cell means "this attempt asked for a new connection". A
//! request whose attempt was not marked went out on a reused keep-alive socket; that is
//! the socket that may have been closed by the server under it (hyper#2136). If a
//! connect was started and an idle socket won the race after all, the attempt counts as
//! fresh: the stale-socket retry is then skipped, the safe side.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::error::ConnectTimedOut;
use crate::metrics::HttpMetrics;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What one attempt tells the connector and learns from it.
pub(crate) struct Attempt {
    pub(crate) fresh: Cell<bool>,
    pub(crate) connect_timeout: Duration,
}

tokio::task_local! {
    pub(crate) static ATTEMPT: Attempt;
}

#[derive(Clone)]
pub(crate) struct ConnectLayer {
    pub(crate) default_timeout: Duration,
    pub(crate) metrics: Arc<HttpMetrics>,
}

impl<S> tower_layer::Layer<S> for ConnectLayer {
    type Service = ConnectService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ConnectService {
            inner,
            default_timeout: self.default_timeout,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub(crate) struct ConnectService<S> {
    inner: S,
    default_timeout: Duration,
    metrics: Arc<HttpMetrics>,
}

impl<S, R> tower_service::Service<R> for ConnectService<S>
where
    S: tower_service::Service<R, Error = BoxError>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        let limit = ATTEMPT
            .try_with(|a| {
                a.fresh.set(true);
                a.connect_timeout
            })
            .unwrap_or(self.default_timeout);
        self.metrics.connection_opened();
        let connecting = self.inner.call(req);
        Box::pin(async move {
            match tokio::time::timeout(limit, connecting).await {
                Ok(result) => result,
                Err(_) => Err(Box::new(ConnectTimedOut(limit)) as BoxError),
            }
        })
    }
}
