//! `[servers.aws]`: the role a server's calls are signed with, and how credentials for it
//! are minted.

use std::time::Duration;

use serde::Deserialize;

use super::{AwsServer, Mode};
use crate::clock::duration_setting as duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAws {
    pub role_arn: String,
    pub region: String,
    pub service: String,
    #[serde(default = "default_mode")]
    pub credentials: Mode,
    pub session_policy: Option<String>,
    pub duration: Option<String>,
    pub max_duration: Option<String>,
    pub sts_endpoint: Option<String>,
}

fn default_mode() -> Mode {
    Mode::AssumeRole
}

/// Checks the section: a role ARN, STS-legal durations, a session policy that renders. A
/// problem goes to `errors` under `at` (all are reported at once).
pub fn parse(raw: RawAws, at: &str, errors: &mut Vec<String>) -> Option<AwsServer> {
    check(raw)
        .map_err(|e| errors.push(format!("{at}: {e}")))
        .ok()
}

fn check(raw: RawAws) -> Result<AwsServer, String> {
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
        let scope = super::CallScope {
            subject: &subject,
            server: "server",
            tool: Some("tool"),
            gateway_session: 0,
            approval: None,
            grant_expires_ms: None,
        };
        super::render_policy(Some(template), &scope).map_err(|e| e.to_string())?;
    }
    if let Some(endpoint) = &raw.sts_endpoint {
        match url::Url::parse(endpoint) {
            Ok(u) if u.scheme() == "https" || u.scheme() == "http" => {}
            _ => return Err(format!("sts_endpoint `{endpoint}` is not an http(s) URL")),
        }
    }
    Ok(AwsServer {
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
