//! JSON-RPC 2.0 messages as MCP uses them.

use serde::Serialize;
use serde_json::{json, Map, Value};

/// Standard JSON-RPC error codes, and the gateway's own in the server-error range.
pub mod code {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    /// The gateway refused or could not forward the message.
    pub const GATEWAY_REFUSED: i64 = -32001;
    /// The upstream server could not be reached or answered badly.
    pub const UPSTREAM_FAILED: i64 = -32002;
    /// A body was larger than `gateway.max_body`.
    pub const TOO_LARGE: i64 = -32003;
    /// Policy holds the call until someone approves it; `data.approval` names the request.
    pub const APPROVAL_REQUIRED: i64 = -32004;
    /// The caller is not authenticated (the HTTP status is 401).
    pub const UNAUTHENTICATED: i64 = -32005;
    /// No short-lived upstream credentials could be had for the call (STS refused or down).
    pub const CREDENTIALS_FAILED: i64 = -32006;
}

/// One JSON-RPC message. `raw` is the message exactly as received, forwarded unchanged
/// unless an interceptor changes the message.
#[derive(Debug, Clone, PartialEq)]
pub struct McpMessage {
    pub kind: Kind,
    pub raw: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Request {
        id: Value,
        method: String,
    },
    Notification {
        method: String,
    },
    Response {
        id: Value,
    },
    Error {
        id: Value,
        code: i64,
        message: String,
    },
}

/// An error to send to the client in place of a message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }

    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    /// The JSON-RPC error response for request `id` (`null` when unknown).
    pub fn to_response(&self, id: &Value) -> Value {
        json!({"jsonrpc": "2.0", "id": id, "error": self})
    }
}

/// A body: one message or a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Single(McpMessage),
    Batch(Vec<McpMessage>),
}

impl Body {
    pub fn parse(bytes: &[u8]) -> Result<Self, RpcError> {
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| RpcError::new(code::PARSE_ERROR, format!("invalid JSON: {e}")))?;
        match value {
            Value::Array(items) if items.is_empty() => {
                Err(RpcError::new(code::INVALID_REQUEST, "empty JSON-RPC batch"))
            }
            Value::Array(items) => Ok(Self::Batch(
                items
                    .into_iter()
                    .map(McpMessage::from_value)
                    .collect::<Result<_, _>>()?,
            )),
            other => Ok(Self::Single(McpMessage::from_value(other)?)),
        }
    }

    pub fn messages(&self) -> &[McpMessage] {
        match self {
            Self::Single(m) => std::slice::from_ref(m),
            Self::Batch(ms) => ms,
        }
    }

    pub fn messages_mut(&mut self) -> &mut [McpMessage] {
        match self {
            Self::Single(m) => std::slice::from_mut(m),
            Self::Batch(ms) => ms,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let value = match self {
            Self::Single(m) => Value::Object(m.raw.clone()),
            Self::Batch(ms) => {
                Value::Array(ms.iter().map(|m| Value::Object(m.raw.clone())).collect())
            }
        };
        serde_json::to_vec(&value).unwrap_or_default()
    }
}

impl McpMessage {
    pub fn from_value(value: Value) -> Result<Self, RpcError> {
        let invalid = |why: &str| {
            RpcError::new(
                code::INVALID_REQUEST,
                format!("invalid JSON-RPC message: {why}"),
            )
        };
        let Value::Object(raw) = value else {
            return Err(invalid("not an object"));
        };
        if raw.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return Err(invalid("`jsonrpc` must be \"2.0\""));
        }
        let id = match raw.get("id") {
            None => None,
            Some(id @ (Value::String(_) | Value::Number(_) | Value::Null)) => Some(id.clone()),
            Some(_) => return Err(invalid("`id` must be a string, number or null")),
        };
        let kind = match (raw.get("method"), id) {
            (Some(Value::String(method)), Some(id)) => Kind::Request {
                id,
                method: method.clone(),
            },
            (Some(Value::String(method)), None) => Kind::Notification {
                method: method.clone(),
            },
            (Some(_), _) => return Err(invalid("`method` must be a string")),
            (None, id) => {
                let id = id.ok_or_else(|| invalid("a response needs an `id`"))?;
                match (raw.get("result"), raw.get("error")) {
                    (Some(_), None) => Kind::Response { id },
                    (None, Some(Value::Object(error))) => Kind::Error {
                        id,
                        code: error
                            .get("code")
                            .and_then(Value::as_i64)
                            .ok_or_else(|| invalid("error without integer `code`"))?,
                        message: error
                            .get("message")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned(),
                    },
                    _ => {
                        return Err(invalid(
                            "a response needs exactly one of `result` and `error`",
                        ))
                    }
                }
            }
        };
        if let Some(params) = raw.get("params") {
            if !params.is_object() && !params.is_array() {
                return Err(invalid("`params` must be an object or array"));
            }
        }
        Ok(Self { kind, raw })
    }

    pub fn method(&self) -> Option<&str> {
        match &self.kind {
            Kind::Request { method, .. } | Kind::Notification { method } => Some(method),
            _ => None,
        }
    }

    pub fn id(&self) -> Option<&Value> {
        match &self.kind {
            Kind::Request { id, .. } | Kind::Response { id } | Kind::Error { id, .. } => Some(id),
            Kind::Notification { .. } => None,
        }
    }

    pub fn params(&self) -> Option<&Value> {
        self.raw.get("params")
    }

    /// `tools/call`: the tool name and its arguments.
    pub fn tool_call(&self) -> Option<(&str, Option<&Value>)> {
        if self.method() != Some("tools/call") {
            return None;
        }
        let params = self.params()?;
        Some((params.get("name")?.as_str()?, params.get("arguments")))
    }

    /// A `tools/list` result: the tool definitions.
    pub fn tool_definitions(&self) -> Option<&Vec<Value>> {
        self.raw.get("result")?.get("tools")?.as_array()
    }

    /// What the 2026-07-28 `Mcp-Name` header must repeat: the tool or prompt name, or the
    /// resource URI.
    pub fn routing_name(&self) -> Option<&str> {
        let params = self.params()?;
        match self.method()? {
            "tools/call" | "prompts/get" => params.get("name")?.as_str(),
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                params.get("uri")?.as_str()
            }
            _ => None,
        }
    }

    /// Headers that repeat the body (`Mcp-Method`, `Mcp-Name`) must agree with it: something
    /// routing or deciding on headers must see what the server will execute.
    pub fn check_headers(
        &self,
        method_header: Option<&str>,
        name_header: Option<&str>,
    ) -> Result<(), RpcError> {
        let mismatch = |header: &str, said: &str, body: Option<&str>| {
            RpcError::new(
                code::INVALID_REQUEST,
                format!(
                    "{header} header says `{said}` but the message says `{}`",
                    body.unwrap_or("")
                ),
            )
        };
        if let Some(said) = method_header {
            if self.method() != Some(said) {
                return Err(mismatch("Mcp-Method", said, self.method()));
            }
        }
        if let Some(said) = name_header {
            if self.routing_name() != Some(said) {
                return Err(mismatch("Mcp-Name", said, self.routing_name()));
            }
        }
        Ok(())
    }

    /// The protocol version a stateless (2026-07-28) request carries in `params._meta`.
    pub fn meta_protocol_version(&self) -> Option<&str> {
        let meta = self.params()?.get("_meta")?;
        meta.get("protocolVersion")
            .or_else(|| meta.get("io.modelcontextprotocol/protocolVersion"))?
            .as_str()
    }
}

#[cfg(test)]
mod tests;
