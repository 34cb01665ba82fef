//! Tenants on a shared cluster: keys that carry the admitted object's namespace
//! (`[team-a]image`), policies that apply only to the namespaces they name, and a tenant's
//! own registry credentials. What it proves: two namespaces with different policies for the
//! same repository (a cosign key in one, Notary PKI in the other) each verify only what
//! their own signer signed; a key without a namespace sees cluster-wide policies only, and a
//! namespaced policy never applies to another namespace; verdicts are shared between
//! namespaces that select the same policy (no second registry round trip); a malformed
//! prefix is `invalid-reference`; a tenant's credentials reach its repository and are never
//! sent for another tenant's keys (the token service's log shows who asked for what);
//! `/v1/mutate`, which carries no namespace, says why it cannot pin what only a namespaced
//! policy covers or only a tenant's credentials can read; `vouch verify --namespace` verifies
//! as such a key.

mod support;

use serde_json::Value;
use support::layout::{fixture, fixtures_dir, push_layout};
use support::registry::*;
use support::token::{Account, TokenRegistry};
use support::*;

async fn verdict(v: &Vouch, key: &str) -> Value {
    only_verdict(&v.verify(&[key]).await)
}

fn e2e_cert() -> String {
    fixtures_dir()
        .join("notation-e2e/localkeys/e2e.crt")
        .display()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_namespace_trusts_its_own_signer_and_nothing_leaks() {
    let registry = Registry::start();
    let pusher = Pusher::new(&registry);
    let host = registry.host.clone();
    let key_a = CosignKey::generate();
    push_signed(&pusher, &key_a, &host, "acme/cosigned", "v1").await;
    push_layout(&pusher, "acme/notarised", &fixture("e2e-valid-signature")).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let a_pub = dir.path().join("team-a.pub");
    std::fs::write(&a_pub, key_a.public_pem()).expect("key");
    let config = format!(
        "registries:\n- host: {host}\n  plainHttp: true\npolicies:\n- name: team-a\n  scopes: [\"{host}/acme/*\"]\n  namespaces: [team-a]\n  verifiers:\n  - cosign: {{publicKeys: [{}]}}\n- name: team-b\n  scopes: [\"{host}/acme/*\"]\n  namespaces: [\"team-b-*\"]\n  verifiers:\n  - notation: {{trustStore: [{}], trustedIdentities: [\"*\"]}}\n",
        a_pub.display(),
        e2e_cert()
    );
    let v = Vouch::start(&config).await;
    let cosigned = format!("{host}/acme/cosigned:v1");
    let notarised = format!("{host}/acme/notarised:v1");

    let got = verdict(&v, &format!("[team-a]{cosigned}")).await;
    assert_eq!(
        (got["verified"].clone(), got["policy"].clone()),
        (true.into(), "team-a".into()),
        "{got}"
    );
    assert_code(
        &verdict(&v, &format!("[team-a]{notarised}")).await,
        "unsigned",
    );
    let got = verdict(&v, &format!("[team-b-dev]{notarised}")).await;
    assert_eq!(
        (got["verified"].clone(), got["policy"].clone()),
        (true.into(), "team-b".into()),
        "{got}"
    );
    assert_code(
        &verdict(&v, &format!("[team-b-dev]{cosigned}")).await,
        "unsigned",
    );

    // Neither policy is cluster-wide: a key without a namespace, or from another
    // namespace, sees none of them.
    for key in [
        cosigned.clone(),
        format!("[team-c]{cosigned}"),
        format!("[team-bdev]{notarised}"),
    ] {
        assert_code(&verdict(&v, &key).await, "no-policy");
    }
    for bad in [
        format!("[Team-A]{cosigned}"),
        format!("[team-a{cosigned}"),
        "[team-a]".to_string(),
    ] {
        assert_code(&verdict(&v, &bad).await, "invalid-reference");
    }

    // Another namespace selecting the same policy reuses its verdict: no registry request.
    registry.settle_log().await;
    let before = registry.access_log().len();
    let got = verdict(&v, &format!("[team-b-prod]{notarised}")).await;
    assert_eq!(got["verified"], true, "{got}");
    registry.settle_log().await;
    assert_eq!(
        registry.requests_since(before).len(),
        0,
        "the tag's resolution and the verdict of (team-b, digest) are shared; {:?}",
        registry.requests_since(before)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_credentials_are_used_for_its_keys_only() {
    let r = TokenRegistry::start().await;
    r.tokens.add_accounts(vec![
        Account {
            user: "alice".into(),
            password: "alice-secret".into(),
            repositories: vec!["acme/a".into()],
        },
        Account {
            user: "bob".into(),
            password: "bob-secret".into(),
            repositories: vec!["acme/b".into()],
        },
    ]);
    let host = r.host().to_string();
    let pusher = r.pusher();
    let key = CosignKey::generate();
    push_signed(&pusher, &key, &host, "acme/a", "v1").await;
    push_signed(&pusher, &key, &host, "acme/b", "v1").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        p.display().to_string()
    };
    let pubkey = write("k.pub", &key.public_pem());
    let alice = write("alice", "alice-secret\n");
    let bob = write("bob", "bob-secret\n");
    let config = format!(
        "registries:\n- host: {host}\n  plainHttp: true\npolicies:\n- name: cluster\n  scopes: [\"{host}/acme/*\"]\n  verifiers: [{{cosign: {{publicKeys: [{pubkey}]}}}}]\n- name: team-a\n  scopes: [\"{host}/acme/*\"]\n  namespaces: [team-a]\n  credentials: {{username: alice, passwordFile: {alice}}}\n  verifiers: [{{cosign: {{publicKeys: [{pubkey}]}}}}]\n- name: team-b\n  scopes: [\"{host}/acme/*\"]\n  namespaces: [team-b]\n  credentials: {{username: bob, passwordFile: {bob}}}\n  verifiers: [{{cosign: {{publicKeys: [{pubkey}]}}}}]\n"
    );
    let v = Vouch::start(&config).await;
    let a = format!("{host}/acme/a:v1");
    let b = format!("{host}/acme/b:v1");

    assert_eq!(verdict(&v, &format!("[team-a]{a}")).await["verified"], true);
    assert_eq!(verdict(&v, &format!("[team-b]{b}")).await["verified"], true);
    // Team b asking for team a's repository uses bob's credentials, which cannot read it.
    let cross = v.verify(&[&format!("[team-b]{a}")]).await;
    let item = &cross["response"]["items"][0];
    assert!(
        item["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("auth:")),
        "{cross}"
    );
    // Cluster-wide keys go anonymously.
    let anonymous = v.verify(&[&a]).await;
    assert!(
        anonymous["response"]["items"][0]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("auth:")),
        "{anonymous}"
    );

    let log = r.tokens.requests();
    let asked = |user: &str, repo: &str| {
        log.iter().any(|t| {
            t.user.as_deref() == Some(user)
                && t.scopes.iter().any(|s| s.contains(&format!(":{repo}:")))
        })
    };
    assert!(asked("alice", "acme/a") && asked("bob", "acme/b") && asked("bob", "acme/a"));
    assert!(
        !asked("alice", "acme/b"),
        "alice's credentials never serve team b: {log:?}"
    );
    assert!(
        log.iter().all(|t| t.user.as_deref() != Some("alice")
            || t.scopes.iter().all(|s| s.contains(":acme/a:"))),
        "{log:?}"
    );

    // Mutation has no namespace: pinning goes anonymously, and says why it cannot.
    let pinned = v.ask("/v1/mutate", &[&a]).await;
    let error = pinned["response"]["items"][0]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(error.starts_with("auth:"), "{pinned}");
    assert!(
        error.contains("team-a") && error.contains("carry no namespace"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutation_and_the_command_line_see_namespaces_as_the_contract_says() {
    let registry = Registry::start();
    let pusher = Pusher::new(&registry);
    let host = registry.host.clone();
    let key = CosignKey::generate();
    push_signed(&pusher, &key, &host, "acme/app", "v1").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let pubkey = dir.path().join("k.pub");
    std::fs::write(&pubkey, key.public_pem()).expect("key");
    let config = format!(
        "registries:\n- host: {host}\n  plainHttp: true\npolicies:\n- name: team-a\n  scopes: [\"{host}/acme/*\"]\n  namespaces: [team-a]\n  verifiers: [{{cosign: {{publicKeys: [{}]}}}}]\n",
        pubkey.display()
    );
    let v = Vouch::start(&config).await;
    let image = format!("{host}/acme/app:v1");
    let pinned = v.ask("/v1/mutate", &[&image]).await;
    let error = pinned["response"]["items"][0]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        error.starts_with("no-policy:")
            && error.contains("team-a")
            && error.contains("no namespace"),
        "{pinned}"
    );

    let file = dir.path().join("vouch.yaml");
    std::fs::write(&file, &config).expect("config");
    let run = move |ns: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_vouch"));
        cmd.args(["verify", "--config"]).arg(&file);
        if let Some(ns) = ns {
            cmd.args(["--namespace", ns]);
        }
        cmd.arg(&image).output().expect("vouch verify")
    };
    let (a, none, bad) = tokio::task::spawn_blocking(move || {
        (run(Some("team-a")), run(None), run(Some("Not_A_Namespace")))
    })
    .await
    .expect("join");
    assert_eq!(
        a.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&a.stdout)
    );
    assert_eq!(
        none.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&none.stdout)
    );
    assert!(String::from_utf8_lossy(&none.stdout).contains("no-policy"));
    assert_eq!(bad.status.code(), Some(2));
}
