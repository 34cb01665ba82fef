//! Required attestations end to end: in-toto statements signed by sigstore-js against its
//! mock Sigstore (keyless DSSE bundles) and by Node's crypto (key-based DSSE envelopes),
//! pushed byte for byte into Debian's `docker-registry` as cosign and GitHub's attest
//! action leave them — bundle referrers, cosign's `sha256-<hex>.att` layers — and judged by
//! the shipped Rego policies. What it proves: an attestation is read only after a verifier
//! of the policy vouched for it and only if it names the image (an untrusted signer or
//! another subject is ignored: `missing-attestation`); a policy's deny messages become
//! `attestation-denied` quoting them; the legacy `.att` form and key-based envelopes are
//! read too; an oversized attestation is not read (no memory blow-up) and the image is
//! denied; a looping module is stopped by `limits.regoTimeout`; a syntax error is named by
//! `vouch config check` with its line; a cached verdict carries its attestation report, and
//! a changed module is re-evaluated, never served from the old verdict.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use support::layout::Descriptor;
use support::registry::*;
use support::sigstore::*;
use support::*;

const SLSA: &str = "https://slsa.dev/provenance/v1";
const VULN: &str = "https://cosign.sigstore.dev/attestation/vuln/v1";
const SPDX: &str = "https://spdx.dev/Document";

fn shipped(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("policies/attestations")
        .join(name)
}

/// A SLSA provenance v1 predicate as GitHub's attest action writes it, built from `repo`.
fn provenance(repo: &str) -> Value {
    json!({
        "buildDefinition": {
            "buildType": "https://actions.github.io/buildtypes/workflow/v1",
            "externalParameters": {"workflow": {
                "ref": "refs/tags/v1.0.0",
                "repository": format!("https://github.com/{repo}"),
                "path": ".github/workflows/release.yml",
            }},
            "internalParameters": {"github": {"event_name": "push", "runner_environment": "github-hosted"}},
            "resolvedDependencies": [{"uri": format!("git+https://github.com/{repo}@refs/tags/v1.0.0"), "digest": {"gitCommit": "a".repeat(40)}}],
        },
        "runDetails": {
            "builder": {"id": "https://github.com/actions/runner/github-hosted"},
            "metadata": {"invocationId": format!("https://github.com/{repo}/actions/runs/1/attempts/1")},
        },
    })
}

/// A cosign vulnerability predicate with one Trivy finding of `severity`.
fn vuln_report(id: &str, severity: &str) -> Value {
    json!({
        "invocation": {"uri": "", "event_id": "", "builder.id": ""},
        "scanner": {
            "uri": "pkg:github/aquasecurity/trivy@244fd47",
            "version": "0.34.0",
            "db": {"uri": "", "version": ""},
            "result": {"SchemaVersion": 2, "Results": [{"Target": "app", "Vulnerabilities": [
                {"VulnerabilityID": id, "PkgName": "openssl", "InstalledVersion": "3.0.1", "Severity": severity}
            ]}]},
        },
        "metadata": {"scanStartedOn": "2026-11-30T00:00:00Z", "scanFinishedOn": "2026-11-30T00:01:00Z"},
    })
}

/// The statements every test here signs.
fn specs() -> Vec<AttestationSpec> {
    vec![
        AttestationSpec::new("slsaGood", SLSA, provenance("acme/app")),
        AttestationSpec::new("slsaEvil", SLSA, provenance("evil/app")),
        AttestationSpec::new("slsaUntrusted", SLSA, provenance("acme/app"))
            .by_an_untrusted_identity(),
        AttestationSpec::new("slsaOther", SLSA, provenance("acme/app")).about_another_image(),
        AttestationSpec::new(
            "vulnCritical",
            VULN,
            vuln_report("CVE-2026-0001", "CRITICAL"),
        ),
        AttestationSpec::new("vulnLow", VULN, vuln_report("CVE-2026-0002", "LOW")),
        AttestationSpec::new("sbomSpdx", SPDX, published("sbom-spdx-2.3.json")),
    ]
}

/// The predicate of a published example statement (`tests/attestations/`).
fn published(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/attestations")
        .join(name);
    let statement: Value =
        serde_json::from_slice(&std::fs::read(&path).expect("example")).expect("json");
    statement["predicate"].clone()
}

fn fixtures() -> &'static Fixtures {
    static F: std::sync::OnceLock<Fixtures> = std::sync::OnceLock::new();
    F.get_or_init(|| sign_with(0, &specs()))
}

/// A keyless policy requiring a SLSA provenance from `acme/app` (and `extra` YAML under the
/// policy's attestations list).
fn config(host: &str, root: &Path, slsa_policy: &Path, extra_attestations: &str) -> String {
    format!(
        "limits: {{maxAttestationBytes: 1048576, regoTimeout: 100ms}}\nregistries:\n- host: {host}\n  plainHttp: true\npolicies:\n- name: acme-ci\n  scopes: [\"{host}/acme/*\"]\n  verifiers:\n  - keyless:\n      trustedRoot: {root}\n      identities:\n      - {{issuer: \"https://token.actions.githubusercontent.com\", subject: \"{subject}\"}}\n  attestations:\n  - predicateType: {SLSA}\n    policy: {slsa}\n    params: {{repositories: [\"https://github.com/acme/app\"]}}\n{extra_attestations}",
        root = root.display(),
        subject = fixtures().subject,
        slsa = slsa_policy.display(),
    )
}

async fn verdict(v: &Vouch, key: &str) -> Value {
    only_verdict(&v.verify(&[key]).await)
}

/// The fixture image at `repo:v1`, signed (a DSSE signature bundle), with `bundles`
/// attached as referrers.
async fn signed_image(pusher: &Pusher, repo: &str, bundles: &[&Value]) -> Descriptor {
    let f = fixtures();
    let d = push_image(pusher, repo, "v1", &f.manifest).await;
    push_bundle(pusher, repo, &d, &f.bundle_bytes("dsse")).await;
    for b in bundles {
        push_bundle(pusher, repo, &d, &serde_json::to_vec(b).expect("json")).await;
    }
    d
}

struct Setup {
    registry: Registry,
    pusher: Pusher,
    dir: tempfile::TempDir,
    root: PathBuf,
}

fn setup() -> Setup {
    let registry = Registry::start();
    let pusher = Pusher::new(&registry);
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("trusted_root.json");
    std::fs::write(&root, fixtures().root_json()).expect("root");
    Setup {
        registry,
        pusher,
        dir,
        root,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provenance_is_read_only_when_verified_and_judged_by_its_policy() {
    let f = fixtures();
    let s = setup();
    let host = s.registry.host.clone();
    let a = &f.attestations;
    signed_image(&s.pusher, "acme/good", &[&a["slsaGood"]]).await;
    signed_image(&s.pusher, "acme/evil", &[&a["slsaEvil"]]).await;
    signed_image(&s.pusher, "acme/untrusted", &[&a["slsaUntrusted"]]).await;
    signed_image(&s.pusher, "acme/other", &[&a["slsaOther"]]).await;
    signed_image(&s.pusher, "acme/none", &[]).await;
    let v = Vouch::start(&config(
        &host,
        &s.root,
        &shipped("slsa-provenance.rego"),
        "",
    ))
    .await;

    let good = verdict(&v, &format!("{host}/acme/good:v1")).await;
    assert_eq!(good["verified"], true, "{good}");
    assert_eq!(
        good["attestations"],
        json!([{"predicateType": SLSA, "signer": f.subject, "passed": true, "messages": []}]),
        "{good}"
    );

    let evil = verdict(&v, &format!("{host}/acme/evil:v1")).await;
    assert_code(&evil, "attestation-denied");
    let reason = evil["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("https://github.com/evil/app"), "{reason}");
    assert_eq!(evil["attestations"][0]["passed"], false, "{evil}");

    for repo in ["untrusted", "other"] {
        let got = verdict(&v, &format!("{host}/acme/{repo}:v1")).await;
        assert_code(&got, "missing-attestation");
        assert!(
            got["reason"]
                .as_str()
                .is_some_and(|r| r.contains("1 attestation found did not verify")),
            "{repo}: {got}"
        );
        assert_eq!(got["attestations"], Value::Null, "never evaluated: {got}");
    }
    let none = verdict(&v, &format!("{host}/acme/none:v1")).await;
    assert_code(&none, "missing-attestation");

    // `vouch verify` prints the attestation results under the verdict.
    let cfg = s.dir.path().join("vouch.yaml");
    std::fs::write(
        &cfg,
        config(&host, &s.root, &shipped("slsa-provenance.rego"), ""),
    )
    .expect("config");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_vouch"))
            .args(["verify", "--config"])
            .arg(&cfg)
            .arg(format!("{host}/acme/evil:v1"))
            .output()
            .expect("vouch verify")
    })
    .await
    .expect("join");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("  attestation {SLSA} signed by {}: denied: built from repository https://github.com/evil/app", f.subject)),
        "{text}"
    );
    assert_eq!(
        v.metric("vouch_attestations_ignored_total{reason=\"unverified\"}")
            .await,
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vulnerability_reports_are_judged_by_severity_and_allow_list() {
    let f = fixtures();
    let s = setup();
    let host = s.registry.host.clone();
    let a = &f.attestations;
    signed_image(
        &s.pusher,
        "acme/critical",
        &[&a["slsaGood"], &a["vulnCritical"]],
    )
    .await;
    signed_image(&s.pusher, "acme/low", &[&a["slsaGood"], &a["vulnLow"]]).await;
    let vuln = |params: &str| {
        format!(
            "  - predicateType: {VULN}\n    policy: {}\n    params: {params}\n",
            shipped("vuln-report.rego").display()
        )
    };
    let strict = Vouch::start(&config(
        &host,
        &s.root,
        &shipped("slsa-provenance.rego"),
        &vuln("{maxSeverity: HIGH}"),
    ))
    .await;
    let critical = verdict(&strict, &format!("{host}/acme/critical:v1")).await;
    assert_code(&critical, "attestation-denied");
    assert!(
        critical["reason"]
            .as_str()
            .is_some_and(|r| r.contains("CVE-2026-0001")),
        "{critical}"
    );
    assert_eq!(
        verdict(&strict, &format!("{host}/acme/low:v1")).await["verified"],
        true
    );
    let allowed = Vouch::start(&config(
        &host,
        &s.root,
        &shipped("slsa-provenance.rego"),
        &vuln("{maxSeverity: HIGH, allow: [CVE-2026-0001]}"),
    ))
    .await;
    let got = verdict(&allowed, &format!("{host}/acme/critical:v1")).await;
    assert_eq!(got["verified"], true, "{got}");
    assert_eq!(
        got["attestations"].as_array().map(Vec::len),
        Some(2),
        "{got}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_published_spdx_example_is_denied_by_licence_and_passes_otherwise() {
    let f = fixtures();
    let s = setup();
    let host = s.registry.host.clone();
    let a = &f.attestations;
    signed_image(&s.pusher, "acme/sbom", &[&a["slsaGood"], &a["sbomSpdx"]]).await;
    let sbom = |params: &str| {
        format!(
            "  - predicateType: {SPDX}\n    policy: {}\n    params: {params}\n",
            shipped("sbom.rego").display()
        )
    };
    let key = format!("{host}/acme/sbom:v1");
    let denying = Vouch::start(&config(
        &host,
        &s.root,
        &shipped("slsa-provenance.rego"),
        &sbom("{deniedLicenses: [LGPL-2.0-only]}"),
    ))
    .await;
    let got = verdict(&denying, &key).await;
    assert_code(&got, "attestation-denied");
    let reason = got["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("glibc") && reason.contains("LGPL-2.0-only"),
        "{reason}"
    );
    let accepting = Vouch::start(&config(
        &host,
        &s.root,
        &shipped("slsa-provenance.rego"),
        &sbom("{deniedLicenses: [AGPL-3.0-only], deniedPackages: [log4j-core]}"),
    ))
    .await;
    let got = verdict(&accepting, &key).await;
    assert_eq!(got["verified"], true, "{got}");
    assert_eq!(got["attestations"][1]["predicateType"], SPDX, "{got}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_att_layers_and_key_based_envelopes_are_read() {
    let f = fixtures();
    let s = setup();
    let host = s.registry.host.clone();
    // Keyless `.att`, as cosign v2 `attest` writes it, beside a keyless `.sig`.
    let d = push_image(&s.pusher, "acme/legacy", "v1", &f.manifest).await;
    push_legacy(
        &s.pusher,
        "acme/legacy",
        &d.digest,
        &f.payload,
        &f.legacy_annotations(&f.bundle("legacy")),
    )
    .await;
    let slsa = &f.attestations["slsaGood"];
    push_attestation_layer(
        &s.pusher,
        "acme/legacy",
        &d.digest,
        &serde_json::to_vec(&slsa["dsseEnvelope"]).expect("json"),
        &f.legacy_attestation_annotations(slsa),
    )
    .await;
    let v = Vouch::start(&config(
        &host,
        &s.root,
        &shipped("slsa-provenance.rego"),
        "",
    ))
    .await;
    let got = verdict(&v, &format!("{host}/acme/legacy:v1")).await;
    assert_eq!(got["verified"], true, "{got}");
    assert_eq!(
        got["attestations"][0]["signer"],
        f.subject.as_str(),
        "{got}"
    );

    // `cosign attest --key`: a key-signed envelope in `.att` beside a key-signed image (the
    // fixture manifest, which the statements name).
    let signer = CosignKey::generate();
    let d = push_image(&s.pusher, "acme/keyed", "v2", &f.manifest).await;
    let sig = signer.sign_image(&format!("{host}/acme/keyed"), &d.digest);
    push_cosign_signatures(&s.pusher, "acme/keyed", &d.digest, &[sig]).await;
    push_attestation_layer(
        &s.pusher,
        "acme/keyed",
        &d.digest,
        &serde_json::to_vec(&f.keyed_envelopes["slsaGood"]).expect("json"),
        &[],
    )
    .await;
    let keys = s.dir.path().join("keys");
    std::fs::create_dir_all(&keys).expect("dir");
    std::fs::write(keys.join("release.pub"), signer.public_pem()).expect("key");
    std::fs::write(keys.join("attest.pub"), &f.keyed_public_pem).expect("key");
    let keyed = format!(
        "registries:\n- host: {host}\n  plainHttp: true\npolicies:\n- name: keyed\n  scopes: [\"{host}/acme/*\"]\n  verifiers:\n  - cosign: {{publicKeys: [{}, {}]}}\n  attestations:\n  - predicateType: {SLSA}\n    policy: {}\n    params: {{repositories: [\"https://github.com/acme/app\"]}}\n",
        keys.join("release.pub").display(),
        keys.join("attest.pub").display(),
        shipped("slsa-provenance.rego").display()
    );
    let v = Vouch::start(&keyed).await;
    let got = verdict(&v, &format!("{host}/acme/keyed:v2")).await;
    assert_eq!(got["verified"], true, "{got}");
    assert_eq!(got["attestations"][0]["signer"], "key:attest", "{got}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_attestation_is_not_read_and_a_looping_module_is_stopped() {
    let f = fixtures();
    let s = setup();
    let host = s.registry.host.clone();
    // 20 MiB "SBOM" bundle: over limits.maxAttestationBytes (1 MiB here), never read whole.
    let d = signed_image(&s.pusher, "acme/huge", &[]).await;
    let huge = format!(
        "{{\"mediaType\": \"application/vnd.dev.sigstore.bundle.v0.3+json\", \"pad\": \"{}\"}}",
        "x".repeat(20 * 1024 * 1024)
    );
    push_bundle(&s.pusher, "acme/huge", &d, huge.as_bytes()).await;
    signed_image(&s.pusher, "acme/loop", &[&f.attestations["slsaGood"]]).await;
    let looping = s.dir.path().join("loop.rego");
    std::fs::write(
        &looping,
        // Loops only on a real statement (the empty input of the load-time check is quick).
        "package loop\n\ndeny contains msg if {\n  n := count(input.statement.predicate.buildDefinition) * 1000\n  some i in numbers.range(1, n)\n  some j in numbers.range(1, n)\n  some k in numbers.range(1, n)\n  i + j + k < 0\n  msg := \"never\"\n}\n",
    )
    .expect("rego");
    // A child process, so its resident memory is vouch's alone.
    let v = VouchProcess::start(&config(&host, &s.root, &looping, "")).await;
    let looped = only_verdict(&v.verify(&[&format!("{host}/acme/loop:v1")]).await);
    assert_code(&looped, "attestation-denied");
    let reason = looped["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("could not be evaluated"), "{reason}");
    // The first verification warmed every path up; what the huge one adds is its own.
    let rss_before = v.metric("process_resident_memory_bytes").await;
    let huge = only_verdict(&v.verify(&[&format!("{host}/acme/huge:v1")]).await);
    assert_code(&huge, "missing-attestation");
    assert_eq!(
        v.metric("vouch_attestations_ignored_total{reason=\"unreadable\"}")
            .await,
        1.0
    );
    let rss_after = v.metric("process_resident_memory_bytes").await;
    println!("RSS {rss_before} → {rss_after} bytes");
    assert!(
        rss_after - rss_before < 8.0 * 1024.0 * 1024.0,
        "the 20 MiB attestation was not read whole: RSS {rss_before} → {rss_after}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_verdicts_keep_their_report_and_a_changed_module_is_re_evaluated() {
    let f = fixtures();
    let s = setup();
    let host = s.registry.host.clone();
    signed_image(&s.pusher, "acme/app", &[&f.attestations["slsaGood"]]).await;
    let module = s.dir.path().join("slsa.rego");
    std::fs::copy(shipped("slsa-provenance.rego"), &module).expect("copy");
    let v = Vouch::start(&config(&host, &s.root, &module, "")).await;
    let key = format!("{host}/acme/app:v1");
    let first = verdict(&v, &key).await;
    assert_eq!(first["verified"], true, "{first}");
    s.registry.settle_log().await;
    let before = s.registry.access_log().len();
    let second = verdict(&v, &key).await;
    assert_eq!(second, first, "the cached verdict is the whole verdict");
    s.registry.settle_log().await;
    assert_eq!(s.registry.access_log().len(), before, "a cache hit");

    // The module rewritten in place: a new trust generation, evaluated again.
    std::fs::write(
        &module,
        "package vouch.attestations.slsa\n\ndeny contains \"no provenance is good enough today\" if true\n",
    )
    .expect("rewrite");
    let denied = eventually(Duration::from_secs(3), || async {
        verdict(&v, &key).await["code"] == "attestation-denied"
    })
    .await;
    assert!(denied, "the changed module is applied");
    let got = verdict(&v, &key).await;
    assert_eq!(
        got["attestations"][0]["messages"],
        json!(["no provenance is good enough today"]),
        "{got}"
    );
}

#[test]
fn config_check_names_a_rego_syntax_error_with_its_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("root.json"), fixtures().root_json()).expect("root");
    std::fs::write(
        dir.path().join("bad.rego"),
        "package bad\n\ndeny contains msg if {\n  msg := \n}\n",
    )
    .expect("rego");
    let cfg = dir.path().join("vouch.yaml");
    std::fs::write(
        &cfg,
        format!(
            "policies:\n- name: p\n  scopes: [\"r.io/a/*\"]\n  verifiers:\n  - keyless: {{trustedRoot: root.json, identities: [{{issuer: i, subject: s}}]}}\n  attestations:\n  - {{predicateType: {SLSA}, policy: bad.rego}}\n"
        ),
    )
    .expect("config");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vouch"))
        .args(["config", "check"])
        .arg(&cfg)
        .output()
        .expect("vouch config check");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("bad.rego:4"), "{text}");
}
