//! Issue 6, end to end: content replacement with real processes — file and
//! inline answers (ETag/304, Range, HEAD, gzip/brotli), traversal and
//! address-policy attempts, remote sources (coalescing, stale-if-error,
//! cache clear and stats, events), body rewriting across chunks, and a
//! 100 MiB file distributed to two data planes.

#[path = "content/origin.rs"]
mod origin;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use origin::{Origin, Script};
use serde_json::Value;
use sha2::{Digest, Sha256};
use switchyard_tests::{client, eventually, ControlPlane, DataPlane};
use tokio_tungstenite::tungstenite::Message;

fn write(dir: &Path, yaml: &str) -> PathBuf {
    let path = dir.join("switchyard.yaml");
    std::fs::write(&path, yaml).expect("write config");
    path
}

async fn wait_ready(dp: &DataPlane) {
    dp.wait_ready(Duration::from_secs(60)).await;
}

/// A client that keeps bodies as sent (reqwest decodes nothing here).
fn raw() -> reqwest::Client {
    client()
}

fn page(n: usize) -> String {
    let line = "<p>Switchyard maintenance page, back soon.</p>\n";
    line.repeat(n / line.len() + 1)[..n].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_and_inline_answers_validate_range_head_and_compress() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("content")).expect("content dir");
    let html = page(4000);
    std::fs::write(dir.path().join("content/page.html"), &html).expect("page");
    let config = write(
        dir.path(),
        r#"
content_sources:
  - name: page
    file: content/page.html
  - name: down
    inline: "<h1>down for maintenance</h1>"
    content_type: text/html
rules:
  - name: page
    match: { path_exact: /page }
    action: { replace: { source: page, headers: { cache-control: "max-age=60" } } }
  - name: down
    match: { path_exact: /down }
    action: { replace: { source: down, status: 503, headers: { retry-after: "120" } } }
"#,
    );
    let cp = ControlPlane::start(dir.path(), &config);
    let dp = DataPlane::start(dir.path(), "node-1", &cp.grpc_url());
    wait_ready(&dp).await;
    let http = raw();

    let r = http.get(dp.proxy("/page")).send().await.expect("page");
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    assert_eq!(h["cache-control"], "max-age=60");
    assert_eq!(h["accept-ranges"], "bytes");
    assert_eq!(h["content-length"], "4000");
    let etag = h["etag"].to_str().expect("etag").to_owned();
    let sha = hex(&Sha256::digest(html.as_bytes()));
    assert_eq!(
        etag,
        format!("\"{}\"", &sha[..32]),
        "strong tag from the sha256"
    );
    let last_modified = h["last-modified"].to_str().expect("date").to_owned();
    assert_eq!(r.text().await.expect("body"), html);

    // Conditional requests.
    let r = http
        .get(dp.proxy("/page"))
        .header("if-none-match", &etag)
        .send()
        .await
        .expect("inm");
    assert_eq!(r.status(), 304);
    assert_eq!(r.headers()["etag"], etag.as_str());
    let r = http
        .get(dp.proxy("/page"))
        .header("if-modified-since", &last_modified)
        .send()
        .await
        .expect("ims");
    assert_eq!(r.status(), 304);
    let r = http
        .get(dp.proxy("/page"))
        .header("if-none-match", "\"something-else\"")
        .send()
        .await
        .expect("inm miss");
    assert_eq!(r.status(), 200);

    // Ranges.
    let r = http
        .get(dp.proxy("/page"))
        .header("range", "bytes=100-199")
        .send()
        .await
        .expect("range");
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 100-199/4000");
    assert_eq!(r.text().await.expect("body"), html[100..200]);
    let r = http
        .get(dp.proxy("/page"))
        .header("range", "bytes=-10")
        .send()
        .await
        .expect("suffix");
    assert_eq!(r.status(), 206);
    assert_eq!(r.text().await.expect("body"), html[3990..]);
    let r = http
        .get(dp.proxy("/page"))
        .header("range", "bytes=5000-")
        .send()
        .await
        .expect("416");
    assert_eq!(r.status(), 416);
    assert_eq!(r.headers()["content-range"], "bytes */4000");

    // HEAD: the length, no body.
    let r = http.head(dp.proxy("/page")).send().await.expect("head");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], "4000");
    assert!(r.bytes().await.expect("body").is_empty());

    // gzip and brotli, with Vary and per-encoding tags.
    let r = http
        .get(dp.proxy("/page"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("gzip");
    assert_eq!(r.headers()["content-encoding"], "gzip");
    assert_eq!(r.headers()["vary"], "accept-encoding");
    assert_ne!(r.headers()["etag"], etag.as_str());
    let gz = r.bytes().await.expect("body");
    let mut decoded = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut decoded)
        .expect("valid gzip");
    assert_eq!(decoded, html);
    assert!(gz.len() < html.len() / 4, "gzip shrinks text: {}", gz.len());
    let r = http
        .get(dp.proxy("/page"))
        .header("accept-encoding", "gzip, br")
        .send()
        .await
        .expect("br");
    assert_eq!(r.headers()["content-encoding"], "br");

    // Editing the file: a new version, a content_updated event, a new tag.
    let mut events = ws_connect(&cp, "content_updated").await;
    let edited = page(3000);
    std::fs::write(dir.path().join("content/page.html"), &edited).expect("edit page");
    let event = ws_next(&mut events, Duration::from_secs(20)).await;
    assert_eq!(event["data"]["sources"][0]["source"], "page", "{event}");
    let new_sha = hex(&Sha256::digest(edited.as_bytes()));
    assert_eq!(event["data"]["sources"][0]["sha256"], new_sha.as_str());
    let r = eventually("edited page served", Duration::from_secs(20), || async {
        let r = http.get(dp.proxy("/page")).send().await.ok()?;
        (r.headers()["content-length"] == "3000").then_some(r)
    })
    .await;
    assert_eq!(
        r.headers()["etag"],
        format!("\"{}\"", &new_sha[..32]).as_str()
    );
    assert_eq!(r.text().await.expect("body"), edited);

    // An inline maintenance page: the rule's status and headers, no 304.
    let r = http
        .get(dp.proxy("/down"))
        .header("if-none-match", "*")
        .send()
        .await
        .expect("down");
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "120");
    assert_eq!(r.headers()["content-type"], "text/html");
    assert_eq!(
        r.text().await.expect("body"),
        "<h1>down for maintenance</h1>"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traversal_and_address_policy_attempts_are_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let origin = Origin::start(Script {
        delay: Duration::ZERO,
        content_type: "text/plain",
        chunks: vec!["internal secret"],
        gap: Duration::ZERO,
    })
    .await;
    std::fs::create_dir_all(dir.path().join("content")).expect("content dir");
    let outside = tempfile::tempdir().expect("outside");
    std::fs::write(outside.path().join("secret.txt"), "secret").expect("secret");
    #[cfg(unix)]
    std::os::unix::fs::symlink(outside.path(), dir.path().join("content/escape")).expect("symlink");
    // No allow_loopback: the loopback origin must be refused.
    let config = write(
        dir.path(),
        &format!(
            r#"
content_sources:
  - name: internal
    remote: {{ url: "http://127.0.0.1:{port}/secret" }}
  - name: by-name
    remote: {{ url: "http://localhost:{port}/secret" }}
rules:
  - name: internal
    match: {{ path_exact: /internal }}
    action: {{ replace: {{ source: internal }} }}
  - name: by-name
    match: {{ path_exact: /by-name }}
    action: {{ replace: {{ source: by-name }} }}
"#,
            port = origin.addr.port()
        ),
    );
    let cp = ControlPlane::start(dir.path(), &config);
    let dp = DataPlane::start(dir.path(), "node-1", &cp.grpc_url());
    wait_ready(&dp).await;
    let http = client();

    for path in ["/internal", "/by-name"] {
        let r = http.get(dp.proxy(path)).send().await.expect("proxy");
        assert_eq!(r.status(), 502, "{path}");
        assert_eq!(r.headers()["x-switchyard-error"], "content-unavailable");
        assert!(!r.text().await.expect("body").contains("secret"));
    }
    assert_eq!(origin.hits(), 0, "the origin was never contacted");

    // Traversal: every attempt is refused with a clear message, and
    // nothing is applied.
    let attempts = [
        ("../../etc/passwd", ".."),
        ("/etc/passwd", "outside the content root"),
        ("content/escape/secret.txt", "outside the content root"),
        // Config paths are literal file paths: encoded forms are refused
        // outright rather than looked up under their literal names.
        (
            "%2e%2e/%2e%2e/etc/passwd",
            "contains a percent-encoded sequence",
        ),
        (
            "content/..%2f..%2fetc/passwd",
            "content paths are literal file paths",
        ),
        (
            "content/%2E%2E/secret.txt",
            "contains a percent-encoded sequence",
        ),
    ];
    for (path, expected) in attempts {
        let yaml = format!(
            "content_sources:\n  - name: x\n    file: \"{path}\"\nrules:\n  - name: x\n    action: {{ replace: {{ source: x }} }}\n"
        );
        let r = http
            .post(cp.api("/api/config/validate"))
            .header("content-type", "application/yaml")
            .body(yaml.clone())
            .send()
            .await
            .expect("validate");
        let v: Value = r.json().await.expect("json");
        assert_eq!(v["valid"], false, "{path}: {v}");
        let text = v["problems"].to_string();
        assert!(text.contains("content_sources[0].file"), "{path}: {text}");
        assert!(text.contains(expected), "{path}: {text}");
        let r = http
            .put(cp.api("/api/config"))
            .header("content-type", "application/yaml")
            .body(yaml)
            .send()
            .await
            .expect("put");
        assert!(r.status().is_client_error(), "{path}: {}", r.status());
    }
    let status: Value = http
        .get(cp.api("/api/nodes"))
        .send()
        .await
        .expect("nodes")
        .json()
        .await
        .expect("json");
    assert_eq!(status["desired_version"], 1, "nothing was applied");
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws_connect(cp: &ControlPlane, types: &str) -> Ws {
    let url = cp
        .api(&format!("/ws/events?types={types}"))
        .replacen("http", "ws", 1);
    tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket connects")
        .0
}

async fn ws_next(ws: &mut Ws, within: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("a websocket message in time")
            .expect("stream open")
            .expect("websocket message");
        if let Message::Text(t) = msg {
            return serde_json::from_str(t.as_str()).expect("event is JSON");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_sources_coalesce_serve_stale_clear_and_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let origin = Origin::start(Script {
        delay: Duration::from_millis(300),
        content_type: "text/css",
        chunks: vec!["body { color: teal }"],
        gap: Duration::ZERO,
    })
    .await;
    let config = write(
        dir.path(),
        &format!(
            r#"
remote_content: {{ allow_loopback: true }}
content_sources:
  - name: css
    remote: {{ url: "http://{addr}/site.css", ttl: 1s, stale_if_error: 1h, timeout: 2s }}
    fallback: sorry
  - name: sorry
    inline: "/* unavailable */"
    content_type: text/css
rules:
  - name: css
    match: {{ path_exact: /site.css }}
    action: {{ replace: {{ source: css }} }}
"#,
            addr = origin.addr
        ),
    );
    let cp = ControlPlane::start(dir.path(), &config);
    let mut events = ws_connect(&cp, "content_fetch_failed,cache_cleared").await;
    let dp = DataPlane::start(dir.path(), "node-1", &cp.grpc_url());
    wait_ready(&dp).await;
    let http = client();

    // 30 concurrent misses: one origin fetch.
    let answers = futures::future::join_all((0..30).map(|_| {
        let http = http.clone();
        let url = dp.proxy("/site.css");
        async move {
            let r = http.get(url).send().await.expect("proxy");
            (r.status().as_u16(), r.text().await.expect("body"))
        }
    }))
    .await;
    for (status, body) in &answers {
        assert_eq!((*status, body.as_str()), (200, "body { color: teal }"));
    }
    assert_eq!(origin.hits(), 1, "concurrent misses were coalesced");

    // The origin goes down; after the TTL the stale copy is still served.
    origin.stop();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = http.get(dp.proxy("/site.css")).send().await.expect("stale");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.expect("body"), "body { color: teal }");
    let event = ws_next(&mut events, Duration::from_secs(10)).await;
    assert_eq!(event["type"], "content_fetch_failed", "{event}");
    assert_eq!(event["data"]["source"], "css");
    assert_eq!(event["data"]["node_id"], "node-1");

    // Stats, per node and summed.
    let stats: Value = eventually(
        "stale counted in stats",
        Duration::from_secs(20),
        || async {
            let v: Value = http
                .get(cp.api("/api/content/cache/stats"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let css = v["totals"]
                .as_array()?
                .iter()
                .find(|c| c["source"] == "css")?
                .clone();
            (css["stale_served"].as_u64()? >= 1).then_some(v)
        },
    )
    .await;
    let css = stats["totals"]
        .as_array()
        .and_then(|t| t.iter().find(|c| c["source"] == "css"))
        .expect("css totals");
    assert_eq!(css["entries"], 1);
    assert_eq!(css["bytes"], 20);
    assert!(css["misses"].as_u64() >= Some(30), "{css}");
    assert!(css["fetch_errors"].as_u64() >= Some(1), "{css}");
    assert_eq!(stats["nodes"][0]["node_id"], "node-1");

    // Clearing the source drops the stale copy: the fallback answers.
    let r: Value = http
        .delete(cp.api("/api/content/cache/css"))
        .send()
        .await
        .expect("clear")
        .json()
        .await
        .expect("json");
    assert_eq!(r["nodes_total"], 1, "{r}");
    assert_eq!(r["nodes_confirmed"], 1, "{r}");
    assert_eq!(r["nodes"][0]["cleared_entries"], 1, "{r}");
    let r = http
        .get(dp.proxy("/site.css"))
        .send()
        .await
        .expect("fallback");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.expect("body"), "/* unavailable */");
    let r = http
        .delete(cp.api("/api/content/cache/nope"))
        .send()
        .await
        .expect("404");
    assert_eq!(r.status(), 404);
    let r: Value = http
        .post(cp.api("/api/content/cache/clear"))
        .send()
        .await
        .expect("clear all")
        .json()
        .await
        .expect("json");
    assert_eq!(r["nodes_confirmed"], 1, "{r}");
    let mut saw_cleared = false;
    for _ in 0..10 {
        let e = ws_next(&mut events, Duration::from_secs(10)).await;
        if e["type"] == "cache_cleared" && e["data"]["source"] == "css" {
            saw_cleared = true;
            break;
        }
    }
    assert!(saw_cleared, "a cache_cleared event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrite_finds_matches_split_across_chunks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let origin = Origin::start(Script {
        delay: Duration::ZERO,
        content_type: "text/html; charset=utf-8",
        // "http://old.example" and "v12" are split over chunk boundaries.
        chunks: vec![
            "<a href=\"http://old.exa",
            "mple/x\">release v1",
            "2</a> http://old.example/y",
        ],
        gap: Duration::from_millis(50),
    })
    .await;
    let config = write(
        dir.path(),
        &format!(
            r#"
backends:
  - name: origin
    servers: [{{ address: "{addr}" }}]
rules:
  - name: plain
    match: {{ path_prefix: /plain }}
    action: {{ forward: {{ backend: origin }} }}
  - name: site
    action: {{ forward: {{ backend: origin }} }}
    rewrite_body:
      content_types: [text/html]
      replacements:
        - {{ find: "http://old.example", replace: "https://new.example" }}
        - {{ find: 'v(\d+)', replace: "version $1", regex: true }}
"#,
            addr = origin.addr
        ),
    );
    let cp = ControlPlane::start(dir.path(), &config);
    let dp = DataPlane::start(dir.path(), "node-1", &cp.grpc_url());
    wait_ready(&dp).await;
    let r = client()
        .get(dp.proxy("/"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("proxy");
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("content-length").is_none());
    assert!(r.headers().get("content-encoding").is_none());
    let rewritten =
        "<a href=\"https://new.example/x\">release version 12</a> https://new.example/y";
    assert_eq!(r.text().await.expect("body"), rewritten);
    // The client's Accept-Encoding was not forwarded: the upstream body
    // arrives uncompressed, so it can be rewritten.
    let seen = origin.last_headers();
    assert!(seen.get("accept-encoding").is_none(), "{seen:?}");

    // A range request on a rewrite route: the upstream (which honours
    // ranges) is asked for the whole body, and the client gets all of it,
    // rewritten, with 200 — never original bytes in a 206.
    let r = client()
        .get(dp.proxy("/"))
        .header("range", "bytes=0-9")
        .header("if-range", "\"some-tag\"")
        .send()
        .await
        .expect("range on rewrite");
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("content-range").is_none());
    assert_eq!(r.text().await.expect("body"), rewritten);
    let seen = origin.last_headers();
    assert!(seen.get("range").is_none(), "{seen:?}");
    assert!(seen.get("if-range").is_none(), "{seen:?}");

    // Without a rewrite the same headers reach the upstream untouched, and
    // its 206 is passed through.
    let r = client()
        .get(dp.proxy("/plain"))
        .header("range", "bytes=0-9")
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("range on plain");
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 0-9/67");
    assert_eq!(r.text().await.expect("body"), "<a href=\"h");
    let seen = origin.last_headers();
    assert_eq!(seen["range"], "bytes=0-9", "{seen:?}");
    assert_eq!(seen["accept-encoding"], "gzip", "{seen:?}");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mib_file_reaches_two_data_planes_intact() {
    const SIZE: usize = 100 << 20;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("content")).expect("content dir");
    // Written in 1 MiB blocks that all differ, hashed on the way.
    let mut file = std::fs::File::create(dir.path().join("content/big.bin")).expect("big file");
    let mut hasher = Sha256::new();
    let mut block: Vec<u8> = (0..1u32 << 20)
        .map(|j| (j.wrapping_mul(7) >> 3) as u8)
        .collect();
    for i in 0..(SIZE >> 20) {
        // Each block starts with its number, so a misplaced block shows.
        block[..8].copy_from_slice(&(i as u64).to_le_bytes());
        hasher.update(&block);
        file.write_all(&block).expect("write block");
    }
    drop(file);
    let expected = hex(&hasher.finalize());
    let config = write(
        dir.path(),
        r#"
content_sources:
  - name: big
    file: content/big.bin
rules:
  - name: big
    match: { path_exact: /big.bin }
    action: { replace: { source: big } }
"#,
    );
    let cp = ControlPlane::start(dir.path(), &config);
    let dp1 = DataPlane::start(dir.path(), "node-1", &cp.grpc_url());
    let dp2 = DataPlane::start(dir.path(), "node-2", &cp.grpc_url());
    // Debug builds hash slowly (control plane once, each node to verify):
    // about 40 s on two busy cores.
    dp1.wait_ready(Duration::from_secs(240)).await;
    dp2.wait_ready(Duration::from_secs(240)).await;
    // 100 MiB through debug builds can take longer than the usual 20 s.
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(180))
        .build()
        .expect("client");
    for dp in [&dp1, &dp2] {
        let r = http.get(dp.proxy("/big.bin")).send().await.expect("big");
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/octet-stream");
        assert_eq!(r.headers()["content-length"], SIZE.to_string().as_str());
        assert_eq!(
            r.headers()["etag"],
            format!("\"{}\"", &expected[..32]).as_str()
        );
        // Streamed and hashed chunk by chunk: the test never holds it all.
        let mut hasher = Sha256::new();
        let mut len = 0;
        let mut stream = r.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.expect("chunk");
            len += chunk.len();
            hasher.update(&chunk);
        }
        assert_eq!(len, SIZE);
        assert_eq!(hex(&hasher.finalize()), expected, "{}", dp.node_id);

        let r = http
            .get(dp.proxy("/big.bin"))
            .header("range", format!("bytes={}-", SIZE - 100))
            .send()
            .await
            .expect("tail");
        assert_eq!(r.status(), 206);
        assert_eq!(r.bytes().await.expect("tail").len(), 100);
    }
}
