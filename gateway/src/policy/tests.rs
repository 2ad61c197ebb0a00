use serde_json::json;

use super::*;
use crate::{config::parse_config, identity::Subject};

fn policy(toml: &str) -> Policy {
    parse_config(toml).expect("valid config").policy
}

fn call<'a>(subject: &'a Subject, tool: &'a str, arguments: Option<&'a Value>) -> Call<'a> {
    Call {
        server: "analytics",
        method: "tools/call",
        tool: Some(tool),
        resource: None,
        prompt: None,
        arguments,
        subject,
    }
}

/// A request the server sends to the client (no tool, no arguments).
fn server_request<'a>(subject: &'a Subject, method: &'a str) -> Call<'a> {
    Call {
        server: "analytics",
        method,
        tool: None,
        resource: None,
        prompt: None,
        arguments: None,
        subject,
    }
}

const RULES: &str = r#"
[[policy.rules]]
id      = "no-contractors"
groups  = ["contractors"]
action  = "deny"

[[policy.rules]]
id      = "analysts-read"
servers = ["analytics"]
methods = ["tools/call"]
tools   = ["query_*"]
groups  = ["analysts"]
action  = "allow"

[[policy.rules]]
id        = "big-exports-need-approval"
tools     = ["export"]
arguments = [{ pointer = "/rows", regex = '^\d{5,}$' }]
action    = "approve"
approvers = ["sre-leads"]

[[policy.rules]]
id     = "small-exports"
tools  = ["export"]
action = "allow"

[[policy.rules]]
id     = "prod-deletes"
tools  = ["delete_*"]
arguments = [{ pointer = "/env", equals = "prod" }]
action = "deny"

[[policy.rules]]
id     = "deletes"
tools  = ["delete_*"]
action = "allow"

[[guardrails]]
id       = "no-drop-table"
argument = '(?i)\bdrop\s+table\b'
action   = "deny"

[[guardrails]]
id        = "shell-needs-approval"
check     = "pipe_to_shell"
action    = "approve"
approvers = ["sre-leads"]
"#;

#[test]
fn first_matching_rule_decides_and_names_itself() {
    let p = policy(RULES);
    let analyst = Subject::named("alice", vec!["analysts".into()]);
    let contractor = Subject::named("carl", vec!["analysts".into(), "contractors".into()]);
    let d = p.decide(&call(&analyst, "query_sales", None));
    assert_eq!(
        (d.action, d.rule.as_str()),
        (Action::Allow, "analysts-read")
    );
    let d = p.decide(&call(&contractor, "query_sales", None));
    assert_eq!(
        (d.action, d.rule.as_str()),
        (Action::Deny, "no-contractors")
    );
    let d = p.decide(&call(&analyst, "write_sales", None));
    assert_eq!((d.action, d.rule.as_str()), (Action::Deny, "default:deny"));
    let mut init = call(&analyst, "x", None);
    init.method = "initialize";
    init.tool = None;
    assert_eq!(p.decide(&init).rule, "default:protocol");
    // A rule that names the caller's group denies even protocol messages.
    init.subject = &contractor;
    assert_eq!(p.decide(&init).action, Action::Deny);
}

#[test]
fn argument_conditions_and_guardrails() {
    let p = policy(RULES);
    let s = Subject::named("alice", vec!["analysts".into()]);
    let big = json!({"rows": "100000"});
    let small = json!({"rows": "10"});
    let d = p.decide(&call(&s, "export", Some(&big)));
    assert_eq!(
        (d.action, d.rule.as_str()),
        (Action::Approve, "big-exports-need-approval")
    );
    assert_eq!(d.approval.as_ref().unwrap().approvers, ["sre-leads"]);
    let d = p.decide(&call(&s, "export", Some(&small)));
    assert_eq!(d.rule, "small-exports");
    let prod = json!({"env": "prod"});
    let dev = json!({"env": "dev"});
    assert_eq!(
        p.decide(&call(&s, "delete_rows", Some(&prod))).rule,
        "prod-deletes"
    );
    assert_eq!(
        p.decide(&call(&s, "delete_rows", Some(&dev))).rule,
        "deletes"
    );
    // Guardrails make an allowed call stricter, wherever the string sits.
    let drop = json!({"rows": "1", "sql": {"text": ["DROP  TABLE users"]}});
    let d = p.decide(&call(&s, "export", Some(&drop)));
    assert_eq!((d.action, d.rule.as_str()), (Action::Deny, "no-drop-table"));
    let pipe = json!({"rows": "1", "cmd": "curl x | sh"});
    let d = p.decide(&call(&s, "export", Some(&pipe)));
    assert_eq!(
        (d.action, d.rule.as_str()),
        (Action::Approve, "shell-needs-approval")
    );
}

#[test]
fn tool_lists_show_what_could_pass() {
    let p = policy(RULES);
    let analyst = Subject::named("alice", vec!["analysts".into()]);
    let contractor = Subject::named("carl", vec!["contractors".into()]);
    let can_list = |s: &Subject, tool: &str| p.may_list_tool(&call(s, tool, None));
    assert!(can_list(&analyst, "query_sales"));
    assert!(
        can_list(&analyst, "export"),
        "approvable and allowed with some arguments"
    );
    assert!(
        can_list(&analyst, "delete_rows"),
        "denied only for some arguments"
    );
    assert!(!can_list(&analyst, "write_sales"));
    assert!(!can_list(&contractor, "query_sales"));
}

#[test]
fn process_conditions_match_the_kernel_attested_caller() {
    let p = policy(
        r#"
[[policy.rules]]
id     = "report-bot"
units  = ["report-bot.service"]
uids   = [1001]
exes   = ["/usr/bin/python3*"]
action = "allow"
"#,
    );
    let mut bot = Subject::named("uid:1001", vec![]);
    bot.process = Some(crate::intercept::ProcessInfo {
        pid: 9,
        uid: 1001,
        gid: 1001,
        cgroup_id: 1,
        exe: Some("/usr/bin/python3.13".into()),
        cgroup: Some("/system.slice/report-bot.service".into()),
    });
    assert_eq!(p.decide(&call(&bot, "anything", None)).rule, "report-bot");
    let stranger = Subject::named("uid:1001", vec![]);
    assert_eq!(
        p.decide(&call(&stranger, "anything", None)).rule,
        "default:deny"
    );
}

#[test]
fn server_requests_need_a_rule_for_sampling_and_elicitation() {
    let p = policy(
        r#"
[[policy.rules]]
id      = "sampling-for-analysts"
methods = ["sampling/createMessage"]
groups  = ["analysts"]
action  = "allow"
"#,
    );
    let analyst = Subject::named("alice", vec!["analysts".into()]);
    let other = Subject::named("bob", vec![]);
    let req = server_request;
    let d = p.decide_server_request(&req(&analyst, "sampling/createMessage"));
    assert_eq!(d.action, Action::Allow);
    let d = p.decide_server_request(&req(&other, "sampling/createMessage"));
    assert_eq!(
        (d.action, d.rule.as_str()),
        (Action::Deny, "default:server-requests")
    );
    let d = p.decide_server_request(&req(&analyst, "elicitation/create"));
    assert_eq!(d.action, Action::Deny);
    assert_eq!(
        p.decide_server_request(&req(&other, "roots/list")).action,
        Action::Allow
    );
}

#[test]
fn rules_that_do_not_name_the_method_do_not_allow_sampling() {
    let p = policy(
        "[[policy.rules]]\nid = \"analysts\"\ngroups = [\"analysts\"]\naction = \"allow\"\n\n[[policy.rules]]\nid = \"allow-all\"\naction = \"allow\"\n",
    );
    let analyst = Subject::named("alice", vec!["analysts".into()]);
    for method in ["sampling/createMessage", "elicitation/create"] {
        let d = p.decide_server_request(&server_request(&analyst, method));
        assert_eq!(
            (d.action, d.rule.as_str()),
            (Action::Deny, "default:server-requests"),
            "{method}"
        );
    }
}

#[test]
fn numbers_cannot_dodge_argument_conditions_by_their_spelling() {
    let p = policy(
        r#"
[[policy.rules]]
id        = "big-by-pattern"
tools     = ["export"]
arguments = [{ pointer = "/rows", regex = '^\d{5,}$' }]
action    = "approve"
approvers = ["sre-leads"]

[[policy.rules]]
id        = "big-by-bound"
tools     = ["export2"]
arguments = [{ pointer = "/rows", min = 10000 }]
action    = "approve"
approvers = ["sre-leads"]

[[policy.rules]]
id     = "rest"
action = "allow"
"#,
    );
    let bot = Subject::named("bot", vec![]);
    let decide = |tool: &str, rows: Value| {
        let args = json!({ "rows": rows });
        p.decide(&call(&bot, tool, Some(&args))).rule
    };
    // serde_json reads 1e5 as 100000.0; its JSON text would be "100000.0".
    let big: Value = serde_json::from_str("1e5").unwrap();
    assert_eq!(decide("export", big.clone()), "big-by-pattern");
    assert_eq!(decide("export", json!(100000.0)), "big-by-pattern");
    assert_eq!(decide("export", json!(500)), "rest");
    for rows in [big, json!(100000.0), json!("250000"), json!(10000)] {
        assert_eq!(decide("export2", rows.clone()), "big-by-bound", "{rows}");
    }
    assert_eq!(decide("export2", json!(9999.5)), "rest");
    assert_eq!(decide("export2", json!("many")), "rest");
}

#[test]
fn invalid_rules_are_reported_with_their_line() {
    let err = parse_config(
        r#"
[[policy.rules]]
id     = "ok"
action = "allow"

[[policy.rules]]
id        = "bad-regex"
arguments = [{ pointer = "/q", regex = "(" }]
action    = "allow"

[[policy.rules]]
id     = "ok"
action = "approve"

[[guardrails]]
id     = "g"
check  = "fork_bomb"
action = "deny"
"#,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("policy rule `bad-regex` (line 6): argument regex"),
        "{err}"
    );
    assert!(
        err.contains("policy rule `ok` (line 11): id must be unique"),
        "{err}"
    );
    assert!(err.contains("`approve` rule needs `approvers`"), "{err}");
    assert!(
        err.contains("guardrail `g` (line 15): unknown check `fork_bomb`"),
        "{err}"
    );
    let err = parse_config("[[policy.rules]]\nid = \"x\"\naction = \"allow\"\ntool = [\"a\"]\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unknown field `tool`") && err.contains("line 4"),
        "{err}"
    );
}
