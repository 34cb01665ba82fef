//! Gatekeeper's ExternalData wire types and the pure request checks of SPEC §1.
//!
//! Nothing here does I/O: [`parse_request`] turns a body into the distinct keys (or a
//! [`RequestError`] whose text becomes `systemError`), and [`ProviderResponse`] is what
//! goes back, always with HTTP 200.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

pub(crate) const API_VERSION_V1BETA1: &str = "externaldata.gatekeeper.sh/v1beta1";
/// Sent by Gatekeeper up to v3.10.
pub(crate) const API_VERSION_V1ALPHA1: &str = "externaldata.gatekeeper.sh/v1alpha1";
pub(crate) const KIND_REQUEST: &str = "ProviderRequest";
pub(crate) const KIND_RESPONSE: &str = "ProviderResponse";

/// A request as Gatekeeper sends it. Unknown fields are ignored for forward compatibility.
#[derive(Debug, Deserialize)]
pub(crate) struct ProviderRequest {
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub kind: String,
    pub request: RequestBody,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RequestBody {
    /// Absent (or null) when Gatekeeper has nothing to ask.
    #[serde(default)]
    pub keys: Option<Vec<String>>,
}

/// The response envelope.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct ProviderResponse {
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub kind: String,
    pub response: ResponseBody,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct ResponseBody {
    pub idempotent: bool,
    pub items: Vec<Item>,
    #[serde(rename = "systemError", default)]
    pub system_error: String,
}

/// A JSON value rendered once and shared: a cached verdict is copied into every response
/// that carries it as bytes, not rebuilt as a tree each time.
#[derive(Debug, Clone)]
pub struct Json(Arc<RawValue>);

impl Json {
    /// Renders `value`; a value of plain structs and strings always serializes.
    pub fn new<T: Serialize + ?Sized>(value: &T) -> Json {
        let raw = serde_json::value::to_raw_value(value).unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot render a value as JSON");
            serde_json::value::to_raw_value("internal error: unrenderable value")
                .unwrap_or_else(|_| RawValue::NULL.to_owned())
        });
        Json(Arc::from(raw))
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// Parses the JSON back into a type (command line, tests).
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.get())
    }
}

impl PartialEq for Json {
    fn eq(&self, other: &Json) -> bool {
        self.get() == other.get()
    }
}

impl Serialize for Json {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Json, D::Error> {
        Box::<RawValue>::deserialize(d).map(|b| Json(Arc::from(b)))
    }
}

/// One key's outcome: a `value` (a verdict) or an `error`, never both.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Item {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Json>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ProviderResponse {
    /// A response with items and an optional system error, in the request's apiVersion.
    pub(crate) fn new(
        api_version: &str,
        idempotent: bool,
        items: Vec<Item>,
        system_error: String,
    ) -> Self {
        ProviderResponse {
            api_version: api_version.to_string(),
            kind: KIND_RESPONSE.to_string(),
            response: ResponseBody {
                idempotent,
                items,
                system_error,
            },
        }
    }

    /// A whole-request failure: no items, `systemError` set.
    pub(crate) fn system_error(idempotent: bool, message: impl Into<String>) -> Self {
        ProviderResponse::new(API_VERSION_V1BETA1, idempotent, Vec::new(), message.into())
    }
}

/// A valid request: its apiVersion (echoed in the response) and its distinct keys in the
/// order they first appeared.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ParsedRequest {
    pub api_version: &'static str,
    pub keys: Vec<String>,
}

/// The class a `systemError` text starts with, so a template can tell what the request
/// itself decided from what an outage caused (SPEC §1, extended in docs/CONFIG.md).
///
/// Fail-open is for availability only: the shipped system-error template follows the
/// failure policy for [`SystemErrorClass::Unavailable`] (and for Gatekeeper's own transport
/// errors, which carry no class), while the verification template denies
/// [`SystemErrorClass::RequestInvalid`] in both modes — a pod author who makes the request
/// too big must not turn a denial into a warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SystemErrorClass {
    /// The request as sent cannot be answered: over a limit, malformed. A retry gets the
    /// same answer.
    RequestInvalid,
    /// vouch or something it depends on is unavailable (registry down, deadline reached,
    /// Redis unreachable). A retry may succeed; Gatekeeper never caches it.
    Unavailable,
}

impl SystemErrorClass {
    /// The prefix, without the `": "` that follows it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SystemErrorClass::RequestInvalid => "request-invalid",
            SystemErrorClass::Unavailable => "unavailable",
        }
    }

    /// `message` as a `systemError` text of this class.
    pub(crate) fn message(self, message: impl fmt::Display) -> String {
        format!("{}: {message}", self.as_str())
    }
}

/// Why a request was refused as a whole. The `Display` text is the `systemError`, its class
/// prefix included.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RequestError {
    #[error("request-invalid: request body is empty; expected a ProviderRequest JSON object")]
    EmptyBody,
    #[error("request-invalid: request body exceeds limits.maxBodyBytes ({limit} bytes)")]
    BodyTooLarge { limit: usize },
    #[error("request-invalid: request body is not a valid ProviderRequest: {0}")]
    Malformed(String),
    #[error(
        "request-invalid: unsupported apiVersion {0:?}; expected {API_VERSION_V1BETA1} or {API_VERSION_V1ALPHA1}"
    )]
    ApiVersion(String),
    #[error("request-invalid: unsupported kind {0:?}; expected {KIND_REQUEST}")]
    Kind(String),
    #[error("request-invalid: request has {count} keys, over limits.maxKeys ({limit})")]
    TooManyKeys { count: usize, limit: usize },
    #[error("unavailable: request body was not received before the deadline ({0} ms)")]
    BodyTimeout(u128),
    #[error("unavailable: request body could not be read: {0}")]
    BodyRead(String),
}

impl RequestError {
    /// Who caused it: the request (denied in both modes) or the transport.
    pub(crate) fn class(&self) -> SystemErrorClass {
        match self {
            RequestError::BodyTimeout(_) | RequestError::BodyRead(_) => {
                SystemErrorClass::Unavailable
            }
            _ => SystemErrorClass::RequestInvalid,
        }
    }
}

/// The request bounds of SPEC §1 (`limits.maxBodyBytes`, `maxKeys`, `maxKeyBytes`), as the
/// config gives them (`config::Limits::request`); a type of its own so that this leaf
/// module needs nothing from the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RequestLimits {
    pub max_body_bytes: usize,
    pub max_keys: usize,
    pub max_key_bytes: usize,
}

/// Whether `key` is over `limits.maxKeyBytes`. Such a key is not a reason to refuse the
/// request: it is answered on its own (a failed verdict or a per-key error, by endpoint),
/// because a pod author writes keys and must not be able to turn a denial into a warning.
pub(crate) fn key_too_long(key: &str, limits: &RequestLimits) -> Option<String> {
    (key.len() > limits.max_key_bytes).then(|| {
        format!(
            "key is {} bytes, over limits.maxKeyBytes ({})",
            key.len(),
            limits.max_key_bytes
        )
    })
}

/// Validates a body against SPEC §1 and the configured limits; returns the distinct keys.
pub(crate) fn parse_request(
    body: &[u8],
    limits: &RequestLimits,
) -> Result<ParsedRequest, RequestError> {
    if body.len() > limits.max_body_bytes {
        return Err(RequestError::BodyTooLarge {
            limit: limits.max_body_bytes,
        });
    }
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => return Err(RequestError::EmptyBody),
        Some(b'{') => {}
        Some(_) => {
            return Err(RequestError::Malformed(
                "expected a JSON object".to_string(),
            ));
        }
    }
    let req: ProviderRequest =
        serde_json::from_slice(body).map_err(|e| RequestError::Malformed(e.to_string()))?;
    let api_version = match req.api_version.as_str() {
        API_VERSION_V1BETA1 => API_VERSION_V1BETA1,
        API_VERSION_V1ALPHA1 => API_VERSION_V1ALPHA1,
        other => return Err(RequestError::ApiVersion(other.to_string())),
    };
    if req.kind != KIND_REQUEST {
        return Err(RequestError::Kind(req.kind));
    }
    let keys = req.request.keys.unwrap_or_default();
    if keys.len() > limits.max_keys {
        return Err(RequestError::TooManyKeys {
            count: keys.len(),
            limit: limits.max_keys,
        });
    }
    Ok(ParsedRequest {
        api_version,
        keys: distinct_in_order(keys),
    })
}

/// Gatekeeper may send a key twice; each is answered once, where it first appeared.
fn distinct_in_order(keys: Vec<String>) -> Vec<String> {
    let mut seen = HashSet::with_capacity(keys.len());
    keys.into_iter()
        .filter(|k| seen.insert(k.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> RequestLimits {
        RequestLimits {
            max_body_bytes: 4096,
            max_keys: 3,
            max_key_bytes: 10,
        }
    }

    fn body(api: &str, kind: &str, keys: &str) -> Vec<u8> {
        format!(r#"{{"apiVersion":"{api}","kind":"{kind}","request":{{"keys":{keys}}}}}"#)
            .into_bytes()
    }

    #[test]
    fn both_api_versions_are_accepted_and_echoed() {
        for api in [API_VERSION_V1BETA1, API_VERSION_V1ALPHA1] {
            let r = parse_request(&body(api, KIND_REQUEST, r#"["a"]"#), &limits()).expect("ok");
            assert_eq!(r.api_version, api);
            assert_eq!(r.keys, vec!["a"]);
        }
    }

    #[test]
    fn missing_or_null_keys_mean_no_keys() {
        let r = parse_request(
            br#"{"apiVersion":"externaldata.gatekeeper.sh/v1beta1","kind":"ProviderRequest","request":{}}"#,
            &limits(),
        )
        .expect("ok");
        assert!(r.keys.is_empty());
        let r =
            parse_request(&body(API_VERSION_V1BETA1, KIND_REQUEST, "null"), &limits()).expect("ok");
        assert!(r.keys.is_empty());
    }

    #[test]
    fn duplicates_are_answered_once_in_first_order() {
        let r = parse_request(
            &body(API_VERSION_V1BETA1, KIND_REQUEST, r#"["b","a","b"]"#),
            &limits(),
        )
        .expect("ok");
        assert_eq!(r.keys, vec!["b", "a"]);
    }

    #[test]
    fn limits_hold_at_the_bound_and_fail_just_over() {
        let l = limits();
        assert!(
            parse_request(
                &body(API_VERSION_V1BETA1, KIND_REQUEST, r#"["a","b","c"]"#),
                &l
            )
            .is_ok()
        );
        assert_eq!(
            parse_request(
                &body(API_VERSION_V1BETA1, KIND_REQUEST, r#"["a","b","c","d"]"#),
                &l
            ),
            Err(RequestError::TooManyKeys { count: 4, limit: 3 })
        );
        assert!(
            parse_request(
                &body(API_VERSION_V1BETA1, KIND_REQUEST, r#"["0123456789"]"#),
                &l
            )
            .is_ok()
        );
        // An over-long key does not fail the request: it is answered on its own.
        let r = parse_request(
            &body(API_VERSION_V1BETA1, KIND_REQUEST, r#"["ok","0123456789x"]"#),
            &l,
        )
        .expect("an over-long key is not a request error");
        assert_eq!(key_too_long(&r.keys[0], &l), None);
        assert_eq!(
            key_too_long(&r.keys[1], &l).as_deref(),
            Some("key is 11 bytes, over limits.maxKeyBytes (10)")
        );
        let big = vec![b' '; 4097];
        assert_eq!(
            parse_request(&big, &l),
            Err(RequestError::BodyTooLarge { limit: 4096 })
        );
    }

    #[test]
    fn malformed_bodies_say_what_is_wrong() {
        let l = limits();
        assert_eq!(parse_request(b"", &l), Err(RequestError::EmptyBody));
        let e = parse_request(b"{nope", &l).expect_err("bad json");
        assert!(
            e.to_string().starts_with(
                "request-invalid: request body is not a valid ProviderRequest: key must be a string"
            ),
            "{e}"
        );
        let e = parse_request(b"[1,2]", &l).expect_err("array");
        assert_eq!(e, RequestError::Malformed("expected a JSON object".into()));
        let e = parse_request(b"\"keys\"", &l).expect_err("string");
        assert_eq!(e, RequestError::Malformed("expected a JSON object".into()));
        let e = parse_request(&body(API_VERSION_V1BETA1, "Pod", "[]"), &l).expect_err("kind");
        assert_eq!(e, RequestError::Kind("Pod".into()));
        let e = parse_request(&body("v1", KIND_REQUEST, "[]"), &l).expect_err("api");
        assert_eq!(e, RequestError::ApiVersion("v1".into()));
        let e = parse_request(&body(API_VERSION_V1BETA1, KIND_REQUEST, "[1]"), &l)
            .expect_err("int key");
        assert!(e.to_string().contains("expected a string"), "{e}");
    }

    #[test]
    fn every_request_error_names_its_class_first() {
        let all = [
            RequestError::EmptyBody,
            RequestError::BodyTooLarge { limit: 1 },
            RequestError::Malformed("x".into()),
            RequestError::ApiVersion("v".into()),
            RequestError::Kind("k".into()),
            RequestError::TooManyKeys { count: 2, limit: 1 },
            RequestError::BodyTimeout(5),
            RequestError::BodyRead("reset".into()),
        ];
        for e in all {
            let text = e.to_string();
            let prefix = format!("{}: ", e.class().as_str());
            assert!(
                text.starts_with(&prefix),
                "{text:?} does not start with {prefix:?}"
            );
        }
        assert_eq!(
            RequestError::TooManyKeys { count: 2, limit: 1 }.class(),
            SystemErrorClass::RequestInvalid,
            "the request's size is the pod author's doing"
        );
        assert_eq!(
            RequestError::BodyTimeout(5).class(),
            SystemErrorClass::Unavailable
        );
    }

    #[test]
    fn response_items_omit_absent_fields() {
        let r = ProviderResponse::new(
            API_VERSION_V1BETA1,
            true,
            vec![
                Item {
                    key: "a".into(),
                    value: Some(Json::new(&true)),
                    error: None,
                },
                Item {
                    key: "b".into(),
                    value: None,
                    error: Some("auth: denied".into()),
                },
            ],
            String::new(),
        );
        let v = serde_json::to_value(&r).expect("serialize");
        assert_eq!(
            v,
            serde_json::json!({"apiVersion": API_VERSION_V1BETA1, "kind": "ProviderResponse",
                "response": {"idempotent": true, "systemError": "",
                  "items": [{"key": "a", "value": true}, {"key": "b", "error": "auth: denied"}]}})
        );
    }
}
