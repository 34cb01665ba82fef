//! One ExternalData exchange: bounded body → distinct keys → engine fan-out under the
//! deadline → `ProviderResponse`.
//!
//! Every key runs in its own spawned task. The exchange waits for them until the deadline
//! and no longer; a task still running then is *not* cancelled — its result lands in the
//! caches (when there are some) so Gatekeeper's retry finds it — and its key is named in
//! `systemError`. Items of keys that did finish are returned beside it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use http_body_util::BodyExt;
use tokio::time::Instant;
use tracing::Instrument;

use crate::config::Limits;
use crate::engine::{Engine, Outcome};
use crate::metrics::{Endpoint, KeyOutcome, Metrics, RequestOutcome};
use crate::protocol::{
    Item, ProviderResponse, RequestError, SystemErrorClass, key_too_long, parse_request,
};

/// An endpoint's engine and its bounds.
pub(crate) struct Exchange {
    pub endpoint: Endpoint,
    pub engine: Arc<dyn Engine>,
    pub deadline: Duration,
    pub idempotent: bool,
    pub limits: Limits,
    pub metrics: Arc<Metrics>,
}

impl Exchange {
    /// Answers one request. Never fails: every problem becomes a `systemError` or an item.
    pub(crate) async fn answer<B>(&self, body: B, content_length: Option<u64>) -> ProviderResponse
    where
        B: http_body::Body<Data = Bytes> + Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let started = Instant::now();
        let deadline_at = started + self.deadline;
        let _in_flight = self.metrics.in_flight(self.endpoint);
        let response = match self.read_body(body, content_length, deadline_at).await {
            Ok(bytes) => match parse_request(&bytes, &self.limits.request()) {
                Ok(req) => self.fan_out(req.api_version, req.keys, deadline_at).await,
                Err(e) => self.refuse(e),
            },
            Err(e) => self.refuse(e),
        };
        let outcome = if response.response.system_error.is_empty() {
            RequestOutcome::Ok
        } else {
            RequestOutcome::SystemError
        };
        self.metrics
            .request_done(self.endpoint, outcome, started.elapsed().as_secs_f64());
        response
    }

    fn refuse(&self, e: RequestError) -> ProviderResponse {
        tracing::info!(error = %e, "request refused");
        ProviderResponse::system_error(self.idempotent, e.to_string())
    }

    /// The body, at most `limits.maxBodyBytes`, before the deadline. A body over the limit
    /// is still read to its end — and thrown away — up to `limits.maxDrainBytes`, so the
    /// client gets the refusal instead of a connection reset in the middle of its upload:
    /// the refusal is `request-invalid` and denies in both modes, but a reset is a
    /// transport failure, which fail-open admits. A declared length over the drain bound
    /// is refused without reading.
    async fn read_body<B>(
        &self,
        body: B,
        content_length: Option<u64>,
        deadline_at: Instant,
    ) -> Result<Bytes, RequestError>
    where
        B: http_body::Body<Data = Bytes> + Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let limit = self.limits.max_body_bytes;
        let drain = self.limits.max_drain_bytes.max(limit);
        if content_length.is_some_and(|n| n > drain as u64) {
            return Err(RequestError::BodyTooLarge { limit });
        }
        let read = async {
            let mut body = std::pin::pin!(body);
            let mut kept = Vec::new();
            let mut seen = 0usize;
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| RequestError::BodyRead(e.into().to_string()))?;
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                seen = seen.saturating_add(data.len());
                if seen > drain {
                    break;
                }
                if seen <= limit {
                    kept.extend_from_slice(&data);
                }
            }
            if seen > limit {
                return Err(RequestError::BodyTooLarge { limit });
            }
            Ok(Bytes::from(kept))
        };
        tokio::time::timeout_at(deadline_at, read)
            .await
            .unwrap_or(Err(RequestError::BodyTimeout(self.deadline.as_millis())))
    }

    async fn fan_out(
        &self,
        api_version: &str,
        keys: Vec<String>,
        deadline_at: Instant,
    ) -> ProviderResponse {
        // Keys with an outcome at hand (over-long keys, cached verdicts) are answered
        // without a task.
        let mut outcomes: Vec<Option<Outcome>> = keys
            .iter()
            .map(|k| match key_too_long(k, &self.limits.request()) {
                Some(why) => Some(self.engine.oversized(k, why)),
                None => self.engine.cached(k),
            })
            .collect();
        let mut pending: FuturesUnordered<_> = keys
            .iter()
            .enumerate()
            .filter(|(i, _)| outcomes[*i].is_none())
            .map(|(i, key)| {
                let engine = self.engine.clone();
                let key = key.clone();
                let task = tokio::spawn(
                    async move { engine.evaluate(&key).await }.instrument(tracing::Span::current()),
                );
                async move { (i, task.await) }
            })
            .collect();
        let gather = async {
            while let Some((i, joined)) = pending.next().await {
                outcomes[i] = Some(joined.unwrap_or_else(|e| {
                    tracing::error!(error = %e, "key evaluation task failed");
                    Outcome::Transient("internal error while evaluating the key".to_string())
                }));
            }
        };
        // On timeout the remaining tasks are detached, not aborted: JoinHandle drops detach.
        let _ = tokio::time::timeout_at(deadline_at, gather).await;
        self.assemble(api_version, keys, outcomes)
    }

    fn assemble(
        &self,
        api_version: &str,
        keys: Vec<String>,
        outcomes: Vec<Option<Outcome>>,
    ) -> ProviderResponse {
        let mut items = Vec::with_capacity(keys.len());
        let mut transient = Vec::new();
        let mut late = Vec::new();
        let (mut verdicts, mut errors) = (0, 0);
        for (key, outcome) in keys.into_iter().zip(outcomes) {
            match outcome {
                Some(Outcome::Value(value)) => {
                    verdicts += 1;
                    items.push(Item {
                        key,
                        value: Some(value),
                        error: None,
                    });
                }
                Some(Outcome::Error(e)) => {
                    errors += 1;
                    items.push(Item {
                        key,
                        value: None,
                        error: Some(e.to_string()),
                    });
                }
                Some(Outcome::Transient(why)) => transient.push(format!("{key:?}: {why}")),
                None => late.push(format!("{key:?}")),
            }
        }
        let m = &self.metrics;
        m.key_done(self.endpoint, KeyOutcome::Verdict, verdicts);
        m.key_done(self.endpoint, KeyOutcome::Error, errors);
        m.key_done(self.endpoint, KeyOutcome::Transient, transient.len() as u64);
        m.key_done(self.endpoint, KeyOutcome::Deadline, late.len() as u64);

        // Both parts are unavailability: the system-error template follows the failure
        // policy for them.
        let mut system = Vec::new();
        if !transient.is_empty() {
            system.push(format!(
                "transient failure for {} key(s), retry: {}",
                transient.len(),
                transient.join("; ")
            ));
        }
        if !late.is_empty() {
            system.push(format!(
                "deadline of {} ms reached before an outcome for {} key(s): {}",
                self.deadline.as_millis(),
                late.len(),
                late.join(", ")
            ));
        }
        let system_error = if system.is_empty() {
            String::new()
        } else {
            SystemErrorClass::Unavailable.message(system.join("; "))
        };
        if !system_error.is_empty() {
            tracing::info!(%system_error, "answered with a system error");
        }
        ProviderResponse::new(api_version, self.idempotent, items, system_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{ErrorCode, KeyError};
    use crate::protocol::Json;
    use futures_util::FutureExt;
    use futures_util::future::BoxFuture;
    use http_body_util::Full;

    /// Answers by key prefix: `v…` value, `e…` error, `t…` transient, `s…` sleeps 10 s,
    /// `p…` panics.
    struct ByPrefix;

    impl Engine for ByPrefix {
        fn evaluate<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Outcome> {
            async move {
                match key.chars().next() {
                    Some('v') => Outcome::Value(Json::new(key)),
                    Some('e') => Outcome::Error(KeyError::new(ErrorCode::Auth, "denied")),
                    Some('s') => {
                        tokio::time::sleep(Duration::from_secs(10)).await;
                        Outcome::Value(Json::new("late"))
                    }
                    Some('p') => panic!("engine bug"),
                    _ => Outcome::Transient("registry unreachable".into()),
                }
            }
            .boxed()
        }
    }

    fn exchange(deadline_ms: u64) -> Exchange {
        Exchange {
            endpoint: Endpoint::Verify,
            engine: Arc::new(ByPrefix),
            deadline: Duration::from_millis(deadline_ms),
            idempotent: true,
            limits: Limits::default(),
            metrics: Arc::new(Metrics::new()),
        }
    }

    fn request(keys: &[&str]) -> Full<Bytes> {
        let body = serde_json::json!({"apiVersion": crate::protocol::API_VERSION_V1BETA1,
            "kind": "ProviderRequest", "request": {"keys": keys}});
        Full::new(Bytes::from(body.to_string()))
    }

    #[tokio::test]
    async fn three_classes_land_where_they_belong() {
        let r = exchange(1000)
            .answer(request(&["v1", "e1", "t1", "v1"]), None)
            .await
            .response;
        assert_eq!(r.items.len(), 2);
        assert_eq!(r.items[0].key, "v1");
        assert_eq!(r.items[0].value, Some(Json::new("v1")));
        assert_eq!(r.items[1].error.as_deref(), Some("auth: denied"));
        assert!(
            r.system_error.contains("\"t1\": registry unreachable"),
            "{}",
            r.system_error
        );
    }

    #[tokio::test(start_paused = true)]
    async fn slow_keys_are_named_at_the_deadline_and_fast_ones_answered() {
        let started = Instant::now();
        let r = exchange(200)
            .answer(request(&["s1", "v1"]), None)
            .await
            .response;
        assert!(started.elapsed() < Duration::from_millis(250));
        assert_eq!(r.items.len(), 1);
        assert_eq!(r.items[0].key, "v1");
        assert!(
            r.system_error
                .starts_with("unavailable: deadline of 200 ms"),
            "{}",
            r.system_error
        );
        assert!(r.system_error.contains("\"s1\""), "{}", r.system_error);
    }

    #[tokio::test]
    async fn a_panicking_engine_is_a_transient_failure() {
        let r = exchange(1000)
            .answer(request(&["p1", "v1"]), None)
            .await
            .response;
        assert_eq!(r.items.len(), 1);
        assert!(
            r.system_error.contains("\"p1\": internal error"),
            "{}",
            r.system_error
        );
    }

    #[tokio::test]
    async fn declared_oversize_body_is_refused_before_reading() {
        let r = exchange(1000)
            .answer(request(&["v1"]), Some(10 * 1024 * 1024))
            .await
            .response;
        assert!(r.items.is_empty());
        assert_eq!(
            r.system_error,
            "request-invalid: request body exceeds limits.maxBodyBytes (1048576 bytes)"
        );
    }

    #[tokio::test]
    async fn an_oversized_body_is_read_to_its_end_before_the_refusal() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        // 3 MiB in 64 KiB frames, no declared length: over the 1 MiB limit, under the
        // 8 MiB drain bound.
        let read = Arc::new(AtomicUsize::new(0));
        let counted = read.clone();
        let frames = futures_util::stream::iter((0..48).map(move |_| {
            counted.fetch_add(64 * 1024, Ordering::Relaxed);
            Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from(vec![
                b' ';
                64 * 1024
            ])))
        }));
        let body = http_body_util::StreamBody::new(frames);
        let r = exchange(1000).answer(body, None).await.response;
        assert_eq!(
            r.system_error,
            "request-invalid: request body exceeds limits.maxBodyBytes (1048576 bytes)"
        );
        assert_eq!(read.load(Ordering::Relaxed), 3 * 1024 * 1024, "drained");
    }

    #[tokio::test]
    async fn an_over_long_key_is_answered_on_its_own() {
        let long = format!("v{}", "x".repeat(Limits::default().max_key_bytes));
        let r = exchange(1000)
            .answer(request(&[&long, "v1"]), None)
            .await
            .response;
        assert_eq!(r.system_error, "", "the request as a whole is answered");
        assert_eq!(r.items.len(), 2);
        assert_eq!(r.items[0].key, long, "the exact key, however long");
        assert_eq!(
            r.items[0].error.as_deref(),
            Some("invalid-reference: key is 2049 bytes, over limits.maxKeyBytes (2048)"),
            "never evaluated, although the engine would have answered a value"
        );
        assert_eq!(r.items[1].value, Some(Json::new("v1")));
    }

    #[tokio::test]
    async fn unavailability_is_one_class() {
        let r = exchange(1000)
            .answer(request(&["t1", "t2"]), None)
            .await
            .response;
        assert!(
            r.system_error
                .starts_with("unavailable: transient failure for 2 key(s)"),
            "{}",
            r.system_error
        );
        assert_eq!(r.system_error.matches("unavailable:").count(), 1);
    }
}
