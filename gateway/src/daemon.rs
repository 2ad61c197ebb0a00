//! `mcpgw serve`: binds the listeners, starts interception, serves the admin socket, keeps
//! targets resolved, and stops cleanly on SIGTERM/SIGINT.

use std::{
    net::SocketAddr,
    sync::{atomic::Ordering, Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use serde_json::json;
use tokio::net::TcpListener;

use crate::{
    admin::{self, Caller, CommandError, Handler, Request},
    approval::{people, webhook::Webhook, ApprovalError, Approvals, Approver},
    config::{Config, FailMode, HostPort, InterceptMode, MatchAddr, ServerConfig},
    http::{Route, Stages, L7},
    identity::{Identity, Issuer},
    intercept::{
        ebpf::{self, EbpfInterception},
        explicit::ExplicitOrigDst,
        socket_factory::SocketFactory,
        targets::{RemoveOutcome, TargetTable},
        OrigDstSource,
    },
    mask::interceptor::MaskingInterceptor,
    mcp::{interceptor::Interceptor, Chain, LoggingInterceptor},
    policy::{interceptor::PolicyInterceptor, Call},
    proxy::{Proxy, ProxyStats},
    record::{stage::Recording, Recorder, SessionFilter},
    tls::HostCa,
};

/// How long an upstream dial may take before the client's connection is closed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Daemon {
    config: Config,
    /// The file the configuration came from (`None`: the embedded default); policy reloads
    /// read it again.
    config_path: Option<std::path::PathBuf>,
    policy: Arc<PolicyInterceptor>,
    identity: Arc<Identity>,
    approvals: Arc<Approvals>,
    minter: Option<Arc<crate::creds::Minter>>,
    started: Instant,
    listeners: Vec<SocketAddr>,
    ebpf: Option<Arc<EbpfInterception>>,
    targets: Arc<Mutex<TargetTable>>,
    proxy: Arc<Proxy>,
    ca: Arc<HostCa>,
    masking: Option<Arc<MaskingInterceptor>>,
    recorder: Option<Recorder>,
}

/// `mcpgw serve`: starts the gateway and runs it until SIGTERM or SIGINT.
pub async fn serve(config: Config, config_path: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    let running = start(config, config_path).await?;
    crate::notify::notify("READY=1");
    tokio::spawn(crate::notify::watchdog());
    wait_for_shutdown().await;
    tracing::info!("shutting down");
    crate::notify::notify("STOPPING=1");
    running.stop();
    Ok(())
}

/// A started gateway: listeners bound, interception on, admin socket served. Its tasks run on
/// the runtime that started it.
pub struct Running {
    daemon: Arc<Daemon>,
}

impl Running {
    /// The addresses the gateway accepts connections on (as bound: a configured port 0 is
    /// the port the kernel chose).
    pub fn listeners(&self) -> &[SocketAddr] {
        &self.daemon.listeners
    }

    pub fn approvals(&self) -> &Arc<Approvals> {
        &self.daemon.approvals
    }

    pub fn recorder(&self) -> Option<&Recorder> {
        self.daemon.recorder.as_ref()
    }

    /// Stops serving the admin socket; with `fail_mode = "open"` the programs are detached,
    /// with `closed` the pinned links stay, so intercepted connects are refused until the
    /// gateway is back.
    pub fn stop(self) {
        let _ = std::fs::remove_file(&self.daemon.config.gateway.admin_socket);
        if self.daemon.config.gateway.fail_mode == FailMode::Open {
            ebpf::unpin_all(&self.daemon.config.intercept.pin_dir);
        }
    }
}

/// Starts the gateway from a validated configuration.
pub async fn start(
    config: Config,
    config_path: Option<std::path::PathBuf>,
) -> anyhow::Result<Running> {
    let state_dir = &config.gateway.state_dir;
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("creating state_dir {}", state_dir.display()))?;

    // Listeners first: once the programs are attached, redirected connects must find them.
    let mut listeners = Vec::new();
    let mut explicit_routes = Vec::new();
    match config.intercept.mode {
        InterceptMode::Ebpf => {
            for addr in &config.gateway.listen {
                listeners.push(bind_listener(*addr)?);
            }
        }
        // One listener per server address; the bound address says which server a connection
        // is for (a port 0 in the config becomes the port the kernel chose).
        InterceptMode::Explicit => {
            let mut bound: Vec<(SocketAddr, SocketAddr)> = Vec::new();
            for server in &config.servers {
                let Some((listen, destination)) = server.explicit_route() else {
                    continue;
                };
                let known = bound
                    .iter()
                    .find(|(asked, _)| *asked == listen && listen.port() != 0);
                let local = match known {
                    Some((_, local)) => *local,
                    None => {
                        let listener = bind_listener(listen)?;
                        let local = listener.local_addr()?;
                        listeners.push(listener);
                        bound.push((listen, local));
                        local
                    }
                };
                explicit_routes.push((local, destination, server.name.clone()));
            }
        }
    }
    let listen_addrs: Vec<SocketAddr> = listeners
        .iter()
        .map(TcpListener::local_addr)
        .collect::<Result<_, _>>()?;
    let explicit = ExplicitOrigDst::new(explicit_routes);

    let mut targets = TargetTable::new(ServerConfig::targets(&config.servers), state_dir)?;
    for (host, answer) in lookup(targets.hosts()).await {
        targets.set_resolved(host, answer);
    }

    let (ebpf, orig_dst, sockets): (_, Arc<dyn OrigDstSource>, _) = match config.intercept.mode {
        InterceptMode::Ebpf => {
            let interception = Arc::new(EbpfInterception::start(
                &config.intercept,
                config.gateway.fail_mode,
                &listen_addrs,
                &targets.keys(),
            )?);
            let sockets = SocketFactory::new(Some(config.intercept.bypass_mark), CONNECT_TIMEOUT)
                .with_exemptions(interception.clone());
            (
                Some(interception.clone()),
                interception as Arc<dyn OrigDstSource>,
                sockets,
            )
        }
        InterceptMode::Explicit => (
            None,
            Arc::new(explicit) as _,
            SocketFactory::new(None, CONNECT_TIMEOUT),
        ),
    };

    let ca = Arc::new(HostCa::load_or_create(state_dir)?);
    let mut routes = std::collections::HashMap::new();
    for server in &config.servers {
        let route = Route::new(server).with_context(|| format!("server `{}`", server.name))?;
        routes.insert(server.name.clone(), Arc::new(route));
    }
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let mut issuers = Vec::new();
    for oidc in &config.identity.oidc {
        let issuer = Issuer::new(oidc.clone(), sockets.clone())
            .with_context(|| format!("identity.oidc `{}`", oidc.issuer))?;
        issuers.push(Arc::new(issuer));
    }
    let identity = Arc::new(Identity::new(issuers, config.identity.processes.clone()));
    identity.warm_up();
    if config.policy.rules.is_empty() {
        tracing::warn!("no [[policy.rules]]: every call is denied (protocol messages pass)");
    }
    let approvals = Arc::new(
        Approvals::open(
            &state_dir.join(crate::record::DB_FILE),
            config.approval.clone(),
            match &config.approval.webhook {
                Some(url) => Some(Webhook::new(url.clone(), sockets.clone())?),
                None => None,
            },
        )
        .map_err(anyhow::Error::msg)?,
    );
    approvals.spawn_sweeper();
    let policy = Arc::new(PolicyInterceptor::new(
        config.policy.clone(),
        Some(approvals.clone()),
        metrics.clone(),
    ));
    // Policy before masking: a refused call never reaches the server, and tool lists are
    // filtered before anything else sees them.
    let mut stages: Vec<Arc<dyn Interceptor>> = vec![
        Arc::new(LoggingInterceptor),
        policy.clone(),
        Arc::new(crate::creds::static_keys::StaticKeyGuard::new(
            config
                .servers
                .iter()
                .map(|s| (s.name.clone(), s.static_keys)),
        )),
    ];
    let mut preview_masker = None;
    let masking = match &config.masking {
        Some(masking) => {
            let key = crate::mask::load_or_create_key(state_dir)
                .with_context(|| format!("masking key in {}", state_dir.display()))?;
            let masker = crate::mask::Masker::new(&masking.settings, key)?;
            preview_masker = Some(Arc::new(crate::mask::Masker::new(&masking.settings, key)?));
            let tools = masking.arguments_of_tools.clone();
            let pointers = masking.pointers.clone();
            let masking = Arc::new(MaskingInterceptor::new(masker, tools, pointers));
            stages.push(masking.clone());
            Some(masking)
        }
        None => None,
    };
    let mut chain = Chain::new(stages);
    let recording = match &config.recording {
        Some(recording) => {
            let recorder = Recorder::open(state_dir)?;
            tokio::spawn(prune_recordings(recorder.clone(), recording.retention));
            let stage = Arc::new(Recording::new(recorder.clone()));
            chain = chain.with_observer(stage);
            Some(recorder)
        }
        None => None,
    };
    let targets = Arc::new(Mutex::new(targets));
    let minter = match config.servers.iter().any(|s| s.aws.is_some()) {
        true => Some(Arc::new(
            crate::creds::Minter::new(sockets.clone(), metrics.clone()).await?,
        )),
        false => None,
    };
    let stages = Stages {
        identity: identity.clone(),
        chain,
        approvals: Some(approvals.clone()),
        preview_masker,
        minter: minter.clone(),
    };
    let l7 = L7::new(
        ca.clone(),
        stages,
        sockets.clone(),
        metrics.clone(),
        config.gateway.max_body,
    );
    let proxy = Arc::new(Proxy {
        orig_dst,
        l7: Arc::new(l7),
        sockets,
        stats: ProxyStats::default(),
        routes,
        targets: targets.clone(),
    });
    for listener in listeners {
        tokio::spawn(proxy.clone().serve(listener));
    }

    let admin_listener =
        admin::bind(&config.gateway.admin_socket, &config.gateway.admin_group).await?;
    let daemon = Arc::new(Daemon {
        started: Instant::now(),
        config_path,
        policy,
        identity,
        approvals,
        minter,
        listeners: listen_addrs,
        ebpf,
        targets,
        proxy,
        ca,
        masking,
        recorder: recording,
        config,
    });
    tokio::spawn(admin::serve(
        admin_listener,
        daemon.config.gateway.admin_group.clone(),
        daemon.clone(),
    ));
    tokio::spawn(refresh_targets(daemon.clone()));
    tokio::spawn(reload_on_sighup(daemon.clone()));
    metrics.add_collector(Box::new(DaemonGauges(Arc::downgrade(&daemon))));
    if let Some(addr) = daemon.config.gateway.metrics {
        // Metrics are for watching the gateway: their port being taken must not stop it.
        if let Err(error) = crate::metrics::serve(addr, metrics.clone()).await {
            tracing::error!(%addr, %error, "metrics not served");
        }
    }
    tracing::info!(
        mode = ?daemon.config.intercept.mode,
        listeners = ?daemon.listeners,
        admin_socket = %daemon.config.gateway.admin_socket.display(),
        "mcpgw ready"
    );
    Ok(Running { daemon })
}

fn bind_listener(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    bind(addr).with_context(|| format!("listening on {addr}"))
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        let s = tokio::net::TcpSocket::new_v6()?;
        // [::1] must not also take IPv4: the v4 listener has its own port.
        socket2::SockRef::from(&s).set_only_v6(true)?;
        s
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// One DNS answer per host name (failures kept as errors: the table keeps the last answer).
async fn lookup(hosts: Vec<HostPort>) -> Vec<(HostPort, std::io::Result<Vec<SocketAddr>>)> {
    let mut answers = Vec::new();
    for host in hosts {
        let answer = tokio::net::lookup_host((host.host.as_str(), host.port))
            .await
            .map(Iterator::collect);
        answers.push((host, answer));
    }
    answers
}

/// Host names in `match` can move: resolve them again every `dns_refresh`.
async fn refresh_targets(daemon: Arc<Daemon>) {
    let mut tick = tokio::time::interval(daemon.config.intercept.dns_refresh);
    tick.tick().await;
    loop {
        tick.tick().await;
        if let Err(error) = daemon.refresh().await {
            tracing::warn!(%error, "refreshing targets failed");
        }
    }
}

/// Retention: prune now and then once a day.
async fn prune_recordings(recorder: Recorder, retention: Duration) {
    let mut tick = tokio::time::interval(Duration::from_secs(24 * 3600));
    loop {
        tick.tick().await;
        let recorder = recorder.clone();
        let pruned = tokio::task::spawn_blocking(move || recorder.reader()?.prune(retention)).await;
        match pruned {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(sessions = n, "pruned recordings past retention"),
            Ok(Err(error)) => tracing::warn!(%error, "pruning recordings failed"),
            Err(error) => tracing::warn!(%error, "pruning recordings failed"),
        }
    }
}

/// Values that live in the daemon's parts, read at each scrape.
struct DaemonGauges(std::sync::Weak<Daemon>);

impl std::fmt::Debug for DaemonGauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DaemonGauges")
    }
}

impl prometheus_client::collector::Collector for DaemonGauges {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> std::fmt::Result {
        use crate::metrics::{counters, gauge};
        let Some(d) = self.0.upgrade() else {
            return Ok(());
        };
        let stats = &d.proxy.stats;
        let connections: Vec<(String, u64)> = [
            ("accepted", &stats.accepted),
            ("forwarded", &stats.forwarded),
            ("failed", &stats.failed),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.load(Ordering::Relaxed)))
        .collect();
        counters(
            &mut encoder,
            "connections",
            "Client connections by outcome",
            "outcome",
            &connections,
        )?;
        let pending = d.approvals.list(false).map_or(0, |l| l.len());
        gauge(
            &mut encoder,
            "approvals_pending",
            "Approvals waiting for a decision",
            pending as i64,
        )?;
        gauge(
            &mut encoder,
            "grants_live",
            "Grants in force",
            d.approvals.grants().len() as i64,
        )?;
        if let Some(masking) = &d.masking {
            let masked: Vec<(String, u64)> = masking.counts().into_iter().collect();
            counters(
                &mut encoder,
                "masked_values",
                "Values masked, by detector or rule",
                "detector",
                &masked,
            )?;
        }
        if let Some(ebpf) = &d.ebpf {
            let events: Vec<(String, u64)> = ebpf
                .counters()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
            counters(
                &mut encoder,
                "ebpf_events",
                "Counters of the eBPF programs",
                "counter",
                &events,
            )?;
        }
        gauge(
            &mut encoder,
            "uptime_seconds",
            "Seconds since start",
            d.started.elapsed().as_secs() as i64,
        )
    }
}

/// SIGHUP (systemd's `ExecReload`) reloads the policy.
async fn reload_on_sighup(daemon: Arc<Daemon>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        crate::notify::notify("RELOADING=1");
        match daemon.reload_policy() {
            Ok(summary) => tracing::info!(%summary, "policy reloaded"),
            Err(error) => {
                tracing::error!(%error, "policy reload refused; the running policy stays")
            }
        }
        crate::notify::notify("READY=1");
    }
}

async fn wait_for_shutdown() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the process still ends on signals, just less tidily.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

impl Daemon {
    /// Reads the configuration file again and puts its rules and guardrails in force; an
    /// invalid file changes nothing.
    fn reload_policy(&self) -> Result<String, CommandError> {
        let path = self.config_path.as_deref().ok_or(
            "the gateway runs with the embedded default configuration: there is no file to reload",
        )?;
        let config = crate::config::load(Some(path))?;
        let summary = format!(
            "{} rules, {} guardrails from {}",
            config.policy.rules.len(),
            config.policy.guardrails.len(),
            path.display()
        );
        self.policy.replace(config.policy);
        Ok(summary)
    }

    /// Who is deciding: the subject of `token` (validated like a caller's), else the Unix
    /// user on the admin socket, with the approver groups `[approval.approvers]` gives it.
    /// Either way the socket caller's own account is among the approver's names: the person
    /// at the socket is the one deciding, whoever's token they hold.
    async fn approver(
        &self,
        caller: Caller,
        token: Option<String>,
    ) -> Result<Approver, CommandError> {
        let account = people::unix_account(caller.uid);
        if let Some(token) = token {
            if !self.identity.tokens_required() {
                return Err(
                    "--token needs an [[identity.oidc]] issuer in the configuration".into(),
                );
            }
            let mut headers = http::HeaderMap::new();
            let value = http::HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| "the token is not valid header text".to_owned())?;
            headers.insert(http::header::AUTHORIZATION, value);
            let subject = self.identity.authenticate(&headers, None).await?;
            let mut names = people::token(
                &subject.name,
                subject.issuer.as_deref(),
                subject.email.as_deref(),
            );
            names.extend(account);
            return Ok(Approver {
                name: subject.name,
                groups: subject.groups,
                names,
            });
        }
        let name = people::login(caller.uid).unwrap_or_else(|| format!("uid:{}", caller.uid));
        let groups = self
            .config
            .approval
            .approvers
            .get(&name)
            .cloned()
            .unwrap_or_default();
        Ok(Approver {
            name,
            groups,
            names: account,
        })
    }

    /// Which rule decides a hypothetical call, and why.
    fn explain(&self, query: admin::ExplainQuery) -> Result<serde_json::Value, CommandError> {
        let arguments = match query.arguments.as_deref() {
            None => None,
            Some(text) => Some(
                serde_json::from_str::<serde_json::Value>(text)
                    .map_err(|e| format!("--args is not JSON: {e}"))?,
            ),
        };
        let mut subject = crate::identity::Subject::named(&query.subject, query.groups);
        subject.email = query.email;
        if query.uid.is_some() || query.exe.is_some() || query.unit.is_some() {
            subject.process = Some(crate::intercept::ProcessInfo {
                pid: 0,
                uid: query.uid.unwrap_or(u32::MAX),
                gid: u32::MAX,
                cgroup_id: 0,
                exe: query.exe.map(Into::into),
                cgroup: query.unit.map(|u| format!("/system.slice/{u}")),
            });
        }
        let method = query.method.unwrap_or_else(|| "tools/call".into());
        let call = Call {
            server: &query.server,
            method: &method,
            tool: query.tool.as_deref(),
            resource: None,
            prompt: None,
            arguments: arguments.as_ref(),
            subject: &subject,
        };
        let policy = self.policy.policy();
        Ok(json!({
            "decision": policy.decide(&call),
            "listed": query.tool.is_some().then(|| policy.may_list_tool(&call)),
        }))
    }

    async fn refresh(&self) -> anyhow::Result<()> {
        let hosts = self
            .targets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .hosts();
        let answers = lookup(hosts).await;
        let keys = {
            let mut targets = self.targets.lock().unwrap_or_else(|e| e.into_inner());
            for (host, answer) in answers {
                targets.set_resolved(host, answer);
            }
            targets.keys()
        };
        if let Some(ebpf) = &self.ebpf {
            ebpf.sync_targets(&keys)?;
        }
        Ok(())
    }

    /// What an operator checks first: programs, listeners, store, identity provider keys, STS.
    fn health(&self) -> serde_json::Value {
        let store = match self.approvals.list(false) {
            Ok(_) => "ok".to_owned(),
            Err(e) => e.to_string(),
        };
        let sts = self.minter.as_ref().map(|m| match m.last_call() {
            None => json!({"state": "no call yet"}),
            Some((at, error)) => json!({
                "state": if error.is_none() { "ok" } else { "failing" },
                "last_call_secs_ago": at.elapsed().map_or(0, |d| d.as_secs()),
                "error": error,
            }),
        });
        json!({
            "programs_attached": self.ebpf.as_ref().map(|e| !e.programs().is_empty()),
            "listeners": self.listeners.len(),
            "store": store,
            "identity_providers": self.identity.health(),
            "sts": sts,
            "metrics": self.config.gateway.metrics.map(|a| a.to_string()),
        })
    }

    fn status(&self) -> serde_json::Value {
        let mut counters = serde_json::Map::new();
        if let Some(ebpf) = &self.ebpf {
            for (name, value) in ebpf.counters() {
                counters.insert(name.into(), value.into());
            }
        }
        let stats = &self.proxy.stats;
        counters.insert(
            "accepted".into(),
            stats.accepted.load(Ordering::Relaxed).into(),
        );
        counters.insert(
            "forwarded".into(),
            stats.forwarded.load(Ordering::Relaxed).into(),
        );
        counters.insert("failed".into(), stats.failed.load(Ordering::Relaxed).into());
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_secs": self.started.elapsed().as_secs(),
            "mode": self.config.intercept.mode,
            "fail_mode": self.config.gateway.fail_mode,
            "cgroup": self.ebpf.as_ref().map(|e| e.cgroup().to_owned()),
            "programs": self.ebpf.as_ref().map(|e| e.programs()).unwrap_or_default(),
            "listeners": self.listeners.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "targets": self.targets.lock().unwrap_or_else(|e| e.into_inner()).view(),
            "counters": counters,
            "masking": self.masking.as_ref().map(|m| json!({"masked": m.counts()})),
            "connections": stats.recent(),
            "health": self.health(),
        })
    }

    /// Recording queries, off the async threads (SQLite is blocking). Everything recorded
    /// so far is made durable first, so a query sees the latest events.
    async fn sessions(&self, request: Request) -> Result<serde_json::Value, CommandError> {
        let recorder = self
            .recorder
            .clone()
            .ok_or("recording is off (recording.store = \"none\")")?;
        let query = move || -> Result<serde_json::Value, CommandError> {
            recorder.flush()?;
            let reader = recorder.reader()?;
            Ok(match request {
                Request::SessionsList {
                    subject,
                    server,
                    since_secs,
                    decision,
                } => {
                    let since = since_secs.map(|s| {
                        let now = crate::clock::now_ms();
                        now - (s as i64) * 1000
                    });
                    let filter = SessionFilter {
                        subject,
                        server,
                        since,
                        decision,
                    };
                    json!(reader.list_sessions(&filter)?)
                }
                Request::SessionsShow { id } => {
                    let (info, events) = reader.show(&id)?;
                    json!({"session": info, "events": events})
                }
                Request::SessionsVerify { id } => json!(reader.verify(id.as_deref())?),
                Request::SessionsExport { id, format } => match format {
                    admin::ExportFormat::Jsonl => {
                        let mut out = Vec::new();
                        reader.export_jsonl(&id, &mut out)?;
                        json!(String::from_utf8_lossy(&out))
                    }
                    admin::ExportFormat::Html => json!(reader.export_html(&id)?),
                },
                _ => return Err("not a sessions request".into()),
            })
        };
        tokio::task::spawn_blocking(query).await?
    }

    fn targets_view(&self) -> serde_json::Value {
        json!(self
            .targets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .view())
    }
}

impl Handler for Daemon {
    async fn handle(
        &self,
        request: Request,
        caller: Caller,
    ) -> Result<serde_json::Value, CommandError> {
        match request {
            Request::ApprovalsList { all } => Ok(json!(self.approvals.list(all)?)),
            Request::ApprovalsShow { id } => Ok(self.approvals.show(&id)?),
            Request::ApprovalsApprove { id, reason, token } => {
                let approver = self.approver(caller, token).await?;
                Ok(json!(self.approvals.approve(&id, &approver, reason)?))
            }
            Request::ApprovalsDeny { id, reason, token } => {
                let approver = self.approver(caller, token).await?;
                Ok(json!(self.approvals.deny(&id, &approver, reason)?))
            }
            Request::GrantsList => Ok(json!(self.approvals.grants())),
            Request::GrantsRevoke { id, token } => {
                let actor = self.approver(caller, token).await?;
                Ok(json!(self.approvals.revoke(&id, &actor.name)?))
            }
            Request::Status => Ok(self.status()),
            Request::CaExport => Ok(json!(self.ca.cert_pem())),
            Request::SessionsList { .. }
            | Request::SessionsShow { .. }
            | Request::SessionsVerify { .. }
            | Request::SessionsExport { .. } => self.sessions(request).await,
            Request::InterceptList => Ok(self.targets_view()),
            Request::PolicyReload => self.reload_policy().map(|s| json!({"reloaded": s})),
            Request::PolicyExplain { query } => self.explain(query),
            Request::InterceptAdd { entry } | Request::InterceptRemove { entry }
                if self.ebpf.is_none() =>
            {
                let _ = entry;
                Err(crate::intercept::InterceptError::NotInterceptable.into())
            }
            Request::InterceptAdd { entry } => {
                let entry: MatchAddr = entry.parse()?;
                let v6_listener = self
                    .listeners
                    .iter()
                    .any(|a| a.ip() == std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST));
                if entry.may_be_ipv6() && !v6_listener {
                    return Err(format!(
                        "{entry} can be reached over IPv6, which needs a [::1]:PORT listener (gateway.listen)"
                    )
                    .into());
                }
                let added = self
                    .targets
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .add(entry.clone())?;
                self.refresh()
                    .await
                    .map_err(|e| CommandError::Failed(e.into()))?;
                if !added {
                    return Err(format!("{entry} is already intercepted").into());
                }
                Ok(self.targets_view())
            }
            Request::InterceptRemove { entry } => {
                let entry: MatchAddr = entry.parse()?;
                let outcome = self
                    .targets
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&entry)?;
                match outcome {
                    RemoveOutcome::Removed => {
                        self.refresh().await.map_err(|e| CommandError::Failed(e.into()))?;
                        Ok(self.targets_view())
                    }
                    RemoveOutcome::Configured(server) => Err(format!(
                        "{entry} comes from the configuration of server `{server}`; change the configuration to remove it"
                    ).into()),
                    RemoveOutcome::NotFound => Err(format!("{entry} is not intercepted").into()),
                }
            }
        }
    }
}

/// Stage errors in admin replies, worded as the stage words them.
macro_rules! command_error_from {
    ($($error:ty),* $(,)?) => {$(
        impl From<$error> for CommandError {
            fn from(error: $error) -> Self {
                CommandError::failed(error)
            }
        }
    )*};
}

command_error_from!(
    ApprovalError,
    crate::addr::AddrError,
    crate::config::ConfigError,
    crate::identity::AuthError,
    crate::intercept::InterceptError,
    crate::record::RecordError,
    tokio::task::JoinError,
);
