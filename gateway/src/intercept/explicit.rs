//! Explicit mode: no kernel help. Each server has its own listen address, so the listen
//! address an accepted connection arrived on says where it goes.

use std::{collections::HashMap, net::SocketAddr};

use super::{ClientAddr, Destination, InterceptError, ListenAddr, OrigDst, OrigDstSource};

pub struct ExplicitOrigDst {
    by_listen: HashMap<SocketAddr, (Destination, String)>,
}

impl ExplicitOrigDst {
    /// `servers`: (listen address, where it leads, server name) per server.
    pub fn new(servers: impl IntoIterator<Item = (SocketAddr, Destination, String)>) -> Self {
        let by_listen = servers
            .into_iter()
            .map(|(listen, destination, name)| (listen, (destination, name)))
            .collect();
        Self { by_listen }
    }
}

impl OrigDstSource for ExplicitOrigDst {
    fn orig_dst(&self, client: ClientAddr, listen: ListenAddr) -> Result<OrigDst, InterceptError> {
        let (destination, server) =
            self.by_listen
                .get(&listen.0)
                .cloned()
                .ok_or(InterceptError::UnknownConnection {
                    client: client.0,
                    listen: listen.0,
                })?;
        Ok(OrigDst {
            destination,
            process: None,
            server: Some(server),
        })
    }
}
