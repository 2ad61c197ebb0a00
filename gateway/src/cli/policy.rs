//! `mcpgw policy`: check a configuration file's rules, reload the daemon's, and explain
//! which rule decides a hypothetical call.

use std::{path::PathBuf, process::ExitCode};

use clap::Subcommand;
use gateway::{admin, config};

use crate::{fail, Output};

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Validate a configuration file (rules, guardrails and the rest); nothing is changed.
    Check {
        #[arg(default_value = "/etc/mcpgw/gateway.toml")]
        file: PathBuf,
    },
    /// Make the daemon read its configuration file again and use its rules (as SIGHUP does).
    Reload,
    /// Which rule decides a call, and why.
    Explain {
        #[arg(long)]
        subject: String,
        /// A group of the subject (repeat for several).
        #[arg(long = "group")]
        groups: Vec<String>,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        uid: Option<u32>,
        #[arg(long)]
        exe: Option<String>,
        /// systemd unit of the calling process.
        #[arg(long)]
        unit: Option<String>,
        #[arg(long)]
        server: String,
        #[arg(long, default_value = "tools/call")]
        method: String,
        #[arg(long)]
        tool: Option<String>,
        /// The call's arguments as JSON.
        #[arg(long = "args")]
        arguments: Option<String>,
    },
}

pub fn run(
    runtime: &tokio::runtime::Runtime,
    socket: &std::path::Path,
    output: Output,
    command: PolicyCommand,
) -> ExitCode {
    let request = match command {
        PolicyCommand::Check { file } => {
            return match config::load(Some(&file)) {
                Ok(config) => {
                    let summary = serde_json::json!({
                        "file": file,
                        "rules": config.policy.rules.len(),
                        "guardrails": config.policy.guardrails.len(),
                    });
                    match output {
                        Output::Json => println!("{summary}"),
                        Output::Table => println!(
                            "{}: valid ({} rules, {} guardrails)",
                            file.display(),
                            config.policy.rules.len(),
                            config.policy.guardrails.len()
                        ),
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e.to_string()),
            };
        }
        PolicyCommand::Reload => admin::Request::PolicyReload,
        PolicyCommand::Explain {
            subject,
            groups,
            email,
            uid,
            exe,
            unit,
            server,
            method,
            tool,
            arguments,
        } => admin::Request::PolicyExplain {
            query: admin::ExplainQuery {
                subject,
                groups,
                email,
                uid,
                exe,
                unit,
                server,
                method: Some(method),
                tool,
                arguments,
            },
        },
    };
    match runtime.block_on(admin::call(socket, &request)) {
        Ok(result) => {
            match output {
                Output::Json => println!("{result}"),
                Output::Table => print_table(&result),
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(e.to_string()),
    }
}

fn print_table(result: &serde_json::Value) {
    if let Some(reloaded) = result.get("reloaded").and_then(|r| r.as_str()) {
        println!("reloaded: {reloaded}");
        return;
    }
    let d = &result["decision"];
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_owned();
    println!("action   {}", text(&d["action"]));
    println!("rule     {}", text(&d["rule"]));
    println!("reason   {}", text(&d["reason"]));
    if let Some(approval) = d.get("approval") {
        println!("approval {approval}");
    }
    if let Some(listed) = result["listed"].as_bool() {
        println!("listed   {}", if listed { "yes" } else { "no" });
    }
}
