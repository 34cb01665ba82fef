//! What a running vouch picks up without a restart, and what it refuses to pick up: a cosign
//! key file rewritten in place (the config untouched, as Kubernetes updates a mounted
//! Secret) is trusted within `configReloadInterval` + 1 s and the old key no longer is; a
//! registry credentials file rewritten is used by the next registry call; a key file
//! deleted keeps the running engine, counts the failure and says so on `/readyz`; a config
//! rewritten empty, or without any policy, is refused and the running policies stay —
//! and `vouch config check` exits 1 on both, naming the problem. In the text log format
//! (written to a pipe, so without colour codes) a failed reload is one line naming every
//! problem.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::registry::*;
use support::*;

/// `configReloadInterval` of the harness's configs, plus the second the promise allows.
const WITHIN: Duration = Duration::from_millis(100 + 1000);

async fn verdict(v: &Vouch, key: &str) -> Value {
    only_verdict(&v.verify(&[key]).await)
}

async fn metric(v: &Vouch, name: &str) -> f64 {
    v.metric(name).await
}

/// Waits (bounded by `within`) until `key`'s verdict satisfies `ok`; the last verdict.
async fn verdict_becomes(
    v: &Vouch,
    key: &str,
    within: Duration,
    ok: impl Fn(&Value) -> bool,
) -> (bool, Value) {
    let until = std::time::Instant::now() + within;
    loop {
        let got = verdict(v, key).await;
        if ok(&got) || std::time::Instant::now() > until {
            return (ok(&got), got);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn cosign_policy(host: &str, key_file: &str, extra_registry: &str) -> String {
    format!(
        "registries:\n- host: {host}\n  plainHttp: true\n{extra_registry}policies:\n- name: acme\n  scopes: [\"{host}/acme/*\"]\n  verifiers:\n  - cosign: {{publicKeys: [{key_file}]}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_file_rewritten_in_place_is_trusted_and_the_old_key_no_longer() {
    let registry = Registry::start();
    let pusher = Pusher::new(&registry);
    let host = registry.host.clone();
    let (old, new) = (CosignKey::generate(), CosignKey::generate());
    let mut keys = Vec::new();
    for (tag, signer) in [("old", &old), ("new", &new)] {
        push_signed(&pusher, signer, &host, "acme/app", tag).await;
        keys.push(format!("{host}/acme/app:{tag}"));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("acme.pub");
    std::fs::write(&key_file, old.public_pem()).expect("old key");
    let v = Vouch::start(&cosign_policy(&host, &key_file.display().to_string(), "")).await;
    assert_eq!(verdict(&v, &keys[0]).await["verified"], true);
    assert_code(&verdict(&v, &keys[1]).await, "untrusted-signer");

    // Rotation: the same path, the config untouched, both verdicts cached.
    let generation_before = metric(&v, "vouch_config_reloads_total{result=\"success\"}").await;
    std::fs::write(&key_file, new.public_pem()).expect("new key");
    let started = std::time::Instant::now();
    let (rotated, got) =
        verdict_becomes(&v, &keys[0], WITHIN, |j| j["code"] == "untrusted-signer").await;
    println!("old key distrusted after {:?}", started.elapsed());
    assert!(rotated, "the old key's image is no longer verified: {got}");
    assert_eq!(verdict(&v, &keys[1]).await["verified"], true);
    assert!(metric(&v, "vouch_config_reloads_total{result=\"success\"}").await > generation_before);

    // Deleted: the running engine stays (the new key still verifies), the failure is
    // counted once, and /readyz says so while staying ready.
    let failures_before = metric(&v, "vouch_config_reloads_total{result=\"failure\"}").await;
    std::fs::remove_file(&key_file).expect("delete");
    let failed = eventually(WITHIN, || async {
        metric(&v, "vouch_config_reloads_total{result=\"failure\"}").await > failures_before
    })
    .await;
    assert!(failed, "the failed reload is counted");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        metric(&v, "vouch_config_reloads_total{result=\"failure\"}").await,
        failures_before + 1.0,
        "one failure, not one per tick"
    );
    assert_eq!(metric(&v, "vouch_config_last_reload_successful").await, 0.0);
    assert_eq!(verdict(&v, &keys[1]).await["verified"], true, "engine kept");
    let ready = ops_get(v.running.ops_addr, "/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    let text = ready.text();
    assert!(
        text.contains("last reload failed") && text.contains("acme.pub"),
        "{text}"
    );

    // Back: the gauge says so again.
    std::fs::write(&key_file, new.public_pem()).expect("key back");
    let back = eventually(WITHIN, || async {
        metric(&v, "vouch_config_last_reload_successful").await == 1.0
    })
    .await;
    assert!(back, "reload succeeds once the file is back");
    let text = ops_get(v.running.ops_addr, "/readyz").await.text();
    assert!(!text.contains("last reload failed"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_credentials_file_is_used_by_the_next_registry_call() {
    let registry = Registry::start_with_basic_auth();
    let pusher = Pusher::with_basic_auth(&registry, USER, PASSWORD);
    let host = registry.host.clone();
    let key = CosignKey::generate();
    push_signed(&pusher, &key, &host, "acme/app", "v1").await;
    let reference = format!("{host}/acme/app:v1");

    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("k.pub");
    std::fs::write(&key_file, key.public_pem()).expect("key");
    let password_file = dir.path().join("password");
    std::fs::write(&password_file, "an expired token\n").expect("password");
    let credentials = format!(
        "  username: {USER}\n  passwordFile: {}\n",
        password_file.display()
    );
    let v = Vouch::start(&cosign_policy(
        &host,
        &key_file.display().to_string(),
        &credentials,
    ))
    .await;
    let r = v.verify(&[&reference]).await;
    let error = r["response"]["items"][0]["error"].as_str().unwrap_or("");
    assert!(error.starts_with("auth: "), "{r}");

    // The Secret is updated: the next call after the reload uses the new password.
    std::fs::write(&password_file, format!("{PASSWORD}\n")).expect("password");
    let (ok, got) = verdict_becomes_any(&v, &reference, WITHIN).await;
    assert!(ok, "verified with the rewritten credentials: {got}");
    let text = ops_get(v.running.ops_addr, "/metrics").await.text();
    assert!(
        !text.contains(PASSWORD),
        "credentials never reach the metrics"
    );
}

/// Waits until `key` gets a verified verdict (per-key errors are retried, as Gatekeeper
/// does not cache across the test's calls).
async fn verdict_becomes_any(v: &Vouch, key: &str, within: Duration) -> (bool, Value) {
    let until = std::time::Instant::now() + within;
    loop {
        let r = v.verify(&[key]).await;
        let value = r["response"]["items"][0]["value"].clone();
        if value["verified"] == true {
            return (true, r);
        }
        if std::time::Instant::now() > until {
            return (false, r);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_that_would_deny_everything_is_refused_on_reload_and_by_config_check() {
    let policy = "policies:\n- name: lib\n  scopes: [\"docker.io/library/*\"]\n  action: allow\n";
    let v = Vouch::start(policy).await;
    assert_eq!(verdict(&v, "nginx:1.27").await["verified"], true);
    let config = v.path("vouch.yaml");
    let good = std::fs::read_to_string(&config).expect("config");

    for (name, text) in [
        ("an empty file", String::new()),
        ("policies: []", good.replace(policy, "policies: []\n")),
    ] {
        let failures = metric(&v, "vouch_config_reloads_total{result=\"failure\"}").await;
        std::fs::write(&config, &text).expect("rewrite");
        let refused = eventually(WITHIN, || async {
            metric(&v, "vouch_config_reloads_total{result=\"failure\"}").await > failures
        })
        .await;
        assert!(refused, "{name}: the reload is refused");
        assert_eq!(
            verdict(&v, "nginx:1.27").await["verified"],
            true,
            "{name}: the running policies stay"
        );
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vouch"))
            .args(["config", "check"])
            .arg(&config)
            .output()
            .expect("config check");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stdout}");
        assert!(
            stdout.contains("empty") || stdout.contains("no trust policy"),
            "{name}: {stdout}"
        );
        std::fs::write(&config, &good).expect("restore");
        let restored = eventually(WITHIN, || async {
            metric(&v, "vouch_config_last_reload_successful").await == 1.0
        })
        .await;
        assert!(restored, "{name}: the good config reloads");
    }
}

#[test]
fn a_failed_reload_is_one_plain_log_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("vouch.yaml");
    let good = vouch::config::EMBEDDED_DEFAULT
        .replace("listen: 0.0.0.0:8443", "listen: 127.0.0.1:0")
        .replace("opsListen: 0.0.0.0:9090", "opsListen: 127.0.0.1:0");
    std::fs::write(&config, &good).expect("write config");
    let ca = dir.path().join("ca.crt");
    let (mut served, logs) = Served::spawn_logging(
        env!("CARGO_BIN_EXE_vouch"),
        "text",
        &[
            "--config".as_ref(),
            config.as_os_str(),
            "--dev-ca-out".as_ref(),
            ca.as_os_str(),
        ],
    );
    std::fs::write(
        &config,
        format!(
            "{}\nserver: {{maxConnections: 0}}\n",
            good.replace("maxKeys: 512", "maxKeys: 0")
        ),
    )
    .expect("rewrite config");
    let sent = std::process::Command::new("kill")
        .args(["-HUP", &served.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    let mut seen = served.logs.clone();
    let until = std::time::Instant::now() + STEP;
    let failed = loop {
        assert!(
            std::time::Instant::now() < until,
            "no reload failure logged:\n{}",
            seen.join("\n")
        );
        let Ok(line) = logs.recv_timeout(Duration::from_millis(100)) else {
            continue;
        };
        seen.push(line.clone());
        if line.contains("config reload failed") {
            break line;
        }
    };
    for problem in [
        "limits.maxKeys: must be greater than zero",
        "server.maxConnections: must be greater than zero",
    ] {
        assert!(
            failed.contains(problem),
            "{problem} not on the line: {failed}"
        );
    }
    assert!(
        seen.iter().all(|l| !l.contains('\u{1b}')),
        "colour codes in a pipe:\n{}",
        seen.join("\n")
    );
    assert_eq!(served.terminate().code(), Some(0));
}
