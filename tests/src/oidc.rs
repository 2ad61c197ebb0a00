//! A real OIDC provider for the identity tests (`peers/oidc_provider.mjs`, npm
//! `oidc-provider`), tokens from it with the client_credentials grant, and the matrix of
//! forged and broken tokens (`peers/bad_tokens.mjs`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use std::fs;

use crate::mcp::{
    mcp_client_py_with, mcp_server, node_bin, node_peers_dir, peers_venv_python, spawn_until, Era,
    McpTransport, Stream, TestCa,
};
use crate::{gateway_config, run, Cgroup, Gateway, Netns, Proc, TempDir, NOBODY};

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

pub const TARGET: &str = "10.0.3.17:8443";
pub const URL: &str = "https://10.0.3.17:8443/mcp";
pub const IDP_PORT: u16 = 9450;
pub const AUDIENCE: &str = "mcp-gateway";

/// A gateway that requires tokens from a real OIDC provider, the Python SDK server behind
/// it, and a client bundle trusting both.
pub struct OidcWorld {
    pub gw: Gateway,
    pub idp: OidcProvider,
    /// Trusted by clients: the gateway's host CA and the test CA (the provider's TLS).
    pub bundle: PathBuf,
    /// The test CA (the provider's and the MCP server's TLS).
    pub ca: TestCa,
    pub _server: Option<Proc>,
    pub tmp: TempDir,
    pub cg: Cgroup,
    pub ns: Netns,
}

impl OidcWorld {
    /// `rest`: policy and other sections of the configuration.
    pub fn start(clients: &[OidcClient], rest: &str) -> Self {
        let (world, server) = Self::start_with(
            clients,
            |ns, ca, _| {
                mcp_server(ns, TARGET, McpTransport::StreamableHttp, Some(ca)).expect("MCP server")
            },
            |_| rest.to_owned(),
        );
        Self {
            _server: Some(server),
            ..world
        }
    }

    /// Like `start`, with the peers behind the gateway started by `setup` (in the namespace,
    /// with the test CA naming 10.0.3.17 and 127.0.0.1, and the temp dir), which must serve
    /// MCP on `TARGET`; `rest` writes the rest of the configuration knowing what `setup` made.
    /// The gateway starts after `setup`, in the environment it leaves.
    pub fn start_with<T>(
        clients: &[OidcClient],
        setup: impl FnOnce(&Netns, &TestCa, &std::path::Path) -> T,
        rest: impl FnOnce(&T) -> String,
    ) -> (Self, T) {
        let ns = Netns::new().expect("netns");
        let cg = Cgroup::new().expect("cgroup");
        let tmp = TempDir::new().expect("temp dir");
        let ca = TestCa::new(tmp.path(), &["mcp.test", "10.0.3.17", "127.0.0.1"]).expect("test CA");
        let idp = OidcProvider::start(&ns, tmp.path(), &ca, IDP_PORT, AUDIENCE, clients, "key-1")
            .expect("OIDC provider");
        let peers = setup(&ns, &ca, tmp.path());
        let servers = format!(
            r#"[[servers]]
name    = "mcp"
match   = ["{TARGET}"]
ca_file = {ca:?}

[[identity.oidc]]
issuer    = "{issuer}"
# The SDK's own OAuth flow asks for a token for the server's URL (RFC 8707 resource).
audiences  = ["{AUDIENCE}", "{URL}"]
# The provider signs RS256; PS256 with the same key is refused by this allow-list.
algorithms = ["RS256"]
ca_file    = {ca:?}
{rest}"#,
            ca = ca.ca_pem.display().to_string(),
            issuer = idp.issuer,
            rest = rest(&peers),
        );
        let gw = Gateway::start(&ns, Some(&cg), &gateway_config(&cg, "open", &servers))
            .expect("gateway");
        let mut pem = gw.cli_ok(&["ca", "export"]).stdout;
        pem.extend(fs::read(&ca.ca_pem).expect("test CA"));
        let bundle = tmp.path().join("bundle.pem");
        fs::write(&bundle, pem).expect("bundle");
        let world = Self {
            gw,
            idp,
            bundle,
            ca,
            _server: None,
            tmp,
            cg,
            ns,
        };
        (world, peers)
    }

    pub fn token(&self, client: &OidcClient) -> String {
        self.idp.token(&self.ns, client).expect("token")
    }

    /// The Python SDK client, unmodified, as uid 65534 through the redirect.
    pub fn client(&self, extra: &[&str]) -> anyhow::Result<Value> {
        self.client_at(URL, extra)
    }

    /// The Python SDK client for another server URL.
    pub fn client_at(&self, url: &str, extra: &[&str]) -> anyhow::Result<Value> {
        mcp_client_py_with(
            self.cg.cmd(&self.ns, Some(NOBODY), peers_venv_python()),
            url,
            McpTransport::StreamableHttp,
            Era::Session,
            Some(&self.bundle),
            extra,
        )
    }

    /// Runs steps in one session with `token`; each step's outcome.
    pub fn steps(&self, token: &str, steps: Value) -> Vec<Value> {
        self.steps_at(URL, token, steps)
    }

    /// `steps` against another server URL.
    pub fn steps_at(&self, url: &str, token: &str, steps: Value) -> Vec<Value> {
        let steps = steps.to_string();
        let v = self
            .client_at(url, &["--bearer", token, "--steps", &steps])
            .unwrap_or_else(|e| panic!("client: {e:#}\n--- gateway log ---\n{}", self.gw.log()));
        v["steps"].as_array().expect("steps").clone()
    }

    /// A raw MCP initialize POST through the redirect with `authorization` (curl, as uid
    /// 65534): the HTTP status, headers and body.
    pub fn raw_post(&self, authorization: Option<&str>) -> (u16, String, String) {
        let dir = self.tmp.path();
        let (headers, body) = (dir.join("curl-headers"), dir.join("curl-body"));
        let mut cmd = self.cg.cmd(&self.ns, None, "curl");
        cmd.args(["-sS", "-m", "10", "-X", "POST"])
            .arg("--cacert")
            .arg(&self.bundle)
            .args(["-H", "content-type: application/json"])
            .args(["-H", "accept: application/json, text/event-stream"])
            .arg("-D")
            .arg(&headers)
            .arg("-o")
            .arg(&body)
            .args(["-w", "%{http_code}"])
            .args(["--data", r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}"#]);
        if let Some(a) = authorization {
            cmd.args(["-H", &format!("authorization: {a}")]);
        }
        cmd.arg(URL);
        let out = cmd.output().expect("curl");
        let status = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        let mut body = fs::read_to_string(body).unwrap_or_default();
        if status == 0 {
            body = format!(
                "curl failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        (
            status,
            fs::read_to_string(headers).unwrap_or_default(),
            body,
        )
    }
}

/// A step's JSON-RPC error: code and the rule that refused.
pub fn error_rule(step: &Value) -> (i64, &str) {
    (
        step["error"]["code"].as_i64().unwrap_or(0),
        step["error"]["data"]["rule"].as_str().unwrap_or("-"),
    )
}

/// A `list` step's tool names.
pub fn tools(step: &Value) -> Vec<&str> {
    step["tools"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}
