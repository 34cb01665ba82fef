//! A real PKI made by OpenSSL's command line (`openssl req`, `openssl ca`, `openssl ts`,
//! `openssl ocsp`), and a loopback HTTP server publishing its CRLs and answering OCSP
//! requests with `openssl ocsp`'s own responder logic (one `openssl ocsp -reqin` run per
//! request, so nothing binds beyond loopback). Certificates, CRLs, OCSP answers and
//! timestamp tokens all come from OpenSSL, not from vouch's code.
//!
//! The shape is an ordinary enterprise chain: a root, an intermediate issued by `openssl ca`
//! **without** extended key usage, leaves with codeSigning; plus a timestamp authority.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::Response;

/// Runs `openssl` with `args` in `dir`; panics with its output when it fails.
pub fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// One certificate authority managed by `openssl ca` (its own index, serial, CRL number).
pub struct Ca {
    pub dir: PathBuf,
    pub name: String,
}

impl Ca {
    pub fn cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    fn config(&self) -> PathBuf {
        self.dir.join("ca.cnf")
    }

    /// Revokes the certificate in `cert_pem_file` and republishes the CRL.
    pub fn revoke(&self, cert: &Path, crl_seconds: u32) {
        openssl(
            &self.dir,
            &[
                "ca",
                "-config",
                "ca.cnf",
                "-batch",
                "-revoke",
                cert.to_str().expect("path"),
            ],
        );
        self.publish_crl(crl_seconds);
    }

    /// Writes `crl.der`, valid for `seconds` (its nextUpdate).
    pub fn publish_crl(&self, seconds: u32) {
        openssl(
            &self.dir,
            &[
                "ca",
                "-config",
                "ca.cnf",
                "-batch",
                "-gencrl",
                "-crlsec",
                &seconds.to_string(),
                "-out",
                "crl.pem",
            ],
        );
        openssl(
            &self.dir,
            &[
                "crl", "-in", "crl.pem", "-outform", "DER", "-out", "crl.der",
            ],
        );
    }
}

/// How a leaf should be issued.
pub struct SigningLeaf<'a> {
    pub cn: &'a str,
    /// OCSP responder URL (Authority Information Access), if any.
    pub ocsp: Option<String>,
    /// CRL distribution point URL, if any.
    pub crl: Option<String>,
    /// `openssl ca -startdate/-enddate` (`YYYYMMDDHHMMSSZ`); default: now for a year.
    pub validity: Option<(String, String)>,
}

/// The PKI: root → intermediate (no EKU) → leaves; a separate TSA root and TSA.
pub struct OpensslPki {
    pub dir: tempfile::TempDir,
    pub root: Ca,
    pub intermediate: Ca,
    pub tsa_root: PathBuf,
    tsa_dir: PathBuf,
}

const CA_CNF: &str = r#"
[ ca ]
default_ca = CA_default
[ CA_default ]
dir = .
database = $dir/index.txt
new_certs_dir = $dir/newcerts
serial = $dir/serial
crlnumber = $dir/crlnumber
certificate = $dir/ca.crt
private_key = $dir/ca.key
default_md = sha256
default_days = 365
default_crl_days = 1
policy = policy_any
unique_subject = no
copy_extensions = none
[ policy_any ]
commonName = supplied
organizationName = optional
[ req ]
distinguished_name = dn
prompt = no
[ dn ]
CN = unused
[ v3_root ]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[ v3_intermediate ]
basicConstraints = critical, CA:true, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EXTRA_INTERMEDIATE
[ v3_leaf ]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = codeSigning
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EXTRA_LEAF
[ v3_ocsp ]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = OCSPSigning
[ v3_tsa ]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = critical, timeStamping
"#;

fn init_ca(dir: &Path, extra_leaf: &str, extra_intermediate: &str) {
    std::fs::create_dir_all(dir.join("newcerts")).expect("mkdir");
    std::fs::write(dir.join("index.txt"), "").expect("index");
    std::fs::write(dir.join("serial"), "1000\n").expect("serial");
    std::fs::write(dir.join("crlnumber"), "1000\n").expect("crlnumber");
    std::fs::write(
        dir.join("ca.cnf"),
        CA_CNF
            .replace("EXTRA_LEAF", extra_leaf)
            .replace("EXTRA_INTERMEDIATE", extra_intermediate),
    )
    .expect("cnf");
}

fn rsa_key(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            name,
        ],
    );
}

/// A new RSA key `key` and a self-signed CA certificate `ca.crt` for `subject` in `dir`.
fn self_signed_ca(dir: &Path, subject: &str) {
    rsa_key(dir, "ca.key");
    openssl(
        dir,
        &[
            "req",
            "-config",
            "ca.cnf",
            "-new",
            "-x509",
            "-key",
            "ca.key",
            "-subj",
            subject,
            "-days",
            "3650",
            "-extensions",
            "v3_root",
            "-out",
            "ca.crt",
        ],
    );
}

/// A new RSA key `key` and a certificate request `csr` for `subject` in `dir`.
fn request(dir: &Path, key: &str, subject: &str, csr: &str) {
    rsa_key(dir, key);
    openssl(
        dir,
        &["req", "-new", "-key", key, "-subj", subject, "-out", csr],
    );
}

/// `openssl ca` in `ca_dir`: issues `csr` as `out` with the extension section `section`
/// (`more`: further arguments, e.g. dates).
fn issue(ca_dir: &Path, section: &str, csr: &str, out: &str, more: &[&str]) {
    let mut args = vec![
        "ca",
        "-config",
        "ca.cnf",
        "-batch",
        "-extensions",
        section,
        "-in",
        csr,
        "-out",
        out,
    ];
    args.extend_from_slice(more);
    openssl(ca_dir, &args);
}

const TS_CNF: &str = "[ tsa ]\ndefault_tsa = t\n[ t ]\ndir = .\nserial = ./tsaserial\nsigner_cert = ./tsa.crt\ncerts = ./ca.crt\nsigner_key = ./tsa.key\nsigner_digest = sha256\ndefault_policy = 1.2.3.4.1\ndigests = sha256, sha384, sha512\naccuracy = secs:1\ness_cert_id_alg = sha256\nordering = yes\ntsa_name = yes\n";

impl OpensslPki {
    /// A root and an intermediate; the intermediate's status is published by the root at
    /// `root_crl_url` (its CRL distribution point), if given.
    pub fn new(root_crl_url: Option<&str>) -> OpensslPki {
        let dir = tempfile::tempdir().expect("tempdir");
        let root_dir = dir.path().join("root");
        let extra = root_crl_url
            .map(|u| format!("crlDistributionPoints = URI:{u}"))
            .unwrap_or_default();
        init_ca(&root_dir, "", &extra);
        self_signed_ca(&root_dir, "/O=Acme/CN=Acme Root CA");
        let inter_dir = dir.path().join("intermediate");
        init_ca(&inter_dir, "", "");
        request(&inter_dir, "ca.key", "/O=Acme/CN=Acme Signing CA", "ca.csr");
        issue(
            &root_dir,
            "v3_intermediate",
            "../intermediate/ca.csr",
            "../intermediate/ca.crt",
            &["-days", "1825"],
        );
        // The timestamp authority: its own root, a leaf with timeStamping (critical).
        let tsa_dir = dir.path().join("tsa");
        init_ca(&tsa_dir, "", "");
        self_signed_ca(&tsa_dir, "/O=Acme/CN=Acme TSA Root");
        request(&tsa_dir, "tsa.key", "/O=Acme/CN=Acme TSA", "tsa.csr");
        issue(&tsa_dir, "v3_tsa", "tsa.csr", "tsa.crt", &["-days", "1825"]);
        std::fs::write(tsa_dir.join("ts.cnf"), TS_CNF).expect("ts.cnf");
        std::fs::write(tsa_dir.join("tsaserial"), "01\n").expect("tsaserial");
        let root = Ca {
            dir: root_dir,
            name: "root".into(),
        };
        root.publish_crl(3600);
        let intermediate = Ca {
            dir: inter_dir,
            name: "intermediate".into(),
        };
        intermediate.publish_crl(3600);
        OpensslPki {
            tsa_root: tsa_dir.join("ca.crt"),
            tsa_dir,
            root,
            intermediate,
            dir,
        }
    }

    /// A code-signing leaf issued by the intermediate: (PKCS#8 key PEM, certificate PEM,
    /// certificate path).
    pub fn leaf(&self, spec: &SigningLeaf<'_>) -> (String, String, PathBuf) {
        let d = &self.intermediate.dir;
        let mut extra = String::new();
        if let Some(u) = &spec.ocsp {
            extra += &format!("authorityInfoAccess = OCSP;URI:{u}\n");
        }
        if let Some(u) = &spec.crl {
            extra += &format!("crlDistributionPoints = URI:{u}\n");
        }
        // Each leaf gets its own extension section.
        let section = format!(
            "v3_leaf_{}",
            spec.cn.replace(|c: char| !c.is_alphanumeric(), "_")
        );
        let mut cnf = std::fs::read_to_string(d.join("ca.cnf")).expect("cnf");
        cnf += &format!(
            "\n[ {section} ]\nbasicConstraints = critical, CA:false\nkeyUsage = critical, digitalSignature\nextendedKeyUsage = codeSigning\nsubjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n{extra}"
        );
        std::fs::write(d.join("ca.cnf"), cnf).expect("cnf");
        let (key, csr, crt) = (
            format!("{}.key", spec.cn),
            format!("{}.csr", spec.cn),
            format!("{}.crt", spec.cn),
        );
        request(d, &key, &format!("/O=Acme/CN={}", spec.cn), &csr);
        let dates: Vec<&str> = match &spec.validity {
            Some((start, end)) => vec!["-startdate", start, "-enddate", end],
            None => Vec::new(),
        };
        issue(d, &section, &csr, &crt, &dates);
        let key_pem = std::fs::read_to_string(d.join(&key)).expect("key");
        let path = d.join(&crt);
        // `openssl ca` writes a text dump before the PEM block.
        let cert_pem = pem_block(&std::fs::read_to_string(&path).expect("crt"));
        std::fs::write(&path, &cert_pem).expect("crt");
        (key_pem, cert_pem, path)
    }

    /// The intermediate's certificate, PEM.
    pub fn intermediate_pem(&self) -> String {
        pem_block(&std::fs::read_to_string(self.intermediate.cert()).expect("crt"))
    }

    /// An RFC 3161 token (DER) by this PKI's TSA over `data`, made by `openssl ts`.
    pub fn timestamp(&self, data: &[u8]) -> Vec<u8> {
        let d = &self.tsa_dir;
        std::fs::write(d.join("data.bin"), data).expect("data");
        let query = "ts -query -data data.bin -sha256 -cert -no_nonce -out q.tsq";
        let reply = "ts -reply -config ts.cnf -queryfile q.tsq -token_out -out token.der";
        for command in [query, reply] {
            openssl(d, &command.split(' ').collect::<Vec<_>>());
        }
        std::fs::read(d.join("token.der")).expect("token")
    }

    /// Issues an OCSP responder certificate for `ca` (OCSPSigning EKU).
    pub fn ocsp_signer(&self, ca: &Ca) -> (PathBuf, PathBuf) {
        let d = &ca.dir;
        request(d, "ocsp.key", "/O=Acme/CN=Acme OCSP", "ocsp.csr");
        issue(d, "v3_ocsp", "ocsp.csr", "ocsp.crt", &[]);
        (d.join("ocsp.crt"), d.join("ocsp.key"))
    }
}

/// The PEM block of a file `openssl ca` wrote (text dump first).
fn pem_block(s: &str) -> String {
    let start = s.find("-----BEGIN CERTIFICATE-----").expect("pem");
    s[start..].to_string()
}

/// What the revocation server publishes.
struct Published {
    /// `/crl/<name>` → the file it serves (read at each request).
    crls: HashMap<String, PathBuf>,
    /// `/ocsp/<name>` → (CA dir, responder cert, responder key).
    responders: HashMap<String, (PathBuf, PathBuf, PathBuf)>,
    hits: HashMap<String, usize>,
}

/// A loopback HTTP server for CRLs and OCSP, counting requests per path.
pub struct RevocationServer {
    pub base: String,
    state: Arc<Mutex<Published>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl RevocationServer {
    pub async fn start() -> RevocationServer {
        let state = Arc::new(Mutex::new(Published {
            crls: HashMap::new(),
            responders: HashMap::new(),
            hits: HashMap::new(),
        }));
        let router = axum::Router::new()
            .route("/crl/{name}", axum::routing::get(crl))
            .route("/ocsp/{name}", axum::routing::post(ocsp))
            .with_state(state.clone());
        let (addr, tx) = super::serve_router(router, "revocation server").await;
        RevocationServer {
            base: format!("http://{addr}"),
            state,
            shutdown: Some(tx),
        }
    }

    pub fn crl_url(&self, name: &str) -> String {
        format!("{}/crl/{name}", self.base)
    }

    pub fn ocsp_url(&self, name: &str) -> String {
        format!("{}/ocsp/{name}", self.base)
    }

    pub fn publish_crl(&self, name: &str, file: PathBuf) {
        self.state
            .lock()
            .expect("lock")
            .crls
            .insert(name.into(), file);
    }

    pub fn publish_ocsp(&self, name: &str, ca_dir: PathBuf, cert: PathBuf, key: PathBuf) {
        self.state
            .lock()
            .expect("lock")
            .responders
            .insert(name.into(), (ca_dir, cert, key));
    }

    /// Requests to `path` (`/crl/x`, `/ocsp/y`) so far.
    pub fn hits(&self, path: &str) -> usize {
        *self
            .state
            .lock()
            .expect("lock")
            .hits
            .get(path)
            .unwrap_or(&0)
    }
}

impl Drop for RevocationServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

async fn crl(State(s): State<Arc<Mutex<Published>>>, UrlPath(name): UrlPath<String>) -> Response {
    let file = {
        let mut p = s.lock().expect("lock");
        *p.hits.entry(format!("/crl/{name}")).or_default() += 1;
        p.crls.get(&name).cloned()
    };
    match file.and_then(|f| std::fs::read(f).ok()) {
        Some(bytes) => Response::builder()
            .header("content-type", "application/pkix-crl")
            .body(Body::from(bytes))
            .expect("response"),
        None => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Body::empty())
            .expect("response"),
    }
}

async fn ocsp(
    State(s): State<Arc<Mutex<Published>>>,
    UrlPath(name): UrlPath<String>,
    body: Bytes,
) -> Response {
    let responder = {
        let mut p = s.lock().expect("lock");
        *p.hits.entry(format!("/ocsp/{name}")).or_default() += 1;
        p.responders.get(&name).cloned()
    };
    let Some((ca_dir, cert, key)) = responder else {
        return Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Body::empty())
            .expect("response");
    };
    let answer = tokio::task::spawn_blocking(move || {
        let work = tempfile::tempdir().expect("tempdir");
        let req = work.path().join("req.der");
        let resp = work.path().join("resp.der");
        std::fs::write(&req, &body).expect("req");
        let s = |p: &Path| p.to_str().expect("path").to_string();
        openssl(
            &ca_dir,
            &[
                "ocsp",
                "-index",
                "index.txt",
                "-CA",
                "ca.crt",
                "-rsigner",
                &s(&cert),
                "-rkey",
                &s(&key),
                "-reqin",
                &s(&req),
                "-respout",
                &s(&resp),
                "-nmin",
                "10",
            ],
        );
        std::fs::read(&resp).expect("resp")
    })
    .await
    .expect("openssl ocsp");
    Response::builder()
        .header("content-type", "application/ocsp-response")
        .body(Body::from(answer))
        .expect("response")
}
