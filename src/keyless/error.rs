//! Why a keyless signature does not verify, and the verdict code each reason maps to.

use crate::verdict::VerdictCode;

/// A keyless verification failure: what failed, with one human sentence ([`detail`]) that
/// says precisely why. [`code`] is the SPEC §2 verdict code.
///
/// [`detail`]: KeylessError::detail
/// [`code`]: KeylessError::code
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeylessError {
    /// Not a well-formed bundle or legacy signature (JSON, base64, DER, PEM, media type,
    /// not a keyless bundle at all). → `invalid-signature`
    Malformed(String),
    /// The signature does not verify over the artifact or DSSE envelope with the
    /// certificate's key. → `invalid-signature`
    Signature(String),
    /// The transparency log evidence is wrong: SET, inclusion proof, checkpoint, a log the
    /// trusted root does not list or whose key is not valid at the entry's time, an entry
    /// whose body describes another signature, certificate or digest. → `invalid-signature`
    Log(String),
    /// The policy requires a transparency log entry (or an inclusion proof) and there is
    /// none. → `invalid-signature`
    MissingLogEntry(String),
    /// An RFC 3161 timestamp does not verify against the root's timestamp authorities, or
    /// lies outside the validity of the one that signed it. → `invalid-signature`
    Timestamp(String),
    /// The policy requires an RFC 3161 timestamp, or no verified time exists at all.
    /// → `invalid-signature`
    MissingTimestamp(String),
    /// The certificate does not chain to a certificate authority of the trusted root that
    /// is valid at the verified time (its `validFor` included), or lacks code signing.
    /// → `untrusted-signer`
    Chain(String),
    /// No signed certificate timestamp of the certificate verifies against the root's CT
    /// logs. → `untrusted-signer`
    Sct(String),
    /// The certificate's identity (SAN, issuer, Fulcio extensions) matches no identity rule
    /// of the policy. → `untrusted-signer`
    Identity(String),
    /// The signing certificate was not valid at a verified time. → `expired`
    Expired(String),
    /// A trusted signature, but over another artifact's digest. → `digest-mismatch`
    DigestMismatch(String),
}

impl KeylessError {
    /// The verdict code of SPEC §2 for this failure.
    pub fn code(&self) -> VerdictCode {
        match self {
            KeylessError::Malformed(_)
            | KeylessError::Signature(_)
            | KeylessError::Log(_)
            | KeylessError::MissingLogEntry(_)
            | KeylessError::Timestamp(_)
            | KeylessError::MissingTimestamp(_) => VerdictCode::InvalidSignature,
            KeylessError::Chain(_) | KeylessError::Sct(_) | KeylessError::Identity(_) => {
                VerdictCode::UntrustedSigner
            }
            KeylessError::Expired(_) => VerdictCode::Expired,
            KeylessError::DigestMismatch(_) => VerdictCode::DigestMismatch,
        }
    }

    /// One human sentence saying what is wrong.
    pub fn detail(&self) -> &str {
        match self {
            KeylessError::Malformed(d)
            | KeylessError::Signature(d)
            | KeylessError::Log(d)
            | KeylessError::MissingLogEntry(d)
            | KeylessError::Timestamp(d)
            | KeylessError::MissingTimestamp(d)
            | KeylessError::Chain(d)
            | KeylessError::Sct(d)
            | KeylessError::Identity(d)
            | KeylessError::Expired(d)
            | KeylessError::DigestMismatch(d) => d,
        }
    }
}

impl std::fmt::Display for KeylessError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.detail())
    }
}

impl std::error::Error for KeylessError {}
