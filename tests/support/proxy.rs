//! A fault-injecting TCP proxy in front of another loopback service (a registry, a Redis),
//! so cache tests can make the backend slow or gone without stopping it: a cache hit must
//! not wait for the slow backend, a cache must serve (or fail cleanly) when it is gone.
//!
//! The mode is checked for every chunk, and a switch to [`Mode::Refuse`] closes the
//! connections already open: HTTP clients keep connections alive, so a fault that only
//! affected new connections would not reach them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use super::STEP;

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forwards bytes both ways as they come.
    Pass,
    /// Holds back every chunk from upstream to client this long, so each response arrives
    /// late (a response in several chunks arrives later still). Client to upstream is not
    /// delayed.
    Delay(Duration),
    /// Accepts new connections and closes them at once, and closes the open ones (both the
    /// client and the upstream side): the backend as a client sees it when it is down.
    /// A close is a FIN, so a client reads EOF; a client whose request the proxy had not
    /// read yet may see a reset instead (the kernel's answer to unread data).
    Refuse,
}

/// A proxy listening on a free loopback port. Dropping it aborts its tasks, which closes
/// the listener and every connection.
pub struct Proxy {
    pub addr: SocketAddr,
    /// `127.0.0.1:PORT`, to put where the upstream's host would go (an image reference).
    pub host: String,
    mode: watch::Sender<Mode>,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Starts a proxy in [`Mode::Pass`] to `upstream`. Must be called within a tokio
    /// runtime, which then runs the proxy.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy on loopback");
        let addr = listener.local_addr().expect("proxy address");
        let (mode, _) = watch::channel(Mode::Pass);
        let accepted = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(accept_loop(
            listener,
            upstream,
            mode.subscribe(),
            accepted.clone(),
        ));
        Proxy {
            addr,
            host: addr.to_string(),
            mode,
            accepted,
            task,
        }
    }

    /// Switches the mode for new and open connections alike.
    pub fn set_mode(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    pub fn mode(&self) -> Mode {
        *self.mode.borrow()
    }

    /// Client connections accepted so far, refused ones included: how often a client
    /// (re)connected.
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // The accept task owns the listener and the JoinSet of the connections; dropping
        // the JoinSet aborts them, which drops (closes) their sockets.
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    mode: watch::Receiver<Mode>,
    accepted: Arc<AtomicUsize>,
) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // EMFILE and the like: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        accepted.fetch_add(1, Ordering::SeqCst);
        while connections.try_join_next().is_some() {}
        if *mode.borrow() == Mode::Refuse {
            drop(client);
            continue;
        }
        connections.spawn(serve(client, upstream, mode.clone()));
    }
}

/// One client connection: connects upstream and pumps both ways until both sides are done
/// or the mode turns to [`Mode::Refuse`]; returning drops (closes) both sockets.
async fn serve(client: TcpStream, upstream: SocketAddr, mode: watch::Receiver<Mode>) {
    let upstream = match tokio::time::timeout(STEP, TcpStream::connect(upstream)).await {
        Ok(Ok(upstream)) => upstream,
        // Upstream is down: the client sees its connection closed, as it would through a
        // real proxy.
        _ => return,
    };
    // Chunks are forwarded as they come; Nagle would merge and delay them.
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (upstream_read, upstream_write) = upstream.into_split();
    let pumps = async {
        tokio::join!(
            pump(client_read, upstream_write, mode.clone(), false),
            pump(upstream_read, client_write, mode.clone(), true),
        )
    };
    tokio::select! {
        _ = pumps => {}
        _ = refused(mode.clone()) => {}
    }
}

/// Copies `from` to `to` chunk by chunk, applying the mode to each chunk (delays only when
/// `delayed`, i.e. upstream to client). On EOF it half-closes `to`, so a request-then-EOF
/// client still gets its response.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mode: watch::Receiver<Mode>,
    delayed: bool,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let current = *mode.borrow();
        match current {
            // `refused` ends the connection; do not forward meanwhile.
            Mode::Refuse => return std::future::pending().await,
            Mode::Delay(d) if delayed => tokio::time::sleep(d).await,
            Mode::Delay(_) | Mode::Pass => {}
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// Resolves once the mode is [`Mode::Refuse`] (now or later).
async fn refused(mut mode: watch::Receiver<Mode>) {
    loop {
        if *mode.borrow_and_update() == Mode::Refuse {
            return;
        }
        if mode.changed().await.is_err() {
            // The proxy is gone; its drop aborts this task anyway.
            return std::future::pending().await;
        }
    }
}
