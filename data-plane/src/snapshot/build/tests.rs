use super::*;
use crate::cache::sha256_hex;
use crate::events::EventSink;
use switchyard_shared::parse::parse_yaml;

const YAML: &str = r#"
backends:
  - name: pool
    servers: [{ address: "127.0.0.1:1" }]
  - name: other
    servers: [{ address: "127.0.0.1:2" }]
content_sources:
  - name: page
    file: maintenance.html
  - name: note
    inline: "hi"
    content_type: text/plain
rules:
  - name: file
    match: { path_prefix: /maintenance }
    action: { replace: { source: page, status: 503, headers: { x-a: "1" } } }
  - name: note
    match: { path_prefix: /note }
    action: { replace: { source: note, headers: { content-type: application/x-custom } } }
  - name: fwd
    action: { forward: { backend: pool, strip_prefix: /api } }
"#;

fn config(yaml: &str) -> Config {
    match parse_yaml(yaml) {
        Ok(c) => c,
        Err(e) => panic!("test config: {e}"),
    }
}

fn input(config: Config, with_blob: bool) -> SnapshotInput {
    let body = Bytes::from_static(b"<h1>down</h1>");
    let sha = sha256_hex(&body);
    let mut blobs = HashMap::new();
    if with_blob {
        blobs.insert(sha.clone(), body.clone());
    }
    // A stale blob the new version no longer refers to.
    blobs.insert(sha256_hex(b"old"), Bytes::from_static(b"old"));
    SnapshotInput {
        version: 1,
        hash: "h".to_owned(),
        source: SnapshotSource::ControlPlane,
        config,
        file_blobs: [(
            "page".to_owned(),
            BlobRef {
                sha256: sha,
                size: body.len() as u64,
            },
        )]
        .into_iter()
        .collect(),
        blobs,
    }
}

fn built(input: SnapshotInput, previous: Option<&Snapshot>) -> Snapshot {
    match build(
        input,
        previous,
        &Metrics::default(),
        &EventSink::channel().0,
    ) {
        Ok(s) => s,
        Err(e) => panic!("build: {e}"),
    }
}

#[tokio::test]
async fn replacements_carry_status_type_headers_and_blob_body() {
    use http_body_util::BodyExt;
    let snap = built(input(config(YAML), true), None);
    let RuleAction::Replace(page) = &snap.rules[0].action else {
        panic!("rule 0 is not a replacement");
    };
    let get = http::Method::GET;
    let none = HeaderMap::new();
    let response = page.respond(&get, &none).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        response.headers()["content-type"],
        "text/html; charset=utf-8"
    );
    assert_eq!(response.headers()["x-a"], "1");
    let body = response.into_body().collect().await.map(|c| c.to_bytes());
    assert_eq!(body.ok().as_deref(), Some(&b"<h1>down</h1>"[..]));

    // A rule header overrides the source's content type.
    let RuleAction::Replace(note) = &snap.rules[1].action else {
        panic!("rule 1 is not a replacement");
    };
    let response = note.respond(&get, &none).await;
    assert_eq!(response.headers()["content-type"], "application/x-custom");
    let body = response.into_body().collect().await.map(|c| c.to_bytes());
    assert_eq!(body.ok().as_deref(), Some(&b"hi"[..]));
    // Only referenced blobs are kept.
    assert_eq!(snap.blobs.len(), 1);
}

#[test]
fn a_missing_blob_fails_the_build() {
    let err = build(
        input(config(YAML), false),
        None,
        &Metrics::default(),
        &EventSink::channel().0,
    );
    let msg = err.map(|_| ()).map_err(|e| e.to_string());
    assert!(
        matches!(&msg, Err(m) if m.contains("content source `page`") && m.contains("not available")),
        "{msg:?}"
    );
}

#[test]
fn invalid_configs_are_rejected_with_their_paths() {
    let bad = YAML.replace("backend: pool", "backend: nowhere");
    let err = build(
        input(config(&bad), true),
        None,
        &Metrics::default(),
        &EventSink::channel().0,
    );
    let msg = err.map(|_| ()).map_err(|e| e.to_string());
    assert!(
        matches!(&msg, Err(m) if m.contains("rules[2].action.forward.backend")),
        "{msg:?}"
    );
}

#[test]
fn unchanged_backends_are_reused_and_changed_ones_rebuilt() {
    let first = built(input(config(YAML), true), None);
    let changed = YAML.replace("127.0.0.1:2", "127.0.0.1:3");
    let second = built(input(config(&changed), true), Some(&first));
    assert!(Arc::ptr_eq(
        &first.backends["pool"],
        &second.backends["pool"]
    ));
    assert!(!Arc::ptr_eq(
        &first.backends["other"],
        &second.backends["other"]
    ));
    let RuleAction::Forward {
        backend,
        strip_prefix,
        ..
    } = &second.rules[2].action
    else {
        panic!("rule 2 is not a forward");
    };
    assert!(Arc::ptr_eq(backend, &second.backends["pool"]));
    assert_eq!(strip_prefix.as_deref(), Some("/api"));
}

#[test]
fn unchanged_rules_are_kept_unless_what_they_resolved_changed() {
    let first = built(input(config(YAML), true), None);
    // A new rule in front, and a change to the backend `fwd` forwards to.
    let changed = YAML
        .replace(
            "rules:\n",
            "rules:\n  - name: new\n    match: { path_exact: /new }\n    action: { replace: { source: note } }\n",
        )
        .replace("127.0.0.1:1", "127.0.0.1:9");
    let second = built(input(config(&changed), true), Some(&first));
    assert!(Arc::ptr_eq(&first.content, &second.content));
    assert!(Arc::ptr_eq(&first.rules[0], &second.rules[1]));
    assert!(Arc::ptr_eq(&first.rules[1], &second.rules[2]));
    assert!(
        !Arc::ptr_eq(&first.rules[2], &second.rules[3]),
        "its backend changed"
    );
    let RuleAction::Forward { backend, .. } = &second.rules[3].action else {
        panic!("rule 3 is not a forward");
    };
    assert!(Arc::ptr_eq(backend, &second.backends["pool"]));
    assert_eq!(second.routes.rules().len(), second.rules.len());

    // Any content change rebuilds the content set and the rules using it.
    let content = changed.replace("inline: \"hi\"", "inline: \"ho\"");
    let third = built(input(config(&content), true), Some(&second));
    assert!(!Arc::ptr_eq(&second.content, &third.content));
    assert!(!Arc::ptr_eq(&second.rules[1], &third.rules[1]));
    assert!(Arc::ptr_eq(&second.rules[3], &third.rules[3]), "a forward");
}
