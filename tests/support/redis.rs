//! A real Redis for cache tests: Debian's `redis-server` (7.0) as a child process on a free
//! loopback port, by default without persistence, so that a restart is a Redis that lost
//! everything, which is what a cache must survive. [`RedisOptions`] adds what a production
//! Redis has: a password (and an ACL user), AOF with `appendfsync always` (a restart keeps
//! every acknowledged write), and a TLS port beside the plain one. The tests speak RESP by hand (there is no Redis client
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
    /// With [`RedisOptions::tls`]: the TLS port and `rediss://127.0.0.1:PORT/`.
    pub tls_addr: Option<SocketAddr>,
    pub tls_url: Option<String>,
    pub options: RedisOptions,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

/// How a [`RedisServer`] runs.
#[derive(Debug, Clone, Default)]
pub struct RedisOptions {
    /// `requirepass`: the default user's password.
    pub password: Option<String>,
    /// An ACL user (`name`, `password`) with every right on every key.
    pub acl_user: Option<(String, String)>,
    /// AOF on, `appendfsync always`: what the claims need from a Redis.
    pub durable: bool,
    /// PEM certificate and key files for a TLS port beside the plain one (clients are not
    /// asked for certificates).
    pub tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// Start as a replica of this master.
    pub replica_of: Option<SocketAddr>,
    /// A `redis.conf` to start from (its persistence settings are kept; the listener and
    /// the data directory are the harness's, given on the command line, which wins).
    pub conf: Option<String>,
}

impl RedisServer {
    /// Starts Redis on a free loopback port and waits until it answers `PING`.
    pub fn start() -> RedisServer {
        RedisServer::start_with(RedisOptions::default())
    }

    /// Starts Redis with `options` on free loopback ports and waits until it answers.
    pub fn start_with(options: RedisOptions) -> RedisServer {
        let mut last_log = String::new();
        for _ in 0..START_ATTEMPTS {
            let dir = tempfile::tempdir().expect("redis tempdir");
            let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let tls_addr = options
                .tls
                .as_ref()
                .map(|_| SocketAddr::from(([127, 0, 0, 1], free_port())));
            let mut redis = RedisServer {
                addr,
                url: format!("redis://{addr}/"),
                tls_url: tls_addr.map(|a| format!("rediss://{a}/")),
                tls_addr,
                options: options.clone(),
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
    /// is empty unless [`RedisOptions::durable`] (then it replays its AOF).
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

    /// Freezes Redis (`SIGSTOP`): its sockets stay open and accept, nothing is answered —
    /// a stuck node rather than a dead one. [`RedisServer::resume`] thaws it.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Thaws a [`RedisServer::pause`]d Redis (`SIGCONT`); commands queued meanwhile run now.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, which: &str) {
        let pid = self.child.as_ref().expect("redis running").id().to_string();
        let status = Command::new("kill")
            .args([which, &pid])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {which} {pid}");
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
        command_at(self.addr, self.options.password.as_deref(), args).await
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
        let mut command = Command::new("/usr/bin/redis-server");
        if let Some(conf) = &self.options.conf {
            let path = self.dir.path().join("redis.conf");
            std::fs::write(&path, conf).expect("write redis.conf");
            command.arg(path);
        }
        command
            .args(["--port", &self.addr.port().to_string()])
            .args(["--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--daemonize", "no"]);
        // Nothing writes outside the temp dir. Without a conf of its own: no RDB snapshots,
        // and AOF only when durable, so that otherwise a restart comes back empty.
        if self.options.conf.is_none() {
            command.args(["--save", ""]);
            if self.options.durable {
                command.args(["--appendonly", "yes", "--appendfsync", "always"]);
            } else {
                command.args(["--appendonly", "no"]);
            }
        }
        if let Some(pw) = &self.options.password {
            command.args(["--requirepass", pw]);
        }
        if let Some((user, pw)) = &self.options.acl_user {
            // Each rule a separate argument: redis-server joins them into one config line.
            command.args(["--user", user, "on", &format!(">{pw}"), "~*", "&*", "+@all"]);
        }
        if let Some(master) = self.options.replica_of {
            command.args(["--replicaof", "127.0.0.1", &master.port().to_string()]);
            if let Some(pw) = &self.options.password {
                command.args(["--masterauth", pw]);
            }
        }
        if let (Some((cert, key)), Some(tls)) = (&self.options.tls, self.tls_addr) {
            command
                .args(["--tls-port", &tls.port().to_string()])
                .arg("--tls-cert-file")
                .arg(cert)
                .arg("--tls-key-file")
                .arg(key)
                .args(["--tls-auth-clients", "no"]);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log())
            .stderr(log())
            .spawn()
            .expect("spawn /usr/bin/redis-server (apt-get install redis-server)");
        self.child = Some(child);
    }

    /// Polls `PING` until Redis answers (see [`wait_for_child`]).
    fn wait_ready(&mut self) -> bool {
        let (addr, log_path) = (self.addr, self.dir.path().join("redis.log"));
        let password = self.options.password.clone();
        wait_for_child(
            &mut self.child,
            || ping(addr, password.as_deref()),
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

/// The reply in a raw RESP text (what [`RedisServer::command`] returns).
pub fn reply(raw: &str) -> Resp {
    match parse(raw.as_bytes()) {
        Ok(Some((r, _))) => r,
        other => panic!("not one RESP reply: {raw:?} ({other:?})"),
    }
}

/// Sends one command to the Redis (or sentinel) at `addr`, after `AUTH password` when given,
/// on a fresh connection; the raw RESP reply. Bounded by [`STEP`].
pub async fn command_at(
    addr: SocketAddr,
    password: Option<&str>,
    args: &[&str],
) -> Result<String, String> {
    let fut = async {
        let mut tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        // With a password, AUTH goes first; its reply is skipped.
        let mut request = Vec::new();
        if let Some(pw) = password {
            request.extend_from_slice(&encode(&["AUTH", pw]));
        }
        request.extend_from_slice(&encode(args));
        tcp.write_all(&request)
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut buf = Vec::new();
        loop {
            let skip = match (password, parse(&buf)?) {
                (Some(_), Some((Resp::Simple(ok), used))) if ok == "OK" => used,
                (Some(_), Some((other, _))) => return Err(format!("AUTH: {other:?}")),
                _ => 0,
            };
            if (password.is_none() || skip > 0)
                && let Some((_, used)) = parse(&buf[skip..])?
            {
                return Ok(String::from_utf8_lossy(&buf[skip..skip + used]).into_owned());
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

/// A Redis Sentinel (`redis-server --sentinel`) watching one master under a name, on a free
/// loopback port; killed on drop.
pub struct RedisSentinel {
    pub addr: SocketAddr,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl RedisSentinel {
    /// Starts a sentinel monitoring `master` as `name` (quorum 1, fast failure detection)
    /// and waits until it names the master.
    pub async fn start(master: &RedisServer, name: &str) -> RedisSentinel {
        let dir = tempfile::tempdir().expect("sentinel tempdir");
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let conf = dir.path().join("sentinel.conf");
        let mut text = format!(
            "port {}\nbind 127.0.0.1\ndir {}\nsentinel monitor {name} 127.0.0.1 {} 1\nsentinel down-after-milliseconds {name} 1000\nsentinel failover-timeout {name} 5000\n",
            addr.port(),
            dir.path().display(),
            master.addr.port()
        );
        if let Some(pw) = &master.options.password {
            text.push_str(&format!("sentinel auth-pass {name} {pw}\n"));
        }
        std::fs::write(&conf, text).expect("sentinel.conf");
        let log = File::create(dir.path().join("sentinel.log")).expect("sentinel.log");
        let child = Command::new("/usr/bin/redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn redis-server --sentinel");
        let sentinel = RedisSentinel {
            addr,
            child: Some(child),
            _dir: dir,
        };
        let until = std::time::Instant::now() + STEP;
        while std::time::Instant::now() < until {
            if sentinel.master(name).await.is_some() {
                return sentinel;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("sentinel on {addr} did not come up");
    }

    /// The master's port the sentinel names for `name`, if any.
    pub async fn master(&self, name: &str) -> Option<u16> {
        let reply = command_at(
            self.addr,
            None,
            &["SENTINEL", "get-master-addr-by-name", name],
        )
        .await
        .ok()?;
        let Ok(Some((Resp::Array(Some(items)), _))) = parse(reply.as_bytes()) else {
            return None;
        };
        match items.get(1) {
            Some(Resp::Bulk(Some(port))) => String::from_utf8_lossy(port).parse().ok(),
            _ => None,
        }
    }

    /// Forces a failover to a replica (`SENTINEL FAILOVER name`).
    pub async fn failover(&self, name: &str) -> String {
        command_at(self.addr, None, &["SENTINEL", "FAILOVER", name])
            .await
            .unwrap_or_else(|e| panic!("SENTINEL FAILOVER: {e}"))
    }
}

impl Drop for RedisSentinel {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether a blocking `PING` (after `AUTH`, with a password) answers `+PONG` (blocking, so
/// that start works without a runtime).
fn ping(addr: SocketAddr, password: Option<&str>) -> bool {
    let attempt = || -> Option<bool> {
        let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
        tcp.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
        tcp.set_write_timeout(Some(Duration::from_secs(1))).ok()?;
        if let Some(pw) = password {
            tcp.write_all(&encode(&["AUTH", pw])).ok()?;
            let mut ok = [0u8; 5];
            tcp.read_exact(&mut ok).ok()?;
            if &ok != b"+OK\r\n" {
                return Some(false);
            }
        }
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
pub enum Resp {
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
