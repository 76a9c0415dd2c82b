//! The change path over a real sled store: startup semantics, versioning,
//! no-op on identical configs, If-Match, CRUD errors, rollback, events.

use switchyard_shared::config::Rule;

use super::*;
use crate::server::{ControlPlane, StartError};
use crate::test_support::{empty_service, fixture, prepared_service, PAGE, SAMPLE_YAML};

fn rule(name: &str, prefix: &str) -> Rule {
    serde_json::from_value(serde_json::json!({
        "name": name,
        "match": { "path_prefix": prefix },
        "action": { "forward": { "backend": "web" } },
    }))
    .expect("rule")
}

fn api(action: &'static str) -> ChangeMeta {
    ChangeMeta::new("api", action)
}

#[tokio::test]
async fn empty_store_loads_the_file_as_version_1_with_blobs_resolved() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = fixture(dir.path(), SAMPLE_YAML);
    let service = prepared_service(&options).await;
    let snap = service.current();
    assert_eq!(snap.version, 1);
    assert_eq!(snap.config.rules.len(), 2);
    let blobs = switchyard_shared::convert::file_blobs(&snap.proto);
    assert_eq!(blobs["page"].size, PAGE.len() as u64);
    assert!(service.blobs().get(&blobs["page"].sha256).is_some());
    let audit = service.audit(None, 10).await.expect("audit");
    assert_eq!(audit.len(), 1);
    assert_eq!((audit[0].actor.as_str(), audit[0].to_version), ("file", 1));
}

#[tokio::test]
async fn api_edits_survive_a_restart_with_an_unchanged_file_and_a_changed_file_wins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = fixture(dir.path(), SAMPLE_YAML);
    {
        let service = prepared_service(&options).await;
        let out = service
            .edit(
                api("create_rule"),
                NamedOp::Create {
                    item: rule("extra", "/x"),
                    position: None,
                },
            )
            .await
            .expect("create");
        assert_eq!((out.version, out.changed), (2, true));
    }
    {
        let service = prepared_service(&options).await;
        let snap = service.current();
        assert_eq!(snap.version, 2, "unchanged file keeps the API edit");
        assert!(snap.config.rules.iter().any(|r| r.name == "extra"));
        assert_eq!(service.history().await.expect("history").len(), 2);
    }
    // Edit the file: it is applied as a new version, replacing the API edit.
    let changed = SAMPLE_YAML.replace("path_prefix: /maintenance", "path_prefix: /down");
    std::fs::write(&options.config, changed).expect("rewrite");
    {
        let service = prepared_service(&options).await;
        let snap = service.current();
        assert_eq!(snap.version, 3);
        assert!(!snap.config.rules.iter().any(|r| r.name == "extra"));
        let audit = service.audit(None, 1).await.expect("audit");
        assert_eq!(audit[0].action, "file_load");
    }
    // A changed content file is a new version too, even with the same YAML.
    std::fs::write(
        options
            .effective_content_root()
            .join("pages/maintenance.html"),
        "new",
    )
    .expect("rewrite page");
    let service = prepared_service(&options).await;
    assert_eq!(service.current().version, 4);
    assert_eq!(service.current().blobs["page"].size, 3);
}

#[tokio::test]
async fn an_invalid_file_lists_every_problem_and_creates_no_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = SAMPLE_YAML
        .replace("backend: web", "backend: nowhere")
        .replace("pages/maintenance.html", "../outside.html")
        .replace("path_prefix: /maintenance", "path_regex: '(unclosed'");
    let options = fixture(dir.path(), &bad);
    let err = ControlPlane::prepare(&options)
        .await
        .err()
        .expect("must fail");
    assert!(err.is_config_error());
    let StartError::Invalid { problems, .. } = &err else {
        panic!("expected Invalid, got {err}");
    };
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    for expected in [
        "rules[1].action.forward.backend",
        "content_sources[0].file",
        "rules[0].match.path_regex",
    ] {
        assert!(
            paths.iter().any(|p| p.starts_with(expected)),
            "{expected} missing in {paths:?}"
        );
    }
    assert!(!options.data_dir.exists(), "no sled dir may be created");
    let text = err.to_string();
    assert!(text.contains("content_sources[0].file"), "{text}");
}

#[tokio::test]
async fn identical_configs_make_no_version_and_if_match_guards_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = fixture(dir.path(), SAMPLE_YAML);
    let service = prepared_service(&options).await;
    let same = (*service.current().config).clone();
    let out = service
        .apply(api("put_config").if_version(Some(1)), move |_| Ok(same))
        .await
        .expect("put identical");
    assert_eq!((out.version, out.changed), (1, false));

    let err = service
        .edit(
            api("create_rule").if_version(Some(7)),
            NamedOp::Create {
                item: rule("r", "/r"),
                position: None,
            },
        )
        .await
        .expect_err("stale");
    assert_eq!(err.code, ErrorCode::PreconditionFailed);
    assert_eq!(service.current().version, 1);

    let out = service
        .edit(
            api("create_rule").if_version(Some(1)),
            NamedOp::Create {
                item: rule("r", "/r"),
                position: Some(0),
            },
        )
        .await
        .expect("fresh");
    assert_eq!(out.version, 2);
    assert_eq!(service.current().config.rules[0].name, "r");
    assert!(out.summary.contains("+rule r"), "{}", out.summary);
}

#[tokio::test]
async fn crud_errors_and_invalid_changes_leave_everything_unchanged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = fixture(dir.path(), SAMPLE_YAML);
    let service = prepared_service(&options).await;
    let dup = service
        .edit(
            api("create_rule"),
            NamedOp::Create {
                item: rule("api", "/"),
                position: None,
            },
        )
        .await
        .expect_err("dup");
    assert_eq!(dup.code, ErrorCode::AlreadyExists);
    let missing = service
        .edit::<Rule>(
            api("delete_rule"),
            NamedOp::Delete {
                name: "ghost".into(),
            },
        )
        .await
        .expect_err("missing");
    assert_eq!(missing.code, ErrorCode::NotFound);
    // Deleting a backend still referenced by a rule is a validation error.
    let invalid = service
        .edit::<switchyard_shared::config::Backend>(
            api("delete_backend"),
            NamedOp::Delete { name: "web".into() },
        )
        .await
        .expect_err("invalid");
    assert_eq!(invalid.code, ErrorCode::ValidationFailed);
    assert!(
        invalid.problems.iter().any(|p| p.path.contains("backend")),
        "{:?}",
        invalid.problems
    );
    assert_eq!(service.current().version, 1);
    assert_eq!(service.history().await.expect("history").len(), 1);
    assert_eq!(service.audit(None, 10).await.expect("audit").len(), 1);
}

#[tokio::test]
async fn rollback_makes_a_new_version_equal_to_the_old_one_and_events_follow() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = fixture(dir.path(), SAMPLE_YAML);
    let service = prepared_service(&options).await;
    let mut sub = service.events().subscribe(None);
    let mut watch = service.watch();
    service
        .edit::<Rule>(
            api("delete_rule"),
            NamedOp::Delete {
                name: "maint".into(),
            },
        )
        .await
        .expect("delete");
    assert!(watch.has_changed().expect("watch"));
    assert_eq!(watch.borrow_and_update().version, 2);
    let event = sub.live.recv().await.expect("event");
    assert_eq!(event.kind, "config_changed");
    assert_eq!(event.data()["version"], 2);

    let out = service
        .rollback(1, api("rollback"))
        .await
        .expect("rollback");
    assert_eq!(out.version, 3);
    let v1 = service.history_entry(1).await.expect("v1");
    assert_eq!(*service.current().config, v1.config);
    assert_eq!(service.current().hash, v1.hash);
    let missing = service
        .rollback(99, api("rollback"))
        .await
        .expect_err("unknown");
    assert_eq!(missing.code, ErrorCode::NotFound);
}

#[tokio::test]
async fn reload_keeps_the_current_config_on_an_invalid_file_and_says_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = fixture(dir.path(), SAMPLE_YAML);
    let service = prepared_service(&options).await;
    let mut sub = service.events().subscribe(None);
    std::fs::write(&options.config, "rules: [ {name: x").expect("break file");
    let err = service.reload_file("api").await.expect_err("invalid");
    assert_eq!(err.code, ErrorCode::ValidationFailed);
    assert_eq!(service.current().version, 1);
    assert_eq!(sub.live.recv().await.expect("event").kind, "config_error");

    std::fs::write(
        &options.config,
        SAMPLE_YAML.replace("path_prefix: /maintenance", "path_prefix: /m"),
    )
    .expect("fix");
    let out = service.reload_file("api").await.expect("reload");
    assert_eq!((out.version, out.changed), (2, true));
    assert_eq!(
        sub.live.recv().await.expect("event").kind,
        "config_reloaded"
    );
}

#[tokio::test]
async fn an_empty_store_starts_at_version_0() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = fixture(dir.path(), SAMPLE_YAML);
    let service = empty_service(&options);
    assert_eq!(service.current().version, 0);
    let file = service.check(switchyard_shared::parse::parse_yaml(SAMPLE_YAML).expect("yaml"));
    let out = service
        .load_on_start(file.await.expect("check"))
        .await
        .expect("load");
    assert_eq!(out.version, 1);
}

#[tokio::test]
async fn two_concurrent_writers_with_the_same_if_match_exactly_one_wins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = fixture(dir.path(), SAMPLE_YAML);
    let service = prepared_service(&options).await;
    let (a, b) = tokio::join!(
        service.edit(
            api("create_rule").if_version(Some(1)),
            NamedOp::Create {
                item: rule("a", "/a"),
                position: None
            },
        ),
        service.edit(
            api("create_rule").if_version(Some(1)),
            NamedOp::Create {
                item: rule("b", "/b"),
                position: None
            },
        ),
    );
    let results = [a, b];
    let wins = results.iter().filter(|r| r.is_ok()).count();
    let stale = results
        .iter()
        .filter(|r| matches!(r, Err(e) if e.code == ErrorCode::PreconditionFailed))
        .count();
    assert_eq!((wins, stale), (1, 1));
    assert_eq!(service.current().version, 2);
    assert_eq!(service.history().await.expect("history").len(), 2);
}

#[tokio::test]
async fn positions_past_the_end_append() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = fixture(dir.path(), SAMPLE_YAML);
    let service = prepared_service(&options).await;
    service
        .edit(
            api("create_rule"),
            NamedOp::Create {
                item: rule("z", "/z"),
                position: Some(99),
            },
        )
        .await
        .expect("create");
    let names: Vec<String> = service
        .current()
        .config
        .rules
        .iter()
        .map(|r| r.name.clone())
        .collect();
    assert_eq!(names, vec!["maint", "api", "z"]);
    service
        .edit(
            api("update_rule"),
            NamedOp::Update {
                name: "z".into(),
                item: rule("z", "/z"),
                position: Some(0),
            },
        )
        .await
        .expect("move");
    assert_eq!(service.current().config.rules[0].name, "z");
}

#[tokio::test]
async fn cache_stats_are_listed_per_node_and_summed_per_source() {
    use switchyard_shared::proto::{self, node_message::Msg};
    let dir = tempfile::tempdir().expect("tempdir");
    let options = fixture(dir.path(), SAMPLE_YAML);
    let service = empty_service(&options);
    let stats = |source: &str, n: u64| proto::CacheStats {
        source: source.to_owned(),
        entries: n,
        bytes: 100 * n,
        hits: 10 * n,
        misses: 2 * n,
        stale_served: 3 * n,
        fetch_errors: 4 * n,
    };
    // Node a reports two sources, node b one of them; a node that never
    // reported metrics is not listed.
    let mut keep = Vec::new();
    for node_id in ["a", "b", "silent"] {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        keep.push(rx);
        let hello = proto::Hello {
            node_id: node_id.to_owned(),
            ..Default::default()
        };
        service.node_connected(&hello, tx);
    }
    let report = |caches| {
        Msg::Metrics(proto::MetricsReport {
            caches,
            ..Default::default()
        })
    };
    service.node_message("a", report(vec![stats("css", 1), stats("js", 5)]));
    service.node_message("b", report(vec![stats("css", 2)]));

    // (source, [hits, misses, entries, bytes, stale served, fetch errors])
    let counts = |caches: &[super::reports::CacheStatsView]| -> Vec<(String, [u64; 6])> {
        caches
            .iter()
            .map(|c| {
                let v = [
                    c.hits,
                    c.misses,
                    c.entries,
                    c.bytes,
                    c.stale_served,
                    c.fetch_errors,
                ];
                (c.source.clone(), v)
            })
            .collect()
    };
    let r = service.cache_stats();
    let nodes: Vec<&str> = r.nodes.iter().map(|n| n.node_id.as_str()).collect();
    assert_eq!(nodes, vec!["a", "b"]);
    assert_eq!(
        counts(&r.nodes[0].caches),
        vec![
            ("css".to_owned(), [10, 2, 1, 100, 3, 4]),
            ("js".to_owned(), [50, 10, 5, 500, 15, 20]),
        ]
    );
    assert_eq!(
        counts(&r.nodes[1].caches),
        vec![("css".to_owned(), [20, 4, 2, 200, 6, 8])]
    );
    assert_eq!(
        counts(&r.totals),
        vec![
            // css: node a (x1) plus node b (x2).
            ("css".to_owned(), [30, 6, 3, 300, 9, 12]),
            ("js".to_owned(), [50, 10, 5, 500, 15, 20]),
        ]
    );

    // A newer report replaces the node's previous one (never added twice).
    service.node_message("b", report(vec![stats("css", 4)]));
    let css = service
        .cache_stats()
        .totals
        .into_iter()
        .find(|c| c.source == "css")
        .expect("css");
    assert_eq!((css.entries, css.hits, css.bytes), (5, 50, 500));
}
