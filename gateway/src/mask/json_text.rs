//! JSON text inside a string (`{"type": "text", "text": "{\"rows\": …}"}`), masked as it is
//! read: one pass over the text that validates it, scans every string, key and number where
//! it stands, and copies the text to the output only once something in it is masked, with
//! each masked value replaced in place. No `Value` tree is built and nothing is re-serialized,
//! so text that needs no masking costs one read, and masked text keeps its formatting and
//! member order.
//!
//! The pass takes on only what it can mask exactly as the `Value` walk would: well-formed
//! JSON (as `serde_json` accepts it) with no masked key. Anything else (malformed text, keys
//! that must be renamed, nesting near the limits, numbers `serde_json` would refuse) is
//! declined, and the caller parses the text into a `Value` and walks it as before. Findings
//! of a declined attempt are taken back.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::ops::Range;

use serde_json::Value;

use super::{pointer, FieldRule, Finding, Key, Place, Style, Walk, MAX_DEPTH};

/// `serde_json` refuses text nested this deep (its recursion limit).
const PARSER_DEPTH: usize = 128;

pub(super) enum Outcome {
    /// Well-formed JSON with nothing to mask: the text stays as it is.
    Unchanged,
    /// Well-formed JSON, masked.
    Masked(String),
    /// Not taken on: parse the text and walk it as a `Value`.
    Declined,
}

/// Why the pass stopped early: always "let the `Value` walk do it".
struct Decline;

type Step<T = ()> = Result<T, Decline>;

/// The text being read and the masked copy being written.
struct Reader<'t> {
    text: &'t str,
    b: &'t [u8],
    pos: usize,
    /// The masked text so far, once something was masked; `text[..copied]` is in it.
    out: Option<String>,
    copied: usize,
}

impl<'t> Reader<'t> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    /// JSON whitespace, as `serde_json` skips it.
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn expect(&mut self, c: u8) -> Step {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(Decline)
        }
    }

    fn literal(&mut self, word: &[u8]) -> Step {
        if self.b[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(Decline)
        }
    }

    /// Replaces `span` of the text with the JSON string `value`.
    fn replace(&mut self, span: Range<usize>, value: &str) {
        // Masked values are often longer than the originals: room for that, so the copy of
        // the whole text is not moved again.
        let out = self.out.get_or_insert_with(|| {
            String::with_capacity(self.text.len() + self.text.len() / 8 + 64)
        });
        out.push_str(&self.text[self.copied..span.start]);
        write_json_string(out, value);
        self.copied = span.end;
    }

    /// A string token at `pos` (an opening quote): its span (quotes included) and its
    /// decoded contents.
    fn string(&mut self) -> Step<(Range<usize>, Cow<'t, str>)> {
        let start = self.pos;
        self.expect(b'"')?;
        let body = self.pos;
        // The plain run up to the closing quote or the first escape.
        self.pos = plain_run(self.b, self.pos);
        match self.peek() {
            Some(b'"') => {
                let s = &self.text[body..self.pos];
                self.pos += 1;
                return Ok((start..self.pos, Cow::Borrowed(s)));
            }
            Some(b'\\') => {}
            // Control characters must be escaped in JSON strings.
            _ => return Err(Decline),
        }
        let mut decoded = String::with_capacity(self.pos - body + 16);
        decoded.push_str(&self.text[body..self.pos]);
        loop {
            let run = self.pos;
            self.pos = plain_run(self.b, self.pos);
            decoded.push_str(&self.text[run..self.pos]);
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok((start..self.pos, Cow::Owned(decoded)));
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let c = self.peek().ok_or(Decline)?;
                    self.pos += 1;
                    decoded.push(match c {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            match hi {
                                0xD800..=0xDBFF => {
                                    // A surrogate pair; a lone half is refused by serde_json.
                                    self.literal(b"\\u")?;
                                    let lo = self.hex4()?;
                                    if !(0xDC00..=0xDFFF).contains(&lo) {
                                        return Err(Decline);
                                    }
                                    let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                                    char::from_u32(c).ok_or(Decline)?
                                }
                                0xDC00..=0xDFFF => return Err(Decline),
                                c => char::from_u32(c).ok_or(Decline)?,
                            }
                        }
                        _ => return Err(Decline),
                    });
                }
                _ => return Err(Decline),
            }
        }
    }

    fn hex4(&mut self) -> Step<u32> {
        let digits = self.b.get(self.pos..self.pos + 4).ok_or(Decline)?;
        let mut v = 0;
        for &d in digits {
            v = v * 16 + char::from(d).to_digit(16).ok_or(Decline)?;
        }
        self.pos += 4;
        Ok(v)
    }

    /// A number token at `pos`, by the JSON grammar: its span.
    fn number(&mut self) -> Step<Range<usize>> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(Decline),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.some_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            self.some_digits()?;
        }
        Ok(start..self.pos)
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
    }

    fn some_digits(&mut self) -> Step {
        let start = self.pos;
        self.digits();
        if self.pos == start {
            Err(Decline)
        } else {
            Ok(())
        }
    }

    /// Skips a value (validating it), `nesting` being the number of containers around it.
    fn skip(&mut self, nesting: usize) -> Step {
        match self.peek().ok_or(Decline)? {
            open @ (b'{' | b'[') => {
                if nesting + 1 >= PARSER_DEPTH {
                    return Err(Decline);
                }
                self.pos += 1;
                self.ws();
                let close = if open == b'{' { b'}' } else { b']' };
                if self.peek() == Some(close) {
                    self.pos += 1;
                    return Ok(());
                }
                loop {
                    if open == b'{' {
                        self.string()?;
                        self.ws();
                        self.expect(b':')?;
                        self.ws();
                    }
                    self.skip(nesting + 1)?;
                    self.ws();
                    match self.peek() {
                        Some(b',') => {
                            self.pos += 1;
                            self.ws();
                        }
                        Some(c) if c == close => {
                            self.pos += 1;
                            return Ok(());
                        }
                        _ => return Err(Decline),
                    }
                }
            }
            b'"' => self.string().map(drop),
            b'-' | b'0'..=b'9' => {
                let span = self.number()?;
                number_text(&self.text[span]).map(drop)
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => Err(Decline),
        }
    }
}

/// The first index from `i` of a byte that ends a plain run of string contents: `"`, `\\`
/// or a control character (or the end). Eight bytes at a time with word arithmetic.
pub(super) fn plain_run(b: &[u8], mut i: usize) -> usize {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // The lanes equal to zero, as their top bit (exact per lane: no carry crosses one).
    let zero = |x: u64| !(((x & LOW7) + LOW7) | x) & HIGH;
    while let Some(eight) = b.get(i..i + 8) {
        let x = u64::from_le_bytes(eight.try_into().expect("eight bytes"));
        let quote = zero(x ^ 0x2222_2222_2222_2222);
        let backslash = zero(x ^ 0x5c5c_5c5c_5c5c_5c5c);
        // Lanes below 0x20: none of the top three bits set.
        let control = !(((x & LOW7) + 0x6060_6060_6060_6060) | x) & HIGH;
        let stop = quote | backslash | control;
        if stop != 0 {
            return i + (stop.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&c) = b.get(i) {
        if c == b'"' || c == b'\\' || c < 0x20 {
            break;
        }
        i += 1;
    }
    i
}

/// The decimal text a number token has as a `serde_json::Number` (what the `Value` walk
/// scans): the token itself for plain integers, else what `serde_json` makes of it (`1e3` is
/// `1000.0`). `None` for tokens `serde_json` refuses (out of range).
fn number_text(token: &str) -> Step<Cow<'_, str>> {
    let digits = token.strip_prefix('-').unwrap_or(token);
    let plain = digits.len() <= 18
        && digits.bytes().all(|c| c.is_ascii_digit())
        && (digits.len() == 1 || !digits.starts_with('0'))
        && token != "-0";
    if plain {
        return Ok(Cow::Borrowed(token));
    }
    serde_json::from_str::<serde_json::Number>(token)
        .map(|n| Cow::Owned(n.to_string()))
        .map_err(|_| Decline)
}

/// `value` as a JSON string, escaped as `serde_json` escapes it.
fn write_json_string(out: &mut String, value: &str) {
    let b = value.as_bytes();
    out.push('"');
    let mut at = 0;
    loop {
        let stop = plain_run(b, at);
        out.push_str(&value[at..stop]);
        let Some(&c) = b.get(stop) else {
            break;
        };
        match c {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x08 => out.push_str("\\b"),
            0x0c => out.push_str("\\f"),
            _ => {
                let _ = write!(out, "\\u{c:04x}");
            }
        }
        at = stop + 1;
    }
    out.push('"');
}

impl Walk<'_> {
    /// Masks the JSON text `s` (a string at `path`, the value of member `key`, `depth` deep)
    /// as it is read; see the module documentation.
    pub(super) fn json_text(
        &mut self,
        s: &str,
        key: Option<&str>,
        path: Option<&Place<'_>>,
        depth: usize,
    ) -> Outcome {
        let before = self.findings.len();
        let mut r = Reader {
            text: s,
            b: s.as_bytes(),
            pos: 0,
            out: None,
            copied: 0,
        };
        r.ws();
        let read = self.text_value(&mut r, key, path, depth, 0).and_then(|()| {
            r.ws();
            if r.pos == s.len() {
                Ok(())
            } else {
                Err(Decline)
            }
        });
        match read {
            Ok(()) => match r.out {
                None => Outcome::Unchanged,
                Some(mut out) => {
                    out.push_str(&s[r.copied..]);
                    Outcome::Masked(out)
                }
            },
            Err(Decline) => {
                self.findings.truncate(before);
                Outcome::Declined
            }
        }
    }

    /// A value at `r.pos`: `depth` is its place in the `Value` walk's nesting count,
    /// `nesting` the number of containers around it in this text.
    fn text_value(
        &mut self,
        r: &mut Reader<'_>,
        key: Option<&str>,
        path: Option<&Place<'_>>,
        depth: usize,
        nesting: usize,
    ) -> Step {
        match r.peek().ok_or(Decline)? {
            b'{' => {
                // Too deep for the walk or for serde_json: let the `Value` path say which.
                if depth >= MAX_DEPTH || nesting + 1 >= PARSER_DEPTH {
                    return Err(Decline);
                }
                r.pos += 1;
                r.ws();
                if r.peek() == Some(b'}') {
                    r.pos += 1;
                    return Ok(());
                }
                loop {
                    let (_, name) = r.string()?;
                    r.ws();
                    r.expect(b':')?;
                    r.ws();
                    // A key that needs masking is renamed by the `Value` walk.
                    let rule = match self.key(&name) {
                        Key::Plain(rule) => rule,
                        Key::Masked(..) => return Err(Decline),
                    };
                    let here = Place::key(path, &name);
                    match rule {
                        Some(rule) => self.text_field(r, rule, &here, nesting + 1)?,
                        None => {
                            self.text_value(r, Some(&name), Some(&here), depth + 1, nesting + 1)?
                        }
                    }
                    r.ws();
                    match r.peek() {
                        Some(b',') => {
                            r.pos += 1;
                            r.ws();
                        }
                        Some(b'}') => {
                            r.pos += 1;
                            return Ok(());
                        }
                        _ => return Err(Decline),
                    }
                }
            }
            b'[' => {
                if depth >= MAX_DEPTH || nesting + 1 >= PARSER_DEPTH {
                    return Err(Decline);
                }
                r.pos += 1;
                r.ws();
                if r.peek() == Some(b']') {
                    r.pos += 1;
                    return Ok(());
                }
                let mut index = 0;
                loop {
                    let here = Place::index(path, index);
                    self.text_value(r, None, Some(&here), depth + 1, nesting + 1)?;
                    index += 1;
                    r.ws();
                    match r.peek() {
                        Some(b',') => {
                            r.pos += 1;
                            r.ws();
                        }
                        Some(b']') => {
                            r.pos += 1;
                            return Ok(());
                        }
                        _ => return Err(Decline),
                    }
                }
            }
            b'"' => {
                let (span, value) = r.string()?;
                // Errors (JSON text nested too deep inside) are the `Value` walk's to report.
                if self.string(&value, key, path, depth).map_err(|_| Decline)? {
                    r.replace(span, &self.scratch.masked);
                }
                Ok(())
            }
            b'-' | b'0'..=b'9' => {
                let span = r.number()?;
                let token = &r.text[span.clone()];
                if self.masker.short_integers_are_clean()
                    && token.len() <= 9
                    && token.bytes().skip(1).all(|c| c.is_ascii_digit())
                    && token.bytes().filter(u8::is_ascii_digit).count() <= 8
                {
                    // A plain integer of at most eight digits (the token passed the JSON
                    // number grammar): nothing to find, see `short_integers_are_clean`.
                    return Ok(());
                }
                let text = number_text(token)?;
                if self.scan(&text, key, path) {
                    r.replace(span, &self.scratch.masked);
                }
                Ok(())
            }
            b't' => r.literal(b"true"),
            b'f' => r.literal(b"false"),
            b'n' => r.literal(b"null"),
            _ => Err(Decline),
        }
    }

    /// The value of a member whose key a field rule names: masked whole.
    fn text_field(
        &mut self,
        r: &mut Reader<'_>,
        rule: &FieldRule,
        path: &Place<'_>,
        nesting: usize,
    ) -> Step {
        let start = r.pos;
        let masked = if r.peek() == Some(b'"') {
            let (_, value) = r.string()?;
            self.field_masked(rule, &value)
        } else {
            r.skip(nesting)?;
            // A structured value is shown (hashed) as its compact JSON, keys sorted, as the
            // `Value` walk writes it; the other styles do not look at it.
            let json = if rule.style == Style::Hash {
                let value: Value =
                    serde_json::from_str(&r.text[start..r.pos]).map_err(|_| Decline)?;
                value.to_string()
            } else {
                String::new()
            };
            self.field_masked_json(rule, &json)
        };
        r.replace(start..r.pos, &masked);
        self.findings.push(Finding {
            detector: rule.finding.clone(),
            pointer: pointer(Some(path)),
        });
        Ok(())
    }
}
