use std::time::Duration;

use super::*;
use crate::decision::ApprovalTerms;

fn approvals(dir: &std::path::Path) -> Approvals {
    Approvals::open(&dir.join("store.db"), ApprovalConfig::default(), None).unwrap()
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

fn approver(name: &str, groups: &[&str]) -> Approver {
    Approver {
        name: name.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
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
