//! Short-lived AWS credentials per caller and operation: the gateway's own identity (the AWS
//! SDK default chain: on EC2 the instance role through IMDSv2) mints STS credentials with
//! `AssumeRole` (session name and source identity from the subject, session tags, an inline
//! policy scoped to the call) or `AssumeRoleWithWebIdentity` (the caller's own OIDC token).
//! They are cached per (role, subject, scope) until shortly before expiry, one STS call in
//! flight per key. Upstream requests are then signed with SigV4.

pub mod config;
mod sdk_http;
pub mod sigv4;
pub mod static_keys;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use aws_sdk_sts::{error::ProvideErrorMetadata as _, types::Tag};
use serde::Serialize;

use crate::{identity::Subject, intercept::socket_factory::SocketFactory};

/// How long one STS call may take, whatever goes wrong.
pub const STS_TIMEOUT: Duration = Duration::from_secs(5);
/// Cached credentials are renewed this long before they expire.
const RENEW_BEFORE: Duration = Duration::from_secs(300);
/// STS limits on `DurationSeconds`.
const MIN_DURATION: u64 = 900;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    AssumeRole,
    WebIdentity,
}

/// `[servers.aws]`, validated.
#[derive(Debug, Clone)]
pub struct AwsServer {
    pub role_arn: String,
    pub region: String,
    pub service: String,
    pub mode: Mode,
    /// Inline session policy; `{tool}`, `{server}`, `{subject}` are filled in per call.
    pub session_policy: Option<String>,
    /// Credential lifetime without a grant (a grant's remaining time otherwise).
    pub duration: Duration,
    /// The role's maximum session duration.
    pub max_duration: Duration,
    /// STS endpoint (default: the regional AWS endpoint).
    pub sts_endpoint: Option<String>,
}

/// Temporary credentials from STS. The secret never leaves this process except as a
/// signature; only the key id is logged and recorded.
#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    pub expiration: SystemTime,
    pub session_name: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("expiration", &self.expiration)
            .finish_non_exhaustive()
    }
}

/// What a minted credential is recorded as (never the secret or the token).
#[derive(Debug, Clone, Serialize)]
pub struct Minted {
    pub role_arn: String,
    pub mode: Mode,
    pub session_name: String,
    /// Sent with AssumeRole only (web identity sessions carry the token's subject).
    pub source_identity: Option<String>,
    pub access_key_id: String,
    pub expiration: String,
    pub duration_secs: u64,
}

/// The call credentials are minted for.
pub struct CallScope<'a> {
    pub subject: &'a Subject,
    pub server: &'a str,
    /// The tool called (`None`: a request that is not a call, e.g. a list).
    pub tool: Option<&'a str>,
    pub gateway_session: u64,
    pub approval: Option<&'a str>,
    /// When the grant covering the call ends (ms since the epoch).
    pub grant_expires_ms: Option<i64>,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum CredsError {
    #[error("AWS STS is unreachable: {0}")]
    Unreachable(String),
    #[error("AWS STS did not answer within {STS_TIMEOUT:?}")]
    Timeout,
    #[error("AWS STS refused: {code}: {message}")]
    Refused { code: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

type Slot = Arc<tokio::sync::Mutex<Option<Arc<Credentials>>>>;

pub struct Minter {
    sdk: aws_config::SdkConfig,
    /// STS clients by (region, endpoint).
    clients: Mutex<HashMap<(String, Option<String>), aws_sdk_sts::Client>>,
    cache: Mutex<HashMap<String, Slot>>,
    calls: std::sync::atomic::AtomicU64,
    metrics: Arc<crate::metrics::Metrics>,
    /// The last STS call: when, and its error if it failed (for `mcpgw status`).
    last: Mutex<Option<(SystemTime, Option<String>)>>,
}

/// Entries beyond this are dropped (expired first) so the cache stays bounded.
const MAX_CACHED: usize = 10_000;

impl Minter {
    /// The gateway's own identity from the default chain (environment, profile, web
    /// identity, ECS, instance metadata), its requests through the socket factory.
    pub async fn new(
        sockets: SocketFactory,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Result<Self, crate::tls::TlsError> {
        let http = sdk_http::client(sockets, STS_TIMEOUT)?;
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(http)
            .load()
            .await;
        Ok(Self {
            sdk,
            clients: Mutex::new(HashMap::new()),
            cache: Mutex::new(HashMap::new()),
            calls: Default::default(),
            metrics,
            last: Mutex::new(None),
        })
    }

    /// The last STS call: its time and error, for `mcpgw status`.
    pub fn last_call(&self) -> Option<(SystemTime, Option<String>)> {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// STS calls made so far (cache misses that reached STS).
    pub fn sts_calls(&self) -> u64 {
        self.calls.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn client(&self, aws: &AwsServer) -> aws_sdk_sts::Client {
        let key = (aws.region.clone(), aws.sts_endpoint.clone());
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        clients
            .entry(key)
            .or_insert_with(|| {
                let mut config = aws_sdk_sts::config::Builder::from(&self.sdk)
                    .region(aws_sdk_sts::config::Region::new(aws.region.clone()));
                if let Some(endpoint) = &aws.sts_endpoint {
                    config = config.endpoint_url(endpoint);
                }
                aws_sdk_sts::Client::from_conf(config.build())
            })
            .clone()
    }

    /// Credentials for this call: cached, or minted now (one STS call per key at a time;
    /// concurrent callers wait for it). `Ok((creds, Some(minted)))` when this call minted.
    pub async fn credentials(
        &self,
        aws: &AwsServer,
        scope: &CallScope<'_>,
    ) -> Result<(Arc<Credentials>, Option<Minted>), CredsError> {
        let policy = render_policy(aws.session_policy.as_deref(), scope)?;
        let key = format!(
            "{}\u{0}{:?}\u{0}{}\u{0}{}\u{0}{}",
            aws.role_arn,
            aws.mode,
            scope.subject.name,
            scope.tool.unwrap_or("*"),
            policy.as_deref().unwrap_or("")
        );
        let slot = {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if cache.len() >= MAX_CACHED && !cache.contains_key(&key) {
                cache.retain(|_, slot| Arc::strong_count(slot) > 1);
                if cache.len() >= MAX_CACHED {
                    cache.clear();
                }
            }
            cache.entry(key).or_default().clone()
        };
        let mut held = slot.lock().await;
        if let Some(creds) = held.as_ref() {
            let fresh = creds
                .expiration
                .duration_since(SystemTime::now())
                .is_ok_and(|left| left > RENEW_BEFORE);
            if fresh {
                self.metrics.credential_cache_hits.inc();
                return Ok((creds.clone(), None));
            }
        }
        let minted = self.mint(aws, scope, policy).await;
        let outcome = minted.as_ref().err().map(ToString::to_string);
        crate::metrics::Metrics::outcome(
            &self.metrics.sts_calls,
            if outcome.is_none() { "ok" } else { "error" },
        );
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some((SystemTime::now(), outcome));
        let (creds, minted) = minted?;
        let creds = Arc::new(creds);
        *held = Some(creds.clone());
        Ok((creds, Some(minted)))
    }

    async fn mint(
        &self,
        aws: &AwsServer,
        scope: &CallScope<'_>,
        policy: Option<String>,
    ) -> Result<(Credentials, Minted), CredsError> {
        let subject = scope.subject;
        let session_name = session_name(&subject.name);
        let source_identity = source_identity(&subject.name);
        let duration = duration_secs(aws, scope.grant_expires_ms);
        let client = self.client(aws);
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let out = match aws.mode {
            Mode::AssumeRole => {
                let mut tags = vec![
                    tag("mcpgw:subject", &subject.name),
                    tag("mcpgw:session", &scope.gateway_session.to_string()),
                ];
                if !subject.groups.is_empty() {
                    tags.push(tag("mcpgw:groups", &subject.groups.join(" ")));
                }
                if let Some(approval) = scope.approval {
                    tags.push(tag("mcpgw:approval", approval));
                }
                let request = client
                    .assume_role()
                    .role_arn(&aws.role_arn)
                    .role_session_name(&session_name)
                    .source_identity(&source_identity)
                    .duration_seconds(duration as i32)
                    .set_tags(Some(tags))
                    .set_policy(policy);
                match tokio::time::timeout(STS_TIMEOUT, request.send()).await {
                    Err(_) => return Err(CredsError::Timeout),
                    Ok(result) => result.map(|o| o.credentials).map_err(sts_error)?,
                }
            }
            Mode::WebIdentity => {
                let token = subject.token.as_deref().ok_or_else(|| {
                    CredsError::Invalid(
                        "this server mints credentials with the caller's OIDC token, and the caller presented none".into(),
                    )
                })?;
                let request = client
                    .assume_role_with_web_identity()
                    .role_arn(&aws.role_arn)
                    .role_session_name(&session_name)
                    .web_identity_token(token)
                    .duration_seconds(duration as i32)
                    .set_policy(policy);
                match tokio::time::timeout(STS_TIMEOUT, request.send()).await {
                    Err(_) => return Err(CredsError::Timeout),
                    Ok(result) => result.map(|o| o.credentials).map_err(sts_error)?,
                }
            }
        };
        let c =
            out.ok_or_else(|| CredsError::Invalid("STS answered without credentials".into()))?;
        let expiration = SystemTime::try_from(c.expiration)
            .map_err(|_| CredsError::Invalid("STS gave an invalid expiration".into()))?;
        let creds = Credentials {
            access_key_id: c.access_key_id,
            secret_access_key: c.secret_access_key,
            session_token: c.session_token,
            expiration,
            session_name: session_name.clone(),
        };
        let minted = Minted {
            role_arn: aws.role_arn.clone(),
            mode: aws.mode,
            session_name,
            source_identity: (aws.mode == Mode::AssumeRole).then_some(source_identity),
            access_key_id: creds.access_key_id.clone(),
            expiration: humantime::format_rfc3339_seconds(expiration).to_string(),
            duration_secs: duration,
        };
        tracing::info!(
            role = %minted.role_arn,
            session_name = %minted.session_name,
            access_key_id = %minted.access_key_id,
            expiration = %minted.expiration,
            "AWS credentials minted"
        );
        Ok((creds, minted))
    }
}

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder()
        .key(key)
        .value(tag_value(value))
        .build()
        .expect("key and value are set")
}

/// STS's error, by its code when it gave one.
fn sts_error<E>(
    error: aws_sdk_sts::error::SdkError<
        E,
        aws_smithy_runtime_api::client::orchestrator::HttpResponse,
    >,
) -> CredsError
where
    E: aws_sdk_sts::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    use aws_sdk_sts::error::SdkError;
    match &error {
        SdkError::ServiceError(e) => match e.err().code() {
            Some(code) => CredsError::Refused {
                code: code.to_owned(),
                message: e.err().message().unwrap_or_default().to_owned(),
            },
            // An answer the SDK could not read as an STS error: say what came back.
            None => {
                let raw = e.raw();
                let body = raw.body().bytes().unwrap_or_default();
                let text = String::from_utf8_lossy(&body[..body.len().min(2000)]).into_owned();
                // Some STS-compatible servers nest the error one level deeper than STS does.
                let field = |name: &str| {
                    let open = format!("<{name}>");
                    let start = text.find(&open)? + open.len();
                    let end = text[start..].find(&format!("</{name}>"))? + start;
                    Some(text[start..end].to_owned())
                };
                match field("Code") {
                    Some(code) => CredsError::Refused {
                        code,
                        message: field("Message").unwrap_or_default(),
                    },
                    None => CredsError::Refused {
                        code: format!("HTTP {}", raw.status().as_u16()),
                        message: text.chars().take(300).collect(),
                    },
                }
            }
        },
        SdkError::TimeoutError(_) => CredsError::Timeout,
        SdkError::DispatchFailure(e) => {
            let cause = std::error::Error::source(&error)
                .map(|s| format!("{s}"))
                .unwrap_or_else(|| format!("{e:?}"));
            CredsError::Unreachable(cause)
        }
        other => {
            let code = other.code().map(str::to_owned);
            match code {
                Some(code) => CredsError::Refused {
                    code,
                    message: other.message().unwrap_or_default().to_owned(),
                },
                None => CredsError::Unreachable(format!(
                    "{}",
                    aws_smithy_types::error::display::DisplayErrorContext(other)
                )),
            }
        }
    }
}

/// `DurationSeconds`: a grant's remaining time, else the server's duration; within STS limits.
fn duration_secs(aws: &AwsServer, grant_expires_ms: Option<i64>) -> u64 {
    let max = aws.max_duration.as_secs().max(MIN_DURATION);
    let wanted = match grant_expires_ms {
        Some(end) => {
            let now = crate::clock::now_ms();
            ((end - now).max(0) / 1000) as u64
        }
        None => aws.duration.as_secs(),
    };
    wanted.clamp(MIN_DURATION, max)
}

/// Characters STS accepts in session names and source identities: `[\w+=,.@-]`.
fn sts_name(text: &str, max: usize) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(max)
        .collect()
}

/// `RoleSessionName`: `mcpgw-<subject>`, 2..=64 characters.
pub fn session_name(subject: &str) -> String {
    sts_name(&format!("mcpgw-{subject}"), 64)
}

/// `SourceIdentity`: the subject, 2..=64 characters.
pub fn source_identity(subject: &str) -> String {
    let mut s = sts_name(subject, 64);
    while s.len() < 2 {
        s.push('_');
    }
    s
}

/// Session tag values: letters, digits, spaces and `_.:/=+-@`, at most 256 characters.
fn tag_value(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_alphanumeric() || c == ' ' || "_.:/=+-@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(256)
        .collect()
}

/// The inline session policy for a call, from its template.
pub fn render_policy(
    template: Option<&str>,
    scope: &CallScope,
) -> Result<Option<String>, CredsError> {
    let Some(template) = template else {
        return Ok(None);
    };
    // Values go into JSON strings: escape what would end or break one.
    let escape = |s: &str| {
        let quoted = serde_json::to_string(s).unwrap_or_default();
        quoted[1..quoted.len() - 1].to_owned()
    };
    let text = template
        .replace("{tool}", &escape(scope.tool.unwrap_or("*")))
        .replace("{server}", &escape(scope.server))
        .replace("{subject}", &escape(&scope.subject.name));
    serde_json::from_str::<serde_json::Value>(&text).map_err(|e| {
        CredsError::Invalid(format!("session policy is not JSON after filling in: {e}"))
    })?;
    Ok(Some(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> AwsServer {
        AwsServer {
            role_arn: "arn:aws:iam::123456789012:role/r".into(),
            region: "us-east-1".into(),
            service: "execute-api".into(),
            mode: Mode::AssumeRole,
            session_policy: None,
            duration: Duration::from_secs(1800),
            max_duration: Duration::from_secs(3600),
            sts_endpoint: None,
        }
    }

    #[test]
    fn names_and_durations_stay_within_sts_limits() {
        assert_eq!(session_name("alice@example.com"), "mcpgw-alice@example.com");
        assert_eq!(session_name("a b/c"), "mcpgw-a_b_c");
        assert_eq!(session_name(&"x".repeat(100)).len(), 64);
        assert_eq!(source_identity("a"), "a_");
        assert_eq!(
            tag_value("analysts sre-leads <x>"),
            "analysts sre-leads _x_"
        );
        let s = server();
        assert_eq!(duration_secs(&s, None), 1800);
        let soon = crate::clock::now_ms() + 60_000;
        assert_eq!(duration_secs(&s, Some(soon)), 900, "at least STS's minimum");
        let later = crate::clock::now_ms() + 10 * 3600 * 1000;
        assert_eq!(
            duration_secs(&s, Some(later)),
            3600,
            "at most the role's maximum"
        );
    }

    #[test]
    fn session_policies_are_filled_in_safely() {
        let subject = Subject::named("alice", vec![]);
        let scope = CallScope {
            subject: &subject,
            server: "analytics",
            tool: Some("query\"sales"),
            gateway_session: 1,
            approval: None,
            grant_expires_ms: None,
        };
        let template = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"execute-api:Invoke","Resource":"arn:aws:execute-api:*:*:*/*/POST/{tool}"}]}"#;
        let policy = render_policy(Some(template), &scope).unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_str(&policy).unwrap();
        assert_eq!(
            v["Statement"][0]["Resource"],
            "arn:aws:execute-api:*:*:*/*/POST/query\"sales"
        );
        assert!(render_policy(Some("{tool"), &scope).is_err());
    }
}
