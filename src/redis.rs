//! The Redis of a process: one connection, shared by the verdict tier and the claims store,
//! and one outage policy for both.
//!
//! Opening is lazy, so vouch starts (and stays ready) while Redis is down. Every call is
//! bounded by `redis.timeout`; a failure is counted (`vouch_redis_errors_total`), logged
//! once per outage (and once more when Redis is back), and after a failed connection
//! attempt no new one is made for [`RECONNECT_SPACING`], so an outage costs each request
//! one fast refusal rather than a connect timeout. What a failure means is the caller's
//! business: the verdict tier carries on without Redis, the claims store answers
//! `systemError`.
//!
//! The connection is built from `redis.url` (`rediss://` is TLS through rustls, with
//! `redis.caFile` as the only trusted root when given), an ACL user and a password read from
//! `redis.passwordFile` at every (re)connection and never logged, or — with
//! `redis.sentinel` — the master the sentinels name, asked again after a connection error
//! or a `READONLY` reply (a failover). When a connection opens, the offset between Redis'
//! clock and ours is measured, so callers can hand Redis deadlines in its own clock
//! ([`Redis::run_before_deadline`]).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ConnectionAddr, IntoConnectionInfo};

use crate::config::RedisSettings;
use crate::metrics::Metrics;

/// After a failed connection attempt, how long no new one is made.
pub(crate) const RECONNECT_SPACING: Duration = Duration::from_secs(1);

/// With sentinels: how often they are asked again whether the master moved. A demoted
/// master keeps accepting writes until the sentinels reconfigure it, which can take many
/// seconds; asking them is how writes follow a failover promptly.
pub(crate) const SENTINEL_RECHECK: Duration = Duration::from_secs(2);

/// Why a Redis call did not succeed. Its text is safe to log and to show (no credentials).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedisError {
    #[error("redis is unavailable (a connection attempt failed moments ago)")]
    Reconnecting,
    #[error("cannot connect to redis: {0}")]
    Connect(String),
    #[error("redis {0} timed out")]
    Timeout(&'static str),
    #[error("redis {what} failed: {why}")]
    Call { what: &'static str, why: String },
}

/// An open connection and what was measured when it opened.
#[derive(Clone)]
struct Open {
    manager: ConnectionManager,
    /// Redis' clock minus ours, in milliseconds.
    clock_offset_ms: i64,
    /// How far off that offset may be: half the round trip it was measured in, plus one.
    clock_uncertainty_ms: i64,
    /// With sentinels: the master connected to.
    master: Option<(String, u16)>,
}

/// The state of the outage policy.
#[derive(Default)]
struct Outage {
    /// When the current outage began (its first failure); `None` while Redis answers.
    since: Option<Instant>,
    /// When the last connection attempt failed.
    connect_failed: Option<Instant>,
}

/// The process's Redis.
pub struct Redis {
    settings: RedisSettings,
    conn: tokio::sync::Mutex<Option<Open>>,
    outage: Mutex<Outage>,
    /// With sentinels: when they were last asked where the master is.
    sentinels_asked: Mutex<Option<Instant>>,
    metrics: Arc<Metrics>,
}

impl Redis {
    /// `None` when no Redis is configured.
    pub fn new(settings: RedisSettings, metrics: Arc<Metrics>) -> Option<Arc<Redis>> {
        settings.enabled().then(|| {
            Arc::new(Redis {
                settings,
                conn: tokio::sync::Mutex::new(None),
                outage: Mutex::new(Outage::default()),
                sentinels_asked: Mutex::new(None),
                metrics,
            })
        })
    }

    /// Budget of one call.
    pub fn timeout(&self) -> Duration {
        self.settings.timeout
    }

    /// Runs one call on the connection (opening it if needed), bounded by the timeout.
    pub async fn run<T, F, Fut>(
        self: &Arc<Self>,
        what: &'static str,
        call: F,
    ) -> Result<T, RedisError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let open = self.open().await?;
        self.recheck_sentinels_when_due(&open);
        match tokio::time::timeout(self.timeout(), call(open.manager)).await {
            Ok(Ok(v)) => {
                self.recovered();
                Ok(v)
            }
            Ok(Err(e)) => {
                if e.is_io_error()
                    || e.is_connection_dropped()
                    || e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
                {
                    // A new connection (and, with sentinels, a new master) next time.
                    *self.conn.lock().await = None;
                }
                Err(self.failed(RedisError::Call {
                    what,
                    why: e.to_string(),
                }))
            }
            Err(_) => Err(self.failed(RedisError::Timeout(what))),
        }
    }

    /// `SET key bytes PX ttl` (nothing for a zero `ttl`).
    pub async fn set_px(
        self: &Arc<Self>,
        key: &str,
        bytes: Vec<u8>,
        ttl: Duration,
    ) -> Result<(), RedisError> {
        let ms = ttl.as_millis() as u64;
        if ms == 0 {
            return Ok(());
        }
        self.run("SET", |mut c| async move {
            redis::cmd("SET")
                .arg(key)
                .arg(bytes)
                .arg("PX")
                .arg(ms)
                .query_async::<()>(&mut c)
                .await
        })
        .await
    }

    /// Like [`Redis::run`], and `call` also gets the moment, in Redis' own clock (Unix
    /// milliseconds), after which this caller has given up: a script that runs later —
    /// Redis was paused and resumed, the command sat in a buffer — can refuse to write
    /// what nobody will be told about. It errs early, never late: the clock offset's
    /// uncertainty is taken off.
    pub async fn run_before_deadline<T, F, Fut>(
        self: &Arc<Self>,
        what: &'static str,
        call: F,
    ) -> Result<T, RedisError>
    where
        F: FnOnce(ConnectionManager, i64) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let open = self.open().await?;
        let deadline =
            unix_ms(SystemTime::now()) + open.clock_offset_ms + self.timeout().as_millis() as i64
                - open.clock_uncertainty_ms;
        self.run(what, |c| call(c, deadline)).await
    }

    /// With sentinels, at most every [`SENTINEL_RECHECK`]: asks them in the background
    /// whether the master moved, and drops the connection if it did.
    fn recheck_sentinels_when_due(self: &Arc<Self>, open: &Open) {
        let Some(connected) = open.master.clone() else {
            return;
        };
        let due = self.sentinels_asked.lock().is_ok_and(|mut asked| {
            let due = asked.is_none_or(|t| t.elapsed() >= SENTINEL_RECHECK);
            if due {
                *asked = Some(Instant::now());
            }
            due
        });
        if !due {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            if let Ok(master) = this.master_from_sentinels().await
                && master != connected
            {
                tracing::info!(
                    from = format!("{}:{}", connected.0, connected.1),
                    to = format!("{}:{}", master.0, master.1),
                    "redis master moved; reconnecting"
                );
                let mut guard = this.conn.lock().await;
                if guard.as_ref().and_then(|o| o.master.as_ref()) == Some(&connected) {
                    *guard = None;
                }
            }
        });
    }

    /// The open connection, or a new one unless an attempt failed within
    /// [`RECONNECT_SPACING`].
    async fn open(&self) -> Result<Open, RedisError> {
        let mut guard = self.conn.lock().await;
        if let Some(open) = guard.as_ref() {
            return Ok(open.clone());
        }
        let recently = self
            .outage
            .lock()
            .ok()
            .and_then(|o| o.connect_failed)
            .is_some_and(|t| t.elapsed() < RECONNECT_SPACING);
        if recently {
            return Err(RedisError::Reconnecting);
        }
        // Connecting (sentinel lookup, TLS, AUTH, the clock) gets twice the call budget.
        match tokio::time::timeout(self.timeout() * 2, self.connect()).await {
            Ok(Ok(open)) => {
                *guard = Some(open.clone());
                Ok(open)
            }
            Ok(Err(e)) => Err(self.connect_failed(e)),
            Err(_) => Err(self.connect_failed(RedisError::Connect("timed out".into()))),
        }
    }

    async fn connect(&self) -> Result<Open, RedisError> {
        let connect = |e: redis::RedisError| RedisError::Connect(e.to_string());
        let mut info = if self.settings.url.is_empty() {
            "redis://127.0.0.1/".into_connection_info()
        } else {
            self.settings.url.as_str().into_connection_info()
        }
        .map_err(connect)?;
        let mut master = None;
        if !self.settings.sentinel.addresses.is_empty() {
            let (host, port) = self.master_from_sentinels().await?;
            master = Some((host.clone(), port));
            if let Ok(mut asked) = self.sentinels_asked.lock() {
                *asked = Some(Instant::now());
            }
            let addr = match info.addr() {
                ConnectionAddr::TcpTls { .. } => ConnectionAddr::TcpTls {
                    host,
                    port,
                    insecure: false,
                    tls_params: None,
                },
                _ => ConnectionAddr::Tcp(host, port),
            };
            info = info.set_addr(addr);
        }
        let mut redis_info = info.redis_settings().clone();
        if !self.settings.username.is_empty() {
            redis_info = redis_info.set_username(&self.settings.username);
        }
        if let Some(path) = &self.settings.password_file {
            let password = std::fs::read_to_string(path)
                .map_err(|e| RedisError::Connect(format!("cannot read {}: {e}", path.display())))?;
            redis_info = redis_info.set_password(password.trim_end_matches(['\r', '\n']));
        }
        info = info.set_redis_settings(redis_info);
        let client = match (&self.settings.ca_file, info.addr()) {
            (Some(ca), ConnectionAddr::TcpTls { .. }) => {
                let pem = std::fs::read(ca).map_err(|e| {
                    RedisError::Connect(format!("cannot read {}: {e}", ca.display()))
                })?;
                redis::Client::build_with_tls(
                    info,
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(pem),
                    },
                )
            }
            _ => redis::Client::open(info),
        }
        .map_err(connect)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout()))
            .set_response_timeout(Some(self.timeout()))
            .set_number_of_retries(1);
        let mut manager = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(connect)?;
        // Redis' clock against ours, from the middle of one round trip.
        let before = unix_ms(SystemTime::now());
        let (secs, micros): (i64, i64) = redis::cmd("TIME")
            .query_async(&mut manager)
            .await
            .map_err(connect)?;
        let after = unix_ms(SystemTime::now());
        let redis_ms = secs * 1000 + micros / 1000;
        Ok(Open {
            manager,
            clock_offset_ms: redis_ms - (before + after) / 2,
            clock_uncertainty_ms: (after - before) / 2 + 1,
            master,
        })
    }

    /// Asks each sentinel in turn for the master's address.
    async fn master_from_sentinels(&self) -> Result<(String, u16), RedisError> {
        let sentinel = &self.settings.sentinel;
        let mut last = String::from("no sentinel answered");
        for address in &sentinel.addresses {
            let asked = async {
                let client = redis::Client::open(format!("redis://{address}/"))?;
                let mut conn = client.get_multiplexed_async_connection().await?;
                redis::cmd("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg(&sentinel.master_name)
                    .query_async::<Option<(String, u16)>>(&mut conn)
                    .await
            };
            match tokio::time::timeout(self.timeout(), asked).await {
                Ok(Ok(Some(master))) => return Ok(master),
                Ok(Ok(None)) => {
                    last = format!(
                        "sentinel {address} knows no master named {:?}",
                        sentinel.master_name
                    )
                }
                Ok(Err(e)) => last = format!("sentinel {address}: {e}"),
                Err(_) => last = format!("sentinel {address} timed out"),
            }
        }
        Err(RedisError::Connect(last))
    }

    fn connect_failed(&self, e: RedisError) -> RedisError {
        if let Ok(mut o) = self.outage.lock() {
            o.connect_failed = Some(Instant::now());
        }
        self.failed(e)
    }

    /// Counts a failure and logs it once per outage.
    fn failed(&self, e: RedisError) -> RedisError {
        self.metrics.redis_error();
        let first = self
            .outage
            .lock()
            .map(|mut o| {
                let first = o.since.is_none();
                o.since.get_or_insert_with(Instant::now);
                first
            })
            .unwrap_or(false);
        if first {
            tracing::warn!(error = %e, "redis failed; the verdict tier carries on without it and claims answer a system error until it is back");
        } else {
            tracing::debug!(error = %e, "redis failed");
        }
        e
    }

    fn recovered(&self) {
        if let Ok(mut o) = self.outage.lock()
            && let Some(since) = o.since.take()
        {
            o.connect_failed = None;
            tracing::info!(
                outage_ms = since.elapsed().as_millis() as u64,
                "redis reachable again"
            );
        }
    }
}

/// Unix milliseconds of `t`.
pub(crate) fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
