//! The sled store with real files: atomic commits, pruning, persistence
//! across reopen.

use switchyard_shared::config::Config;

use super::*;

fn commit(version: u64, actor: &str, limit: usize) -> Commit {
    let config: Config = serde_json::from_value(serde_json::json!({
        "listeners": [{ "name": format!("l{version}"), "address": "127.0.0.1:8080" }],
    }))
    .expect("config");
    Commit {
        current: StoredConfig {
            version,
            hash: format!("h{version}"),
            config: config.clone(),
        },
        history: HistoryEntry {
            version,
            hash: format!("h{version}"),
            timestamp_unix_ms: 1000 + version,
            actor: actor.into(),
            summary: format!("s{version}"),
            config,
        },
        audit: AuditEntry {
            id: version,
            timestamp_unix_ms: 1000 + version,
            actor: actor.into(),
            action: "put_config".into(),
            from_version: version - 1,
            to_version: version,
            summary: format!("s{version}"),
        },
        file_hash: (actor == "file").then(|| format!("f{version}")),
        history_limit: limit,
    }
}

#[test]
fn commits_survive_reopen_with_history_audit_and_file_hash() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = SledStore::open(dir.path()).expect("open");
        assert_eq!(store.current().expect("current"), None);
        store.commit(&commit(1, "file", 100)).expect("commit 1");
        store.commit(&commit(2, "api", 100)).expect("commit 2");
    }
    let store = SledStore::open(dir.path()).expect("reopen");
    let current = store.current().expect("current").expect("some");
    assert_eq!((current.version, current.hash.as_str()), (2, "h2"));
    // The API commit did not touch the file hash.
    assert_eq!(store.last_file_hash().expect("fh").as_deref(), Some("f1"));
    let versions: Vec<u64> = store
        .history()
        .expect("history")
        .iter()
        .map(|h| h.version)
        .collect();
    assert_eq!(versions, vec![2, 1]);
    let audit = store.audit(None, 10).expect("audit");
    assert_eq!(audit.iter().map(|a| a.id).collect::<Vec<_>>(), vec![2, 1]);
    assert_eq!(audit[0].actor, "api");
    assert_eq!(store.audit(Some(2), 10).expect("audit").len(), 1);
    assert_eq!(
        store.history_entry(1).expect("entry").map(|e| e.actor),
        Some("file".into())
    );
    store.check().expect("check");
}

#[test]
fn history_is_pruned_to_the_limit_in_the_same_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SledStore::open(dir.path()).expect("open");
    for v in 1..=7 {
        store.commit(&commit(v, "api", 3)).expect("commit");
    }
    let versions: Vec<u64> = store
        .history()
        .expect("history")
        .iter()
        .map(|h| h.version)
        .collect();
    assert_eq!(versions, vec![7, 6, 5]);
    assert_eq!(store.history_entry(4).expect("entry"), None);
    // The audit log is not pruned.
    assert_eq!(store.audit(None, 100).expect("audit").len(), 7);
}

#[test]
fn file_hash_alone_is_recorded() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = SledStore::open(dir.path()).expect("open");
        store.set_last_file_hash("abc").expect("set");
    }
    let store = SledStore::open(dir.path()).expect("reopen");
    assert_eq!(store.last_file_hash().expect("get").as_deref(), Some("abc"));
    assert_eq!(store.current().expect("current"), None);
}
