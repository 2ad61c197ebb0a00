//! MCP on the wire: JSON-RPC messages as typed values, Server-Sent Events parsed as they
//! arrive, the gateway session a message belongs to, and the interceptor chain every message
//! passes through.

pub mod interceptor;
pub mod jsonrpc;
pub mod sse;

pub use interceptor::{Chain, Direction, LoggingInterceptor};
pub use jsonrpc::{McpMessage, RpcError};
