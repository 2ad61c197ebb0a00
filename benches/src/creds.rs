//! `cargo xtask bench creds` (run by xtask as `mcpgw-bench creds`): what the credential stage adds to a call, release build. On a
//! cache hit: the cache lookup plus SigV4 signing of a typical MCP request; on a miss: a real
//! STS AssumeRole against moto's server on loopback (the peers venv's `moto_server`), through
//! the gateway's own HTTP client and the AWS SDK.

use std::{
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use gateway::{
    creds::{sigv4::sign_request, AwsServer, CallScope, Minter, Mode},
    identity::Subject,
    intercept::socket_factory::SocketFactory,
};

fn percentiles(mut samples: Vec<f64>) -> (f64, f64, f64) {
    samples.sort_by(f64::total_cmp);
    let at = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    (at(0.5), at(0.99), samples[samples.len() - 1])
}

pub fn measure() -> Result<()> {
    let moto_bin = mcpgw_tests::target_dir().join("peers/venv/bin/moto_server");
    if !moto_bin.exists() {
        bail!("{} is missing: run `cargo xtask setup`", moto_bin.display());
    }
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let mut moto = Command::new(&moto_bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start moto_server")?;
    let result = tokio::runtime::Runtime::new()?.block_on(bench(port));
    let _ = moto.kill();
    let _ = moto.wait();
    result
}

async fn bench(port: u16) -> Result<()> {
    // Wait for moto to listen.
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if started.elapsed() > Duration::from_secs(20) {
            bail!("moto_server did not listen on {port}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The gateway's own identity for the benchmark: moto accepts any key with its auth off.
    std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDBENCHMARKONLY000");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "benchmark-secret");
    std::env::set_var("AWS_REGION", "us-east-1");
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    let minter = Minter::new(
        SocketFactory::new(None, Duration::from_secs(5)),
        Arc::new(gateway::metrics::Metrics::new()),
    )
    .await?;
    let aws = AwsServer {
        role_arn: "arn:aws:iam::123456789012:role/mcp-bench".into(),
        region: "us-east-1".into(),
        service: "execute-api".into(),
        mode: Mode::AssumeRole,
        session_policy: Some(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"execute-api:Invoke","Resource":"arn:aws:execute-api:us-east-1:*:*/*/POST/{tool}"}]}"#.into()),
        duration: Duration::from_secs(900),
        max_duration: Duration::from_secs(3600),
        sts_endpoint: Some(format!("http://127.0.0.1:{port}")),
    };
    let body = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"query_sales","arguments":{"region":"emea","quarter":"2026-Q3"}}}"#;
    let request = || {
        let mut req = http::Request::new(());
        *req.method_mut() = http::Method::POST;
        *req.uri_mut() = "https://analytics-mcp.internal/mcp"
            .parse()
            .expect("literal");
        let h = req.headers_mut();
        h.insert("host", "analytics-mcp.internal".parse().expect("literal"));
        h.insert("content-type", "application/json".parse().expect("literal"));
        h.insert(
            "accept",
            "application/json, text/event-stream"
                .parse()
                .expect("literal"),
        );
        h.insert(
            "mcp-protocol-version",
            "2025-06-18".parse().expect("literal"),
        );
        h.insert(
            "mcp-session-id",
            "5b1d6f0e9c2a4e7b8d3f1a2c4e6b8d0f".parse().expect("literal"),
        );
        req
    };

    // One call's credential stage: credentials for the subject, then signing; the time
    // taken and whether STS was called.
    let signed_call = |subject: Subject| {
        let (minter, aws, request) = (&minter, &aws, &request);
        async move {
            let scope = CallScope {
                subject: &subject,
                server: "analytics",
                tool: Some("query_sales"),
                gateway_session: 1,
                approval: None,
                grant_expires_ms: None,
            };
            let t = Instant::now();
            let (creds, minted) = minter
                .credentials(aws, &scope)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let mut req = request();
            sign_request(&mut req, body, &creds, &aws.region, &aws.service)
                .map_err(anyhow::Error::msg)?;
            anyhow::Ok((t.elapsed(), minted.is_some()))
        }
    };

    // Misses: a new subject each time, so every call goes to STS (10 warm-up calls first).
    let mut miss = Vec::new();
    for i in 0..60 {
        let subject = Subject::named(&format!("bench-miss-{i}"), vec!["analysts".into()]);
        let (took, minted) = signed_call(subject).await?;
        if !minted {
            bail!("a new subject must mint");
        }
        if i >= 10 {
            miss.push(took.as_secs_f64() * 1e3);
        }
    }

    // Hits: one subject, cached credentials, signing included.
    let hit_subject = || Subject::named("bench-hit", vec!["analysts".into()]);
    signed_call(hit_subject()).await?;
    let mut hit = Vec::new();
    for _ in 0..5000 {
        let (took, minted) = signed_call(hit_subject()).await?;
        if minted {
            bail!("a cached subject must not mint");
        }
        hit.push(took.as_secs_f64() * 1e6);
    }
    let (h50, h99, hmax) = percentiles(hit);
    let (m50, m99, mmax) = percentiles(miss);
    println!("machine: {}", mcpgw_tests::machine());
    println!("| credential stage | p50 | p99 | max |");
    println!("|---|---|---|---|");
    println!("| cache hit: lookup + SigV4 signing of a tools/call | {h50:.1} µs | {h99:.1} µs | {hmax:.1} µs |");
    println!("| cache miss: AssumeRole at moto (loopback) + signing | {m50:.2} ms | {m99:.2} ms | {mmax:.2} ms |");
    println!(
        "STS calls made: {} (50 measured misses + 10 warm-up + 1 for the hit subject)",
        minter.sts_calls()
    );
    Ok(())
}
