//! Explicit mode: no kernel help. Each server has its own listen address, so the listen
//! address an accepted connection arrived on says where it goes.

use std::{collections::HashMap, net::SocketAddr};

use super::{ClientAddr, Destination, InterceptError, ListenAddr, OrigDst, OrigDstSource};
use crate::config::{MatchAddr, ServerConfig};

pub struct ExplicitOrigDst {
    by_listen: HashMap<SocketAddr, (Destination, String)>,
}

impl ExplicitOrigDst {
    pub fn new(servers: &[ServerConfig]) -> Self {
        let by_listen = servers
            .iter()
            .filter_map(|s| {
                let destination = match (&s.upstream, s.matches.first()) {
                    (Some(up), _) => Destination::Name(up.clone()),
                    (None, Some(MatchAddr::Socket(a))) => Destination::Socket(*a),
                    (None, Some(MatchAddr::Host(h))) => Destination::Name(h.clone()),
                    _ => return None, // rejected by config validation
                };
                Some((s.listen?, (destination, s.name.clone())))
            })
            .collect();
        Self { by_listen }
    }

    pub fn listen_addrs(&self) -> Vec<SocketAddr> {
        let mut addrs: Vec<_> = self.by_listen.keys().copied().collect();
        addrs.sort();
        addrs
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
