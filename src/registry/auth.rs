//! Registry credentials and the distribution token flow.
//!
//! Credentials come from `username` + `passwordFile` or a docker `config.json`, read once at
//! start-up and never logged. A `401` with `WWW-Authenticate: Bearer realm=…,service=…,
//! scope=…` is answered by fetching a token from the realm (with the credentials as basic
//! auth, if any) and caching it per scope until shortly before it expires.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderMap, WWW_AUTHENTICATE};

use super::fetch::classify;
use super::{ErrorKind, RegistryClient, RegistryError, host_port, host_port_of};

/// A user name and password. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({:?}, <redacted>)", self.username)
    }
}

/// Why credentials could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CredentialsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {why}")]
    Invalid { path: String, why: String },
}

/// Reads `passwordFile` (trailing newline trimmed).
pub(crate) fn from_password_file(
    username: &str,
    path: &Path,
) -> Result<Credentials, CredentialsError> {
    let password = std::fs::read_to_string(path).map_err(|source| CredentialsError::Read {
        path: path.display().to_string(),
        source,
    })?;
    Ok(Credentials {
        username: username.to_string(),
        password: password.trim_end_matches(['\r', '\n']).to_string(),
    })
}

/// Looks `host` up in a docker `config.json` (`auths` entries with `auth` = base64
/// `user:password`, or `username`/`password`). `None` when the file has no entry for it.
pub(crate) fn from_docker_config(
    host: &str,
    path: &Path,
) -> Result<Option<Credentials>, CredentialsError> {
    let p = path.display().to_string();
    let text = std::fs::read(path).map_err(|source| CredentialsError::Read {
        path: p.clone(),
        source,
    })?;
    let invalid = |why: String| CredentialsError::Invalid {
        path: p.clone(),
        why,
    };
    let json: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| invalid(format!("not JSON: {e}")))?;
    let auths = json.get("auths").and_then(|a| a.as_object());
    let candidates = [
        host.to_string(),
        format!("https://{host}"),
        format!("http://{host}"),
        format!("https://{host}/v1/"),
        format!("https://{host}/v2/"),
    ];
    let docker_hub = [
        "https://index.docker.io/v1/",
        "index.docker.io",
        "registry-1.docker.io",
    ];
    let entry = auths.and_then(|a| {
        candidates
            .iter()
            .map(String::as_str)
            .chain(
                if host == "docker.io" {
                    &docker_hub[..]
                } else {
                    &[][..]
                }
                .iter()
                .copied(),
            )
            .find_map(|k| a.get(k))
    });
    let Some(entry) = entry else {
        return Ok(None);
    };
    if let Some(auth) = entry
        .get("auth")
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
    {
        let decoded = B64
            .decode(auth.trim())
            .map_err(|_| invalid(format!("auths[{host:?}].auth is not base64")))?;
        let decoded = String::from_utf8(decoded)
            .map_err(|_| invalid(format!("auths[{host:?}].auth is not UTF-8")))?;
        let (u, pw) = decoded
            .split_once(':')
            .ok_or_else(|| invalid(format!("auths[{host:?}].auth is not user:password")))?;
        return Ok(Some(Credentials {
            username: u.to_string(),
            password: pw.to_string(),
        }));
    }
    let field = |k: &str| entry.get(k).and_then(|v| v.as_str()).map(str::to_string);
    match (field("username"), field("password")) {
        (Some(username), Some(password)) => Ok(Some(Credentials { username, password })),
        _ => Err(invalid(format!(
            "auths[{host:?}] has neither auth nor username/password"
        ))),
    }
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses `Basic realm="x"` or `Bearer realm="…",service="…",scope="…"`.
pub(crate) fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_params(rest);
    Some(Challenge::Bearer {
        realm: params.get("realm")?.clone(),
        service: params.get("service").cloned(),
        scope: params.get("scope").cloned(),
    })
}

/// `k="v", k2=v2` → map; quoted values may contain commas.
fn parse_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            return out;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek().copied() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
}

/// Bearer tokens per scope, valid until their expiry.
#[derive(Default)]
pub(crate) struct TokenCache {
    tokens: Mutex<HashMap<String, (String, Instant)>>,
}

impl TokenCache {
    pub(crate) fn get(&self, scope: &str) -> Option<String> {
        let tokens = self.tokens.lock().ok()?;
        tokens
            .get(scope)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(t, _)| t.clone())
    }

    /// Keeps a token until 30 s before it expires (`expires_in`, default 60 s per the
    /// token spec).
    pub(crate) fn put(&self, scope: &str, token: String, expires_in: Option<u64>) {
        let life = Duration::from_secs(expires_in.unwrap_or(60).max(31) - 30);
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.retain(|_, (_, until)| *until > Instant::now());
            tokens.insert(scope.to_string(), (token, Instant::now() + life));
        }
    }
}

/// The body of a token response.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct TokenResponse {
    pub token: Option<String>,
    pub access_token: Option<String>,
    pub expires_in: Option<u64>,
}

impl TokenResponse {
    pub(crate) fn into_token(self) -> Option<(String, Option<u64>)> {
        let t = self.token.or(self.access_token)?;
        (!t.is_empty()).then_some((t, self.expires_in))
    }
}

pub(crate) fn basic_header(c: &Credentials) -> String {
    format!(
        "Basic {}",
        B64.encode(format!("{}:{}", c.username, c.password))
    )
}

impl RegistryClient {
    /// Handles a 401 challenge; `true` when a retry with new credentials makes sense.
    pub(super) async fn authenticate(
        &self,
        headers: &HeaderMap,
        scope: &str,
        budget: tokio::time::Instant,
    ) -> Result<bool, RegistryError> {
        let challenge = headers
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_challenge);
        match challenge {
            // Basic credentials were already sent (if any): a second try cannot help.
            Some(Challenge::Basic) | None => Ok(false),
            Some(Challenge::Bearer {
                realm,
                service,
                scope: challenge_scope,
            }) => {
                let realm_url = reqwest::Url::parse(&realm).map_err(|e| {
                    self.error(
                        ErrorKind::Protocol,
                        format!("registry {} sent token realm {realm:?}: {e}", self.host),
                    )
                })?;
                if let Err(why) = realm_allowed(&realm_url, &self.base) {
                    return Err(self.error(
                        ErrorKind::Protocol,
                        format!("registry {} sent token realm {realm}: {why}", self.host),
                    ));
                }
                let mut token_url = realm_url;
                {
                    let mut q = token_url.query_pairs_mut();
                    q.append_pair(
                        "scope",
                        &challenge_scope.unwrap_or_else(|| scope.to_string()),
                    );
                    if let Some(s) = &service {
                        q.append_pair("service", s);
                    }
                }
                let mut req = self.http.get(token_url);
                if let Some(c) = &self.credentials {
                    req = req.header(AUTHORIZATION, basic_header(c));
                }
                // A token request is a request on the registry's behalf: it takes one of
                // the registry's connection slots and is counted with its requests.
                let resp = self
                    .exchange(req, budget, "fetching a token")
                    .await?
                    .map_err(|e| {
                        classify(&e, &self.host, &format!("token service of {}", self.host))
                    })?;
                let status = resp.status();
                if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                    return Err(self.rejected(status));
                }
                if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                    return Err(self.error(
                        ErrorKind::Transient,
                        format!("token service of {} answered {status}", self.host),
                    ));
                }
                if !status.is_success() {
                    return Err(self.error(
                        ErrorKind::Protocol,
                        format!("token service of {} answered {status}", self.host),
                    ));
                }
                // A token service that answers 200 without a usable token (an error page, a
                // proxy's placeholder, an oversized body) is failing the way a 5xx does:
                // transient, so Gatekeeper does not cache it as a per-key error.
                let body = self
                    .read_bounded(resp, 64 * 1024, "token", budget)
                    .await
                    .map_err(|e| match e {
                        e if e.kind == ErrorKind::Content => e.with_kind(ErrorKind::Transient),
                        other => other,
                    })?;
                let (token, expires) = serde_json::from_slice::<TokenResponse>(&body)
                    .ok()
                    .and_then(TokenResponse::into_token)
                    .ok_or_else(|| {
                        self.error(
                            ErrorKind::Transient,
                            format!("token service of {} sent no token", self.host),
                        )
                    })?;
                self.tokens.put(scope, token, expires);
                Ok(true)
            }
        }
    }
}

/// The token service may live on another host (auth.docker.io, ghcr.io/token), but then
/// only over HTTPS and never at a loopback, link-local or unspecified address: a registry's
/// challenge must not be a way to make vouch call into its own network.
fn realm_allowed(realm: &reqwest::Url, registry_base: &str) -> Result<(), &'static str> {
    use std::net::IpAddr;
    if host_port(realm) == host_port_of(registry_base) {
        return Ok(());
    }
    if realm.scheme() != "https" {
        return Err("plain HTTP on another host");
    }
    let host = realm.host_str().unwrap_or_default();
    if host.eq_ignore_ascii_case("localhost") {
        return Err("loopback host");
    }
    let internal = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok_and(|ip| match ip {
            IpAddr::V4(v4) => v4.is_loopback() || v4.is_link_local() || v4.is_unspecified(),
            IpAddr::V6(v6) => {
                v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xffc0) == 0xfe80
            }
        });
    if internal {
        return Err("loopback, link-local or unspecified address");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse() {
        assert_eq!(
            parse_challenge("Basic realm=\"registry\""),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenge(
                "Bearer realm=\"https://ghcr.io/token\",service=\"ghcr.io\",scope=\"repository:acme/api:pull,push\""
            ),
            Some(Challenge::Bearer {
                realm: "https://ghcr.io/token".into(),
                service: Some("ghcr.io".into()),
                scope: Some("repository:acme/api:pull,push".into()),
            })
        );
        assert_eq!(
            parse_challenge(
                "bearer realm=https://auth.docker.io/token, service=registry.docker.io"
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: None,
            })
        );
        assert_eq!(
            parse_challenge("Bearer service=\"x\""),
            None,
            "realm is required"
        );
        assert_eq!(parse_challenge("Negotiate abc"), None);
    }

    #[test]
    fn docker_config_entries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("config.json");
        let auth = B64.encode("alice:s3cr:et");
        std::fs::write(
            &p,
            format!(
                r#"{{"auths":{{"r.io":{{"auth":"{auth}"}},"https://q.io":{{"username":"bob","password":"pw"}},"bad.io":{{}}}}}}"#
            ),
        )
        .expect("write");
        let c = from_docker_config("r.io", &p).expect("ok").expect("entry");
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("alice", "s3cr:et")
        );
        let c = from_docker_config("q.io", &p).expect("ok").expect("entry");
        assert_eq!((c.username.as_str(), c.password.as_str()), ("bob", "pw"));
        assert!(from_docker_config("none.io", &p).expect("ok").is_none());
        assert!(from_docker_config("bad.io", &p).is_err());
        assert!(
            !format!("{c:?}").contains("pw"),
            "Debug must not show the password"
        );
    }

    #[test]
    fn tokens_expire() {
        let cache = TokenCache::default();
        cache.put("s", "t".into(), Some(300));
        assert_eq!(cache.get("s").as_deref(), Some("t"));
        assert_eq!(cache.get("other"), None);
    }

    #[test]
    fn token_realms() {
        let u = |s: &str| reqwest::Url::parse(s).expect("url");
        let base = "http://127.0.0.1:5000";
        assert!(
            realm_allowed(&u("http://127.0.0.1:5000/token"), base).is_ok(),
            "same host"
        );
        assert!(realm_allowed(&u("https://auth.docker.io/token"), base).is_ok());
        assert!(realm_allowed(&u("http://auth.docker.io/token"), base).is_err());
        assert!(realm_allowed(&u("https://127.0.0.1:9999/token"), base).is_err());
        assert!(realm_allowed(&u("https://169.254.169.254/latest"), base).is_err());
        assert!(realm_allowed(&u("https://[::1]/t"), base).is_err());
        assert!(realm_allowed(&u("https://[fe80::1]/t"), base).is_err());
        assert!(realm_allowed(&u("https://localhost/t"), base).is_err());
    }
}
