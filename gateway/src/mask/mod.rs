//! Masking of what MCP servers send back (tool results, resource reads, prompt messages)
//! before it reaches the client.
//!
//! The engine works on JSON values, never on the raw envelope, so the JSON-RPC message stays
//! valid:
//! - **Field rules**: under an object key matching one of the `fields` globs (ASCII case
//!   insensitive, `*` any run, `?` one byte), the whole value is masked, whatever it is.
//! - **Detectors** run on every string, every object key and every number (as its decimal
//!   text). One pass over a string (`detectors::gate`, custom detectors: one `RegexSet`)
//!   learns which detectors can confirm anything in it at all; only those then locate and
//!   validate their candidates (Luhn, mod 97, SSN ranges, address parsing, JWT header…).
//!   Overlapping hits resolve to the longest. Integers of fewer than nine digits cannot hold
//!   anything a built-in detector finds and are skipped when there are no custom detectors.
//! - A string that trims to `{`/`[` and is JSON is masked as JSON, as it is read
//!   (`json_text`): masked values are replaced in place, the rest of the text (layout,
//!   member order) is kept, and text with nothing to mask stays byte-identical. Text the
//!   pass does not take on (a key inside must be masked, nesting near the limits, malformed
//!   text) is parsed and walked as a `Value` and, if something was masked, written back
//!   compactly.
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

pub mod config;
mod detectors;
pub mod interceptor;
mod json_text;

use std::borrow::Cow;
use std::fmt::Write as _;
use std::ops::Range;
use std::path::Path;

use regex::{Regex, RegexSet};
use ring::hmac;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use detectors::Ctx;
pub use detectors::AWS_ACCESS_KEY_ID;

use crate::glob::glob_match_bytes;

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
            Detector::Custom(name) => name,
            builtin => builtin.builtin_name().expect("a built-in detector"),
        }
    }

    fn builtin_name(&self) -> Option<&'static str> {
        Some(match self {
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
            Detector::Custom(_) => return None,
        })
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
    /// Detector name, custom name, or `field:<glob>` (borrowed for the built-in detectors,
    /// so that a finding costs no allocation for its name).
    pub detector: Cow<'static, str>,
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
    /// Borrowed for the built-in detectors: findings copy it.
    name: Cow<'static, str>,
    label: String,
    regex: Regex,
    check: detectors::Check,
    style: Style,
    normalize: Normalize,
}

struct FieldRule {
    matcher: KeyGlob,
    finding: Cow<'static, str>,
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
                name: Cow::Borrowed(d.builtin_name().expect("a built-in detector")),
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
                name: Cow::Owned(name.clone()),
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
                    matcher: KeyGlob::new(glob.to_ascii_lowercase().into_bytes()),
                    label: label(if bare.is_empty() { "field" } else { &bare }),
                    style: style_for(&[&finding, glob]),
                    finding: finding.into(),
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
            findings: Vec::new(),
            scratch: Scratch::default(),
            keys: KeyMemo::default(),
        };
        match walk.value(value, None, None, 0) {
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
        let mut walk = Walk {
            masker: self,
            salt,
            findings: Vec::new(),
            scratch: Scratch::default(),
            keys: KeyMemo::default(),
        };
        let masked = if walk.string(text, None, None, 0)? {
            std::mem::take(&mut walk.scratch.masked)
        } else {
            text.to_owned()
        };
        Ok((masked, walk.findings))
    }

    /// Whether any detector fired in `text`; if so its masked form is in `scratch.masked` and
    /// the detectors of the masked spans, in order, are appended to `hits` (indices into
    /// `detectors`).
    fn scan(
        &self,
        text: &str,
        key: Option<&str>,
        salt: &[u8],
        hits: &mut Vec<usize>,
        scratch: &mut Scratch,
    ) -> bool {
        if text.is_empty() || self.detectors.is_empty() {
            return false;
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
            return false;
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
        let Scratch {
            candidates,
            chosen,
            masked: out,
            ..
        } = scratch;
        candidates.clear();
        for (i, d) in builtin.chain(custom) {
            let mut candidate = |m: Range<usize>| {
                if let Some(span) = (d.check)(&ctx, m) {
                    if !span.is_empty() {
                        candidates.push((span, i));
                    }
                }
            };
            // What the regex would find, found without it where that is simple.
            if !detectors::regex_matches(d.bit, text, &mut candidate) {
                for m in d.regex.find_iter(text) {
                    candidate(m.range());
                }
            }
        }
        if candidates.is_empty() {
            return false;
        }
        // Longest first, then leftmost, then detector order; keep what does not overlap.
        if candidates.len() > 1 {
            candidates.sort_unstable_by(|a, b| {
                b.0.len()
                    .cmp(&a.0.len())
                    .then(a.0.start.cmp(&b.0.start))
                    .then(a.1.cmp(&b.1))
            });
        }
        // Sorted by start.
        chosen.clear();
        for (span, i) in candidates.drain(..) {
            let at = chosen.partition_point(|(c, _)| c.start < span.start);
            let clashes_before = at > 0 && chosen[at - 1].0.end > span.start;
            let clashes_after = at < chosen.len() && chosen[at].0.start < span.end;
            if !clashes_before && !clashes_after {
                chosen.insert(at, (span, i));
            }
        }
        out.clear();
        out.reserve(text.len() + 16);
        let mut last = 0;
        for (span, i) in chosen.drain(..) {
            let d = &self.detectors[i];
            out.push_str(&text[last..span.start]);
            let value = &text[span.clone()];
            self.render(out, &d.label, d.style, value, d.normalize, salt);
            hits.push(i);
            last = span.end;
        }
        out.push_str(&text[last..]);
        true
    }

    /// No detector can find anything in an integer of fewer than nine digits: the built-in
    /// ones need more digits (cards 13, SSNs 9, phone numbers 8 after a `+` or separators)
    /// or other characters. Custom ones might.
    fn short_integers_are_clean(&self) -> bool {
        self.custom_set.is_none()
    }

    fn field_rule(&self, key: &str) -> Option<&FieldRule> {
        self.fields
            .iter()
            .find(|f| f.matcher.matches(key.as_bytes()))
    }

    /// Writes the masked form of `shown` (normalised as `normalize` says before hashing).
    fn render(
        &self,
        out: &mut String,
        label: &str,
        style: Style,
        shown: &str,
        normalize: Normalize,
        salt: &[u8],
    ) {
        match style {
            Style::Redact => {
                out.push_str("[REDACTED:");
                out.push_str(label);
                out.push(']');
            }
            Style::Partial => {
                let n = shown.chars().count();
                out.push_str("[REDACTED:");
                out.push_str(label);
                if n >= 8 {
                    let tail: String = shown.chars().skip(n - 4).collect();
                    out.push_str(":…");
                    out.push_str(&tail);
                }
                out.push(']');
            }
            Style::Hash => {
                let hashed = normalized(normalize, shown);
                let mut ctx = hmac::Context::with_key(&self.key);
                ctx.update(&(salt.len() as u64).to_be_bytes());
                ctx.update(salt);
                ctx.update(hashed.as_bytes());
                let tag = ctx.sign();
                out.push('[');
                out.push_str(label);
                out.push(':');
                for b in &tag.as_ref()[..6] {
                    let _ = write!(out, "{b:02x}");
                }
                out.push(']');
            }
        }
    }
}

/// Buffers reused from string to string within one `mask_value` call.
#[derive(Default)]
struct Scratch {
    candidates: Vec<(Range<usize>, usize)>,
    chosen: Vec<(Range<usize>, usize)>,
    hits: Vec<usize>,
    /// The decimal text of a number.
    number: String,
    /// The masked form of the last string scanned, when it was masked. It changes places
    /// with the string it replaces, so that masking allocates nothing in the steady state.
    masked: String,
}

/// Where a value sits, as a chain of JSON pointer tokens kept on the stack while walking;
/// it is written out as a pointer only for a value that is masked.
#[derive(Clone, Copy)]
struct Place<'a> {
    parent: Option<&'a Place<'a>>,
    token: Token<'a>,
}

#[derive(Clone, Copy)]
enum Token<'a> {
    Key(&'a str),
    Index(usize),
}

impl<'a> Place<'a> {
    fn key(parent: Option<&'a Place<'a>>, key: &'a str) -> Self {
        Place {
            parent,
            token: Token::Key(key),
        }
    }

    fn index(parent: Option<&'a Place<'a>>, index: usize) -> Self {
        Place {
            parent,
            token: Token::Index(index),
        }
    }
}

/// The RFC 6901 pointer of `path` (`""` for the root), written from its end backwards into
/// a buffer on the stack, then copied out once.
fn pointer(path: Option<&Place<'_>>) -> String {
    let mut buf = [0u8; 256];
    let mut end = buf.len();
    let mut put = |bytes: &[u8]| -> bool {
        let fits = bytes.len() <= end;
        if fits {
            end -= bytes.len();
            buf[end..end + bytes.len()].copy_from_slice(bytes);
        }
        fits
    };
    let mut at = path;
    while let Some(place) = at {
        let fits = match place.token {
            Token::Key(k) => k
                .as_bytes()
                .split_inclusive(|&c| c == b'~' || c == b'/')
                .rev()
                .all(|piece| match piece.split_last() {
                    Some((b'~', head)) => put(b"~0") && put(head),
                    Some((b'/', head)) => put(b"~1") && put(head),
                    _ => put(piece),
                }),
            Token::Index(mut i) => {
                let mut digits = [0u8; 20];
                let mut from = digits.len();
                loop {
                    from -= 1;
                    digits[from] = b'0' + (i % 10) as u8;
                    i /= 10;
                    if i == 0 {
                        break;
                    }
                }
                put(&digits[from..])
            }
        };
        if !(fits && put(b"/")) {
            return long_pointer(path);
        }
        at = place.parent;
    }
    String::from_utf8(buf[end..].to_vec()).expect("keys are UTF-8, the rest ASCII")
}

/// [`pointer`] for a pointer too long for its buffer.
fn long_pointer(path: Option<&Place<'_>>) -> String {
    let mut tokens = Vec::new();
    let mut at = path;
    while let Some(place) = at {
        tokens.push(place.token);
        at = place.parent;
    }
    let mut out = String::new();
    for token in tokens.iter().rev() {
        out.push('/');
        match token {
            Token::Key(k) => out.push_str(&k.replace('~', "~0").replace('/', "~1")),
            Token::Index(i) => out.push_str(&i.to_string()),
        }
    }
    out
}

/// One `mask_value` call: the findings so far.
struct Walk<'a> {
    masker: &'a Masker,
    salt: &'a [u8],
    findings: Vec<Finding>,
    scratch: Scratch,
    keys: KeyMemo,
}

enum Key<'a> {
    /// Kept as it is; the field rule naming it, if any.
    Plain(Option<&'a FieldRule>),
    /// Masked: the masked key and the detectors of its masked spans.
    Masked(String, Vec<usize>),
}

/// The keys seen in one call that need no masking, with their field rule (an index into
/// `Masker::fields`): a small open-addressing table.
#[derive(Default)]
struct KeyMemo {
    slots: Vec<Option<MemoSlot>>,
    len: usize,
}

struct MemoSlot {
    hash: u64,
    key: Box<str>,
    rule: Option<usize>,
}

impl KeyMemo {
    const SLOTS: usize = 256;
    /// Longer keys are not remembered (nor are keys past half the table).
    const KEY_MAX: usize = 64;
    const PROBES: usize = 4;

    fn hash(key: &[u8]) -> u64 {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mix = |h: u64, w: u64| (h.rotate_left(5) ^ w).wrapping_mul(K);
        let mut h = (key.len() as u64).wrapping_mul(K);
        let mut chunks = key.chunks_exact(8);
        for c in &mut chunks {
            h = mix(h, u64::from_le_bytes(c.try_into().expect("eight")));
        }
        let rest = chunks.remainder();
        let n = rest.len();
        // The last one to seven bytes, read without a copy (the reads may overlap).
        let u32_at =
            |i: usize| u64::from(u32::from_le_bytes(rest[i..i + 4].try_into().expect("four")));
        let tail = match n {
            0 => return h,
            1..=3 => {
                u64::from(rest[0]) | (u64::from(rest[n / 2]) << 8) | (u64::from(rest[n - 1]) << 16)
            }
            _ => u32_at(0) | (u32_at(n - 4) << 32),
        };
        mix(h, tail)
    }

    fn get(&self, key: &str) -> Option<Option<usize>> {
        if self.slots.is_empty() || key.len() > Self::KEY_MAX {
            return None;
        }
        let h = Self::hash(key.as_bytes());
        for probe in 0..Self::PROBES {
            match &self.slots[(h as usize).wrapping_add(probe) % Self::SLOTS] {
                Some(MemoSlot { hash, key: k, rule })
                    if *hash == h && k.as_bytes() == key.as_bytes() =>
                {
                    return Some(*rule)
                }
                Some(_) => {}
                None => return None,
            }
        }
        None
    }

    fn insert(&mut self, key: &str, rule: Option<usize>) {
        if key.len() > Self::KEY_MAX || self.len >= Self::SLOTS / 2 {
            return;
        }
        if self.slots.is_empty() {
            self.slots.resize_with(Self::SLOTS, || None);
        }
        let h = Self::hash(key.as_bytes());
        for probe in 0..Self::PROBES {
            let slot = &mut self.slots[(h as usize).wrapping_add(probe) % Self::SLOTS];
            if slot.is_none() {
                *slot = Some(MemoSlot {
                    hash: h,
                    key: key.into(),
                    rule,
                });
                self.len += 1;
                return;
            }
        }
    }
}

impl<'a> Walk<'a> {
    /// Masks `text` (a string, key or number, with the member key `key` for context) into
    /// `scratch.masked`, if any detector fires; one finding per masked span, all at `path`.
    fn scan(&mut self, text: &str, key: Option<&str>, path: Option<&Place<'_>>) -> bool {
        let mut hits = std::mem::take(&mut self.scratch.hits);
        hits.clear();
        let masked = self
            .masker
            .scan(text, key, self.salt, &mut hits, &mut self.scratch);
        if let Some((&last, rest)) = hits.split_last() {
            let pointer = pointer(path);
            for &i in rest {
                self.findings.push(Finding {
                    detector: self.masker.detectors[i].name.clone(),
                    pointer: pointer.clone(),
                });
            }
            self.findings.push(Finding {
                detector: self.masker.detectors[last].name.clone(),
                pointer,
            });
        }
        self.scratch.hits = hits;
        masked
    }

    fn value(
        &mut self,
        v: &mut Value,
        key: Option<&str>,
        path: Option<&Place<'_>>,
        depth: usize,
    ) -> Result<(), MaskError> {
        match v {
            Value::Object(map) => {
                if depth >= MAX_DEPTH {
                    return Err(MaskError::TooDeep(MAX_DEPTH));
                }
                // Keys can carry values too (`{"alice@example.com": 3}`): masked keys are
                // renamed, so pointers (and the output) only ever hold masked keys.
                let mut renames: Vec<(String, String, Vec<usize>)> = Vec::new();
                for (k, child) in map.iter_mut() {
                    match self.key(k) {
                        Key::Plain(rule) => {
                            let here = Place::key(path, k);
                            self.member(child, k, rule, Some(&here), depth)?;
                        }
                        Key::Masked(masked, hits) => renames.push((k.clone(), masked, hits)),
                    }
                }
                for (old, new, hits) in renames {
                    let mut child = map.remove(&old).expect("key was just listed");
                    // Two keys may mask alike (`[REDACTED:EMAIL]`): keep both members.
                    let mut unique = new.clone();
                    let mut n = 2;
                    while map.contains_key(&unique) {
                        unique = format!("{new}#{n}");
                        n += 1;
                    }
                    let here = Place::key(path, &unique);
                    let at = pointer(Some(&here));
                    for i in hits {
                        self.findings.push(Finding {
                            detector: self.masker.detectors[i].name.clone(),
                            pointer: at.clone(),
                        });
                    }
                    let rule = self.masker.field_rule(&old);
                    self.member(&mut child, &old, rule, Some(&here), depth)?;
                    map.insert(unique, child);
                }
                Ok(())
            }
            Value::Array(items) => {
                if depth >= MAX_DEPTH {
                    return Err(MaskError::TooDeep(MAX_DEPTH));
                }
                for (i, child) in items.iter_mut().enumerate() {
                    let here = Place::index(path, i);
                    self.value(child, None, Some(&here), depth + 1)?;
                }
                Ok(())
            }
            Value::String(s) => {
                if self.string(s, key, path, depth)? {
                    std::mem::swap(s, &mut self.scratch.masked);
                }
                Ok(())
            }
            Value::Number(n) => {
                if self.masker.short_integers_are_clean()
                    && n.as_i64().is_some_and(|v| v.unsigned_abs() < 100_000_000)
                {
                    return Ok(());
                }
                // Formatted into a buffer kept for the whole walk: no allocation per number.
                let mut text = std::mem::take(&mut self.scratch.number);
                text.clear();
                let _ = write!(text, "{n}");
                let masked = self.scan(&text, key, path);
                self.scratch.number = text;
                if masked {
                    *v = Value::String(std::mem::take(&mut self.scratch.masked));
                }
                Ok(())
            }
            Value::Bool(_) | Value::Null => Ok(()),
        }
    }

    /// An object key: masked (the detectors of the masked spans), or kept, with the field
    /// rule that names it if any. Keys repeat (every record of a result has the same ones),
    /// so what a kept key needs is remembered for the rest of the call.
    fn key(&mut self, key: &str) -> Key<'a> {
        let masker: &'a Masker = self.masker;
        if let Some(rule) = self.keys.get(key) {
            return Key::Plain(rule.map(|i| &masker.fields[i]));
        }
        let mut hits = Vec::new();
        match self
            .masker
            .scan(key, None, self.salt, &mut hits, &mut self.scratch)
        {
            true => Key::Masked(self.scratch.masked.clone(), hits),
            false => {
                let rule = masker
                    .fields
                    .iter()
                    .position(|f| f.matcher.matches(key.as_bytes()));
                self.keys.insert(key, rule);
                Key::Plain(rule.map(|i| &masker.fields[i]))
            }
        }
    }

    /// An object member's value: masked whole under a field rule, else walked.
    fn member(
        &mut self,
        child: &mut Value,
        key: &str,
        rule: Option<&FieldRule>,
        path: Option<&Place<'_>>,
        depth: usize,
    ) -> Result<(), MaskError> {
        let Some(rule) = rule else {
            return self.value(child, Some(key), path, depth + 1);
        };
        let out = match &*child {
            Value::String(s) => self.field_masked(rule, s),
            other => self.field_masked_json(rule, &other.to_string()),
        };
        *child = Value::String(out);
        self.findings.push(Finding {
            detector: rule.finding.clone(),
            pointer: pointer(path),
        });
        Ok(())
    }

    /// A string under a field rule, masked whole.
    fn field_masked(&self, rule: &FieldRule, s: &str) -> String {
        let mut out = String::new();
        self.masker.render(
            &mut out,
            &rule.label,
            rule.style,
            s,
            Normalize::None,
            self.salt,
        );
        out
    }

    /// A structured value (as compact JSON) under a field rule, masked whole. Only the tail
    /// of a string is ever shown; structured values are not.
    fn field_masked_json(&self, rule: &FieldRule, json: &str) -> String {
        let style = match rule.style {
            Style::Partial => Style::Redact,
            s => s,
        };
        let mut out = String::new();
        self.masker.render(
            &mut out,
            &rule.label,
            style,
            json,
            Normalize::None,
            self.salt,
        );
        out
    }

    /// A string: JSON text is masked as JSON, anything else by the detectors. Whether it was
    /// masked; if so, its masked form is in `scratch.masked`.
    fn string(
        &mut self,
        s: &str,
        key: Option<&str>,
        path: Option<&Place<'_>>,
        depth: usize,
    ) -> Result<bool, MaskError> {
        // (`trim_start` is for the rare string that starts with white space: it looks at
        // Unicode white space, so an ASCII byte that is none settles it at once.)
        let json = match s.as_bytes().first() {
            Some(b'{' | b'[') => true,
            Some(&c) if c.is_ascii() && !c.is_ascii_whitespace() && c != 0x0b => false,
            _ => s.trim_start().starts_with(['{', '[']),
        };
        if json {
            // Masked as it is read, without building a `Value` (see `json_text`); text it
            // does not take on is parsed and walked as a `Value` as before.
            match self.json_text(s, key, path, depth) {
                json_text::Outcome::Unchanged => return Ok(false),
                json_text::Outcome::Masked(masked) => {
                    self.scratch.masked = masked;
                    return Ok(true);
                }
                json_text::Outcome::Declined => {}
            }
            match serde_json::from_str::<Value>(s) {
                Ok(mut inner) => {
                    let before = self.findings.len();
                    // The parsed text takes the string's place in the nesting count.
                    self.value(&mut inner, key, path, depth)?;
                    if self.findings.len() == before {
                        return Ok(false);
                    }
                    self.scratch.masked =
                        serde_json::to_string(&inner).expect("a Value always serializes");
                    return Ok(true);
                }
                // serde_json stops at 128 levels; text that deep is refused, not scanned as
                // prose (field rules could not apply to it).
                Err(e) if e.to_string().contains("recursion limit") => {
                    return Err(MaskError::TooDeep(MAX_DEPTH));
                }
                Err(_) => {}
            }
        }
        Ok(self.scan(s, key, path))
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

fn normalized(how: Normalize, value: &str) -> std::borrow::Cow<'_, str> {
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

/// A field rule's glob, compiled for the common shapes (`password`, `*secret*`, `api*`,
/// `*_token`), which are matched without the general glob loop. Matching is ASCII case
/// insensitive throughout, as [`crate::glob::glob_match_bytes`].
enum KeyGlob {
    Exact(Vec<u8>),
    Contains(Vec<u8>),
    Prefix(Vec<u8>),
    Suffix(Vec<u8>),
    Any(Vec<u8>),
}

impl KeyGlob {
    /// `pattern` is ASCII-lowercased.
    fn new(pattern: Vec<u8>) -> Self {
        let plain = |s: &[u8]| !s.iter().any(|&c| c == b'*' || c == b'?');
        let n = pattern.len();
        if plain(&pattern) {
            KeyGlob::Exact(pattern)
        } else if n >= 2
            && pattern[0] == b'*'
            && pattern[n - 1] == b'*'
            && plain(&pattern[1..n - 1])
        {
            KeyGlob::Contains(pattern[1..n - 1].to_vec())
        } else if n >= 1 && pattern[n - 1] == b'*' && plain(&pattern[..n - 1]) {
            KeyGlob::Prefix(pattern[..n - 1].to_vec())
        } else if n >= 1 && pattern[0] == b'*' && plain(&pattern[1..]) {
            KeyGlob::Suffix(pattern[1..].to_vec())
        } else {
            KeyGlob::Any(pattern)
        }
    }

    fn matches(&self, key: &[u8]) -> bool {
        match self {
            KeyGlob::Exact(p) => key.eq_ignore_ascii_case(p),
            KeyGlob::Contains(p) => {
                p.is_empty() || key.windows(p.len()).any(|w| w.eq_ignore_ascii_case(p))
            }
            KeyGlob::Prefix(p) => key
                .get(..p.len())
                .is_some_and(|k| k.eq_ignore_ascii_case(p)),
            KeyGlob::Suffix(p) => {
                key.len() >= p.len() && key[key.len() - p.len()..].eq_ignore_ascii_case(p)
            }
            KeyGlob::Any(p) => glob_match_bytes(p, key, true),
        }
    }
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
