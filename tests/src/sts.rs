//! AWS STS for the credential tests: moto's server (`moto_server`, PyPI `moto[server]`) inside the
//! test's network namespace, read-back of the credentials it issued, the IAM world in which
//! AssumeRole gets a real `AccessDenied` (`peers/moto_setup.py`), and the MCP test server behind
//! a SigV4 gate that only answers calls signed with those credentials (`peers/sigv4_gate.py`).
//!
//! What moto keeps of an AssumeRole in `/moto-api/data.json` is `sts.AssumedRole[]`, one object
//! per issued credential, oldest first, with exactly these keys:
//!
//! | key | what |
//! |---|---|
//! | `access_key_id`, `secret_access_key`, `session_token` | the credential |
//! | `role_arn` | the RoleArn asked for |
//! | `session_name` | RoleSessionName |
//! | `arn` | `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION` |
//! | `user_id` | `ROLEID:SESSION` (the role's id if the role exists, else random) |
//! | `policy` | the inline session Policy, verbatim (a JSON string), or null |
//! | `external_id`, `account_id`, `region_name`, `partition` | |
//!
//! moto 5.2 ignores SourceIdentity, Tags, TransitiveTagKeys and the WebIdentityToken (not
//! stored, not in the response), and its `expiration` (a datetime) does not serialize, so none
//! of them is in data.json. They come from moto's request recorder, which [`Moto::start`] turns
//! on (`MOTO_ENABLE_RECORDING=1`, one JSON line per request: `method`, `url`, `headers`,
//! `body`): [`Moto::issued`] joins each data.json record with the recorded call (same RoleArn,
//! RoleSessionName and Policy, oldest unused first) and returns [`Issued`]. Its `expires_at` is
//! the call's X-Amz-Date plus DurationSeconds (3600 if not sent), at most about a second before
//! moto's own expiration; an unsigned call (AssumeRoleWithWebIdentity) has no X-Amz-Date, so
//! there it is `None`. moto does not validate DurationSeconds (1 is accepted; STS wants 900 to
//! 43200) and honours it in the response's Expiration.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

use crate::mcp::{mcp_scripts_dir, mcp_server_with, peers_install_dir, McpTransport, TestCa};
use crate::{wait_for, Netns, Proc, TempDir};

/// A running `moto_server -H 127.0.0.1 -p PORT` inside a test's namespace, recording every
/// request into its temp dir. Killed on drop.
pub struct Moto {
    proc: Option<Proc>,
    port: u16,
    dir: TempDir,
}

/// The gateway's own AWS identity in the AccessDenied world of [`Moto::start_with_auth`]: an IAM
/// user's long-lived key that may assume `role_allowed_arn` (with session tags and source
/// identity) and not `role_denied_arn`.
#[derive(Clone, Debug)]
pub struct GatewayKey {
    pub access_key_id: String,
    pub secret: String,
    pub user_arn: String,
    pub role_allowed_arn: String,
    pub role_denied_arn: String,
    pub region: String,
}

impl GatewayKey {
    /// The AWS SDK default chain's environment variables for this key.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", self.access_key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret.clone()),
            ("AWS_REGION", self.region.clone()),
        ]
    }
}

/// One temporary credential moto issued, with what the STS call asked for.
#[derive(Clone, Debug)]
pub struct Issued {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    pub role_arn: String,
    pub session_name: String,
    /// `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`.
    pub assumed_role_arn: String,
    pub account_id: String,
    /// The inline session policy exactly as sent.
    pub policy: Option<String>,
    pub external_id: Option<String>,
    /// Whether the STS request was found in the recording (else the fields below are empty).
    pub recorded: bool,
    /// `AssumeRole` or `AssumeRoleWithWebIdentity`.
    pub action: Option<String>,
    pub source_identity: Option<String>,
    /// Session tags in the order sent.
    pub tags: Vec<(String, String)>,
    pub transitive_tag_keys: Vec<String>,
    /// DurationSeconds as sent (`None`: not sent, moto used 3600).
    pub duration_seconds: Option<u64>,
    /// X-Amz-Date of the STS call (`None` for an unsigned call).
    pub requested_at: Option<SystemTime>,
    /// `requested_at` + duration.
    pub expires_at: Option<SystemTime>,
    pub web_identity_token: Option<String>,
    /// The access key that signed the STS call (the gateway's own identity).
    pub caller_access_key_id: Option<String>,
    /// The whole record from `moto_setup.py issued`, `params` (every parameter sent) included.
    pub raw: Value,
}

impl Issued {
    fn from_json(v: &Value) -> Result<Self> {
        let s = |k: &str| v[k].as_str().map(str::to_owned);
        let req = |k: &str| s(k).ok_or_else(|| anyhow!("issued credential without {k}: {v}"));
        let time = |k: &str| v[k].as_u64().map(|t| UNIX_EPOCH + Duration::from_secs(t));
        let strings = |k: &str| -> Vec<String> {
            v[k].as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let tags = v["tags"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| Some((t[0].as_str()?.to_owned(), t[1].as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            access_key_id: req("access_key_id")?,
            secret_access_key: req("secret_access_key")?,
            session_token: req("session_token")?,
            role_arn: req("role_arn")?,
            session_name: req("session_name")?,
            assumed_role_arn: req("assumed_role_arn")?,
            account_id: s("account_id").unwrap_or_default(),
            policy: s("policy"),
            external_id: s("external_id"),
            recorded: v["recorded"].as_bool().unwrap_or(false),
            action: s("action"),
            source_identity: s("source_identity"),
            tags,
            transitive_tag_keys: strings("transitive_tag_keys"),
            duration_seconds: v["duration_seconds"].as_u64(),
            requested_at: time("requested_at"),
            expires_at: time("expires_at"),
            web_identity_token: s("web_identity_token"),
            caller_access_key_id: s("caller_access_key_id"),
            raw: v.clone(),
        })
    }

    /// The value of session tag `key`.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The session policy parsed as JSON.
    pub fn policy_json(&self) -> Option<Value> {
        serde_json::from_str(self.policy.as_deref()?).ok()
    }

    /// A parameter of the STS call as sent, e.g. `"DurationSeconds"` or `"Tags.member.1.Key"`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.raw["params"][name].as_str()
    }
}

/// `<peers>/venv/bin/NAME`, or an error telling how to install it.
fn venv_bin(name: &str) -> Result<PathBuf> {
    let p = peers_install_dir().join("venv/bin").join(name);
    if !p.exists() {
        bail!(
            "{} is missing: install the test peers with `cargo xtask setup`",
            p.display()
        );
    }
    Ok(p)
}

/// Runs a command, returning its stdout; an error carries its stderr.
fn output(mut cmd: Command, what: &str) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("spawn {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Moto {
    /// Starts moto's server on 127.0.0.1:`port` inside `ns` (IAM authorization off: any key
    /// may do anything, as moto does by default) and waits until it listens.
    pub fn start(ns: &Netns, port: u16) -> Result<Moto> {
        let bin = venv_bin("moto_server")?;
        let dir = TempDir::new()?;
        let log = dir.path().join("moto.log");
        let mut cmd = ns.cmd(bin);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_ENABLE_RECORDING", "1")
            .env("MOTO_RECORDER_FILEPATH", dir.path().join("recording.jsonl"))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(fs::File::create(&log)?)
            .stderr(fs::File::create(dir.path().join("moto.err"))?);
        let child = cmd.spawn().context("spawn moto_server")?;
        let mut moto = Moto {
            proc: Some(Proc { child }),
            port,
            dir,
        };
        // Werkzeug says " * Running on http://127.0.0.1:PORT" on stderr once it listens.
        let needle = format!("Running on http://127.0.0.1:{port}");
        let ready = wait_for(Duration::from_secs(30), || {
            if moto.proc.as_mut().is_some_and(Proc::exited) {
                return Some(false);
            }
            moto.log().contains(&needle).then_some(true)
        });
        match ready {
            Some(true) => Ok(moto),
            Some(false) => bail!("moto_server exited during startup:\n{}", moto.log()),
            None => bail!("moto_server did not listen within 30s:\n{}", moto.log()),
        }
    }

    /// [`Moto::start`], then the AccessDenied world (`moto_setup.py gateway-key`): an IAM user
    /// allowed sts:AssumeRole/TagSession/SetSourceIdentity on one role only, two roles trusting
    /// it, then moto's authorization switched on, so from here every call must be signed by a
    /// key moto knows, and AssumeRole on the denied role fails with `AccessDenied` (403).
    /// Unsigned AssumeRoleWithWebIdentity makes moto 500 in this mode: see [`Moto::set_auth`].
    pub fn start_with_auth(ns: &Netns, port: u16) -> Result<(Moto, GatewayKey)> {
        let moto = Self::start(ns, port)?;
        let v = moto.setup(ns, &["gateway-key"])?;
        let s = |k: &str| {
            v[k].as_str()
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("moto_setup.py gateway-key: no {k} in {v}"))
        };
        let key = GatewayKey {
            access_key_id: s("access_key_id")?,
            secret: s("secret_access_key")?,
            user_arn: s("user_arn")?,
            role_allowed_arn: s("role_allowed_arn")?,
            role_denied_arn: s("role_denied_arn")?,
            region: s("region")?,
        };
        Ok((moto, key))
    }

    /// `http://127.0.0.1:PORT` (inside the namespace).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs `moto_setup.py --endpoint URL ARGS...` in `ns` and parses its JSON.
    fn setup(&self, ns: &Netns, args: &[&str]) -> Result<Value> {
        let mut cmd = ns.cmd(venv_bin("python")?);
        cmd.arg(mcp_scripts_dir().join("moto_setup.py"))
            .arg("--endpoint")
            .arg(self.endpoint())
            .args(args);
        let out = output(cmd, &format!("moto_setup.py {}", args.join(" ")))?;
        serde_json::from_str(out.trim())
            .with_context(|| format!("moto_setup.py {args:?} printed: {out}"))
    }

    /// Turns moto's IAM authorization on (every request checked from now on) or off.
    pub fn set_auth(&self, ns: &Netns, on: bool) -> Result<()> {
        self.setup(ns, &["auth", if on { "on" } else { "off" }])
            .map(drop)
    }

    /// `/moto-api/data.json` (fetched from inside `ns`, where moto listens).
    pub fn data(&self, ns: &Netns) -> Result<Value> {
        let mut cmd = ns.cmd(venv_bin("python")?);
        cmd.arg("-c")
            .arg(
                "import sys, urllib.request\n\
                 sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())",
            )
            .arg(format!("{}/moto-api/data.json", self.endpoint()));
        let out = output(cmd, "GET /moto-api/data.json")?;
        serde_json::from_str(&out).context("data.json is not JSON")
    }

    /// The temporary credentials moto issued, oldest first, with what each call asked for
    /// (see the module doc for where each field comes from).
    pub fn issued(&self, ns: &Netns) -> Result<Vec<Issued>> {
        let v = self.setup(ns, &["issued"])?;
        v.as_array()
            .ok_or_else(|| anyhow!("moto_setup.py issued: not a list: {v}"))?
            .iter()
            .map(Issued::from_json)
            .collect()
    }

    /// The issued credential whose access key id is `akid`.
    pub fn issued_key(&self, ns: &Netns, akid: &str) -> Result<Issued> {
        self.issued(ns)?
            .into_iter()
            .find(|i| i.access_key_id == akid)
            .ok_or_else(|| anyhow!("moto issued no key {akid}"))
    }

    /// Every request moto received, raw from its recording: `{"method", "url", "headers",
    /// "body", "body_encoded"}` (the body is base64 when `body_encoded`, as it is for POSTs).
    pub fn recording(&self) -> Result<Vec<Value>> {
        let p = self.dir.path().join("recording.jsonl");
        let text = fs::read_to_string(&p).unwrap_or_default();
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).with_context(|| format!("recording line {l}")))
            .collect()
    }

    /// The AssumeRole / AssumeRoleWithWebIdentity requests moto received, failed ones
    /// included, in order: `{"action", "params" (every parameter as sent), "amz_date",
    /// "caller" (the signing access key id)}`.
    pub fn sts_calls(&self, ns: &Netns) -> Result<Vec<Value>> {
        match self.setup(ns, &["calls"])? {
            Value::Array(a) => Ok(a),
            v => bail!("moto_setup.py calls: no recording ({v}); is the recorder on?"),
        }
    }

    /// How many STS requests with `Action=action` (e.g. "AssumeRole") moto received, failed
    /// ones included: the number the cache tests count.
    pub fn sts_call_count(&self, ns: &Netns, action: &str) -> Result<usize> {
        Ok(self
            .sts_calls(ns)?
            .iter()
            .filter(|c| c["action"] == action)
            .count())
    }

    /// Kills the server (STS unreachable from now on); its records are gone with it.
    pub fn stop(&mut self) {
        self.proc = None;
    }

    /// moto's captured stdout + stderr (one access-log line per request).
    pub fn log(&self) -> String {
        let read = |n: &str| fs::read_to_string(self.dir.path().join(n)).unwrap_or_default();
        format!("{}{}", read("moto.log"), read("moto.err"))
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.proc = None;
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!(
                "--- moto_server log, last lines ({}) ---",
                self.dir.path().display()
            );
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

/// `peers/mcp_server.py` (streamable HTTP at /mcp, TLS with `ca`'s leaf) behind the SigV4 gate:
/// every request must be signed for `region`/`service` with credentials `moto` issued, else 403
/// `{"error": "unsigned" | "unknown key" | "missing token" | "bad token" | "expired" |
/// "bad signature", "detail": ..}`. Its tool `aws_caller` returns the verified identity as JSON
/// text: access_key_id, role_arn, assumed_role_arn, session_name, source_identity, tags,
/// expires_at, action.
pub fn sigv4_mcp_server(
    ns: &Netns,
    listen: &str,
    ca: &TestCa,
    moto: &Moto,
    region: &str,
    service: &str,
) -> Result<Proc> {
    sigv4_mcp_server_with(
        ns,
        listen,
        McpTransport::StreamableHttp,
        ca,
        moto,
        region,
        service,
        &[],
    )
}

/// [`sigv4_mcp_server`] with a transport of choice and extra `mcp_server.py` options.
#[allow(clippy::too_many_arguments)]
pub fn sigv4_mcp_server_with(
    ns: &Netns,
    listen: &str,
    transport: McpTransport,
    ca: &TestCa,
    moto: &Moto,
    region: &str,
    service: &str,
    extra: &[&str],
) -> Result<Proc> {
    let endpoint = moto.endpoint();
    let mut args = vec![
        "--sigv4-moto",
        endpoint.as_str(),
        "--sigv4-region",
        region,
        "--sigv4-service",
        service,
    ];
    args.extend_from_slice(extra);
    mcp_server_with(ns, listen, transport, Some(ca), &args)
}

#[cfg(test)]
mod tests {
    //! The harness itself, against the real peers: moto's AccessDenied world, what `issued`
    //! reads back, and the SigV4 gate accepting a signed call and refusing an unsigned one.

    use super::*;
    use crate::{require_root, TARGET_V4};

    /// boto3 in the namespace: AssumeRole on argv[3] (may fail), then a botocore-signed MCP
    /// `initialize` to argv[4] with the credentials; prints {"denied": .., "status": ..}.
    const CLIENT: &str = r#"
import json, sys, boto3, requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
ep, key, denied, allowed, url, ca = sys.argv[1:7]
ak, sk = key.split(":")
sts = boto3.client("sts", endpoint_url=ep, region_name="us-east-1", aws_access_key_id=ak, aws_secret_access_key=sk)
out = {}
try:
    sts.assume_role(RoleArn=denied, RoleSessionName="bob")
    out["denied"] = "allowed?!"
except ClientError as e:
    out["denied"] = e.response["Error"]["Code"]
c = sts.assume_role(RoleArn=allowed, RoleSessionName="alice-1", SourceIdentity="alice",
                    Tags=[{"Key": "user", "Value": "alice"}, {"Key": "groups", "Value": "a:b"}],
                    Policy='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}',
                    DurationSeconds=1200)["Credentials"]
body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}).encode()
req = AWSRequest(method="POST", url=url, data=body, headers={"content-type": "application/json", "accept": "application/json, text/event-stream"})
SigV4Auth(Credentials(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"]), "execute-api", "us-east-1").add_auth(req)
out["status"] = requests.post(url, data=body, headers=dict(req.headers.items()), verify=ca, timeout=10).status_code
unsigned = requests.post(url, data=body, headers={"content-type": "application/json"}, verify=ca, timeout=10)
out["unsigned"] = [unsigned.status_code, unsigned.json()]
out["key"] = c["AccessKeyId"]
print(json.dumps(out))
"#;

    #[test]
    fn moto_access_denied_issued_and_sigv4_gate() {
        if !require_root() {
            return;
        }
        let ns = Netns::new().unwrap();
        let tmp = TempDir::new().unwrap();
        let ca = TestCa::new(tmp.path(), &[TARGET_V4]).unwrap();
        let (moto, key) = Moto::start_with_auth(&ns, 5000).unwrap();
        let listen = format!("{TARGET_V4}:8443");
        let _server =
            sigv4_mcp_server(&ns, &listen, &ca, &moto, "us-east-1", "execute-api").unwrap();

        let mut cmd = ns.cmd(venv_bin("python").unwrap());
        cmd.arg("-c")
            .arg(CLIENT)
            .arg(moto.endpoint())
            .arg(format!("{}:{}", key.access_key_id, key.secret))
            .arg(&key.role_denied_arn)
            .arg(&key.role_allowed_arn)
            .arg(format!("https://{listen}/mcp"))
            .arg(&ca.ca_pem);
        let out: Value = serde_json::from_str(&output(cmd, "client").unwrap()).unwrap();
        assert_eq!(out["denied"], "AccessDenied", "{out}");
        assert_eq!(out["status"], 200, "{out}");
        assert_eq!(out["unsigned"][0], 403, "{out}");
        assert_eq!(out["unsigned"][1]["error"], "unsigned", "{out}");

        let issued = moto.issued(&ns).unwrap();
        assert_eq!(issued.len(), 1, "only the allowed call issued: {issued:?}");
        let i = &issued[0];
        assert_eq!(Some(i.access_key_id.as_str()), out["key"].as_str());
        assert!(i.access_key_id.starts_with("ASIA"), "{i:?}");
        assert_eq!(i.role_arn, key.role_allowed_arn);
        assert_eq!(i.session_name, "alice-1");
        assert!(i
            .assumed_role_arn
            .ends_with(":assumed-role/mcpgw-allowed/alice-1"));
        assert_eq!(i.action.as_deref(), Some("AssumeRole"));
        assert_eq!(i.source_identity.as_deref(), Some("alice"));
        assert_eq!(i.tag("user"), Some("alice"));
        assert_eq!(i.tag("groups"), Some("a:b"));
        assert_eq!(i.duration_seconds, Some(1200));
        assert_eq!(
            i.policy_json().unwrap()["Statement"][0]["Action"],
            "s3:GetObject"
        );
        assert_eq!(
            i.caller_access_key_id.as_deref(),
            Some(key.access_key_id.as_str())
        );
        let (at, exp) = (i.requested_at.unwrap(), i.expires_at.unwrap());
        assert_eq!(exp.duration_since(at).unwrap(), Duration::from_secs(1200));
        let age = SystemTime::now().duration_since(at).unwrap_or_default();
        assert!(age < Duration::from_secs(60), "requested_at {age:?} ago");
        assert_eq!(
            moto.sts_call_count(&ns, "AssumeRole").unwrap(),
            2,
            "denied + allowed"
        );

        let data = moto.data(&ns).unwrap();
        assert_eq!(
            data["sts"]["AssumedRole"][0]["access_key_id"].as_str(),
            Some(i.access_key_id.as_str())
        );
    }

    /// Unsigned AssumeRoleWithWebIdentity, as SDKs send it: moto takes any token and records
    /// nothing of it but in the recording; no X-Amz-Date, so no expiry is known.
    const WEB_IDENTITY: &str = r#"
import json, sys, boto3
from botocore import UNSIGNED
from botocore.config import Config
sts = boto3.client("sts", endpoint_url=sys.argv[1], region_name="us-east-1", config=Config(signature_version=UNSIGNED))
c = sts.assume_role_with_web_identity(RoleArn="arn:aws:iam::123456789012:role/web", RoleSessionName="carol",
                                      WebIdentityToken="not-even-a-jwt", DurationSeconds=900)
print(json.dumps({"key": c["Credentials"]["AccessKeyId"]}))
"#;

    #[test]
    fn moto_web_identity_is_recorded() {
        if !require_root() {
            return;
        }
        let ns = Netns::new().unwrap();
        let mut moto = Moto::start(&ns, 5000).unwrap();
        let mut cmd = ns.cmd(venv_bin("python").unwrap());
        cmd.arg("-c").arg(WEB_IDENTITY).arg(moto.endpoint());
        let out: Value = serde_json::from_str(&output(cmd, "web identity").unwrap()).unwrap();
        let i = moto.issued_key(&ns, out["key"].as_str().unwrap()).unwrap();
        assert_eq!(i.action.as_deref(), Some("AssumeRoleWithWebIdentity"));
        assert_eq!(i.web_identity_token.as_deref(), Some("not-even-a-jwt"));
        assert_eq!(i.session_name, "carol");
        assert_eq!(i.duration_seconds, Some(900));
        assert_eq!((i.requested_at, i.expires_at), (None, None));
        assert_eq!(i.caller_access_key_id, None);
        assert_eq!(
            moto.sts_call_count(&ns, "AssumeRoleWithWebIdentity")
                .unwrap(),
            1
        );
        moto.set_auth(&ns, true).unwrap();
        moto.set_auth(&ns, false).unwrap();
        moto.stop();
        assert!(moto.data(&ns).is_err(), "stopped moto still answers");
    }
}
