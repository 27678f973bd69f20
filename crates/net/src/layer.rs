//! The tower layer that tells each connection about its calls: it counts the calls open on
//! the connection (its idle timer runs only while there are none) and guards every response
//! body ([`GuardedBody`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use tower::{Layer, Service};

use crate::body::GuardedBody;
use crate::conn::{ConnInfo, ConnState};

/// Counts calls per connection and guards their response bodies; `service` names the
/// process kind in logs and metrics.
#[derive(Debug, Clone, Copy)]
pub struct ConnLayer {
    stall_timeout: Duration,
    service: &'static str,
}

impl ConnLayer {
    pub fn new(stall_timeout: Duration, service: &'static str) -> Self {
        Self {
            stall_timeout,
            service,
        }
    }
}

impl<S> Layer<S> for ConnLayer {
    type Service = ConnService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ConnService {
            inner,
            stall_timeout: self.stall_timeout,
            service: self.service,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ConnService<S> {
    inner: S,
    stall_timeout: Duration,
    service: &'static str,
}

/// One open call on a connection, from its request until its response has ended or been
/// dropped.
#[derive(Debug)]
pub(crate) struct CallGuard {
    conn: Arc<ConnState>,
}

impl CallGuard {
    /// Counts a call whose start `conn` already knows of.
    pub(crate) fn new(conn: Arc<ConnState>) -> Self {
        Self { conn }
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.conn.call_ended();
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, B, RB> Service<Request<B>> for ConnService<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = Response<GuardedBody<RB>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // Outside our listeners (a test calling the service directly) a call has a
        // connection of its own.
        let conn = match req.extensions().get::<ConnInfo>() {
            Some(info) => {
                // What `tonic::Request::remote_addr` reads.
                let tcp = tonic::transport::server::TcpConnectInfo {
                    local_addr: info.local_addr,
                    remote_addr: info.remote_addr,
                };
                let conn = info.state.clone();
                req.extensions_mut().insert(tcp);
                conn
            }
            None => Arc::new(ConnState::new()),
        };
        conn.call_started();
        let call = CallGuard::new(conn.clone());
        let stall_timeout = self.stall_timeout;
        let service = self.service;
        let response = self.inner.call(req);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| GuardedBody::new(body, call, conn, stall_timeout, service)))
        })
    }
}
