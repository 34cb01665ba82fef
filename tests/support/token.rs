//! A distribution token service for tests: the other half of a registry started with
//! [`Registry::start_with_token_auth`]. It checks HTTP Basic credentials ([`USER`],
//! [`PASSWORD`]) and issues the JWTs distribution verifies: ES256 over
//! `base64url(header).base64url(claims)`, the signature raw `r || s` (64 bytes), the header
//! carrying the signer's self-signed certificate in `x5c`, which the registry finds in its
//! `rootcertbundle`. Keys and certificate are made with RustCrypto's p256 and rcgen, no code
//! vouch uses, so a token the registry accepts is one a real token service could have sent.
//!
//! It can also misbehave on purpose ([`Issue`]): sign with a key the registry does not
//! trust, or answer a body that holds no token. Faults of the transport (a 500, a delay,
//! bytes that are not HTTP) come from the [`FaultProxy`] in front of it, see
//! [`TokenRegistry`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::elliptic_curve::Generate;
use p256::pkcs8::{EncodePrivateKey, LineEnding};
use rcgen::{CertificateParams, DnType, KeyPair};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use super::faults::FaultProxy;
use super::free_port;
use super::registry::{MintToken, PASSWORD, Pusher, Registry, USER};

/// The registry's `auth.token.service`: the `service` of its challenges and the `aud` of
/// the tokens it accepts.
pub const SERVICE: &str = "vouch-test-registry";
/// The registry's `auth.token.issuer`: the `iss` of the tokens it accepts.
pub const ISSUER: &str = "vouch-test-token-service";
/// How long issued tokens are valid (`expires_in`, and `exp - iat`).
pub const EXPIRES_IN: u64 = 300;

/// What the token service answers an authorized request with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Issue {
    /// `{"token": <jwt>, "access_token": <jwt>, "expires_in": …}` signed by the trusted key,
    /// as distribution's reference token server answers.
    Trusted,
    /// The same, only the JWT under `access_token` alone (the OAuth2 field name).
    AccessTokenOnly,
    /// A well-formed token signed by another key, with that key's own self-signed
    /// certificate in `x5c`: a token service the registry does not trust.
    Untrusted,
    /// This body, verbatim, with `200` and `Content-Type: application/json`.
    Body(String),
}

/// One request the token service has seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// The Basic user name, if any (the password is never kept).
    pub user: Option<String>,
    /// The credentials were [`USER`] and [`PASSWORD`].
    pub authorized: bool,
    /// Every `scope` value, space-separated lists split.
    pub scopes: Vec<String>,
    pub service: Option<String>,
}

/// An ES256 signing key and its self-signed certificate.
struct TokenKey {
    key: SigningKey,
    cert_der: Vec<u8>,
    cert_pem: String,
}

impl TokenKey {
    fn generate(cn: &str) -> TokenKey {
        let key = SigningKey::generate();
        let pkcs8 = key
            .to_pkcs8_pem(LineEnding::LF)
            .expect("PKCS#8 of the token key");
        let key_pair = KeyPair::from_pem(&pkcs8).expect("rcgen reads the token key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params
            .self_signed(&key_pair)
            .expect("self-signed token certificate");
        TokenKey {
            key,
            cert_der: cert.der().to_vec(),
            cert_pem: cert.pem(),
        }
    }

    /// A compact JWS of `claims`.
    fn jwt(&self, claims: &Value) -> String {
        let header =
            json!({"typ": "JWT", "alg": "ES256", "x5c": [STANDARD.encode(&self.cert_der)]});
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature: Signature = self.key.sign(signing_input.as_bytes());
        format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        )
    }
}

/// A further account of the token service: its password and the only repositories it may
/// pull (tenants of a shared registry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub user: String,
    pub password: String,
    pub repositories: Vec<String>,
}

/// What the server and its handle share. The mutexes are never held across an await.
struct State {
    trusted: TokenKey,
    untrusted: TokenKey,
    issue: Mutex<Issue>,
    accounts: Mutex<Vec<Account>>,
    log: Mutex<Vec<TokenRequest>>,
    next_id: AtomicU64,
}

/// A lock that survives a panicked holder.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl State {
    /// The claims of a token for `subject` with `access`, valid from now for
    /// [`EXPIRES_IN`].
    fn claims(&self, subject: &str, access: Vec<Value>) -> Value {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        json!({
            "iss": ISSUER,
            "sub": subject,
            "aud": SERVICE,
            "exp": now + EXPIRES_IN,
            "nbf": now,
            "iat": now,
            "jti": format!("vouch-test-{id}"),
            "access": access,
        })
    }

    fn mint(&self, repository: &str, actions: &[&str]) -> String {
        let access = vec![json!({"type": "repository", "name": repository, "actions": actions})];
        self.trusted.jwt(&self.claims(USER, access))
    }
}

/// The token service on a free loopback port, answering `GET /token`. Dropping it aborts
/// its tasks, which closes the listener and every connection.
pub struct TokenService {
    pub addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl TokenService {
    /// Starts the service with fresh keys, issuing trusted tokens. Must be called within a
    /// tokio runtime, which then runs it.
    pub async fn start() -> TokenService {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind token service on loopback");
        let addr = listener.local_addr().expect("token service address");
        let state = Arc::new(State {
            trusted: TokenKey::generate("vouch test token service"),
            untrusted: TokenKey::generate("some other token service"),
            issue: Mutex::new(Issue::Trusted),
            accounts: Mutex::default(),
            log: Mutex::default(),
            next_id: AtomicU64::new(0),
        });
        let task = tokio::spawn(accept_loop(listener, state.clone()));
        TokenService { addr, state, task }
    }

    /// The certificate of the trusted key: the registry's `rootcertbundle`.
    pub fn cert_pem(&self) -> String {
        self.state.trusted.cert_pem.clone()
    }

    /// How the service answers from now on.
    pub fn set_issue(&self, issue: Issue) {
        *lock(&self.state.issue) = issue;
    }

    /// Adds accounts beside [`USER`]: each may pull only its own repositories.
    pub fn add_accounts(&self, accounts: Vec<Account>) {
        lock(&self.state.accounts).extend(accounts);
    }

    /// Every request seen so far, in order.
    pub fn requests(&self) -> Vec<TokenRequest> {
        lock(&self.state.log).clone()
    }

    /// Trusted `pull,push` tokens for [`USER`] on a repository, for [`Pusher::with_bearer`].
    /// Minted tokens are not requests: they do not show in [`TokenService::requests`].
    pub fn minter(&self) -> MintToken {
        let state = self.state.clone();
        Arc::new(move |repository| state.mint(repository, &["pull", "push"]))
    }
}

impl Drop for TokenService {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        while connections.try_join_next().is_some() {}
        let state = state.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(answer(&state, &request)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

/// The answer to one request; everything but `GET /token` is a 404.
fn answer(state: &State, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    if request.method() != hyper::Method::GET || request.uri().path() != "/token" {
        return reply(StatusCode::NOT_FOUND, &[], "{}");
    }
    let query = reqwest::Url::parse(&format!("http://token.invalid{}", request.uri()))
        .map(|u| u.query_pairs().into_owned().collect::<Vec<_>>())
        .unwrap_or_default();
    let scopes: Vec<String> = query
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' '))
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let service = query
        .iter()
        .find(|(k, _)| k == "service")
        .map(|(_, v)| v.clone());
    let credentials = basic_credentials(request);
    // `None`: every repository ([`USER`]); `Some`: an account's own.
    let allowed: Option<Option<Vec<String>>> = match &credentials {
        Some((u, p)) if u == USER && p == PASSWORD => Some(None),
        Some((u, p)) => lock(&state.accounts)
            .iter()
            .find(|a| &a.user == u && &a.password == p)
            .map(|a| Some(a.repositories.clone())),
        None => None,
    };
    let authorized = allowed.is_some();
    lock(&state.log).push(TokenRequest {
        user: credentials.as_ref().map(|(u, _)| u.clone()),
        authorized,
        scopes: scopes.clone(),
        service,
    });
    if !authorized {
        return reply(
            StatusCode::UNAUTHORIZED,
            &[("www-authenticate", "Basic realm=\"vouch-test-token\"")],
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
        );
    }
    let issue = lock(&state.issue).clone();
    let key = match issue {
        Issue::Body(body) => return reply(StatusCode::OK, &[], &body),
        Issue::Untrusted => &state.untrusted,
        Issue::Trusted | Issue::AccessTokenOnly => &state.trusted,
    };
    let mut access = grants(&scopes);
    if let Some(Some(repositories)) = &allowed {
        access.retain(|g| {
            g["name"]
                .as_str()
                .is_some_and(|n| repositories.iter().any(|r| r == n))
        });
    }
    let subject = credentials.map_or(USER.to_string(), |(u, _)| u);
    let jwt = key.jwt(&state.claims(&subject, access));
    let body = if issue == Issue::AccessTokenOnly {
        json!({"access_token": jwt, "expires_in": EXPIRES_IN})
    } else {
        json!({"token": jwt, "access_token": jwt, "expires_in": EXPIRES_IN})
    };
    reply(StatusCode::OK, &[], &body.to_string())
}

/// The `access` claim for the requested scopes (`repository:<name>:<actions>`): `pull`
/// where it was asked for, never more. vouch only reads, and a token it leaked must not
/// be good for writing.
fn grants(scopes: &[String]) -> Vec<Value> {
    scopes
        .iter()
        .filter_map(|scope| {
            let (kind, rest) = scope.split_once(':')?;
            let (name, actions) = rest.rsplit_once(':')?;
            let granted: Vec<&str> = actions.split(',').filter(|a| *a == "pull").collect();
            (kind == "repository" && !granted.is_empty())
                .then(|| json!({"type": kind, "name": name, "actions": granted}))
        })
        .collect()
}

/// The user and password of an `Authorization: Basic` header.
fn basic_credentials(request: &Request<Incoming>) -> Option<(String, String)> {
    let value = request.headers().get("authorization")?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

fn reply(status: StatusCode, headers: &[(&str, &str)], body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::builder()
        .status(status)
        .header("content-type", "application/json");
    for (name, value) in headers {
        response = response.header(*name, *value);
    }
    response
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("token service response")
}

/// A token-auth registry as vouch meets one: a [`FaultProxy`] in front of both the registry
/// and its token service, the service under `/token` on the proxy, and the registry's realm
/// `http://<proxy>/token`. vouch accepts a plain-HTTP realm only on the registry's own host
/// and port, which is where the proxy puts it; the proxy's rules on `/token` then break the
/// token service the way they break the registry.
pub struct TokenRegistry {
    pub tokens: TokenService,
    pub proxy: FaultProxy,
    pub registry: Registry,
}

impl TokenRegistry {
    pub async fn start() -> TokenRegistry {
        let tokens = TokenService::start().await;
        // The registry needs the realm, so the proxy's address, before it starts; until it
        // is up the proxy forwards to a port nothing listens on, which answers 502.
        let nowhere = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let proxy = FaultProxy::start(nowhere).await;
        proxy.route("/token", tokens.addr);
        let realm = format!("http://{}/token", proxy.host);
        let registry = Registry::start_with_token_auth(&realm, &tokens.cert_pem());
        proxy.set_upstream(registry.addr);
        TokenRegistry {
            tokens,
            proxy,
            registry,
        }
    }

    /// The registry's host as vouch sees it (the proxy's), for image references and the
    /// `registries` entry.
    pub fn host(&self) -> &str {
        &self.proxy.host
    }

    /// A pusher that talks to the registry directly with minted push tokens.
    pub fn pusher(&self) -> Pusher {
        Pusher::with_bearer(&self.registry, self.tokens.minter())
    }
}
