//! vouch: a Gatekeeper external data provider that verifies container image signatures.
//!
//! The major components, in the order a request meets them:
//!
//! - [`server`]: the provider listener — TCP accept, TLS 1.3 (mTLS with the Gatekeeper CA),
//!   HTTP/1.1 connections with named timeouts and a connection cap ([`slots`]: who gives
//!   way when it is reached), routing.
//! - [`tls`]: certificate, key and client CA loading and hot reload; the development
//!   certificate generated when none is configured.
//! - [`exchange`]: one ExternalData exchange — bounded body, distinct keys, per-key fan-out
//!   under the deadline, the three outcome classes into a `ProviderResponse`.
//! - [`protocol`]: the wire types and the pure request checks.
//! - [`engine`]: the seam between HTTP and per-key work: [`engine::Engine`] maps a key to an
//!   [`engine::Outcome`].
//! - [`claims`]: `/v1/claims`, the atomic first-come register (memory or Redis store).
//! - [`mutate`]: `/v1/mutate`, pinning tags to digests with the verification engine's tag
//!   cache.
//! - [`verify`]: the verification engine (cosign and Notary Project verifiers);
//!   [`reference`](mod@reference) parses image references and [`policy`] selects the trust policy for one.
//! - [`registry`]: the OCI distribution client; [`cache`] the verdict and tag caches with
//!   single flight and the Redis tier; [`lease`] one verification per key across replicas;
//!   [`redis`] the connection and outage policy the caches and the claims store share.
//! - [`manifests`]: the Gatekeeper objects `vouch manifests` prints.
//! - [`config`]: the YAML config, its defaults and validation; [`reload`] re-reads it and
//!   every file it names, and swaps the verification engine when they change.
//! - [`ops`]: `/healthz`, `/readyz`, `/metrics` on a plain-HTTP port; [`metrics`] holds the
//!   metric families.
//! - [`app`] starts and stops all of the above; [`cli`] is the command line; [`shutdown`]
//!   turns signals into a graceful stop.

pub mod app;
pub mod cache;
pub mod claims;
pub mod cli;
pub mod config;
pub mod digest;
pub mod engine;
pub mod exchange;
#[doc(hidden)]
pub mod fuzzing;
pub mod lease;
pub mod manifests;
pub mod metrics;
pub mod mutate;
pub mod ops;
pub mod policy;
pub mod protocol;
pub mod redis;
pub mod reference;
pub mod registry;
pub mod reload;
pub mod scope;
pub mod server;
pub mod shutdown;
pub mod slots;
pub mod tls;
pub mod verdict;
pub mod verify;
