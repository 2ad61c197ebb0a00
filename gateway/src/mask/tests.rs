use std::collections::BTreeMap;

use serde_json::json;

use super::*;

const KEY: [u8; 32] = [7; 32];
const SALT: &[u8] = b"session-1";

fn masker_with(f: impl FnOnce(&mut MaskSettings)) -> Masker {
    let mut settings = MaskSettings {
        custom: vec![("employee_id".into(), r"\bEMP-[0-9]{6}\b".into())],
        ..MaskSettings::default()
    };
    f(&mut settings);
    Masker::new(&settings, KEY).unwrap()
}

fn masker() -> Masker {
    masker_with(|_| {})
}

// ---- corpus generation ---------------------------------------------------------------------

/// Deterministic xorshift, so the corpus is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick(&mut self, alphabet: &[u8], n: usize) -> String {
        (0..n)
            .map(|_| alphabet[(self.next() % alphabet.len() as u64) as usize] as char)
            .collect()
    }
}

const UPPER_B32: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Completes `prefix` to a Luhn-valid number of `len` digits, filler from the rng.
fn luhn_number(rng: &mut Rng, prefix: &str, len: usize) -> String {
    let mut s = prefix.to_owned();
    s.push_str(&rng.pick(b"0123456789", len - prefix.len() - 1));
    for check in 0..10u8 {
        let cand = format!("{s}{check}");
        let digits: Vec<u8> = cand.bytes().map(|b| b - b'0').collect();
        if detectors::luhn(&digits) {
            return cand;
        }
    }
    unreachable!()
}

/// An IBAN for `country` and `bban` with correct check digits, in groups of four.
fn iban(country: &str, bban: &str) -> String {
    let probe: Vec<u8> = format!("{country}00{bban}").into_bytes();
    let rotated: Vec<u8> = probe[4..].iter().chain(&probe[..4]).copied().collect();
    let mut rem = 0u32;
    for b in rotated {
        rem = match b {
            b'0'..=b'9' => (rem * 10 + u32::from(b - b'0')) % 97,
            _ => (rem * 100 + u32::from(b - b'A' + 10)) % 97,
        };
    }
    let compact = format!("{country}{:02}{bban}", 98 - rem);
    assert!(detectors::iban_mod97(compact.as_bytes()));
    compact
        .as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(" ")
}

fn b64url(data: &[u8]) -> String {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, &b| acc << 8 | u32::from(b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(alphabet[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

fn jwt(header: &str, payload: &str, sig: &str) -> String {
    format!(
        "{}.{}.{sig}",
        b64url(header.as_bytes()),
        b64url(payload.as_bytes())
    )
}

fn pem(kind: &str, rng: &mut Rng, newline: &str) -> String {
    let body: Vec<String> = (0..4).map(|_| rng.pick(B64, 64)).collect();
    format!(
        "-----BEGIN {kind}-----{newline}{}{newline}{}-----END {kind}-----",
        body.join(newline),
        newline
    )
}

/// Labelled positives: (detector name, text put before the value, the value).
fn positives() -> Vec<(&'static str, String, String)> {
    let mut rng = Rng(0x5eed_cafe_f00d_1234);
    let mut out: Vec<(&'static str, String, String)> = Vec::new();
    let mut add = |d: &'static str, ctx: &str, v: String| out.push((d, ctx.to_owned(), v));

    for v in [
        "alice@example.com",
        "bob.smith+tag@mail.example.co.uk",
        "j_doe-99@sub.domain.io",
        "ALICE.W@EXAMPLE.ORG",
        "first.last@company-name.com",
        "x@y.travel",
        "user%test@host.example.net",
        "support@xn--bcher-kva.example",
        "1234567@numbers.example.com",
        "a.b.c.d@e.f.example.museum",
        "ops-team@corp.internal.dev",
    ] {
        add("email", "", v.into());
    }

    for v in [
        "4111111111111111",
        "4111 1111 1111 1111",
        "5555-5555-5555-4444",
        "378282246310005",
        "3782 822463 10005",
        "6011111111111117",
        "4012888888881881",
        "5105105105105100",
        "30569309025904",
        "3530111333300000",
        "4242 4242 4242 4242",
    ] {
        add("credit_card", "", v.into());
    }
    for (prefix, len) in [
        ("2221", 16),
        ("62", 16),
        ("6759", 16),
        ("2200", 16),
        ("4", 19),
    ] {
        add("credit_card", "", luhn_number(&mut rng, prefix, len));
    }

    for v in [
        "123-45-6789",
        "078-05-1120",
        "219-09-9999",
        "457-55-5462",
        "001-01-0001",
        "665-12-3456",
        "899-99-9999",
        "772-34-5678",
        "536-22-1234",
        "401-10-2030",
    ] {
        add("ssn", "", v.into());
    }
    add("ssn", "SSN: ", "123456789".into());
    add("ssn", "social security number ", "536221234".into());

    for v in [
        "+14155552671",
        "+1 415 555 2671",
        "+1 (415) 555-2671",
        "+44 20 7946 0958",
        "+49 30 901820",
        "+33 1 42 68 53 00",
        "+81-3-1234-5678",
        "+61 2 9374 4000",
        "+91 98765 43210",
        "+353 1 234 5678",
        "(415) 555-2671",
        "415-555-2671",
        "415.555.2671",
        "1-800-555-0199",
    ] {
        add("phone", "", v.into());
    }

    for v in [
        "GB82 WEST 1234 5698 7654 32",
        "DE89 3704 0044 0532 0130 00",
        "DE89370400440532013000",
        "FR14 2004 1010 0505 0001 3M02 606",
        "NL91ABNA0417164300",
        "BE68 5390 0754 7034",
        "CH93 0076 2011 6238 5295 7",
        "IT60X0542811101000000123456",
        "NO9386011117947",
    ] {
        add("iban", "", v.into());
    }
    add("iban", "", iban("ES", "21000418450200051332"));
    add("iban", "", iban("PL", "109010140000071219812874"));
    add("iban", "", iban("SE", "50000000058398257466"));

    for v in [
        "192.168.1.10",
        "10.0.0.1",
        "8.8.8.8",
        "172.16.254.3",
        "203.0.113.42",
        "2001:db8::1",
        "fe80::1ff:fe23:4567:890a",
        "::1",
        "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
        "::ffff:192.0.2.128",
        "2606:4700:4700::1111",
    ] {
        add("ip", "", v.into());
    }

    add("aws_access_key", "", "AKIAIOSFODNN7EXAMPLE".into());
    for i in 0..10 {
        let prefix = if i % 2 == 0 { "AKIA" } else { "ASIA" };
        add(
            "aws_access_key",
            "",
            format!("{prefix}{}", rng.pick(UPPER_B32, 16)),
        );
    }

    add(
        "aws_secret_key",
        "aws_secret_access_key = ",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
    );
    for ctx in [
        "AWS_SECRET_ACCESS_KEY=",
        "SecretAccessKey: ",
        "aws secret: ",
        "the AWS key pair secret is ",
        "secret_access_key ",
    ] {
        // Context-gated: no `/` or `+` needed.
        add("aws_secret_key", ctx, rng.pick(ALNUM, 40));
    }
    while out.iter().filter(|p| p.0 == "aws_secret_key").count() < 12 {
        // Standalone: must look like a key on its own.
        let v = rng.pick(B64, 40);
        let n = |f: fn(&u8) -> bool| v.bytes().filter(f).count();
        let slashes = n(|&b| b == b'/');
        if n(u8::is_ascii_uppercase) >= 2
            && n(u8::is_ascii_lowercase) >= 2
            && n(u8::is_ascii_digit) >= 2
            && slashes + n(|&b| b == b'+') > 0
            && slashes < 3
            && !v.starts_with('/')
        {
            out.push(("aws_secret_key", String::new(), v));
        }
    }
    let mut add = |d: &'static str, ctx: &str, v: String| out.push((d, ctx.to_owned(), v));

    let sig = |rng: &mut Rng, n| {
        rng.pick(
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
            n,
        )
    };
    for (header, payload) in [
        (
            r#"{"alg":"HS256","typ":"JWT"}"#,
            r#"{"sub":"1234567890","name":"John Doe","iat":1516239022}"#,
        ),
        (
            r#"{"alg":"RS256","kid":"abc123"}"#,
            r#"{"iss":"https://auth.example.com","exp":1700000000}"#,
        ),
        (
            r#"{"typ":"JWT","alg":"ES256"}"#,
            r#"{"scope":"read write","aud":"api"}"#,
        ),
        (r#"{"alg":"PS512"}"#, r#"{"a":1}"#),
        (r#"{"alg":"EdDSA","crv":"Ed25519"}"#, r#"{"sub":"svc"}"#),
        (r#"{"alg":"HS384","typ":"at+jwt"}"#, r#"{"client_id":"x"}"#),
        (r#"{"alg":"RS512","x5t":"q"}"#, r#"{"roles":["admin"]}"#),
        (r#"{"alg":"ES384"}"#, r#"{"nonce":"n-0S6_WzA2Mj"}"#),
        (r#"{"alg":"HS512","cty":"JWT"}"#, r#"{"jti":"id-42"}"#),
    ] {
        let s = sig(&mut rng, 43);
        add("jwt", "", jwt(header, payload, &s));
    }
    add("jwt", "", jwt(r#"{"alg":"none"}"#, r#"{"sub":"anon"}"#, ""));
    add(
        "jwt",
        "Authorization: Bearer ",
        jwt(r#"{"alg":"HS256"}"#, r#"{"u":2}"#, "sig_-abc"),
    );

    for (kind, nl) in [
        ("PRIVATE KEY", "\n"),
        ("RSA PRIVATE KEY", "\n"),
        ("EC PRIVATE KEY", "\n"),
        ("OPENSSH PRIVATE KEY", "\n"),
        ("ENCRYPTED PRIVATE KEY", "\n"),
        ("DSA PRIVATE KEY", "\n"),
        ("PGP PRIVATE KEY BLOCK", "\n"),
        ("PRIVATE KEY", "\r\n"),
        ("RSA PRIVATE KEY", "\r\n"),
        ("OPENSSH PRIVATE KEY", "\r\n"),
    ] {
        let v = pem(kind, &mut rng, nl);
        out.push(("private_key", String::new(), v));
    }
    let mut add = |d: &'static str, ctx: &str, v: String| out.push((d, ctx.to_owned(), v));

    add("api_token", "", format!("ghp_{}", rng.pick(ALNUM, 36)));
    add("api_token", "", format!("gho_{}", rng.pick(ALNUM, 36)));
    add("api_token", "", format!("ghs_{}", rng.pick(ALNUM, 36)));
    add(
        "api_token",
        "",
        format!(
            "github_pat_11{}_{}",
            rng.pick(ALNUM, 20),
            rng.pick(ALNUM, 59)
        ),
    );
    add(
        "api_token",
        "",
        "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx".into(),
    );
    add(
        "api_token",
        "",
        format!("xoxp-{}", rng.pick(b"0123456789", 40)),
    );
    add("api_token", "", "xoxa-2-1234567890-abcdefABCDEF".into());
    add("api_token", "", format!("xoxr-{}", rng.pick(ALNUM, 24)));
    add("api_token", "", "sk_live_4eC39HqLyjWDarjtT1zdp7dc".into());
    add("api_token", "", format!("rk_live_{}", rng.pick(ALNUM, 24)));
    add("api_token", "", format!("glpat-{}", rng.pick(ALNUM, 20)));
    add("api_token", "", format!("AIza{}", rng.pick(ALNUM, 35)));
    add(
        "api_token",
        "",
        format!("sk-ant-api03-{}", rng.pick(ALNUM, 40)),
    );
    add("api_token", "", format!("npm_{}", rng.pick(ALNUM, 36)));

    for i in 0..10 {
        add(
            "employee_id",
            "",
            format!("EMP-{:06}", 104_729 * (i + 1) % 1_000_000),
        );
    }
    out
}

/// Look-alikes that must not be masked.
fn negatives() -> Vec<String> {
    let mut rng = Rng(0x0dd_ba11);
    let mut cert_tail = rng.pick(B64, 38);
    cert_tail.insert_str(10, "/A");
    let mut v: Vec<String> = [
        // UUIDs, timestamps, dates
        "123e4567-e89b-12d3-a456-426614174000",
        "550e8400-e29b-41d4-a716-446655440000",
        "f47ac10b-58cc-4372-a567-0e02b2c3d479",
        "2024-05-06T10:00:00Z",
        "2024-05-06T10:00:00+02:00",
        "2023-12-31 23:59:59.999",
        "1700000000000",
        "epoch 1700000000",
        "2024-01-15",
        "15/01/2024",
        "01.02.2024",
        "Jan 15, 2024",
        "12:30:45",
        // order / ticket numbers, card-like numbers failing Luhn or without a network
        "ORD-2024-000123",
        "Order #12345678",
        "INV-0042-7781",
        "4111111111111112",
        "4111 1111 1111 1112",
        "1234567812345678",
        "1234567812345670",
        "5555 5555 5555 5555",
        "tracking 9400111899223344556677",
        "Total: $1,234,567.89",
        "x = 3.14159265358979323846",
        // base64 blobs, hashes, SHAs
        "U29tZSByYW5kb20gYmFzZTY0IGJsb2IgdGhhdCBpcyBsb25nZXIgdGhhbiBmb3J0eSBjaGFyYWN0ZXJz",
        "dGVzdA==",
        "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
        "e83c5163316f89bfbde7d9ab23ca2e25604af290",
        "a94a8fe5ccb19ba61c4c0873d391e987982fbbd3",
        "commit e83c516",
        "sha512-z4PhNX7vuL3xVChQ1m2AB9Yg5AULVxXcg/SpIdNs6c5H0NE8XYXysP+DGNKHfuwvY7kxvUdBeoGlODJ6+SfaPg==",
        "abcdefghij0123456789abcdefghij0123456789",
        "GET /api/v1/Users/42/Profile/Settings9x/Items",
        // versions
        "1.2.3",
        "v1.2.3.4",
        "Windows 10.0.19045.3803",
        "2.14.0-rc.1",
        "node@18.17.1",
        "pkg@1.2.3",
        "OID 1.3.6.1.4.1.311.21.8",
        // phone-like
        "123-456-7890",
        "555-123-4567",
        "555-1234",
        "+0 123 456 789",
        "1+2345678",
        "ext. 4155",
        "order 4155552671",
        "ISBN 0-306-40615-2",
        "978-0-306-40615-7",
        "UTC+0530",
        "score 3 - 2 + 1 - 4 + 5 - 6 + 7",
        // SSN-like
        "000-12-3456",
        "666-12-3456",
        "900-12-3456",
        "999-99-9999",
        "123-00-4567",
        "123-45-0000",
        "order 123456789",
        "1-123-45-6789",
        // IBAN-like
        "DE89 3704 0044 0532 0130 01",
        "GB00WEST12345698765432",
        "XX12 3456 7890 1234 5678",
        "DE89370400440532013000123",
        "ABCD1234EFGH5678",
        // IP-like
        "999.1.1.1",
        "256.0.0.1",
        "1.2.3.4.5",
        "01.02.03.04",
        "std::io::Error",
        "a::b",
        "dead::beef",
        "00:1a:2b:3c:4d:5e",
        "f64::from(3)",
        "pairs = zip(attrs[0::2], attrs[1::2]) and args[::2]",
        "u8::MAX",
        "10:30",
        // token-like
        "sk_test_4eC39HqLyjWDarjtT1zdp7dc",
        "pk_live_51H8xYzABCDEF12345678",
        "ghp_short",
        "xoxz-1234567890-abc",
        "github_pat_",
        "AKIA1234",
        "akiaiosfodnn7example",
        "AKIAIOSFODNN7EXAMPLEXYZ",
        "eyJhbGciOiJIUzI1NiJ9",
        "a.b.c",
        "file.name.ext",
        // e-mail-like
        "user@localhost",
        "foo@bar",
        "icon@2x.png",
        "@mention",
        "name(at)example(dot)com",
        // PEM that is not a private key
        "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----",
        // prose
        "The quick brown fox jumps over the lazy dog.",
        "port 8080 on host db-1",
        "temperature 23.5°C, humidity 40%",
        "EMP-12345",
        "",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // Headers decoding to JSON without `alg`, or to no JSON at all.
    v.push(jwt(r#"{"sub":"123"}"#, r#"{"a":1}"#, "sig"));
    v.push(format!(
        "eyJ{}.{}.{}",
        rng.pick(ALNUM, 20),
        rng.pick(ALNUM, 20),
        rng.pick(ALNUM, 20)
    ));
    // A certificate whose last body line is 40 base64 characters with `/`.
    v.push(format!(
        "-----BEGIN CERTIFICATE-----\n{}\n{}\n{cert_tail}\n-----END CERTIFICATE-----",
        rng.pick(B64, 64),
        rng.pick(B64, 64)
    ));
    v
}

const TEMPLATES: [&str; 5] = [
    "Please contact {} for details.",
    "Found: {} (see ticket)",
    "{}",
    "the value \"{}\" was logged",
    "Row 3: {}; status ok",
];

#[derive(Default)]
struct Score {
    positives: usize,
    detected: usize,
    false_positives: usize,
}

#[test]
fn corpus_recall_and_false_positives() {
    let m = masker();
    let mut table: BTreeMap<String, Score> = BTreeMap::new();
    let mut problems: Vec<String> = Vec::new();
    let names: Vec<String> = m.detectors.iter().map(|d| d.name.to_string()).collect();
    for n in &names {
        table.insert(n.clone(), Score::default());
    }

    let count_fp =
        |table: &mut BTreeMap<String, Score>, findings: &[Finding], expected: Option<&str>| {
            for f in findings {
                if Some(f.detector.as_ref()) != expected {
                    table
                        .get_mut(f.detector.as_ref())
                        .expect("known detector")
                        .false_positives += 1;
                }
            }
        };

    for (i, (detector, ctx, value)) in positives().into_iter().enumerate() {
        let template = TEMPLATES[i % TEMPLATES.len()];
        let prose = template.replace("{}", &format!("{ctx}{value}"));
        let expected = template.replace(
            "{}",
            &format!("{ctx}[REDACTED:{}]", detector.to_ascii_uppercase()),
        );
        let score = table.get_mut(detector).expect("known detector");
        score.positives += 3;

        // 1. plain text
        let (out, findings) = m.mask_text(&prose, SALT).unwrap();
        if out == expected && findings.iter().any(|f| f.detector == detector) {
            table.get_mut(detector).unwrap().detected += 1;
        } else {
            problems.push(format!(
                "{detector} text: {prose:?} -> {out:?} {findings:?}"
            ));
        }
        count_fp(&mut table, &findings, Some(detector));

        // 2. inside a JSON result
        let mut doc = json!({"rows": [{"note": prose, "n": 1}]});
        let findings = m.mask_value(&mut doc, SALT).unwrap();
        let want = vec![Finding {
            detector: detector.into(),
            pointer: "/rows/0/note".into(),
        }];
        if doc["rows"][0]["note"] == expected.as_str() && findings == want {
            table.get_mut(detector).unwrap().detected += 1;
        } else {
            problems.push(format!("{detector} json: {prose:?} -> {doc} {findings:?}"));
        }
        count_fp(&mut table, &findings, Some(detector));

        // 3. JSON carried as MCP text content
        let inner = serde_json::to_string(&json!({"note": prose})).unwrap();
        let mut doc = json!({"content": [{"type": "text", "text": inner}]});
        let findings = m.mask_value(&mut doc, SALT).unwrap();
        let text = doc["content"][0]["text"].as_str().unwrap();
        let reparsed: Value = serde_json::from_str(text).unwrap();
        let want = vec![Finding {
            detector: detector.into(),
            pointer: "/content/0/text/note".into(),
        }];
        if reparsed["note"] == expected.as_str() && findings == want {
            table.get_mut(detector).unwrap().detected += 1;
        } else {
            problems.push(format!(
                "{detector} json-in-text: {prose:?} -> {doc} {findings:?}"
            ));
        }
        count_fp(&mut table, &findings, Some(detector));
    }

    let mut negatives_total = 0;
    for (i, neg) in negatives().into_iter().enumerate() {
        let template = TEMPLATES[i % TEMPLATES.len()];
        for text in [neg.clone(), template.replace("{}", &neg)] {
            negatives_total += 1;
            let (out, findings) = m.mask_text(&text, SALT).unwrap();
            if !findings.is_empty() {
                problems.push(format!("negative: {text:?} -> {out:?} {findings:?}"));
            }
            count_fp(&mut table, &findings, None);
            let mut doc = json!({"content": [{"type": "text", "text": text}], "structuredContent": {"v": text}});
            let before = doc.clone();
            let findings = m.mask_value(&mut doc, SALT).unwrap();
            count_fp(&mut table, &findings, None);
            assert_eq!(findings.is_empty(), doc == before);
        }
    }

    println!("\nmasking corpus: {negatives_total} negative texts (each also as JSON)");
    println!(
        "{:<16} {:>9} {:>9} {:>7} {:>6}",
        "detector", "positives", "detected", "recall", "FP"
    );
    for (name, s) in &table {
        println!(
            "{:<16} {:>9} {:>9} {:>7.3} {:>6}",
            name,
            s.positives,
            s.detected,
            s.detected as f64 / s.positives.max(1) as f64,
            s.false_positives
        );
    }
    for p in &problems {
        println!("PROBLEM {p}");
    }
    for (name, s) in &table {
        assert!(
            s.positives >= 30,
            "{name}: at least 10 positives, 3 embeddings each"
        );
        assert_eq!(s.detected, s.positives, "{name}: recall must be 1.0");
        assert_eq!(s.false_positives, 0, "{name}: no false positives");
    }
    assert!(problems.is_empty());
}

#[test]
fn original_values_never_appear_in_any_style() {
    for style in [Style::Redact, Style::Partial, Style::Hash] {
        let m = masker_with(|s| s.style = style);
        for (detector, ctx, value) in positives() {
            // Context-gated detectors need their context in every place.
            let alone = format!("{ctx}{value}");
            let mut doc = json!({
                "content": [{"type": "text", "text": format!("before {ctx}{value} after")}],
                "structuredContent": {"item": {"note": format!("{ctx}{value}")}, "list": [alone]},
            });
            let findings = m.mask_value(&mut doc, SALT).unwrap();
            let out = doc.to_string();
            assert!(
                !out.contains(&value),
                "{style:?} {detector}: {value:?} leaked in {out}"
            );
            // Also as it would appear JSON-escaped (PEM newlines).
            let escaped = serde_json::to_string(&value).unwrap();
            assert!(
                !out.contains(escaped.trim_matches('"')),
                "{style:?} {detector}: leaked"
            );
            assert!(findings.len() >= 2, "{style:?} {detector}: {findings:?}");
        }
    }
}

#[test]
fn styles_render_as_documented() {
    let card = "4111 1111 1111 1111";
    let text = format!("card {card}, mail alice@example.com, ip ::1");

    let (out, _) = masker().mask_text(&text, SALT).unwrap();
    assert_eq!(
        out,
        "card [REDACTED:CREDIT_CARD], mail [REDACTED:EMAIL], ip [REDACTED:IP]"
    );

    let partial = masker_with(|s| s.style = Style::Partial);
    let (out, _) = partial.mask_text(&text, SALT).unwrap();
    // Short values (under eight characters) show nothing.
    assert_eq!(
        out,
        "card [REDACTED:CREDIT_CARD:…1111], mail [REDACTED:EMAIL:….com], ip [REDACTED:IP]"
    );

    let hash = masker_with(|s| s.style = Style::Hash);
    let (out, _) = hash.mask_text(&text, SALT).unwrap();
    let re = regex::Regex::new(
        r"^card \[CREDIT_CARD:[0-9a-f]{12}\], mail \[EMAIL:[0-9a-f]{12}\], ip \[IP:[0-9a-f]{12}\]$",
    )
    .unwrap();
    assert!(re.is_match(&out), "{out}");

    // Per-name overrides beat the default style.
    let mixed = masker_with(|s| {
        s.styles = vec![
            ("email".into(), Style::Hash),
            ("credit_card".into(), Style::Partial),
        ]
    });
    let (out, _) = mixed.mask_text(&text, SALT).unwrap();
    assert!(
        out.starts_with("card [REDACTED:CREDIT_CARD:…1111], mail [EMAIL:"),
        "{out}"
    );
    assert!(out.ends_with("ip [REDACTED:IP]"), "{out}");
}

#[test]
fn hash_pseudonyms_are_stable_per_salt_and_key() {
    let m = masker_with(|s| s.style = Style::Hash);
    let pseudo = |m: &Masker, text: &str, salt: &[u8]| m.mask_text(text, salt).unwrap().0;
    let a = pseudo(&m, "alice@example.com", b"s1");
    assert_eq!(a, pseudo(&m, "alice@example.com", b"s1"));
    // Normalised before hashing: case of an address, separators of a number.
    assert_eq!(a, pseudo(&m, "Alice@Example.COM", b"s1"));
    assert_eq!(
        pseudo(&m, "4111 1111 1111 1111", b"s1"),
        pseudo(&m, "4111-1111-1111-1111", b"s1")
    );
    assert_ne!(a, pseudo(&m, "bob@example.com", b"s1"));
    assert_ne!(a, pseudo(&m, "alice@example.com", b"s2"));
    let other_key = Masker::new(
        &MaskSettings {
            style: Style::Hash,
            ..MaskSettings::default()
        },
        [9; 32],
    )
    .unwrap();
    assert_ne!(a, pseudo(&other_key, "alice@example.com", b"s1"));
    // Join-ability: the same value in two places of one result gets one pseudonym.
    let mut doc = json!({"a": "to alice@example.com", "b": ["alice@example.com"]});
    m.mask_value(&mut doc, b"s1").unwrap();
    assert_eq!(doc["b"][0], a.as_str());
    assert_eq!(doc["a"], format!("to {a}").as_str());
}

#[test]
fn tool_result_envelope_stays_intact() {
    let m = masker();
    let mut result = json!({
        "content": [
            {"type": "text", "text": "Customer alice@example.com paid with 4111111111111111."},
            {"type": "resource", "resource": {"uri": "file:///notes.txt", "mimeType": "text/plain",
                                              "text": "call +44 20 7946 0958"}},
            {"type": "image", "data": "iVBORw0KGgo=", "mimeType": "image/png"}
        ],
        "structuredContent": {
            "customer": {"name": "Alice", "email": "alice@example.com", "card": 4111111111111111u64,
                         "Password": {"hash": "x", "salt": [1, 2]}},
            "count": 2,
            "ok": true,
            "note": null
        },
        "isError": false
    });
    let findings = m.mask_value(&mut result, SALT).unwrap();
    assert_eq!(
        result,
        json!({
            "content": [
                {"type": "text", "text": "Customer [REDACTED:EMAIL] paid with [REDACTED:CREDIT_CARD]."},
                {"type": "resource", "resource": {"uri": "file:///notes.txt", "mimeType": "text/plain",
                                                  "text": "call [REDACTED:PHONE]"}},
                {"type": "image", "data": "iVBORw0KGgo=", "mimeType": "image/png"}
            ],
            "structuredContent": {
                "customer": {"name": "Alice", "email": "[REDACTED:EMAIL]", "card": "[REDACTED:CREDIT_CARD]",
                             "Password": "[REDACTED:PASSWORD]"},
                "count": 2,
                "ok": true,
                "note": null
            },
            "isError": false
        })
    );
    let mut got: Vec<(String, String)> = findings
        .into_iter()
        .map(|f| (f.detector.into_owned(), f.pointer))
        .collect();
    got.sort();
    let want: Vec<(String, String)> = [
        ("credit_card", "/content/0/text"),
        ("credit_card", "/structuredContent/customer/card"),
        ("email", "/content/0/text"),
        ("email", "/structuredContent/customer/email"),
        ("field:password", "/structuredContent/customer/Password"),
        ("phone", "/content/1/resource/text"),
    ]
    .iter()
    .map(|(d, p)| (d.to_string(), p.to_string()))
    .collect();
    assert_eq!(got, want);
}

#[test]
fn field_rules_mask_whole_values_case_insensitively() {
    let m = masker_with(|s| s.fields.push("api?key".into()));
    let mut doc = json!({
        "user": {"PASSWORD": "hunter2", "client_Secret": {"nested": ["a", {"deep": 1}]},
                 "SSN": 123456789, "api-Key": "k", "api_key": "k2", "apikey": "not matched",
                 "secretariat": false, "passwords": "not matched either"}
    });
    let findings = m.mask_value(&mut doc, SALT).unwrap();
    assert_eq!(
        doc,
        json!({"user": {"PASSWORD": "[REDACTED:PASSWORD]", "client_Secret": "[REDACTED:SECRET]",
                        "SSN": "[REDACTED:SSN]", "api-Key": "[REDACTED:APIKEY]", "api_key": "[REDACTED:APIKEY]",
                        "apikey": "not matched", "secretariat": "[REDACTED:SECRET]",
                        "passwords": "not matched either"}})
    );
    let mut names: Vec<&str> = findings.iter().map(|f| f.detector.as_ref()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "field:*secret*",
            "field:*secret*",
            "field:api?key",
            "field:api?key",
            "field:password",
            "field:ssn"
        ]
    );
    // Hash style on a field: stable pseudonym of the value, also for structured values.
    let h = masker_with(|s| s.styles = vec![("field:password".into(), Style::Hash)]);
    let mut a = json!({"password": {"x": 1}});
    let mut b = json!([{"Password": {"x": 1}}]);
    h.mask_value(&mut a, SALT).unwrap();
    h.mask_value(&mut b, SALT).unwrap();
    assert_eq!(a["password"], b[0]["Password"]);
    assert!(a["password"].as_str().unwrap().starts_with("[PASSWORD:"));
}

#[test]
fn json_in_text_is_masked_as_json() {
    let m = masker();
    let inner =
        r#"{"users": [{"email": "bob@example.com", "password": "pw", "id": 7}], "total": 1}"#;
    let mut doc = json!({"content": [{"type": "text", "text": inner}]});
    let findings = m.mask_value(&mut doc, SALT).unwrap();
    let text = doc["content"][0]["text"].as_str().unwrap();
    let parsed: Value = serde_json::from_str(text).expect("still valid JSON");
    assert_eq!(
        parsed,
        json!({"users": [{"email": "[REDACTED:EMAIL]", "password": "[REDACTED:PASSWORD]", "id": 7}], "total": 1})
    );
    let pointers: Vec<&str> = findings.iter().map(|f| f.pointer.as_str()).collect();
    assert_eq!(
        pointers,
        [
            "/content/0/text/users/0/email",
            "/content/0/text/users/0/password"
        ]
    );

    // Nothing to mask: the string is left byte-identical (formatting included).
    let clean = "  [ 1,  2, {\"a\" : \"b\"} ]";
    let mut doc = json!({"text": clean});
    assert!(m.mask_value(&mut doc, SALT).unwrap().is_empty());
    assert_eq!(doc["text"], clean);

    // Text that only looks like JSON is masked as text.
    let (out, _) = m.mask_text("{not json: alice@example.com", SALT).unwrap();
    assert_eq!(out, "{not json: [REDACTED:EMAIL]");
    // mask_text parses JSON text too.
    let (out, f) = m.mask_text(r#"{"password":"x"}"#, SALT).unwrap();
    assert_eq!(out, r#"{"password":"[REDACTED:PASSWORD]"}"#);
    assert_eq!(f[0].pointer, "/password");
}

#[test]
fn keys_are_masked_and_pointers_escaped() {
    let m = masker();
    let mut doc = json!({
        "by_user": {"alice@example.com": 3, "bob@example.com": 4, "[REDACTED:EMAIL]": 0},
        "a/b~c": "10.0.0.1"
    });
    let findings = m.mask_value(&mut doc, SALT).unwrap();
    let out = doc.to_string();
    assert!(!out.contains("alice") && !out.contains("bob"), "{out}");
    assert_eq!(
        doc["by_user"].as_object().unwrap().len(),
        3,
        "no member lost"
    );
    assert_eq!(doc["a/b~c"], "[REDACTED:IP]");
    let pointers: Vec<&str> = findings.iter().map(|f| f.pointer.as_str()).collect();
    assert!(pointers.contains(&"/a~1b~0c"), "{pointers:?}");
    for p in &pointers {
        assert!(!p.contains('@'), "pointer leaks a key: {p}");
    }
}

#[test]
fn depth_limit_fails_closed() {
    let m = masker();
    let nested = |levels: usize| {
        let mut v = json!("alice@example.com");
        for _ in 0..levels {
            v = json!([v]);
        }
        v
    };
    let mut ok = nested(MAX_DEPTH);
    assert_eq!(m.mask_value(&mut ok, SALT).unwrap().len(), 1);

    let mut deep = nested(MAX_DEPTH + 1);
    assert!(matches!(
        m.mask_value(&mut deep, SALT),
        Err(MaskError::TooDeep(MAX_DEPTH))
    ));
    assert_eq!(deep, Value::Null, "nothing half-masked is left behind");

    // JSON text inside a string counts towards the same limit.
    let text = format!("{}1{}", "[".repeat(100), "]".repeat(100));
    let mut doc = nested(60);
    *pointer_leaf(&mut doc) = Value::String(text.clone());
    assert!(matches!(
        m.mask_value(&mut doc, SALT),
        Err(MaskError::TooDeep(_))
    ));
    // And text deeper than the JSON parser accepts is refused, not scanned as prose.
    let text = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    assert!(matches!(
        m.mask_text(&text, SALT),
        Err(MaskError::TooDeep(_))
    ));
}

fn pointer_leaf(v: &mut Value) -> &mut Value {
    match v {
        Value::Array(items) => pointer_leaf(&mut items[0]),
        other => other,
    }
}

#[test]
fn truncated_private_key_is_masked_to_the_end() {
    let (out, findings) = masker()
        .mask_text(
            "key:\n-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7",
            SALT,
        )
        .unwrap();
    assert_eq!(out, "key:\n[REDACTED:PRIVATE_KEY]");
    assert_eq!(findings.len(), 1);
}

#[test]
fn settings_errors_are_reported() {
    let build = |f: fn(&mut MaskSettings)| {
        let mut s = MaskSettings::default();
        f(&mut s);
        Masker::new(&s, KEY)
    };
    assert!(matches!(
        build(|s| s.custom = vec![("x".into(), "(".into())]),
        Err(MaskError::InvalidPattern { .. })
    ));
    assert!(matches!(
        build(|s| s.custom = vec![("x".into(), "a*".into())]),
        Err(MaskError::MatchesEmpty(_))
    ));
    assert!(matches!(
        build(|s| s.custom = vec![("email".into(), "x".into())]),
        Err(MaskError::DuplicateName(_))
    ));
    assert!(matches!(
        build(|s| s.detectors.push(Detector::Custom("nope".into()))),
        Err(MaskError::UnknownDetector(_))
    ));
    assert!(matches!(
        build(|s| s.styles = vec![("nope".into(), Style::Hash)]),
        Err(MaskError::UnknownStyleTarget(_))
    ));
    // A style for a built-in that is not enabled is fine (config may toggle it later).
    build(|s| {
        s.detectors = vec![Detector::Email];
        s.styles = vec![
            ("iban".into(), Style::Hash),
            ("*secret*".into(), Style::Partial),
        ];
    })
    .unwrap();
    for d in Detector::BUILTIN {
        assert_eq!(Detector::from_name(d.name()), Some(d.clone()));
    }
    assert_eq!(Detector::from_name("employee_id"), None);
    let style: Style = serde_json::from_str("\"partial\"").unwrap();
    assert_eq!(style, Style::Partial);
}

#[test]
fn only_enabled_detectors_run() {
    let m = Masker::new(
        &MaskSettings {
            detectors: vec![Detector::Email],
            fields: vec![],
            ..MaskSettings::default()
        },
        KEY,
    )
    .unwrap();
    let (out, _) = m
        .mask_text("alice@example.com 4111111111111111 10.0.0.1", SALT)
        .unwrap();
    assert_eq!(out, "[REDACTED:EMAIL] 4111111111111111 10.0.0.1");
    let mut doc = json!({"password": "x"});
    assert!(m.mask_value(&mut doc, SALT).unwrap().is_empty());
}

#[test]
fn key_file_is_created_private_and_reused() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = std::env::temp_dir().join(format!("mcpgw-mask-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let key = load_or_create_key(&dir).unwrap();
    let path = dir.join(KEY_FILE);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        load_or_create_key(&dir).unwrap(),
        key,
        "same key after a restart"
    );
    assert_ne!(key, [0; 32]);
    std::fs::write(&path, b"short").unwrap();
    let err = load_or_create_key(&dir).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn masker_is_shareable() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Masker>();
}

/// A printed throughput figure only; timing is never asserted.
#[test]
fn throughput_micro_check() {
    let m = masker();
    let mut rng = Rng(42);
    let mut text = String::new();
    let mut i = 0;
    while text.len() < 1 << 20 {
        text.push_str("The deployment finished at 2024-05-06T10:00:00Z on host build-7 ");
        text.push_str(&format!("(commit {}). ", rng.pick(b"0123456789abcdef", 40)));
        if i % 20 == 0 {
            text.push_str("Contact ops@example.com or 10.1.2.3. ");
        }
        i += 1;
    }
    let started = std::time::Instant::now();
    let (_, findings) = m.mask_text(&text, SALT).unwrap();
    let text_secs = started.elapsed().as_secs_f64();

    let rows: Vec<Value> = (0..5000)
        .map(|i| {
            json!({"id": i, "name": format!("user {i}"), "email": format!("u{i}@example.com"),
                        "status": "active", "tags": ["a", "b"], "score": 3.5})
        })
        .collect();
    let mut doc =
        json!({"content": [{"type": "text", "text": "ok"}], "structuredContent": {"rows": rows}});
    let json_len = doc.to_string().len();
    let started = std::time::Instant::now();
    let json_findings = m.mask_value(&mut doc, SALT).unwrap();
    let json_secs = started.elapsed().as_secs_f64();
    println!(
        "\nmask throughput: text {:.1} MiB/s ({} findings in {} KiB), JSON {:.1} MiB/s ({} findings in {} KiB)",
        text.len() as f64 / text_secs / (1 << 20) as f64,
        findings.len(),
        text.len() >> 10,
        json_len as f64 / json_secs / (1 << 20) as f64,
        json_findings.len(),
        json_len >> 10,
    );
}

#[test]
fn spans_stop_where_the_value_stops() {
    let m = masker();
    for (text, want) in [
        (
            "cards 4111111111111111 42 units",
            "cards [REDACTED:CREDIT_CARD] 42 units",
        ),
        (
            "order 12 4111111111111111",
            "order 12 [REDACTED:CREDIT_CARD]",
        ),
        (
            "ips 10.0.0.1:8080 and [2001:db8::1]:443, 2001:db8::/32",
            "ips [REDACTED:IP]:8080 and [[REDACTED:IP]]:443, [REDACTED:IP]/32",
        ),
        (
            "fe80::1%eth0 and fe80::1: down",
            "[REDACTED:IP]%eth0 and [REDACTED:IP]: down",
        ),
        ("tel:+1-415-555-2671", "tel:[REDACTED:PHONE]"),
        (
            "Call +1 415 555 2671 3 times",
            "Call [REDACTED:PHONE] times",
        ),
        (
            "IBAN DE89 3704 0044 0532 0130 00 EUR",
            "IBAN [REDACTED:IBAN] EUR",
        ),
        (
            "AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "[REDACTED:AWS_ACCESS_KEY]:[REDACTED:AWS_SECRET_KEY]",
        ),
        (
            "-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY----- then \
             -----BEGIN EC PRIVATE KEY-----\nx\n-----END EC PRIVATE KEY-----",
            "[REDACTED:PRIVATE_KEY] then [REDACTED:PRIVATE_KEY]",
        ),
        (
            "token eyJhbGciOiJIUzI1NiJ9.eyJ1IjoyfQ.sig_-abc.",
            "token [REDACTED:JWT].",
        ),
    ] {
        assert_eq!(m.mask_text(text, SALT).unwrap().0, want, "{text:?}");
    }
}

/// The single candidate scan (`detectors::gate`) may skip a built-in detector only when that
/// detector's regex and check would confirm nothing: on random mixtures of value fragments,
/// separators and context words, every string in which a detector confirms a span must have
/// that detector's bit set.
#[test]
fn candidate_scan_never_skips_a_detector_that_would_confirm() {
    let m = masker();
    let mut rng = Rng(0xfeed_beef_1234_5678);
    let mut pieces: Vec<String> = [
        "0",
        "1",
        "2",
        "3",
        "4",
        "5",
        "6",
        "7",
        "8",
        "9",
        "12",
        "415",
        "555",
        "2671",
        "4111",
        "1111",
        " ",
        " ",
        "-",
        ".",
        ":",
        "::",
        "+",
        "(",
        ")",
        "@",
        "/",
        "_",
        "=",
        "\n",
        "é",
        "ſ",
        "x",
        "T",
        "A",
        "B",
        "Z",
        "a",
        "b",
        "f",
        "e",
        "eyJ",
        "AKIA",
        "ASIA",
        "ssn ",
        "SSN: ",
        "aws secret ",
        "secret_access_key ",
        "GB",
        "DE89",
        "NL91",
        "ghp_",
        "xoxb-",
        "sk_live_",
        "AIza",
        "npm_",
        "-----BEGIN ",
        "PRIVATE KEY-----",
        "example.com",
        "user",
        ".com",
        "10.0.0.1",
        "192.168.",
        "fe80",
        "2001:db8",
        "ffff",
        "dead",
        "+1 ",
        "+44 20 ",
        "1-800-",
        "(415) ",
        "123-45-",
        "6789",
        "4012888888881881",
        "378282246310005",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "IOSFODNN7EXAMPLE",
        "ABCDEFGHIJKLMNOP",
        "abcdefghij0123456789",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for (_, ctx, v) in positives().into_iter().chain(negatives_as_positives()) {
        pieces.push(v);
        pieces.push(ctx);
    }
    let mut confirmed = vec![0usize; m.builtins];
    for round in 0..20_000 {
        let k = 1 + (rng.next() % 16) as usize;
        let mut s = String::new();
        for _ in 0..k {
            s.push_str(&pieces[(rng.next() % pieces.len() as u64) as usize]);
        }
        let key = [Some("ssn"), Some("aws_secret"), None, None][round % 4];
        let gate = detectors::gate(&s, key);
        let ctx = Ctx { text: &s, key };
        for (i, d) in m.detectors[..m.builtins].iter().enumerate() {
            let confirms = d
                .regex
                .find_iter(&s)
                .any(|mt| (d.check)(&ctx, mt.range()).is_some_and(|r| !r.is_empty()));
            if confirms {
                confirmed[i] += 1;
                assert!(
                    d.bit & gate != 0,
                    "{} skipped in {s:?} (key {key:?})",
                    d.name
                );
            }
        }
    }
    // The mixtures do exercise every detector.
    for (d, n) in m.detectors.iter().zip(&confirmed) {
        assert!(*n > 50, "{}: confirmed only {n} times", d.name);
    }
}

/// The negatives as (detector, context, value) pieces for the candidate scan test.
fn negatives_as_positives() -> Vec<(&'static str, String, String)> {
    negatives()
        .into_iter()
        .map(|v| ("", String::new(), v))
        .collect()
}

/// The candidate scan on long strings: runs of exactly 40 `[A-Za-z0-9/+]` at every offset
/// (only those are AWS secret key candidates), in texts well over a scan step long.
#[test]
fn candidate_scan_finds_secret_key_runs_anywhere() {
    let m = masker();
    // (This one has only one digit: standalone, it is no key; the other one is.)
    let key40 = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    let aws = m
        .detectors
        .iter()
        .find(|d| d.name == "aws_secret_key")
        .unwrap();
    let mut detected = 0;
    for offset in 0..80 {
        for (before, after) in [(" ", " "), ("x", " "), (" ", "A"), ("_", "_"), ("\n", "")] {
            for key in [key40, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLE123"] {
                let text = format!(
                    "{}{before}{key}{after}{}",
                    &"ab cd ".repeat(14)[..offset],
                    " tail".repeat(10)
                );
                let ctx = Ctx {
                    text: &text,
                    key: None,
                };
                let confirms = aws
                    .regex
                    .find_iter(&text)
                    .any(|mt| (aws.check)(&ctx, mt.range()).is_some());
                let gate = detectors::gate(&text, None);
                assert_eq!(gate & aws.bit != 0, confirms, "{text:?}");
                let (out, _) = m.mask_text(&text, SALT).unwrap();
                assert_eq!(!out.contains(key), confirms, "{text:?} -> {out:?}");
                detected += usize::from(confirms);
            }
        }
    }
    assert!(detected >= 80, "{detected}");
}

/// Where a built-in detector's matches are found without its regex (cards, AWS access key
/// ids, IP addresses in texts without `:`), they must be exactly what the regex finds.
#[test]
fn matches_found_without_a_regex_are_the_regex_matches() {
    let pieces = [
        "1",
        "12",
        "123",
        "1234",
        "0",
        "255",
        "256",
        "999",
        "4111",
        "1111",
        "4111111111111111",
        "4111 1111 1111 1111",
        "5555-5555-5555-4444",
        ".",
        ".",
        "..",
        " ",
        " ",
        "-",
        "--",
        "a",
        "_",
        "é",
        ":",
        "1.2.3.4",
        "10.0.0.1",
        "192.168.1.10",
        "1.2.3.4.5",
        "01.2.3.4",
        "v1.2.3",
        "x",
        "AKIA",
        "ASIA",
        "IOSFODNN7EXAMPLE",
        "ABCDEFGHIJKLMNOP",
        "Z",
        "AKIAIOSFODNN7EXAMPLE",
        "@",
        "@",
        "alice@example.com",
        "b.c",
        "com",
        "example",
        "co",
        "c",
        "%",
        "+",
        "ab-",
        "-ab",
        "abcdefghijklmnopqrstuvwxyzab",
        &"l".repeat(63),
        &"m".repeat(64),
        "X-9",
        ".org",
        "@@",
    ];
    let detectors = [
        Detector::Ip,
        Detector::CreditCard,
        Detector::AwsAccessKey,
        Detector::Email,
    ];
    let regexes: Vec<regex::Regex> = detectors
        .iter()
        .map(|d| regex::Regex::new(detectors::spec(d).unwrap().pattern).unwrap())
        .collect();
    let mut rng = Rng(0x1b_c0de);
    let mut found = [0usize; 4];
    for _ in 0..100_000 {
        let n = 1 + (rng.next() % 14) as usize;
        let text: String = (0..n)
            .map(|_| pieces[(rng.next() % pieces.len() as u64) as usize])
            .collect();
        for (i, (d, re)) in detectors.iter().zip(&regexes).enumerate() {
            let want: Vec<_> = re.find_iter(&text).map(|m| m.range()).collect();
            let mut got = Vec::new();
            if detectors::regex_matches(detectors::bit(d), &text, |r| got.push(r)) {
                assert_eq!(got, want, "{} in {text:?}", d.name());
                found[i] += usize::from(!want.is_empty());
            } else {
                assert!(got.is_empty() && text.contains(':') && *d == Detector::Ip);
            }
        }
    }
    assert!(found.iter().all(|&n| n > 2_000), "{found:?}");
}

/// IPv4 octets are checked without parsing an `Ipv4Addr`: same answers.
#[test]
fn ipv4_octet_check_agrees_with_the_parser() {
    let mut octets: Vec<String> = (0..1000)
        .flat_map(|n| [n.to_string(), format!("{n:02}"), format!("{n:03}")])
        .collect();
    octets.extend(["".into(), "1234".into(), "a".into()]);
    for o in &octets {
        for pos in 0..4 {
            let mut parts = ["1"; 4];
            parts[pos] = o;
            let s = parts.join(".");
            assert_eq!(
                detectors::ipv4_octets_ok(&s),
                s.parse::<std::net::Ipv4Addr>().is_ok(),
                "{s}"
            );
        }
    }
}

/// The JSON string scanner's fast path (eight bytes at a time) stops where a byte-by-byte
/// scan stops.
#[test]
fn string_scan_stops_at_quotes_escapes_and_control_bytes() {
    let mut rng = Rng(0x5ca1ab1e);
    let alphabet: Vec<u8> = [
        b'a', b'Z', b'0', b' ', b'"', b'\\', 0x00, 0x1f, 0x20, 0x7f, 0x80, 0xc3, 0xff, b'{',
    ]
    .to_vec();
    for _ in 0..50_000 {
        let n = (rng.next() % 40) as usize;
        let bytes: Vec<u8> = (0..n)
            .map(|_| alphabet[(rng.next() % alphabet.len() as u64) as usize])
            .collect();
        let from = if n == 0 {
            0
        } else {
            (rng.next() % n as u64) as usize
        };
        let want = bytes[from..]
            .iter()
            .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
            .map_or(n, |p| from + p);
        assert_eq!(
            json_text::plain_run(&bytes, from),
            want,
            "{bytes:?} from {from}"
        );
    }
}

/// A random JSON document with sensitive values, look-alikes, escapes, numbers of every
/// form, field-rule keys, nesting and JSON text inside strings.
fn random_json(rng: &mut Rng, depth: usize, pieces: &[String]) -> Value {
    let leaf = |rng: &mut Rng| -> Value {
        match rng.next() % 9 {
            0 => json!(null),
            1 => json!(rng.next().is_multiple_of(2)),
            2 => json!((rng.next() % 1_000_000_000_000) as i64 - 500_000_000),
            3 => json!(4111111111111111u64),
            4 => json!((rng.next() % 10_000) as f64 / 7.0),
            5 => json!(123456789),
            _ => {
                let k = 1 + (rng.next() % 4) as usize;
                let s: String = (0..k)
                    .map(|_| pieces[(rng.next() % pieces.len() as u64) as usize].as_str())
                    .collect::<Vec<_>>()
                    .join(" ");
                json!(s)
            }
        }
    };
    if depth == 0 {
        return leaf(rng);
    }
    match rng.next() % 5 {
        0 => {
            let n = (rng.next() % 4) as usize;
            Value::Array(
                (0..n)
                    .map(|_| random_json(rng, depth - 1, pieces))
                    .collect(),
            )
        }
        1 | 2 => {
            let keys = [
                "id",
                "email",
                "note",
                "password",
                "client_secret",
                "ssn",
                "social",
                "a/b",
                "t~x",
                "ünï",
                "card",
                "aws_secret_access_key",
                "text",
                "log",
            ];
            let n = (rng.next() % 5) as usize;
            let mut map = serde_json::Map::new();
            for _ in 0..n {
                let k = keys[(rng.next() % keys.len() as u64) as usize];
                map.insert(k.to_owned(), random_json(rng, depth - 1, pieces));
            }
            Value::Object(map)
        }
        3 => {
            // JSON text inside a string.
            let inner = random_json(rng, depth - 1, pieces);
            json!(if rng.next().is_multiple_of(2) {
                serde_json::to_string(&inner).unwrap()
            } else {
                serde_json::to_string_pretty(&inner).unwrap()
            })
        }
        _ => leaf(rng),
    }
}

/// JSON text in a string is masked as it is read, without a `Value`: the result must mean
/// what masking the parsed text as a `Value` gives (same values, same findings), keep the
/// text's own layout, and stay byte-identical when nothing is masked.
#[test]
fn json_text_masked_as_read_agrees_with_the_value_walk() {
    for style in [Style::Redact, Style::Partial, Style::Hash] {
        let m = masker_with(|s| s.style = style);
        let mut rng = Rng(0xa11ce ^ style as u64);
        let pieces: Vec<String> = positives()
            .into_iter()
            .flat_map(|(_, ctx, v)| [v, ctx])
            .chain(negatives())
            .chain([
                "é \"quoted\" \\ back\nslash\t".to_owned(),
                "\u{2028}".to_owned(),
            ])
            .filter(|s| !s.is_empty())
            .collect();
        let mut masked_texts = 0;
        for round in 0..3000 {
            let doc = match random_json(&mut rng, 4, &pieces) {
                v @ (Value::Object(_) | Value::Array(_)) => v,
                other => json!([other]),
            };
            let text = if round % 2 == 0 {
                serde_json::to_string(&doc).unwrap()
            } else {
                serde_json::to_string_pretty(&doc).unwrap()
            };
            let (out, found) = m.mask_text(&text, SALT).unwrap();
            // What the `Value` walk makes of the text (parsed as it parsed it).
            let mut want: Value = serde_json::from_str(&text).unwrap();
            let want_found = m.mask_value(&mut want, SALT).unwrap();
            let got: Value = serde_json::from_str(&out).expect("still JSON");
            assert_eq!(got, want, "{text}");
            let sorted = |mut f: Vec<Finding>| {
                f.sort_by(|a, b| (&a.pointer, &a.detector).cmp(&(&b.pointer, &b.detector)));
                f
            };
            assert_eq!(sorted(found.clone()), sorted(want_found), "{text}");
            if found.is_empty() {
                assert_eq!(out, text, "untouched text stays byte-identical");
            } else {
                masked_texts += 1;
            }
        }
        assert!(
            masked_texts > 1000,
            "the documents do hold sensitive values"
        );
    }
}

/// Text the reading pass does not take on goes the way of the `Value` walk: text that only
/// looks like JSON is prose, a masked key inside is renamed (and the text rewritten
/// compactly), nesting too deep is refused.
#[test]
fn json_text_the_reading_pass_declines() {
    let m = masker();
    for (text, want) in [
        ("{\"a\": 1,}", "{\"a\": 1,}"),
        (
            "[1, 2] trailing alice@example.com",
            "[1, 2] trailing [REDACTED:EMAIL]",
        ),
        (
            "{\"a\": \"\\ud800 x\"} bob@example.com",
            "{\"a\": \"\\ud800 x\"} [REDACTED:EMAIL]",
        ),
        ("[1e400, \"10.0.0.1\"]", "[1e400, \"[REDACTED:IP]\"]"),
        (
            "{\"z\": 1, \"alice@example.com\": \"10.0.0.1\"}",
            "{\"[REDACTED:EMAIL]\":\"[REDACTED:IP]\",\"z\":1}",
        ),
    ] {
        assert_eq!(m.mask_text(text, SALT).unwrap().0, want, "{text}");
    }
    let deep = format!("{}\"10.0.0.1\"{}", "[".repeat(130), "]".repeat(130));
    assert!(matches!(
        m.mask_text(&deep, SALT),
        Err(MaskError::TooDeep(_))
    ));
    // Within the limits the reading pass masks, keeping the layout.
    let text = "{\n  \"b\": \"10.0.0.1\",\n  \"a\": [ 4111111111111111 ]\n}";
    let (out, found) = m.mask_text(text, SALT).unwrap();
    assert_eq!(
        out,
        "{\n  \"b\": \"[REDACTED:IP]\",\n  \"a\": [ \"[REDACTED:CREDIT_CARD]\" ]\n}"
    );
    let pointers: Vec<&str> = found.iter().map(|f| f.pointer.as_str()).collect();
    assert_eq!(pointers, ["/b", "/a/0"]);
}

/// Duplicate keys in JSON text: every member is masked (a `Value` keeps only the last one,
/// and the text forwarded must not hold the others unmasked).
#[test]
fn json_text_duplicate_keys_are_all_masked() {
    let (out, found) = masker()
        .mask_text(r#"{"note": "alice@example.com", "note": "ok"}"#, SALT)
        .unwrap();
    assert_eq!(out, r#"{"note": "[REDACTED:EMAIL]", "note": "ok"}"#);
    assert_eq!(found.len(), 1);
}

/// Integers of up to eight digits are skipped (no built-in detector can find anything in
/// them); longer ones are scanned, as are all numbers when custom detectors are set.
#[test]
fn short_integers_skip_only_what_cannot_match() {
    let builtin_only = masker_with(|s| s.custom.clear());
    let mut doc = json!({"a": 12345678, "b": -12345678, "card": 4111111111111111u64,
                         "social_security": 536221234, "n": [1, 0, -0, 99999999]});
    let found = builtin_only.mask_value(&mut doc, SALT).unwrap();
    assert_eq!(doc["a"], 12345678);
    assert_eq!(doc["card"], "[REDACTED:CREDIT_CARD]");
    assert_eq!(doc["social_security"], "[REDACTED:SSN]");
    assert_eq!(found.len(), 2);
    let text = r#"{"a": 12345678, "card": 4111111111111111, "social_security": 536221234}"#;
    let (out, _) = builtin_only.mask_text(text, SALT).unwrap();
    assert_eq!(
        out,
        r#"{"a": 12345678, "card": "[REDACTED:CREDIT_CARD]", "social_security": "[REDACTED:SSN]"}"#
    );
    let custom = masker_with(|s| s.custom = vec![("short".into(), "^42$".into())]);
    let mut doc = json!({"x": 42});
    assert_eq!(custom.mask_value(&mut doc, SALT).unwrap().len(), 1);
    assert_eq!(doc["x"], "[REDACTED:SHORT]");
}

/// Keys repeat from record to record and what they need is remembered within a call: the
/// same key gets the same treatment every time, masked keys included.
#[test]
fn repeated_keys_are_treated_alike() {
    let m = masker();
    let long_key = format!("{}secret", "k".repeat(100));
    let rows: Vec<Value> = (0..300)
        .map(|i| {
            json!({"password": format!("pw{i}"), "alice@example.com": i, "name": format!("n{i}"),
                   &long_key: "v", format!("key{}", i % 7): "10.0.0.1"})
        })
        .collect();
    let mut doc = json!({ "rows": rows });
    let found = m.mask_value(&mut doc, SALT).unwrap();
    for (i, row) in doc["rows"].as_array().unwrap().iter().enumerate() {
        assert_eq!(row["password"], "[REDACTED:PASSWORD]");
        assert_eq!(row["[REDACTED:EMAIL]"], i);
        assert_eq!(row[long_key.as_str()], "[REDACTED:SECRET]");
        assert_eq!(row[format!("key{}", i % 7)], "[REDACTED:IP]");
        assert_eq!(row["name"], format!("n{i}").as_str());
    }
    assert_eq!(found.len(), 300 * 4);
}

/// Pointers are written backwards into a buffer, and the long way past it: both escape `~`
/// and `/` and give the same pointers.
#[test]
fn pointers_escape_and_may_be_long() {
    let m = masker();
    for key_len in [1, 7, 40, 120, 300] {
        let key = format!("a/b~c{}", "k".repeat(key_len));
        let mut doc = json!({ &key: [{ &key: ["x", "10.0.0.1"] }] });
        let found = m.mask_value(&mut doc, SALT).unwrap();
        let escaped = key.replace('~', "~0").replace('/', "~1");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].pointer, format!("/{escaped}/0/{escaped}/1"));
    }
}
