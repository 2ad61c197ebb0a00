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
pub use crate::{
    identity::config::IdentityConfig,
    mask::{config::MaskingConfig, interceptor::PointerRule},
};

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

#[derive(Debug, Clone)]
pub struct RecordingConfig {
    /// Sealed sessions that ended longer ago than this are pruned.
    pub retention: Duration,
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
    /// Whether the hop to the upstream is TLS, when `upstream`'s scheme says so (`https`:
    /// yes, `http`: no); `None`: the same as the client's side.
    pub upstream_tls: Option<bool>,
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
/// `Some(true)` for an `https` upstream, `Some(false)` for `http`, `None` otherwise.
fn upstream_scheme_tls(s: &str) -> Option<bool> {
    match url::Url::parse(s).ok()?.scheme() {
        "https" => Some(true),
        "http" => Some(false),
        _ => None,
    }
}

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
    masking: Option<crate::mask::config::RawMasking>,
    #[serde(default)]
    recording: RawRecording,
    #[serde(default)]
    identity: crate::identity::config::RawIdentity,
    #[serde(default)]
    policy: RawPolicy,
    #[serde(default)]
    guardrails: Vec<toml::Spanned<crate::policy::guardrails::RawGuardrail>>,
    #[serde(default)]
    approval: crate::approval::config::RawApproval,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    rules: Vec<toml::Spanned<crate::policy::RawRule>>,
}

/// `recording.store`: where the recording goes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum StoreKind {
    #[default]
    Sqlite,
    None,
    Postgres,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecording {
    store: Option<StoreKind>,
    retention: Option<String>,
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
    udp: Option<crate::intercept::Udp>,
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
    aws: Option<crate::creds::config::RawAws>,
    static_keys: Option<crate::creds::static_keys::StaticKeys>,
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
    let identity = crate::identity::config::parse(identity, &mut errors);
    let approval = crate::approval::config::parse(approval, &mut errors);
    let recording = match recording.store.unwrap_or_default() {
        StoreKind::None => None,
        StoreKind::Sqlite => {
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
        StoreKind::Postgres => {
            errors.push(
                "recording.store: \"postgres\" is not supported yet; use \"sqlite\" or \"none\""
                    .into(),
            );
            None
        }
    };
    let masking = masking.and_then(|m| crate::mask::config::parse(m, &mut errors));

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
        udp: intercept.udp.unwrap_or_default(),
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
            let upstream_tls = s.upstream.as_deref().and_then(upstream_scheme_tls);
            // What clients send under TLS goes on in cleartext only to this host itself.
            if let (Some(false), TlsMode::Terminate, Some(up)) = (upstream_tls, s.tls, &upstream) {
                let loopback = up.host == "localhost"
                    || up.host.parse::<IpAddr>().is_ok_and(|a| a.is_loopback());
                if !loopback {
                    errors.push(format!(
                        "{where_}: upstream `http://{up}` would carry what clients send over TLS in cleartext; use https (http is for loopback upstreams)"
                    ));
                }
            }
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
                upstream_tls,
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
                    crate::creds::config::parse(a, &format!("{where_}.aws"), &mut errors)
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
            // Without a [::1] listener the programs cannot redirect native IPv6: such
            // connects would go to the server directly.
            let v6_listener = gateway
                .listen
                .iter()
                .any(|a| a.ip() == IpAddr::from(std::net::Ipv6Addr::LOCALHOST));
            let v6_target = servers
                .iter()
                .flat_map(|s| s.matches.iter())
                .find(|m| m.may_be_ipv6());
            if let (false, Some(target)) = (v6_listener, v6_target) {
                errors.push(format!(
                    "gateway.listen: `{target}` can be reached over IPv6, which needs a [::1]:PORT listener in ebpf mode"
                ));
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
