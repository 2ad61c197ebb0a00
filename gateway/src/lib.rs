//! mcpgw, the library behind the `mcpgw` binary. Modules follow the data path:
//! intercept → tls → http → mcp (interceptor chain) → proxy, with config, admin and daemon
//! around them.
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
