//! `/v1/claims`: an atomic first-come register that closes Gatekeeper's replication race
//! (SPEC §5).
//!
//! A key is a JSON object serialized as a string: `scope`, `value`, `owner`, `mode`
//! (`claim` or `check`) and `nonce` (the admission request uid, so Gatekeeper's response
//! cache can never replay an old grant; otherwise ignored). `claim` atomically grants an
//! unheld or expired (scope, value) to `owner` for `claims.ttl`, renews it for the same
//! owner, and refuses it — naming the holder — to anyone else. `check` answers the same
//! question without writing (dry runs, audit). Stores: `memory` (one replica) and `redis`
//! (replicas; one Lua script does check-and-set atomically). A store that cannot be reached
//! is a transient failure (`systemError`), which the uniqueness template treats by its
//! `allowOnSystemError` (the failure policy).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::engine::{Engine, ErrorCode, KeyError, Outcome};
use crate::metrics::{ClaimOutcome, Metrics};
use crate::protocol::Json;
use crate::redis::{Redis, RedisError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Mode {
    Claim,
    Check,
}

/// A claim key, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClaimKey {
    pub scope: String,
    pub value: String,
    pub owner: String,
    pub mode: Mode,
    #[serde(default)]
    pub nonce: String,
}

impl ClaimKey {
    /// Parses a claim key (SPEC §5).
    pub(crate) fn parse(key: &str) -> Result<ClaimKey, ClaimKeyError> {
        let k: ClaimKey =
            serde_json::from_str(key).map_err(|e| ClaimKeyError::NotAClaim(e.to_string()))?;
        for (name, v) in [
            ("scope", &k.scope),
            ("value", &k.value),
            ("owner", &k.owner),
        ] {
            if v.is_empty() {
                return Err(ClaimKeyError::Empty(name));
            }
        }
        Ok(k)
    }
}

/// Why a key is not a claim key: the text of the per-key `invalid-claim:` error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ClaimKeyError {
    #[error("not a claim key: {0}")]
    NotAClaim(String),
    #[error("{0} must not be empty")]
    Empty(&'static str),
}

/// Why a store could not decide a claim: a transient failure (`systemError`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("claim store poisoned")]
    Poisoned,
    #[error(transparent)]
    Redis(#[from] RedisError),
    #[error("claim store answered after the caller's deadline; nothing was written")]
    TooLate,
}

impl ClaimKey {}

/// The value of a claim key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ClaimResult {
    pub granted: bool,
    /// Who holds the value now (empty when a check finds it unheld).
    pub holder: String,
    #[serde(rename = "expiresInSeconds")]
    pub expires_in_seconds: u64,
}

/// Where claims live.
pub(crate) trait ClaimStore: Send + Sync + 'static {
    /// Claims (or, for `check`, inspects) `(scope, value)` for `owner`.
    fn decide<'a>(
        &'a self,
        key: &'a ClaimKey,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<ClaimResult, StoreError>>;
}

fn seconds(d: Duration) -> u64 {
    d.as_millis().div_ceil(1000) as u64
}

/// Claims in this process: one replica only.
#[derive(Default)]
pub(crate) struct MemoryStore {
    held: Mutex<HashMap<(String, String), (String, Instant)>>,
}

impl MemoryStore {
    fn decide_now(&self, key: &ClaimKey, ttl: Duration) -> Result<ClaimResult, StoreError> {
        let mut held = self.held.lock().map_err(|_| StoreError::Poisoned)?;
        let now = Instant::now();
        // Expired claims are dropped when the map has grown, not by a background sweep.
        if held.len() > 1024 && held.len().is_power_of_two() {
            held.retain(|_, (_, until)| *until > now);
        }
        let id = (key.scope.clone(), key.value.clone());
        let current = held.get(&id).filter(|(_, until)| *until > now).cloned();
        Ok(match (current, key.mode) {
            (Some((holder, until)), _) if holder != key.owner => ClaimResult {
                granted: false,
                holder,
                expires_in_seconds: seconds(until - now),
            },
            (_, Mode::Claim) => {
                held.insert(id, (key.owner.clone(), now + ttl));
                ClaimResult {
                    granted: true,
                    holder: key.owner.clone(),
                    expires_in_seconds: seconds(ttl),
                }
            }
            (Some((holder, until)), Mode::Check) => ClaimResult {
                granted: true,
                holder,
                expires_in_seconds: seconds(until - now),
            },
            (None, Mode::Check) => ClaimResult {
                granted: true,
                holder: String::new(),
                expires_in_seconds: 0,
            },
        })
    }
}

impl ClaimStore for MemoryStore {
    fn decide<'a>(
        &'a self,
        key: &'a ClaimKey,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<ClaimResult, StoreError>> {
        let r = self.decide_now(key, ttl);
        async move { r }.boxed()
    }
}

/// Claims in Redis, shared by replicas. One script reads the holder and, for a claim by
/// nobody else, sets it with the TTL — atomically, so two replicas cannot both grant. The
/// caller passes the moment it gives up, in Redis' clock; a script that runs later (Redis
/// was paused, the command was queued) writes nothing, so a claim answered with a
/// `systemError` can never take effect afterwards.
pub(crate) struct RedisStore {
    redis: Arc<Redis>,
    script: redis::Script,
}

const CLAIM_SCRIPT: &str = r#"
local t = redis.call('TIME')
if tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) > tonumber(ARGV[4]) then
  return {-1, '', 0}
end
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then
  return {0, cur, redis.call('PTTL', KEYS[1])}
end
if ARGV[3] == 'claim' then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {1, ARGV[1], tonumber(ARGV[2])}
end
if not cur then
  return {1, '', 0}
end
return {1, cur, redis.call('PTTL', KEYS[1])}
"#;

impl RedisStore {
    pub(crate) fn new(redis: Arc<Redis>) -> RedisStore {
        RedisStore {
            redis,
            script: redis::Script::new(CLAIM_SCRIPT),
        }
    }

    /// `vouch:claim:v1:<sha256(scope, value)>`: fixed length whatever the key contains.
    fn redis_key(key: &ClaimKey) -> String {
        let id = crate::digest::sha256_digest(format!("{}\n{}", key.scope, key.value).as_bytes());
        format!("vouch:claim:v1:{}", &id[7..])
    }
}

impl ClaimStore for RedisStore {
    fn decide<'a>(
        &'a self,
        key: &'a ClaimKey,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<ClaimResult, StoreError>> {
        async move {
            let mode = match key.mode {
                Mode::Claim => "claim",
                Mode::Check => "check",
            };
            let redis_key = RedisStore::redis_key(key);
            let ttl_ms = ttl.as_millis() as u64;
            let (granted, holder, pttl) = self
                .redis
                .run_before_deadline("claim", |mut conn, deadline| async move {
                    let mut invocation = self.script.key(redis_key);
                    invocation
                        .arg(&key.owner)
                        .arg(ttl_ms)
                        .arg(mode)
                        .arg(deadline);
                    invocation
                        .invoke_async::<(i64, String, i64)>(&mut conn)
                        .await
                })
                .await?;
            if granted < 0 {
                return Err(StoreError::TooLate);
            }
            Ok(ClaimResult {
                granted: granted == 1,
                holder,
                expires_in_seconds: seconds(Duration::from_millis(pttl.max(0) as u64)),
            })
        }
        .boxed()
    }
}

/// The `/v1/claims` engine.
pub(crate) struct ClaimsEngine {
    pub store: Arc<dyn ClaimStore>,
    pub ttl: Duration,
    /// Claims granted and refused are counted (`vouch_claims_total`).
    pub metrics: Arc<Metrics>,
}

impl Engine for ClaimsEngine {
    fn evaluate<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Outcome> {
        async move {
            let claim = match ClaimKey::parse(key) {
                Ok(c) => c,
                Err(why) => {
                    return Outcome::Error(KeyError::new(ErrorCode::InvalidClaim, why.to_string()));
                }
            };
            match self.store.decide(&claim, self.ttl).await {
                Ok(result) => {
                    if claim.mode == Mode::Claim {
                        self.metrics.claim(if result.granted {
                            ClaimOutcome::Granted
                        } else {
                            ClaimOutcome::Refused
                        });
                    }
                    Outcome::Value(Json::new(&result))
                }
                Err(why) => Outcome::Transient(format!("claim store unreachable: {why}")),
            }
        }
        .boxed()
    }

    fn oversized(&self, _key: &str, why: String) -> Outcome {
        Outcome::Error(KeyError::new(ErrorCode::InvalidClaim, why))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(owner: &str, mode: &str) -> ClaimKey {
        ClaimKey::parse(&format!(
            r#"{{"scope":"service-selector/default","value":"app=web","owner":"{owner}","mode":"{mode}","nonce":"u1"}}"#
        ))
        .expect("valid key")
    }

    #[test]
    fn first_come_renew_refuse_and_check() {
        let s = MemoryStore::default();
        let ttl = Duration::from_secs(60);
        let check = s
            .decide_now(&key("default/web-0", "check"), ttl)
            .expect("ok");
        assert_eq!(
            check,
            ClaimResult {
                granted: true,
                holder: String::new(),
                expires_in_seconds: 0
            }
        );
        let first = s
            .decide_now(&key("default/web-0", "claim"), ttl)
            .expect("ok");
        assert_eq!(
            first,
            ClaimResult {
                granted: true,
                holder: "default/web-0".into(),
                expires_in_seconds: 60
            }
        );
        let other = s
            .decide_now(&key("default/web-1", "claim"), ttl)
            .expect("ok");
        assert!(!other.granted);
        assert_eq!(other.holder, "default/web-0");
        assert!(
            s.decide_now(&key("default/web-0", "claim"), ttl)
                .expect("ok")
                .granted,
            "renewed"
        );
        let other_check = s
            .decide_now(&key("default/web-1", "check"), ttl)
            .expect("ok");
        assert!(!other_check.granted);
    }

    #[test]
    fn expired_claims_go_to_the_next_owner() {
        let s = MemoryStore::default();
        s.decide_now(&key("a", "claim"), Duration::from_millis(1))
            .expect("ok");
        std::thread::sleep(Duration::from_millis(5));
        assert!(
            s.decide_now(&key("b", "claim"), Duration::from_secs(1))
                .expect("ok")
                .granted
        );
    }

    #[test]
    fn malformed_keys_are_refused() {
        assert!(ClaimKey::parse("nope").is_err());
        assert!(
            ClaimKey::parse(r#"{"scope":"s","value":"v","owner":"o","mode":"steal"}"#).is_err()
        );
        assert!(ClaimKey::parse(r#"{"scope":"s","value":"v","owner":"","mode":"claim"}"#).is_err());
        assert!(
            ClaimKey::parse(r#"{"scope":"s","value":"v","owner":"o","mode":"claim","x":1}"#)
                .is_err()
        );
        assert!(
            ClaimKey::parse(r#"{"scope":"s","value":"v","owner":"o","mode":"check"}"#).is_ok(),
            "nonce optional"
        );
    }
}
