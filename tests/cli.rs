//! The `vouch` binary: `config check`, `verify` exit codes, and `serve` in development
//! mode (generated certificate, CA written to a file, SIGTERM → exit 0).

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

const GOOD: &str = "policies:\n- name: library\n  scopes: [\"docker.io/library/*\"]\n  action: allow\n- name: acme\n  scopes: [\"ghcr.io/acme/*\"]\n  verifiers:\n  - cosign: {publicKeys: [acme.pub]}\n";

#[test]
fn config_check_accepts_a_good_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "acme.pub", "not checked here");
    let f = write(dir.path(), "good.yaml", GOOD);
    let (code, out, _) = vouch(&["config", "check", &f]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.trim(), format!("{f}: ok"));
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
    write(dir.path(), "acme.pub", "");
    let f = write(dir.path(), "c.yaml", GOOD);

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
            "quay.io/x/y:1: NOT verified: no-policy: no trust policy scope covers quay.io/x/y"
        ),
        "{out}"
    );

    let (code, out, _) = vouch(&[
        "verify",
        "--config",
        &f,
        "--json",
        "nginx",
        "ghcr.io/acme/api:1",
    ]);
    assert_eq!(code, 2, "{out}");
    let items: serde_json::Value = serde_json::from_str(&out).expect("--json prints JSON");
    assert_eq!(items[0]["value"]["verified"], true);
    assert!(
        items[1]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("unsupported: ")),
        "{out}"
    );

    let bad = write(dir.path(), "bad.yaml", "limits: {maxKeys: -1}\n");
    let (code, _, err) = vouch(&["verify", "--config", &bad, "nginx"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("limits.maxKeys"), "{err}");
}

/// Kills the child on drop, so a failed assertion leaves nothing running.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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
    let child = Command::new(VOUCH)
        .args([
            "--log-format",
            "json",
            "serve",
            "--config",
            &cfg,
            "--dev-ca-out",
        ])
        .arg(&ca_path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vouch serve");
    let mut proc = Proc(child);
    let stderr = proc.0.stderr.take().expect("stderr");

    // Read log lines (JSON) until the listening line, on a thread: the read blocks.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut logs = Vec::new();
    let mut addrs = None;
    let until = Instant::now() + STEP;
    while addrs.is_none() && Instant::now() < until {
        let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) else {
            continue;
        };
        if let Ok(j) = serde_json::from_str::<serde_json::Value>(&line) {
            let f = &j["fields"];
            if let (Some(p), Some(o)) = (f["provider_addr"].as_str(), f["ops_addr"].as_str()) {
                addrs = Some((
                    p.parse::<SocketAddr>().expect("addr"),
                    o.parse::<SocketAddr>().expect("addr"),
                ));
            }
        }
        logs.push(line);
    }
    let (provider, ops) =
        addrs.unwrap_or_else(|| panic!("no listening line in:\n{}", logs.join("\n")));
    let all = logs.join("\n");
    assert!(all.contains("client authentication is OFF"), "{all}");
    assert!(
        all.contains(&ca_path.display().to_string()),
        "CA path logged: {all}"
    );

    assert_eq!(ops_get(ops, "/readyz").await.status, 200);
    let ca = std::fs::read_to_string(&ca_path).expect("CA written");
    let mut conn = Conn::open(provider, client_config(&ca, None, Versions::Tls13))
        .await
        .expect("dev certificate verifies against the written CA, without a client certificate");
    let r = conn
        .post("/v1/verify", provider_request(&["nginx"]))
        .await
        .expect("request");
    assert_eq!(r.json()["response"]["items"][0]["value"]["verified"], true);

    let pid = proc.0.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let until = Instant::now() + STEP;
    let status = loop {
        if let Some(s) = proc.0.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < until, "vouch did not exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.code(), Some(0));
}
