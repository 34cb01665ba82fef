//! mTLS on the provider port with a Gatekeeper-shaped PKI, and certificate rotation the
//! way a Kubernetes secret volume does it.

mod support;

use std::time::Duration;

use rcgen::ExtendedKeyUsagePurpose;
use support::*;

const ALLOW: &str =
    "policies:\n- name: library\n  scopes: [\"docker.io/library/*\"]\n  action: allow\n";

/// Connects with `config` and makes one request; `Err` if the handshake or the request
/// fails. In TLS 1.3 the server judges the client certificate after the client considers
/// the handshake done, so a refusal may surface on the first request.
async fn attempt(v: &Vouch, config: std::sync::Arc<rustls::ClientConfig>) -> Result<u16, String> {
    let mut conn = Conn::open(v.running.provider_addr, config).await?;
    Ok(conn
        .post("/v1/verify", provider_request(&["nginx"]))
        .await?
        .status)
}

async fn handshake_failures(v: &Vouch, reason: &str) -> f64 {
    let text = ops_get(v.running.ops_addr, "/metrics").await.text();
    metric_value(
        &text,
        &format!("vouch_tls_handshake_failures_total{{reason=\"{reason}\"}}"),
    )
}

#[tokio::test]
async fn gatekeeper_certificate_is_accepted() {
    let v = Vouch::start(ALLOW).await;
    assert_eq!(attempt(&v, v.gatekeeper_client()).await, Ok(200));
    // The CA really has serial number 0 and the leaf both EKUs (the shape Gatekeeper uses).
    let ca = CertificateInfo::parse(&v.pki.gatekeeper_ca.cert_pem);
    assert_eq!(ca.serial, vec![0]);
}

#[tokio::test]
async fn clients_without_a_valid_gatekeeper_certificate_are_refused() {
    let v = Vouch::start(ALLOW).await;
    let server_ca = v.pki.server_ca.cert_pem.clone();

    let none = client_config(&server_ca, None, Versions::Tls13);
    assert!(attempt(&v, none).await.is_err(), "no client certificate");
    assert!(
        eventually(STEP, || async {
            handshake_failures(&v, "no_client_cert").await >= 1.0
        })
        .await,
        "refusal counted as no_client_cert"
    );

    let other_ca = Ca::new("someone-else", true, Some(0));
    let stranger = other_ca.issue(LeafSpec::gatekeeper());
    let r = attempt(
        &v,
        client_config(&server_ca, Some(&stranger), Versions::Tls13),
    )
    .await;
    assert!(r.is_err(), "certificate from another CA: {r:?}");

    let expired = v.pki.gatekeeper_ca.issue(LeafSpec {
        expired: true,
        ..LeafSpec::gatekeeper()
    });
    let r = attempt(
        &v,
        client_config(&server_ca, Some(&expired), Versions::Tls13),
    )
    .await;
    assert!(r.is_err(), "expired certificate: {r:?}");

    let server_only = v.pki.gatekeeper_ca.issue(LeafSpec {
        eku: vec![ExtendedKeyUsagePurpose::ServerAuth],
        ..LeafSpec::gatekeeper()
    });
    let r = attempt(
        &v,
        client_config(&server_ca, Some(&server_only), Versions::Tls13),
    )
    .await;
    assert!(r.is_err(), "certificate without clientAuth EKU: {r:?}");
    assert!(
        eventually(STEP, || async {
            handshake_failures(&v, "bad_client_cert").await >= 3.0
        })
        .await,
        "three bad certificates counted"
    );

    let tls12 = client_config(&server_ca, Some(&v.pki.gatekeeper), Versions::Tls12Only);
    let r = Conn::open(v.running.provider_addr, tls12).await;
    assert!(r.is_err(), "TLS 1.2-only client must fail the handshake");
    assert!(
        eventually(STEP, || async {
            handshake_failures(&v, "protocol").await >= 1.0
        })
        .await,
        "TLS 1.2 counted as protocol failure"
    );

    // The right certificate still works after all that.
    assert_eq!(attempt(&v, v.gatekeeper_client()).await, Ok(200));
}

#[tokio::test]
async fn secret_volume_rotation_is_picked_up_without_dropping_connections() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("secret");
    std::fs::create_dir_all(&secret).expect("mkdir");
    let old = Pki::new();
    write_secret_generation(&secret, "2026_01", &old);
    let config_yaml = format!(
        "listen: 127.0.0.1:0\nopsListen: 127.0.0.1:0\ntls: {{certFile: secret/tls.crt, keyFile: secret/tls.key, clientCAFile: secret/ca.crt, reloadInterval: 100ms}}\n{ALLOW}"
    );
    std::fs::write(dir.path().join("vouch.yaml"), config_yaml).expect("config");
    let config = vouch::config::Config::load(&dir.path().join("vouch.yaml")).expect("valid");
    let running = vouch::app::start(config, vouch::app::Options::default())
        .await
        .expect("start");
    let addr = running.provider_addr;
    wait_ready(running.ops_addr).await;
    let old_client = old.gatekeeper_client();
    let mut established = Conn::open(addr, old_client.clone())
        .await
        .expect("old client connects");
    let r = established
        .post("/v1/verify", provider_request(&["nginx"]))
        .await
        .expect("request");
    assert_eq!(r.status, 200);

    let new = Pki::new();
    write_secret_generation(&secret, "2026_02", &new);
    let new_client = new.gatekeeper_client();
    let rotated = eventually(Duration::from_secs(5), || {
        let c = new_client.clone();
        async move {
            match Conn::open(addr, c).await {
                Ok(mut conn) => conn
                    .post("/v1/verify", provider_request(&["nginx"]))
                    .await
                    .is_ok_and(|r| r.status == 200),
                Err(_) => false,
            }
        }
    })
    .await;
    assert!(rotated, "new certificate and client CA served within 5 s");

    // The connection opened before the swap keeps working on its old session.
    let r = established
        .post("/v1/verify", provider_request(&["nginx"]))
        .await
        .expect("old connection");
    assert_eq!(r.status, 200);

    // New handshakes with the old client CA's certificate are now refused.
    let r = async {
        let mut c = Conn::open(addr, old_client).await?;
        c.post("/v1/verify", provider_request(&["nginx"])).await
    }
    .await;
    assert!(r.is_err(), "old identity refused after rotation: {r:?}");

    let text = ops_get(running.ops_addr, "/metrics").await.text();
    assert!(
        metric_value(&text, "vouch_tls_reloads_total{result=\"success\"}") >= 2.0,
        "{text}"
    );
    running.stop().await;
}

#[tokio::test]
async fn a_broken_rotation_keeps_the_old_certificate() {
    let v = Vouch::start(ALLOW).await;
    let mut conn = v.connect().await;
    // A key that does not match the certificate: the reload must fail and change nothing.
    let other = Pki::new();
    std::fs::write(v.path("tls.key"), &other.server.key_pem).expect("write");
    let ops = v.running.ops_addr;
    assert!(
        eventually(STEP, || async move {
            metric_value(
                &ops_get(ops, "/metrics").await.text(),
                "vouch_tls_reloads_total{result=\"failure\"}",
            ) >= 1.0
        })
        .await,
        "the mismatched key is noticed"
    );
    assert_eq!(
        conn.post("/v1/verify", provider_request(&["nginx"]))
            .await
            .map(|r| r.status),
        Ok(200)
    );
    assert_eq!(
        attempt(&v, v.gatekeeper_client()).await,
        Ok(200),
        "new handshakes still served"
    );
    assert_eq!(ops_get(ops, "/readyz").await.status, 200);
}

/// Just enough X.509 parsing to check the test PKI's shape.
struct CertificateInfo {
    serial: Vec<u8>,
}

impl CertificateInfo {
    fn parse(pem: &str) -> CertificateInfo {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).expect("pem");
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).expect("parse");
        CertificateInfo {
            serial: cert.tbs_certificate.raw_serial().to_vec(),
        }
    }
}
