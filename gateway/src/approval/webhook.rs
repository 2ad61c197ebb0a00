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
        // What the caller chose (subject, tool, justification) is shown as text, never as
        // chat markup: it could otherwise fake links, mentions or a different request.
        let text = format!(
            "mcpgw: {} asks to call `{}` on {} (rule {}){}. Approve: `mcpgw approvals approve {}`",
            plain(&approval.subject),
            plain(approval.tool.as_deref().unwrap_or(&approval.method)),
            plain(&approval.server),
            plain(&approval.rule),
            approval
                .justification
                .as_deref()
                .map(|j| format!(": \"{}\"", plain(j)))
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
                // The URL is a secret (it lets anyone post to the channel): only its host.
                let host = me.url.host_str().unwrap_or("-");
                tracing::warn!(approval = %id, attempt, %error, host, "webhook failed");
                tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
            }
            tracing::warn!(approval = %id, "webhook gave up; the approval still waits in `mcpgw approvals list`");
        });
    }
}

/// `text` with what chat markup (Slack mrkdwn, Markdown) gives meaning to escaped or taken out:
/// `<>&` become entities, backticks, `*` and `|` are dropped (tool names keep their `_`),
/// control characters become spaces, and it is cut
/// to 300 characters.
fn plain(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars().take(300) {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '`' | '*' | '|' => {}
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn caller_text_cannot_carry_markup() {
        let shown = super::plain("<https://evil|Approve here> `x` *now*\n<!channel>");
        assert!(
            !shown.contains('<') && !shown.contains('`') && !shown.contains('\n'),
            "{shown}"
        );
        assert!(shown.contains("&lt;https://evil"), "{shown}");
    }
}
