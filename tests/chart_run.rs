//! Runs what the chart renders, on this machine: its Redis config in Debian's
//! `redis-server`, and its vouch config in two `vouch serve` processes sharing that Redis, as
//! the chart's two replicas do (`uniqueServiceSelector.enabled: true`, every other value
//! default). Only what ties them to a cluster is rewritten (listeners to loopback, file
//! paths to local files, the Redis address); the tests check that nothing else changed.
//!
//! - The chart's Redis refuses clients without its password and keeps an acknowledged write
//!   across a SIGKILL (AOF, fsync always), with the settings in effect that the chart sets.
//! - 200 concurrent claim races, each two owners claiming one selector at the same moment,
//!   one through each replica: never two grants; a race both replicas decided ends in one
//!   grant and one refusal naming the winner (a Redis call over the config's
//!   `redis.timeout` is a transient system error, no decision), and most races are decided.
//! - A granted claim survives a Redis crash and restart: another owner is still refused.
//! - The chart refuses to render two replicas with the uniqueness policy and no shared Redis.
//! - The `helm test` Pod's command, run with `sh` and `curl` against a vouch running the
//!   rendered config and the chart's serving certificate (curl's `connect-to` maps the
//!   Service to loopback; script and URLs stay as rendered): it passes when everything is in
//!   place, and fails with a message naming the cause without a client certificate, with one
//!   from another CA, for an image no allow policy covers, and when vouch is not ready.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use support::helm::{self, ChartRedis, NAMESPACE, Rendered};
use support::redis::{Resp, command_at, reply};
use support::{Conn, Pki, Served, provider_request, wait_ready};

const VOUCH: &str = env!("CARGO_BIN_EXE_vouch");
const RACES: usize = 200;

/// The tests that run two replicas take turns: on a small machine, one's start-up would
/// slow the other's bursts past Redis's call budget.
static REPLICAS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn the_charts_redis_requires_its_password_and_keeps_writes_across_a_crash() {
    let r = helm::render(json!({}));
    let mut redis = ChartRedis::start(&r);
    // The settings in effect, as Redis reports them.
    assert_eq!(redis.config_get("appendonly").await, "yes");
    assert_eq!(redis.config_get("appendfsync").await, "always");
    assert_eq!(redis.config_get("maxmemory-policy").await, "noeviction");
    assert_eq!(redis.config_get("save").await, "", "no RDB snapshots");
    let values: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(helm::chart().join("values.yaml")).expect("values.yaml"),
    )
    .expect("values.yaml");
    let max_memory = values["redis"]["maxMemory"]
        .as_str()
        .expect("redis.maxMemory");
    let mb: u64 = max_memory
        .strip_suffix("mb")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("redis.maxMemory {max_memory:?} is not NNNmb"));
    assert_eq!(redis.config_get("maxmemory").await, (mb << 20).to_string());

    // No password, a wrong one: refused.
    let addr = redis.server.addr;
    let raw = command_at(addr, None, &["SET", "k", "v"])
        .await
        .expect("answered");
    match reply(&raw) {
        Resp::Error(e) if e.starts_with("NOAUTH") => {}
        other => panic!("SET without AUTH: {other:?}"),
    }
    assert!(
        command_at(addr, Some("not-the-password"), &["PING"])
            .await
            .is_err(),
        "a wrong password is refused"
    );

    // An acknowledged write survives SIGKILL and a restart on the same files.
    let set = redis
        .server
        .command(&["SET", "vouch:claim:v1:test", "default/web-1"])
        .await;
    assert_eq!(reply(&set), Resp::Simple("OK".into()));
    redis.kill();
    redis.restart();
    let got = redis.server.command(&["GET", "vouch:claim:v1:test"]).await;
    assert_eq!(
        reply(&got),
        Resp::Bulk(Some(b"default/web-1".to_vec())),
        "the write was lost across the restart:\n{}",
        redis.log()
    );
}

/// The chart's Redis and two vouch replicas, each running the rendered config.
struct Replicas {
    redis: ChartRedis,
    vouch: [Served; 2],
    pki: Pki,
    _dir: tempfile::TempDir,
}

impl Replicas {
    async fn start() -> Replicas {
        let r = helm::render(helm::with_uniqueness());
        let redis = ChartRedis::start(&r);
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::new();
        pki.write(dir.path());
        let config = local_config(&r, dir.path(), &redis);
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, serde_json::to_string_pretty(&config).expect("json")).expect("write");
        let serve = || Served::spawn(VOUCH, &[std::ffi::OsStr::new("--config"), path.as_os_str()]);
        let vouch = [serve(), serve()];
        for v in &vouch {
            wait_ready(v.ops).await;
        }
        Replicas {
            redis,
            vouch,
            pki,
            _dir: dir,
        }
    }

    fn provider(&self, replica: usize) -> SocketAddr {
        self.vouch[replica].provider
    }

    /// Claims a value of its own through `replica` until it is decided (bounded).
    async fn warm_up(&self, replica: usize, client: &Arc<rustls::ClientConfig>) {
        let until = tokio::time::Instant::now() + Duration::from_secs(15);
        for attempt in 0.. {
            let owner = format!("default/warm-up-{replica}");
            let key = claim_key(
                &format!("app=warm-up-{replica}"),
                &owner,
                &format!("{attempt}"),
            );
            let start = Arc::new(tokio::sync::Barrier::new(1));
            match claim(self.provider(replica), client.clone(), key, start).await {
                Answer::Granted => return,
                other => assert!(
                    tokio::time::Instant::now() < until,
                    "replica {replica} decided no claim in 15 s: {other:?}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The rendered vouch config with what must change to run here, and nothing else: the
/// listeners (loopback, kernel-chosen ports), the TLS files (the test PKI's), the Redis URL
/// (the local chart Redis) and its password file (holding the rendered Secret's password).
fn local_config(r: &Rendered, dir: &Path, redis: &ChartRedis) -> Value {
    let rendered = r.config();
    assert_eq!(
        rendered["claims"]["store"], "redis",
        "the uniqueness policy's claims are in Redis"
    );
    let password_file = dir.join("redis-password");
    std::fs::write(&password_file, r.secret("vouch-redis", "password")).expect("password file");
    let changes = [
        ("/listen", json!("0.0.0.0:8443"), json!("127.0.0.1:0")),
        ("/opsListen", json!("0.0.0.0:9090"), json!("127.0.0.1:0")),
        (
            "/tls/certFile",
            json!("/etc/vouch/tls/tls.crt"),
            json!(dir.join("tls.crt")),
        ),
        (
            "/tls/keyFile",
            json!("/etc/vouch/tls/tls.key"),
            json!(dir.join("tls.key")),
        ),
        (
            "/tls/clientCAFile",
            json!("/etc/vouch/gatekeeper/ca.crt"),
            json!(dir.join("ca.crt")),
        ),
        (
            "/redis/url",
            json!(format!("redis://vouch-redis.{NAMESPACE}.svc:6379/0")),
            json!(redis.url()),
        ),
        (
            "/redis/passwordFile",
            json!("/etc/vouch/redis/password"),
            json!(password_file),
        ),
    ];
    rewritten(r, &changes)
}

/// The rendered vouch config with each (pointer, rendered value, local value) change
/// applied, after checking the rendered value is the one expected; and checked that nothing
/// else changed.
fn rewritten(r: &Rendered, changes: &[(&str, Value, Value)]) -> Value {
    let rendered = r.config();
    let mut config = rendered.clone();
    for (pointer, from, to) in changes {
        let field = config.pointer_mut(pointer).unwrap_or_else(|| {
            panic!("the rendered config has no {pointer}:\n{}", r.config_text())
        });
        assert_eq!(field, from, "{pointer} as the chart renders it");
        *field = to.clone();
    }
    // Nothing else changed: putting the rendered values back gives the rendered config.
    let mut back = config.clone();
    for (pointer, from, _) in changes {
        *back.pointer_mut(pointer).expect("pointer") = from.clone();
    }
    assert_eq!(back, rendered);
    config
}

/// What one `/v1/claims` answer said about its one key.
#[derive(Debug, Clone, PartialEq)]
enum Answer {
    Granted,
    Refused {
        holder: String,
    },
    /// A per-key error or a system error: no decision.
    Failed(String),
}

fn claim_key(value: &str, owner: &str, nonce: &str) -> String {
    json!({"scope": "service-selector/default", "value": value, "owner": owner,
           "mode": "claim", "nonce": nonce})
    .to_string()
}

fn answer(reply: &Value, key: &str) -> Answer {
    let system = reply["response"]["systemError"]
        .as_str()
        .unwrap_or_default();
    if !system.is_empty() {
        return Answer::Failed(format!("systemError: {system}"));
    }
    let item = &reply["response"]["items"][0];
    assert_eq!(item["key"], key, "{reply}");
    if let Some(e) = item["error"].as_str() {
        return Answer::Failed(format!("error: {e}"));
    }
    match item["value"]["granted"].as_bool() {
        Some(true) => Answer::Granted,
        Some(false) => Answer::Refused {
            holder: item["value"]["holder"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        },
        None => Answer::Failed(format!("no verdict: {reply}")),
    }
}

/// Claims `key` through the provider at `addr`: connects, waits at `start` (for the other
/// claims to be connected too), then sends.
async fn claim(
    addr: SocketAddr,
    client: Arc<rustls::ClientConfig>,
    key: String,
    start: Arc<tokio::sync::Barrier>,
) -> Answer {
    let mut conn = match Conn::open(addr, client).await {
        Ok(c) => c,
        Err(e) => {
            start.wait().await;
            return Answer::Failed(format!("connect: {e}"));
        }
    };
    start.wait().await;
    match conn.post("/v1/claims", provider_request(&[&key])).await {
        Ok(reply) if reply.status == 200 => answer(&reply.json(), &key),
        Ok(reply) => Answer::Failed(format!("HTTP {}: {}", reply.status, reply.text())),
        Err(e) => Answer::Failed(format!("request: {e}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_running_the_rendered_config_never_grant_one_selector_twice() {
    let _turn = REPLICAS.lock().await;
    let replicas = Replicas::start().await;
    let client = replicas.pki.gatekeeper_client();
    // Replicas that have been serving for a while hold an open Redis connection; open it
    // (one decided claim through each) before the races, so the races test the claims, not a
    // cold start.
    for replica in 0..2 {
        replicas.warm_up(replica, &client).await;
    }
    // Every claim connects first (400 TLS handshakes); then all are sent at once, so both
    // claims of a race reach their replicas at the same moment.
    let start = Arc::new(tokio::sync::Barrier::new(2 * RACES));
    let mut races = tokio::task::JoinSet::new();
    for i in 0..RACES {
        // Owner a goes through replica i % 2, owner b through the other.
        let value = format!("app=race-{i}");
        let owners = [format!("default/svc-{i}-a"), format!("default/svc-{i}-b")];
        let addrs = [replicas.provider(i % 2), replicas.provider((i + 1) % 2)];
        let start = start.clone();
        let keys = owners
            .clone()
            .map(|o| claim_key(&value, &o, &format!("{o}-uid")));
        let [ka, kb] = keys;
        let (client_a, client_b) = (client.clone(), client.clone());
        races.spawn(async move {
            let (a, b) = tokio::join!(
                claim(addrs[0], client_a, ka, start.clone()),
                claim(addrs[1], client_b, kb, start)
            );
            (i, owners, [a, b])
        });
    }
    let outcomes = tokio::time::timeout(Duration::from_secs(60), races.join_all())
        .await
        .expect("200 claim races took over a minute");

    // Per race: never two grants. An answer is a decision or a transient system error (a
    // Redis call over the config's redis.timeout, 100 ms, is one by design; a loaded debug
    // build sees some in a burst like this). A refusal names the race's other owner; two
    // decisions are one grant and one refusal naming the winner.
    let mut double = Vec::new();
    let mut wrong = Vec::new();
    let mut decided = 0;
    let mut transient = 0;
    let mut wins = [0usize; 2];
    for (i, owners, answers) in &outcomes {
        let race = format!("race {i}: {answers:?}");
        if answers.iter().all(|a| *a == Answer::Granted) {
            double.push(race);
            continue;
        }
        for (side, a) in answers.iter().enumerate() {
            match a {
                Answer::Granted => wins[(i + side) % 2] += 1,
                Answer::Refused { holder } if *holder == owners[1 - side] => {}
                Answer::Failed(why) if why.starts_with("systemError: unavailable: ") => {}
                _ => wrong.push(race.clone()),
            }
        }
        if answers.iter().any(|a| matches!(a, Answer::Failed(_))) {
            transient += 1;
        } else if answers.contains(&Answer::Granted) {
            decided += 1;
        } else {
            wrong.push(race);
        }
    }
    println!(
        "{RACES} races through 2 replicas: {} double grants, {decided} decided (one grant, one \
         refusal), {transient} with a transient system error; replica 0 granted {}, replica 1 \
         granted {}",
        double.len(),
        wins[0],
        wins[1]
    );
    assert_eq!(outcomes.len(), RACES);
    assert!(double.is_empty(), "double grants: {double:#?}");
    assert!(wrong.is_empty(), "wrong answers: {wrong:#?}");
    // Not vacuous: most races were decided by the shared store.
    assert!(
        decided >= RACES / 2,
        "only {decided} of {RACES} races decided; redis log:\n{}",
        replicas.redis.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_granted_claim_survives_a_redis_crash_and_restart() {
    let _turn = REPLICAS.lock().await;
    let mut replicas = Replicas::start().await;
    let client = replicas.pki.gatekeeper_client();
    let addrs = [replicas.provider(0), replicas.provider(1)];
    let ask = |replica: usize, owner: &str, nonce: &str| {
        let key = claim_key("app=durable", owner, nonce);
        let (addr, client) = (addrs[replica], client.clone());
        async move {
            let start = Arc::new(tokio::sync::Barrier::new(1));
            claim(addr, client, key, start).await
        }
    };
    assert_eq!(ask(0, "default/first", "n1").await, Answer::Granted);
    assert_eq!(
        ask(1, "default/second", "n2").await,
        Answer::Refused {
            holder: "default/first".into()
        }
    );
    replicas.redis.kill();
    replicas.redis.restart();
    // vouch reconnects by itself: a replica's first call on its old connection fails, as a
    // system error (no decision; Gatekeeper retries). The first decision of each replica
    // must still know the claim.
    let decided = |replica: usize, owner: &'static str| {
        let ask = &ask;
        async move {
            let until = tokio::time::Instant::now() + Duration::from_secs(15);
            let mut failures = Vec::new();
            loop {
                let nonce = format!("after-restart-{}", failures.len());
                match ask(replica, owner, &nonce).await {
                    Answer::Failed(why) => failures.push(why),
                    decision => return (decision, failures),
                }
                assert!(
                    tokio::time::Instant::now() < until,
                    "replica {replica}: no decision 15 s after Redis restarted: {failures:#?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let (decision, failures) = decided(1, "default/second").await;
    println!("replica 1 after the restart: {decision:?} after {failures:?}");
    assert_eq!(
        decision,
        Answer::Refused {
            holder: "default/first".into()
        },
        "the claim was lost with the Redis restart"
    );
    let (decision, failures) = decided(0, "default/first").await;
    println!("replica 0 after the restart: {decision:?} after {failures:?}");
    assert_eq!(decision, Answer::Granted, "the holder renews");
}

#[test]
fn two_replicas_with_the_uniqueness_policy_and_no_shared_redis_do_not_render() {
    let e = helm::refusal(
        json!({"replicas": 2, "uniqueServiceSelector": {"enabled": true},
                                 "redis": {"enabled": false}, "redisUrl": ""}),
    );
    assert!(!e.contains('\n'), "one line: {e}");
    assert!(
        e.contains("uniqueServiceSelector.enabled with 2 replicas needs a Redis shared by them"),
        "{e}"
    );
}

/// How long one run of the `helm test` command may take here (its two requests are bounded
/// by `test.timeoutSeconds` each; loopback answers in milliseconds).
const HOOK_RUN_LIMIT: Duration = Duration::from_secs(30);

/// The rendered `helm test` Pod's container: its `env` by name and its shell script.
fn hook(r: &Rendered) -> (std::collections::BTreeMap<String, String>, String) {
    let c = &r.object("Pod", "vouch-test")["spec"]["containers"][0];
    let env = c["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| {
            (
                e["name"].as_str().expect("name").to_string(),
                e["value"].as_str().expect("value").to_string(),
            )
        })
        .collect();
    let command: Vec<&str> = c["command"]
        .as_array()
        .expect("command")
        .iter()
        .map(|a| a.as_str().expect("a string"))
        .collect();
    assert_eq!(command[..2], ["/bin/sh", "-c"], "{command:?}");
    (env, command[2].to_string())
}

/// What one run of the hook's command did.
struct HookRun {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs the hook's script with `sh` and the machine's `curl`, with the Pod's environment
/// (`env`) except the three mounted files, which become `files` (SERVER_CA, CLIENT_CERT,
/// CLIENT_KEY paths here), and with curl sent to loopback: a curl config file in
/// `CURL_HOME` maps the Service's host and ports (`vouch.<ns>:8443`, `:9090`) to `provider`
/// and `ops` with `connect-to`, so the URLs, the TLS name check and the script stay as
/// rendered.
async fn run_hook(
    script: &str,
    env: &std::collections::BTreeMap<String, String>,
    files: [&Path; 3],
    provider: SocketAddr,
    ops: SocketAddr,
) -> HookRun {
    let home = tempfile::tempdir().expect("curl home");
    let host = format!("vouch.{NAMESPACE}");
    assert_eq!(env["PROVIDER_URL"], format!("https://{host}:8443"));
    assert_eq!(env["OPS_URL"], format!("http://{host}:9090"));
    std::fs::write(
        home.path().join(".curlrc"),
        format!(
            "connect-to = \"{host}:8443:{}:{}\"\nconnect-to = \"{host}:9090:{}:{}\"\n",
            provider.ip(),
            provider.port(),
            ops.ip(),
            ops.port()
        ),
    )
    .expect("curl config");
    let mut env = env.clone();
    for (name, file) in ["SERVER_CA", "CLIENT_CERT", "CLIENT_KEY"].iter().zip(files) {
        assert!(
            env[*name].starts_with("/etc/vouch-test/"),
            "{name} {} is not a mounted file",
            env[*name]
        );
        env.insert(name.to_string(), file.display().to_string());
    }
    let child = tokio::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CURL_HOME", home.path())
        .envs(&env)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run /bin/sh");
    let out = tokio::time::timeout(HOOK_RUN_LIMIT, child.wait_with_output())
        .await
        .expect("the helm test command did not finish in time")
        .expect("helm test command output");
    HookRun {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test]
async fn the_helm_test_command_passes_against_the_rendered_vouch_and_says_why_it_fails() {
    // The chart's own serving certificate (Secret vouch-tls) and config; Gatekeeper's CA and
    // client certificate from the test PKI. No Redis: the test concerns vouch alone.
    let cases = [
        json!({"redis": {"enabled": false}}),
        json!({"redis": {"enabled": false}, "test": {"verifyImage": "quay.io/acme/api:1"}}),
    ];
    let mut rendered = helm::render_all(&cases).into_iter();
    let mut next = || {
        rendered
            .next()
            .expect("a rendering")
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let (r, unpolicied) = (next(), next());
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |name: &str| dir.path().join(name);
    let pki = Pki::new();
    for (file, text) in [
        ("tls.crt", r.secret("vouch-tls", "tls.crt")),
        ("tls.key", r.secret("vouch-tls", "tls.key")),
        ("server-ca.crt", r.secret("vouch-tls", "ca.crt")),
        ("ca.crt", pki.gatekeeper_ca.cert_pem.clone()),
        ("client.crt", pki.gatekeeper.cert_pem.clone()),
        ("client.key", pki.gatekeeper.key_pem.clone()),
    ] {
        std::fs::write(path(file), text).expect("write");
    }
    let config = |client_ca: &Path| {
        rewritten(
            &r,
            &[
                ("/listen", json!("0.0.0.0:8443"), json!("127.0.0.1:0")),
                ("/opsListen", json!("0.0.0.0:9090"), json!("127.0.0.1:0")),
                (
                    "/tls/certFile",
                    json!("/etc/vouch/tls/tls.crt"),
                    json!(path("tls.crt")),
                ),
                (
                    "/tls/keyFile",
                    json!("/etc/vouch/tls/tls.key"),
                    json!(path("tls.key")),
                ),
                (
                    "/tls/clientCAFile",
                    json!("/etc/vouch/gatekeeper/ca.crt"),
                    json!(client_ca),
                ),
            ],
        )
    };
    let serve = |name: &str, config: Value| {
        let file = path(name);
        std::fs::write(&file, serde_json::to_string_pretty(&config).expect("json"))
            .expect("write config");
        Served::spawn(VOUCH, &[std::ffi::OsStr::new("--config"), file.as_os_str()])
    };
    let vouch = serve("config.yaml", config(&path("ca.crt")));
    wait_ready(vouch.ops).await;
    let (env, script) = hook(&r);
    let files = [
        path("server-ca.crt"),
        path("client.crt"),
        path("client.key"),
    ];
    let run =
        |env: std::collections::BTreeMap<String, String>, files: [PathBuf; 3], at: &Served| {
            let (provider, ops) = (at.provider, at.ops);
            let script = script.clone();
            async move {
                let files = [files[0].as_path(), files[1].as_path(), files[2].as_path()];
                run_hook(&script, &env, files, provider, ops).await
            }
        };

    // Everything in place: both steps pass.
    let ok = run(env.clone(), files.clone(), &vouch).await;
    println!("{}{}", ok.stdout, ok.stderr);
    assert_eq!(ok.code, Some(0), "{}{}", ok.stdout, ok.stderr);
    assert!(
        ok.stdout.contains("\nready"),
        "the readiness answer: {}",
        ok.stdout
    );
    assert!(
        ok.stdout.contains(
            r#""key":"docker.io/library/vouch-helm-test:latest","value":{"verified":true"#
        ),
        "{}",
        ok.stdout
    );
    assert!(ok.stdout.contains("PASS"), "{}", ok.stdout);

    // No client certificate in the Secret (the copy of Gatekeeper's CA holds only ca.crt).
    let missing = [files[0].clone(), path("absent.crt"), path("absent.key")];
    let failed = run(env.clone(), missing, &vouch).await;
    assert_eq!(failed.code, Some(1), "{}{}", failed.stdout, failed.stderr);
    assert!(
        failed.stderr.contains("FAIL: no client certificate")
            && failed.stderr.contains("test.clientCertSecret"),
        "{}",
        failed.stderr
    );

    // A client certificate from another CA: vouch refuses the handshake.
    let stranger =
        support::Ca::new("not gatekeeper", true, None).issue(support::LeafSpec::gatekeeper());
    std::fs::write(path("stranger.crt"), &stranger.cert_pem).expect("write");
    std::fs::write(path("stranger.key"), &stranger.key_pem).expect("write");
    let untrusted = [files[0].clone(), path("stranger.crt"), path("stranger.key")];
    let failed = run(env.clone(), untrusted, &vouch).await;
    assert_eq!(failed.code, Some(1), "{}{}", failed.stdout, failed.stderr);
    assert!(
        failed.stderr.contains("FAIL: /v1/verify failed")
            && failed.stderr.contains("client certificate"),
        "{}",
        failed.stderr
    );

    // An image no allow policy covers: vouch answers, not verified, and the check says so.
    let (other_env, other_script) = hook(&unpolicied);
    assert_eq!(other_script, script);
    assert_eq!(other_env["VERIFY_IMAGE"], "quay.io/acme/api:1");
    let failed = run(other_env, files.clone(), &vouch).await;
    assert_eq!(failed.code, Some(1), "{}{}", failed.stdout, failed.stderr);
    assert!(
        failed.stdout.contains(r#""code":"no-policy""#),
        "{}",
        failed.stdout
    );
    assert!(
        failed
            .stderr
            .contains("FAIL: quay.io/acme/api:1 was not verified"),
        "{}",
        failed.stderr
    );

    // vouch without its client CA (the Secret not there yet): not ready, and the readiness
    // answer is shown.
    let not_ready = serve("not-ready.yaml", config(&path("no-such-ca.crt")));
    let failed = run(env, files, &not_ready).await;
    assert_eq!(failed.code, Some(1), "{}{}", failed.stdout, failed.stderr);
    assert!(
        failed
            .stderr
            .contains("FAIL: vouch is not ready through Service vouch")
            && failed.stderr.contains("no-such-ca.crt"),
        "{}",
        failed.stderr
    );
}
