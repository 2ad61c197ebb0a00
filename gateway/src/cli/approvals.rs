//! `mcpgw approvals` and `mcpgw grants`: the approver's side of just-in-time access, over
//! the admin socket. The approver is the Unix user running the command (groups from
//! `[approval.approvers]`), or the subject of an OIDC token read with `--token-file` (a file, or `-` for standard input).

use std::path::PathBuf;
use std::{collections::HashSet, process::ExitCode, time::Duration};

use clap::Subcommand;
use gateway::admin::{self, Request};
use serde_json::Value;

use crate::{fail, Output};

#[derive(Subcommand)]
pub enum ApprovalsCommand {
    /// Pending approvals (all recent ones with --all).
    List {
        #[arg(long)]
        all: bool,
        /// Keep printing new pending approvals as they come.
        #[arg(long)]
        watch: bool,
    },
    /// One approval and its history.
    Show { id: String },
    Approve {
        id: String,
        #[arg(long)]
        reason: Option<String>,
        /// Decide as the subject of the OIDC access token in this file (`-`: standard
        /// input). Never on the command line, where every local user could read it.
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
    },
    Deny {
        id: String,
        #[arg(long)]
        reason: String,
        /// As for `approve`.
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum GrantsCommand {
    /// Live grants.
    List,
    /// End a grant now.
    Revoke {
        id: String,
        /// As for `approvals approve`.
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
    },
}

/// The token in `path` (`-`: standard input), trimmed.
fn read_token(path: Option<PathBuf>) -> Result<Option<String>, String> {
    let Some(path) = path else {
        return Ok(None);
    };
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
            .map_err(|e| format!("reading the token from standard input: {e}"))?
    } else {
        std::fs::read_to_string(&path)
            .map_err(|e| format!("reading the token from {}: {e}", path.display()))?
    };
    let token = text.trim();
    if token.is_empty() {
        return Err("the token file is empty".into());
    }
    Ok(Some(token.to_owned()))
}

fn call(
    runtime: &tokio::runtime::Runtime,
    socket: &std::path::Path,
    request: &Request,
) -> Result<Value, String> {
    runtime
        .block_on(admin::call(socket, request))
        .map_err(|e| e.to_string())
}

pub fn approvals(
    runtime: &tokio::runtime::Runtime,
    socket: &std::path::Path,
    output: Output,
    command: ApprovalsCommand,
) -> ExitCode {
    let request = match command {
        ApprovalsCommand::List { all, watch: true } => return watch(runtime, socket, output, all),
        ApprovalsCommand::List { all, watch: false } => Request::ApprovalsList { all },
        ApprovalsCommand::Show { id } => Request::ApprovalsShow { id },
        ApprovalsCommand::Approve {
            id,
            reason,
            token_file,
        } => match read_token(token_file) {
            Ok(token) => Request::ApprovalsApprove { id, reason, token },
            Err(e) => return crate::fail(e),
        },
        ApprovalsCommand::Deny {
            id,
            reason,
            token_file,
        } => match read_token(token_file) {
            Ok(token) => Request::ApprovalsDeny { id, reason, token },
            Err(e) => return crate::fail(e),
        },
    };
    let is_list = matches!(request, Request::ApprovalsList { .. });
    match call(runtime, socket, &request) {
        Ok(result) => {
            match output {
                Output::Json => println!("{result}"),
                Output::Table if is_list => print_approvals(&result, true),
                Output::Table => println!(
                    "{}",
                    serde_json::to_string_pretty(&result).unwrap_or_default()
                ),
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// Prints pending approvals as they appear, until interrupted.
fn watch(
    runtime: &tokio::runtime::Runtime,
    socket: &std::path::Path,
    output: Output,
    all: bool,
) -> ExitCode {
    let mut seen = HashSet::new();
    let mut header = true;
    loop {
        let list = match call(runtime, socket, &Request::ApprovalsList { all }) {
            Ok(list) => list,
            Err(e) => return fail(e),
        };
        let mut fresh: Vec<Value> = list
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| seen.insert(a["id"].as_str().unwrap_or_default().to_owned()))
            .cloned()
            .collect();
        fresh.reverse(); // oldest first, as they came
        for approval in &fresh {
            match output {
                Output::Json => println!("{approval}"),
                Output::Table => {
                    print_approvals(&Value::Array(vec![approval.clone()]), header);
                    header = false;
                }
            }
        }
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Text for the terminal: what callers chose (tool names, subjects, arguments) may carry
/// control characters, which would let them rewrite what an approver sees.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect()
}

fn print_approvals(list: &Value, header: bool) {
    if header {
        println!(
            "{:<16} {:<9} {:<20} {:<12} {:<20} {:<20} ARGUMENTS",
            "ID", "STATE", "SUBJECT", "SERVER", "TOOL", "RULE"
        );
    }
    for a in list.as_array().into_iter().flatten() {
        let s = |k: &str| printable(a[k].as_str().unwrap_or("-"));
        let mut args = s("arguments");
        if args.chars().count() > 60 {
            args = args.chars().take(59).collect::<String>() + "…";
        }
        println!(
            "{:<16} {:<9} {:<20} {:<12} {:<20} {:<20} {}",
            s("id"),
            s("state"),
            s("subject"),
            s("server"),
            s("tool"),
            s("rule"),
            args
        );
    }
}

pub fn grants(
    runtime: &tokio::runtime::Runtime,
    socket: &std::path::Path,
    output: Output,
    command: GrantsCommand,
) -> ExitCode {
    let request = match command {
        GrantsCommand::List => Request::GrantsList,
        GrantsCommand::Revoke { id, token_file } => match read_token(token_file) {
            Ok(token) => Request::GrantsRevoke { id, token },
            Err(e) => return crate::fail(e),
        },
    };
    let is_list = matches!(request, Request::GrantsList);
    match call(runtime, socket, &request) {
        Ok(result) => {
            match output {
                Output::Json => println!("{result}"),
                Output::Table if is_list => {
                    println!(
                        "{:<16} {:<20} {:<12} {:<24} {:<16} EXPIRES_MS",
                        "ID", "SUBJECT", "SERVER", "TOOLS", "APPROVAL"
                    );
                    for g in result.as_array().into_iter().flatten() {
                        let tools: Vec<&str> = g["tools"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_str)
                            .collect();
                        let s = |k: &str| printable(g[k].as_str().unwrap_or("-"));
                        println!(
                            "{:<16} {:<20} {:<12} {:<24} {:<16} {}",
                            s("id"),
                            s("subject"),
                            s("server"),
                            printable(&tools.join(",")),
                            s("approval"),
                            g["expires_ms"]
                        );
                    }
                }
                Output::Table => println!("revoked {}", result["id"].as_str().unwrap_or("-")),
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_do_not_reach_the_terminal() {
        let shown = super::printable("drop\x1b[2K\rsafe_tool\u{9b}31m");
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert!(shown.contains("safe_tool"));
    }
}
