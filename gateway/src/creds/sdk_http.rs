//! The HTTP client the AWS SDK uses (STS, and the default credential chain's instance
//! metadata): the gateway's own requests, dialed through the socket factory so they carry
//! the bypass mark and are never redirected back into the gateway.

use std::{sync::Arc, time::Duration};

use aws_smithy_runtime_api::client::{
    http::{
        HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
        SharedHttpConnector,
    },
    orchestrator::{HttpRequest, HttpResponse},
    result::ConnectorError,
    runtime_components::RuntimeComponents,
};
use aws_smithy_types::body::SdkBody;
use bytes::Bytes;

use crate::intercept::socket_factory::SocketFactory;

/// Largest answer read from AWS.
const MAX_RESPONSE: usize = 1 << 20;

#[derive(Clone)]
struct Connector {
    tls: Arc<rustls::ClientConfig>,
    sockets: SocketFactory,
    timeout: Duration,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("mcpgw socket-factory connector")
    }
}

impl HttpConnector for Connector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let me = self.clone();
        HttpConnectorFuture::new(async move {
            let request = request
                .try_into_http1x()
                .map_err(|e| ConnectorError::other(e.into(), None))?;
            let (parts, body) = request.into_parts();
            // STS and metadata requests carry small in-memory bodies.
            let bytes = body.bytes().map(Bytes::copy_from_slice).unwrap_or_default();
            let request = http::Request::from_parts(parts, bytes);
            let response = tokio::time::timeout(
                me.timeout,
                crate::client::own_request(request, me.tls.clone(), &me.sockets, MAX_RESPONSE),
            )
            .await
            .map_err(|_| {
                ConnectorError::timeout(format!("no answer within {:?}", me.timeout).into())
            })?
            .map_err(|e| ConnectorError::io(e.into()))?;
            let (parts, body) = response.into_parts();
            HttpResponse::try_from(http::Response::from_parts(parts, SdkBody::from(body)))
                .map_err(|e| ConnectorError::other(e.into(), None))
        })
    }
}

#[derive(Debug)]
struct Client(Connector);

impl HttpClient for Client {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        let mut connector = self.0.clone();
        if let Some(read) = settings.read_timeout() {
            connector.timeout = connector
                .timeout
                .min(read + settings.connect_timeout().unwrap_or_default());
        }
        SharedHttpConnector::new(connector)
    }
}

pub fn client(
    sockets: SocketFactory,
    timeout: Duration,
) -> Result<SharedHttpClient, crate::tls::TlsError> {
    Ok(SharedHttpClient::new(Client(Connector {
        tls: crate::tls::client_config(None, false)?,
        sockets,
        timeout,
    })))
}
