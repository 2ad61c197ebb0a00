//! The admin commands of the `mcpgw` binary: each talks to the daemon over the admin socket.

pub mod approvals;
pub mod policy;
pub mod sessions;
