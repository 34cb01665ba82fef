//! The `vouch` binary: `config check` (every problem, type errors included, and warnings
//! about deadlines that do not fit the Providers' timeouts), `verify` exit codes, every
//! argument described in `--help`, `manifests` refusing Providers without a CA bundle,
//! and `serve` in development mode (generated certificate, CA written to a file, SIGTERM →
//! exit 0; SIGHUP without `--config` ignored).

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

/// The argument lines of a `--help` text whose description is missing: a line declaring
/// an argument (`-x`, `--name`, `<NAME>`) with no text after it and no indented
/// description on the next line.
fn undescribed_arguments(help: &str) -> Vec<String> {
    let lines: Vec<&str> = help.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut missing = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        // `-x`, `--name`, `<NAME>`; not `- value: meaning` of a list of possible values.
        let flag = t.starts_with("--")
            || (t.starts_with('-') && t.chars().nth(1).is_some_and(|c| c.is_ascii_alphabetic()));
        let declares = indent(line) > 0 && (flag || t.starts_with('<'));
        if !declares {
            continue;
        }
        let same_line = t.split("  ").filter(|p| !p.trim().is_empty()).count() > 1;
        let next_line = lines
            .get(i + 1)
            .is_some_and(|n| indent(n) > indent(line) && !n.trim().is_empty());
        if !same_line && !next_line {
            missing.push(t.to_string());
        }
    }
    missing
}

#[test]
fn help_describes_every_argument_of_every_command() {
    let (code, out, _) = vouch(&["verify", "--help"]);
    assert_eq!(code, 0);
    for (arg, words) in [
        ("<IMAGES>", "Image references"),
        ("--config", "Config file"),
    ] {
        let at = out.find(arg).unwrap_or_else(|| panic!("{arg} in:\n{out}"));
        let around = &out[at..(at + 200).min(out.len())];
        assert!(around.contains(words), "{arg} undescribed:\n{out}");
    }
    for command in [
        &["serve"][..],
        &["verify"],
        &["verify-bundle"],
        &["attest-check"],
        &["manifests"],
        &["config"],
        &["config", "check"],
    ] {
        for flag in ["--help", "-h"] {
            let mut args = command.to_vec();
            args.push(flag);
            let (code, out, err) = vouch(&args);
            assert_eq!(code, 0, "{args:?}: {err}");
            let missing = undescribed_arguments(&out);
            assert!(missing.is_empty(), "{args:?}: {missing:?} in:\n{out}");
        }
    }
}

#[test]
fn config_check_reports_type_errors_beside_every_other_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = write(
        dir.path(),
        "types.yaml",
        "listen: localhost:8443\nlimits: {maxKeys: 0, maxBodyBytes: lots}\nserver: {idleTimeout: soon}\nclaims: {store: redis}\npolicies:\n- scopes: [\"r.io/a/*\"]\n  action: allow\n- name: b\n  scopes: [\"nohost\"]\n  action: allow\n",
    );
    let (code, out, _) = vouch(&["config", "check", &f]);
    assert_eq!(code, 1, "{out}");
    for want in [
        "listen: invalid",
        "limits.maxBodyBytes: invalid type",
        "server.idleTimeout: ",
        "policies[0]: missing field `name`",
        "limits.maxKeys: must be greater than zero",
        // The second policy keeps its place in the file although the first was unreadable.
        "policies[1].scopes[0]: \"nohost\" must start with a registry host",
        "claims.store: ",
    ] {
        assert!(
            out.lines().any(|l| l.starts_with(&format!("{f}: {want}"))),
            "missing {want:?} in:\n{out}"
        );
    }
    let store = out
        .lines()
        .find(|l| l.contains("claims.store"))
        .expect("claims.store line");
    assert_eq!(
        store.matches("store").count(),
        1,
        "says store once: {store}"
    );
}

#[test]
fn config_check_warns_about_deadlines_the_providers_cut_short() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = good_config(dir.path());
    let text = std::fs::read_to_string(&f).expect("config");
    let late = write(
        dir.path(),
        "late.yaml",
        &format!("deadline: 5s\nmutateDeadline: 1s\n{text}"),
    );
    // Warnings alone: printed as `warning:`, exit 0.
    let (code, out, _) = vouch(&["config", "check", &late]);
    assert_eq!(code, 0, "{out}");
    let warnings: Vec<&str> = out.lines().filter(|l| l.contains(": warning: ")).collect();
    assert_eq!(warnings.len(), 2, "{out}");
    assert!(
        warnings[0].starts_with(&format!("{late}: warning: deadline (5s)")),
        "{out}"
    );
    assert!(
        warnings[0].contains("vouch-verify Provider's timeout of 3s"),
        "{out}"
    );
    assert!(
        warnings[1].starts_with(&format!("{late}: warning: mutateDeadline (1s)")),
        "{out}"
    );
    assert!(
        out.trim_end()
            .ends_with(&format!("{late}: ok, 2 warning(s)")),
        "{out}"
    );

    // Closed mode leaves less time: the default deadline does not fit a 3 s webhook.
    let (code, out, _) = vouch(&[
        "config",
        "check",
        "--failure-policy",
        "closed",
        "--mutation-webhook-timeout",
        "2s",
        &f,
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("warning: deadline (2.5s)"), "{out}");

    // A deadline that fits: no warning. With a problem beside a warning: exit 1, both.
    let (code, out, _) = vouch(&["config", "check", &f]);
    assert_eq!((code, out.contains("warning")), (0, false), "{out}");
    let both = write(
        dir.path(),
        "both.yaml",
        &format!("deadline: 3s\nlimits: {{maxKeys: 0}}\n{text}"),
    );
    let (code, out, _) = vouch(&["config", "check", &both]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("limits.maxKeys: must be greater than zero"),
        "{out}"
    );
    assert!(out.contains("warning: deadline (3s)"), "{out}");
}

#[test]
fn manifests_refuses_providers_without_a_ca_bundle() {
    let (code, out, err) = vouch(&["manifests"]);
    assert_eq!(code, 2, "{err}");
    assert!(out.is_empty(), "nothing to apply is printed: {out}");
    assert!(err.contains("--ca-bundle FILE"), "{err}");
    assert!(err.contains("--allow-empty-ca-bundle"), "{err}");
    let (code, _, err) = vouch(&["manifests", "--ca-bundle-value", ""]);
    assert_eq!(code, 2, "an empty value is no CA bundle either: {err}");

    let (code, out, err) = vouch(&["manifests", "--allow-empty-ca-bundle"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("kind: Provider"), "{out}");
    assert!(err.contains("caBundle is empty"), "{err}");

    let dir = tempfile::tempdir().expect("tempdir");
    let ca = write(dir.path(), "ca.crt", &Ca::gatekeeper().cert_pem);
    let (code, out, err) = vouch(&["manifests", "--ca-bundle", &ca]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("kind: Provider"), "{out}");
    assert!(!out.contains("caBundle: ''"), "{out}");
}

/// `serve` without `--config` runs the library's start-up with no config path; a SIGHUP
/// to the process must not end it. The signal goes to this test process, so no other test
/// in this file may start vouch in-process (its own SIGHUP handler would hide a missing
/// one here).
#[tokio::test]
async fn sighup_without_a_config_file_is_ignored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let default = vouch::config::EMBEDDED_DEFAULT
        .replace("listen: 0.0.0.0:8443", "listen: 127.0.0.1:0")
        .replace("opsListen: 0.0.0.0:9090", "opsListen: 127.0.0.1:0");
    let config = vouch::config::Config::parse(&default, "test", None).expect("config");
    let running = vouch::app::start(
        config,
        vouch::app::Options {
            dev_ca_out: Some(dir.path().join("ca.crt")),
            ..Default::default()
        },
    )
    .await
    .expect("start");
    for _ in 0..2 {
        let sent = Command::new("kill")
            .args(["-HUP", &std::process::id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(ops_get(running.ops_addr, "/healthz").await.status, 200);
    running.stop().await;
}
