//! Masking of what MCP servers send back (tool results, resource reads, prompt messages)
//! before it reaches the client.
//!
//! The engine works on JSON values, never on the raw envelope, so the JSON-RPC message stays
//! valid:
//! - **Field rules**: under an object key matching one of the `fields` globs (ASCII case
//!   insensitive, `*` any run, `?` one byte), the whole value is masked, whatever it is.
//! - **Detectors** run on every string, every object key and every number (as its decimal
//!   text). All detectors' regexes form one `RegexSet`, so a string is scanned once to learn
//!   which detectors can match at all; only those then locate and validate their candidates
//!   (Luhn, mod 97, SSN ranges, address parsing, JWT header…). Overlapping hits resolve to the
//!   longest.
//! - A string that trims to `{`/`[` and parses as JSON is masked as JSON and written back
//!   compactly (only if something was masked; otherwise it stays byte-identical).
//!
//! Styles: `redact` → `[REDACTED:EMAIL]`; `partial` → `[REDACTED:CREDIT_CARD:…1111]` (the last
//! four characters, and only for values of eight characters or more, else as `redact`);
//! `hash` → `[EMAIL:1f3a9c2b7d4e]`, the first 48 bits of HMAC-SHA256(host key,
//! len(salt) ‖ salt ‖ normalised value), so equal values get equal pseudonyms within a session.
//!
//! Findings name the detector (`email`, a custom name, or `field:<glob>` for a field rule) and
//! the JSON pointer of the masked value, never the value. The engine fails closed: on any
//! error `mask_value` replaces the whole value with `null`, so nothing half-masked can be
//! forwarded by mistake.

mod detectors;
pub mod interceptor;

use std::fmt::Write as _;
use std::ops::Range;
use std::path::Path;

use regex::{Regex, RegexSet};
use ring::hmac;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use detectors::Ctx;

/// Nesting deeper than this (objects/arrays, counting JSON inside strings) is an error.
pub const MAX_DEPTH: usize = 128;

/// File in `state_dir` holding the host key for `hash` pseudonyms.
pub const KEY_FILE: &str = "mask.key";

/// How a masked value is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Style {
    /// `[REDACTED:EMAIL]`
    Redact,
    /// `[REDACTED:CREDIT_CARD:…1111]`: the last four characters of values of eight or more.
    Partial,
    /// `[EMAIL:1f3a9c2b7d4e]`: a keyed pseudonym, stable within a session.
    Hash,
}

/// A kind of sensitive value found inside strings.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Detector {
    Email,
    CreditCard,
    Ssn,
    Phone,
    Iban,
    Ip,
    AwsAccessKey,
    AwsSecretKey,
    Jwt,
    PrivateKey,
    ApiToken,
    Custom(String),
}

impl Detector {
    /// Every built-in detector, in the order overlaps of equal length are resolved.
    pub const BUILTIN: [Detector; 11] = [
        Detector::PrivateKey,
        Detector::Jwt,
        Detector::ApiToken,
        Detector::AwsAccessKey,
        Detector::AwsSecretKey,
        Detector::Iban,
        Detector::CreditCard,
        Detector::Ssn,
        Detector::Email,
        Detector::Ip,
        Detector::Phone,
    ];

    pub fn name(&self) -> &str {
        match self {
            Detector::Email => "email",
            Detector::CreditCard => "credit_card",
            Detector::Ssn => "ssn",
            Detector::Phone => "phone",
            Detector::Iban => "iban",
            Detector::Ip => "ip",
            Detector::AwsAccessKey => "aws_access_key",
            Detector::AwsSecretKey => "aws_secret_key",
            Detector::Jwt => "jwt",
            Detector::PrivateKey => "private_key",
            Detector::ApiToken => "api_token",
            Detector::Custom(name) => name,
        }
    }

    /// The built-in detector of that name.
    pub fn from_name(s: &str) -> Option<Detector> {
        Detector::BUILTIN.into_iter().find(|d| d.name() == s)
    }
}

/// What to mask and how, built by the config layer from `[masking]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaskSettings {
    /// Enabled built-in detectors.
    pub detectors: Vec<Detector>,
    /// Custom detectors: (name, regex); every non-empty match is masked.
    pub custom: Vec<(String, String)>,
    /// Key-name globs, case-insensitive: the whole value under a matching key is masked.
    pub fields: Vec<String>,
    /// Default style.
    pub style: Style,
    /// Per-name overrides: a detector name, a custom name, a field glob as written in `fields`
    /// (`field:<glob>` to address only the field rule when a detector has the same name).
    pub styles: Vec<(String, Style)>,
}

impl Default for MaskSettings {
    fn default() -> Self {
        Self {
            detectors: Detector::BUILTIN.to_vec(),
            custom: Vec::new(),
            fields: vec!["password".into(), "*secret*".into(), "ssn".into()],
            style: Style::Redact,
            styles: Vec::new(),
        }
    }
}

/// One masked value: which rule masked it and where. Never the value itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Detector name, custom name, or `field:<glob>`.
    pub detector: String,
    /// RFC 6901 pointer to the masked string/value. Inside JSON text carried in a string the
    /// pointer continues into the parsed text (`/content/0/text/user/email`).
    pub pointer: String,
}

#[derive(thiserror::Error, Debug)]
pub enum MaskError {
    #[error("masking rule {name:?}: invalid regex: {source}")]
    InvalidPattern {
        name: String,
        #[source]
        source: regex::Error,
    },
    #[error("masking rule {0:?}: the regex matches the empty string")]
    MatchesEmpty(String),
    #[error("masking rule name {0:?} is used twice (or is a built-in detector's name)")]
    DuplicateName(String),
    #[error("masking detector {0:?} is neither built in nor defined under custom")]
    UnknownDetector(String),
    #[error("masking style given for {0:?}, which is no detector or field rule")]
    UnknownStyleTarget(String),
    #[error("masking: value nested deeper than {0} levels")]
    TooDeep(usize),
}

struct CompiledDetector {
    /// Bit in `detectors::gate`'s answer; 0 for a custom detector.
    bit: u16,
    name: String,
    label: String,
    regex: Regex,
    check: detectors::Check,
    style: Style,
    normalize: Normalize,
}

struct FieldRule {
    /// The glob, ASCII-lowercased.
    glob: Vec<u8>,
    finding: String,
    label: String,
    style: Style,
}

/// How a value is normalised before hashing, so `4111 1111 1111 1111` and `4111111111111111`
/// (or two spellings of one address) get one pseudonym.
#[derive(Clone, Copy)]
enum Normalize {
    None,
    Lowercase,
    Alphanumeric,
}

/// The masking engine: built once from the settings, shared by every connection.
pub struct Masker {
    /// The custom detectors' regexes (their indices follow the built-ins'), if any.
    custom_set: Option<RegexSet>,
    /// How many of `detectors` are built in.
    builtins: usize,
    detectors: Vec<CompiledDetector>,
    fields: Vec<FieldRule>,
    key: hmac::Key,
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Masker")
            .field(
                "detectors",
                &self.detectors.iter().map(|d| &d.name).collect::<Vec<_>>(),
            )
            .field(
                "fields",
                &self.fields.iter().map(|f| &f.finding).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Masker {
    pub fn new(settings: &MaskSettings, host_key: [u8; 32]) -> Result<Self, MaskError> {
        let MaskSettings {
            detectors,
            custom,
            fields,
            style,
            styles,
        } = settings;
        let style_for = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| styles.iter().find(|(s, _)| s == n).map(|&(_, st)| st))
                .unwrap_or(*style)
        };

        let mut compiled: Vec<CompiledDetector> = Vec::new();
        let mut patterns: Vec<String> = Vec::new();
        // Built-ins in their fixed order (it decides ties), then custom ones in config order.
        for d in Detector::BUILTIN
            .iter()
            .filter(|d| detectors.contains(d))
            .cloned()
        {
            let spec = detectors::spec(&d).expect("built-in detectors have a spec");
            let normalize = match d {
                Detector::Email => Normalize::Lowercase,
                Detector::CreditCard | Detector::Ssn | Detector::Phone | Detector::Iban => {
                    Normalize::Alphanumeric
                }
                _ => Normalize::None,
            };
            compiled.push(CompiledDetector {
                bit: detectors::bit(&d),
                name: d.name().to_owned(),
                label: label(d.name()),
                regex: Regex::new(spec.pattern).expect("built-in patterns are valid"),
                check: spec.check,
                style: style_for(&[d.name()]),
                normalize,
            });
        }
        let builtins = compiled.len();
        for d in detectors {
            if let Detector::Custom(name) = d {
                if !custom.iter().any(|(n, _)| n == name) {
                    return Err(MaskError::UnknownDetector(name.clone()));
                }
            }
        }
        for (name, pattern) in custom {
            if name.is_empty()
                || Detector::from_name(name).is_some()
                || compiled.iter().any(|c| &c.name == name)
            {
                return Err(MaskError::DuplicateName(name.clone()));
            }
            let regex = Regex::new(pattern).map_err(|source| MaskError::InvalidPattern {
                name: name.clone(),
                source,
            })?;
            if regex.is_match("") {
                return Err(MaskError::MatchesEmpty(name.clone()));
            }
            compiled.push(CompiledDetector {
                bit: 0,
                name: name.clone(),
                label: label(name),
                regex,
                check: |_, span| Some(span),
                style: style_for(&[name]),
                normalize: Normalize::None,
            });
            patterns.push(pattern.clone());
        }
        let custom_set = if patterns.is_empty() {
            None
        } else {
            Some(
                RegexSet::new(&patterns).map_err(|source| MaskError::InvalidPattern {
                    name: "(all detectors together)".into(),
                    source,
                })?,
            )
        };

        let fields = fields
            .iter()
            .map(|glob| {
                let finding = format!("field:{glob}");
                let bare = glob.replace(['*', '?'], "");
                FieldRule {
                    glob: glob.to_ascii_lowercase().into_bytes(),
                    label: label(if bare.is_empty() { "field" } else { &bare }),
                    style: style_for(&[&finding, glob]),
                    finding,
                }
            })
            .collect::<Vec<_>>();

        for (target, _) in styles {
            let known = compiled.iter().any(|c| &c.name == target)
                || Detector::from_name(target).is_some()
                || fields
                    .iter()
                    .any(|f| &f.finding == target || f.finding[6..] == *target);
            if !known {
                return Err(MaskError::UnknownStyleTarget(target.clone()));
            }
        }

        Ok(Self {
            custom_set,
            builtins,
            detectors: compiled,
            fields,
            key: hmac::Key::new(hmac::HMAC_SHA256, &host_key),
        })
    }

    /// Masks every string, key and number (and every value under a masked field name) in
    /// `value`, in place. `salt` scopes `hash` pseudonyms (the gateway passes its session id).
    ///
    /// On error `value` is replaced by `null`: the caller never holds a half-masked value.
    pub fn mask_value(&self, value: &mut Value, salt: &[u8]) -> Result<Vec<Finding>, MaskError> {
        let mut walk = Walk {
            masker: self,
            salt,
            pointer: String::new(),
            findings: Vec::new(),
            number: String::new(),
        };
        match walk.value(value, None, 0) {
            Ok(()) => Ok(walk.findings),
            Err(e) => {
                *value = Value::Null;
                Err(e)
            }
        }
    }

    /// Masks one string, as `mask_value` masks a string value (JSON text in it included);
    /// findings' pointers are relative to the string (`""` for the string itself).
    pub fn mask_text(&self, text: &str, salt: &[u8]) -> Result<(String, Vec<Finding>), MaskError> {
        let mut value = Value::String(text.to_owned());
        let findings = self.mask_value(&mut value, salt)?;
        match value {
            Value::String(s) => Ok((s, findings)),
            _ => unreachable!("masking a string yields a string"),
        }
    }

    /// The masked form of `text` if any detector fired, with one finding per masked span.
    fn scan(
        &self,
        text: &str,
        key: Option<&str>,
        pointer: &str,
        salt: &[u8],
        findings: &mut Vec<Finding>,
    ) -> Option<String> {
        if text.is_empty() || self.detectors.is_empty() {
            return None;
        }
        // One pass over the text says which built-in detectors can confirm anything in it
        // (for all others there is nothing to find), one `RegexSet` pass which custom ones can
        // match; only those then locate and validate their candidates.
        let gate = if self.builtins > 0 {
            detectors::gate(text, key)
        } else {
            0
        };
        let custom = self
            .custom_set
            .as_ref()
            .map(|set| set.matches(text))
            .filter(|hits| hits.matched_any());
        if gate == 0 && custom.is_none() {
            return None;
        }
        let ctx = Ctx { text, key };
        let builtin = self.detectors[..self.builtins]
            .iter()
            .enumerate()
            .filter(|(_, d)| d.bit & gate != 0);
        let custom = custom
            .iter()
            .flat_map(|hits| hits.iter())
            .map(|i| (self.builtins + i, &self.detectors[self.builtins + i]));
        // (span, detector index), from every detector that can match.
        let mut candidates: Vec<(Range<usize>, usize)> = Vec::new();
        for (i, d) in builtin.chain(custom) {
            for m in d.regex.find_iter(text) {
                if let Some(span) = (d.check)(&ctx, m.range()) {
                    if !span.is_empty() {
                        candidates.push((span, i));
                    }
                }
            }
        }
        if candidates.is_empty() {
            return None;
        }
        // Longest first, then leftmost, then detector order; keep what does not overlap.
        candidates.sort_by(|a, b| {
            b.0.len()
                .cmp(&a.0.len())
                .then(a.0.start.cmp(&b.0.start))
                .then(a.1.cmp(&b.1))
        });
        let mut chosen: Vec<(Range<usize>, usize)> = Vec::new(); // sorted by start
        for (span, i) in candidates {
            let at = chosen.partition_point(|(c, _)| c.start < span.start);
            let clashes_before = at > 0 && chosen[at - 1].0.end > span.start;
            let clashes_after = at < chosen.len() && chosen[at].0.start < span.end;
            if !clashes_before && !clashes_after {
                chosen.insert(at, (span, i));
            }
        }
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for (span, i) in chosen {
            let d = &self.detectors[i];
            out.push_str(&text[last..span.start]);
            let value = &text[span.clone()];
            let normalized = normalize(d.normalize, value);
            self.render(
                &mut out,
                &d.label,
                d.style,
                value,
                normalized.as_bytes(),
                salt,
            );
            findings.push(Finding {
                detector: d.name.clone(),
                pointer: pointer.to_owned(),
            });
            last = span.end;
        }
        out.push_str(&text[last..]);
        Some(out)
    }

    fn field_rule(&self, key: &str) -> Option<&FieldRule> {
        self.fields
            .iter()
            .find(|f| glob_match(&f.glob, key.as_bytes()))
    }

    fn render(
        &self,
        out: &mut String,
        label: &str,
        style: Style,
        shown: &str,
        hashed: &[u8],
        salt: &[u8],
    ) {
        match style {
            Style::Redact => {
                let _ = write!(out, "[REDACTED:{label}]");
            }
            Style::Partial => {
                let n = shown.chars().count();
                if n >= 8 {
                    let tail: String = shown.chars().skip(n - 4).collect();
                    let _ = write!(out, "[REDACTED:{label}:…{tail}]");
                } else {
                    let _ = write!(out, "[REDACTED:{label}]");
                }
            }
            Style::Hash => {
                let mut ctx = hmac::Context::with_key(&self.key);
                ctx.update(&(salt.len() as u64).to_be_bytes());
                ctx.update(salt);
                ctx.update(hashed);
                let tag = ctx.sign();
                let _ = write!(out, "[{label}:");
                for b in &tag.as_ref()[..6] {
                    let _ = write!(out, "{b:02x}");
                }
                out.push(']');
            }
        }
    }
}

/// One `mask_value` call: the pointer being built and the findings so far.
struct Walk<'a> {
    masker: &'a Masker,
    salt: &'a [u8],
    pointer: String,
    findings: Vec<Finding>,
    /// Scratch buffer for the decimal text of numbers.
    number: String,
}

impl Walk<'_> {
    fn value(&mut self, v: &mut Value, key: Option<&str>, depth: usize) -> Result<(), MaskError> {
        match v {
            Value::Object(map) => {
                if depth >= MAX_DEPTH {
                    return Err(MaskError::TooDeep(MAX_DEPTH));
                }
                // Keys can carry values too (`{"alice@example.com": 3}`): mask them first, so
                // pointers (and the output) only ever hold masked keys.
                let mut renames: Vec<(String, String, Vec<Finding>)> = Vec::new();
                for k in map.keys() {
                    let mut found = Vec::new();
                    if let Some(masked) = self.masker.scan(k, None, "", self.salt, &mut found) {
                        renames.push((k.clone(), masked, found));
                    }
                }
                let base = self.pointer.len();
                let mut renamed: Vec<String> = Vec::with_capacity(renames.len());
                for (old, new, found) in renames {
                    let mut child = map.remove(&old).expect("key was just listed");
                    // Two keys may mask alike (`[REDACTED:EMAIL]`): keep both members.
                    let mut unique = new.clone();
                    let mut n = 2;
                    while map.contains_key(&unique) {
                        unique = format!("{new}#{n}");
                        n += 1;
                    }
                    push_token(&mut self.pointer, &unique);
                    self.findings.extend(found.into_iter().map(|f| Finding {
                        pointer: self.pointer.clone(),
                        ..f
                    }));
                    self.member(&mut child, &old, depth)?;
                    self.pointer.truncate(base);
                    map.insert(unique.clone(), child);
                    renamed.push(unique);
                }
                for (k, child) in map.iter_mut() {
                    if renamed.contains(k) {
                        continue;
                    }
                    push_token(&mut self.pointer, k);
                    self.member(child, k, depth)?;
                    self.pointer.truncate(base);
                }
                Ok(())
            }
            Value::Array(items) => {
                if depth >= MAX_DEPTH {
                    return Err(MaskError::TooDeep(MAX_DEPTH));
                }
                let base = self.pointer.len();
                for (i, child) in items.iter_mut().enumerate() {
                    let _ = write!(self.pointer, "/{i}");
                    self.value(child, None, depth + 1)?;
                    self.pointer.truncate(base);
                }
                Ok(())
            }
            Value::String(s) => {
                if let Some(masked) = self.string(s, key, depth)? {
                    *s = masked;
                }
                Ok(())
            }
            Value::Number(n) => {
                // Formatted into a buffer kept for the whole walk: no allocation per number.
                let mut text = std::mem::take(&mut self.number);
                text.clear();
                let _ = write!(text, "{n}");
                let masked =
                    self.masker
                        .scan(&text, key, &self.pointer, self.salt, &mut self.findings);
                self.number = text;
                if let Some(masked) = masked {
                    *v = Value::String(masked);
                }
                Ok(())
            }
            Value::Bool(_) | Value::Null => Ok(()),
        }
    }

    /// An object member's value: masked whole under a field rule, else walked.
    fn member(&mut self, child: &mut Value, key: &str, depth: usize) -> Result<(), MaskError> {
        let Some(rule) = self.masker.field_rule(key) else {
            return self.value(child, Some(key), depth + 1);
        };
        let mut out = String::new();
        match &*child {
            Value::String(s) => self.masker.render(
                &mut out,
                &rule.label,
                rule.style,
                s,
                s.as_bytes(),
                self.salt,
            ),
            other => {
                let json = other.to_string();
                // Only the tail of a string is ever shown; structured values are not.
                let style = match rule.style {
                    Style::Partial => Style::Redact,
                    s => s,
                };
                self.masker.render(
                    &mut out,
                    &rule.label,
                    style,
                    &json,
                    json.as_bytes(),
                    self.salt,
                )
            }
        }
        *child = Value::String(out);
        self.findings.push(Finding {
            detector: rule.finding.clone(),
            pointer: self.pointer.clone(),
        });
        Ok(())
    }

    /// A string: JSON text is masked as JSON, anything else by the detectors.
    fn string(
        &mut self,
        s: &str,
        key: Option<&str>,
        depth: usize,
    ) -> Result<Option<String>, MaskError> {
        let trimmed = s.trim_start();
        if trimmed.starts_with(['{', '[']) {
            match serde_json::from_str::<Value>(s) {
                Ok(mut inner) => {
                    let before = self.findings.len();
                    // The parsed text takes the string's place in the nesting count.
                    self.value(&mut inner, key, depth)?;
                    if self.findings.len() == before {
                        return Ok(None);
                    }
                    return Ok(Some(
                        serde_json::to_string(&inner).expect("a Value always serializes"),
                    ));
                }
                // serde_json stops at 128 levels; text that deep is refused, not scanned as
                // prose (field rules could not apply to it).
                Err(e) if e.to_string().contains("recursion limit") => {
                    return Err(MaskError::TooDeep(MAX_DEPTH));
                }
                Err(_) => {}
            }
        }
        Ok(self
            .masker
            .scan(s, key, &self.pointer, self.salt, &mut self.findings))
    }
}

fn push_token(pointer: &mut String, token: &str) {
    pointer.push('/');
    if !token.contains(['~', '/']) {
        pointer.push_str(token);
        return;
    }
    for c in token.chars() {
        match c {
            '~' => pointer.push_str("~0"),
            '/' => pointer.push_str("~1"),
            c => pointer.push(c),
        }
    }
}

/// `credit_card` → `CREDIT_CARD`; anything but ASCII alphanumerics becomes `_`.
fn label(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

fn normalize(how: Normalize, value: &str) -> std::borrow::Cow<'_, str> {
    match how {
        Normalize::None => value.into(),
        Normalize::Lowercase => value.to_lowercase().into(),
        Normalize::Alphanumeric => value
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_uppercase())
            .collect::<String>()
            .into(),
    }
}

/// Glob match of an ASCII-lowercased pattern against a key, ASCII case-insensitively.
fn glob_match(pattern: &[u8], key: &[u8]) -> bool {
    let (mut p, mut k) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while k < key.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, k));
                p += 1;
            }
            Some(&c) if c == b'?' || c == key[k].to_ascii_lowercase() => {
                p += 1;
                k += 1;
            }
            _ => match star {
                Some((sp, sk)) => {
                    p = sp + 1;
                    k = sk + 1;
                    star = Some((sp, sk + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Loads the 32-byte host key for `hash` pseudonyms from `state_dir/mask.key`, creating it
/// (mode 0600, from the system's randomness) on first use.
pub fn load_or_create_key(state_dir: &Path) -> std::io::Result<[u8; 32]> {
    let path = state_dir.join(KEY_FILE);
    std::fs::create_dir_all(state_dir)?;
    let bytes = crate::keyfile::load_or_create(&path, || {
        let mut key = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key)
            .map_err(|_| std::io::Error::other("no system randomness for the masking key"))?;
        Ok(key.to_vec())
    })?;
    let len = bytes.len();
    bytes.try_into().map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: expected 32 bytes, found {len}", path.display()),
        )
    })
}

#[cfg(test)]
mod tests;
