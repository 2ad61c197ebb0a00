//! `mcpgw-bench`: the in-process stage benchmarks. `cargo xtask bench mask|record|policy|creds|approval`
//! installs the build prerequisites and runs this binary in a release build: timings of a debug
//! build mean nothing.

mod approval;
mod creds;
mod mask;
mod policy;
mod record;

use anyhow::Result;
use clap::Parser;

#[derive(Parser)]
#[command(name = "mcpgw-bench")]
enum Bench {
    /// The masking stage alone: MB/s on a 1 MB tool result, time for a 2 KB one.
    Mask,
    /// The recording store: events/s to durable commit, added latency per message.
    Record,
    /// Policy decisions with 10 and 1,000 rules; token validation with a warm key cache.
    Policy,
    /// The credential stage: a cache hit (signing included) and a miss against moto's STS.
    Creds,
    /// Approve command → held call reaching the upstream (release mcpgw, explicit mode).
    Approval,
}

fn main() -> Result<()> {
    match Bench::parse() {
        Bench::Mask => mask::measure(),
        Bench::Record => record::measure(),
        Bench::Policy => policy::measure(),
        Bench::Creds => creds::measure(),
        Bench::Approval => approval::measure(),
    }
}
