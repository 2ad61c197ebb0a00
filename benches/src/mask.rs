//! `cargo xtask bench mask` (run by xtask as `mcpgw-bench mask`): the masking stage on its own, release build, all built-in
//! detectors on. Throughput on a 1 MB mixed tool result (structured records plus the same
//! records as JSON text, log lines, ids and numbers that look sensitive but are not), and the
//! time to mask a typical 2 KB result.

use std::time::{Duration, Instant};

use anyhow::Result;
use gateway::mask::{MaskSettings, Masker};
use serde_json::{json, Value};

/// A tool result of about `bytes` bytes, mixing sensitive values and look-alikes.
fn tool_result(bytes: usize) -> Value {
    let mut rows = Vec::new();
    let mut size = 0;
    let mut i = 0u64;
    while size < bytes / 2 {
        let row = json!({
            "id": i,
            "order": format!("ORD-{:08}", i * 7919),
            "uuid": format!("{:08x}-1f2e-4d3c-8b7a-{:012x}", i, i * 31337),
            "at": format!("2026-11-26T11:{:02}:{:02}.123Z", i % 60, (i * 7) % 60),
            "customer": format!("Customer {i}"),
            "email": if i.is_multiple_of(3) { format!("user{i}@example.com") } else { format!("user{i} at example dot com") },
            "card": if i.is_multiple_of(5) { "4111 1111 1111 1111".to_string() } else { format!("{:016}", i * 1_000_003) },
            "log": format!("GET /api/v1/items/{i} 200 {}ms from 10.0.{}.{} sha {:040x}", i % 97, i % 256, (i * 3) % 256, i * 0x9e37_79b9),
            "note": if i.is_multiple_of(11) { "key AKIAIOSFODNN7EXAMPLE in the config".to_string() } else { format!("version 1.{}.{} released", i % 10, i % 7) },
        });
        size += row.to_string().len();
        rows.push(row);
        i += 1;
    }
    let records = json!({"records": rows});
    json!({
        "content": [{"type": "text", "text": records.to_string()}],
        "structuredContent": records,
    })
}

/// Masks fresh clones of `value` for at least `min`; the sorted per-call times.
fn time_masking(masker: &Masker, value: &Value, min: Duration) -> Vec<Duration> {
    let started = Instant::now();
    let mut times = Vec::new();
    while started.elapsed() < min || times.len() < 10 {
        let mut v = value.clone();
        let t = Instant::now();
        let findings = masker.mask_value(&mut v, b"bench").expect("masking");
        times.push(t.elapsed());
        std::hint::black_box(findings);
    }
    times.sort();
    times
}

pub fn measure() -> Result<()> {
    let masker = Masker::new(&MaskSettings::default(), [7; 32])?;
    let big = tool_result(1 << 20);
    let big_len = big.to_string().len();
    let times = time_masking(&masker, &big, Duration::from_secs(3));
    let p50 = times[times.len() / 2];
    let mb_per_s = big_len as f64 / p50.as_secs_f64() / 1e6;

    let small = tool_result(2 << 10);
    let small_len = small.to_string().len();
    let small_times = time_masking(&masker, &small, Duration::from_secs(2));
    let small_p50 = small_times[small_times.len() / 2];
    let small_p99 = small_times[small_times.len() * 99 / 100];

    println!("| input | size | p50 | throughput |");
    println!("|---|---|---|---|");
    println!(
        "| mixed tool result | {:.2} MB | {:.2} ms | {mb_per_s:.0} MB/s |",
        big_len as f64 / 1e6,
        p50.as_secs_f64() * 1e3
    );
    println!(
        "| typical tool result | {:.1} KB | {:.1} µs (p99 {:.1} µs) | {:.0} MB/s |",
        small_len as f64 / 1e3,
        small_p50.as_secs_f64() * 1e6,
        small_p99.as_secs_f64() * 1e6,
        small_len as f64 / small_p50.as_secs_f64() / 1e6
    );
    println!();
    println!("one thread; all built-in detectors, fields password/*secret*/ssn, style redact");
    println!("machine: {}", mcpgw_tests::machine());
    Ok(())
}
