//! Serving certificate, client CA, and their hot reload.
//!
//! The provider's rustls [`ServerConfig`] lives in a [`TlsState`] that new handshakes read;
//! [`Reloader`] re-reads the certificate, key and client CA files every `tls.reloadInterval`
//! and swaps in a new config when their bytes change. Reading contents (not watching
//! inodes) follows Kubernetes secret volumes, where the files are symlinks through a
//! `..data` directory link that kubelet swaps atomically. A half-written or mismatched
//! set (certificate from the new secret, key from the old) fails to build and is retried on
//! the next tick; the previous config keeps serving meanwhile. Established connections
//! keep the config they were accepted with.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Why certificate material could not be turned into a server config.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what}: no PEM certificate found")]
    NoCertificate { what: &'static str },
    #[error("{what}: invalid PEM: {source}")]
    Pem {
        what: &'static str,
        source: rustls::pki_types::pem::Error,
    },
    #[error("private key: {0}")]
    Key(rustls::pki_types::pem::Error),
    #[error("client CA: {0}")]
    ClientCa(rustls::Error),
    #[error("client verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("certificate and key: {0}")]
    CertKey(rustls::Error),
    #[error("cannot generate development certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// The one crypto provider compiled in.
pub(crate) fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Parses every certificate in a PEM bundle.
pub(crate) fn parse_certs(
    what: &'static str,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem { what, source })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { what });
    }
    Ok(certs)
}

/// Builds the provider's server config: TLS 1.3 only, HTTP/1.1 offered through ALPN (but
/// not required), and — when a client CA is given — a verified client certificate
/// required on every connection.
pub(crate) fn server_config(
    cert_pem: &[u8],
    key_pem: &[u8],
    client_ca_pem: Option<&[u8]>,
) -> Result<ServerConfig, TlsError> {
    let provider = crypto_provider();
    let certs = parse_certs("certificate", cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(TlsError::Key)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::CertKey)?;
    let builder = match client_ca_pem {
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for ca in parse_certs("client CA", pem)? {
                roots.add(ca).map_err(TlsError::ClientCa)?;
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build()?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(TlsError::CertKey)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// When the certificates of a PEM bundle expire, in Unix seconds: the first certificate's
/// (`leaf_only`: a serving chain, whose leaf expires first in any sane rotation) or the
/// earliest of all (a CA bundle, whose first expiring CA is what breaks). `None` when no
/// certificate parses, which [`server_config`] has already refused.
fn first_expiry(pem: &[u8], leaf_only: bool) -> Option<f64> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let certs = parse_certs("certificate", pem).ok()?;
    let take = if leaf_only { 1 } else { certs.len() };
    certs
        .iter()
        .take(take)
        .filter_map(|der| {
            let (_, cert) = X509Certificate::from_der(der.as_ref()).ok()?;
            Some(cert.validity().not_after.timestamp())
        })
        .min()
        // Unix seconds fit an f64 exactly for any date a certificate can carry.
        .map(|t| t as f64)
}

/// A certificate authority and a serving certificate made at start-up when no TLS files are
/// configured (development only).
pub(crate) struct DevPki {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// Names the development certificate is valid for: loopback and the in-cluster Service.
pub(crate) const DEV_SANS: &[&str] = &[
    "localhost",
    "127.0.0.1",
    "::1",
    "vouch",
    "vouch.vouch-system",
    "vouch.vouch-system.svc",
    "vouch.vouch-system.svc.cluster.local",
];

pub(crate) fn generate_dev_pki() -> Result<DevPki, TlsError> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name
        .push(DnType::CommonName, "vouch development CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);

    let leaf_key = KeyPair::generate()?;
    let mut leaf =
        CertificateParams::new(DEV_SANS.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
    leaf.distinguished_name.push(DnType::CommonName, "vouch");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer)?;
    Ok(DevPki {
        ca_pem: ca_cert.pem(),
        cert_pem: leaf_cert.pem(),
        key_pem: leaf_key.serialize_pem(),
    })
}

/// Where serving material comes from.
#[derive(Clone)]
pub enum TlsSource {
    /// Certificate and key files (and optionally a client CA file), re-read on every tick.
    Files {
        /// The serving certificate chain (PEM).
        cert: PathBuf,
        /// The serving key (PEM).
        key: PathBuf,
        /// The CA that signs Gatekeeper's client certificates; `None` disables client auth.
        client_ca: Option<PathBuf>,
    },
    /// A generated development certificate; a client CA file may still be configured.
    Generated {
        /// The generated certificate (PEM).
        cert_pem: Arc<[u8]>,
        /// Its key (PEM).
        key_pem: Arc<[u8]>,
        /// The CA that signs Gatekeeper's client certificates; `None` disables client auth.
        client_ca: Option<PathBuf>,
    },
}

/// The bytes one load is built from; compared to skip rebuilding unchanged material.
#[derive(Clone, PartialEq, Eq)]
struct Material {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

async fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    tokio::fs::read(path)
        .await
        .map_err(|source| TlsError::Read {
            path: path.to_path_buf(),
            source,
        })
}

impl TlsSource {
    async fn read(&self) -> Result<Material, TlsError> {
        let (cert, key, ca) = match self {
            TlsSource::Files {
                cert,
                key,
                client_ca,
            } => (read(cert).await?, read(key).await?, client_ca),
            TlsSource::Generated {
                cert_pem,
                key_pem,
                client_ca,
            } => (cert_pem.to_vec(), key_pem.to_vec(), client_ca),
        };
        let client_ca = match ca {
            Some(p) => Some(read(p).await?),
            None => None,
        };
        Ok(Material {
            cert,
            key,
            client_ca,
        })
    }

    /// Whether client certificates are required (a client CA is configured).
    pub fn client_auth(&self) -> bool {
        match self {
            TlsSource::Files { client_ca, .. } | TlsSource::Generated { client_ca, .. } => {
                client_ca.is_some()
            }
        }
    }
}

/// The current server config, shared by the accept loop (reads) and [`Reloader`] (writes).
#[derive(Default)]
pub struct TlsState {
    current: ArcSwapOption<ServerConfig>,
    /// Why the last load failed, while no config has ever loaded (for `/readyz`).
    problem: Mutex<Option<String>>,
}

impl TlsState {
    /// The config new handshakes use; `None` until one has loaded.
    pub fn current(&self) -> Option<Arc<ServerConfig>> {
        self.current.load_full()
    }

    /// `Ok` once a config is serving; otherwise why not.
    pub fn status(&self) -> Result<(), String> {
        if self.current.load().is_some() {
            return Ok(());
        }
        let problem = self.problem.lock().map(|p| p.clone()).unwrap_or_default();
        Err(problem.unwrap_or_else(|| "certificate not loaded yet".to_string()))
    }

    fn set_problem(&self, why: String) {
        if let Ok(mut p) = self.problem.lock() {
            *p = Some(why);
        }
    }
}

/// Re-reads a [`TlsSource`] and swaps the config in a [`TlsState`] when it changed.
pub struct Reloader {
    source: TlsSource,
    state: Arc<TlsState>,
    metrics: Arc<Metrics>,
    /// The material of the last load attempt, good or bad: a broken set is reported once,
    /// and a half-swapped set is retried as soon as any byte changes.
    last: Option<Material>,
}

impl Reloader {
    /// A reloader of `source` into `state`; [`Reloader::run`] polls.
    pub fn new(source: TlsSource, state: Arc<TlsState>, metrics: Arc<Metrics>) -> Reloader {
        Reloader {
            source,
            state,
            metrics,
            last: None,
        }
    }

    /// One load attempt.
    pub async fn tick(&mut self) {
        let m = match self.source.read().await {
            Ok(m) => m,
            Err(e) => {
                if self.state.current().is_none() {
                    self.state
                        .set_problem(format!("waiting for TLS material: {e}"));
                }
                if self.last.take().is_some() {
                    // Logged once per outage, not once per tick.
                    tracing::warn!(error = %e, "cannot re-read TLS material; keeping the current certificate");
                }
                return;
            }
        };
        if self.last.as_ref() == Some(&m) {
            return;
        }
        match server_config(&m.cert, &m.key, m.client_ca.as_deref()) {
            Ok(config) => {
                let first = self.state.current().is_none();
                self.state.current.store(Some(Arc::new(config)));
                self.metrics.tls_reloaded(true);
                self.metrics.certificates_loaded(
                    first_expiry(&m.cert, true),
                    m.client_ca
                        .as_deref()
                        .and_then(|ca| first_expiry(ca, false)),
                );
                if first {
                    tracing::info!(
                        client_auth = self.source.client_auth(),
                        "TLS material loaded"
                    );
                } else {
                    tracing::info!("TLS material changed; new handshakes use it");
                }
            }
            Err(e) => {
                self.metrics.tls_reloaded(false);
                tracing::warn!(error = %e, "TLS material does not build; keeping the current certificate and retrying");
                if self.state.current().is_none() {
                    self.state.set_problem(format!("TLS material invalid: {e}"));
                }
            }
        }
        self.last = Some(m);
    }

    /// Ticks every `interval` until `shutdown`.
    pub async fn run(mut self, interval: Duration, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => self.tick().await,
                _ = shutdown.cancelled() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_pki_builds_a_tls13_config() {
        let pki = generate_dev_pki().expect("generate");
        let config =
            server_config(pki.cert_pem.as_bytes(), pki.key_pem.as_bytes(), None).expect("config");
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        let ca = server_config(
            pki.cert_pem.as_bytes(),
            pki.key_pem.as_bytes(),
            Some(pki.ca_pem.as_bytes()),
        );
        assert!(ca.is_ok(), "client CA config");
    }

    /// A self-signed certificate valid until 1 January of `year`, as PEM.
    fn valid_until(year: i32) -> String {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(vec!["x".to_string()]).expect("params");
        params.not_after = rcgen::date_time_ymd(year, 1, 1);
        params.self_signed(&key).expect("certificate").pem()
    }

    #[test]
    fn expiry_of_the_leaf_and_the_earliest_ca() {
        let (y2030, y2040) = (1_893_456_000.0, 2_208_988_800.0);
        let chain = format!("{}{}", valid_until(2040), valid_until(2030));
        // A serving chain: its leaf (first), even when an intermediate expires earlier.
        assert_eq!(first_expiry(chain.as_bytes(), true), Some(y2040));
        // A CA bundle: the earliest.
        assert_eq!(first_expiry(chain.as_bytes(), false), Some(y2030));
        assert_eq!(first_expiry(b"not pem", false), None);
    }

    #[test]
    fn mismatched_key_is_refused() {
        let a = generate_dev_pki().expect("generate");
        let b = generate_dev_pki().expect("generate");
        let err =
            server_config(a.cert_pem.as_bytes(), b.key_pem.as_bytes(), None).expect_err("mismatch");
        assert!(matches!(err, TlsError::CertKey(_)), "{err}");
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let err = server_config(b"nope", b"nope", None).expect_err("garbage");
        assert!(matches!(err, TlsError::NoCertificate { .. }), "{err}");
        let pki = generate_dev_pki().expect("generate");
        let err = server_config(pki.cert_pem.as_bytes(), pki.key_pem.as_bytes(), Some(b""))
            .expect_err("empty CA");
        assert!(err.to_string().starts_with("client CA"), "{err}");
    }
}
