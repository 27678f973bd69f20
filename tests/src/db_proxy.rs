//! A TCP relay between a test server and its PostgreSQL that the test can cut and restore:
//! the database becomes unreachable for that server alone, as when its host or network fails,
//! while the other tests keep using the shared PostgreSQL.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

/// A running relay. Dropping it stops it and closes every relayed connection.
#[derive(Debug)]
pub struct DbProxy {
    pub addr: SocketAddr,
    state: Arc<State>,
    accept: JoinHandle<()>,
}

#[derive(Debug, Default)]
struct State {
    cut: AtomicBool,
    relays: Mutex<Vec<AbortHandle>>,
}

impl State {
    fn close_all(&self) {
        let relays = std::mem::take(&mut *self.relays.lock().expect("relay list"));
        for relay in relays {
            relay.abort();
        }
    }
}

impl DbProxy {
    /// Relays connections on a new port of 127.0.0.1 to `target`.
    pub async fn start(target: SocketAddr) -> DbProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy port");
        let addr = listener.local_addr().expect("proxy address");
        let state = Arc::new(State::default());
        let accept_state = state.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if accept_state.cut.load(Ordering::SeqCst) {
                    // Refused the way a dead host's port is: closed at once.
                    drop(inbound);
                    continue;
                }
                let relay = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                accept_state
                    .relays
                    .lock()
                    .expect("relay list")
                    .push(relay.abort_handle());
            }
        });
        DbProxy {
            addr,
            state,
            accept,
        }
    }

    /// The database becomes unreachable: open connections are closed, new ones refused.
    pub fn cut(&self) {
        self.state.cut.store(true, Ordering::SeqCst);
        self.state.close_all();
    }

    /// The database is reachable again.
    pub fn restore(&self) {
        self.state.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for DbProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.state.close_all();
    }
}

/// The host and port of a PostgreSQL URL (`postgres://user@host:port/db`), resolved.
pub async fn postgres_addr(url: &str) -> SocketAddr {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host_port = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5432")
    };
    tokio::net::lookup_host(&host_port)
        .await
        .ok()
        .and_then(|mut addrs| addrs.next())
        .unwrap_or_else(|| {
            panic!("the PostgreSQL test URL must name a TCP host to relay to, not {host_port}")
        })
}

/// `url` with its host and port replaced by `addr`.
pub fn via(url: &str, addr: SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let user = authority
        .rsplit_once('@')
        .map(|(u, _)| format!("{u}@"))
        .unwrap_or_default();
    format!("{scheme}://{user}{addr}{tail}")
}
