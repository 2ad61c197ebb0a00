use super::*;

#[test]
fn embedded_default_and_example_parse() {
    let default = parse_config(DEFAULT_CONFIG).unwrap();
    assert_eq!(default.intercept.mode, InterceptMode::Ebpf);
    assert_eq!(default.gateway.fail_mode, FailMode::Closed);
    assert!(default.servers.is_empty());

    let example = include_str!("../../../examples/gateway.toml");
    let example = parse_config(example).unwrap();
    assert_eq!(example.servers[0].name, "analytics");
    assert_eq!(
        example.servers[0].matches,
        vec![
            MatchAddr::Host(HostPort {
                host: "analytics-mcp.internal".into(),
                port: 443
            }),
            MatchAddr::Socket("10.0.3.17:8443".parse().unwrap()),
        ]
    );
    assert_eq!(
        example.servers[0].upstream,
        Some(HostPort {
            host: "analytics-mcp.internal".into(),
            port: 443
        })
    );
}

#[test]
fn unknown_key_names_key_and_line() {
    let err = parse_config("[gateway]\nlisten = [\"127.0.0.1:15001\"]\nfail_mod = \"open\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("fail_mod"), "{err}");
    assert!(err.contains("line 3"), "{err}");
}

#[test]
fn all_invalid_values_reported_together() {
    let text = r#"
[intercept]
cgroup = "relative"
bypass_mark = 0
[[servers]]
name = "a"
match = ["nohost", "x:0", "[::1]:99999"]
[[servers]]
name = "a"
"#;
    let ConfigError::Invalid(errors) = parse_config(text).unwrap_err() else {
        panic!("expected validation errors");
    };
    let all = errors.join("\n");
    for needle in [
        "intercept.cgroup",
        "bypass_mark",
        "`nohost`",
        "`x:0`",
        "unique",
    ] {
        assert!(all.contains(needle), "missing {needle} in {all}");
    }
}

#[test]
fn match_forms() {
    assert_eq!("*:443".parse::<MatchAddr>(), Ok(MatchAddr::AnyAddr(443)));
    assert_eq!(
        "[::ffff:10.0.0.1]:80".parse::<MatchAddr>(),
        Ok(MatchAddr::Socket("10.0.0.1:80".parse().unwrap())),
        "v4-mapped addresses are canonicalised to IPv4"
    );
    assert_eq!(
        "[fd00::17]:8443".parse::<MatchAddr>(),
        Ok(MatchAddr::Socket("[fd00::17]:8443".parse().unwrap()))
    );
    assert!("bad host:80".parse::<MatchAddr>().is_err());
}

#[test]
fn explicit_mode_needs_listen_and_upstream() {
    let text = r#"
[intercept]
mode = "explicit"
[[servers]]
name = "a"
"#;
    let err = parse_config(text).unwrap_err().to_string();
    assert!(err.contains("needs `listen`"), "{err}");
    assert!(err.contains("needs `upstream`"), "{err}");
}

#[test]
fn masking_section() {
    assert!(
        parse_config("").unwrap().masking.is_none(),
        "no section: masking off"
    );
    let m = parse_config(
        r#"
[masking]
detectors = ["email", "credit_card"]
fields    = ["password"]
style     = "hash"
styles    = { email = "partial" }
custom    = [{ name = "employee_id", pattern = 'EMP-[0-9]{6}' }]
arguments_of_tools = ["query_*"]
pointers = [{ tool = "get_user", pointer = "/structuredContent/address" }]
"#,
    )
    .unwrap()
    .masking
    .unwrap();
    assert_eq!(m.arguments_of_tools, vec!["query_*".to_string()]);
    assert_eq!(m.pointers[0].pointer, "/structuredContent/address");
    assert_eq!(m.settings.detectors.len(), 2);
    assert_eq!(
        m.settings.custom,
        vec![("employee_id".to_string(), "EMP-[0-9]{6}".to_string())]
    );
    for (text, needle) in [
        (
            "[masking]\ndetectors = [\"emial\"]",
            "unknown detector `emial`",
        ),
        (
            "[masking]\ncustom = [{ name = \"x\", pattern = \"(\" }]",
            "masking:",
        ),
        ("[masking]\nstyle = \"blur\"", "blur"),
        (
            "[masking]\npointers = [{ tool = \"t\", pointer = \"a/b\" }]",
            "must start with `/`",
        ),
        ("[masking]\nstyles = { nothing = \"hash\" }", "masking:"),
    ] {
        let err = parse_config(text).unwrap_err().to_string();
        assert!(err.contains(needle), "{text}: {err}");
    }
}

#[test]
fn recording_section() {
    let on = parse_config("").unwrap().recording.unwrap();
    assert_eq!(
        on.retention,
        std::time::Duration::from_secs(90 * 24 * 3600),
        "on by default, 90 days"
    );
    assert!(parse_config("[recording]\nstore = \"none\"")
        .unwrap()
        .recording
        .is_none());
    let week = parse_config("[recording]\nretention = \"7d\"")
        .unwrap()
        .recording
        .unwrap();
    assert_eq!(
        week.retention,
        std::time::Duration::from_secs(7 * 24 * 3600)
    );
    let err = parse_config("[recording]\nstore = \"postgres\"")
        .unwrap_err()
        .to_string();
    assert!(err.contains("not supported yet"), "{err}");
}

#[test]
fn ipv6_targets_need_the_v6_listener_in_ebpf_mode() {
    let only_v4 = "[gateway]\nlisten = [\"127.0.0.1:15001\"]\n";
    for target in ["[fd00::17]:8443", "mcp.internal:443", "*:443"] {
        let text = format!("{only_v4}[[servers]]\nname = \"s\"\nmatch = [\"{target}\"]\n");
        let err = parse_config(&text).unwrap_err().to_string();
        assert!(
            err.contains("needs a [::1]:PORT listener"),
            "{target}: {err}"
        );
    }
    let v4 = format!("{only_v4}[[servers]]\nname = \"s\"\nmatch = [\"10.0.3.17:8443\"]\n");
    assert!(
        parse_config(&v4).is_ok(),
        "IPv4 targets need only the v4 listener"
    );
    let both = "[gateway]\nlisten = [\"127.0.0.1:15001\", \"[::1]:15001\"]\n[[servers]]\nname = \"s\"\nmatch = [\"[fd00::17]:8443\"]\n";
    assert!(parse_config(both).is_ok());
}

#[test]
fn decrypted_traffic_goes_on_in_cleartext_only_to_loopback() {
    let server = |upstream: &str| {
        format!(
            "[[servers]]\nname = \"s\"\nmatch = [\"10.0.3.17:443\"]\nupstream = \"{upstream}\"\n"
        )
    };
    let err = parse_config(&server("http://mcp.internal:8080"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("in cleartext"), "{err}");
    assert!(parse_config(&server("http://127.0.0.1:8080")).is_ok());
    let https = parse_config(&server("https://mcp.internal")).unwrap();
    assert_eq!(https.servers[0].upstream_tls, Some(true));
}
