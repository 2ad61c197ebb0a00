//! SigV4 signing of an upstream request with minted credentials (`aws-sigv4`). What the
//! client sent for AWS auth is removed first: only the gateway's signature goes upstream.

use std::time::SystemTime;

use aws_sigv4::{
    http_request::{sign, SignableBody, SignableRequest, SigningError, SigningSettings},
    sign::v4,
};
use http::HeaderMap;

use super::Credentials;

/// Why a request cannot be signed: it is then refused, never sent unsigned.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("signing parameters: {0}")]
    Params(#[source] v4::signing_params::BuildError),
    #[error("request cannot be signed: {0}")]
    Request(#[source] SigningError),
    #[error("signing failed: {0}")]
    Sign(#[source] SigningError),
}

/// Drops the client's own AWS auth headers (`Authorization`, `X-Amz-*`).
pub fn strip_client_auth(headers: &mut HeaderMap) {
    headers.remove(http::header::AUTHORIZATION);
    let amz: Vec<http::HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("x-amz-"))
        .cloned()
        .collect();
    for name in amz {
        headers.remove(name);
    }
}

/// Signs `request` (whose URI must be absolute: scheme and authority as the upstream sees
/// them) over `body`, adding `Authorization`, `X-Amz-Date`, `X-Amz-Security-Token` and
/// `X-Amz-Content-Sha256`.
pub fn sign_request<B>(
    request: &mut http::Request<B>,
    body: &[u8],
    creds: &Credentials,
    region: &str,
    service: &str,
) -> Result<(), SignError> {
    let identity = aws_credential_types::Credentials::new(
        &creds.access_key_id,
        &creds.secret_access_key,
        Some(creds.session_token.clone()),
        Some(creds.expiration),
        "mcpgw-sts",
    )
    .into();
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = aws_sigv4::http_request::PayloadChecksumKind::XAmzSha256;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(SystemTime::now())
        .settings(settings)
        .build()
        .map_err(SignError::Params)?
        .into();
    let uri = request.uri().to_string();
    let headers: Vec<(&str, &str)> = request
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)))
        .collect();
    let signable = SignableRequest::new(
        request.method().as_str(),
        uri.as_str(),
        headers.into_iter(),
        SignableBody::Bytes(body),
    )
    .map_err(SignError::Request)?;
    let (instructions, _) = sign(signable, &params)
        .map_err(SignError::Sign)?
        .into_parts();
    instructions.apply_to_request_http1x(request);
    Ok(())
}
