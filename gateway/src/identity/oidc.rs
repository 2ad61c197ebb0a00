//! One trusted OIDC issuer: discovery, its signing keys (JWKS) cached and refreshed, and
//! access-token validation with `jsonwebtoken`.
//!
//! Keys are fetched at start, refreshed in the background after half their cache lifetime,
//! and refetched when a token names an unknown `kid` (at most once per
//! [`MIN_REFETCH`]). If the provider is down, the keys in hand stay valid until their
//! cache lifetime ends; after that, tokens cannot be checked and calls are refused.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use jsonwebtoken::{jwk::JwkSet, Algorithm, DecodingKey, Validation};
use serde_json::Value;

use super::AuthError;
use crate::{
    client::{get_json, ClientError},
    intercept::socket_factory::SocketFactory,
};

/// Unknown-kid refetches are at most this frequent (a flood of forged kids must not
/// become a flood of requests to the provider).
pub const MIN_REFETCH: Duration = Duration::from_secs(5);
/// How long a fetch from the provider may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Why an issuer's keys could not be had (discovery or JWKS), or an algorithm name is not
/// accepted; each message names the URL or the name.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("issuer URL: {0}")]
    IssuerUrl(#[source] url::ParseError),
    #[error(transparent)]
    Fetch(#[from] ClientError),
    #[error("{url}: no answer within {after:?}")]
    Timeout { url: url::Url, after: Duration },
    /// The discovery document speaks for another issuer: its keys must not be trusted.
    #[error("{url}: names issuer {found} instead of {expected}")]
    WrongIssuer {
        url: url::Url,
        /// What the document says (boxed: the error stays small).
        found: Box<Value>,
        expected: String,
    },
    #[error("{url}: no jwks_uri")]
    NoJwksUri { url: url::Url },
    #[error("{url}: jwks_uri: {source}")]
    JwksUri {
        url: url::Url,
        source: url::ParseError,
    },
    #[error("{url}: not a JWK set: {source}")]
    NotJwks {
        url: url::Url,
        source: serde_json::Error,
    },
    #[error("{url}: no usable signing keys")]
    NoKeys { url: url::Url },
    #[error("unknown algorithm `{0}`")]
    UnknownAlgorithm(String),
    /// HMAC with a public key as the secret is the classic forgery.
    #[error("algorithm `{0}` is HMAC: only public-key algorithms are accepted")]
    Hmac(String),
}

/// `[[identity.oidc]]`, validated.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub groups_claim: String,
    pub algorithms: Vec<Algorithm>,
    /// Claims a token must carry besides `iss`, `aud` and `exp`.
    pub required_claims: Vec<String>,
    pub leeway: Duration,
    pub jwks_cache: Duration,
    /// Extra CA certificates (PEM) trusted for the provider, beside the system's.
    pub ca_file: Option<std::path::PathBuf>,
}

/// What a valid token says about its subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub sub: String,
    pub email: Option<String>,
    pub groups: Vec<String>,
}

struct KeySet {
    by_kid: HashMap<String, DecodingKey>,
    /// Keys without a `kid`: usable only by tokens without one, when they are alone.
    unnamed: Vec<DecodingKey>,
    fetched: Instant,
}

pub struct Issuer {
    config: OidcConfig,
    tls: Arc<rustls::ClientConfig>,
    sockets: SocketFactory,
    validation: Validation,
    keys: RwLock<Option<Arc<KeySet>>>,
    jwks_uri: RwLock<Option<url::Url>>,
    /// Held while fetching (one fetch at a time); the time of the last attempt.
    fetching: tokio::sync::Mutex<Option<Instant>>,
}

impl Issuer {
    pub fn new(config: OidcConfig, sockets: SocketFactory) -> Result<Self, crate::tls::TlsError> {
        let tls = crate::tls::client_config(config.ca_file.as_deref(), false)?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.algorithms = config.algorithms.clone();
        validation.leeway = config.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&config.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        Ok(Self {
            config,
            tls,
            sockets,
            validation,
            keys: RwLock::new(None),
            jwks_uri: RwLock::new(None),
            fetching: tokio::sync::Mutex::new(None),
        })
    }

    pub fn url(&self) -> &str {
        &self.config.issuer
    }

    /// For `mcpgw status`: how old the keys in hand are, and whether they still verify.
    pub fn health(&self) -> serde_json::Value {
        let age = self.current().map(|k| k.fetched.elapsed());
        serde_json::json!({
            "issuer": self.config.issuer,
            "keys_age_secs": age.map(|a| a.as_secs()),
            "keys_fresh": age.is_some_and(|a| a < self.config.jwks_cache),
        })
    }

    /// Checks a token's signature and claims.
    pub async fn validate(self: &Arc<Self>, token: &str) -> Result<Claims, AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| AuthError::Invalid(format!("malformed token: {e}")))?;
        check_header(&header, &self.config.algorithms)?;
        if segment(token, 0)?.get("crit").is_some() {
            return Err(AuthError::Invalid(
                "critical header extensions are not supported".into(),
            ));
        }
        let keys = self.keys_for(header.kid.as_deref()).await?;
        let key = pick_key(&keys, header.kid.as_deref())
            .ok_or_else(|| AuthError::Invalid("token signed with an unknown key".into()))?;
        // jsonwebtoken wants one key family per validation: narrow the allow-list (already
        // checked above) to the token's algorithm.
        let mut validation = self.validation.clone();
        validation.algorithms = vec![header.alg];
        let data = jsonwebtoken::decode::<Value>(token, key, &validation)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        self.claims(&data.claims)
    }

    fn claims(&self, claims: &Value) -> Result<Claims, AuthError> {
        for name in &self.config.required_claims {
            if claims.get(name).is_none_or(Value::is_null) {
                return Err(AuthError::Invalid(format!("claim `{name}` is missing")));
            }
        }
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| AuthError::Invalid("claim `sub` is missing".into()))?;
        let groups = match claims.get(&self.config.groups_claim) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|g| g.as_str().map(str::to_owned))
                .collect(),
            Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
            Some(_) => {
                return Err(AuthError::Invalid(format!(
                    "claim `{}` is neither a list nor a string",
                    self.config.groups_claim
                )))
            }
        };
        Ok(Claims {
            sub: sub.to_owned(),
            email: verified_email(claims),
            groups,
        })
    }

    /// The key set to check a token naming `kid` against, fetching it when needed.
    async fn keys_for(self: &Arc<Self>, kid: Option<&str>) -> Result<Arc<KeySet>, AuthError> {
        let current = self.keys.read().unwrap_or_else(|e| e.into_inner()).clone();
        let lifetime = self.config.jwks_cache;
        match current {
            Some(keys) if keys.fetched.elapsed() < lifetime => {
                if keys.fetched.elapsed() > lifetime / 2 {
                    let me = self.clone();
                    tokio::spawn(async move {
                        if let Err(error) = me.refresh_if_idle().await {
                            tracing::warn!(issuer = me.url(), %error, "refreshing keys failed; the cached ones stay valid until their lifetime ends");
                        }
                    });
                }
                if pick_key(&keys, kid).is_some() {
                    return Ok(keys);
                }
                // A key the provider may have rotated in since.
                match self.refresh_if_idle().await {
                    Ok(true) => Ok(self.current().unwrap_or(keys)),
                    Ok(false) => Ok(keys),
                    Err(error) => {
                        tracing::warn!(issuer = self.url(), %error, "refetching keys for an unknown kid failed");
                        Ok(keys)
                    }
                }
            }
            _ => {
                self.refresh_if_idle()
                    .await
                    .map_err(|e| AuthError::Unavailable(e.to_string()))?;
                self.current()
                    .filter(|k| k.fetched.elapsed() < lifetime)
                    .ok_or_else(|| {
                        AuthError::Unavailable(format!(
                            "no current signing keys from {}",
                            self.url()
                        ))
                    })
            }
        }
    }

    fn current(&self) -> Option<Arc<KeySet>> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Fetches the keys unless another fetch is under way or one was tried within
    /// [`MIN_REFETCH`]; `Ok(true)` when this call fetched them.
    async fn refresh_if_idle(&self) -> Result<bool, OidcError> {
        let mut last = self.fetching.lock().await;
        if last.is_some_and(|t| t.elapsed() < MIN_REFETCH) {
            return Ok(false);
        }
        *last = Some(Instant::now());
        self.fetch().await.map(|()| true)
    }

    /// Fetches the keys now (at start, to warm the cache).
    pub async fn refresh(&self) -> Result<(), OidcError> {
        let mut last = self.fetching.lock().await;
        *last = Some(Instant::now());
        self.fetch().await
    }

    async fn fetch(&self) -> Result<(), OidcError> {
        let known = self
            .jwks_uri
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let jwks_uri = match known {
            Some(uri) => uri,
            None => {
                let uri = self.discover().await?;
                *self.jwks_uri.write().unwrap_or_else(|e| e.into_inner()) = Some(uri.clone());
                uri
            }
        };
        let jwks = self.get(&jwks_uri).await?;
        let set: JwkSet = serde_json::from_value(jwks).map_err(|source| OidcError::NotJwks {
            url: jwks_uri.clone(),
            source,
        })?;
        let mut keys = KeySet {
            by_kid: HashMap::new(),
            unnamed: Vec::new(),
            fetched: Instant::now(),
        };
        for jwk in &set.keys {
            if jwk.common.public_key_use == Some(jsonwebtoken::jwk::PublicKeyUse::Encryption) {
                continue;
            }
            let Ok(key) = DecodingKey::from_jwk(jwk) else {
                continue; // a key type this gateway does not verify with
            };
            match &jwk.common.key_id {
                Some(kid) => {
                    keys.by_kid.insert(kid.clone(), key);
                }
                None => keys.unnamed.push(key),
            }
        }
        if keys.by_kid.is_empty() && keys.unnamed.is_empty() {
            return Err(OidcError::NoKeys { url: jwks_uri });
        }
        tracing::info!(
            issuer = self.url(),
            keys = keys.by_kid.len() + keys.unnamed.len(),
            "identity provider keys fetched"
        );
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(keys));
        Ok(())
    }

    async fn discover(&self) -> Result<url::Url, OidcError> {
        let base = self.config.issuer.trim_end_matches('/');
        let url = url::Url::parse(&format!("{base}/.well-known/openid-configuration"))
            .map_err(OidcError::IssuerUrl)?;
        let doc = self.get(&url).await?;
        if doc.get("issuer").and_then(Value::as_str) != Some(self.config.issuer.as_str()) {
            return Err(OidcError::WrongIssuer {
                found: Box::new(doc.get("issuer").cloned().unwrap_or(Value::Null)),
                expected: self.config.issuer.clone(),
                url,
            });
        }
        let jwks = doc
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or_else(|| OidcError::NoJwksUri { url: url.clone() })?;
        url::Url::parse(jwks).map_err(|source| OidcError::JwksUri { url, source })
    }

    async fn get(&self, url: &url::Url) -> Result<Value, OidcError> {
        match tokio::time::timeout(
            FETCH_TIMEOUT,
            get_json(url, self.tls.clone(), &self.sockets, 1 << 20),
        )
        .await
        {
            Ok(answer) => Ok(answer?),
            Err(_) => Err(OidcError::Timeout {
                url: url.clone(),
                after: FETCH_TIMEOUT,
            }),
        }
    }
}

/// Header checks `jsonwebtoken` leaves to the caller.
fn check_header(header: &jsonwebtoken::Header, allowed: &[Algorithm]) -> Result<(), AuthError> {
    if !allowed.contains(&header.alg) {
        return Err(AuthError::Invalid(format!(
            "algorithm {:?} is not accepted",
            header.alg
        )));
    }
    // RFC 9068 access tokens say `at+jwt`; many providers still say `JWT` or nothing.
    if let Some(typ) = &header.typ {
        let typ = typ.to_ascii_lowercase();
        let typ = typ.strip_prefix("application/").unwrap_or(&typ);
        if typ != "at+jwt" && typ != "jwt" {
            return Err(AuthError::Invalid(format!(
                "token type `{typ}` is not an access token"
            )));
        }
    }
    if header.cty.is_some() {
        return Err(AuthError::Invalid("nested tokens are not accepted".into()));
    }
    Ok(())
}

fn pick_key<'a>(keys: &'a KeySet, kid: Option<&str>) -> Option<&'a DecodingKey> {
    match kid {
        Some(kid) => keys.by_kid.get(kid),
        None if keys.by_kid.is_empty() && keys.unnamed.len() == 1 => keys.unnamed.first(),
        None => None,
    }
}

/// One base64url segment of a token, as JSON (read before verification, to pick the issuer
/// and check header fields the JWT library does not model).
fn segment(token: &str, index: usize) -> Result<Value, AuthError> {
    use base64::Engine as _;
    let malformed = |what: &str| AuthError::Invalid(format!("malformed token: {what}"));
    let part = token
        .split('.')
        .nth(index)
        .ok_or_else(|| malformed("not three segments"))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| malformed("not base64url"))?;
    serde_json::from_slice(&bytes).map_err(|_| malformed("not JSON"))
}

/// The `iss` a token claims, read without verification to pick the issuer that verifies it.
pub fn unverified_issuer(token: &str) -> Result<String, AuthError> {
    if token.split('.').count() != 3 {
        return Err(AuthError::Invalid(
            "malformed token: not three segments".into(),
        ));
    }
    segment(token, 1)?
        .get("iss")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| AuthError::Invalid("token names no issuer".into()))
}

/// Algorithms accepted when a configuration names none: asymmetric only.
pub const DEFAULT_ALGORITHMS: [Algorithm; 8] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
];

/// An algorithm name from the configuration; HMAC is refused (the gateway holds only
/// public keys, and HMAC with a public key as secret is the classic forgery).
pub fn parse_algorithm(name: &str) -> Result<Algorithm, OidcError> {
    let alg: Algorithm = name
        .parse()
        .map_err(|_| OidcError::UnknownAlgorithm(name.to_owned()))?;
    match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            Err(OidcError::Hmac(name.to_owned()))
        }
        other => Ok(other),
    }
}

/// The address to go by only when the provider vouches for it (`email_verified`): at some
/// providers anyone may put any address in a profile, and rules and approvals trust it.
fn verified_email(claims: &Value) -> Option<String> {
    let verified = match claims.get("email_verified") {
        Some(Value::Bool(b)) => *b,
        // Some providers send the flag as a string.
        Some(Value::String(s)) => s == "true",
        _ => false,
    };
    if !verified {
        return None;
    }
    claims.get("email")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    #[test]
    fn email_is_taken_only_when_verified() {
        let email = |claims: Value| super::verified_email(&claims);
        assert_eq!(
            email(json!({"email": "a@example.com", "email_verified": true})).as_deref(),
            Some("a@example.com")
        );
        assert_eq!(
            email(json!({"email": "a@example.com", "email_verified": "true"})).as_deref(),
            Some("a@example.com")
        );
        assert_eq!(email(json!({"email": "a@example.com"})), None);
        assert_eq!(
            email(json!({"email": "a@example.com", "email_verified": false})),
            None
        );
    }
}
