//! `cargo xtask bench policy` (run by xtask as `mcpgw-bench policy`): what the policy stage costs per call, release build. Decision
//! time with 10 and 1,000 rules (the deciding rule last, and no rule matching), guardrails
//! included; and access-token validation with a warm key cache (RS256, signature and claims),
//! against an issuer served in-process on loopback (discovery and JWKS as a provider serves
//! them; the keys are fetched once, as the gateway does).

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use gateway::{
    config::parse_config,
    identity::{oidc::Issuer, OidcConfig, Subject},
    intercept::socket_factory::SocketFactory,
    policy::{Call, Policy},
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

/// `n` rules: none matches the benchmark call but the last one.
fn policy(n: usize) -> Policy {
    let mut toml = String::new();
    for i in 0..n - 1 {
        toml.push_str(&format!(
            "[[policy.rules]]\nid = \"r{i}\"\nservers = [\"s{i}\"]\ntools = [\"tool_{i}_*\"]\ngroups = [\"g{i}\"]\naction = \"allow\"\n\n"
        ));
    }
    toml.push_str(
        "[[policy.rules]]\nid = \"analysts\"\ngroups = [\"analysts\"]\ntools = [\"query_*\", \"run_sql\"]\naction = \"allow\"\n\n\
         [[guardrails]]\nid = \"no-drop\"\ncheck = \"destructive_sql\"\naction = \"deny\"\n\n\
         [[guardrails]]\nid = \"no-rm\"\ncheck = \"rm_rf\"\naction = \"deny\"\n\n\
         [[guardrails]]\nid = \"no-pipe\"\ncheck = \"pipe_to_shell\"\naction = \"deny\"\n",
    );
    parse_config(&toml).expect("benchmark policy").policy
}

/// Per-decision time: samples of 1,000 decisions each.
fn time_decisions(policy: &Policy, call: &Call, expect: &str) -> (f64, f64) {
    assert_eq!(policy.decide(call).rule, expect);
    let mut samples = Vec::new();
    for _ in 0..300 {
        let t = Instant::now();
        for _ in 0..1000 {
            std::hint::black_box(policy.decide(std::hint::black_box(call)));
        }
        samples.push(t.elapsed().as_nanos() as f64 / 1000.0);
    }
    percentiles(samples)
}

fn percentiles(mut samples: Vec<f64>) -> (f64, f64) {
    samples.sort_by(f64::total_cmp);
    let at = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    (at(0.5), at(0.99))
}

pub fn measure() -> Result<()> {
    let subject = Subject::named("alice", vec!["analysts".into(), "staff".into()]);
    let arguments =
        json!({"sql": "select region, sum(total) from sales group by region", "limit": 100});
    let call = Call {
        server: "analytics",
        method: "tools/call",
        tool: Some("run_sql"),
        resource: None,
        prompt: None,
        arguments: Some(&arguments),
        subject: &subject,
    };
    let unknown = Call {
        tool: Some("write_sales"),
        ..call
    };
    println!("| measure | p50 | p99 |");
    println!("|---|---|---|");
    for n in [10, 1000] {
        let p = policy(n);
        let (p50, p99) = time_decisions(&p, &call, "analysts");
        println!("| decision, {n} rules, allowed by the last (3 guardrails checked) | {p50:.0} ns | {p99:.0} ns |");
        let (p50, p99) = time_decisions(&p, &unknown, "default:deny");
        println!(
            "| decision, {n} rules, none matches (default deny) | {p50:.0} ns | {p99:.0} ns |"
        );
    }

    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(tokens())
}

async fn tokens() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("mcpgw-bench-policy-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let pem = dir.join("key.pem");
    mcpgw_tests::run(
        std::process::Command::new("openssl")
            .args(["genrsa", "-out"])
            .arg(&pem)
            .arg("2048"),
    )
    .context("openssl genrsa")?;
    let key = EncodingKey::from_rsa_pem(&std::fs::read(&pem)?)?;
    // The public JWK: the modulus as openssl prints it, the usual exponent 65537.
    let out = std::process::Command::new("openssl")
        .args(["rsa", "-noout", "-modulus", "-in"])
        .arg(&pem)
        .output()?;
    let hex = String::from_utf8(out.stdout)?;
    let hex = hex.trim().trim_start_matches("Modulus=");
    let modulus: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
        .collect::<Result<_, _>>()?;
    use base64::Engine as _;
    let n = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(modulus);
    let jwk =
        json!({"kty": "RSA", "kid": "bench-1", "use": "sig", "alg": "RS256", "n": n, "e": "AQAB"});

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let issuer = format!("http://{addr}");
    let jwks = serde_json::to_vec(&json!({ "keys": [jwk] }))?;
    let discovery =
        serde_json::to_vec(&json!({"issuer": issuer, "jwks_uri": format!("{issuer}/jwks")}))?;
    tokio::spawn(serve_idp(listener, discovery, jwks));

    let config = OidcConfig {
        issuer: issuer.clone(),
        audiences: vec!["mcp-gateway".into()],
        groups_claim: "groups".into(),
        algorithms: vec![Algorithm::RS256],
        required_claims: vec!["sub".into()],
        leeway: Duration::from_secs(30),
        jwks_cache: Duration::from_secs(600),
        ca_file: None,
    };
    let issuer_stage = Arc::new(Issuer::new(
        config,
        SocketFactory::new(None, Duration::from_secs(5)),
    )?);
    issuer_stage.refresh().await.map_err(anyhow::Error::msg)?;

    let now = jsonwebtoken::get_current_timestamp();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("bench-1".into());
    header.typ = Some("at+jwt".into());
    let claims = json!({"iss": issuer, "aud": "mcp-gateway", "sub": "alice", "exp": now + 600,
                        "iat": now, "groups": ["analysts"], "email": "alice@example.com"});
    let token = jsonwebtoken::encode(&header, &claims, &key)?;
    let claims = issuer_stage
        .validate(&token)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(claims.sub, "alice");

    let mut samples = Vec::new();
    for _ in 0..2000 {
        let t = Instant::now();
        std::hint::black_box(issuer_stage.validate(&token).await.is_ok());
        samples.push(t.elapsed().as_nanos() as f64 / 1000.0);
    }
    let (p50, p99) = percentiles(samples);
    println!("| token validation, RS256 2048, warm key cache | {p50:.1} µs | {p99:.1} µs |");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Discovery and JWKS over plain HTTP/1.1 on loopback.
async fn serve_idp(listener: tokio::net::TcpListener, discovery: Vec<u8>, jwks: Vec<u8>) {
    use hyper::{server::conn::http1, service::service_fn, Response};
    let (discovery, jwks) = (bytes::Bytes::from(discovery), bytes::Bytes::from(jwks));
    loop {
        let Ok((stream, _)): std::io::Result<(tokio::net::TcpStream, SocketAddr)> =
            listener.accept().await
        else {
            return;
        };
        let (discovery, jwks) = (discovery.clone(), jwks.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let body = if req.uri().path().ends_with("openid-configuration") {
                    discovery.clone()
                } else {
                    jwks.clone()
                };
                async move {
                    Ok::<_, std::convert::Infallible>(Response::new(http_body_util::Full::new(
                        body,
                    )))
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}
