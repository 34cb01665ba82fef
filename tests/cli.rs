//! The `vouch` binary: `config check`, `verify` exit codes, and `serve` in development
//! mode (generated certificate, CA written to a file, SIGTERM → exit 0).

mod support;

use std::path::Path;
use std::process::Command;

use support::*;

const VOUCH: &str = env!("CARGO_BIN_EXE_vouch");

fn vouch(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(VOUCH).args(args).output().expect("run vouch");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p.display().to_string()
}

/// A config with an allow policy and a cosign policy for a loopback registry nobody
/// listens on (so verification of its images fails transiently, without leaving the host).
fn good_config(dir: &Path) -> String {
    let key = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/cosign/containers-image/cosign.pub");
    std::fs::copy(key, dir.join("acme.pub")).expect("copy fixture key");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let text = format!(
        "registryTimeout: 300ms\nregistries:\n- host: 127.0.0.1:{port}\n  plainHttp: true\npolicies:\n- name: library\n  scopes: [\"docker.io/library/*\"]\n  action: allow\n- name: acme\n  scopes: [\"127.0.0.1:{port}/acme/*\"]\n  verifiers:\n  - cosign: {{publicKeys: [acme.pub]}}\n"
    );
    write(dir, "good.yaml", &text)
}

#[test]
fn config_check_accepts_a_good_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = good_config(dir.path());
    let (code, out, _) = vouch(&["config", "check", &f]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.trim(), format!("{f}: ok"));
}

#[test]
fn config_check_refuses_a_key_that_does_not_parse() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = good_config(dir.path());
    write(
        dir.path(),
        "acme.pub",
        "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n",
    );
    let (code, out, _) = vouch(&["config", "check", &f]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("acme.pub: not a PEM public key"), "{out}");
}

#[test]
fn config_check_prints_every_problem_with_its_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = write(
        dir.path(),
        "bad.yaml",
        "deadlin: 1s\nlimits: {maxKeys: 0}\nregistries:\n- host: https://r.io\npolicies:\n- name: acme\n  scopes: [\"acme/*\"]\n  verifiers:\n  - cosign: {publicKeys: [missing.pub]}\n",
    );
    let (code, out, _) = vouch(&["config", "check", &f]);
    assert_eq!(code, 1, "{out}");
    for want in [
        "deadlin: unknown field `deadlin`",
        "limits.maxKeys: must be greater than zero",
        "registries[0].host: \"https://r.io\": give the host without a scheme",
        "policies[0].scopes[0]: \"acme/*\" must start with a registry host",
        "policies[0].verifiers[0].cosign.publicKeys[0]: cannot read",
    ] {
        assert!(
            out.lines().any(|l| l.starts_with(&format!("{f}: {want}"))),
            "missing {want:?} in:\n{out}"
        );
    }
    let (code, out, _) = vouch(&["config", "check", &format!("{f}.absent")]);
    assert_eq!(code, 1);
    assert!(out.contains("cannot read"), "{out}");
}

#[test]
fn verify_exit_codes_follow_the_contract() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = good_config(dir.path());
    let acme = std::fs::read_to_string(&f)
        .expect("config")
        .lines()
        .find_map(|l| {
            l.strip_prefix("- host: ")
                .map(|h| format!("{h}/acme/api:1"))
        })
        .expect("registry host");

    let (code, out, _) = vouch(&["verify", "--config", &f, "nginx:1.27", "library/redis"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.lines().count(), 2);
    assert!(
        out.starts_with("nginx:1.27: verified (policy \"library\")"),
        "{out}"
    );

    let (code, out, _) = vouch(&["verify", "--config", &f, "nginx", "quay.io/x/y:1"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "quay.io/x/y:1: NOT verified: no-policy: no cluster-wide trust policy scope covers quay.io/x/y"
        ),
        "{out}"
    );

    let (code, out, _) = vouch(&["verify", "--config", &f, "--json", "nginx", &acme]);
    assert_eq!(code, 2, "{out}");
    let items: serde_json::Value = serde_json::from_str(&out).expect("--json prints JSON");
    assert_eq!(items[0]["value"]["verified"], true);
    assert!(
        items[1]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("transient: registry 127.0.0.1:")),
        "{out}"
    );

    let bad = write(dir.path(), "bad.yaml", "limits: {maxKeys: -1}\n");
    let (code, _, err) = vouch(&["verify", "--config", &bad, "nginx"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("limits.maxKeys"), "{err}");
}

#[tokio::test]
async fn serve_in_dev_mode_generates_a_certificate_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The embedded default, on loopback ports chosen by the kernel.
    let default = vouch::config::EMBEDDED_DEFAULT
        .replace("listen: 0.0.0.0:8443", "listen: 127.0.0.1:0")
        .replace("opsListen: 0.0.0.0:9090", "opsListen: 127.0.0.1:0");
    let cfg = write(dir.path(), "dev.yaml", &default);
    let ca_path = dir.path().join("dev-ca.crt");
    let mut served = Served::spawn(
        VOUCH,
        &[
            "--config".as_ref(),
            cfg.as_ref(),
            "--dev-ca-out".as_ref(),
            ca_path.as_os_str(),
        ],
    );
    let all = served.logs.join("\n");
    assert!(all.contains("client authentication is OFF"), "{all}");
    assert!(
        all.contains(&ca_path.display().to_string()),
        "CA path logged: {all}"
    );

    assert_eq!(ops_get(served.ops, "/readyz").await.status, 200);
    let ca = std::fs::read_to_string(&ca_path).expect("CA written");
    let mut conn = Conn::open(served.provider, client_config(&ca, None, Versions::Tls13))
        .await
        .expect("dev certificate verifies against the written CA, without a client certificate");
    let r = conn
        .post("/v1/verify", provider_request(&["nginx"]))
        .await
        .expect("request");
    assert_eq!(r.json()["response"]["items"][0]["value"]["verified"], true);

    assert_eq!(served.terminate().code(), Some(0));
}
