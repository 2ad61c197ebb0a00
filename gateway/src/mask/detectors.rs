//! The built-in detectors: one candidate regex each (all of them compiled into one `RegexSet`
//! that decides, in a single pass, which detectors need a closer look) and a validating check
//! that turns a regex candidate into a confirmed span, or rejects it.
//!
//! Regexes use ASCII word boundaries (`(?-u:\b)`) so the lazy DFA never has to give up on
//! non-ASCII text; where a boundary needs more than `\b` can say (`+`, `/`, `(`), the check
//! looks at the neighbouring characters itself.

use std::net::Ipv6Addr;
use std::ops::Range;
use std::sync::LazyLock;

use regex::Regex;

use super::Detector;

/// What a check may look at besides the candidate: the whole string and, for a string that is
/// the value of an object member, that member's key (context for keyword-gated detectors).
pub(super) struct Ctx<'a> {
    pub text: &'a str,
    pub key: Option<&'a str>,
}

/// Confirms a candidate span, possibly narrowing it, or rejects it.
pub(super) type Check = fn(&Ctx<'_>, Range<usize>) -> Option<Range<usize>>;

pub(super) struct Spec {
    pub pattern: &'static str,
    pub check: Check,
}

pub(super) fn spec(detector: &Detector) -> Option<Spec> {
    let (pattern, check): (&'static str, Check) = match detector {
        Detector::Email => (EMAIL, check_email),
        Detector::CreditCard => (CREDIT_CARD, check_credit_card),
        Detector::Ssn => (SSN, check_ssn),
        Detector::Phone => (PHONE, check_phone),
        Detector::Iban => (IBAN, check_iban),
        Detector::Ip => (IP, check_ip),
        Detector::AwsAccessKey => (AWS_ACCESS_KEY_ID, accept),
        Detector::AwsSecretKey => (AWS_SECRET_KEY, check_aws_secret),
        Detector::Jwt => (JWT, check_jwt),
        Detector::PrivateKey => (PRIVATE_KEY, accept),
        Detector::ApiToken => (API_TOKEN, accept),
        Detector::Custom(_) => return None,
    };
    Some(Spec { pattern, check })
}

const EMAIL: &str = r"[A-Za-z0-9._%+\-]+@(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?-u:\b)";
const CREDIT_CARD: &str = r"(?-u:\b)[0-9](?:[ \-]?[0-9]){12,18}(?-u:\b)";
const SSN: &str = r"(?-u:\b)(?:[0-9]{3}-[0-9]{2}-[0-9]{4}|[0-9]{9})(?-u:\b)";
const PHONE: &str = r"\+[0-9][0-9 ().\-]{6,22}[0-9]|(?:1[ .\-])?(?:\([2-9][0-9]{2}\) ?|[2-9][0-9]{2}[.\-])[2-9][0-9]{2}[.\-][0-9]{4}";
const IBAN: &str = r"(?-u:\b)[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}(?-u:\b)";
const IP: &str = r"(?-u:\b)(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?-u:\b)|(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:[0-9]{1,3}\.){3}[0-9]{1,3}|[0-9A-Fa-f]{1,4})?";
/// An AWS access key id (long-lived `AKIA…`, temporary `ASIA…`): what masking redacts and
/// what the static-key guard refuses.
pub const AWS_ACCESS_KEY_ID: &str = r"(?-u:\b)(?:AKIA|ASIA)[A-Z0-9]{16}(?-u:\b)";
const AWS_SECRET_KEY: &str = r"[A-Za-z0-9/+]{40,}";
const JWT: &str = r"eyJ[A-Za-z0-9_\-]{2,}(?:\.[A-Za-z0-9_\-]*){2,4}";
// Without an END line the key runs to the end of the string: a truncated key is still secret.
const PRIVATE_KEY: &str = r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----(?:[\s\S]*?-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|[\s\S]*)";
const API_TOKEN: &str = concat!(
    r"(?-u:\b)(?:",
    r"gh[pousr]_[A-Za-z0-9]{36,251}",     // GitHub classic tokens
    r"|github_pat_[A-Za-z0-9_]{22,244}",  // GitHub fine-grained tokens
    r"|xox[abpre]-[A-Za-z0-9\-]{10,250}", // Slack
    r"|[sr]k_live_[A-Za-z0-9]{10,247}",   // Stripe secret / restricted keys (not sk_test_)
    r"|glpat-[A-Za-z0-9_\-]{20,}",        // GitLab
    r"|AIza[0-9A-Za-z_\-]{35}",           // Google API keys
    r"|sk-ant-[A-Za-z0-9_\-]{20,}",       // Anthropic
    r"|npm_[A-Za-z0-9]{36}",              // npm
    r")(?-u:\b)",
);

fn accept(_: &Ctx<'_>, span: Range<usize>) -> Option<Range<usize>> {
    Some(span)
}

fn before(ctx: &Ctx<'_>, span: &Range<usize>) -> Option<char> {
    ctx.text[..span.start].chars().next_back()
}

fn after(ctx: &Ctx<'_>, span: &Range<usize>) -> Option<char> {
    ctx.text[span.end..].chars().next()
}

fn after2(ctx: &Ctx<'_>, span: &Range<usize>) -> Option<char> {
    ctx.text[span.end..].chars().nth(1)
}

/// Up to `window` bytes before `start` (on a char boundary).
fn preceding(text: &str, start: usize, window: usize) -> &str {
    let mut from = start.saturating_sub(window);
    while !text.is_char_boundary(from) {
        from += 1;
    }
    &text[from..start]
}

fn check_email(ctx: &Ctx<'_>, span: Range<usize>) -> Option<Range<usize>> {
    let value = &ctx.text[span.clone()];
    let (local, domain) = value.rsplit_once('@')?;
    if local.len() > 64 || domain.len() > 253 {
        return None;
    }
    // Retina asset names (`icon@2x.png`) have the shape of an address.
    let first_label = domain.split('.').next().unwrap_or("");
    if first_label.len() >= 2
        && first_label.ends_with(['x', 'X'])
        && first_label[..first_label.len() - 1]
            .bytes()
            .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    Some(span)
}

// ---- credit cards ------------------------------------------------------------------------

fn check_credit_card(ctx: &Ctx<'_>, span: Range<usize>) -> Option<Range<usize>> {
    // Part of a decimal number (`3.14159…`, `1,234,…`)?
    let number_glue = |c: Option<char>, next: Option<char>| {
        matches!(c, Some('.' | ',')) && next.is_some_and(|n| n.is_ascii_digit())
    };
    let prev2 = ctx.text[..span.start].chars().rev().nth(1);
    if number_glue(before(ctx, &span), prev2) || number_glue(after(ctx, &span), after2(ctx, &span))
    {
        return None;
    }
    // The regex may have taken neighbouring numbers along ("card 4111… 42 units"): try the
    // digit groups it covers, longest run first, and keep the first that is a card.
    let s = &ctx.text[span.clone()];
    let mut groups: Vec<Range<usize>> = Vec::new();
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        if !b.is_ascii_digit() {
            groups.push(start..i);
            start = i + 1;
        }
    }
    groups.push(start..s.len());
    let mut best: Option<Range<usize>> = None;
    for i in 0..groups.len() {
        for j in (i..groups.len()).rev() {
            let r = groups[i].start..groups[j].end;
            if best.as_ref().is_some_and(|b| b.len() >= r.len()) {
                break;
            }
            if is_card(&s[r.clone()]) {
                best = Some(r);
                break;
            }
        }
    }
    best.map(|r| span.start + r.start..span.start + r.end)
}

fn is_card(s: &str) -> bool {
    is_card_bytes(s.as_bytes())
}

/// Digits with one kind of separator (or none), 13 to 19 of them, of a card network, Luhn-valid.
fn is_card_bytes(s: &[u8]) -> bool {
    let mut digits = [0u8; 19];
    let mut len = 0;
    let mut sep = None;
    for &b in s {
        if b.is_ascii_digit() {
            if len == digits.len() {
                return false;
            }
            digits[len] = b - b'0';
            len += 1;
        } else if *sep.get_or_insert(b) != b {
            return false;
        }
    }
    let digits = &digits[..len];
    len >= 13 && brand_fits(digits) && luhn(digits)
}

pub(super) fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let d2 = d * 2;
                if d2 > 9 {
                    d2 - 9
                } else {
                    d2
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Issuer prefix and length of the card networks in use; a Luhn-valid number outside them is
/// much more likely an order or tracking number.
fn brand_fits(d: &[u8]) -> bool {
    let prefix = |n: usize| d[..n].iter().fold(0u32, |acc, &x| acc * 10 + u32::from(x));
    let len = d.len();
    let (p1, p2, p3, p4, p6) = (prefix(1), prefix(2), prefix(3), prefix(4), prefix(6));
    (p1 == 4 && matches!(len, 13 | 16 | 19))                                   // Visa
        || (((51..=55).contains(&p2) || (2221..=2720).contains(&p4)) && len == 16) // Mastercard
        || (matches!(p2, 34 | 37) && len == 15)                                 // Amex
        || ((p4 == 6011 || (644..=649).contains(&p3) || p2 == 65) && len >= 16) // Discover
        || (((300..=305).contains(&p3) || matches!(p2, 36 | 38 | 39)) && len >= 14) // Diners
        || ((3528..=3589).contains(&p4) && len >= 16)                           // JCB
        || (p2 == 62 && len >= 16)                                              // UnionPay
        || ((2200..=2204).contains(&p4) && len >= 16)                           // Mir
        || ((matches!(p4, 5018 | 5020 | 5038 | 5893 | 6304 | 6759 | 6761 | 6762 | 6763)
            || p6 == 676770
            || p6 == 676774)
            && len >= 13) // Maestro
}

// ---- SSN -----------------------------------------------------------------------------------

static SSN_CONTEXT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)\bssn|social[ _\-]?security|\bss#").expect("valid regex"));

fn check_ssn(ctx: &Ctx<'_>, span: Range<usize>) -> Option<Range<usize>> {
    let s = &ctx.text[span.clone()];
    // A piece of a longer dashed identifier (`1-123-45-6789`, `123-45-6789-0`)?
    if before(ctx, &span) == Some('-')
        || (after(ctx, &span) == Some('-')
            && after2(ctx, &span).is_some_and(|c| c.is_ascii_digit()))
    {
        return None;
    }
    let digits: Vec<u32> = s
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| u32::from(b - b'0'))
        .collect();
    let area = digits[0] * 100 + digits[1] * 10 + digits[2];
    let group = digits[3] * 10 + digits[4];
    let serial = digits[5..].iter().fold(0, |acc, &d| acc * 10 + d);
    if area == 0 || area == 666 || area >= 900 || group == 0 || serial == 0 {
        return None;
    }
    // Nine bare digits are an SSN only when the key or the words just before say so.
    if !s.contains('-') {
        let key_says = ctx.key.is_some_and(|k| {
            let k = k.to_ascii_lowercase();
            k.contains("ssn") || k.contains("social")
        });
        if !key_says && !SSN_CONTEXT.is_match(preceding(ctx.text, span.start, 40)) {
            return None;
        }
    }
    Some(span)
}

// ---- phone ---------------------------------------------------------------------------------

fn check_phone(ctx: &Ctx<'_>, span: Range<usize>) -> Option<Range<usize>> {
    if before(ctx, &span)
        .is_some_and(|c| c.is_alphanumeric() || matches!(c, '+' | '-' | '.' | '_' | '/'))
    {
        return None;
    }
    let s = &ctx.text[span.clone()];
    if let Some(rest) = s.strip_prefix('+') {
        // E.164 with optional separators; the regex may have run on into a following number,
        // so drop trailing groups until the digit count fits.
        let mut end = rest.len();
        loop {
            let cand = &rest[..end];
            if plus_form_ok(cand) && !glued(ctx, span.start + 1 + end) {
                return Some(span.start..span.start + 1 + end);
            }
            let cut = cand.rfind([' ', '.', '-', '(', ')'])?;
            end = cand[..cut]
                .trim_end_matches([' ', '.', '-', '(', ')'])
                .len();
            if end == 0 {
                return None;
            }
        }
    }
    // North American forms: `(415) 555-2671`, `415-555-2671`, `415.555.2671`, `1-800-…`.
    if glued(ctx, span.end) {
        return None;
    }
    let body = s
        .strip_prefix("1")
        .map_or(s, |r| r.trim_start_matches([' ', '.', '-']));
    if !body.starts_with('(') {
        // Separators must agree, `415-555.2671` is more likely something else.
        let seps: Vec<char> = body.chars().filter(|c| !c.is_ascii_digit()).collect();
        if seps.windows(2).any(|w| w[0] != w[1]) {
            return None;
        }
    }
    Some(span)
}

/// True when the character at `end` continues the number (`…2671.5`, `…2671-3`, `…2671x`).
fn glued(ctx: &Ctx<'_>, end: usize) -> bool {
    let mut rest = ctx.text[end..].chars();
    match rest.next() {
        Some(c) if c.is_alphanumeric() || c == '_' => true,
        Some('.' | '-' | '/' | ':') => rest.next().is_some_and(|c| c.is_ascii_digit()),
        _ => false,
    }
}

fn plus_form_ok(s: &str) -> bool {
    let digits = s.bytes().filter(u8::is_ascii_digit).count();
    if !(8..=15).contains(&digits) || !s.starts_with(|c: char| ('1'..='9').contains(&c)) {
        return false;
    }
    if !s.ends_with(|c: char| c.is_ascii_digit()) {
        return false;
    }
    let (open, close) = (s.matches('(').count(), s.matches(')').count());
    if open > 1 || open != close || (open == 1 && s.find('(') > s.find(')')) {
        return false;
    }
    // No doubled separators (`1 - 2`, `1..2`), which prose and arithmetic produce.
    !s.as_bytes()
        .windows(2)
        .any(|w| matches!(w[0], b' ' | b'.' | b'-') && matches!(w[1], b' ' | b'.' | b'-'))
}

// ---- IBAN ----------------------------------------------------------------------------------

/// IBAN length by country (SWIFT IBAN registry).
#[rustfmt::skip]
const IBAN_LENGTHS: &[(&str, usize)] = &[
    ("AD", 24), ("AE", 23), ("AL", 28), ("AT", 20), ("AZ", 28), ("BA", 20), ("BE", 16),
    ("BG", 22), ("BH", 22), ("BR", 29), ("BY", 28), ("CH", 21), ("CR", 22), ("CY", 28),
    ("CZ", 24), ("DE", 22), ("DK", 18), ("DO", 28), ("EE", 20), ("EG", 29), ("ES", 24),
    ("FI", 18), ("FO", 18), ("FR", 27), ("GB", 22), ("GE", 22), ("GI", 23), ("GL", 18),
    ("GR", 27), ("GT", 28), ("HR", 21), ("HU", 28), ("IE", 22), ("IL", 23), ("IQ", 23),
    ("IS", 26), ("IT", 27), ("JO", 30), ("KW", 30), ("KZ", 20), ("LB", 28), ("LC", 32),
    ("LI", 21), ("LT", 20), ("LU", 20), ("LV", 21), ("MC", 27), ("MD", 24), ("ME", 22),
    ("MK", 19), ("MR", 27), ("MT", 31), ("MU", 30), ("NL", 18), ("NO", 15), ("PK", 24),
    ("PL", 28), ("PS", 29), ("PT", 25), ("QA", 29), ("RO", 24), ("RS", 22), ("SA", 24),
    ("SC", 31), ("SE", 24), ("SI", 19), ("SK", 24), ("SM", 27), ("ST", 25), ("SV", 28),
    ("TL", 23), ("TN", 24), ("TR", 26), ("UA", 29), ("VA", 22), ("VG", 24), ("XK", 20),
];

fn check_iban(ctx: &Ctx<'_>, span: Range<usize>) -> Option<Range<usize>> {
    let s = &ctx.text[span.clone()];
    let want = IBAN_LENGTHS
        .iter()
        .find(|(cc, _)| s.starts_with(cc))
        .map(|&(_, len)| len)?;
    // The regex may have run on into following words; cut at the country's length, which must
    // fall at the end or at a space.
    let mut count = 0;
    let mut end = None;
    for (i, c) in s.char_indices() {
        if c != ' ' {
            count += 1;
            if count == want {
                end = Some(i + 1);
                break;
            }
        }
    }
    let end = end?;
    if end < s.len() && !s[end..].starts_with(' ') {
        return None;
    }
    let compact: Vec<u8> = s[..end].bytes().filter(|&b| b != b' ').collect();
    iban_mod97(&compact).then_some(span.start..span.start + end)
}

pub(super) fn iban_mod97(compact: &[u8]) -> bool {
    if compact.len() < 5 {
        return false;
    }
    let rotated = compact[4..].iter().chain(&compact[..4]);
    let mut rem: u32 = 0;
    for &b in rotated {
        match b {
            b'0'..=b'9' => rem = (rem * 10 + u32::from(b - b'0')) % 97,
            b'A'..=b'Z' => rem = (rem * 100 + u32::from(b - b'A' + 10)) % 97,
            _ => return false,
        }
    }
    rem == 1
}

// ---- IP ------------------------------------------------------------------------------------

fn check_ip(ctx: &Ctx<'_>, span: Range<usize>) -> Option<Range<usize>> {
    let s = &ctx.text[span.clone()];
    if !has_colon(s.as_bytes()) {
        // IPv4: not a piece of a longer dotted run (OIDs, 4+-part versions). (Bytes, not
        // chars: `.` and digits are ASCII, and no other char's bytes can be taken for them.)
        let b = ctx.text.as_bytes();
        if (span.start > 0 && b[span.start - 1] == b'.')
            || (b.get(span.end) == Some(&b'.')
                && b.get(span.end + 1).is_some_and(u8::is_ascii_digit))
        {
            return None;
        }
        return ipv4_octets_ok(s).then_some(span);
    }
    // IPv6: the regex is loose (it also takes `12:30:45`, `std::`); the parser decides. A
    // neighbouring identifier character means it is part of something else (`f64::from`).
    if before(ctx, &span).is_some_and(|c| c.is_alphanumeric() || matches!(c, '_' | ':' | '.')) {
        return None;
    }
    let mut end = span.end;
    let mut cand = s;
    if cand.ends_with(':') && !cand.ends_with("::") {
        cand = &cand[..cand.len() - 1];
        end -= 1;
    }
    // (After a dropped trailing `:` the colon was punctuation: look past it.)
    if after(ctx, &span).is_some_and(|c| c.is_alphanumeric() || matches!(c, '_' | ':')) {
        return None;
    }
    // Hex-only words around `::` (`dead::beef`) carry no digit; real addresses do.
    if !cand.bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    // Slices (`x[::2]`, `a[1::2]`) parse as addresses too: small decimals around `::` are
    // taken for code, except the loopback `::1`.
    let groups: Vec<&str> = cand.split(':').filter(|g| !g.is_empty()).collect();
    if cand.contains("::")
        && cand != "::1"
        && groups.len() <= 2
        && groups
            .iter()
            .all(|g| g.len() <= 2 && g.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    cand.parse::<Ipv6Addr>().is_ok().then_some(span.start..end)
}

/// What [`std::net::Ipv4Addr`] parsing says of four dot-separated runs of one to three
/// digits (the IPv4 regex's matches): each at most 255, and no leading zero.
pub(super) fn ipv4_octets_ok(s: &str) -> bool {
    let mut parts = 0;
    // The current octet: its value and length.
    let (mut value, mut len) = (0u32, 0usize);
    let mut leading_zero = false;
    for &c in s.as_bytes().iter().chain(std::iter::once(&b'.')) {
        if c == b'.' {
            if len == 0 || len > 3 || value > 255 || (leading_zero && len > 1) {
                return false;
            }
            parts += 1;
            (value, len) = (0, 0);
        } else if c.is_ascii_digit() {
            if len == 0 {
                leading_zero = c == b'0';
            }
            value = value * 10 + u32::from(c - b'0');
            len += 1;
        } else {
            return false;
        }
    }
    parts == 4
}

// ---- AWS secret access key -----------------------------------------------------------------

static AWS_CONTEXT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)aws.{0,24}secret|secret.?access.?key|secretkey|(?-i:\b(?:AKIA|ASIA)[A-Z0-9]{16}\b)",
    )
    .expect("valid regex")
});

fn is_b64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b'/'
}

/// A 40-character `[A-Za-z0-9/+]` token is an AWS secret key when
/// - the member key or the 96 bytes before it name one (`aws_secret_access_key`,
///   `SecretAccessKey`, `aws … secret`) or hold an access key id (`AKIA…:secret` pairs), or
/// - it stands alone and looks like one: upper, lower case and digits (two or more each), at
///   least one `/` or `+`, fewer than three `/`, not starting with `/` (URL paths), not
///   followed by `=` padding and not the last line of a wrapped base64 block.
///
/// Longer runs (base64 blobs) never match. An unpadded base64 encoding of exactly 30 bytes is
/// indistinguishable from a key and is masked; a key without `/` or `+` and without context
/// (about a quarter of them) is not.
fn check_aws_secret(ctx: &Ctx<'_>, span: Range<usize>) -> Option<Range<usize>> {
    if span.len() != 40 || after(ctx, &span) == Some('=') {
        return None;
    }
    // Context, or the look of a key on its own: the cheap test first, the regex last.
    if standalone_aws_secret(ctx, &span)
        || ctx.key.is_some_and(aws_context)
        || aws_context(preceding(ctx.text, span.start, 96))
    {
        return Some(span);
    }
    None
}

/// `AWS_CONTEXT` matches `s`. Each of its branches contains `secret` (ASCII case
/// insensitively; its `c` has no other case form) or `AKIA`/`ASIA`, so text with no `c`, `C`
/// or `I` (most text) is answered without running the regex.
fn aws_context(s: &str) -> bool {
    let b = s.as_bytes();
    let maybe = any_lane(b, |x| {
        zero_lanes((x | 0x2020_2020_2020_2020) ^ 0x6363_6363_6363_6363)
            | zero_lanes(x ^ 0x4949_4949_4949_4949)
    });
    maybe && AWS_CONTEXT.is_match(s)
}

fn standalone_aws_secret(ctx: &Ctx<'_>, span: &Range<usize>) -> bool {
    let s = ctx.text[span.clone()].as_bytes();
    if !s.contains(&b'/') && !s.contains(&b'+') {
        return false;
    }
    // Counted without branches (the compiler vectorizes it).
    let count = |f: fn(u8) -> bool| s.iter().map(|&b| u32::from(f(b))).sum::<u32>();
    let upper = count(|b| b.wrapping_sub(b'A') < 26);
    let lower = count(|b| b.wrapping_sub(b'a') < 26);
    let digits = count(|b| b.wrapping_sub(b'0') < 10);
    let slashes = count(|b| b == b'/');
    let plus = count(|b| b == b'+');
    if upper < 2
        || lower < 2
        || digits < 2
        || slashes + plus == 0
        || slashes >= 3
        || s[0] == b'/'
        || matches!(
            before(ctx, span),
            Some('.' | '/' | ':' | '\\' | '=' | '-' | '_')
        )
    {
        return false;
    }
    // The tail of a PEM/MIME body: the previous line is a long run of base64.
    let head = &ctx.text[..span.start];
    if let Some(head) = head.strip_suffix('\n') {
        let head = head.strip_suffix('\r').unwrap_or(head);
        let prev_line = head.rsplit('\n').next().unwrap_or("");
        if prev_line.len() >= 60 && prev_line.bytes().all(|b| is_b64(b) || b == b'=') {
            return false;
        }
    }
    true
}

// ---- JWT -----------------------------------------------------------------------------------

fn check_jwt(ctx: &Ctx<'_>, span: Range<usize>) -> Option<Range<usize>> {
    if before(ctx, &span).is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return None;
    }
    let s = &ctx.text[span.clone()];
    let parts: Vec<&str> = s.split('.').collect();
    // JWS has three parts, JWE five; a sentence's final dot leaves an empty fourth.
    let take = match parts.len() {
        3 | 5 => parts.len(),
        4 => 3,
        _ => return None,
    };
    let header: serde_json::Value = serde_json::from_slice(&base64url_decode(parts[0])?).ok()?;
    let alg = header.get("alg")?.as_str()?;
    if parts[1].is_empty() || base64url_decode(parts[1]).is_none() {
        return None;
    }
    if take == 3 && parts[2].is_empty() && !alg.eq_ignore_ascii_case("none") {
        return None;
    }
    let len = parts[..take].iter().map(|p| p.len()).sum::<usize>() + take - 1;
    Some(span.start..span.start + len)
}

fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    if s.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for b in s.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

// ---- eight bytes at a time ----------------------------------------------------------------

const LANE_LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
const LANE_HIGH: u64 = 0x8080_8080_8080_8080;

/// The zero bytes of `x`, as the top bit of each. Exact per byte: no carry crosses one.
#[inline(always)]
fn zero_lanes(x: u64) -> u64 {
    !(((x & LANE_LOW7) + LANE_LOW7) | x) & LANE_HIGH
}

/// Eight bytes from `at` (fewer at the end, the rest zero), little-endian. A short tail is
/// read with overlapping loads, not copied.
#[inline(always)]
fn word_at(b: &[u8], at: usize) -> u64 {
    if let Some(eight) = b.get(at..at + 8) {
        return u64::from_le_bytes(eight.try_into().expect("eight bytes"));
    }
    let t = &b[at..];
    let n = t.len();
    let u32_at = |i: usize| u64::from(u32::from_le_bytes(t[i..i + 4].try_into().expect("four")));
    match n {
        0 => 0,
        1..=3 => {
            u64::from(t[0])
                | (u64::from(t[n / 2]) << (8 * (n / 2)))
                | (u64::from(t[n - 1]) << (8 * (n - 1)))
        }
        // The bytes both reads cover are the same, so or-ing them is exact.
        _ => u32_at(0) | (u32_at(n - 4) << (8 * (n - 4))),
    }
}

/// Whether `lanes` (a byte test, see [`zero_lanes`]; it must not fire on zero bytes) fires
/// on any byte of `b`.
#[inline(always)]
fn any_lane(b: &[u8], lanes: impl Fn(u64) -> u64) -> bool {
    (0..b.len()).step_by(8).any(|at| lanes(word_at(b, at)) != 0)
}

/// The first `needle` (not NUL) in `b` at or after `from`.
#[inline(always)]
fn find_byte(b: &[u8], from: usize, needle: u8) -> Option<usize> {
    let pattern = u64::from(needle) * 0x0101_0101_0101_0101;
    let mut at = from;
    while at < b.len() {
        let hit = zero_lanes(word_at(b, at) ^ pattern);
        if hit != 0 {
            let i = at + (hit.trailing_zeros() / 8) as usize;
            return (i < b.len()).then_some(i);
        }
        at += 8;
    }
    None
}

/// Whether `b` holds a `:`.
pub(super) fn has_colon(b: &[u8]) -> bool {
    any_lane(b, |x| zero_lanes(x ^ 0x3a3a_3a3a_3a3a_3a3a))
}

// ---- the single candidate scan -------------------------------------------------------------

/// The bit of a built-in detector in the mask [`gate`] returns (0 for custom detectors).
pub(super) fn bit(detector: &Detector) -> u16 {
    match detector {
        Detector::Email => 1 << 0,
        Detector::CreditCard => 1 << 1,
        Detector::Ssn => 1 << 2,
        Detector::Phone => 1 << 3,
        Detector::Iban => 1 << 4,
        Detector::Ip => 1 << 5,
        Detector::AwsAccessKey => 1 << 6,
        Detector::AwsSecretKey => 1 << 7,
        Detector::Jwt => 1 << 8,
        Detector::PrivateKey => 1 << 9,
        Detector::ApiToken => 1 << 10,
        Detector::Custom(_) => 0,
    }
}

const EMAIL_BIT: u16 = 1 << 0;
const CARD_BIT: u16 = 1 << 1;
const SSN_BIT: u16 = 1 << 2;
const PHONE_BIT: u16 = 1 << 3;
const IBAN_BIT: u16 = 1 << 4;
const IP_BIT: u16 = 1 << 5;
const AWS_ACCESS_BIT: u16 = 1 << 6;
const AWS_SECRET_BIT: u16 = 1 << 7;
const JWT_BIT: u16 = 1 << 8;
const PRIVATE_KEY_BIT: u16 = 1 << 9;
const API_TOKEN_BIT: u16 = 1 << 10;

/// ASCII word byte, as `(?-u:\b)` sees it.
fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

// Byte classes for [`gate`], one bit each in [`CLASS`].
/// `[A-Za-z0-9_]`, a word byte as `(?-u:\b)` sees it.
const C_WORD: u8 = 1 << 0;
/// `[A-Za-z0-9/+]`, the bytes of an AWS secret key.
const C_B64: u8 = 1 << 1;
/// A word starting with it can begin a candidate: capitals, `e` (JWT), `g n r s x` (API
/// token prefixes). (Digits have their own class; IPv6 addresses are found from their
/// first `:`.)
const C_START: u8 = 1 << 2;
/// `@ + ( - :`: a candidate can begin there.
const C_SPECIAL: u8 = 1 << 3;
const C_DIGIT: u8 = 1 << 4;

static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        let mut k = 0;
        if c.is_ascii_alphanumeric() || c == b'_' {
            k |= C_WORD;
        }
        if c.is_ascii_alphanumeric() || c == b'/' || c == b'+' {
            k |= C_B64;
        }
        if c.is_ascii_uppercase() || matches!(c, b'e' | b'g' | b'n' | b'r' | b's' | b'x') {
            k |= C_START;
        }
        if c.is_ascii_digit() {
            k |= C_DIGIT;
        }
        if matches!(c, b'@' | b'+' | b'(' | b'-' | b':') {
            k |= C_SPECIAL;
        }
        t[i] = k;
        i += 1;
    }
    t
};

fn class(c: u8) -> u8 {
    CLASS[usize::from(c)]
}

/// One pass over `text` that finds, for all built-in detectors at once, the places where one
/// of them could confirm a value, and returns the detectors that can (a bit each, see [`bit`]).
///
/// Every condition tested here is implied by "the detector's regex matches there and its
/// check accepts the span" (often it is exactly that, with the check itself called on the
/// span the regex would produce), so a detector whose bit is clear has nothing to confirm in
/// `text`: skipping it changes nothing. Detectors whose bit is set then run their regex and
/// check over the whole string as before, so results are identical, only cheaper: most
/// strings (and the look-alikes: timestamps, ids, hashes, numbers failing Luhn) set no bit.
///
/// The pass goes a word at a time: one table lookup per byte, a closer look only at the
/// first byte of a word that can begin a candidate and at `@ + ( - :`. Runs of exactly 40
/// `[A-Za-z0-9/+]` (AWS secret keys) are looked for in a second, branch-free pass over
/// strings long enough to hold one.
pub(super) fn gate(text: &str, key: Option<&str>) -> u16 {
    let b = text.as_bytes();
    let n = b.len();
    let ctx = Ctx { text, key };
    let mut found = 0u16;
    // Digit chains (card candidates) are looked at once, from their first group.
    let mut chain_end = 0usize;
    let mut i = 0;
    while i < n {
        let k = class(b[i]);
        if k & C_WORD != 0 {
            // A word starts here (the byte before is no word byte): every regex that begins
            // with a word byte begins at such a place, or can only be confirmed there.
            let word = i;
            i += 1;
            // Four bytes a step while the word lasts, then one.
            while let Some(four) = b.get(i..i + 4) {
                if class(four[0]) & class(four[1]) & class(four[2]) & class(four[3]) & C_WORD == 0 {
                    break;
                }
                i += 4;
            }
            while i < n && class(b[i]) & C_WORD != 0 {
                i += 1;
            }
            if k & C_DIGIT != 0 {
                // Every digit detector wants a run of digits of a certain length followed by
                // a certain byte: cards 13+ digits or groups (` `, `-`), SSNs `ddd-` or 9
                // digits, IPv4 `d.`, phone numbers `ddd-`, `ddd.`, `1 `.
                let mut end = word + 1;
                while end < i && b[end].is_ascii_digit() {
                    end += 1;
                }
                let next = b.get(end).copied().unwrap_or(0);
                let len = end - word;
                if len >= 9 || matches!(next, b' ' | b'-' | b'.') {
                    found |= digit_start(&ctx, word, len, next, found, &mut chain_end);
                }
            } else if k & C_START != 0 {
                found |= letter_start(&ctx, word, found);
            }
            continue;
        }
        // (A `-` can only begin PEM armour, `-----BEGIN `.)
        if k & C_SPECIAL != 0 && (b[i] != b'-' || b.get(i + 1) == Some(&b'-')) {
            found |= special_at(&ctx, i, found);
        }
        i += 1;
    }
    if n >= 40 {
        found |= aws_runs(&ctx, found);
    }
    found
}

/// The candidates at `@ + ( - :` (`i`).
fn special_at(ctx: &Ctx<'_>, i: usize, found: u16) -> u16 {
    let b = ctx.text.as_bytes();
    let c = b[i];
    let prev = if i == 0 { 0 } else { b[i - 1] };
    let hit = match c {
        b'@' => {
            matches!(prev, b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'%' | b'+' | b'-')
                && b.get(i + 1).is_some_and(u8::is_ascii_alphanumeric)
                && found & EMAIL_BIT == 0
        }
        b'+' => {
            found & PHONE_BIT == 0
                && phone_prev_ok(prev)
                && matches!(b.get(i + 1), Some(b'1'..=b'9'))
                && b[i + 1..]
                    .iter()
                    .take(8)
                    .take_while(|&&x| matches!(x, b'0'..=b'9' | b' ' | b'(' | b')' | b'.' | b'-'))
                    .count()
                    == 8
        }
        b'(' => found & PHONE_BIT == 0 && phone_prev_ok(prev) && nanp_at(b, i),
        b'-' => found & PRIVATE_KEY_BIT == 0 && b[i..].starts_with(b"-----BEGIN "),
        b':' => {
            // Every IPv6 candidate holds a `:` within its first five bytes, after a run of
            // at most four hex digits that starts a word (or is empty): the one place it can
            // start is where the hex digits before this `:` begin.
            let hex = b[..i]
                .iter()
                .rev()
                .take(5)
                .take_while(|x| x.is_ascii_hexdigit())
                .count();
            let p = i - hex;
            let before = if p == 0 { 0 } else { b[p - 1] };
            found & IP_BIT == 0 && hex <= 4 && ipv6_at(b, p, before)
        }
        _ => false,
    };
    if !hit {
        return 0;
    }
    match c {
        b'@' => EMAIL_BIT,
        b'+' | b'(' => PHONE_BIT,
        b'-' => PRIVATE_KEY_BIT,
        _ => IP_BIT,
    }
}

/// The runs of exactly 40 `[A-Za-z0-9/+]` (the whole regex match of an AWS secret key),
/// checked; found without a branch per byte.
fn aws_runs(ctx: &Ctx<'_>, found: u16) -> u16 {
    if found & AWS_SECRET_BIT != 0 {
        return 0;
    }
    let b = ctx.text.as_bytes();
    // Where the current run started.
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
        let in_run = class(c) & C_B64 != 0;
        if !in_run && i - start == 40 && aws_secret_at(ctx, start) {
            return AWS_SECRET_BIT;
        }
        start = if in_run { start } else { i + 1 };
    }
    if b.len() - start == 40 && aws_secret_at(ctx, start) {
        return AWS_SECRET_BIT;
    }
    0
}

/// The digit detectors at a word start `i` with a run of `len` digits followed by `next`:
/// each looks closer only where its own condition on the run holds.
#[inline(always)]
fn digit_start(
    ctx: &Ctx<'_>,
    i: usize,
    len: usize,
    next: u8,
    found: u16,
    chain_end: &mut usize,
) -> u16 {
    let b = ctx.text.as_bytes();
    let c = b[i];
    let prev = if i == 0 { 0 } else { b[i - 1] };
    // Card chains are looked at from their first group that starts a word (an earlier group
    // glued to a word cannot start a match). A chain of one group needs 13 digits.
    let grouped = matches!(next, b' ' | b'-') && b.get(i + len + 1).is_some_and(u8::is_ascii_digit);
    let card = i >= *chain_end && found & CARD_BIT == 0 && (len >= 13 || grouped);
    let ssn = prev != b'-'
        && found & SSN_BIT == 0
        && ((len == 3 && next == b'-') || (len == 9 && !is_word(next)));
    let ip = found & IP_BIT == 0 && len <= 3 && next == b'.' && prev != b'.';
    let phone = found & PHONE_BIT == 0
        && ((len == 1 && c == b'1' && matches!(next, b' ' | b'.' | b'-'))
            || (len == 3 && c != b'0' && c != b'1' && matches!(next, b'.' | b'-')))
        && phone_prev_ok(prev);
    if card || ssn || ip || phone {
        digit_checks(ctx, i, len, [card, ssn, ip, phone], chain_end)
    } else {
        0
    }
}

/// The closer looks [`digit_start`] asked for (card, SSN, IPv4, phone).
#[inline(never)]
fn digit_checks(
    ctx: &Ctx<'_>,
    i: usize,
    len: usize,
    look: [bool; 4],
    chain_end: &mut usize,
) -> u16 {
    let b = ctx.text.as_bytes();
    let [card, ssn, ip, phone] = look;
    let mut add = 0;
    if card && card_chain(b, i, len, chain_end) {
        add |= CARD_BIT;
    }
    if ssn && ssn_at(ctx, i) {
        add |= SSN_BIT;
    }
    if ip && ipv4_at(ctx, i) {
        add |= IP_BIT;
    }
    if phone && nanp_at(b, i) {
        add |= PHONE_BIT;
    }
    add
}

/// The candidates that begin at a word start `i` with a capital, `e`, `g`, `n`, `r`, `s` or
/// `x`.
#[inline(never)]
fn letter_start(ctx: &Ctx<'_>, i: usize, found: u16) -> u16 {
    let b = ctx.text.as_bytes();
    let c = b[i];
    let prev = if i == 0 { 0 } else { b[i - 1] };
    let mut add = 0;
    if c == b'e'
        && found & JWT_BIT == 0
        && b[i..].starts_with(b"eyJ")
        && !matches!(prev, b'-' | b'.')
    {
        add |= JWT_BIT;
    }
    if c.is_ascii_uppercase() {
        if found & IBAN_BIT == 0 && iban_at(b, i) {
            add |= IBAN_BIT;
        }
        if found & AWS_ACCESS_BIT == 0 && aws_access_at(b, i) {
            add |= AWS_ACCESS_BIT;
        }
    }
    if found & API_TOKEN_BIT == 0 && token_prefix_at(&b[i..]) {
        add |= API_TOKEN_BIT;
    }
    add
}

fn digits_at(b: &[u8], from: usize, len: usize) -> bool {
    b.get(from..from + len)
        .is_some_and(|s| s.iter().all(u8::is_ascii_digit))
}

/// `(?-u:\b)` after a word byte ending at `end`.
fn word_end(b: &[u8], end: usize) -> bool {
    b.get(end).is_none_or(|&x| !is_word(x))
}

/// The run of `[A-Za-z0-9/+]` at `start` is exactly 40 long (the whole regex match): the
/// secret key check on it.
fn aws_secret_at(ctx: &Ctx<'_>, start: usize) -> bool {
    check_aws_secret(ctx, start..start + 40).is_some()
}

/// A digit chain (digit groups joined by single spaces or dashes, as the card regex takes
/// them) starts at `start`: does some run of its groups, as the regex could bound it, make a
/// card number? `first` is the length of its first group. Sets `chain_end` to where the
/// chain stops.
fn card_chain(b: &[u8], start: usize, first: usize, chain_end: &mut usize) -> bool {
    let n = b.len();
    let after_first = start + first;
    if !(after_first + 1 < n
        && matches!(b[after_first], b' ' | b'-')
        && b[after_first + 1].is_ascii_digit())
    {
        // One group (the common case): the run itself, which starts a word.
        *chain_end = after_first;
        return (13..=19).contains(&first)
            && word_end(b, after_first)
            && is_card_bytes(&b[start..after_first]);
    }
    let mut end = start;
    let mut digits = 0;
    loop {
        while end < n && b[end].is_ascii_digit() {
            end += 1;
            digits += 1;
        }
        if end + 1 < n && matches!(b[end], b' ' | b'-') && b[end + 1].is_ascii_digit() {
            end += 1;
        } else {
            break;
        }
    }
    *chain_end = end;
    if digits < 13 {
        return false;
    }
    // A match starts at a group start with a boundary before it and ends at a group end with
    // one after it; the check looks at runs of whole groups of that match.
    let mut group = start;
    while group < end {
        let start_ok = group != start || start == 0 || !is_word(b[start - 1]);
        if start_ok {
            let mut e = group;
            let mut d = 0;
            loop {
                while e < end && b[e].is_ascii_digit() {
                    e += 1;
                    d += 1;
                }
                if d > 19 {
                    break;
                }
                if d >= 13 && (e < end || word_end(b, e)) && is_card_bytes(&b[group..e]) {
                    return true;
                }
                if e >= end {
                    break;
                }
                e += 1;
            }
        }
        while group < end && b[group].is_ascii_digit() {
            group += 1;
        }
        group += 1;
    }
    false
}

/// The SSN regex at `p` (a boundary before it, not after a dash), checked.
fn ssn_at(ctx: &Ctx<'_>, p: usize) -> bool {
    let b = ctx.text.as_bytes();
    let dashed = digits_at(b, p, 3)
        && b.get(p + 3) == Some(&b'-')
        && digits_at(b, p + 4, 2)
        && b.get(p + 6) == Some(&b'-')
        && digits_at(b, p + 7, 4)
        && word_end(b, p + 11);
    let span = if dashed {
        p..p + 11
    } else if digits_at(b, p, 9) && word_end(b, p + 9) {
        p..p + 9
    } else {
        return false;
    };
    check_ssn(ctx, span).is_some()
}

/// The IPv4 branch of the IP regex at `p` (a boundary before it), checked.
fn ipv4_at(ctx: &Ctx<'_>, p: usize) -> bool {
    ipv4_match_at(ctx.text.as_bytes(), p).is_some_and(|end| check_ip(ctx, p..end).is_some())
}

/// The end of the IPv4 branch of the IP regex, `(?-u:\b)(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?-u:\b)`,
/// matched at `p` (a boundary before it). Every run of digits it takes is whole: a shorter
/// one would be followed by a digit, where neither `.` nor the closing boundary can be.
fn ipv4_match_at(b: &[u8], p: usize) -> Option<usize> {
    let mut j = p;
    for part in 0..4 {
        let s = j;
        while j < b.len() && j - s < 4 && b[j].is_ascii_digit() {
            j += 1;
        }
        if j == s || j - s > 3 {
            return None;
        }
        if part < 3 {
            if b.get(j) != Some(&b'.') {
                return None;
            }
            j += 1;
        }
    }
    word_end(b, j).then_some(j)
}

/// What the IP regex finds in `text` (`find_iter`), for a text without `:`: the IPv6
/// branch needs two, so only IPv4 matches, each starting at the first word start (of a
/// digit, at or after where the last match ended) from which [`ipv4_match_at`] matches.
/// Every such start is the run of one to three digits before a `.`, so only the runs before
/// each `.` are looked at.
pub(super) fn ip_matches_without_colon(text: &str, mut each: impl FnMut(Range<usize>)) {
    let b = text.as_bytes();
    debug_assert!(!b.contains(&b':'));
    let mut from = 0;
    while let Some(dot) = find_byte(b, from, b'.') {
        let run = b[from..dot]
            .iter()
            .rev()
            .take(4)
            .take_while(|c| c.is_ascii_digit())
            .count();
        let start = dot - run;
        if (1..=3).contains(&run) && (start == 0 || !is_word(b[start - 1])) {
            if let Some(end) = ipv4_match_at(b, start) {
                each(start..end);
                from = end;
                continue;
            }
        }
        from = dot + 1;
    }
}

/// What a built-in detector's regex finds in `text` (`find_iter`), found without running it,
/// where that is simple: e-mail addresses, card numbers, AWS access key ids, and IP addresses
/// in a text without `:`. `false` (and nothing found) for the others: run the regex.
pub(super) fn regex_matches(bit: u16, text: &str, each: impl FnMut(Range<usize>)) -> bool {
    match bit {
        EMAIL_BIT => email_matches(text, each),
        CARD_BIT => card_matches(text, each),
        AWS_ACCESS_BIT => aws_access_matches(text, each),
        IP_BIT if !has_colon(text.as_bytes()) => ip_matches_without_colon(text, each),
        _ => return false,
    }
    true
}

/// What the e-mail regex finds (see [`EMAIL`]). The local part cannot hold `@`, so a match
/// is the run of local-part bytes just before an `@` (from where the last match ended at
/// the earliest), and a domain after it (see [`email_domain_end`]); an `@` whose domain does
/// not match starts nothing.
fn email_matches(text: &str, mut each: impl FnMut(Range<usize>)) {
    let b = text.as_bytes();
    let local = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-');
    let mut from = 0;
    let mut search = 0;
    while let Some(at) = find_byte(b, search, b'@') {
        let mut start = at;
        while start > from && local(b[start - 1]) {
            start -= 1;
        }
        if start < at {
            if let Some(end) = email_domain_end(b, at + 1) {
                each(start..end);
                from = end;
                search = end;
                continue;
            }
        }
        search = at + 1;
    }
}

/// Where the domain part of the e-mail regex, `(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?
/// \.)+[A-Za-z]{2,24}(?-u:\b)`, ends when it starts at `p`. A label must run to the `.` after
/// it, so the labels are fixed: the whole run of `[A-Za-z0-9-]` before each `.`, if it starts
/// and ends with a letter or digit and is at most 63 long. The regex takes as many labels as
/// there are, and gives them back one at a time until the top-level part fits: a run of 2
/// to 24 letters followed by a boundary (a longer run of letters, or one followed by a digit,
/// has no boundary where the part could end).
fn email_domain_end(b: &[u8], p: usize) -> Option<usize> {
    let label_byte = |c: u8| c.is_ascii_alphanumeric() || c == b'-';
    // Where each label after the first begins (the top-level part is tried there): on the
    // stack, or in a vector past 16 labels.
    let mut near = [0usize; 16];
    let mut far: Vec<usize> = Vec::new();
    let mut count = 0;
    let mut at = p;
    loop {
        let len = b[at.min(b.len())..]
            .iter()
            .take_while(|&&c| label_byte(c))
            .count();
        let ok = (1..=63).contains(&len)
            && b[at].is_ascii_alphanumeric()
            && b[at + len - 1].is_ascii_alphanumeric()
            && b.get(at + len) == Some(&b'.');
        if !ok {
            break;
        }
        at += len + 1;
        match near.get_mut(count) {
            Some(slot) => *slot = at,
            None => far.push(at),
        }
        count += 1;
    }
    let tops = near[..count.min(16)].iter().chain(&far);
    tops.rev().find_map(|&t| {
        let letters = b[t..]
            .iter()
            .take(25)
            .take_while(|c| c.is_ascii_alphabetic())
            .count();
        ((2..=24).contains(&letters) && word_end(b, t + letters)).then_some(t + letters)
    })
}

/// What the card regex, `(?-u:\b)[0-9](?:[ \-]?[0-9]){12,18}(?-u:\b)`, finds. A match starts at a
/// digit with no word byte before it; from there each step takes the next digit, or a space
/// or dash and the digit after it (the only way a step can go, so the steps are fixed); the
/// match takes the most steps, 12 to 18, after which a boundary follows.
fn card_matches(text: &str, mut each: impl FnMut(Range<usize>)) {
    let b = text.as_bytes();
    let n = b.len();
    let mut q = 0;
    while q < n {
        if !(b[q].is_ascii_digit() && (q == 0 || !is_word(b[q - 1]))) {
            q += 1;
            continue;
        }
        // ends[k]: where the match would end after k steps.
        let mut ends = [0usize; 19];
        let mut steps = 0;
        let mut at = q + 1;
        ends[0] = at;
        while steps < 18 {
            if at < n && b[at].is_ascii_digit() {
                at += 1;
            } else if at + 1 < n && matches!(b[at], b' ' | b'-') && b[at + 1].is_ascii_digit() {
                at += 2;
            } else {
                break;
            }
            steps += 1;
            ends[steps] = at;
        }
        match (12..=steps).rev().find(|&k| word_end(b, ends[k])) {
            Some(k) => {
                each(q..ends[k]);
                q = ends[k];
            }
            None => q += 1,
        }
    }
}

/// What the AWS access key id regex, `(?-u:\b)(?:AKIA|ASIA)[A-Z0-9]{16}(?-u:\b)`, finds.
fn aws_access_matches(text: &str, mut each: impl FnMut(Range<usize>)) {
    let b = text.as_bytes();
    let mut q = 0;
    while q + 20 <= b.len() {
        if (q == 0 || !is_word(b[q - 1])) && aws_access_at(b, q) {
            each(q..q + 20);
            q += 20;
        } else {
            q += 1;
        }
    }
}

/// The IPv6 branch of the IP regex can match at `p` (two `[0-9A-Fa-f]{0,4}:` groups) and the
/// byte before does not make the check reject it.
fn ipv6_at(b: &[u8], p: usize, prev: u8) -> bool {
    if p > 0 && (prev.is_ascii_alphanumeric() || matches!(prev, b'_' | b':' | b'.')) {
        return false;
    }
    let mut j = p;
    for _ in 0..2 {
        let s = j;
        while j < b.len() && j - s < 5 && b[j].is_ascii_hexdigit() {
            j += 1;
        }
        if j - s > 4 || b.get(j) != Some(&b':') {
            return false;
        }
        j += 1;
    }
    true
}

/// A phone number may start after `prev` (0: none).
fn phone_prev_ok(prev: u8) -> bool {
    !(prev.is_ascii_alphanumeric() || matches!(prev, b'+' | b'-' | b'.' | b'_' | b'/'))
}

/// The North American branch of the phone regex matches at `p`.
fn nanp_at(b: &[u8], p: usize) -> bool {
    (b[p] == b'1' && matches!(b.get(p + 1), Some(b' ' | b'.' | b'-')) && nanp_body(b, p + 2))
        || nanp_body(b, p)
}

fn nanp_body(b: &[u8], p: usize) -> bool {
    let area = |q: usize| matches!(b.get(q), Some(b'2'..=b'9')) && digits_at(b, q + 1, 2);
    let sep = |q: usize| matches!(b.get(q), Some(b'.' | b'-'));
    let q = if b.get(p) == Some(&b'(') {
        if !(area(p + 1) && b.get(p + 4) == Some(&b')')) {
            return false;
        }
        if b.get(p + 5) == Some(&b' ') {
            p + 6
        } else {
            p + 5
        }
    } else if area(p) && sep(p + 3) {
        p + 4
    } else {
        return false;
    };
    // The optional space after `(…)` is taken greedily but may be given back.
    let rest = |q: usize| area(q) && sep(q + 3) && digits_at(b, q + 4, 4);
    rest(q) || (q == p + 6 && rest(p + 5))
}

/// `[A-Z]{2}[0-9]{2}` of a known country at `p`.
fn iban_at(b: &[u8], p: usize) -> bool {
    b.len() >= p + 15
        && b[p + 1].is_ascii_uppercase()
        && digits_at(b, p + 2, 2)
        && IBAN_LENGTHS
            .iter()
            .any(|(cc, _)| cc.as_bytes() == &b[p..p + 2])
}

/// The AWS access key regex at `p` (a boundary before it).
fn aws_access_at(b: &[u8], p: usize) -> bool {
    (b[p..].starts_with(b"AKIA") || b[p..].starts_with(b"ASIA"))
        && b.get(p + 4..p + 20).is_some_and(|s| {
            s.iter()
                .all(|x| x.is_ascii_uppercase() || x.is_ascii_digit())
        })
        && word_end(b, p + 20)
}

/// One of the API token prefixes at the start of `s`.
fn token_prefix_at(s: &[u8]) -> bool {
    match s.first() {
        Some(b'g') => {
            (s.len() > 3
                && s[1] == b'h'
                && matches!(s[2], b'p' | b'o' | b'u' | b's' | b'r')
                && s[3] == b'_')
                || s.starts_with(b"github_pat_")
                || s.starts_with(b"glpat-")
        }
        Some(b'x') => {
            s.len() > 4
                && s.starts_with(b"xox")
                && matches!(s[3], b'a' | b'b' | b'p' | b'r' | b'e')
                && s[4] == b'-'
        }
        Some(b's') => s.starts_with(b"sk_live_") || s.starts_with(b"sk-ant-"),
        Some(b'r') => s.starts_with(b"rk_live_"),
        Some(b'A') => s.starts_with(b"AIza"),
        Some(b'n') => s.starts_with(b"npm_"),
        _ => false,
    }
}
