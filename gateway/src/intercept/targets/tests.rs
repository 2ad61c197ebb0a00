use super::*;

fn server(matches: &[&str]) -> Vec<(MatchAddr, String)> {
    matches
        .iter()
        .map(|m| (m.parse().unwrap(), "s".to_owned()))
        .collect()
}

#[test]
fn keys_cover_addresses_names_and_wildcards() {
    let dir = std::env::temp_dir().join(format!("mcpgw-targets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut table = TargetTable::new(
        server(&["10.0.3.17:8443", "mcp.internal:443", "*:9000"]),
        &dir,
    )
    .unwrap();
    let host = HostPort {
        host: "mcp.internal".into(),
        port: 443,
    };
    table.set_resolved(
        host.clone(),
        Ok(vec!["[::ffff:10.1.1.1]:443".parse().unwrap()]),
    );
    let keys = table.keys();
    assert!(keys.contains(&TargetKey::new(v4_mapped([10, 0, 3, 17]), 8443)));
    assert!(
        keys.contains(&TargetKey::new(v4_mapped([10, 1, 1, 1]), 443)),
        "v4-mapped answers are IPv4"
    );
    assert!(keys.contains(&TargetKey::wildcard(9000)));
    assert_eq!(keys.len(), 3);

    // A failed lookup keeps the last answer.
    table.set_resolved(host, Err(std::io::Error::other("resolver down")));
    assert_eq!(table.keys().len(), 3);

    // Run-time entries persist in the state dir; configured ones cannot be removed.
    assert!(table.add("[fd00::17]:8443".parse().unwrap()).unwrap());
    assert!(!table.add("[fd00::17]:8443".parse().unwrap()).unwrap());
    let reloaded = TargetTable::new(Vec::new(), &dir).unwrap();
    assert_eq!(reloaded.view().len(), 1);
    assert!(matches!(
        table.remove(&"10.0.3.17:8443".parse().unwrap()).unwrap(),
        RemoveOutcome::Configured(_)
    ));
    assert!(matches!(
        table.remove(&"[fd00::17]:8443".parse().unwrap()).unwrap(),
        RemoveOutcome::Removed
    ));
    assert!(TargetTable::new(Vec::new(), &dir)
        .unwrap()
        .view()
        .is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}
