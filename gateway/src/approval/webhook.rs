//! New pending approvals POSTed as JSON to `approval.webhook` (a Slack-compatible `text` plus
//! the approval's fields), retried with backoff and a timeout per attempt. A webhook that
//! fails never blocks or loses the approval: it is logged, and the approval waits as usual.

use std::{sync::Arc, time::Duration};

use super::Approval;
use crate::intercept::socket_factory::SocketFactory;

const ATTEMPTS: u32 = 3;
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct Webhook {
    url: url::Url,
    tls: Arc<rustls::ClientConfig>,
    sockets: SocketFactory,
}

impl Webhook {
    pub fn new(url: url::Url, sockets: SocketFactory) -> Result<Self, crate::tls::TlsError> {
        Ok(Self {
            url,
            tls: crate::tls::client_config(None, false)?,
            sockets,
        })
    }

    /// Sends in the background.
    pub fn notify(&self, approval: &Approval) {
        let text = format!(
            "mcpgw: {} asks to call `{}` on {} (rule {}){}. Approve: `mcpgw approvals approve {}`",
            approval.subject,
            approval.tool.as_deref().unwrap_or(&approval.method),
            approval.server,
            approval.rule,
            approval
                .justification
                .as_deref()
                .map(|j| format!(": \"{j}\""))
                .unwrap_or_default(),
            approval.id
        );
        let body = serde_json::json!({"text": text, "approval": approval});
        let me = self.clone();
        let id = approval.id.clone();
        tokio::spawn(async move {
            let bytes = serde_json::to_vec(&body).unwrap_or_default();
            for attempt in 1..=ATTEMPTS {
                let sent = tokio::time::timeout(
                    TIMEOUT,
                    crate::client::exchange_json(
                        &me.url,
                        Some(bytes.clone()),
                        me.tls.clone(),
                        &me.sockets,
                        64 * 1024,
                    ),
                )
                .await;
                let error = match sent {
                    Ok(Ok((status, _))) if status.is_success() => {
                        tracing::info!(approval = %id, "webhook notified");
                        return;
                    }
                    Ok(Ok((status, _))) => format!("HTTP {status}"),
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => format!("no answer within {TIMEOUT:?}"),
                };
                tracing::warn!(approval = %id, attempt, %error, url = %me.url, "webhook failed");
                tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
            }
            tracing::warn!(approval = %id, "webhook gave up; the approval still waits in `mcpgw approvals list`");
        });
    }
}
