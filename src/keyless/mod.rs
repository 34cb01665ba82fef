//! Keyless (Sigstore) signature verification: pure, synchronous, no I/O.
//!
//! A keyless signature is made with a short-lived key whose certificate Fulcio issued to an
//! OIDC identity (a CI workflow, a person). It is worth something only together with proof
//! of *when* it was made — a Rekor log entry whose signed entry timestamp (SET) covers its
//! `integratedTime`, or an RFC 3161 timestamp from a trusted TSA — because the certificate
//! is valid for ten minutes and must have been valid at that time. This module checks such
//! signatures in the two forms images carry them:
//!
//! - a Sigstore **bundle** (media types `application/vnd.dev.sigstore.bundle.v0.3+json` and
//!   `application/vnd.dev.sigstore.bundle+json;version=0.1|0.2|0.3`), holding either a DSSE
//!   envelope with an in-toto statement or a `messageSignature` over the artifact
//!   ([`verify_bundle`]);
//! - the **legacy cosign** form of one `.sig` layer: the simple-signing payload, the
//!   signature annotation, and the certificate, chain, Rekor bundle (SET) and RFC 3161
//!   annotations ([`verify_legacy`], which turns it into the bundle it is equivalent to).
//!
//! Both are checked against a [`TrustedRoot`] (Sigstore TrustedRoot JSON) and a
//! [`KeylessPolicy`] (which evidence is required, which identities are trusted), for an
//! expected artifact digest. Success is a [`Verified`]; failure a [`KeylessError`] whose
//! [`code`](KeylessError::code) is the verdict code of SPEC §2.
//!
//! # What does the checking
//!
//! The cryptographic core is `sigstore-verify` (sigstore-rust, pinned `=0.15.1`), which
//! verifies bundles v0.1–v0.3 offline: the signature (DSSE PAE or message signature, with
//! the digest binding), RFC 3161 timestamps against the root's TSAs and their `validFor`,
//! Rekor SETs against the log key valid at the `integratedTime`, Merkle inclusion proofs
//! (tree-local index) and signed checkpoints, Rekor v2 entries, the consistency of every log
//! entry's body with the bundle (signature, certificate, digest), the certificate chain
//! against the root's CAs valid at **every** verified time (never "now"), and the embedded
//! SCT against the root's CT logs. The older `sigstore` crate is not used: its bundle
//! verifier checks neither the SET nor the inclusion proof.
//!
//! What this module adds, and why:
//!
//! - **Identity.** `sigstore-verify` matches identities exactly; policies here need
//!   anchored regular expressions, several rules of which any one suffices, every SAN of
//!   the certificate, and Fulcio extensions ([`identity`](IdentityRule)). The crate is
//!   asked for cryptography only (`any_identity`) and the leaf is matched here.
//! - **Log keys at the verified time.** The crate verifies a checkpoint with any trusted
//!   log key whose hint matches, as long as its `validFor` has *started by now*. Here every
//!   log entry must name a log of the root whose key is valid (inclusive ends) at that
//!   entry's verified time, and its checkpoint must carry a valid signature by *that* key
//!   (key hint = the first four bytes of the log ID) — see `bundle::check_log_entries`.
//! - **Required evidence.** `tlog: required` demands at least one log entry, and for
//!   bundles v0.2 and later an inclusion proof with a checkpoint on every entry (the crate
//!   settles for one proof among several entries); `tsa: required` demands an RFC 3161
//!   timestamp; a root whose transparency-log keys lack `validFor.start` is refused
//!   ([`TrustedRoot::from_json`]).
//! - **Verdict codes.** The crate's errors are mapped to SPEC §2's codes. Where its error
//!   does not say enough — a chain failure that is really the leaf being outside its
//!   validity at a verified time (→ `expired`), a digest mismatch that must be told apart
//!   from a log entry that belongs to another signature — the bundle is re-examined here
//!   (`bundle::explain`), with the verified times read from the SETs and the timestamp
//!   tokens' `genTime`.
//!
//! Nothing here panics on input: every decoder returns errors, and the crate's
//! verification runs under `catch_unwind` as a second line of defence.
//!
//! Known limits of `sigstore-verify` 0.15 that show through: an RFC 3161 token whose
//! `genTime` has fractional seconds does not decode (Sigstore's and GitHub's timestamp
//! authorities issue whole seconds), and a certificate must embed exactly one SCT (Fulcio
//! embeds one); both are refused, never accepted.

mod bundle;
mod certificate;
mod error;
mod legacy;
mod policy;
mod trusted_root;

pub use bundle::{SignedContent, Verified, bundle_predicate_type, verify_bundle};
pub use error::KeylessError;
pub use legacy::{
    BUNDLE_ANNOTATION, CERTIFICATE_ANNOTATION, CHAIN_ANNOTATION, LegacySignature,
    RFC3161_TIMESTAMP_ANNOTATION, SIGNATURE_ANNOTATION, verify_legacy, verify_legacy_attestation,
};
pub use policy::{
    FulcioExtension, IdentityRule, IdentitySpec, KeylessPolicy, Matcher, PolicyError, SctMode,
    TlogMode, TsaMode,
};
pub use trusted_root::{TrustRootError, TrustedRoot};

/// The bundle media types accepted.
pub const BUNDLE_MEDIA_TYPES: [&str; 4] = [
    "application/vnd.dev.sigstore.bundle+json;version=0.1",
    "application/vnd.dev.sigstore.bundle+json;version=0.2",
    "application/vnd.dev.sigstore.bundle+json;version=0.3",
    "application/vnd.dev.sigstore.bundle.v0.3+json",
];

/// The in-toto predicate type cosign v3 signs images with: a DSSE bundle counts as an image
/// *signature* only with this predicate type (SPEC §2); others are attestations.
pub const COSIGN_SIGN_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";
