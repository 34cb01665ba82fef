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

use crate::config::Limits;

pub const API_VERSION_V1BETA1: &str = "externaldata.gatekeeper.sh/v1beta1";
/// Sent by Gatekeeper up to v3.10.
pub const API_VERSION_V1ALPHA1: &str = "externaldata.gatekeeper.sh/v1alpha1";
pub const KIND_REQUEST: &str = "ProviderRequest";
pub const KIND_RESPONSE: &str = "ProviderResponse";

/// A request as Gatekeeper sends it. Unknown fields are ignored for forward compatibility.
#[derive(Debug, Deserialize)]
pub struct ProviderRequest {
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub kind: String,
    pub request: RequestBody,
}

#[derive(Debug, Deserialize)]
pub struct RequestBody {
    /// Absent (or null) when Gatekeeper has nothing to ask.
    #[serde(default)]
    pub keys: Option<Vec<String>>,
}

/// The response envelope.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProviderResponse {
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub kind: String,
    pub response: ResponseBody,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ResponseBody {
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
pub struct Item {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Json>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ProviderResponse {
    /// A response with items and an optional system error, in the request's apiVersion.
    pub fn new(
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
    pub fn system_error(idempotent: bool, message: impl Into<String>) -> Self {
        ProviderResponse::new(API_VERSION_V1BETA1, idempotent, Vec::new(), message.into())
    }
}

/// A valid request: its apiVersion (echoed in the response) and its distinct keys in the
/// order they first appeared.
#[derive(Debug, PartialEq, Eq)]
pub struct ParsedRequest {
    pub api_version: &'static str,
    pub keys: Vec<String>,
}

/// Why a request was refused as a whole. The `Display` text is the `systemError`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("request body is empty; expected a ProviderRequest JSON object")]
    EmptyBody,
    #[error("request body exceeds limits.maxBodyBytes ({limit} bytes)")]
    BodyTooLarge { limit: usize },
    #[error("request body is not a valid ProviderRequest: {0}")]
    Malformed(String),
    #[error(
        "unsupported apiVersion {0:?}; expected {API_VERSION_V1BETA1} or {API_VERSION_V1ALPHA1}"
    )]
    ApiVersion(String),
    #[error("unsupported kind {0:?}; expected {KIND_REQUEST}")]
    Kind(String),
    #[error("request has {count} keys, over limits.maxKeys ({limit})")]
    TooManyKeys { count: usize, limit: usize },
    #[error("key #{index} ({preview}) is {len} bytes, over limits.maxKeyBytes ({limit})")]
    KeyTooLong {
        index: usize,
        preview: KeyPreview,
        len: usize,
        limit: usize,
    },
    #[error("request body was not received before the deadline ({0} ms)")]
    BodyTimeout(u128),
    #[error("request body could not be read: {0}")]
    BodyRead(String),
}

/// The first characters of an over-long key, enough to find it in a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPreview(pub String);

impl fmt::Display for KeyPreview {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}…", self.0)
    }
}

/// Validates a body against SPEC §1 and the configured limits; returns the distinct keys.
pub fn parse_request(body: &[u8], limits: &Limits) -> Result<ParsedRequest, RequestError> {
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
    if let Some((index, key)) = keys
        .iter()
        .enumerate()
        .find(|(_, k)| k.len() > limits.max_key_bytes)
    {
        return Err(RequestError::KeyTooLong {
            index,
            preview: KeyPreview(key.chars().take(64).collect()),
            len: key.len(),
            limit: limits.max_key_bytes,
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

    fn limits() -> Limits {
        Limits {
            max_body_bytes: 4096,
            max_keys: 3,
            max_key_bytes: 10,
            ..Limits::default()
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
        let e = parse_request(
            &body(API_VERSION_V1BETA1, KIND_REQUEST, r#"["ok","0123456789x"]"#),
            &l,
        )
        .expect_err("too long");
        assert!(matches!(
            e,
            RequestError::KeyTooLong {
                index: 1,
                len: 11,
                limit: 10,
                ..
            }
        ));
        assert!(e.to_string().contains("limits.maxKeyBytes"), "{e}");
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
            e.to_string()
                .starts_with("request body is not a valid ProviderRequest: key must be a string"),
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
