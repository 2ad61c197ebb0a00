//! `[identity]`: the OIDC issuers whose access tokens are accepted and the processes known
//! by what the kernel says about them.

use std::{net::IpAddr, path::PathBuf, time::Duration};

use serde::Deserialize;

use super::{OidcConfig, ProcessIdentity};
use crate::clock::duration_setting as duration;

#[derive(Debug, Clone, Default)]
pub struct IdentityConfig {
    pub oidc: Vec<OidcConfig>,
    pub processes: Vec<ProcessIdentity>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentity {
    #[serde(default)]
    pub oidc: Vec<RawOidc>,
    #[serde(default)]
    pub processes: Vec<RawProcessIdentity>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOidc {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub groups_claim: Option<String>,
    pub algorithms: Option<Vec<String>>,
    pub required_claims: Option<Vec<String>>,
    pub leeway: Option<String>,
    pub jwks_cache: Option<String>,
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProcessIdentity {
    pub name: String,
    pub uid: Option<u32>,
    pub exe: Option<String>,
    pub unit: Option<String>,
    pub cgroup: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
}

/// Checks the section; problems go to `errors` (all are reported at once).
pub fn parse(raw: RawIdentity, errors: &mut Vec<String>) -> IdentityConfig {
    use super::oidc;
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
