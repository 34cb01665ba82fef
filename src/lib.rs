//! vouch: a Gatekeeper external data provider that verifies container image signatures.
//!
//! The major components, in the order a request meets them (public modules are links; the
//! others are crate-private, listed so the crate reads at a glance):
//!
//! - `server`: the provider listener — TCP accept, TLS 1.3 (mTLS with the Gatekeeper CA),
//!   HTTP/1.1 connections with named timeouts and a connection cap (`slots`: who gives
//!   way when it is reached), routing.
//! - `tls`: certificate, key and client CA loading and hot reload; the development
//!   certificate generated when none is configured.
//! - `exchange`: one ExternalData exchange — bounded body, distinct keys, per-key fan-out
//!   under the deadline, the three outcome classes into a `ProviderResponse`.
//! - `protocol`: the wire types and the pure request checks.
//! - [`engine`]: the seam between HTTP and per-key work: [`engine::Engine`] maps a key to an
//!   [`engine::Outcome`].
//! - `claims`: `/v1/claims`, the atomic first-come register (memory or Redis store).
//! - `mutate`: `/v1/mutate`, pinning tags to digests with the verification engine's tag
//!   cache.
//! - `verify`: the verification engine (cosign, Notary Project and keyless verifiers), reaching
//!   registries through one narrow `SignatureSource` seam; [`verdict`] is what it
//!   concludes; [`keyless`] checks Sigstore keyless signatures and bundles; `reference`
//!   parses image references, `scope` and `policy` select the trust policy for one;
//!   `attest` judges the in-toto attestations a policy requires with Rego.
//! - `registry`: the OCI distribution client; `cache` the verdict and tag caches with
//!   single flight and the Redis tier; `lease` one verification per key across replicas;
//!   `redis` the connection and outage policy the caches and the claims store share.
//! - [`manifests`]: the Gatekeeper objects `vouch manifests` prints; `audit` (`vouch audit`)
//!   reports what admission would do with the workloads already running.
//! - [`config`]: the YAML config, its defaults and validation; `reload` re-reads it and
//!   every file it names, and swaps the verification engine when they change.
//! - `ops`: `/healthz`, `/readyz`, `/metrics` on a plain-HTTP port; `metrics` holds the
//!   metric families.
//! - [`app`] starts and stops all of the above; [`cli`] is the command line; `shutdown`
//!   turns signals into a graceful stop.
//!
//! `missing_docs` and `unreachable_pub` are on for the library (fatal under CI's clippy
//! `-D warnings`): every public item says why it exists, and an item is `pub` only when
//! it is reachable from outside the crate.

#![warn(missing_docs, unreachable_pub)]

// The public surface: what the binary, the tests and a library user drive.
pub mod app;
pub mod cli;
pub mod config;
pub mod engine;
pub mod keyless;
pub mod manifests;
pub mod verdict;

#[doc(hidden)]
pub mod fuzzing;

mod attest;
mod audit;
mod cache;
mod claims;
mod digest;
mod exchange;
mod hint;
mod lease;
mod metrics;
mod mutate;
mod namespace;
mod ops;
mod pkix;
mod policy;
mod protocol;
mod redis;
mod reference;
mod registry;
mod reload;
mod revocation;
mod scope;
mod server;
mod shutdown;
mod slots;
mod tls;
mod verify;

/// Internals the benchmarks and the fuzz replays drive directly, below the public surface
/// (as rustls' `internal`): not a stable interface.
#[doc(hidden)]
pub mod internal {
    pub use crate::attest::{RegoError, RegoPolicy};
    pub use crate::cache::{CachedVerdict, Caches, VerdictKey, VerdictScope};
    pub use crate::digest::sha256_digest;
    pub use crate::metrics::Metrics;
    pub use crate::server::serve;
    pub use crate::tls::{Reloader, TlsSource, TlsState};

    /// cosign key-based checking, for the fuzz corpus replays.
    pub mod cosign {
        pub use crate::verify::cosign::{Candidate, PublicKey, check};
    }
}
