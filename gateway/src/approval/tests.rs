use std::time::Duration;

use super::*;
use crate::decision::ApprovalTerms;

fn approvals(dir: &std::path::Path) -> Approvals {
    Approvals::open(&dir.join("store.db"), ApprovalConfig::default(), None).unwrap()
}

/// Approvals whose configuration is this `[approval]` TOML.
fn approvals_with(dir: &std::path::Path, toml_text: &str) -> Approvals {
    let raw: config::RawApproval = toml::from_str(toml_text).unwrap();
    let mut errors = Vec::new();
    let config = config::parse(raw, &mut errors);
    assert_eq!(errors, Vec::<String>::new());
    Approvals::open(&dir.join("store.db"), config, None).unwrap()
}

/// The errors `[approval]` TOML gets.
fn config_errors(toml_text: &str) -> Vec<String> {
    let raw: config::RawApproval = toml::from_str(toml_text).unwrap();
    let mut errors = Vec::new();
    config::parse(raw, &mut errors);
    errors
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("mcpgw-approval-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn request(a: &Approvals, subject: &Subject, needed: u32) -> Approval {
    let terms = ApprovalTerms {
        approvers: vec!["sre-leads".into()],
        approvals: needed,
        grant_ttl: Duration::from_secs(60),
        grant_tools: vec![],
    };
    a.request(NewApproval {
        subject,
        server: "db",
        method: "tools/call",
        tool: Some("drop_table"),
        arguments: "{}".into(),
        rule: "writes",
        terms: &terms,
        justification: Some("cleanup".into()),
    })
    .unwrap()
}

/// An approver by token subject `name` (as `Subject::named` callers are).
fn approver(name: &str, groups: &[&str]) -> Approver {
    Approver {
        name: name.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        names: vec![format!("sub:{name}")],
    }
}

/// An approver on the admin socket as Unix user `login` (uid `uid`), as the daemon builds it.
fn at_socket(login: &str, uid: u32, groups: &[&str]) -> Approver {
    Approver {
        name: login.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        names: vec![format!("uid:{uid}"), format!("unix:{login}")],
    }
}

/// An approver with `--token` (subject `sub`, `email`) on the socket as `at`.
fn with_token(sub: &str, email: Option<&str>, at: &Approver) -> Approver {
    let mut names = people::token(sub, Some("https://idp.example"), email);
    names.extend(at.names.iter().cloned());
    Approver {
        name: sub.into(),
        groups: at.groups.clone(),
        names,
    }
}

/// A caller as the identity stage makes it: the kernel attributed process `uid`; `token`:
/// (sub, email) of a valid token, else anonymous (`uid:N`).
fn caller(uid: u32, token: Option<(&str, Option<&str>)>) -> Subject {
    let process = Some(crate::intercept::ProcessInfo {
        pid: 4242,
        uid,
        gid: uid,
        cgroup_id: 7,
        exe: Some("/usr/bin/python3".into()),
        cgroup: Some("/agents".into()),
    });
    match token {
        Some((sub, email)) => Subject {
            issuer: Some("https://idp.example".into()),
            email: email.map(str::to_owned),
            process,
            ..Subject::named(sub, vec![])
        },
        None => Subject {
            name: format!("uid:{uid}"),
            kind: crate::identity::SubjectKind::Anonymous,
            issuer: None,
            email: None,
            groups: vec![],
            process,
            token: None,
        },
    }
}

fn own_call(result: Result<Approval, ApprovalError>) -> String {
    match result {
        Err(e @ ApprovalError::OwnCall { .. }) => e.to_string(),
        other => panic!("expected an own-call refusal, got {other:?}"),
    }
}

#[test]
fn separation_of_duties_and_n_approvals() {
    let dir = temp_dir("duties");
    let a = approvals(&dir);
    let alice = Subject::named("alice", vec!["sre-leads".into()]);
    let pending = request(&a, &alice, 2);
    let err = a.approve(&pending.id, &approver("alice", &["sre-leads"]), None);
    assert!(
        err.unwrap_err().to_string().contains("cannot decide"),
        "no self-approval"
    );
    let err = a.approve(&pending.id, &approver("mallory", &["devs"]), None);
    assert!(err
        .unwrap_err()
        .to_string()
        .contains("not in an approver group"));
    let first = a
        .approve(&pending.id, &approver("bob", &["sre-leads"]), None)
        .unwrap();
    assert_eq!(first.state, ApprovalState::Pending, "two approvals needed");
    assert!(a
        .approve(&pending.id, &approver("bob", &["sre-leads"]), None)
        .is_err());
    assert_eq!(
        a.covering_grant("alice", "db", "drop_table").map(|g| g.id),
        None
    );
    let done = a
        .approve(&pending.id, &approver("carol", &["sre-leads"]), None)
        .unwrap();
    assert_eq!(done.state, ApprovalState::Approved);
    let grant = a
        .covering_grant("alice", "db", "drop_table")
        .map(|g| g.id)
        .expect("grant");
    assert_eq!(Some(grant.clone()), done.grant);
    assert_eq!(
        a.covering_grant("bob", "db", "drop_table").map(|g| g.id),
        None,
        "per subject"
    );
    assert_eq!(
        a.covering_grant("alice", "db", "other").map(|g| g.id),
        None,
        "per tool"
    );

    // Survives a reopen; revoking ends it.
    drop(a);
    let a = approvals(&dir);
    assert_eq!(
        a.covering_grant("alice", "db", "drop_table").map(|g| g.id),
        Some(grant.clone())
    );
    a.revoke(&grant, "root").unwrap();
    assert_eq!(
        a.covering_grant("alice", "db", "drop_table").map(|g| g.id),
        None
    );
    let history = a.show(&pending.id).unwrap();
    let actions: Vec<&str> = history["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["requested", "approval", "approved"]);
}

#[tokio::test]
async fn a_held_call_wakes_on_the_decision() {
    let dir = temp_dir("wake");
    let a = Arc::new(approvals(&dir));
    let alice = Subject::named("alice", vec![]);
    let pending = request(&a, &alice, 1);
    let waiter = {
        let a = a.clone();
        let id = pending.id.clone();
        tokio::spawn(async move { a.wait(&id, Duration::from_secs(10)).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    a.deny(
        &pending.id,
        &approver("bob", &["sre-leads"]),
        "not today".into(),
    )
    .unwrap();
    assert_eq!(
        waiter.await.unwrap(),
        Outcome::Denied {
            by: "bob".into(),
            reason: "not today".into()
        }
    );
    let other = request(&a, &alice, 1);
    assert_eq!(
        a.wait(&other.id, Duration::from_millis(50)).await,
        Outcome::Pending
    );
}

// The reported case: uid 1000 (alice, an approver) runs an agent, its call is held as
// `uid:1000`, and she approves it on the admin socket as `alice`. The old check compared
// `alice` with `uid:1000` and let it through; the uids are the same account.
#[test]
fn the_requesters_uid_cannot_approve_without_any_people_map() {
    let dir = temp_dir("own-uid");
    let a = approvals(&dir);
    let pending = request(&a, &caller(1000, None), 1);
    assert!(pending.requester.contains(&"uid:1000".to_owned()));
    let alice = at_socket("alice", 1000, &["sre-leads"]);
    let why = own_call(a.approve(&pending.id, &alice, None));
    assert!(
        why.contains("alice requested this call and cannot decide on it (same person: uid:1000)"),
        "{why}"
    );
    own_call(a.deny(&pending.id, &alice, "no".into()));
    // Her token does not help either: the person at the socket is the one deciding.
    own_call(a.approve(&pending.id, &with_token("00u1abcd", None, &alice), None));
    // A token caller whose process is hers: refused by the uid too.
    let by_token = request(&a, &caller(1000, Some(("00u1abcd", None))), 1);
    own_call(a.approve(&by_token.id, &alice, None));

    let stored = a.show(&pending.id).unwrap();
    assert_eq!(stored["approval"]["state"], "pending");
    assert_eq!(stored["approval"]["decisions"], serde_json::json!([]));
    assert_eq!(a.covering_grant("uid:1000", "db", "drop_table"), None);
    // Someone else still can.
    let done = a
        .approve(&pending.id, &at_socket("bob", 1001, &["sre-leads"]), None)
        .unwrap();
    assert_eq!(done.state, ApprovalState::Approved);
}

#[test]
fn a_token_subject_is_its_unix_user_through_the_people_map() {
    let people = r#"
[people]
alice = ["unix:alice", "sub:00u1abcd", "email:alice@example.com"]
"#;
    // Her agent runs under a service account (uid 4000) with her token.
    let requester = caller(4000, Some(("00u1abcd", None)));
    let alice = at_socket("alice", 1000, &["sre-leads"]);

    let dir = temp_dir("people-sub");
    let a = approvals_with(&dir, people);
    let pending = request(&a, &requester, 1);
    let why = own_call(a.approve(&pending.id, &alice, None));
    assert!(why.contains("(same person: alice)"), "{why}");

    // Without the map `unix:alice` and `sub:00u1abcd` are two people: nothing says otherwise.
    let dir = temp_dir("people-sub-none");
    let a = approvals(&dir);
    let pending = request(&a, &requester, 1);
    assert!(a.approve(&pending.id, &alice, None).is_ok());
}

#[test]
fn the_same_email_is_the_same_person() {
    let requester = caller(4000, Some(("00u1abcd", Some("Alice@Example.com"))));
    // Her second IdP account (another subject) with the same address, no map needed.
    let dir = temp_dir("email");
    let a = approvals(&dir);
    let pending = request(&a, &requester, 1);
    let root = at_socket("root", 0, &["sre-leads"]);
    let why = own_call(a.approve(
        &pending.id,
        &with_token("00u9other", Some("alice@example.com"), &root),
        None,
    ));
    assert!(
        why.contains("(same person: email:alice@example.com)"),
        "{why}"
    );

    // Her Unix login, tied to the address by the map.
    let dir = temp_dir("email-people");
    let a = approvals_with(
        &dir,
        "[people]\nalice = [\"unix:alice\", \"email:ALICE@example.com\"]\n",
    );
    let pending = request(&a, &requester, 1);
    let why = own_call(a.approve(&pending.id, &at_socket("alice", 1000, &["sre-leads"]), None));
    assert!(why.contains("(same person: alice)"), "{why}");
}

#[test]
fn one_person_under_two_names_counts_once() {
    let dir = temp_dir("two-names");
    let a = approvals_with(&dir, "[people]\nbob = [\"unix:bob\", \"sub:00u2bob\"]\n");
    let pending = request(&a, &caller(4000, Some(("00u3carol", None))), 2);
    let bob = at_socket("bob", 1001, &["sre-leads"]);
    let first = a.approve(&pending.id, &bob, None).unwrap();
    assert_eq!(first.state, ApprovalState::Pending);
    assert_eq!(first.decisions[0].person, "bob");
    // Bob again, with his token at root's terminal: one person, one approval.
    let root = at_socket("root", 0, &["sre-leads"]);
    let err = a
        .approve(&pending.id, &with_token("00u2bob", None, &root), None)
        .unwrap_err();
    assert!(matches!(err, ApprovalError::AlreadyDecided { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!("00u2bob has already decided on {} (as bob)", pending.id)
    );
    // Bob's uid under another token is bob too, map or not.
    let err = a
        .approve(&pending.id, &with_token("00u4dave", None, &bob), None)
        .unwrap_err();
    assert!(matches!(err, ApprovalError::AlreadyDecided { .. }), "{err}");
    // A different person is the second approval.
    let done = a.approve(&pending.id, &root, None).unwrap();
    assert_eq!(done.state, ApprovalState::Approved);
    let persons: Vec<&str> = done.decisions.iter().map(|d| d.person.as_str()).collect();
    assert_eq!(persons, ["bob", "uid:0"]);
}

#[test]
fn records_of_older_versions_still_load_and_are_checked() {
    let dir = temp_dir("legacy");
    let a = approvals(&dir);
    let pending = request(&a, &caller(1000, Some(("00u1abcd", None))), 2);
    a.approve(&pending.id, &at_socket("bob", 1001, &["sre-leads"]), None)
        .unwrap();
    // Strip what older versions did not write.
    let mut old = serde_json::to_value(a.load(&pending.id).unwrap()).unwrap();
    old.as_object_mut().unwrap().remove("requester");
    for d in old["decisions"].as_array_mut().unwrap() {
        d.as_object_mut().unwrap().remove("person");
        d.as_object_mut().unwrap().remove("names");
    }
    let old: Approval = serde_json::from_value(old).unwrap();
    assert!(old.requester.is_empty());
    a.store().put_approval(&old).unwrap();
    own_call(a.approve(&pending.id, &at_socket("alice", 1000, &["sre-leads"]), None));
    own_call(a.approve(&pending.id, &approver("00u1abcd", &["sre-leads"]), None));
    let err = a
        .approve(&pending.id, &at_socket("bob", 1001, &["sre-leads"]), None)
        .unwrap_err();
    assert!(matches!(err, ApprovalError::AlreadyDecided { .. }), "{err}");
}

#[test]
fn people_config_errors() {
    assert_eq!(
        config_errors("[people]\nalice = [\"login:alice\"]\n"),
        ["approval.people.alice: `login:alice`: unknown namespace `login` (use one of `unix:`, `uid:`, `sub:`, `email:`, `identity:`)"]
    );
    assert_eq!(
        config_errors("[people]\nalice = [\"unix:alice\", \"uid:1000\"]\nbob = [\"unix:bob\", \"uid:01000\"]\n"),
        ["approval.people: `uid:1000` is listed under both `alice` and `bob`"]
    );
    let errors = config_errors(
        "[people]\nalice = [\"alice\", \"uid:me\", \"email:alice\", \"sub:\"]\n\"a:b\" = []\n",
    );
    assert_eq!(errors.len(), 5, "{errors:?}");
    for (error, why) in errors.iter().zip([
        "person id `a:b` must be non-empty and without `:`",
        "`alice` has no namespace",
        "`uid:me`: a uid is a number",
        "`email:alice` is not an email address",
        "`sub:` names nobody",
    ]) {
        assert!(error.contains(why), "{error} / {why}");
    }
    // The same name twice under one person is harmless; the approvers map is unchanged.
    assert_eq!(
        config_errors("[people]\nalice = [\"unix:alice\", \"unix:alice\"]\n[approvers]\nalice = [\"sre-leads\"]\n"),
        Vec::<String>::new()
    );
}
