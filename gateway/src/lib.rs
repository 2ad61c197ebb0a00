//! mcpgw, the library behind the `mcpgw` binary. A connection enters at `proxy` (accepted,
//! its original destination looked up in `intercept`), `http` terminates TLS and serves each
//! request: the caller (`identity`), every JSON-RPC message through the `mcp` chain (policy,
//! static keys, masking, and the recording observing each outcome), the approval hold
//! (`approval`), AWS credentials (`creds`), the upstream (`client`). Modules import only
//! modules in layers below their own: see README "Layout" and `tests/layering.rs`.
#![forbid(unsafe_code)]

pub mod addr;
pub mod admin;
pub mod approval;
pub mod body;
pub mod client;
pub mod clock;
pub mod config;
pub mod creds;
pub mod daemon;
pub mod decision;
pub mod glob;
pub mod http;
pub mod identity;
pub mod intercept;
pub mod keyfile;
pub mod mask;
pub mod mcp;
pub mod metrics;
pub mod notify;
pub mod policy;
pub mod proxy;
pub mod record;
pub mod tls;
