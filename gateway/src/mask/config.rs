//! `[masking]`: which detectors and field rules run, how matches are written, and which call
//! arguments and result pointers are masked too.

use serde::Deserialize;

use super::interceptor::PointerRule;

#[derive(Debug, Clone)]
pub struct MaskingConfig {
    pub settings: super::MaskSettings,
    /// Tools (globs) whose call arguments are masked before they go upstream.
    pub arguments_of_tools: Vec<String>,
    /// Values at JSON pointers (into `result`) masked whole, for the tools named (globs).
    pub pointers: Vec<PointerRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMasking {
    pub detectors: Option<Vec<String>>,
    pub fields: Option<Vec<String>>,
    pub style: Option<super::Style>,
    /// Per detector, custom detector or field rule.
    #[serde(default)]
    pub styles: std::collections::BTreeMap<String, super::Style>,
    #[serde(default)]
    pub custom: Vec<RawCustomDetector>,
    #[serde(default)]
    pub arguments_of_tools: Vec<String>,
    #[serde(default)]
    pub pointers: Vec<PointerRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCustomDetector {
    pub name: String,
    pub pattern: String,
}

/// `[masking]` into engine settings, checked by building a masker (patterns compile, names
/// are known) so a bad section is a configuration error, not a failure at the first response.
pub fn parse(raw: RawMasking, errors: &mut Vec<String>) -> Option<MaskingConfig> {
    check(raw)
        .map_err(|e| errors.push(format!("masking: {e}")))
        .ok()
}

fn check(raw: RawMasking) -> Result<MaskingConfig, String> {
    use super::{Detector, MaskSettings, Masker};
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
