//! Prometheus metrics (`prometheus-client`), served on a loopback address
//! (`gateway.metrics`). Stages count what they do into [`Metrics`]; values that already live
//! elsewhere (connection counters, eBPF counters, pending approvals, masked values) are read
//! at scrape time by a collector the daemon registers.

use std::{net::SocketAddr, sync::Arc, sync::RwLock};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::{
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::ConstGauge,
        histogram::{exponential_buckets, Histogram},
        MetricType,
    },
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub rule: String,
    pub action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerLabels {
    pub server: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub server: String,
    pub code: String,
}

pub struct Metrics {
    registry: RwLock<Registry>,
    /// Policy decisions by rule and action.
    pub decisions: Family<DecisionLabels, Counter>,
    /// Bearer tokens checked: valid, invalid, unavailable (keys not to be had).
    pub tokens: Family<OutcomeLabels, Counter>,
    /// STS calls: ok, error.
    pub sts_calls: Family<OutcomeLabels, Counter>,
    pub credential_cache_hits: Counter,
    /// HTTP exchanges by server and the status the client got.
    pub requests: Family<RequestLabels, Counter>,
    /// Upstream time to response headers, by server.
    pub upstream_seconds: Family<ServerLabels, Histogram>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn latency_histogram() -> Histogram {
    // 100 µs .. ~13 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("mcpgw");
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "policy_decisions",
            "Policy decisions by rule and action",
            decisions.clone(),
        );
        let tokens = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "tokens",
            "Bearer tokens checked, by outcome",
            tokens.clone(),
        );
        let sts_calls = Family::<OutcomeLabels, Counter>::default();
        registry.register("sts_calls", "AWS STS calls, by outcome", sts_calls.clone());
        let credential_cache_hits = Counter::default();
        registry.register(
            "credential_cache_hits",
            "Calls signed with cached AWS credentials",
            credential_cache_hits.clone(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP exchanges by server and status",
            requests.clone(),
        );
        let upstream_seconds = Family::<ServerLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "upstream_latency_seconds",
            "Time from forwarding a request to the upstream's response headers",
            upstream_seconds.clone(),
        );
        Self {
            registry: RwLock::new(registry),
            decisions,
            tokens,
            sts_calls,
            credential_cache_hits,
            requests,
            upstream_seconds,
        }
    }

    pub fn add_collector(&self, collector: Box<dyn Collector>) {
        self.registry
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .register_collector(collector);
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.read().unwrap_or_else(|e| e.into_inner());
        if let Err(error) = prometheus_client::encoding::text::encode(&mut out, &registry) {
            tracing::warn!(%error, "encoding metrics failed");
        }
        out
    }

    pub fn decision(&self, rule: &str, action: &str) {
        self.decisions
            .get_or_create(&DecisionLabels {
                rule: rule.to_owned(),
                action: action.to_owned(),
            })
            .inc();
    }

    pub fn outcome(family: &Family<OutcomeLabels, Counter>, outcome: &str) {
        family
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }
}

/// Writes one scrape-time value.
pub fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> std::fmt::Result {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(value).encode(metric)
}

/// Writes a scrape-time counter family with one label.
pub fn counters(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    values: &[(String, u64)],
) -> std::fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, count) in values {
        let labels = [(label.to_owned(), value.clone())];
        let metric = family.encode_family(&labels)?;
        ConstCounter::new(*count).encode(metric)?;
    }
    Ok(())
}

/// Serves `GET /metrics` on `addr` (loopback only; checked by the configuration).
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<()> {
    use hyper::{server::conn::http1, service::service_fn, Response, StatusCode};
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "metrics served at /metrics");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let metrics = metrics.clone();
                    async move {
                        let mut response = if req.uri().path() == "/metrics" {
                            let mut r = Response::new(http_body_util::Full::new(
                                bytes::Bytes::from(metrics.encode()),
                            ));
                            r.headers_mut().insert(
                                http::header::CONTENT_TYPE,
                                http::HeaderValue::from_static(
                                    "text/plain; version=0.0.4; charset=utf-8",
                                ),
                            );
                            r
                        } else {
                            Response::new(http_body_util::Full::new(bytes::Bytes::from_static(
                                b"see /metrics\n",
                            )))
                        };
                        if req.uri().path() != "/metrics" {
                            *response.status_mut() = StatusCode::NOT_FOUND;
                        }
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(())
}
