//! Keyless signatures from an independent implementation: `tests/sigstore/sign.js` signs
//! with sigstore-js (`@sigstore/sign`) against the mock Fulcio, Rekor, CT log and TSA of
//! `@sigstore/mock`, all in one Node process with no network (nock interceptors), and
//! prints the mock instance's trusted root and the bundles on stdout. The script runs once
//! per test binary, as a child process bounded by [`RUN_LIMIT`].
//!
//! Its node_modules live outside the work tree, in `target/sigstore-node` (installed by
//! `.ci/run` with `npm ci` from `tests/sigstore/package-lock.json`); `NODE_PATH` points
//! the script at them.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

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
    /// `noSct`, `private`, `evilSubject`, `legacy`, `legacyTsa` (see sign.js).
    pub bundles: BTreeMap<String, Value>,
}

/// The fixtures, made on first use.
pub fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(sign)
}

fn sign() -> Fixtures {
    let modules = node_modules();
    assert!(
        modules.join("@sigstore/sign").is_dir(),
        "{} is missing: run `.ci/run`, or `npm ci --prefix target/sigstore-node` after copying tests/sigstore/package*.json there",
        modules.display()
    );
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sigstore/sign.js");
    let node = std::env::var("NODE").unwrap_or_else(|_| "node".into());
    let mut child = Command::new(&node)
        .arg(&script)
        .env("NODE_PATH", &modules)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{node} {}: {e}", script.display()));
    let reader = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = pipe.read_to_end(&mut out);
            out
        })
    };
    let stdout = reader(Box::new(child.stdout.take().expect("stdout")));
    let stderr = reader(Box::new(child.stderr.take().expect("stderr")));
    let until = Instant::now() + RUN_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for sign.js") {
            break status;
        }
        if Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            panic!("sign.js took longer than {RUN_LIMIT:?}; killed");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stdout = stdout.join().expect("stdout reader");
    let stderr = String::from_utf8_lossy(&stderr.join().expect("stderr reader")).into_owned();
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
        let b = self.bundle(name);
        let material = &b["verificationMaterial"];
        let leaf = material["x509CertificateChain"]["certificates"][0]["rawBytes"]
            .as_str()
            .expect("leaf certificate");
        let mut annotations = vec![
            (
                SIGNATURE_ANNOTATION.to_string(),
                b["messageSignature"]["signature"]
                    .as_str()
                    .expect("signature")
                    .to_string(),
            ),
            (
                CERTIFICATE_ANNOTATION.to_string(),
                pem(&B64.decode(leaf).expect("base64")),
            ),
            (CHAIN_ANNOTATION.to_string(), pem(&self.ca_root)),
        ];
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
        LegacySignature::from_annotations(self.payload.clone(), annotations)
    }
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
