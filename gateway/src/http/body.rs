//! Headers and bodies as the data path handles them: hop-by-hop headers, content types, a
//! JSON-RPC error as an HTTP response, and draining what a refused client still sends.

use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use serde_json::Value;

use crate::{
    body::{full, read_limited, Body},
    mcp::RpcError,
};

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
    "proxy-authenticate",
];

pub(super) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()))
        .collect();
    for name in HOP_BY_HOP
        .iter()
        .copied()
        .chain(listed.iter().map(String::as_str))
    {
        headers.remove(name);
    }
}

pub(super) fn is_json(headers: &HeaderMap) -> bool {
    content_type(headers).is_some_and(|ct| ct == "application/json" || ct.ends_with("+json"))
}

pub(super) fn content_type(headers: &HeaderMap) -> Option<String> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(
        ct.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase(),
    )
}

/// A JSON-RPC error as the HTTP response.
pub(super) fn rpc_error_response(
    status: StatusCode,
    id: &Value,
    error: &RpcError,
) -> Response<Body> {
    let mut response = Response::new(full(
        serde_json::to_vec(&error.to_response(id)).unwrap_or_default(),
    ));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// What is read past the limit of an oversized request before answering 413, so an
/// HTTP/1.1 client that is still sending sees the answer instead of a broken pipe.
pub(super) const DRAIN_MAX: usize = 64 << 20;
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// Reads and drops what a client still sends after an early answer, up to `limit` bytes and
/// `DRAIN_TIME`, so HTTP/2 does not reset the stream and an HTTP/1.1 client sees the answer
/// instead of a broken pipe.
pub(super) async fn drain<B>(mut body: B, limit: usize)
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let _ = tokio::time::timeout(DRAIN_TIME, read_limited(&mut body, limit)).await;
}

pub(super) fn accepts_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/event-stream"))
}
