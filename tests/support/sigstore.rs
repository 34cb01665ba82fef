//! Keyless signatures from an independent implementation: `tests/sigstore/sign.js` signs
//! with sigstore-js (`@sigstore/sign`) against the mock Fulcio, Rekor, CT log and TSA of
//! `@sigstore/mock`, all in one Node process with no network (nock interceptors), and
//! prints the mock instance's trusted root and the bundles on stdout. The script runs once
//! per test binary, as a child process bounded by [`RUN_LIMIT`].
//!
//! Its node_modules live outside the work tree, in `target/sigstore-node` (installed by
//! `.ci/run` with `npm ci` from `tests/sigstore/package-lock.json`); `NODE_PATH` points
//! the script at them.
//!
//! The signed "images" are real OCI image manifests (the `{}` config, no layers), so
//! [`push_image`], [`push_legacy`] and [`push_bundle`] put them and their signatures into a
//! registry byte for byte, as cosign ≤ v2 (the `.sig` tag) and cosign v3 (a bundle
//! referrer) leave them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use super::layout::{Descriptor, LayoutServer, push_referrer};
use super::registry::{
    OCI_MANIFEST, Pusher, SignatureImage, push_signature_layers, sha256_digest, signature_tag,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use vouch::keyless::{
    BUNDLE_ANNOTATION, CERTIFICATE_ANNOTATION, CHAIN_ANNOTATION, LegacySignature,
    RFC3161_TIMESTAMP_ANNOTATION, SIGNATURE_ANNOTATION, TrustedRoot,
};

/// How long the signing script may take (it takes about half a second).
pub const RUN_LIMIT: Duration = Duration::from_secs(60);

/// The `.ci/run` install location of the script's dependencies.
pub fn node_modules() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/sigstore-node/node_modules")
}

/// What one run of the signing script produced.
#[derive(Debug)]
pub struct Fixtures {
    /// The mock instance's TrustedRoot JSON.
    pub root: Value,
    /// The SAN and issuer of the certificates (apart from the `evilSubject` bundle).
    pub subject: String,
    pub issuer: String,
    /// The image digest: of [`Self::manifest`], which the message bundles sign, and named
    /// by the DSSE statements and the legacy payload.
    pub digest: String,
    /// The digest of another artifact, signed by the `other` bundle.
    pub other_digest: String,
    /// The "image manifest" the message bundles sign.
    pub manifest: Vec<u8>,
    /// The simple-signing payload the `legacy*` bundles sign.
    pub payload: Vec<u8>,
    /// The mock Fulcio root certificate (DER).
    pub ca_root: Vec<u8>,
    /// Bundles by name: `dsse`, `dsseTsa`, `message`, `other`, `expired`,
    /// `noSct`, `private`, `evilSubject`, `legacy`, `legacyTsa`, `slsa` (an attestation:
    /// SLSA provenance, not a signature; see sign.js).
    pub bundles: BTreeMap<String, Value>,
    /// Further images, each signed three ways (`SIGN_IMAGES`).
    pub images: Vec<SignedImage>,
    /// Keyless DSSE bundles of the requested attestations, by name.
    pub attestations: BTreeMap<String, Value>,
    /// The same statements as DSSE envelopes signed with one EC key (`cosign attest --key`).
    pub keyed_envelopes: BTreeMap<String, Value>,
    /// That key, PEM SubjectPublicKeyInfo.
    pub keyed_public_pem: String,
}

/// An attestation for sign.js to make: a statement of `predicate_type` over the fixture
/// image (or, with `other_subject`, another digest), signed by the trusted workflow
/// identity (or, with `evil`, an identity no test policy trusts).
#[derive(Debug, Clone, serde::Serialize)]
pub struct AttestationSpec {
    pub name: String,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    pub predicate: Value,
    pub subject: &'static str,
    pub identity: &'static str,
}

impl AttestationSpec {
    /// A statement over the fixture image, by the trusted identity.
    pub fn new(name: &str, predicate_type: &str, predicate: Value) -> AttestationSpec {
        AttestationSpec {
            name: name.into(),
            predicate_type: predicate_type.into(),
            predicate,
            subject: "image",
            identity: "ci",
        }
    }

    /// The same statement over another digest.
    pub fn about_another_image(mut self) -> Self {
        self.subject = "other";
        self
    }

    /// The same statement signed by an identity no test policy trusts.
    pub fn by_an_untrusted_identity(mut self) -> Self {
        self.identity = "evil";
        self
    }
}

/// An image manifest and its signatures: bundles `dsse` (cosign's signing predicate),
/// `message` (over the manifest) and `legacy` (over [`SignedImage::payload`]), and `slsa`, a
/// SLSA provenance attestation of it (GitHub's shape, built from `acme/app` at a tag).
#[derive(Debug, Clone)]
pub struct SignedImage {
    pub manifest: Vec<u8>,
    pub digest: String,
    pub payload: Vec<u8>,
    pub bundles: BTreeMap<String, Value>,
}

impl SignedImage {
    /// Bundle `name` as JSON bytes.
    pub fn bundle_bytes(&self, name: &str) -> Vec<u8> {
        serde_json::to_vec(
            self.bundles
                .get(name)
                .unwrap_or_else(|| panic!("no {name}")),
        )
        .expect("json")
    }
}

/// Images [`fixtures`] signs beyond the named bundles' own.
pub const FIXTURE_IMAGES: usize = 4;

/// The fixtures, made on first use.
pub fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(|| sign(FIXTURE_IMAGES))
}

/// One run of the signing script, with `images` further images.
pub fn sign(images: usize) -> Fixtures {
    sign_with(images, &[])
}

/// One run of the signing script, with `images` further images and the attestations of
/// `statements`.
pub fn sign_with(images: usize, statements: &[AttestationSpec]) -> Fixtures {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec_file = dir.path().join("statements.json");
    std::fs::write(&spec_file, serde_json::to_vec(statements).expect("json")).expect("spec");
    let modules = node_modules();
    assert!(
        modules.join("@sigstore/sign").is_dir(),
        "{} is missing: run `.ci/run`, or `npm ci --prefix target/sigstore-node` after copying tests/sigstore/package*.json there",
        modules.display()
    );
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sigstore/sign.js");
    let node = std::env::var("NODE").unwrap_or_else(|_| "node".into());
    let mut command = Command::new(&node);
    command
        .arg(&script)
        .env("NODE_PATH", &modules)
        .env("SIGN_IMAGES", images.to_string())
        .env("SIGN_STATEMENTS", &spec_file);
    let out = super::run_within(command, None, RUN_LIMIT, "sign.js");
    let (status, stdout) = (out.status, out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(status.success(), "sign.js failed ({status}):\n{stderr}");
    let v: Value = serde_json::from_slice(&stdout)
        .unwrap_or_else(|e| panic!("sign.js printed no JSON: {e}\n{stderr}"));
    let text = |k: &str| v[k].as_str().unwrap_or_else(|| panic!("{k}")).to_string();
    let bytes = |k: &str| B64.decode(text(k)).unwrap_or_else(|e| panic!("{k}: {e}"));
    Fixtures {
        root: v["trustedRoot"].clone(),
        subject: text("subject"),
        issuer: text("issuer"),
        digest: text("digest"),
        other_digest: text("otherDigest"),
        manifest: bytes("manifest"),
        payload: bytes("payload"),
        ca_root: bytes("caRoot"),
        bundles: serde_json::from_value(v["bundles"].clone()).expect("bundles"),
        images: v["images"]
            .as_array()
            .expect("images")
            .iter()
            .map(|i| {
                let text = |k: &str| i[k].as_str().unwrap_or_else(|| panic!("{k}")).to_string();
                let bytes = |k: &str| B64.decode(text(k)).unwrap_or_else(|e| panic!("{k}: {e}"));
                SignedImage {
                    manifest: bytes("manifest"),
                    digest: text("digest"),
                    payload: bytes("payload"),
                    bundles: serde_json::from_value(i["bundles"].clone()).expect("bundles"),
                }
            })
            .collect(),
        attestations: serde_json::from_value(v["attestations"].clone()).expect("attestations"),
        keyed_envelopes: serde_json::from_value(v["keyed"]["envelopes"].clone())
            .expect("keyed envelopes"),
        keyed_public_pem: v["keyed"]["publicKeyPem"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    }
}

impl Fixtures {
    /// A bundle, for editing.
    pub fn bundle(&self, name: &str) -> Value {
        self.bundles
            .get(name)
            .unwrap_or_else(|| panic!("no bundle {name}"))
            .clone()
    }

    pub fn bundle_bytes(&self, name: &str) -> Vec<u8> {
        serde_json::to_vec(&self.bundle(name)).expect("json")
    }

    /// The mock instance's trusted root.
    pub fn trusted_root(&self) -> TrustedRoot {
        self.trusted_root_with(|_| {})
    }

    /// The trusted root after `edit`.
    pub fn trusted_root_with(&self, edit: impl FnOnce(&mut Value)) -> TrustedRoot {
        let mut root = self.root.clone();
        edit(&mut root);
        TrustedRoot::from_json(&serde_json::to_vec(&root).expect("json"))
            .unwrap_or_else(|e| panic!("trusted root refused: {e}"))
    }

    /// The legacy `.sig` layer equivalent to message bundle `name` (signed over
    /// [`Self::payload`]): its certificate, signature, Rekor entry (as cosign's bundle
    /// annotation) and RFC 3161 timestamp, with the Fulcio root as the untrusted chain,
    /// as cosign writes it.
    pub fn legacy(&self, name: &str) -> LegacySignature {
        LegacySignature::from_annotations(
            self.payload.clone(),
            self.legacy_annotations(&self.bundle(name)),
        )
    }

    /// The annotations of the legacy `.sig` layer equivalent to message bundle `b`.
    pub fn legacy_annotations(&self, b: &Value) -> Vec<(String, String)> {
        let material = &b["verificationMaterial"];
        let leaf = material["x509CertificateChain"]["certificates"][0]["rawBytes"]
            .as_str()
            .or_else(|| material["certificate"]["rawBytes"].as_str())
            .expect("leaf certificate");
        let mut annotations = Vec::new();
        if let Some(sig) = b["messageSignature"]["signature"].as_str() {
            annotations.push((SIGNATURE_ANNOTATION.to_string(), sig.to_string()));
        }
        annotations.push((
            CERTIFICATE_ANNOTATION.to_string(),
            pem(&B64.decode(leaf).expect("base64")),
        ));
        annotations.push((CHAIN_ANNOTATION.to_string(), pem(&self.ca_root)));
        if let Some(entry) = material["tlogEntries"].get(0) {
            let log_id = B64
                .decode(entry["logId"]["keyId"].as_str().expect("logId"))
                .expect("base64");
            let number = |k: &str| -> i64 {
                entry[k]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("{k}"))
            };
            let rekor = json!({
                "SignedEntryTimestamp": entry["inclusionPromise"]["signedEntryTimestamp"],
                "Payload": {
                    "body": entry["canonicalizedBody"],
                    "integratedTime": number("integratedTime"),
                    "logIndex": number("logIndex"),
                    "logID": hex(&log_id),
                },
            });
            annotations.push((BUNDLE_ANNOTATION.to_string(), rekor.to_string()));
        }
        if let Some(ts) = material["timestampVerificationData"]["rfc3161Timestamps"].get(0) {
            annotations.push((
                RFC3161_TIMESTAMP_ANNOTATION.to_string(),
                json!({"SignedRFC3161Timestamp": ts["signedTimestamp"]}).to_string(),
            ));
        }
        annotations
    }

    /// The trusted root JSON, for a config's `trustedRoot` file.
    pub fn root_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(&self.root).expect("json")
    }
}

/// The bundle media type and artifact type cosign v3 writes.
pub const BUNDLE_V03: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";

/// Pushes a signed image manifest as `repo:tag`: its `{}` config blob, then the manifest
/// bytes. Returns its descriptor.
pub async fn push_image(pusher: &Pusher, repo: &str, tag: &str, manifest: &[u8]) -> Descriptor {
    pusher.push_blob(repo, b"{}").await;
    pusher
        .push_manifest(repo, tag, OCI_MANIFEST, manifest)
        .await;
    Descriptor::of_manifest(OCI_MANIFEST, manifest)
}

/// Pushes a legacy keyless signature of `image_digest` as cosign ≤ v2 does: the payload as a
/// simple-signing layer of the `sha256-<hex>.sig` image, annotated with the signature,
/// certificate, chain, Rekor bundle and timestamp.
pub async fn push_legacy(
    pusher: &Pusher,
    repo: &str,
    image_digest: &str,
    payload: &[u8],
    annotations: &[(String, String)],
) -> String {
    let annotations: serde_json::Map<String, Value> = annotations
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    push_signature_layers(
        pusher,
        repo,
        image_digest,
        &[(payload.to_vec(), annotations)],
    )
    .await
}

/// The manifest cosign v3 writes for a bundle referrer: artifact type and layer the bundle
/// media type, the empty config, `subject` the image; its annotations are cosign's (and are
/// never read).
pub fn bundle_manifest(subject: &Descriptor, bundle_digest: &str, bundle_size: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": BUNDLE_V03,
        "config": {
            "mediaType": "application/vnd.oci.empty.v1+json",
            "digest": sha256_digest(b"{}"),
            "size": 2,
            "data": "e30=",
        },
        "layers": [{"mediaType": BUNDLE_V03, "digest": bundle_digest, "size": bundle_size}],
        "subject": subject.subject_json(),
        "annotations": {
            "dev.sigstore.bundle.content": "dsse-envelope",
            "dev.sigstore.bundle.predicateType": "https://sigstore.dev/cosign/sign/v1",
        },
    }))
    .expect("bundle manifest json")
}

/// Pushes `bundle` as a referrer of `subject`, as cosign v3 does against a registry without
/// the referrers API: the empty config and bundle blobs, the bundle manifest by digest, and
/// the subject's `sha256-<hex>` tag-schema index. Returns the referrer's descriptor.
pub async fn push_bundle(
    pusher: &Pusher,
    repo: &str,
    subject: &Descriptor,
    bundle: &[u8],
) -> Descriptor {
    pusher.push_blob(repo, b"{}").await;
    let bundle_digest = pusher.push_blob(repo, bundle).await;
    let manifest = bundle_manifest(subject, &bundle_digest, bundle.len());
    push_referrer(pusher, repo, &subject.digest, &manifest, BUNDLE_V03).await
}

/// Pushes an attestation layer as cosign ≤ v2 does (`cosign attest`): the DSSE envelope as
/// a layer of the `sha256-<hex>.att` image, with `annotations` (keyless: the certificate,
/// chain and Rekor bundle; with a key: an empty signature annotation).
pub async fn push_attestation_layer(
    pusher: &Pusher,
    repo: &str,
    image_digest: &str,
    envelope: &[u8],
    annotations: &[(String, String)],
) -> String {
    let mut map: serde_json::Map<String, Value> = annotations
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    map.entry("dev.cosignproject.cosign/signature")
        .or_insert_with(|| json!(""));
    let image = SignatureImage::of_type(DSSE_ENVELOPE, &[(envelope.to_vec(), map)]);
    for blob in image.blobs() {
        pusher.push_blob(repo, blob).await;
    }
    let tag = format!("{}.att", image_digest.replacen(':', "-", 1));
    pusher
        .push_manifest(repo, &tag, OCI_MANIFEST, &image.manifest)
        .await
}

/// The media type of cosign's attestation layers.
pub const DSSE_ENVELOPE: &str = "application/vnd.dsse.envelope.v1+json";

impl Fixtures {
    /// The annotations of a legacy keyless `.att` layer equivalent to DSSE bundle `b` (its
    /// certificate, the Fulcio root as chain, its Rekor entry); the layer's blob is
    /// `b["dsseEnvelope"]`.
    pub fn legacy_attestation_annotations(&self, b: &Value) -> Vec<(String, String)> {
        self.legacy_annotations(b)
    }
}

/// What [`push_legacy`] does, on the in-process OCI 1.1 server.
pub fn add_legacy(
    server: &LayoutServer,
    repo: &str,
    image_digest: &str,
    payload: &[u8],
    annotations: &[(String, String)],
) {
    let annotations: serde_json::Map<String, Value> = annotations
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let image = SignatureImage::of(&[(payload.to_vec(), annotations)]);
    for blob in image.blobs() {
        server.add_blob(repo, blob.to_vec());
    }
    let d = server.add_manifest(repo, image.manifest.clone(), OCI_MANIFEST);
    server.set_tag(repo, &signature_tag(image_digest), &d.digest);
}

/// What [`push_bundle`] does, on the in-process OCI 1.1 server (whose referrers API lists
/// the manifest by its `subject`).
pub fn add_bundle(server: &LayoutServer, repo: &str, subject: &Descriptor, bundle: &[u8]) {
    server.add_blob(repo, b"{}".to_vec());
    let bundle_digest = server.add_blob(repo, bundle.to_vec());
    server.add_manifest(
        repo,
        bundle_manifest(subject, &bundle_digest, bundle.len()),
        OCI_MANIFEST,
    );
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// DER as one PEM certificate.
pub fn pem(der: &[u8]) -> String {
    let b64 = B64.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}
