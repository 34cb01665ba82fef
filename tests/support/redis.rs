//! A real Redis for cache tests: Debian's `redis-server` (7.0) as a child process on a free
//! loopback port, without persistence, so that a restart is a Redis that lost everything,
//! which is what a cache must survive. The tests speak RESP by hand (there is no Redis client
//! among the dev-dependencies, and an independent client cannot share a bug with vouch's).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{STEP, free_port, wait_for_child};

/// How often a port is picked again when Redis exits before answering (another process
/// took the port between our pick and its bind).
const START_ATTEMPTS: usize = 5;

/// A `redis-server` child process with its working directory (and log) in its own temp dir.
/// Stopped (killed and reaped) on drop, so a failed assertion leaves nothing running.
///
/// [`RedisServer::start`] and [`RedisServer::restart`] block the calling thread until Redis
/// answers (at most [`STEP`]), so that they work with or without a runtime; on a
/// current-thread runtime other tasks (a [`super::proxy::Proxy`], say) pause meanwhile.
pub struct RedisServer {
    pub addr: SocketAddr,
    /// `redis://127.0.0.1:PORT/`, as vouch's configuration takes it.
    pub url: String,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts Redis on a free loopback port and waits until it answers `PING`.
    pub fn start() -> RedisServer {
        let mut last_log = String::new();
        for _ in 0..START_ATTEMPTS {
            let dir = tempfile::tempdir().expect("redis tempdir");
            let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let mut redis = RedisServer {
                addr,
                url: format!("redis://{addr}/"),
                child: None,
                dir,
            };
            redis.spawn();
            if redis.wait_ready() {
                return redis;
            }
            // It exited (most likely the port was taken); dropping it removes its directory.
            last_log = redis.log();
        }
        panic!("redis-server did not start in {START_ATTEMPTS} attempts:\n{last_log}");
    }

    /// Kills Redis and reaps it; its port refuses connections afterwards. Safe to call more
    /// than once.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops Redis (if running) and starts a fresh one on the same port, so that a client
    /// configured with [`RedisServer::url`] can reconnect: the recovery case. The new Redis
    /// is empty (nothing is persisted).
    pub fn restart(&mut self) {
        self.stop();
        for _ in 0..START_ATTEMPTS {
            self.spawn();
            if self.wait_ready() {
                return;
            }
            // Redis sets SO_REUSEADDR, so connections of the old one in TIME_WAIT do not
            // block the bind; an exit here means someone else took the port. Try again
            // briefly in case that was a passing connect-probe.
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "redis-server did not restart on {} in {START_ATTEMPTS} attempts:\n{}",
            self.addr,
            self.log()
        );
    }

    /// Sends one command (`["SET", "a", "1"]`) on a fresh connection and returns the raw
    /// RESP reply (`+OK\r\n`, `$1\r\n1\r\n`, `:3\r\n`, ...). Panics if Redis does not answer
    /// within [`STEP`].
    pub async fn command(&self, args: &[&str]) -> String {
        self.try_command(args)
            .await
            .unwrap_or_else(|e| panic!("redis {args:?} on {}: {e}", self.addr))
    }

    /// [`RedisServer::command`] that returns connection errors instead of panicking, for
    /// tests that expect Redis to be down.
    pub async fn try_command(&self, args: &[&str]) -> Result<String, String> {
        let fut = async {
            let mut tcp = tokio::net::TcpStream::connect(self.addr)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            tcp.write_all(&encode(args))
                .await
                .map_err(|e| format!("write: {e}"))?;
            let mut buf = Vec::new();
            loop {
                if let Some((_, used)) = parse(&buf)? {
                    return Ok(String::from_utf8_lossy(&buf[..used]).into_owned());
                }
                let mut chunk = [0u8; 4096];
                match tcp.read(&mut chunk).await {
                    Ok(0) => return Err(format!("closed after {} reply bytes", buf.len())),
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    Err(e) => return Err(format!("read: {e}")),
                }
            }
        };
        tokio::time::timeout(STEP, fut)
            .await
            .map_err(|_| "timed out".to_string())?
    }

    /// The keys matching `pattern` (`KEYS pattern`), sorted: Redis returns them in no
    /// particular order.
    pub async fn keys(&self, pattern: &str) -> Vec<String> {
        let reply = self.command(&["KEYS", pattern]).await;
        let Ok(Some((Resp::Array(Some(items)), _))) = parse(reply.as_bytes()) else {
            panic!("KEYS {pattern}: not an array: {reply:?}");
        };
        let mut keys: Vec<String> = items
            .into_iter()
            .map(|item| match item {
                Resp::Bulk(Some(key)) => String::from_utf8_lossy(&key).into_owned(),
                other => panic!("KEYS {pattern}: not a bulk string: {other:?}"),
            })
            .collect();
        keys.sort();
        keys
    }

    /// What Redis wrote to stdout and stderr (of every start), for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    /// Starts `redis-server` on `self.addr`; the log is appended to, so a restart keeps
    /// the history.
    fn spawn(&mut self) {
        let log = || -> File {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.path().join("redis.log"))
                .expect("open redis.log")
        };
        let child = Command::new("/usr/bin/redis-server")
            .args(["--port", &self.addr.port().to_string()])
            .args(["--bind", "127.0.0.1"])
            // No RDB snapshots and no AOF: a restart must come back empty, and nothing
            // should write outside the temp dir.
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--daemonize", "no"])
            .stdin(Stdio::null())
            .stdout(log())
            .stderr(log())
            .spawn()
            .expect("spawn /usr/bin/redis-server (apt-get install redis-server)");
        self.child = Some(child);
    }

    /// Polls `PING` until Redis answers `+PONG` (see [`wait_for_child`]).
    fn wait_ready(&mut self) -> bool {
        let (addr, log_path) = (self.addr, self.dir.path().join("redis.log"));
        wait_for_child(
            &mut self.child,
            || ping(addr),
            &format!("redis-server on {addr}"),
            || std::fs::read_to_string(&log_path).unwrap_or_default(),
        )
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether a blocking `PING` answers `+PONG` (blocking, so that start works without a
/// runtime).
fn ping(addr: SocketAddr) -> bool {
    let attempt = || -> Option<bool> {
        let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
        tcp.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
        tcp.set_write_timeout(Some(Duration::from_secs(1))).ok()?;
        tcp.write_all(&encode(&["PING"])).ok()?;
        let mut reply = [0u8; 7];
        tcp.read_exact(&mut reply).ok()?;
        Some(&reply == b"+PONG\r\n")
    };
    attempt().unwrap_or(false)
}

/// A command as a RESP array of bulk strings: `*1\r\n$4\r\nPING\r\n`.
fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// One RESP2 reply, as far as the tests look into it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Resp {
    Simple(String),
    Error(String),
    Integer(i64),
    /// `None` is the null bulk string (`$-1`), e.g. `GET` of a missing key.
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Resp>>),
}

/// Parses one reply from the start of `buf`: `Ok(None)` while it is incomplete, else the
/// reply and how many bytes it took. Knowing where a reply ends is what lets
/// [`RedisServer::command`] stop reading without waiting for a timeout.
fn parse(buf: &[u8]) -> Result<Option<(Resp, usize)>, String> {
    let Some((&kind, rest)) = buf.split_first() else {
        return Ok(None);
    };
    let Some(end) = rest.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let text = std::str::from_utf8(&rest[..end]).map_err(|e| format!("reply line: {e}"))?;
    let mut used = 1 + end + 2;
    let number = |text: &str| -> Result<i64, String> {
        text.parse()
            .map_err(|e| format!("bad number {text:?} in reply: {e}"))
    };
    let value = match kind {
        b'+' => Resp::Simple(text.to_owned()),
        b'-' => Resp::Error(text.to_owned()),
        b':' => Resp::Integer(number(text)?),
        b'$' => match usize::try_from(number(text)?) {
            Err(_) => Resp::Bulk(None),
            Ok(len) => {
                if buf.len() < used + len + 2 {
                    return Ok(None);
                }
                if &buf[used + len..used + len + 2] != b"\r\n" {
                    return Err("bulk string not terminated by CRLF".into());
                }
                let data = buf[used..used + len].to_vec();
                used += len + 2;
                Resp::Bulk(Some(data))
            }
        },
        b'*' => match usize::try_from(number(text)?) {
            Err(_) => Resp::Array(None),
            Ok(count) => {
                let mut items = Vec::with_capacity(count.min(1024));
                for _ in 0..count {
                    let Some((item, n)) = parse(&buf[used..])? else {
                        return Ok(None);
                    };
                    items.push(item);
                    used += n;
                }
                Resp::Array(Some(items))
            }
        },
        other => return Err(format!("unknown RESP type byte {:?}", other as char)),
    };
    Ok(Some((value, used)))
}
