//! The chart's Redis run on this machine: Debian's `redis-server` with the `redis.conf` of
//! ConfigMap `vouch-redis` and the `auth.conf` of Secret `vouch-redis`, as rendered. Only
//! what ties them to the pod changes: `port` (a free loopback port), `bind` (loopback),
//! `dir` (a temp dir standing in for the volume) and the `include` path of `auth.conf`;
//! every other line (AOF, fsync, eviction, the password) is the chart's. Killed and reaped
//! on drop.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::Rendered;

/// Every wait here is bounded by this.
const STEP: Duration = Duration::from_secs(10);
const START_ATTEMPTS: usize = 5;

/// One RESP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<String>),
    Array(Vec<Reply>),
}

pub struct ChartRedis {
    pub port: u16,
    /// The password of the rendered Secret `vouch-redis` (key `password`).
    pub password: String,
    child: Option<Child>,
    dir: tempfile::TempDir,
    template: String,
}

impl ChartRedis {
    /// Starts Redis with the rendered config (see the module doc) and waits until it
    /// answers an authenticated `PING`.
    pub fn start(rendered: &Rendered) -> ChartRedis {
        let conf = rendered.object("ConfigMap", "vouch-redis")["data"]["redis.conf"]
            .as_str()
            .expect("redis.conf in ConfigMap vouch-redis")
            .to_string();
        let password = rendered.secret("vouch-redis", "password");
        let auth = rendered.secret("vouch-redis", "auth.conf");
        let dir = tempfile::tempdir().expect("redis tempdir");
        std::fs::create_dir(dir.path().join("data")).expect("data dir");
        std::fs::write(dir.path().join("auth.conf"), auth).expect("auth.conf");
        let mut template = conf;
        for (from, to) in [
            ("bind * -::*", "bind 127.0.0.1".to_string()),
            (
                "dir /data",
                format!("dir {}", dir.path().join("data").display()),
            ),
            (
                "include /etc/redis/auth/auth.conf",
                format!("include {}", dir.path().join("auth.conf").display()),
            ),
            ("port 6379", "port {PORT}".to_string()),
        ] {
            template = replace_line(&template, from, &to);
        }
        let mut redis = ChartRedis {
            port: 0,
            password,
            child: None,
            dir,
            template,
        };
        for _ in 0..START_ATTEMPTS {
            redis.port = free_port();
            redis.spawn();
            if redis.wait_ready() {
                return redis;
            }
            // It exited: most likely another process took the port first.
            redis.stop();
        }
        panic!(
            "redis-server did not start in {START_ATTEMPTS} attempts:\n{}",
            redis.log()
        );
    }

    /// `redis://127.0.0.1:PORT/0`, the chart's database on this Redis.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// SIGKILL, as a crashed or evicted pod: nothing is flushed on the way out.
    pub fn kill(&mut self) {
        self.stop();
    }

    /// Starts Redis again on the same port and directory (the pod back on its volume).
    pub fn restart(&mut self) {
        self.stop();
        for _ in 0..START_ATTEMPTS {
            self.spawn();
            if self.wait_ready() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "redis-server did not restart on {}:\n{}",
            self.port,
            self.log()
        );
    }

    /// One command on a fresh connection, after `AUTH <password>` when `auth`.
    pub fn command(&self, args: &[&str], auth: bool) -> Reply {
        self.try_command(args, auth)
            .unwrap_or_else(|e| panic!("redis {args:?} on port {}: {e}", self.port))
    }

    pub fn try_command(&self, args: &[&str], auth: bool) -> Result<Reply, String> {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        let mut tcp = TcpStream::connect_timeout(&addr, STEP).map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(STEP))
            .map_err(|e| e.to_string())?;
        tcp.set_write_timeout(Some(STEP))
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        if auth {
            out.extend(encode(&["AUTH", &self.password]));
        }
        out.extend(encode(args));
        tcp.write_all(&out).map_err(|e| e.to_string())?;
        let mut reader = BufReader::new(tcp);
        if auth {
            let reply = read_reply(&mut reader)?;
            if reply != Reply::Simple("OK".into()) {
                return Err(format!("AUTH: {reply:?}"));
            }
        }
        read_reply(&mut reader)
    }

    /// `CONFIG GET name`: the value Redis runs with.
    pub fn config_get(&self, name: &str) -> String {
        match self.command(&["CONFIG", "GET", name], true) {
            Reply::Array(items) if items.len() == 2 => match &items[1] {
                Reply::Bulk(Some(v)) => v.clone(),
                other => panic!("CONFIG GET {name}: {other:?}"),
            },
            other => panic!("CONFIG GET {name}: {other:?}"),
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn spawn(&mut self) {
        let conf = self.dir.path().join("redis.conf");
        std::fs::write(
            &conf,
            self.template.replace("{PORT}", &self.port.to_string()),
        )
        .expect("write redis.conf");
        let log = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.path().join("redis.log"))
                .expect("redis.log")
        };
        let child = Command::new("/usr/bin/redis-server")
            .arg(&conf)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log())
            .stderr(log())
            .spawn()
            .expect("spawn /usr/bin/redis-server (apt-get install redis-server)");
        self.child = Some(child);
    }

    /// Polls an authenticated `PING` until `PONG` (a Redis replaying its AOF answers
    /// `LOADING`); false when the process exited first.
    fn wait_ready(&mut self) -> bool {
        let until = Instant::now() + STEP;
        while Instant::now() < until {
            let exited = self
                .child
                .as_mut()
                .is_none_or(|c| !matches!(c.try_wait(), Ok(None)));
            if exited {
                return false;
            }
            if self.try_command(&["PING"], true) == Ok(Reply::Simple("PONG".into())) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "redis-server on {} did not answer:\n{}",
            self.port,
            self.log()
        );
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

impl Drop for ChartRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `text` with the line `from` (exactly once, surrounding spaces ignored) replaced by `to`.
fn replace_line(text: &str, from: &str, to: &str) -> String {
    let hits = text.lines().filter(|l| l.trim() == from).count();
    assert_eq!(
        hits, 1,
        "the chart's redis.conf has {hits} `{from}` lines:\n{text}"
    );
    text.lines()
        .map(|l| if l.trim() == from { to } else { l })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}

fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn read_reply(r: &mut impl BufRead) -> Result<Reply, String> {
    let mut line = String::new();
    r.read_line(&mut line).map_err(|e| format!("read: {e}"))?;
    let line = line
        .strip_suffix("\r\n")
        .ok_or_else(|| format!("reply line without CRLF: {line:?}"))?;
    let (kind, rest) = line.split_at(1);
    let number = |s: &str| s.parse::<i64>().map_err(|e| format!("{s:?}: {e}"));
    Ok(match kind {
        "+" => Reply::Simple(rest.into()),
        "-" => Reply::Error(rest.into()),
        ":" => Reply::Integer(number(rest)?),
        "$" => match usize::try_from(number(rest)?) {
            Err(_) => Reply::Bulk(None),
            Ok(len) => {
                let mut buf = vec![0u8; len + 2];
                r.read_exact(&mut buf).map_err(|e| format!("read: {e}"))?;
                buf.truncate(len);
                Reply::Bulk(Some(String::from_utf8_lossy(&buf).into_owned()))
            }
        },
        "*" => {
            let n = number(rest)?.max(0);
            let mut items = Vec::new();
            for _ in 0..n {
                items.push(read_reply(r)?);
            }
            Reply::Array(items)
        }
        other => return Err(format!("unknown reply type {other:?}")),
    })
}
