//! Keyless verification (`vouch::keyless`) against signatures vouch did not make: bundles
//! from sigstore-js signing against its mock Sigstore services (`tests/sigstore/sign.js`,
//! see `support::sigstore`), the legacy cosign annotation form built from the same
//! signer's output, and the published sigstore-conformance vectors
//! (`tests/sigstore/conformance`). Every failure case checks its SPEC §2 code.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use support::sigstore::{Fixtures, fixtures, hex};
use vouch::keyless::{
    COSIGN_SIGN_PREDICATE, IdentityRule, IdentitySpec, KeylessError, KeylessPolicy, Matcher,
    SctMode, SignedContent, TlogMode, TrustedRoot, TsaMode, Verified, verify_bundle, verify_legacy,
};
use vouch::verdict::VerdictCode;

fn rule(yaml: &str) -> IdentityRule {
    let spec: IdentitySpec = serde_yaml_ng::from_str(yaml).expect("identity yaml");
    IdentityRule::from_spec(&spec).expect("identity rule")
}

/// The defaults, trusting the fixtures' signer exactly.
fn default_policy(f: &Fixtures) -> KeylessPolicy {
    KeylessPolicy::new(vec![IdentityRule::new(
        Matcher::Exact(f.issuer.clone()),
        Matcher::Exact(f.subject.clone()),
    )])
    .expect("policy")
}

fn policy_with(rules: Vec<IdentityRule>) -> KeylessPolicy {
    KeylessPolicy::new(rules).expect("policy")
}

/// GitHub's private instance: no log, no SCT, a timestamp.
fn private_policy(f: &Fixtures) -> KeylessPolicy {
    KeylessPolicy::with_modes(
        TlogMode::Skip,
        SctMode::Skip,
        TsaMode::Required,
        default_policy(f).identities().to_vec(),
    )
    .expect("policy")
}

fn verify(
    f: &Fixtures,
    bundle: &Value,
    digest: &str,
    root: &TrustedRoot,
    policy: &KeylessPolicy,
) -> Result<Verified, KeylessError> {
    verify_bundle(
        &serde_json::to_vec(bundle).expect("json"),
        digest,
        root,
        policy,
    )
    .inspect(|v| assert_eq!(v.issuer, f.issuer, "{v:?}"))
}

#[track_caller]
fn assert_code(result: Result<Verified, KeylessError>, code: VerdictCode) -> KeylessError {
    match result {
        Ok(v) => panic!("verified, expected {code:?}: {v:?}"),
        Err(e) => {
            assert_eq!(e.code(), code, "{e:?}");
            assert!(!e.detail().is_empty());
            e
        }
    }
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .expect("time")
        .format(&time::format_description::well_known::Rfc3339)
        .expect("rfc3339")
}

fn integrated_time(bundle: &Value) -> i64 {
    bundle["verificationMaterial"]["tlogEntries"][0]["integratedTime"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("integratedTime")
}

/// Flips one bit in the middle of a base64 field's bytes.
fn flip_base64(v: &mut Value) {
    let mut bytes = B64
        .decode(v.as_str().expect("base64 string"))
        .expect("base64");
    let i = bytes.len() / 2;
    bytes[i] ^= 0x01;
    *v = B64.encode(bytes).into();
}

// --- Valid signatures -------------------------------------------------------------------

#[test]
fn a_dsse_bundle_verifies_with_a_matching_identity() {
    let f = fixtures();
    let v = verify(
        f,
        &f.bundle("dsse"),
        &f.digest,
        &f.trusted_root(),
        &default_policy(f),
    )
    .expect("verifies");
    assert_eq!(v.identity, f.subject);
    assert_eq!(v.predicate_type(), Some(COSIGN_SIGN_PREDICATE));
    assert!(v.is_image_signature());
    assert_eq!(v.log_entries, 1);
    assert_eq!(v.log_times.len(), 1, "the SET-verified integrated time");
    assert!(v.tsa_times.is_empty());
    assert_eq!(
        v.media_type,
        "application/vnd.dev.sigstore.bundle.v0.3+json"
    );
    let SignedContent::Dsse {
        statement,
        payload_type,
        ..
    } = &v.content
    else {
        panic!("DSSE expected: {v:?}");
    };
    assert_eq!(payload_type, "application/vnd.in-toto+json");
    assert_eq!(
        format!(
            "sha256:{}",
            statement["subject"][0]["digest"]["sha256"]
                .as_str()
                .expect("subject")
        ),
        f.digest
    );
    let logged =
        SystemTime::UNIX_EPOCH + Duration::from_secs(integrated_time(&f.bundle("dsse")) as u64);
    assert_eq!(v.log_times, vec![logged]);
}

#[test]
fn a_message_signature_bundle_verifies_with_a_matching_identity() {
    let f = fixtures();
    let v = verify(
        f,
        &f.bundle("message"),
        &f.digest,
        &f.trusted_root(),
        &default_policy(f),
    )
    .expect("verifies");
    assert_eq!(v.content, SignedContent::MessageSignature);
    assert_eq!(v.identity, f.subject);
    assert!(v.is_image_signature());
    let signed = {
        use sha2::Digest as _;
        format!("sha256:{}", hex(&sha2::Sha256::digest(&f.manifest)))
    };
    assert_eq!(signed, f.digest, "the message digest is the manifest's");
    assert_eq!(
        v.media_type,
        "application/vnd.dev.sigstore.bundle+json;version=0.2"
    );
}

#[test]
fn a_bundle_with_log_entry_and_timestamp_has_both_times() {
    let f = fixtures();
    let root = f.trusted_root();
    let v = verify(
        f,
        &f.bundle("dsseTsa"),
        &f.digest,
        &root,
        &default_policy(f),
    )
    .expect("verifies");
    assert_eq!((v.log_times.len(), v.tsa_times.len()), (1, 1), "{v:?}");
    // tsa: required is met by it, and not by the bundle without a timestamp.
    let tsa_required = KeylessPolicy::with_modes(
        TlogMode::Required,
        SctMode::Required,
        TsaMode::Required,
        default_policy(f).identities().to_vec(),
    )
    .expect("policy");
    verify(f, &f.bundle("dsseTsa"), &f.digest, &root, &tsa_required).expect("verifies");
    assert_code(
        verify(f, &f.bundle("dsse"), &f.digest, &root, &tsa_required),
        VerdictCode::InvalidSignature,
    );
}

// --- Identity ---------------------------------------------------------------------------

#[test]
fn a_wrong_subject_is_an_untrusted_signer() {
    let f = fixtures();
    let p = policy_with(vec![IdentityRule::new(
        Matcher::Exact(f.issuer.clone()),
        Matcher::Exact(
            "https://github.com/acme/app/.github/workflows/other.yml@refs/tags/v1.0.0".into(),
        ),
    )]);
    let e = assert_code(
        verify(f, &f.bundle("dsse"), &f.digest, &f.trusted_root(), &p),
        VerdictCode::UntrustedSigner,
    );
    assert!(
        e.detail().contains(&f.subject),
        "names the actual signer: {e}"
    );
}

#[test]
fn a_wrong_issuer_is_an_untrusted_signer() {
    let f = fixtures();
    let p = policy_with(vec![IdentityRule::new(
        Matcher::Exact("https://accounts.google.com".into()),
        Matcher::Exact(f.subject.clone()),
    )]);
    assert_code(
        verify(f, &f.bundle("dsse"), &f.digest, &f.trusted_root(), &p),
        VerdictCode::UntrustedSigner,
    );
}

#[test]
fn any_one_identity_rule_suffices_and_extensions_are_matched_exactly() {
    let f = fixtures();
    let root = f.trusted_root();
    let good = format!(
        "{{issuer: '{}', subjectRegExp: 'https://github\\.com/acme/[^/]+/\\.github/workflows/release\\.yml@refs/tags/v.*', extensions: {{githubWorkflowRepository: acme/app, sourceRepositoryURI: 'https://github.com/acme/app', sourceRepositoryRef: refs/tags/v1.0.0, sourceRepositoryOwnerURI: 'https://github.com/acme', buildSignerURI: '{}', runnerEnvironment: github-hosted}}}}",
        f.issuer, f.subject
    );
    let v = verify(
        f,
        &f.bundle("dsse"),
        &f.digest,
        &root,
        &policy_with(vec![rule("{issuer: x, subject: y}"), rule(&good)]),
    )
    .expect("the second rule matches");
    assert_eq!(v.identity, f.subject);
    for (ext, other) in [
        ("githubWorkflowRepository", "acme/app-fork"),
        ("sourceRepositoryURI", "https://github.com/acme/app-fork"),
        ("sourceRepositoryRef", "refs/heads/main"),
        ("sourceRepositoryOwnerURI", "https://github.com/acm"),
        ("runnerEnvironment", "self-hosted"),
        // Not in the certificate at all.
        ("buildConfigDigest", "0"),
    ] {
        let r = format!(
            "{{issuer: '{}', subject: '{}', extensions: {{{ext}: '{other}'}}}}",
            f.issuer, f.subject
        );
        let e = assert_code(
            verify(
                f,
                &f.bundle("dsse"),
                &f.digest,
                &root,
                &policy_with(vec![rule(&r)]),
            ),
            VerdictCode::UntrustedSigner,
        );
        assert!(e.detail().contains(ext), "{e}");
    }
}

/// A subject an unanchored regular expression would accept (the expected identity
/// embedded in a URL the attacker controls) is refused; the genuine one passes the same
/// rule.
#[test]
fn regular_expressions_are_anchored_against_the_prefix_trick() {
    let f = fixtures();
    let root = f.trusted_root();
    let pattern = r"https://github\.com/acme/app/\.github/workflows/release\.yml@refs/tags/v.*";
    let p = policy_with(vec![rule(&format!(
        "{{issuer: '{}', subjectRegExp: '{pattern}'}}",
        f.issuer
    ))]);
    let evil_bundle = f.bundle("evilSubject");
    let evil_leaf = B64
        .decode(
            evil_bundle["verificationMaterial"]["certificate"]["rawBytes"]
                .as_str()
                .expect("cert"),
        )
        .expect("base64");
    let evil_san = format!("https://evil.example/?{}", f.subject);
    assert!(
        regex::Regex::new(pattern)
            .expect("regex")
            .is_match(&evil_san)
            && String::from_utf8_lossy(&evil_leaf).contains(&evil_san),
        "the evil certificate would pass an unanchored match"
    );
    verify(f, &f.bundle("dsse"), &f.digest, &root, &p).expect("the genuine signer passes");
    let e = assert_code(
        verify(f, &evil_bundle, &f.digest, &root, &p),
        VerdictCode::UntrustedSigner,
    );
    assert!(e.detail().contains("evil.example"), "{e}");
}

// --- Time -------------------------------------------------------------------------------

#[test]
fn a_certificate_expired_before_the_log_time_is_expired() {
    let f = fixtures();
    let b = f.bundle("expired");
    let e = assert_code(
        verify(f, &b, &f.digest, &f.trusted_root(), &default_policy(f)),
        VerdictCode::Expired,
    );
    assert!(
        e.detail().contains(&rfc3339(integrated_time(&b))),
        "names the log time: {e}"
    );
}

#[test]
fn a_certificate_authority_outside_its_validity_is_an_untrusted_signer() {
    let f = fixtures();
    let t = integrated_time(&f.bundle("dsse"));
    for window in [
        json!({"start": rfc3339(t + 3600)}),
        json!({"start": rfc3339(t - 86_400), "end": rfc3339(t - 3600)}),
    ] {
        let root =
            f.trusted_root_with(|r| r["certificateAuthorities"][0]["validFor"] = window.clone());
        assert_code(
            verify(f, &f.bundle("dsse"), &f.digest, &root, &default_policy(f)),
            VerdictCode::UntrustedSigner,
        );
    }
    // Inclusive end: a CA whose window ends at the verified time is still valid then.
    let root = f.trusted_root_with(|r| {
        r["certificateAuthorities"][0]["validFor"] =
            json!({"start": rfc3339(t - 86_400), "end": rfc3339(t)})
    });
    verify(f, &f.bundle("dsse"), &f.digest, &root, &default_policy(f)).expect("end is inclusive");
}

#[test]
fn an_untrusted_certificate_authority_is_an_untrusted_signer() {
    let f = fixtures();
    // The root trusts another CA (the mock TSA's root): the Fulcio root the legacy chain
    // annotation carries must not become an anchor.
    let root = f.trusted_root_with(|r| {
        r["certificateAuthorities"][0]["certChain"]["certificates"] =
            json!([r["timestampAuthorities"][0]["certChain"]["certificates"][1].clone()]);
    });
    assert_code(
        verify(f, &f.bundle("dsse"), &f.digest, &root, &default_policy(f)),
        VerdictCode::UntrustedSigner,
    );
    let legacy = f.legacy("legacy");
    assert!(
        legacy.chain_pem.is_some(),
        "the chain annotation carries the Fulcio root"
    );
    assert_code(
        verify_legacy(&legacy, &f.digest, &root, &default_policy(f)),
        VerdictCode::UntrustedSigner,
    );
}

// --- Transparency log -------------------------------------------------------------------

#[test]
fn a_tampered_set_is_an_invalid_signature() {
    let f = fixtures();
    for name in ["dsse", "message"] {
        let mut b = f.bundle(name);
        flip_base64(
            &mut b["verificationMaterial"]["tlogEntries"][0]["inclusionPromise"]["signedEntryTimestamp"],
        );
        let digest = f.digest.clone();
        assert_code(
            verify(f, &b, &digest, &f.trusted_root(), &default_policy(f)),
            VerdictCode::InvalidSignature,
        );
        // A backdated integrated time is caught by the SET too.
        let mut b = f.bundle(name);
        let t = integrated_time(&b);
        b["verificationMaterial"]["tlogEntries"][0]["integratedTime"] = (t - 60).to_string().into();
        assert_code(
            verify(f, &b, &digest, &f.trusted_root(), &default_policy(f)),
            VerdictCode::InvalidSignature,
        );
    }
}

#[test]
fn a_log_the_root_does_not_list_is_an_invalid_signature() {
    let f = fixtures();
    let no_logs = f.trusted_root_with(|r| r["tlogs"] = json!([]));
    let e = assert_code(
        verify(
            f,
            &f.bundle("dsse"),
            &f.digest,
            &no_logs,
            &default_policy(f),
        ),
        VerdictCode::InvalidSignature,
    );
    assert!(!e.detail().is_empty());
    // Another key under the same log ID: neither SET nor checkpoint verifies.
    let other_key = f.trusted_root_with(|r| {
        r["tlogs"][0]["publicKey"]["rawBytes"] = r["ctlogs"][0]["publicKey"]["rawBytes"].clone();
    });
    assert_code(
        verify(
            f,
            &f.bundle("dsse"),
            &f.digest,
            &other_key,
            &default_policy(f),
        ),
        VerdictCode::InvalidSignature,
    );
}

#[test]
fn a_log_key_is_used_only_inside_its_validity() {
    let f = fixtures();
    let b = f.bundle("dsse");
    let t = integrated_time(&b);
    let window = |w: Value| f.trusted_root_with(|r| r["tlogs"][0]["publicKey"]["validFor"] = w);
    for w in [
        json!({"start": rfc3339(t + 1)}),
        json!({"start": rfc3339(t - 86_400), "end": rfc3339(t - 1)}),
    ] {
        assert_code(
            verify(f, &b, &f.digest, &window(w), &default_policy(f)),
            VerdictCode::InvalidSignature,
        );
    }
    // Both ends are inclusive.
    verify(
        f,
        &b,
        &f.digest,
        &window(json!({"start": rfc3339(t), "end": rfc3339(t)})),
        &default_policy(f),
    )
    .expect("a key valid exactly at the integrated time");
}

/// Rekor v2 (sigstore-conformance `rekor2-happy-path`, from Sigstore's staging instance):
/// no SET, so the entry's time is the RFC 3161 timestamp's, and the log key must be valid
/// then; a root without that log refuses it.
#[test]
fn a_rekor_v2_log_key_is_used_only_inside_its_validity() {
    let dir = conformance_dir().join("rekor2-happy-path");
    let bundle = std::fs::read(dir.join("bundle.sigstore.json")).expect("vector");
    let root_json: Value =
        serde_json::from_slice(&std::fs::read(dir.join("trusted_root.json")).expect("root"))
            .expect("json");
    let artifact = std::fs::read(conformance_dir().join("a.txt")).expect("a.txt");
    let digest = {
        use sha2::Digest as _;
        format!("sha256:{}", hex(&sha2::Sha256::digest(&artifact)))
    };
    let policy = policy_with(vec![IdentityRule::new(
        Matcher::Exact(DEFAULT_ISSUER.to_string()),
        Matcher::Exact(DEFAULT_IDENTITY.to_string()),
    )]);
    let log_id = serde_json::from_slice::<Value>(&bundle).expect("json")["verificationMaterial"]["tlogEntries"][0]["logId"]["keyId"].clone();
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut r = root_json.clone();
        edit(&mut r);
        TrustedRoot::from_json(&serde_json::to_vec(&r).expect("json")).expect("root")
    };
    let v = verify_bundle(&bundle, &digest, &with(&|_| {}), &policy).expect("verifies");
    assert!(
        v.log_times.is_empty(),
        "a Rekor v2 entry carries no signed time"
    );
    let ts = v.tsa_times[0]
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64;
    let window = |w: Value| {
        with(&|r: &mut Value| {
            for t in r["tlogs"].as_array_mut().expect("tlogs") {
                if t["logId"]["keyId"] == log_id {
                    t["publicKey"]["validFor"] = w.clone();
                }
            }
        })
    };
    for w in [
        json!({"start": rfc3339(ts + 1)}),
        json!({"start": rfc3339(ts - 86_400), "end": rfc3339(ts - 1)}),
    ] {
        let e = assert_code(
            verify_bundle(&bundle, &digest, &window(w), &policy),
            VerdictCode::InvalidSignature,
        );
        assert!(e.detail().contains("log"), "{e}");
    }
    verify_bundle(
        &bundle,
        &digest,
        &window(json!({"start": rfc3339(ts), "end": rfc3339(ts)})),
        &policy,
    )
    .expect("both ends inclusive");
    let without = with(&|r: &mut Value| {
        r["tlogs"]
            .as_array_mut()
            .expect("tlogs")
            .retain(|t| t["logId"]["keyId"] != log_id);
    });
    assert_code(
        verify_bundle(&bundle, &digest, &without, &policy),
        VerdictCode::InvalidSignature,
    );
    // The entry's log has another key, and a second log (same 4-byte hint, another ID)
    // has the key that signed the checkpoint: a checkpoint counts only when signed by the
    // entry's own log.
    let borrowed = with(&|r: &mut Value| {
        let tlogs = r["tlogs"].as_array_mut().expect("tlogs");
        let own = tlogs
            .iter()
            .position(|t| t["logId"]["keyId"] == log_id)
            .expect("the entry's log");
        let mut other = tlogs[own].clone();
        let mut id = B64
            .decode(log_id.as_str().expect("log id"))
            .expect("base64");
        id[31] ^= 1;
        other["logId"]["keyId"] = B64.encode(id).into();
        other["baseUrl"] = "https://other-log.example".into();
        let stranger = tlogs
            .iter()
            .find(|t| t["logId"]["keyId"] != log_id)
            .map(|t| t["publicKey"].clone())
            .expect("another log's key");
        tlogs[own]["publicKey"]["rawBytes"] = stranger["rawBytes"].clone();
        tlogs[own]["publicKey"]["keyDetails"] = stranger["keyDetails"].clone();
        tlogs.push(other);
    });
    let e = assert_code(
        verify_bundle(&bundle, &digest, &borrowed, &policy),
        VerdictCode::InvalidSignature,
    );
    assert!(e.detail().contains("checkpoint"), "{e}");
}

#[test]
fn a_missing_log_entry_is_refused_by_default() {
    let f = fixtures();
    let mut b = f.bundle("dsseTsa");
    b["verificationMaterial"]["tlogEntries"] = json!([]);
    let e = assert_code(
        verify(f, &b, &f.digest, &f.trusted_root(), &default_policy(f)),
        VerdictCode::InvalidSignature,
    );
    assert!(e.detail().contains("tlog: required"), "{e}");
    // An entry without its inclusion proof in a v0.3 bundle.
    let mut b = f.bundle("dsse");
    b["verificationMaterial"]["tlogEntries"][0]
        .as_object_mut()
        .expect("entry")
        .remove("inclusionProof");
    assert_code(
        verify(f, &b, &f.digest, &f.trusted_root(), &default_policy(f)),
        VerdictCode::InvalidSignature,
    );
}

#[test]
fn a_corrupted_inclusion_proof_or_checkpoint_is_an_invalid_signature() {
    let f = fixtures();
    let root = f.trusted_root();
    let p = default_policy(f);
    type Edit = fn(&mut Value);
    let edits: [(&str, Edit); 5] = [
        (
            "a proof path that does not lead to the root",
            |e: &mut Value| {
                e["inclusionProof"]["treeSize"] = "2".into();
                e["inclusionProof"]["logIndex"] = "1".into();
                e["inclusionProof"]["hashes"] = json!([B64.encode([7u8; 32])]);
            },
        ),
        (
            "another root hash in proof and checkpoint",
            |e: &mut Value| {
                let old = e["inclusionProof"]["rootHash"]
                    .as_str()
                    .expect("root")
                    .to_string();
                let new = B64.encode([9u8; 32]);
                e["inclusionProof"]["rootHash"] = new.clone().into();
                let cp = e["inclusionProof"]["checkpoint"]["envelope"]
                    .as_str()
                    .expect("cp")
                    .replace(&old, &new);
                e["inclusionProof"]["checkpoint"]["envelope"] = cp.into();
            },
        ),
        (
            "a checkpoint signature that does not verify",
            |e: &mut Value| {
                let cp = e["inclusionProof"]["checkpoint"]["envelope"]
                    .as_str()
                    .expect("cp")
                    .to_string();
                let (note, sig) = cp.split_once("\n\n").expect("signed note");
                let (name, b64) = sig.trim_end().rsplit_once(' ').expect("signature line");
                let mut raw = B64.decode(b64).expect("base64");
                let last = raw.len() - 3;
                raw[last] ^= 1;
                e["inclusionProof"]["checkpoint"]["envelope"] =
                    format!("{note}\n\n{name} {}\n", B64.encode(raw)).into();
            },
        ),
        (
            "a checkpoint signed for another key hint",
            |e: &mut Value| {
                let cp = e["inclusionProof"]["checkpoint"]["envelope"]
                    .as_str()
                    .expect("cp")
                    .to_string();
                let (note, sig) = cp.split_once("\n\n").expect("signed note");
                let (name, b64) = sig.trim_end().rsplit_once(' ').expect("signature line");
                let mut raw = B64.decode(b64).expect("base64");
                raw[0] ^= 1;
                e["inclusionProof"]["checkpoint"]["envelope"] =
                    format!("{note}\n\n{name} {}\n", B64.encode(raw)).into();
            },
        ),
        ("no checkpoint", |e: &mut Value| {
            e["inclusionProof"]
                .as_object_mut()
                .expect("proof")
                .remove("checkpoint");
        }),
    ];
    for (what, edit) in &edits {
        for (name, digest) in [("dsse", f.digest.clone()), ("message", f.digest.clone())] {
            let mut b = f.bundle(name);
            edit(&mut b["verificationMaterial"]["tlogEntries"][0]);
            let r = verify(f, &b, &digest, &root, &p);
            assert!(
                matches!(&r, Err(e) if e.code() == VerdictCode::InvalidSignature),
                "{name}, {what}: {r:?}"
            );
        }
    }
}

#[test]
fn a_log_entry_for_another_signature_is_an_invalid_signature() {
    let f = fixtures();
    let mut b = f.bundle("message");
    b["verificationMaterial"]["tlogEntries"] =
        f.bundle("other")["verificationMaterial"]["tlogEntries"].clone();
    let e = assert_code(
        verify(f, &b, &f.digest, &f.trusted_root(), &default_policy(f)),
        VerdictCode::InvalidSignature,
    );
    assert!(e.detail().contains("log entry"), "{e}");
    // The DSSE bundle with the message bundle's entry.
    let mut b = f.bundle("dsse");
    b["verificationMaterial"]["tlogEntries"] =
        f.bundle("dsseTsa")["verificationMaterial"]["tlogEntries"].clone();
    assert_code(
        verify(f, &b, &f.digest, &f.trusted_root(), &default_policy(f)),
        VerdictCode::InvalidSignature,
    );
}

// --- Certificate transparency -----------------------------------------------------------

#[test]
fn a_missing_sct_is_an_untrusted_signer_unless_the_policy_skips_it() {
    let f = fixtures();
    let root = f.trusted_root();
    let e = assert_code(
        verify(f, &f.bundle("noSct"), &f.digest, &root, &default_policy(f)),
        VerdictCode::UntrustedSigner,
    );
    assert!(e.detail().contains("certificate timestamp"), "{e}");
    let skip = KeylessPolicy::with_modes(
        TlogMode::Required,
        SctMode::Skip,
        TsaMode::Optional,
        default_policy(f).identities().to_vec(),
    )
    .expect("policy");
    verify(f, &f.bundle("noSct"), &f.digest, &root, &skip).expect("sct: skip");
    // An SCT from a CT log the root does not list.
    let no_ct = f.trusted_root_with(|r| r["ctlogs"] = json!([]));
    assert_code(
        verify(f, &f.bundle("dsse"), &f.digest, &no_ct, &default_policy(f)),
        VerdictCode::UntrustedSigner,
    );
}

// --- Digest -----------------------------------------------------------------------------

#[test]
fn a_bundle_for_another_digest_is_a_digest_mismatch() {
    let f = fixtures();
    let root = f.trusted_root();
    let e = assert_code(
        verify(
            f,
            &f.bundle("dsse"),
            &f.other_digest,
            &root,
            &default_policy(f),
        ),
        VerdictCode::DigestMismatch,
    );
    assert!(
        e.detail().contains(&f.digest) && e.detail().contains(&f.other_digest),
        "{e}"
    );
    assert_code(
        verify(
            f,
            &f.bundle("message"),
            &f.other_digest,
            &root,
            &default_policy(f),
        ),
        VerdictCode::DigestMismatch,
    );
    assert_code(
        verify(f, &f.bundle("other"), &f.digest, &root, &default_policy(f)),
        VerdictCode::DigestMismatch,
    );
    // A signer the policy does not trust is that, whatever it signed.
    let stranger = policy_with(vec![IdentityRule::new(
        Matcher::Exact(f.issuer.clone()),
        Matcher::Exact("someone".into()),
    )]);
    assert_code(
        verify(f, &f.bundle("dsse"), &f.other_digest, &root, &stranger),
        VerdictCode::UntrustedSigner,
    );
    // An expired signature over another digest is expired first.
    assert_code(
        verify(
            f,
            &f.bundle("expired"),
            &f.other_digest,
            &root,
            &default_policy(f),
        ),
        VerdictCode::Expired,
    );
}

#[test]
fn a_changed_payload_or_signature_is_an_invalid_signature() {
    let f = fixtures();
    let root = f.trusted_root();
    let mut b = f.bundle("dsse");
    flip_base64(&mut b["dsseEnvelope"]["signatures"][0]["sig"]);
    assert_code(
        verify(f, &b, &f.digest, &root, &default_policy(f)),
        VerdictCode::InvalidSignature,
    );
    let mut b = f.bundle("message");
    flip_base64(&mut b["messageSignature"]["signature"]);
    assert_code(
        verify(f, &b, &f.digest, &root, &default_policy(f)),
        VerdictCode::InvalidSignature,
    );
    // The statement re-written to name another digest: the DSSE signature no longer holds.
    let mut b = f.bundle("dsse");
    let payload = String::from_utf8(
        B64.decode(b["dsseEnvelope"]["payload"].as_str().expect("payload"))
            .expect("b64"),
    )
    .expect("utf-8");
    let other_hex = f.other_digest.trim_start_matches("sha256:");
    let forged = payload.replace(f.digest.trim_start_matches("sha256:"), other_hex);
    b["dsseEnvelope"]["payload"] = B64.encode(forged).into();
    assert_code(
        verify(f, &b, &f.other_digest, &root, &default_policy(f)),
        VerdictCode::InvalidSignature,
    );
}

// --- GitHub's private shape -------------------------------------------------------------

#[test]
fn the_timestamp_only_shape_verifies_only_under_a_policy_that_allows_it() {
    let f = fixtures();
    let root = f.trusted_root();
    let b = f.bundle("private");
    assert_eq!(
        b["verificationMaterial"]["tlogEntries"],
        json!(null),
        "no log entry: {b}"
    );
    let v = verify(f, &b, &f.digest, &root, &private_policy(f))
        .expect("tlog: skip, sct: skip, tsa: required");
    assert_eq!(
        (v.tsa_times.len(), v.log_times.len(), v.log_entries),
        (1, 0, 0)
    );
    let e = assert_code(
        verify(f, &b, &f.digest, &root, &default_policy(f)),
        VerdictCode::InvalidSignature,
    );
    assert!(e.detail().contains("transparency log"), "{e}");
    // Skipping the log but not the SCT: the certificate has none.
    let sct = KeylessPolicy::with_modes(
        TlogMode::Skip,
        SctMode::Required,
        TsaMode::Required,
        default_policy(f).identities().to_vec(),
    )
    .expect("policy");
    assert_code(
        verify(f, &b, &f.digest, &root, &sct),
        VerdictCode::UntrustedSigner,
    );
    // A timestamp authority the root does not list.
    let no_tsa = f.trusted_root_with(|r| r["timestampAuthorities"] = json!([]));
    assert_code(
        verify(f, &b, &f.digest, &no_tsa, &private_policy(f)),
        VerdictCode::InvalidSignature,
    );
    // The timestamp is over the signature: a bundle with another signature is refused.
    let mut b2 = b.clone();
    b2["verificationMaterial"]["timestampVerificationData"] =
        f.bundle("dsseTsa")["verificationMaterial"]["timestampVerificationData"].clone();
    assert_code(
        verify(f, &b2, &f.digest, &root, &private_policy(f)),
        VerdictCode::InvalidSignature,
    );
    // The private policy still checks a log entry that is present.
    let mut b3 = f.bundle("dsseTsa");
    flip_base64(
        &mut b3["verificationMaterial"]["tlogEntries"][0]["inclusionPromise"]["signedEntryTimestamp"],
    );
    assert_code(
        verify(f, &b3, &f.digest, &root, &private_policy(f)),
        VerdictCode::InvalidSignature,
    );
}

// --- Legacy cosign annotations ----------------------------------------------------------

#[test]
fn the_legacy_annotation_form_verifies() {
    let f = fixtures();
    let root = f.trusted_root();
    let sig = f.legacy("legacy");
    let v = verify_legacy(&sig, &f.digest, &root, &default_policy(f)).expect("verifies");
    assert_eq!(v.identity, f.subject);
    assert_eq!(v.content, SignedContent::MessageSignature);
    assert_eq!(
        v.media_type,
        "application/vnd.dev.sigstore.bundle+json;version=0.1"
    );
    assert_eq!((v.log_times.len(), v.tsa_times.len()), (1, 0));
    // With the RFC 3161 annotation.
    let v = verify_legacy(&f.legacy("legacyTsa"), &f.digest, &root, &default_policy(f))
        .expect("verifies");
    assert_eq!((v.log_times.len(), v.tsa_times.len()), (1, 1));
    // Without the chain annotation (the leaf chains to the root's CA directly).
    let mut bare = f.legacy("legacy");
    bare.chain_pem = None;
    verify_legacy(&bare, &f.digest, &root, &default_policy(f)).expect("verifies");
}

#[test]
fn legacy_failures_have_their_codes() {
    let f = fixtures();
    let root = f.trusted_root();
    let p = default_policy(f);
    // The payload names another image.
    let e = assert_code(
        verify_legacy(&f.legacy("legacy"), &f.other_digest, &root, &p),
        VerdictCode::DigestMismatch,
    );
    assert!(e.detail().contains(&f.digest), "{e}");
    // A tampered SET.
    let mut sig = f.legacy("legacy");
    let mut rekor: Value =
        serde_json::from_str(sig.rekor_bundle.as_deref().expect("bundle")).expect("json");
    flip_base64(&mut rekor["SignedEntryTimestamp"]);
    sig.rekor_bundle = Some(rekor.to_string());
    assert_code(
        verify_legacy(&sig, &f.digest, &root, &p),
        VerdictCode::InvalidSignature,
    );
    // A backdated integratedTime.
    let mut sig = f.legacy("legacy");
    let mut rekor: Value =
        serde_json::from_str(sig.rekor_bundle.as_deref().expect("bundle")).expect("json");
    rekor["Payload"]["integratedTime"] =
        json!(rekor["Payload"]["integratedTime"].as_i64().expect("time") - 30);
    sig.rekor_bundle = Some(rekor.to_string());
    assert_code(
        verify_legacy(&sig, &f.digest, &root, &p),
        VerdictCode::InvalidSignature,
    );
    // The Rekor entry of another signature.
    let mut sig = f.legacy("legacy");
    sig.rekor_bundle = f.legacy("legacyTsa").rekor_bundle;
    assert_code(
        verify_legacy(&sig, &f.digest, &root, &p),
        VerdictCode::InvalidSignature,
    );
    // No Rekor bundle annotation: a required log entry is missing.
    let mut sig = f.legacy("legacy");
    sig.rekor_bundle = None;
    assert_code(
        verify_legacy(&sig, &f.digest, &root, &p),
        VerdictCode::InvalidSignature,
    );
    // ... which a timestamp-only policy accepts when there is a timestamp.
    let mut sig = f.legacy("legacyTsa");
    sig.rekor_bundle = None;
    verify_legacy(&sig, &f.digest, &root, &private_policy(f)).expect("timestamp only");
    // Payload changed after signing.
    let mut sig = f.legacy("legacy");
    sig.payload.push(b' ');
    assert_code(
        verify_legacy(&sig, &f.digest, &root, &p),
        VerdictCode::InvalidSignature,
    );
    // Another identity.
    let stranger = policy_with(vec![IdentityRule::new(
        Matcher::Exact(f.issuer.clone()),
        Matcher::Exact("someone".into()),
    )]);
    assert_code(
        verify_legacy(&f.legacy("legacy"), &f.digest, &root, &stranger),
        VerdictCode::UntrustedSigner,
    );
    // Another signer's certificate.
    let mut sig = f.legacy("legacy");
    sig.certificate_pem = f.legacy("legacyTsa").certificate_pem;
    assert_code(
        verify_legacy(&sig, &f.digest, &root, &p),
        VerdictCode::InvalidSignature,
    );
    // Annotations that are not what they claim.
    for edit in [
        |s: &mut vouch::keyless::LegacySignature| s.signature_b64 = Some("not base64!".into()),
        |s: &mut vouch::keyless::LegacySignature| s.certificate_pem = None,
        |s: &mut vouch::keyless::LegacySignature| s.rekor_bundle = Some("{}".into()),
        |s: &mut vouch::keyless::LegacySignature| s.rfc3161_timestamp = Some("[]".into()),
    ] {
        let mut sig = f.legacy("legacyTsa");
        edit(&mut sig);
        assert_code(
            verify_legacy(&sig, &f.digest, &root, &p),
            VerdictCode::InvalidSignature,
        );
    }
}

// --- Trusted root -----------------------------------------------------------------------

#[test]
fn a_root_whose_log_keys_lack_a_validity_start_is_refused() {
    let f = fixtures();
    let mut root = f.root.clone();
    root["tlogs"][0]["publicKey"]["validFor"] = json!({"end": rfc3339(now_secs() + 3600)});
    let e = TrustedRoot::from_json(&serde_json::to_vec(&root).expect("json")).expect_err("refused");
    assert!(e.to_string().contains("validFor.start"), "{e}");
}

// --- Published conformance vectors ------------------------------------------------------

const DEFAULT_IDENTITY: &str = "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main";
const DEFAULT_ISSUER: &str = "https://token.actions.githubusercontent.com";

fn conformance_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sigstore/conformance/bundle-verify")
}

/// One vector through the API, as the conformance suite runs it: the default policy,
/// the vector's identity and issuer (or the suite's defaults), its trusted root (or
/// Sigstore's public-good root) and its artifact (or `a.txt`). `Err` carries the reason a
/// root was refused, `Ok(Err)` a verification failure.
fn run_vector(dir: &Path) -> Result<Result<Verified, KeylessError>, String> {
    use sha2::Digest as _;
    let read = |name: &str| std::fs::read(dir.join(name)).ok();
    let text = |name: &str, default: &str| {
        read(name).map_or(default.to_string(), |b| {
            String::from_utf8_lossy(&b).trim().to_string()
        })
    };
    let root_json = read("trusted_root.json").unwrap_or_else(|| {
        sigstore_trust_root::SIGSTORE_PRODUCTION_TRUSTED_ROOT
            .as_bytes()
            .to_vec()
    });
    let root = TrustedRoot::from_json(&root_json).map_err(|e| e.to_string())?;
    let artifact = read("artifact")
        .or_else(|| std::fs::read(conformance_dir().join("a.txt")).ok())
        .expect("artifact");
    let digest = format!("sha256:{}", hex(&sha2::Sha256::digest(&artifact)));
    let policy = policy_with(vec![IdentityRule::new(
        Matcher::Exact(text("issuer", DEFAULT_ISSUER)),
        Matcher::Exact(text("identity", DEFAULT_IDENTITY)),
    )]);
    let bundle = read("bundle.sigstore.json").expect("bundle");
    Ok(verify_bundle(&bundle, &digest, &root, &policy))
}

#[test]
fn conformance_vectors_have_their_published_outcomes() {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(conformance_dir())
        .expect("conformance vectors")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 60, "{} vectors", dirs.len());
    let mut wrong = Vec::new();
    for dir in &dirs {
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let expect_pass = !name.ends_with("_fail");
        let outcome = run_vector(dir);
        let line = match &outcome {
            Ok(Ok(v)) => format!("verified ({})", v.identity),
            Ok(Err(e)) => format!("{:?}: {}", e.code(), e.detail()),
            Err(e) => format!("trusted root refused: {e}"),
        };
        let passed = matches!(outcome, Ok(Ok(_)));
        println!(
            "{} {name}: {line}",
            if passed == expect_pass {
                "ok  "
            } else {
                "WRONG"
            }
        );
        if passed != expect_pass {
            wrong.push(format!("{name}: {line}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "vectors with the wrong outcome:\n{}",
        wrong.join("\n")
    );
}

// --- Cost -------------------------------------------------------------------------------

/// CPU time of one bundle verification (release build: `cargo test --release --test
/// keyless -- --ignored --nocapture cpu_per_verification`). Prints, asserts nothing about
/// speed.
#[test]
#[ignore]
fn cpu_per_verification() {
    fn thread_cpu() -> Duration {
        // /proc/thread-self/schedstat: nanoseconds on CPU, first field.
        let text = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
        Duration::from_nanos(
            text.split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
        )
    }
    let f = fixtures();
    let root = f.trusted_root();
    let p = default_policy(f);
    for (name, digest) in [
        ("dsse", f.digest.clone()),
        ("message", f.digest.clone()),
        ("dsseTsa", f.digest.clone()),
    ] {
        let bytes = f.bundle_bytes(name);
        let rounds = 500u32;
        verify_bundle(&bytes, &digest, &root, &p).expect("verifies");
        let (cpu, wall) = (thread_cpu(), std::time::Instant::now());
        for _ in 0..rounds {
            verify_bundle(&bytes, &digest, &root, &p).expect("verifies");
        }
        let (cpu, wall) = (thread_cpu() - cpu, wall.elapsed());
        println!(
            "{name}: {:?} CPU, {:?} wall per verification ({rounds} rounds)",
            cpu / rounds,
            wall / rounds
        );
    }
    let sig = f.legacy("legacy");
    let (cpu, rounds) = (thread_cpu(), 500u32);
    for _ in 0..rounds {
        verify_legacy(&sig, &f.digest, &root, &p).expect("verifies");
    }
    println!(
        "legacy: {:?} CPU per verification",
        (thread_cpu() - cpu) / rounds
    );
}
