//! Configuration: the user-facing TOML (`RawConfig`, unknown keys rejected) turned into a
//! validated [`Config`] by the pure function [`parse_config`].

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use serde::Deserialize;

pub use crate::addr::{canonical, HostPort, MatchAddr};
pub use crate::intercept::{FailMode, InterceptConfig, InterceptMode};
pub use crate::mask::interceptor::PointerRule;

/// The configuration used when `mcpgw serve` is given no file.
pub const DEFAULT_CONFIG: &str = include_str!("default.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Syntax errors and unknown keys; the message names the key, line and column.
    #[error("{0}")]
    Toml(#[from] toml::de::Error),
    #[error("invalid configuration:\n  {}", .0.join("\n  "))]
    Invalid(Vec<String>),
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        source: Box<ConfigError>,
    },
}

#[derive(Debug, Clone)]
pub struct Config {
    pub gateway: GatewayConfig,
    pub intercept: InterceptConfig,
    pub servers: Vec<ServerConfig>,
    /// `None`: no `[masking]` section, responses pass unmasked.
    pub masking: Option<MaskingConfig>,
    /// `None`: `recording.store = "none"`.
    pub recording: Option<RecordingConfig>,
    pub identity: IdentityConfig,
    /// `[[policy.rules]]` and `[[guardrails]]`, compiled.
    pub policy: crate::policy::Policy,
    pub approval: crate::approval::ApprovalConfig,
}

#[derive(Debug, Clone, Default)]
pub struct IdentityConfig {
    pub oidc: Vec<crate::identity::OidcConfig>,
    pub processes: Vec<crate::identity::ProcessIdentity>,
}

#[derive(Debug, Clone)]
pub struct RecordingConfig {
    /// Sealed sessions that ended longer ago than this are pruned.
    pub retention: Duration,
}

#[derive(Debug, Clone)]
pub struct MaskingConfig {
    pub settings: crate::mask::MaskSettings,
    /// Tools (globs) whose call arguments are masked before they go upstream.
    pub arguments_of_tools: Vec<String>,
    /// Values at JSON pointers (into `result`) masked whole, for the tools named (globs).
    pub pointers: Vec<PointerRule>,
}

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub state_dir: PathBuf,
    pub admin_socket: PathBuf,
    pub admin_group: String,
    pub listen: Vec<SocketAddr>,
    pub fail_mode: FailMode,
    /// Largest JSON-RPC body (request, JSON response, or one event) the gateway reads.
    pub max_body: usize,
    /// Where Prometheus metrics are served (loopback only); `None`: off.
    pub metrics: Option<SocketAddr>,
}

/// How clients talk to a server: TLS (terminated by the gateway with a host-CA leaf) or
/// plain HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    #[default]
    Terminate,
    Plaintext,
}

/// What happens to a connection to a server's address that is not the expected protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NonHttp {
    /// Logged and closed.
    #[default]
    Close,
    /// Relayed byte for byte, unchecked.
    Pass,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub name: String,
    pub matches: Vec<MatchAddr>,
    pub upstream: Option<HostPort>,
    /// Explicit mode: where clients connect to reach this server.
    pub listen: Option<SocketAddr>,
    pub tls: TlsMode,
    /// Extra CA certificates (PEM) trusted for this server's upstream, beside the system's.
    pub ca_file: Option<PathBuf>,
    /// Accept any upstream certificate. Only for tests and migrations; logged loudly.
    pub tls_skip_verify: bool,
    pub non_http: NonHttp,
    /// Pass the caller's bearer token upstream (by default the gateway consumes it).
    pub forward_token: bool,
    /// `[servers.aws]`: per-call STS credentials and SigV4 signing.
    pub aws: Option<crate::creds::AwsServer>,
    /// What long-lived AWS keys in client traffic get.
    pub static_keys: crate::creds::static_keys::StaticKeys,
}

impl ServerConfig {
    /// Explicit mode: where clients connect for this server and where that leads (the
    /// upstream, else the first match entry).
    pub fn explicit_route(&self) -> Option<(SocketAddr, crate::addr::Destination)> {
        use crate::addr::Destination;
        let destination = match (&self.upstream, self.matches.first()) {
            (Some(up), _) => Destination::Name(up.clone()),
            (None, Some(MatchAddr::Socket(a))) => Destination::Socket(*a),
            (None, Some(MatchAddr::Host(h))) => Destination::Name(h.clone()),
            _ => return None, // rejected by validation
        };
        Some((self.listen?, destination))
    }

    /// Each match entry with this server's name (what the target table is built from).
    pub fn targets(servers: &[Self]) -> Vec<(MatchAddr, String)> {
        servers
            .iter()
            .flat_map(|s| s.matches.iter().map(|m| (m.clone(), s.name.clone())))
            .collect()
    }
}

/// `scheme://host[:port][/path]` with the scheme's default port: where to forward in explicit mode.
fn parse_upstream(s: &str) -> Result<HostPort, String> {
    let url = url::Url::parse(s).map_err(|e| format!("upstream `{s}`: {e}"))?;
    let host = match url.host() {
        Some(url::Host::Domain(d)) => d.to_string(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        None => return Err(format!("upstream `{s}` has no host")),
    };
    let port = url.port_or_known_default().ok_or_else(|| {
        format!(
            "upstream `{s}` has no port and scheme `{}` has no default",
            url.scheme()
        )
    })?;
    Ok(HostPort { host, port })
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    gateway: RawGateway,
    #[serde(default)]
    intercept: RawIntercept,
    #[serde(default)]
    servers: Vec<RawServer>,
    masking: Option<RawMasking>,
    #[serde(default)]
    recording: RawRecording,
    #[serde(default)]
    identity: RawIdentity,
    #[serde(default)]
    policy: RawPolicy,
    #[serde(default)]
    guardrails: Vec<toml::Spanned<crate::policy::guardrails::RawGuardrail>>,
    #[serde(default)]
    approval: RawApproval,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApproval {
    hold: Option<String>,
    pending_ttl: Option<String>,
    webhook: Option<String>,
    justification_header: Option<String>,
    /// Unix user → approver groups.
    #[serde(default)]
    approvers: std::collections::HashMap<String, Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    #[serde(default)]
    oidc: Vec<RawOidc>,
    #[serde(default)]
    processes: Vec<RawProcessIdentity>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOidc {
    issuer: String,
    audiences: Vec<String>,
    groups_claim: Option<String>,
    algorithms: Option<Vec<String>>,
    required_claims: Option<Vec<String>>,
    leeway: Option<String>,
    jwks_cache: Option<String>,
    ca_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProcessIdentity {
    name: String,
    uid: Option<u32>,
    exe: Option<String>,
    unit: Option<String>,
    cgroup: Option<String>,
    #[serde(default)]
    groups: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    rules: Vec<toml::Spanned<crate::policy::RawRule>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecording {
    store: Option<String>,
    retention: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMasking {
    detectors: Option<Vec<String>>,
    fields: Option<Vec<String>>,
    style: Option<crate::mask::Style>,
    /// Per detector, custom detector or field rule.
    #[serde(default)]
    styles: std::collections::BTreeMap<String, crate::mask::Style>,
    #[serde(default)]
    custom: Vec<RawCustomDetector>,
    #[serde(default)]
    arguments_of_tools: Vec<String>,
    #[serde(default)]
    pointers: Vec<PointerRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCustomDetector {
    name: String,
    pattern: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGateway {
    state_dir: Option<PathBuf>,
    admin_socket: Option<PathBuf>,
    admin_group: Option<String>,
    listen: Option<Vec<String>>,
    fail_mode: Option<FailMode>,
    max_body: Option<usize>,
    metrics: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIntercept {
    mode: Option<InterceptMode>,
    cgroup: Option<String>,
    bypass_mark: Option<u32>,
    pin_dir: Option<PathBuf>,
    dns_refresh: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    name: String,
    #[serde(rename = "match", default)]
    matches: Vec<String>,
    upstream: Option<String>,
    listen: Option<String>,
    #[serde(default)]
    tls: TlsMode,
    ca_file: Option<PathBuf>,
    #[serde(default)]
    tls_skip_verify: bool,
    #[serde(default)]
    non_http: NonHttp,
    #[serde(default)]
    forward_token: bool,
    aws: Option<RawAws>,
    static_keys: Option<crate::creds::static_keys::StaticKeys>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAws {
    role_arn: String,
    region: String,
    service: String,
    #[serde(default = "default_mode")]
    credentials: crate::creds::Mode,
    session_policy: Option<String>,
    duration: Option<String>,
    max_duration: Option<String>,
    sts_endpoint: Option<String>,
}

fn default_mode() -> crate::creds::Mode {
    crate::creds::Mode::AssumeRole
}

/// Parses and validates a configuration; every problem is reported at once.
pub fn parse_config(text: &str) -> Result<Config, ConfigError> {
    let raw: RawConfig = toml::from_str(text)?;
    let mut errors = Vec::new();
    let RawConfig {
        gateway,
        intercept,
        servers,
        masking,
        recording,
        identity,
        policy,
        guardrails,
        approval,
    } = raw;
    let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let policy = crate::policy::compile(policy.rules, guardrails, &line_of).unwrap_or_else(|e| {
        errors.extend(e);
        Default::default()
    });
    let identity = parse_identity(identity, &mut errors);
    let approval = parse_approval(approval, &mut errors);
    let recording = match recording.store.as_deref().unwrap_or("sqlite") {
        "none" => None,
        "sqlite" => {
            let retention = match recording
                .retention
                .as_deref()
                .map(humantime::parse_duration)
            {
                None => Duration::from_secs(90 * 24 * 3600),
                Some(Ok(d)) => d,
                Some(Err(e)) => {
                    errors.push(format!("recording.retention: {e}"));
                    Duration::ZERO
                }
            };
            Some(RecordingConfig { retention })
        }
        "postgres" => {
            errors.push(
                "recording.store: \"postgres\" is not supported yet; use \"sqlite\" or \"none\""
                    .into(),
            );
            None
        }
        other => {
            errors.push(format!(
                "recording.store: `{other}` is not one of sqlite, none"
            ));
            None
        }
    };
    let masking = masking.and_then(|m| match parse_masking(m) {
        Ok(settings) => Some(settings),
        Err(e) => {
            errors.push(format!("masking: {e}"));
            None
        }
    });

    let listen = gateway
        .listen
        .unwrap_or_else(|| vec!["127.0.0.1:15001".into(), "[::1]:15001".into()])
        .iter()
        .filter_map(|s| match s.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                errors.push(format!("gateway.listen: `{s}` is not IP:PORT"));
                None
            }
        })
        .collect::<Vec<_>>();
    let gateway = GatewayConfig {
        state_dir: gateway.state_dir.unwrap_or_else(|| "/var/lib/mcpgw".into()),
        admin_socket: gateway
            .admin_socket
            .unwrap_or_else(|| "/run/mcpgw/admin.sock".into()),
        admin_group: gateway.admin_group.unwrap_or_else(|| "mcpgw-admin".into()),
        listen,
        fail_mode: gateway.fail_mode.unwrap_or(FailMode::Closed),
        max_body: gateway.max_body.unwrap_or(4 << 20),
        metrics: match gateway.metrics.as_deref() {
            None => Some(SocketAddr::from(([127, 0, 0, 1], 9464))),
            Some("off") => None,
            Some(text) => match text.parse::<SocketAddr>() {
                Ok(addr) if addr.ip().is_loopback() => Some(addr),
                Ok(_) => {
                    errors.push(format!(
                        "gateway.metrics: `{text}` is not a loopback address (metrics are served on loopback only)"
                    ));
                    None
                }
                Err(_) => {
                    errors.push(format!(
                        "gateway.metrics: `{text}` is not IP:PORT or \"off\""
                    ));
                    None
                }
            },
        },
    };
    if gateway.max_body < 1024 {
        errors.push("gateway.max_body: must be at least 1024 bytes".into());
    }

    let cgroup = intercept.cgroup.unwrap_or_else(|| "/".into());
    if !cgroup.starts_with('/') || cgroup.split('/').any(|c| c == "..") {
        errors.push(format!(
            "intercept.cgroup: `{cgroup}` must be an absolute path inside the cgroup2 hierarchy"
        ));
    }
    let dns_refresh = match intercept
        .dns_refresh
        .as_deref()
        .map(humantime::parse_duration)
    {
        None => Duration::from_secs(30),
        Some(Ok(d)) if d >= Duration::from_secs(1) => d,
        Some(Ok(_)) => {
            errors.push("intercept.dns_refresh: must be at least 1s".into());
            Duration::from_secs(30)
        }
        Some(Err(e)) => {
            errors.push(format!("intercept.dns_refresh: {e}"));
            Duration::from_secs(30)
        }
    };
    let intercept = InterceptConfig {
        mode: intercept.mode.unwrap_or(InterceptMode::Ebpf),
        cgroup,
        bypass_mark: intercept.bypass_mark.unwrap_or(0x4d43),
        pin_dir: intercept
            .pin_dir
            .unwrap_or_else(|| "/sys/fs/bpf/mcpgw".into()),
        dns_refresh,
    };
    if intercept.bypass_mark == 0 {
        errors.push("intercept.bypass_mark: must not be 0 (0 is every unmarked socket)".into());
    }

    let mut names = std::collections::HashSet::new();
    let servers = servers
        .into_iter()
        .map(|s| {
            let where_ = format!("servers `{}`", s.name);
            if s.name.is_empty() || !names.insert(s.name.clone()) {
                errors.push(format!("{where_}: name must be unique and not empty"));
            }
            let matches = s
                .matches
                .iter()
                .filter_map(|m| {
                    m.parse()
                        .map_err(|e| errors.push(format!("{where_}.match: {e}")))
                        .ok()
                })
                .collect();
            let upstream = s.upstream.as_deref().and_then(|u| {
                parse_upstream(u)
                    .map_err(|e| errors.push(format!("{where_}: {e}")))
                    .ok()
            });
            let listen = s.listen.as_deref().and_then(|l| {
                l.parse()
                    .map_err(|_| errors.push(format!("{where_}.listen: `{l}` is not IP:PORT")))
                    .ok()
            });
            if let Some(ca) = &s.ca_file {
                if !ca.is_file() {
                    errors.push(format!(
                        "{where_}.ca_file: {} is not a readable file",
                        ca.display()
                    ));
                }
            }
            ServerConfig {
                name: s.name,
                matches,
                upstream,
                listen,
                tls: s.tls,
                ca_file: s.ca_file,
                tls_skip_verify: s.tls_skip_verify,
                non_http: s.non_http,
                forward_token: s.forward_token,
                static_keys: s.static_keys.unwrap_or(if s.aws.is_some() {
                    crate::creds::static_keys::StaticKeys::Block
                } else {
                    crate::creds::static_keys::StaticKeys::Log
                }),
                aws: s.aws.and_then(|a| {
                    parse_aws(a)
                        .map_err(|e| errors.push(format!("{where_}.aws: {e}")))
                        .ok()
                }),
            }
        })
        .collect::<Vec<ServerConfig>>();

    match intercept.mode {
        InterceptMode::Ebpf => {
            // The kernel redirects to 127.0.0.1 (IPv4 and v4-mapped) and [::1] (IPv6).
            if !gateway
                .listen
                .iter()
                .any(|a| a.ip() == IpAddr::from([127, 0, 0, 1]))
            {
                errors.push("gateway.listen: ebpf mode needs a 127.0.0.1:PORT listener".into());
            }
        }
        InterceptMode::Explicit => {
            for s in &servers {
                if s.listen.is_none() {
                    errors.push(format!(
                        "servers `{}`: explicit mode needs `listen`",
                        s.name
                    ));
                }
                if s.upstream.is_none()
                    && !s
                        .matches
                        .iter()
                        .any(|m| !matches!(m, MatchAddr::AnyAddr(_)))
                {
                    errors.push(format!(
                        "servers `{}`: explicit mode needs `upstream` or a `match` address",
                        s.name
                    ));
                }
            }
        }
    }

    if errors.is_empty() {
        Ok(Config {
            gateway,
            intercept,
            servers,
            masking,
            recording,
            identity,
            policy,
            approval,
        })
    } else {
        Err(ConfigError::Invalid(errors))
    }
}

fn duration(
    key: &str,
    value: Option<&str>,
    default: Duration,
    errors: &mut Vec<String>,
) -> Duration {
    match value.map(humantime::parse_duration) {
        None => default,
        Some(Ok(d)) => d,
        Some(Err(e)) => {
            errors.push(format!("{key}: {e}"));
            default
        }
    }
}

fn parse_aws(raw: RawAws) -> Result<crate::creds::AwsServer, String> {
    let arn = &raw.role_arn;
    if !(arn.starts_with("arn:") && arn.contains(":role/")) {
        return Err(format!("role_arn `{arn}` is not a role ARN"));
    }
    if raw.region.is_empty() || raw.service.is_empty() {
        return Err("region and service must not be empty".into());
    }
    let mut errors = Vec::new();
    let duration = duration(
        "duration",
        raw.duration.as_deref(),
        Duration::from_secs(900),
        &mut errors,
    );
    let max_duration = duration_max(raw.max_duration.as_deref(), &mut errors);
    if let Some(e) = errors.pop() {
        return Err(e);
    }
    if !(900..=43_200).contains(&duration.as_secs())
        || !(900..=43_200).contains(&max_duration.as_secs())
    {
        return Err("duration and max_duration must be between 15m and 12h (STS limits)".into());
    }
    if let Some(template) = &raw.session_policy {
        let subject = crate::identity::Subject::named("subject", vec![]);
        let scope = crate::creds::CallScope {
            subject: &subject,
            server: "server",
            tool: Some("tool"),
            gateway_session: 0,
            approval: None,
            grant_expires_ms: None,
        };
        crate::creds::render_policy(Some(template), &scope).map_err(|e| e.to_string())?;
    }
    if let Some(endpoint) = &raw.sts_endpoint {
        match url::Url::parse(endpoint) {
            Ok(u) if u.scheme() == "https" || u.scheme() == "http" => {}
            _ => return Err(format!("sts_endpoint `{endpoint}` is not an http(s) URL")),
        }
    }
    Ok(crate::creds::AwsServer {
        role_arn: raw.role_arn,
        region: raw.region,
        service: raw.service,
        mode: raw.credentials,
        session_policy: raw.session_policy,
        duration,
        max_duration,
        sts_endpoint: raw.sts_endpoint,
    })
}

fn duration_max(value: Option<&str>, errors: &mut Vec<String>) -> Duration {
    duration("max_duration", value, Duration::from_secs(3600), errors)
}

fn parse_approval(raw: RawApproval, errors: &mut Vec<String>) -> crate::approval::ApprovalConfig {
    let defaults = crate::approval::ApprovalConfig::default();
    let hold = duration("approval.hold", raw.hold.as_deref(), defaults.hold, errors);
    let pending_ttl = duration(
        "approval.pending_ttl",
        raw.pending_ttl.as_deref(),
        defaults.pending_ttl,
        errors,
    );
    if pending_ttl < hold {
        errors.push("approval.pending_ttl: must be at least approval.hold".into());
    }
    let webhook = raw
        .webhook
        .as_deref()
        .and_then(|w| match url::Url::parse(w) {
            Ok(u) if u.scheme() == "https" || u.scheme() == "http" => Some(u),
            Ok(_) => {
                errors.push(format!("approval.webhook: `{w}` is not an http(s) URL"));
                None
            }
            Err(e) => {
                errors.push(format!("approval.webhook: {e}"));
                None
            }
        });
    crate::approval::ApprovalConfig {
        hold,
        pending_ttl,
        webhook,
        justification_header: raw
            .justification_header
            .unwrap_or(defaults.justification_header)
            .to_ascii_lowercase(),
        approvers: raw.approvers,
    }
}

fn parse_identity(raw: RawIdentity, errors: &mut Vec<String>) -> IdentityConfig {
    use crate::identity::{oidc, OidcConfig, ProcessIdentity};
    let mut issuers = std::collections::HashSet::new();
    let oidc = raw
        .oidc
        .into_iter()
        .map(|o| {
            let at = format!("identity.oidc `{}`", o.issuer);
            match url::Url::parse(&o.issuer) {
                Ok(u)
                    if u.scheme() == "https"
                        || u.host_str().is_some_and(|h| {
                            h == "localhost" || h.parse::<IpAddr>().is_ok_and(|a| a.is_loopback())
                        }) => {}
                Ok(_) => errors.push(format!("{at}: the issuer must be an https URL")),
                Err(e) => errors.push(format!("{at}: {e}")),
            }
            if !issuers.insert(o.issuer.clone()) {
                errors.push(format!("{at}: listed twice"));
            }
            if o.audiences.is_empty() {
                errors.push(format!("{at}: audiences must name at least one audience"));
            }
            let algorithms = match &o.algorithms {
                None => oidc::DEFAULT_ALGORITHMS.to_vec(),
                Some(names) => names
                    .iter()
                    .filter_map(|n| {
                        oidc::parse_algorithm(n)
                            .map_err(|e| errors.push(format!("{at}.algorithms: {e}")))
                            .ok()
                    })
                    .collect(),
            };
            if let Some(ca) = &o.ca_file {
                if !ca.is_file() {
                    errors.push(format!(
                        "{at}.ca_file: {} is not a readable file",
                        ca.display()
                    ));
                }
            }
            OidcConfig {
                audiences: o.audiences,
                groups_claim: o.groups_claim.unwrap_or_else(|| "groups".into()),
                algorithms,
                required_claims: o.required_claims.unwrap_or_else(|| vec!["sub".into()]),
                leeway: duration(
                    &format!("{at}.leeway"),
                    o.leeway.as_deref(),
                    Duration::from_secs(30),
                    errors,
                ),
                jwks_cache: duration(
                    &format!("{at}.jwks_cache"),
                    o.jwks_cache.as_deref(),
                    Duration::from_secs(600),
                    errors,
                ),
                ca_file: o.ca_file,
                issuer: o.issuer,
            }
        })
        .collect();
    let processes = raw
        .processes
        .into_iter()
        .map(|p| {
            if p.uid.is_none() && p.exe.is_none() && p.unit.is_none() && p.cgroup.is_none() {
                errors.push(format!(
                    "identity.processes `{}`: needs at least one of uid, exe, unit, cgroup",
                    p.name
                ));
            }
            ProcessIdentity {
                name: p.name,
                uid: p.uid,
                exe: p.exe,
                unit: p.unit,
                cgroup: p.cgroup,
                groups: p.groups,
            }
        })
        .collect();
    IdentityConfig { oidc, processes }
}

/// `[masking]` into engine settings, checked by building a masker (patterns compile, names
/// are known) so a bad section is a configuration error, not a failure at the first response.
fn parse_masking(raw: RawMasking) -> Result<MaskingConfig, String> {
    use crate::mask::{Detector, MaskSettings, Masker};
    let defaults = MaskSettings::default();
    let detectors = match raw.detectors {
        None => defaults.detectors,
        Some(names) => names
            .iter()
            .map(|n| {
                Detector::from_name(n).ok_or_else(|| {
                    let known: Vec<&str> = Detector::BUILTIN.iter().map(Detector::name).collect();
                    format!("unknown detector `{n}` (known: {})", known.join(", "))
                })
            })
            .collect::<Result<_, _>>()?,
    };
    let settings = MaskSettings {
        detectors,
        custom: raw
            .custom
            .into_iter()
            .map(|c| (c.name, c.pattern))
            .collect(),
        fields: raw.fields.unwrap_or(defaults.fields),
        style: raw.style.unwrap_or(defaults.style),
        styles: raw.styles.into_iter().collect(),
    };
    Masker::new(&settings, [0; 32]).map_err(|e| e.to_string())?;
    if let Some(bad) = raw.pointers.iter().find(|p| !p.pointer.starts_with('/')) {
        return Err(format!(
            "pointer `{}` must start with `/` (RFC 6901, into the result)",
            bad.pointer
        ));
    }
    Ok(MaskingConfig {
        settings,
        arguments_of_tools: raw.arguments_of_tools,
        pointers: raw.pointers,
    })
}

/// Reads the file, or the embedded default when `path` is `None`.
pub fn load(path: Option<&std::path::Path>) -> Result<Config, ConfigError> {
    match path {
        None => parse_config(DEFAULT_CONFIG),
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            parse_config(&text).map_err(|source| ConfigError::File {
                path: path.to_owned(),
                source: Box::new(source),
            })
        }
    }
}

#[cfg(test)]
mod tests;
