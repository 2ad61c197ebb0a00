//! The admin socket: one JSON request per line, one JSON response per line. The daemon
//! authorizes every connection by the peer's credentials (SO_PEERCRED): root and members of
//! `gateway.admin_group` only.

use std::{
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    sync::Arc,
};

use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    net::{UnixListener, UnixStream},
};

/// Largest request accepted on the admin socket.
const MAX_REQUEST: usize = 64 * 1024;

/// What `sessions export` writes a recorded session as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// One JSON object per event.
    Jsonl,
    /// A page to read in a browser.
    Html,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Status,
    CaExport,
    InterceptList,
    InterceptAdd {
        entry: String,
    },
    InterceptRemove {
        entry: String,
    },
    SessionsList {
        subject: Option<String>,
        server: Option<String>,
        /// Sessions started within this many seconds.
        since_secs: Option<u64>,
        decision: Option<String>,
    },
    SessionsShow {
        id: String,
    },
    /// `id: None`: every session.
    SessionsVerify {
        id: Option<String>,
    },
    SessionsExport {
        id: String,
        format: ExportFormat,
    },
    ApprovalsList {
        #[serde(default)]
        all: bool,
    },
    ApprovalsShow {
        id: String,
    },
    ApprovalsApprove {
        id: String,
        reason: Option<String>,
        /// An OIDC token naming the approver (else the Unix user decides).
        token: Option<String>,
    },
    ApprovalsDeny {
        id: String,
        reason: String,
        token: Option<String>,
    },
    GrantsList,
    GrantsRevoke {
        id: String,
        token: Option<String>,
    },
    PolicyReload,
    PolicyExplain {
        query: ExplainQuery,
    },
}

/// A hypothetical call for `mcpgw policy explain`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExplainQuery {
    pub subject: String,
    #[serde(default)]
    pub groups: Vec<String>,
    pub email: Option<String>,
    pub uid: Option<u32>,
    pub exe: Option<String>,
    pub unit: Option<String>,
    pub server: String,
    pub method: Option<String>,
    pub tool: Option<String>,
    /// JSON text.
    pub arguments: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot reach the gateway at {path}: {source} (is `mcpgw serve` running? see --socket)"
    )]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("admin socket: {0}")]
    Protocol(String),
    #[error("{0}")]
    Refused(String),
}

/// Why the daemon could not carry out a request; its text is the reply's `error`, as the
/// CLI prints it.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// Refused as worded by the handler (bad argument, nothing to do, feature off).
    #[error("{0}")]
    Refused(String),
    /// A stage's own error, worded as the stage words it (kept whole, for its sources).
    #[error(transparent)]
    Failed(Box<dyn std::error::Error + Send + Sync>),
}

impl CommandError {
    pub fn failed(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Failed(Box::new(error))
    }
}

impl From<String> for CommandError {
    fn from(message: String) -> Self {
        Self::Refused(message)
    }
}

impl From<&str> for CommandError {
    fn from(message: &str) -> Self {
        Self::Refused(message.to_owned())
    }
}

/// Who sent an admin request (SO_PEERCRED).
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
}

/// What the daemon does with a request.
pub trait Handler: Send + Sync + 'static {
    fn handle(
        &self,
        request: Request,
        caller: Caller,
    ) -> impl std::future::Future<Output = Result<serde_json::Value, CommandError>> + Send;
}

pub async fn bind(path: &Path, admin_group: &str) -> Result<UnixListener, AdminError> {
    let io = |what, source| AdminError::Io {
        what,
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io("creating directory for", e))?;
    }
    // A socket file left by a gateway that died: nobody answers on it any more.
    if path.exists() && UnixStream::connect(path).await.is_err() {
        std::fs::remove_file(path).map_err(|e| io("removing stale socket", e))?;
    }
    let listener = UnixListener::bind(path).map_err(|e| io("binding admin socket", e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| io("setting mode of", e))?;
    match nix::unistd::Group::from_name(admin_group) {
        Ok(Some(group)) => {
            nix::unistd::chown(path, None, Some(group.gid)).map_err(|e| io("chown", e.into()))?
        }
        _ => tracing::info!(
            admin_group,
            "admin group does not exist; only root may use the admin socket"
        ),
    }
    Ok(listener)
}

pub async fn serve<H: Handler>(listener: UnixListener, admin_group: String, handler: Arc<H>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "admin accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let handler = handler.clone();
        let admin_group = admin_group.clone();
        tokio::spawn(async move {
            if let Err(error) = serve_one(stream, &admin_group, &*handler).await {
                tracing::debug!(%error, "admin connection ended");
            }
        });
    }
}

async fn serve_one<H: Handler>(
    stream: UnixStream,
    admin_group: &str,
    handler: &H,
) -> std::io::Result<()> {
    let cred = stream.peer_cred()?;
    let (read, mut write) = stream.into_split();
    let response = if !authorized(cred.uid(), cred.gid(), admin_group) {
        tracing::warn!(uid = cred.uid(), gid = cred.gid(), "admin request refused");
        Response::err(format!(
            "permission denied: uid {} is neither root nor in group {admin_group}",
            cred.uid()
        ))
    } else {
        let mut line = String::new();
        let mut reader = BufReader::new(read).take(MAX_REQUEST as u64);
        reader.read_line(&mut line).await?;
        match serde_json::from_str::<Request>(&line) {
            Ok(request) => {
                // Logged without tokens an approver may pass.
                let mut logged = serde_json::to_value(&request).unwrap_or_default();
                if let Some(token) = logged.get_mut("token").filter(|t| !t.is_null()) {
                    *token = "(redacted)".into();
                }
                tracing::info!(uid = cred.uid(), request = %logged, "admin request");
                let caller = Caller {
                    uid: cred.uid(),
                    gid: cred.gid(),
                };
                match handler.handle(request, caller).await {
                    Ok(result) => Response {
                        ok: true,
                        result: Some(result),
                        error: None,
                    },
                    Err(error) => Response::err(error.to_string()),
                }
            }
            Err(e) => Response::err(format!("malformed request: {e}")),
        }
    };
    let mut text = serde_json::to_vec(&response).map_err(std::io::Error::other)?;
    text.push(b'\n');
    write.write_all(&text).await?;
    write.shutdown().await
}

impl Response {
    fn err(error: String) -> Self {
        Self {
            ok: false,
            result: None,
            error: Some(error),
        }
    }
}

fn authorized(uid: u32, gid: u32, admin_group: &str) -> bool {
    use nix::unistd::{getgrouplist, Gid, Group, Uid, User};
    if uid == 0 {
        return true;
    }
    let Ok(Some(group)) = Group::from_name(admin_group) else {
        return false;
    };
    if group.gid == Gid::from_raw(gid) {
        return true;
    }
    let Ok(Some(user)) = User::from_uid(Uid::from_raw(uid)) else {
        return false;
    };
    if group.mem.contains(&user.name) {
        return true;
    }
    let Ok(name) = std::ffi::CString::new(user.name) else {
        return false;
    };
    getgrouplist(&name, user.gid)
        .map(|groups| groups.contains(&group.gid))
        .unwrap_or(false)
}

/// Sends one request to the daemon and returns its result.
pub async fn call(socket: &Path, request: &Request) -> Result<serde_json::Value, AdminError> {
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|source| AdminError::Connect {
            path: socket.to_owned(),
            source,
        })?;
    let (read, mut write) = stream.into_split();
    let mut text = serde_json::to_vec(request).map_err(|e| AdminError::Protocol(e.to_string()))?;
    text.push(b'\n');
    let proto = |e: std::io::Error| AdminError::Protocol(e.to_string());
    write.write_all(&text).await.map_err(proto)?;
    let mut line = String::new();
    BufReader::new(read)
        .read_line(&mut line)
        .await
        .map_err(proto)?;
    let response: Response = serde_json::from_str(&line)
        .map_err(|e| AdminError::Protocol(format!("unreadable response: {e}")))?;
    match response {
        Response {
            ok: true, result, ..
        } => Ok(result.unwrap_or(serde_json::Value::Null)),
        Response { error, .. } => Err(AdminError::Refused(
            error.unwrap_or_else(|| "request failed".into()),
        )),
    }
}
