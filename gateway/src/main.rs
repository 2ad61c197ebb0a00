//! mcpgw: the daemon (`mcpgw serve`) and the admin CLI in one binary.
#![forbid(unsafe_code)]

use gateway::{admin, config, daemon};

mod cli;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "mcpgw",
    version,
    about = "A host-resident gateway for MCP traffic"
)]
struct Cli {
    /// Admin socket of the daemon.
    #[arg(long, global = true, default_value = "/run/mcpgw/admin.sock")]
    socket: PathBuf,
    /// Output format of admin commands.
    #[arg(long, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway daemon.
    Serve {
        /// Configuration file; without it the embedded default is used.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Version, uptime, interception mode, attached programs, targets, counters.
    Status,
    /// Destinations whose connections are sent to the gateway.
    Intercept {
        #[command(subcommand)]
        command: InterceptCommand,
    },
    /// Recorded sessions: list, show, replay, verify, export.
    Sessions {
        #[command(subcommand)]
        command: SessionsCommand,
    },
    /// Calls held for approval: list (--watch), show, approve, deny.
    Approvals {
        #[command(subcommand)]
        command: cli::approvals::ApprovalsCommand,
    },
    /// Access granted by approvals: list, revoke.
    Grants {
        #[command(subcommand)]
        command: cli::approvals::GrantsCommand,
    },
    /// Check, reload and explain the policy rules.
    Policy {
        #[command(subcommand)]
        command: cli::policy::PolicyCommand,
    },
    /// The host CA that signs the certificates clients see.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
}

#[derive(Subcommand)]
pub enum SessionsCommand {
    List {
        #[arg(long)]
        subject: Option<String>,
        #[arg(long)]
        server: Option<String>,
        /// Started within this long (e.g. `1h`, `7d`).
        #[arg(long, value_parser = humantime::parse_duration)]
        since: Option<std::time::Duration>,
        /// With at least one event of this decision (`forwarded`, `refused`, `withheld`).
        #[arg(long)]
        decision: Option<String>,
    },
    /// Metadata and the timeline of one session.
    Show { id: String },
    /// The timeline at recorded pace.
    Replay {
        id: String,
        /// Faster (2) or slower (0.5) than recorded.
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
        /// Keep printing events of a live session until it ends.
        #[arg(long)]
        follow: bool,
    },
    /// Check hash chains and seals; non-zero exit if anything was tampered with.
    Verify {
        id: Option<String>,
        #[arg(long, conflicts_with = "id")]
        all: bool,
    },
    Export {
        id: String,
        #[arg(long, value_enum)]
        format: admin::ExportFormat,
    },
}

#[derive(Subcommand)]
enum CaCommand {
    /// Print the CA certificate (PEM), to install into trust stores.
    Export,
}

#[derive(Subcommand)]
enum InterceptCommand {
    List,
    /// Intercept HOST:PORT (IP, host name, or `*:PORT`) from now on; kept across restarts.
    Add {
        target: String,
    },
    /// Stop intercepting a target added with `intercept add`.
    Remove {
        target: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start the runtime: {e}")),
    };
    match cli.command {
        Command::Serve { config } => {
            init_logging();
            let config_path = config.clone();
            let config = match config::load(config.as_deref()) {
                Ok(config) => config,
                Err(e) => return fail(e.to_string()),
            };
            match runtime.block_on(daemon::serve(config, config_path)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(format!("{e:#}")),
            }
        }
        Command::Status => admin_command(&runtime, &cli.socket, cli.output, admin::Request::Status),
        Command::Sessions { command } => {
            cli::sessions::run(&runtime, &cli.socket, cli.output, command)
        }
        Command::Approvals { command } => {
            cli::approvals::approvals(&runtime, &cli.socket, cli.output, command)
        }
        Command::Grants { command } => {
            cli::approvals::grants(&runtime, &cli.socket, cli.output, command)
        }
        Command::Policy { command } => cli::policy::run(&runtime, &cli.socket, cli.output, command),
        Command::Ca {
            command: CaCommand::Export,
        } => match runtime.block_on(admin::call(&cli.socket, &admin::Request::CaExport)) {
            Ok(serde_json::Value::String(pem)) => {
                print!("{pem}");
                ExitCode::SUCCESS
            }
            Ok(other) => fail(format!("unexpected answer: {other}")),
            Err(e) => fail(e.to_string()),
        },
        Command::Intercept { command } => {
            let request = match command {
                InterceptCommand::List => admin::Request::InterceptList,
                InterceptCommand::Add { target } => admin::Request::InterceptAdd { entry: target },
                InterceptCommand::Remove { target } => {
                    admin::Request::InterceptRemove { entry: target }
                }
            };
            admin_command(&runtime, &cli.socket, cli.output, request)
        }
    }
}

fn admin_command(
    runtime: &tokio::runtime::Runtime,
    socket: &std::path::Path,
    output: Output,
    request: admin::Request,
) -> ExitCode {
    let is_status = matches!(request, admin::Request::Status);
    match runtime.block_on(admin::call(socket, &request)) {
        Ok(result) => {
            match output {
                Output::Json => println!("{result}"),
                Output::Table if is_status => print_status(&result),
                Output::Table => print_targets(&result),
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(e.to_string()),
    }
}

pub fn fail(reason: String) -> ExitCode {
    // One line on stderr, as scripts expect.
    eprintln!("mcpgw: {}", reason.replace('\n', "; "));
    ExitCode::FAILURE
}

fn init_logging() {
    use tracing_subscriber::{fmt, EnvFilter};
    // aya warns at every start that this kernel rejects the object's BTF (the programs load
    // without it); keep its errors, drop that noise.
    let filter = EnvFilter::try_from_env("MCPGW_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,aya::bpf=error"));
    use std::io::IsTerminal as _;
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    // tracing-subscriber's init also routes the `log` crate (aya-log records) into tracing.
    // Under systemd (stderr is the journal) logs are JSON, one object per line.
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    if std::env::var("MCPGW_LOG_FORMAT").as_deref() == Ok("json")
        || (journal && std::env::var("MCPGW_LOG_FORMAT").as_deref() != Ok("text"))
    {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn print_status(status: &serde_json::Value) {
    let s = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        other => other.to_string(),
    };
    println!("version     {}", s(&status["version"]));
    println!("uptime      {}s", s(&status["uptime_secs"]));
    println!(
        "mode        {} (fail_mode {})",
        s(&status["mode"]),
        s(&status["fail_mode"])
    );
    println!("cgroup      {}", s(&status["cgroup"]));
    let programs: Vec<String> = status["programs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            format!(
                "{}{}",
                s(&p["name"]),
                if p["pinned"] == true { " (pinned)" } else { "" }
            )
        })
        .collect();
    println!(
        "programs    {}",
        if programs.is_empty() {
            "-".into()
        } else {
            programs.join(", ")
        }
    );
    let listeners: Vec<String> = status["listeners"]
        .as_array()
        .into_iter()
        .flatten()
        .map(s)
        .collect();
    println!("listeners   {}", listeners.join(", "));
    if let Some(counters) = status["counters"].as_object() {
        let text: Vec<String> = counters.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("counters    {}", text.join(" "));
    }
    let health = &status["health"];
    println!(
        "health      store {}, programs attached {}, metrics {}",
        s(&health["store"]),
        s(&health["programs_attached"]),
        s(&health["metrics"])
    );
    for idp in health["identity_providers"]
        .as_array()
        .into_iter()
        .flatten()
    {
        println!(
            "  issuer    {} keys {} (age {}s)",
            s(&idp["issuer"]),
            if idp["keys_fresh"] == true {
                "fresh"
            } else {
                "NOT FRESH"
            },
            s(&idp["keys_age_secs"])
        );
    }
    if !health["sts"].is_null() {
        println!("  sts       {}", health["sts"]);
    }
    println!("targets");
    print_targets(&status["targets"]);
}

fn print_targets(targets: &serde_json::Value) {
    println!("  {:<40} {:<24} ADDRESSES", "ENTRY", "SOURCE");
    for t in targets.as_array().into_iter().flatten() {
        let addrs: Vec<&str> = t["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str())
            .collect();
        println!(
            "  {:<40} {:<24} {}",
            t["entry"].as_str().unwrap_or("-"),
            t["source"].as_str().unwrap_or("-"),
            if addrs.is_empty() {
                "(unresolved)".to_string()
            } else {
                addrs.join(", ")
            }
        );
    }
}
