//! Root test of the session recording's HTML export as a browser shows it: a Python SDK
//! client's session through mcpgw is exported with `sessions export --format html` and the
//! page is rendered by headless Chromium (Debian `chromium`, installed by `cargo xtask
//! setup`). The rendered DOM must show the calls, the client process and the verification
//! status, and a screenshot of it is taken (kept under `<target>/html-export/`).

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use mcpgw_tests::mcp::*;
use mcpgw_tests::*;
use serde_json::Value;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(60);
const URL: &str = "https://10.0.3.17:8443/mcp";

/// Like [`require_root`] for the browser: in CI a missing Chromium is a failure (the setup
/// step installs it), elsewhere the test is skipped.
fn require_chromium() -> bool {
    if Path::new(CHROMIUM).exists() {
        return true;
    }
    let ci = std::env::var("CI").unwrap_or_default();
    if ci == "true" || ci == "1" {
        panic!(
            "{CHROMIUM} is missing (CI is set, so it must not be skipped); run `cargo xtask setup`"
        );
    }
    eprintln!("skipping: needs {CHROMIUM} (`cargo xtask setup` installs it)");
    false
}

/// Drop order: gateway, server, cgroup, namespace.
struct World {
    gw: Gateway,
    _server: Proc,
    host_ca: PathBuf,
    tmp: TempDir,
    cg: Cgroup,
    ns: Netns,
}

/// One TLS Python SDK server and a gateway that verifies it against the test CA.
fn world() -> World {
    let ns = Netns::new().expect("netns");
    let cg = Cgroup::new().expect("cgroup");
    let tmp = TempDir::new().expect("temp dir");
    let test_ca = TestCa::new(tmp.path(), &["mcp.test", TARGET_V4, TARGET_V6]).expect("test CA");
    let server = mcp_server(
        &ns,
        "10.0.3.17:8443",
        McpTransport::StreamableHttp,
        Some(&test_ca),
    )
    .expect("server");
    let servers = format!(
        "[[servers]]\nname    = \"mcp\"\nmatch   = [\"10.0.3.17:8443\"]\nca_file = {:?}\n",
        test_ca.ca_pem.display().to_string()
    );
    let gw =
        Gateway::start(&ns, Some(&cg), &gateway_config(&cg, "open", &servers)).expect("gateway");
    let pem = gw.cli_ok(&["ca", "export"]).stdout;
    assert!(String::from_utf8_lossy(&pem).starts_with("-----BEGIN CERTIFICATE-----"));
    let host_ca = tmp.path().join("host-ca.pem");
    fs::write(&host_ca, pem).expect("write host CA");
    World {
        gw,
        _server: server,
        host_ca,
        tmp,
        cg,
        ns,
    }
}

impl World {
    fn sessions_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--output", "json", "sessions"];
        all.extend_from_slice(args);
        let out = self.gw.cli_ok(&all);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("sessions {args:?}: {e}"))
    }

    /// `sessions show` of the recorded session that carried the echo call.
    fn echo_session(&self) -> Option<Value> {
        let list = self.sessions_json(&["list", "--server", "mcp"]);
        list.as_array()?
            .iter()
            .filter_map(|s| s["id"].as_str())
            .map(|id| self.sessions_json(&["show", id]))
            .find(|v| {
                v["events"]
                    .as_array()
                    .is_some_and(|es| es.iter().any(|e| e["tool"] == "echo"))
            })
    }
}

/// Runs headless Chromium with `args` and then `url`, in a fresh profile; killed after
/// [`CHROMIUM_TIMEOUT`]. Returns its stdout; panics (with its stderr) on failure.
fn chromium(dir: &Path, name: &str, args: &[String], url: &str) -> String {
    let profile = dir.join(format!("profile-{name}"));
    fs::create_dir_all(&profile).expect("chromium profile dir");
    let stdout_path = dir.join(format!("chromium-{name}.out"));
    let stderr_path = dir.join(format!("chromium-{name}.err"));
    let mut cmd = Command::new(CHROMIUM);
    cmd.args([
        "--headless",
        "--no-sandbox", // as root the sandbox refuses to start
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(args)
    .arg(url)
    .stdin(Stdio::null())
    .stdout(fs::File::create(&stdout_path).expect("chromium stdout file"))
    .stderr(fs::File::create(&stderr_path).expect("chromium stderr file"));
    let mut child = cmd.spawn().expect("spawn chromium");
    let deadline = Instant::now() + CHROMIUM_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stderr = fs::read_to_string(&stderr_path).unwrap_or_default();
    match status {
        Some(s) if s.success() => {}
        Some(s) => panic!("chromium {name} failed ({s}):\n{stderr}"),
        None => panic!("chromium {name} did not finish within {CHROMIUM_TIMEOUT:?}:\n{stderr}"),
    }
    fs::read_to_string(&stdout_path).expect("chromium stdout")
}

/// The text of a serialized DOM: tags dropped, the entities the export uses decoded.
fn dom_text(html: &str) -> String {
    let mut text = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

#[test]
fn html_export_renders_in_headless_chromium() {
    if !require_root() || !require_chromium() {
        return;
    }
    let w = world();
    let report = mcp_client_py(
        w.cg.cmd(&w.ns, Some(NOBODY), peers_venv_python()),
        URL,
        McpTransport::StreamableHttp,
        Era::Session,
        Some(&w.host_ca),
    )
    .unwrap_or_else(|e| {
        panic!(
            "python client through mcpgw: {e:#}\n--- gateway log ---\n{}",
            w.gw.log()
        )
    });
    assert_python_scenario(&report);

    // The client has closed: give the gateway a moment to end and seal the session, so the
    // page shows a finished one (an open session still exports and verifies).
    let show = wait_for(Duration::from_secs(5), || {
        w.echo_session().filter(|v| v["session"]["sealed"] == true)
    })
    .or_else(|| w.echo_session())
    .unwrap_or_else(|| panic!("no recorded session with the echo call:\n{}", w.gw.log()));
    let session = &show["session"];
    let id = session["id"].as_str().expect("session id").to_owned();
    assert_eq!(session["uid"], NOBODY, "{session}");
    let pid = session["pid"].as_u64().expect("client pid recorded");
    let events = show["events"].as_array().expect("events");
    assert!(
        events
            .iter()
            .any(|e| e["method"] == "tools/call" && e["tool"] == "echo"),
        "{show}"
    );

    let html =
        w.gw.cli_ok(&["sessions", "export", &id, "--format", "html"])
            .stdout;
    let page = w.tmp.path().join("session.html");
    fs::write(&page, &html).expect("write session.html");
    let url = format!("file://{}", page.display());

    // What a browser makes of the page.
    let dom = chromium(w.tmp.path(), "dom", &["--dump-dom".into()], &url);
    assert!(
        dom.contains("<ol class=\"timeline\">"),
        "not the export page:\n{dom}"
    );
    let text = dom_text(&dom);
    for needle in [
        format!("mcpgw session {id}"),
        "tools/call".into(),
        "tool echo".into(),
        format!("Process pid{pid}"),
        format!("Process uid{NOBODY}"),
        format!("Timeline ({} events)", events.len()),
        "Verified: hash chain intact".into(),
    ] {
        assert!(
            text.contains(&needle),
            "rendered page lacks {needle:?}:\n{text}"
        );
    }
    assert!(!text.contains("Verification FAILED"), "{text}");

    // And what it looks like.
    let png = w.tmp.path().join("session.png");
    chromium(
        w.tmp.path(),
        "screenshot",
        &[
            format!("--screenshot={}", png.display()),
            "--window-size=1280,2000".into(),
        ],
        &url,
    );
    let bytes = fs::read(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(
        bytes.len() > 8 * 1024,
        "screenshot is only {} bytes",
        bytes.len()
    );
    let keep = target_dir().join("html-export");
    fs::create_dir_all(&keep).expect("create html-export dir");
    fs::copy(&page, keep.join("session.html")).expect("keep session.html");
    fs::copy(&png, keep.join("session.png")).expect("keep session.png");
    eprintln!("screenshot: {}", keep.join("session.png").display());
}
