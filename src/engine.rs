//! The seam between the HTTP layer and the work done per key.
//!
//! An [`Engine`] maps one key to one [`Outcome`]. The exchange layer fans keys out to an
//! engine in spawned tasks, so an engine never sees deadlines, bodies or sockets, and its
//! work may outlive the request that started it.

use std::fmt;

use futures_util::future::BoxFuture;

pub use crate::protocol::Json;

/// What one key came to (SPEC §1: three classes, never mixed up).
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A verdict: the `value` of the key's item. A failed verification is a verdict.
    Value(Json),
    /// No verdict, for a reason a retry within minutes will not fix: the key's `error`.
    /// Gatekeeper caches it like a value.
    Error(KeyError),
    /// No verdict because of a transient condition: reported in `systemError`, which
    /// Gatekeeper never caches, so the next admission retries.
    Transient(String),
}

/// Stable prefixes of per-key errors, so policies and people can match on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// Registry credentials rejected.
    Auth,
    /// The registry answered with malformed data.
    RegistryProtocol,
    /// The registry's TLS certificate is not trusted.
    RegistryTls,
    /// No policy covers the key (mutation only; verification answers a verdict).
    NoPolicy,
    /// A claim key that is not a valid claim.
    InvalidClaim,
    /// The key is not an image reference (mutation only; verification answers a verdict).
    InvalidReference,
    /// The image does not exist (mutation only; verification answers a verdict).
    NotFound,
    /// The image's manifest, as served, cannot be used (mutation only; verification answers
    /// a verdict).
    InvalidImage,
}

impl ErrorCode {
    /// The code as it prefixes the per-key error text (`auth`, `registry-tls`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Auth => "auth",
            ErrorCode::RegistryProtocol => "registry-protocol",
            ErrorCode::RegistryTls => "registry-tls",
            ErrorCode::NoPolicy => "no-policy",
            ErrorCode::InvalidClaim => "invalid-claim",
            ErrorCode::InvalidReference => "invalid-reference",
            ErrorCode::NotFound => "not-found",
            ErrorCode::InvalidImage => "invalid-image",
        }
    }
}

/// A per-key error: rendered as `code: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    /// Which kind of per-key error (the text's prefix).
    pub code: ErrorCode,
    /// The explanation after `code: `.
    pub message: String,
}

impl KeyError {
    /// A per-key error of kind `code`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        KeyError {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

/// Maps one key to one outcome. Implementations must not panic on any input; the exchange
/// layer still turns a panic into a transient failure rather than a dropped request.
pub trait Engine: Send + Sync + 'static {
    /// The outcome for one distinct key; runs in its own task and may outlive its request.
    fn evaluate<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Outcome>;

    /// An outcome available right now without any work (a cached verdict), so the exchange
    /// can answer it without spawning a task. `None`: call [`Engine::evaluate`].
    fn cached(&self, _key: &str) -> Option<Outcome> {
        None
    }

    /// The answer for a key over `limits.maxKeyBytes` (`why` names the limit), which is
    /// never evaluated. Keys are written by pod authors, so an over-long one is answered
    /// on its own rather than failing the request; the default is the per-key error
    /// `invalid-reference: …`, and the verification engine answers a failed verdict.
    fn oversized(&self, _key: &str, why: String) -> Outcome {
        Outcome::Error(KeyError::new(ErrorCode::InvalidReference, why))
    }
}
