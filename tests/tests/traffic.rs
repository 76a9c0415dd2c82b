//! Issue 5, end to end: traffic management against real misbehaving
//! backends (answering 503, resetting, dying mid-response, slow,
//! flapping): retries and their budget, circuit breakers with their events,
//! active health checks, fallbacks, load-balancing spread, consistent
//! hashing, header and path rewriting, request limits.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;
use switchyard_tests::{client, eventually, Backend, BackendMode, ControlPlane, Stack};
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(30);

/// A control plane and one data plane serving `yaml`.
async fn stack(yaml: &str) -> Stack {
    Stack::start(yaml, WAIT).await
}

/// Saves like an editor (temp file renamed over) so the watcher applies it.
fn save(path: &Path, text: &str) {
    let tmp = path.with_extension("yaml.tmp~");
    std::fs::write(&tmp, text).expect("write temp");
    std::fs::rename(&tmp, path).expect("rename over");
}

async fn get(url: &str, headers: &[(&str, &str)]) -> (u16, reqwest::header::HeaderMap, String) {
    let mut req = client().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().await.unwrap_or_default())
}

fn backend_of(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["backend"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Reads events of `types` from the control plane's stream (from the
/// start) until `want` returns true for the collected list.
async fn events_until(
    cp: &ControlPlane,
    types: &str,
    want: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let url = cp
        .api(&format!("/ws/events?types={types}&after_seq=0"))
        .replacen("http://", "ws://", 1);
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("ws connect");
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !want(&seen) {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .unwrap_or_else(|_| panic!("events in time; got {seen:#?}"))
            .expect("stream open")
            .expect("message");
        if let Message::Text(t) = msg {
            seen.push(serde_json::from_str::<Value>(&t).expect("json event"));
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_follow_the_policy_and_stay_within_the_budget() {
    let reset = Backend::start("reset", BackendMode::Reset).await;
    let unavailable = Backend::start("unavailable", BackendMode::Status(503)).await;
    let good = Backend::start("good", BackendMode::Echo).await;
    let flapping = Backend::start("flapping", BackendMode::Flapping).await;
    let yaml = format!(
        r#"
backends:
  - name: resetting
    servers: [{{ address: "{reset}" }}, {{ address: "{good}" }}]
    outlier_detection: {{ consecutive_failures: 1000 }}
    retries: {{ max_retries: 2, backoff_base: 1ms, backoff_max: 5ms, retry_on: [reset], min_retries_per_second: 1000 }}
  - name: flapping
    servers: [{{ address: "{flapping}" }}]
    retries: {{ backoff_base: 1ms, backoff_max: 2ms, retry_statuses: [503], min_retries_per_second: 1000 }}
  - name: budgeted
    servers: [{{ address: "{unavailable}" }}, {{ address: "{good}" }}]
    outlier_detection: {{ consecutive_failures: 1000 }}
    retries: {{ max_retries: 2, backoff_base: 1ms, backoff_max: 2ms, retry_statuses: [503], budget_percent: 20, min_retries_per_second: 0 }}
rules:
  - name: resetting
    match: {{ path_prefix: /reset }}
    action: {{ forward: {{ backend: resetting }} }}
  - name: flapping
    match: {{ path_prefix: /flap }}
    action: {{ forward: {{ backend: flapping }} }}
  - name: budgeted
    match: {{ path_prefix: /budget }}
    action: {{ forward: {{ backend: budgeted }} }}
"#,
        reset = reset.addr,
        good = good.addr,
        unavailable = unavailable.addr,
        flapping = flapping.addr,
    );
    let s = stack(&yaml).await;
    let http = client();

    // A flapping server (200, 503, 200, ...): each 503 is retried once
    // (on the only server) and the client only ever sees 200.
    for _ in 0..20 {
        let (status, _, _) = get(&s.dp.proxy("/flap"), &[]).await;
        assert_eq!(status, 200);
    }
    assert_eq!(flapping.hits(), 1 + 2 * 19);

    // GETs hitting the resetting server are retried on the good one.
    for _ in 0..20 {
        let (status, _, body) = get(&s.dp.proxy("/reset"), &[]).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(backend_of(&body), "good");
    }
    assert!(
        reset.hits() >= 8,
        "round robin sent some to the resetting server"
    );
    // A POST is not idempotent: a reset is not retried.
    let mut failed_posts = 0;
    for _ in 0..10 {
        let r = http
            .post(s.dp.proxy("/reset"))
            .body("x")
            .send()
            .await
            .expect("post");
        if r.status().as_u16() == 502 {
            failed_posts += 1;
        }
    }
    assert!(failed_posts >= 4, "{failed_posts} POSTs failed");

    // Half the tries land on the 503 server; 20% budget, no floor: at most
    // one retry per five requests (plus rounding), so most 503s come back.
    let before = unavailable.hits() + good.hits();
    let mut ok = 0;
    let n = 100;
    for _ in 0..n {
        let (status, _, _) = get(&s.dp.proxy("/budget"), &[]).await;
        if status == 200 {
            ok += 1;
        }
    }
    let tries = unavailable.hits() + good.hits() - before;
    let retries = tries - n;
    assert!(retries <= n / 5 + 1, "{retries} retries for {n} requests");
    assert!(
        retries >= n / 5 - 2,
        "the budget was used: {retries} retries"
    );
    assert!(ok >= 50 && ok <= 50 + retries + 1, "{ok} answered 200");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_circuit_breaker_opens_serves_the_fallback_then_closes_with_events() {
    let flaky = Backend::start("flaky", BackendMode::Status(503)).await;
    let yaml = format!(
        r#"
backends:
  - name: flaky
    servers: [{{ address: "{addr}" }}]
    outlier_detection: {{ consecutive_failures: 1000 }}
    retries: {{ max_retries: 0 }}
    circuit_breaker: {{ failure_threshold: 3, open_duration: 1s, half_open_probes: 1 }}
content_sources:
  - name: sorry
    inline: "sorry, try later"
rules:
  - name: flaky
    action: {{ forward: {{ backend: flaky }} }}
    fallback: {{ source: sorry, status: 503 }}
"#,
        addr = flaky.addr
    );
    let s = stack(&yaml).await;
    for _ in 0..3 {
        let (status, headers, _) = get(&s.dp.proxy("/x"), &[]).await;
        assert_eq!(status, 503);
        assert!(headers.get("x-switchyard-fallback").is_none());
    }
    // Open: the backend is not asked, the fallback answers and says why.
    for _ in 0..5 {
        let (status, headers, body) = get(&s.dp.proxy("/x"), &[]).await;
        assert_eq!(status, 503);
        assert_eq!(body, "sorry, try later");
        assert_eq!(headers["x-switchyard-fallback"], "circuit-open");
    }
    assert_eq!(flaky.hits(), 3);

    // After the open duration one probe goes through; it succeeds: closed.
    flaky.set_mode(BackendMode::Echo);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, _, body) = get(&s.dp.proxy("/x"), &[]).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, _) = get(&s.dp.proxy("/x"), &[]).await;
    assert_eq!(status, 200);

    let events = events_until(&s.cp, "circuit_state_changed", |e| e.len() >= 3).await;
    let transitions: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e["data"]["from"].as_str().unwrap_or("").to_owned(),
                e["data"]["to"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let t = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    assert_eq!(
        transitions,
        [
            t("closed", "open"),
            t("open", "half_open"),
            t("half_open", "closed")
        ]
    );
    assert_eq!(events[0]["data"]["server"], flaky.addr.to_string());

    // The fallbacks are counted and reach the control plane's metrics.
    let http = client();
    eventually("fallbacks counted in /api/metrics", WAIT, || async {
        let m: Value = http
            .get(s.cp.api("/api/metrics"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let fallbacks = m["rule_metrics"]["flaky"]["fallbacks"].as_u64()?;
        let server = &m["backends"]["flaky"][flaky.addr.to_string()];
        let closed = server["circuit_states"]["closed"].as_u64()?;
        (fallbacks == 5 && closed == 1).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallbacks_cover_timeouts_dead_servers_statuses_and_broken_answers() {
    let slow = Backend::start("slow", BackendMode::Slow(Duration::from_secs(2))).await;
    let teapot = Backend::start("teapot", BackendMode::Status(418)).await;
    let dying = Backend::start("dying", BackendMode::DieMidResponse).await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead_addr = dead.local_addr().expect("addr");
    drop(dead);
    let yaml = format!(
        r#"
backends:
  - name: slow
    servers: [{{ address: "{slow}" }}]
    timeouts: {{ request: 200ms }}
  - name: teapot
    servers: [{{ address: "{teapot}" }}]
  - name: dead
    servers: [{{ address: "{dead_addr}" }}]
  - name: dying
    servers: [{{ address: "{dying}" }}]
content_sources:
  - name: maintenance
    inline: "down for maintenance"
rules:
  - name: slow
    match: {{ path_prefix: /slow }}
    action: {{ forward: {{ backend: slow }} }}
    fallback: {{ source: maintenance, status: 200 }}
  - name: teapot
    match: {{ path_prefix: /teapot }}
    action: {{ forward: {{ backend: teapot }} }}
    fallback: {{ source: maintenance, statuses: [418] }}
  - name: dead
    match: {{ path_prefix: /dead }}
    action: {{ forward: {{ backend: dead }} }}
    fallback: {{ source: maintenance }}
  - name: dying
    match: {{ path_prefix: /dying }}
    action: {{ forward: {{ backend: dying }} }}
"#,
        slow = slow.addr,
        teapot = teapot.addr,
        dying = dying.addr,
    );
    let s = stack(&yaml).await;
    let cases = [
        ("/slow", 200, "upstream-timeout"),
        ("/teapot", 503, "status-418"),
        ("/dead", 503, "upstream-connect"),
    ];
    for (path, want_status, reason) in cases {
        let (status, headers, body) = get(&s.dp.proxy(path), &[]).await;
        assert_eq!(status, want_status, "{path}: {body}");
        assert_eq!(body, "down for maintenance", "{path}");
        assert_eq!(headers["x-switchyard-fallback"], reason, "{path}");
    }
    // Without a fallback: a server dying mid-response breaks the body (the
    // head already went out), it does not hang.
    let r = client()
        .get(s.dp.proxy("/dying"))
        .send()
        .await
        .expect("head");
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.bytes().await.is_err(), "a truncated body is an error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_http1_answers_stream_through_whole_or_fail_as_502() {
    let chunked = Backend::start("chunked", BackendMode::Chunked).await;
    let malformed = Backend::start("malformed", BackendMode::Malformed).await;
    let yaml = format!(
        r#"
backends:
  - name: chunked
    servers: [{{ address: "{chunked}" }}]
  - name: malformed
    servers: [{{ address: "{malformed}" }}]
rules:
  - name: chunked
    match: {{ path_prefix: /chunked }}
    action: {{ forward: {{ backend: chunked }} }}
  - name: malformed
    match: {{ path_prefix: /malformed }}
    action: {{ forward: {{ backend: malformed }} }}
"#,
        chunked = chunked.addr,
        malformed = malformed.addr,
    );
    let s = stack(&yaml).await;
    // One after the other: each reuses the pooled upstream connection.
    for _ in 0..3 {
        let (status, _, body) = get(&s.dp.proxy("/chunked"), &[]).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body, "hello, chunked world");
    }
    assert_eq!(chunked.hits(), 3);
    assert_eq!(
        chunked
            .connections
            .load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the chunked answers kept their connection reusable"
    );
    let (status, headers, body) = get(&s.dp.proxy("/malformed"), &[]).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(headers["x-switchyard-error"], "upstream-failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_health_checks_take_servers_out_and_back_with_events() {
    let a = Backend::start("a", BackendMode::Echo).await;
    let b = Backend::start("b", BackendMode::Echo).await;
    let yaml = format!(
        r#"
backends:
  - name: pair
    servers: [{{ address: "{a}" }}, {{ address: "{b}" }}]
    health_check: {{ path: /health, interval: 100ms, timeout: 100ms, healthy_threshold: 2, unhealthy_threshold: 2 }}
rules:
  - name: pair
    action: {{ forward: {{ backend: pair }} }}
"#,
        a = a.addr,
        b = b.addr
    );
    let s = stack(&yaml).await;
    a.set_mode(BackendMode::Status(500));
    let events = events_until(&s.cp, "backend_health_changed", |e| !e.is_empty()).await;
    assert_eq!(events[0]["data"]["server"], a.addr.to_string());
    assert_eq!(events[0]["data"]["healthy"], false);
    for _ in 0..10 {
        let (status, _, body) = get(&s.dp.proxy("/"), &[]).await;
        assert_eq!((status, backend_of(&body)), (200, "b".to_owned()));
    }
    a.set_mode(BackendMode::Echo);
    let events = events_until(&s.cp, "backend_health_changed", |e| e.len() >= 2).await;
    assert_eq!(events[1]["data"]["healthy"], true);
    let mut seen = HashSet::new();
    for _ in 0..4 {
        seen.insert(backend_of(&get(&s.dp.proxy("/"), &[]).await.2));
    }
    assert_eq!(seen.len(), 2, "a is back in rotation: {seen:?}");

    // Everything down: no healthy server is a 503 naming the cause.
    a.set_mode(BackendMode::Status(500));
    b.set_mode(BackendMode::Status(500));
    let http = client();
    eventually("both servers out", WAIT, || async {
        let r = http.get(s.dp.proxy("/")).send().await.ok()?;
        (r.headers().get("x-switchyard-error")?.to_str().ok()? == "no-server").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balancing_spreads_and_consistent_hashing_moves_few_keys() {
    let servers = [
        Backend::start("s0", BackendMode::Echo).await,
        Backend::start("s1", BackendMode::Echo).await,
        Backend::start("s2", BackendMode::Echo).await,
    ];
    let list = |n: usize| {
        servers[..n]
            .iter()
            .map(|s| format!("{{ address: \"{}\" }}", s.addr))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let yaml = |n: usize| {
        format!(
            r#"
backends:
  - name: rr
    servers: [{all}]
  - name: random
    load_balancing: random
    servers: [{all}]
  - name: hashed
    load_balancing: consistent_hash
    hash_on: {{ header: x-user }}
    servers: [{some}]
rules:
  - name: rr
    match: {{ path_prefix: /rr }}
    action: {{ forward: {{ backend: rr }} }}
  - name: random
    match: {{ path_prefix: /random }}
    action: {{ forward: {{ backend: random }} }}
  - name: hashed
    match: {{ path_prefix: /hashed }}
    action: {{ forward: {{ backend: hashed }} }}
"#,
            all = list(3),
            some = list(n)
        )
    };
    let s = stack(&yaml(3)).await;
    let count = |path: &'static str, n: usize| {
        let url = s.dp.proxy(path);
        async move {
            let mut c: HashMap<String, usize> = HashMap::new();
            for _ in 0..n {
                *c.entry(backend_of(&get(&url, &[]).await.2)).or_default() += 1;
            }
            c
        }
    };
    // Round robin: exact thirds.
    let rr = count("/rr", 300).await;
    assert!(rr.values().all(|&v| v == 100), "{rr:?}");
    // Random: each within 100 +- 40 (about 5 standard deviations).
    let random = count("/random", 300).await;
    assert_eq!(random.len(), 3, "{random:?}");
    assert!(
        random.values().all(|&v| (60..=140).contains(&v)),
        "{random:?}"
    );

    // Consistent hashing: a key always lands on the same server.
    let users: Vec<String> = (0..60).map(|i| format!("user-{i}")).collect();
    let mut placed = HashMap::new();
    for u in &users {
        let first = backend_of(&get(&s.dp.proxy("/hashed"), &[("x-user", u)]).await.2);
        let again = backend_of(&get(&s.dp.proxy("/hashed"), &[("x-user", u)]).await.2);
        assert_eq!(first, again, "{u}");
        placed.insert(u.clone(), first);
    }
    assert_eq!(placed.values().collect::<HashSet<_>>().len(), 3);
    // Remove s2: only its keys move.
    save(&s.config, &yaml(2));
    let http = client();
    let url = s.dp.proxy("/hashed");
    eventually("s2 out of the ring", WAIT, || async {
        for u in users.iter().filter(|u| placed[*u] == "s2") {
            let r = http.get(&url).header("x-user", u).send().await.ok()?;
            if backend_of(&r.text().await.ok()?) == "s2" {
                return None;
            }
        }
        Some(())
    })
    .await;
    for u in users.iter().filter(|u| placed[*u] != "s2") {
        let now = backend_of(&get(&url, &[("x-user", u)]).await.2);
        assert_eq!(now, placed[u], "{u} stayed where it was");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_host_and_paths_are_rewritten_per_rule_and_backend() {
    let echo = Backend::start("echo", BackendMode::Echo).await;
    let yaml = format!(
        r#"
backends:
  - name: server_host
    servers: [{{ address: "{addr}" }}]
    host_header: server
  - name: custom_host
    servers: [{{ address: "{addr}" }}]
    host_header: {{ custom: internal.example }}
  - name: preserve
    servers: [{{ address: "{addr}" }}]
rules:
  - name: v1
    match: {{ path_prefix: /api/v1 }}
    action: {{ forward: {{ backend: server_host, strip_prefix: /api/v1, add_prefix: /v2 }} }}
    request_headers: {{ set: {{ x-env: prod }}, remove: [x-secret] }}
    response_headers: {{ set: {{ x-served-by: switchyard }}, remove: [x-backend] }}
  - name: custom
    match: {{ path_prefix: /custom }}
    action: {{ forward: {{ backend: custom_host }} }}
  - name: preserve
    action: {{ forward: {{ backend: preserve }} }}
"#,
        addr = echo.addr
    );
    let s = stack(&yaml).await;
    let (status, headers, body) = get(
        &s.dp.proxy("/api/v1/users?id=7"),
        &[("x-secret", "s3cr3t"), ("host", "shop.example")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["path"], "/v2/users");
    assert_eq!(v["query"], "id=7");
    assert_eq!(v["host"], echo.addr.to_string());
    assert_eq!(v["x_forwarded_host"], "shop.example");
    assert_eq!(v["headers"]["x-env"], "prod");
    assert!(v["headers"].get("x-secret").is_none());
    assert_eq!(headers["x-served-by"], "switchyard");
    assert!(headers.get("x-backend").is_none());

    let v: Value = serde_json::from_str(
        &get(&s.dp.proxy("/custom"), &[("host", "a.example")])
            .await
            .2,
    )
    .expect("json");
    assert_eq!(v["host"], "internal.example");
    let v: Value = serde_json::from_str(&get(&s.dp.proxy("/p"), &[("host", "a.example")]).await.2)
        .expect("json");
    assert_eq!(v["host"], "a.example");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_limits_answer_413_431_and_504() {
    let slow = Backend::start("slow", BackendMode::Slow(Duration::from_secs(3))).await;
    let echo = Backend::start("echo", BackendMode::Echo).await;
    let yaml = format!(
        r#"
limits: {{ max_body_bytes: 1KiB, request_timeout: 300ms, max_header_bytes: 16KiB }}
backends:
  - name: slow
    servers: [{{ address: "{slow}" }}]
  - name: echo
    servers: [{{ address: "{echo}" }}]
rules:
  - name: slow
    match: {{ path_prefix: /slow }}
    action: {{ forward: {{ backend: slow }} }}
  - name: echo
    action: {{ forward: {{ backend: echo }} }}
"#,
        slow = slow.addr,
        echo = echo.addr
    );
    let s = stack(&yaml).await;
    let http = client();
    // Declared too large: refused before anything is sent upstream.
    let r = http
        .post(s.dp.proxy("/up"))
        .body(vec![b'x'; 4096])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 413);
    assert_eq!(echo.hits(), 0);
    // Streamed (chunked, no length): cut off at the limit.
    let chunks = futures::stream::iter(
        (0..8).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'y'; 512]))),
    );
    let r = http
        .post(s.dp.proxy("/up"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 413);
    // The unread rest of the body ends the connection, announced.
    assert_eq!(r.headers()["connection"], "close");
    // Small enough: fine.
    let r = http
        .post(s.dp.proxy("/up"))
        .body(vec![b'x'; 100])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 200);
    // A head over max_header_bytes: 431.
    let big = "v".repeat(20 * 1024);
    let (status, _, _) = get(&s.dp.proxy("/up"), &[("x-big", big.as_str())]).await;
    assert_eq!(status, 431);
    // Stalled heads (408), idle connections and exact head limits: see
    // limits.rs.
    // The whole request is bounded.
    let started = std::time::Instant::now();
    let (status, headers, _) = get(&s.dp.proxy("/slow"), &[]).await;
    assert_eq!(status, 504);
    assert_eq!(headers["x-switchyard-error"], "request-timeout");
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// A WebSocket server echoing text messages in upper case.
async fn websocket_backend() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use futures::SinkExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if let Message::Text(t) = msg {
                        let upper = t.to_uppercase();
                        if ws.send(Message::text(upper)).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_and_grpc_pass_through_with_real_clients() {
    use futures::SinkExt;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;

    let (ws_addr, ws_task) = websocket_backend().await;
    // A real tonic server (gRPC health) on h2c.
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("shop", tonic_health::ServingStatus::Serving)
        .await;
    let grpc_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let grpc_addr = grpc_listener.local_addr().expect("addr");
    let grpc_task = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(
                grpc_listener,
            ))
            .await;
    });
    let yaml = format!(
        r#"
backends:
  - name: ws
    servers: [{{ address: "{ws_addr}" }}]
  - name: grpc
    protocol: http2
    servers: [{{ address: "{grpc_addr}" }}]
rules:
  - name: ws
    match: {{ path_prefix: /ws }}
    action: {{ forward: {{ backend: ws }} }}
  - name: grpc
    match: {{ path_prefix: /grpc.health.v1.Health/ }}
    action: {{ forward: {{ backend: grpc }} }}
"#
    );
    let s = stack(&yaml).await;

    // WebSocket: the upgrade goes through and frames flow both ways.
    let url = s.dp.proxy("/ws").replacen("http://", "ws://", 1);
    let (mut ws, response) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket through the proxy");
    assert_eq!(response.status().as_u16(), 101);
    for word in ["hello", "switchyard"] {
        ws.send(Message::text(word)).await.expect("send");
        let reply = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("reply in time")
            .expect("open")
            .expect("message");
        assert_eq!(reply, Message::text(word.to_uppercase()));
    }
    ws.close(None).await.expect("close");

    // gRPC: unary calls, statuses carried in trailers, and a server stream.
    let channel = tonic::transport::Channel::from_shared(s.dp.proxy(""))
        .expect("uri")
        .connect()
        .await
        .expect("grpc through the proxy");
    let mut client = HealthClient::new(channel);
    let ok = client
        .check(HealthCheckRequest {
            service: "shop".into(),
        })
        .await
        .expect("check");
    assert_eq!(ok.into_inner().status, ServingStatus::Serving as i32);
    let missing = client
        .check(HealthCheckRequest {
            service: "nope".into(),
        })
        .await
        .expect_err("unknown service");
    assert_eq!(missing.code(), tonic::Code::NotFound);
    let mut watch = client
        .watch(HealthCheckRequest {
            service: "shop".into(),
        })
        .await
        .expect("watch")
        .into_inner();
    let first = watch.message().await.expect("stream").expect("message");
    assert_eq!(first.status, ServingStatus::Serving as i32);
    reporter
        .set_service_status("shop", tonic_health::ServingStatus::NotServing)
        .await;
    let second = tokio::time::timeout(Duration::from_secs(5), watch.message())
        .await
        .expect("update in time")
        .expect("stream")
        .expect("message");
    assert_eq!(second.status, ServingStatus::NotServing as i32);
    ws_task.abort();
    grpc_task.abort();
}

const GIB: u64 = 1 << 30;
const CHUNK: usize = 64 * 1024;

/// A backend that drains uploads (answering the byte count) and streams
/// 1 GiB downloads, never holding more than a chunk.
async fn bulk_backend() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use http_body_util::{BodyExt, Either, Full, StreamBody};
    use hyper::body::Frame;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    |req: hyper::Request<hyper::body::Incoming>| async move {
                        if req.uri().path() == "/download" {
                            let chunk = bytes::Bytes::from(vec![b'd'; CHUNK]);
                            let frames =
                                futures::stream::iter((0..GIB / CHUNK as u64).map(move |_| {
                                    Ok::<_, std::io::Error>(Frame::data(chunk.clone()))
                                }));
                            let body = Either::Left(StreamBody::new(frames));
                            return Ok::<_, std::io::Error>(hyper::Response::new(body));
                        }
                        let mut body = req.into_body();
                        let mut total = 0u64;
                        while let Some(frame) = body.frame().await {
                            let frame = frame.map_err(std::io::Error::other)?;
                            total += frame.data_ref().map_or(0, |d| d.len() as u64);
                        }
                        let body = Either::Right(Full::new(bytes::Bytes::from(total.to_string())));
                        Ok(hyper::Response::new(body))
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
            });
        }
    });
    (addr, task)
}

/// The data plane's resident set size in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gibibyte_streams_up_and_down_with_bounded_memory() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    let (addr, task) = bulk_backend().await;
    let yaml = format!(
        r#"
backends:
  - name: bulk
    servers: [{{ address: "{addr}" }}]
    timeouts: {{ request: 60s }}
rules:
  - name: bulk
    action: {{ forward: {{ backend: bulk }} }}
"#
    );
    let s = stack(&yaml).await;
    let pid = s.dp.proc.pid();
    // Warm up (pools, allocator), then take the baseline.
    let _ = get(&s.dp.proxy("/upload"), &[]).await;
    let baseline = rss(pid);
    let peak = Arc::new(AtomicU64::new(baseline));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client");

    let chunk = bytes::Bytes::from(vec![b'u'; CHUNK]);
    let upload = futures::stream::iter(
        (0..GIB / CHUNK as u64).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
    );
    let r = http
        .post(s.dp.proxy("/upload"))
        .body(reqwest::Body::wrap_stream(upload))
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.text().await.expect("count"), GIB.to_string());

    let r = http
        .get(s.dp.proxy("/download"))
        .send()
        .await
        .expect("download");
    assert_eq!(r.status().as_u16(), 200);
    let mut stream = r.bytes_stream();
    let mut total = 0u64;
    while let Some(chunk) = stream.next().await {
        total += chunk.expect("chunk").len() as u64;
    }
    assert_eq!(total, GIB);

    done.store(true, Ordering::Relaxed);
    sampler.await.expect("sampler");
    let grown = peak.load(Ordering::Relaxed).saturating_sub(baseline);
    eprintln!(
        "data plane RSS: baseline {} MiB, peak growth {} MiB over 2 GiB streamed",
        baseline >> 20,
        grown >> 20
    );
    assert!(baseline > 0, "VmRSS readable");
    assert!(grown < 64 << 20, "RSS grew by {} MiB", grown >> 20);
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_and_buffered_bodies_are_retried_streamed_bodies_are_not() {
    let slow = Backend::start("slow", BackendMode::Slow(Duration::from_secs(2))).await;
    let reset = Backend::start("reset", BackendMode::Reset).await;
    let (counter, task) = bulk_backend().await;
    let yaml = format!(
        r#"
backends:
  - name: timing_out
    servers: [{{ address: "{slow}" }}, {{ address: "{counter}" }}]
    timeouts: {{ per_try: 200ms }}
    outlier_detection: {{ consecutive_failures: 1000 }}
    retries: {{ retry_on: [timeout], backoff_base: 1ms, backoff_max: 2ms, min_retries_per_second: 1000 }}
  - name: uploads
    servers: [{{ address: "{reset}" }}, {{ address: "{counter}" }}]
    outlier_detection: {{ consecutive_failures: 1000 }}
    retries: {{ retry_on: [reset], retry_non_idempotent: true, buffer_body: 4KiB, backoff_base: 1ms, backoff_max: 2ms, min_retries_per_second: 1000 }}
rules:
  - name: timing_out
    match: {{ path_prefix: /t }}
    action: {{ forward: {{ backend: timing_out }} }}
  - name: uploads
    match: {{ path_prefix: /u }}
    action: {{ forward: {{ backend: uploads }} }}
"#,
        slow = slow.addr,
        reset = reset.addr,
    );
    let s = stack(&yaml).await;
    let http = client();
    // Every try on the slow server times out after 200ms and moves on.
    for _ in 0..6 {
        let started = std::time::Instant::now();
        let (status, _, body) = get(&s.dp.proxy("/t"), &[]).await;
        assert_eq!((status, body.as_str()), (200, "0"));
        assert!(started.elapsed() < Duration::from_secs(1));
    }
    assert!(slow.hits() >= 2);
    // A POST body within buffer_body is replayed in full on the next server.
    for _ in 0..6 {
        let r = http
            .post(s.dp.proxy("/u"))
            .body(vec![b'p'; 3000])
            .send()
            .await
            .expect("post");
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(r.text().await.expect("count"), "3000");
    }
    // A larger body streams through and is not retried.
    let mut failed = 0;
    for _ in 0..6 {
        let r = http
            .post(s.dp.proxy("/u"))
            .body(vec![b'p'; 64 * 1024])
            .send()
            .await
            .expect("post");
        match r.status().as_u16() {
            200 => assert_eq!(r.text().await.expect("count"), (64 * 1024).to_string()),
            502 => failed += 1,
            other => panic!("status {other}"),
        }
    }
    assert!(failed >= 2, "{failed} large uploads failed unretried");
    task.abort();
}
