//! A real OIDC provider for the identity tests (`peers/oidc_provider.mjs`, npm
//! `oidc-provider`), tokens from it with the client_credentials grant, and the matrix of
//! forged and broken tokens (`peers/bad_tokens.mjs`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::mcp::{node_bin, node_peers_dir, spawn_until, Stream, TestCa};
use crate::{run, Netns, Proc};

/// A client the provider knows, with the claims its tokens carry.
pub struct OidcClient<'a> {
    pub id: &'a str,
    pub secret: &'a str,
    pub groups: &'a [&'a str],
    pub email: &'a str,
}

pub struct OidcProvider {
    proc: Option<Proc>,
    pub issuer: String,
    port: u16,
    dir: PathBuf,
    ca: TestCa,
    audience: String,
    clients: PathBuf,
}

impl OidcProvider {
    /// Starts the provider in `ns` on `https://127.0.0.1:PORT` with a TLS leaf from `ca`
    /// (which must name 127.0.0.1), signing with the key in `dir/KEY_NAME.json` (created
    /// when missing).
    pub fn start(
        ns: &Netns,
        dir: &Path,
        ca: &TestCa,
        port: u16,
        audience: &str,
        clients: &[OidcClient],
        key_name: &str,
    ) -> Result<Self> {
        let clients_file = dir.join("oidc-clients.json");
        let list: Vec<Value> = clients
            .iter()
            .map(|c| {
                serde_json::json!({"client_id": c.id, "client_secret": c.secret,
                                   "groups": c.groups, "email": c.email})
            })
            .collect();
        std::fs::write(&clients_file, serde_json::to_vec(&list)?)?;
        let mut provider = Self {
            proc: None,
            issuer: format!("https://127.0.0.1:{port}"),
            port,
            dir: dir.to_owned(),
            ca: ca.clone(),
            audience: audience.to_owned(),
            clients: clients_file,
        };
        provider.proc = Some(provider.spawn(ns, key_name)?);
        Ok(provider)
    }

    fn spawn(&self, ns: &Netns, key_name: &str) -> Result<Proc> {
        let node = node_peers_dir()?;
        let mut cmd = ns.cmd(node_bin());
        cmd.arg(node.join("oidc_provider.mjs"))
            .args(["--port", &self.port.to_string(), "--issuer", &self.issuer])
            .arg("--tls-cert")
            .arg(&self.ca.server_cert)
            .arg("--tls-key")
            .arg(&self.ca.server_key)
            .arg("--key-file")
            .arg(self.key_file(key_name))
            .args(["--audience", &self.audience])
            .arg("--clients")
            .arg(&self.clients)
            .current_dir(node);
        spawn_until(cmd, Stream::Stdout, |l| l == "ready", "oidc-provider")
    }

    pub fn key_file(&self, key_name: &str) -> PathBuf {
        self.dir.join(format!("{key_name}.json"))
    }

    /// Key rotation as an IdP does it: the provider comes back signing with another key
    /// (and publishing only that one).
    pub fn restart_with_key(&mut self, ns: &Netns, key_name: &str) -> Result<()> {
        self.stop();
        self.proc = Some(self.spawn(ns, key_name)?);
        Ok(())
    }

    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// An access token for `client` (client_credentials), fetched from inside `ns`.
    pub fn token(&self, ns: &Netns, client: &OidcClient) -> Result<String> {
        let node = node_peers_dir()?;
        let out = run(ns
            .cmd(node_bin())
            .arg(node.join("oidc_token.mjs"))
            .args(["--issuer", &self.issuer, "--client-id", client.id])
            .args(["--client-secret", client.secret])
            .arg("--ca")
            .arg(&self.ca.ca_pem)
            .current_dir(node))
        .context("oidc_token.mjs")?;
        let token = String::from_utf8(out.stdout)?.trim().to_owned();
        if token.split('.').count() != 3 {
            bail!("not a JWT: {token:?}");
        }
        Ok(token)
    }

    /// Tokens a correct validator must refuse, by name, forged with the provider's own
    /// signing key where that makes the forgery meaningful; plus `good`, a token built
    /// the same way that must pass (so the matrix shows the refusals are about the flaw).
    pub fn bad_tokens(&self, key_name: &str) -> Result<(Vec<(String, String)>, String)> {
        let node = node_peers_dir()?;
        let script = |good: bool| -> Result<String> {
            let mut cmd = Command::new(node_bin());
            cmd.arg(node.join("bad_tokens.mjs"))
                .arg("--key-file")
                .arg(self.key_file(key_name))
                .args(["--issuer", &self.issuer, "--audience", &self.audience])
                .current_dir(node);
            if good {
                cmd.arg("--good");
            }
            Ok(String::from_utf8(run(&mut cmd)?.stdout)?)
        };
        let list: Vec<Value> = serde_json::from_str(&script(false)?)?;
        let bad = list
            .iter()
            .map(|t| {
                (
                    t["name"].as_str().unwrap_or("?").to_owned(),
                    t["token"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        Ok((bad, script(true)?.trim().to_owned()))
    }
}
