//! Remote sources against a real origin on loopback: coalescing, TTL,
//! stale-if-error, limits, redirects and the address policy.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use switchyard_shared::config::{ContentSource, RemotePolicy, RemoteSource};
use tokio::net::TcpListener;

use super::body;
use crate::content::fetch::{check_url, FetchError, Fetcher};
use crate::content::ContentSet;
use crate::events::EventSink;

/// What the origin answers with.
#[derive(Debug, Clone)]
enum Answer {
    Body(&'static str),
    Status(u16),
    Redirect(String),
}

struct Origin {
    addr: SocketAddr,
    hits: Arc<AtomicU64>,
    answer: Arc<Mutex<Answer>>,
    task: tokio::task::JoinHandle<()>,
}

impl Origin {
    /// Answers after `delay`, so concurrent requests overlap.
    async fn start(answer: Answer, delay: Duration) -> Origin {
        let listener = match TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => l,
            Err(e) => panic!("bind: {e}"),
        };
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let hits = Arc::new(AtomicU64::new(0));
        let answer = Arc::new(Mutex::new(answer));
        let (h, a) = (hits.clone(), answer.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (h, a) = (h.clone(), a.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |_req: http::Request<Incoming>| {
                        let (h, a) = (h.clone(), a.clone());
                        async move {
                            h.fetch_add(1, SeqCst);
                            tokio::time::sleep(delay).await;
                            let answer = a.lock().map(|a| a.clone()).unwrap_or(Answer::Status(500));
                            let mut r = http::Response::new(Full::new(Bytes::new()));
                            match answer {
                                Answer::Body(b) => {
                                    *r.body_mut() = Full::new(Bytes::from_static(b.as_bytes()));
                                    r.headers_mut().insert(
                                        http::header::CONTENT_TYPE,
                                        http::HeaderValue::from_static("text/css"),
                                    );
                                }
                                Answer::Status(s) => {
                                    *r.status_mut() =
                                        StatusCode::from_u16(s).unwrap_or(StatusCode::IM_A_TEAPOT)
                                }
                                Answer::Redirect(to) => {
                                    *r.status_mut() = StatusCode::FOUND;
                                    if let Ok(v) = http::HeaderValue::from_str(&to) {
                                        r.headers_mut().insert(http::header::LOCATION, v);
                                    }
                                }
                            }
                            Ok::<_, Infallible>(r)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Origin {
            addr,
            hits,
            answer,
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn set(&self, answer: Answer) {
        if let Ok(mut a) = self.answer.lock() {
            *a = answer;
        }
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn remote(url: &str) -> RemoteSource {
    RemoteSource {
        url: url.to_owned(),
        ttl: Duration::from_secs(60),
        timeout: Duration::from_secs(2),
        max_size: 1024,
        stale_if_error: Duration::from_secs(60),
        max_redirects: 2,
    }
}

fn loopback() -> RemotePolicy {
    RemotePolicy {
        allow_loopback: true,
        allow_private: false,
    }
}

fn set_of(sources: Vec<ContentSource>, policy: &RemotePolicy, events: &EventSink) -> ContentSet {
    match ContentSet::build(
        &sources,
        policy,
        &Default::default(),
        &Default::default(),
        None,
        events,
    ) {
        Ok(s) => s,
        Err(e) => panic!("build: {e}"),
    }
}

fn source(name: &str, spec: RemoteSource) -> ContentSource {
    let mut s = ContentSource::inline(name, "");
    s.inline = None;
    s.remote = Some(spec);
    s
}

async fn serve(set: &ContentSet, name: &str) -> (StatusCode, Bytes) {
    let r = set
        .serve(
            name,
            StatusCode::OK,
            &HeaderMap::new(),
            &Method::GET,
            &HeaderMap::new(),
        )
        .await;
    (r.status(), body(r).await)
}

#[tokio::test]
async fn concurrent_misses_share_one_origin_fetch_and_hits_follow() {
    let origin = Origin::start(Answer::Body("body{}"), Duration::from_millis(200)).await;
    let set = Arc::new(set_of(
        vec![source("css", remote(&origin.url("/a.css")))],
        &loopback(),
        &EventSink::channel().0,
    ));
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let set = set.clone();
        tasks.push(tokio::spawn(async move { serve(&set, "css").await }));
    }
    for t in tasks {
        let (status, b) = t.await.unwrap_or((StatusCode::IM_A_TEAPOT, Bytes::new()));
        assert_eq!((status, &b[..]), (StatusCode::OK, &b"body{}"[..]));
    }
    assert_eq!(origin.hits.load(SeqCst), 1);
    let (status, _) = serve(&set, "css").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(origin.hits.load(SeqCst), 1);
    let stats = set.stats();
    assert_eq!((stats[0].entries, stats[0].bytes), (1, 6));
    assert_eq!(stats[0].misses, 20);
    assert_eq!(stats[0].hits, 1);
    // Clearing forces the next request to the origin.
    assert_eq!(set.clear(Some("css")), Ok(1));
    serve(&set, "css").await;
    assert_eq!(origin.hits.load(SeqCst), 2);
}

#[tokio::test]
async fn stale_is_served_while_the_origin_fails_then_the_fallback() {
    let origin = Origin::start(Answer::Body("v1"), Duration::ZERO).await;
    let mut spec = remote(&origin.url("/"));
    spec.ttl = Duration::from_millis(50);
    spec.stale_if_error = Duration::from_millis(400);
    let mut src = source("r", spec);
    src.fallback = Some("sorry".to_owned());
    let (events, mut rx) = EventSink::channel();
    let set = set_of(
        vec![src, ContentSource::inline("sorry", "fallback")],
        &loopback(),
        &events,
    );
    assert_eq!(serve(&set, "r").await.1, "v1");
    origin.set(Answer::Status(500));
    tokio::time::sleep(Duration::from_millis(80)).await;
    // Expired, origin failing: stale within the bound.
    assert_eq!(serve(&set, "r").await, (StatusCode::OK, Bytes::from("v1")));
    let stats = set.stats();
    let r = stats.iter().find(|s| s.source == "r");
    assert_eq!(r.map(|s| (s.stale_served, s.fetch_errors)), Some((1, 1)));
    let event = rx.try_recv().ok().and_then(|e| e.kind);
    assert!(
        matches!(&event, Some(switchyard_shared::proto::node_event::Kind::ContentFetchFailed(f)) if f.source == "r" && f.error.contains("500")),
        "{event:?}"
    );
    // Past the stale bound: the source's fallback answers.
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(
        serve(&set, "r").await,
        (StatusCode::OK, Bytes::from("fallback"))
    );
    // Right after a failure the origin is left alone.
    origin.set(Answer::Body("v2"));
    let hits = origin.hits.load(SeqCst);
    assert_eq!(serve(&set, "r").await.1, "fallback");
    assert_eq!(origin.hits.load(SeqCst), hits);
    // The origin is back: fresh content again once the pause is over.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while serve(&set, "r").await.1 != "v2" {
        assert!(std::time::Instant::now() < deadline, "v2 never served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_fallback_chain_walks_every_failing_remote_to_the_inline_end() {
    // remote (down) -> remote (down) -> inline.
    let first = Origin::start(Answer::Status(503), Duration::ZERO).await;
    let second = Origin::start(Answer::Status(500), Duration::ZERO).await;
    let mut a = source("a", remote(&first.url("/a")));
    a.fallback = Some("b".to_owned());
    let mut b = source("b", remote(&second.url("/b")));
    b.fallback = Some("sorry".to_owned());
    let (events, mut rx) = EventSink::channel();
    let set = set_of(
        vec![a, b, ContentSource::inline("sorry", "end of the chain")],
        &loopback(),
        &events,
    );
    assert_eq!(
        serve(&set, "a").await,
        (StatusCode::OK, Bytes::from("end of the chain"))
    );
    // Both origins were tried, once each, and each failure was counted
    // and reported against its own source.
    assert_eq!(first.hits.load(SeqCst), 1);
    assert_eq!(second.hits.load(SeqCst), 1);
    let errors: Vec<(String, u64)> = set
        .stats()
        .iter()
        .filter(|s| s.source != "sorry")
        .map(|s| (s.source.clone(), s.fetch_errors))
        .collect();
    assert_eq!(errors, vec![("a".to_owned(), 1), ("b".to_owned(), 1)]);
    let mut failed = Vec::new();
    while let Ok(e) = rx.try_recv() {
        if let Some(switchyard_shared::proto::node_event::Kind::ContentFetchFailed(f)) = e.kind {
            failed.push((f.source, f.error));
        }
    }
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(
        failed[0].0 == "a" && failed[0].1.contains("503"),
        "{failed:?}"
    );
    assert!(
        failed[1].0 == "b" && failed[1].1.contains("500"),
        "{failed:?}"
    );
}

#[tokio::test]
async fn loopback_is_refused_unless_allowed() {
    let origin = Origin::start(Answer::Body("x"), Duration::ZERO).await;
    let set = set_of(
        vec![source("r", remote(&origin.url("/")))],
        &RemotePolicy::default(),
        &EventSink::channel().0,
    );
    assert_eq!(serve(&set, "r").await.0, StatusCode::BAD_GATEWAY);
    assert_eq!(origin.hits.load(SeqCst), 0);

    // A name resolving to loopback is refused by the resolver.
    let by_name = format!("http://localhost:{}/", origin.addr.port());
    let fetcher = Fetcher::new(&remote(&by_name), &RemotePolicy::default());
    let result = match fetcher {
        Ok(f) => f.fetch().await,
        Err(e) => panic!("{e}"),
    };
    let err = result.map(|_| ()).map_err(|e| e.to_string());
    assert!(
        matches!(&err, Err(m) if m.contains("refused by the remote content policy")),
        "{err:?}"
    );
    assert_eq!(origin.hits.load(SeqCst), 0);
}

#[test]
fn url_checks_cover_schemes_and_literals() {
    let policy = RemotePolicy::default();
    let check = |u: &str| {
        reqwest::Url::parse(u)
            .map_err(|e| e.to_string())
            .and_then(|u| check_url(&u, &policy).map_err(|e| e.to_string()))
    };
    assert!(check("ftp://example.com/x").is_err_and(|e| e.contains("only http")));
    assert!(check("file:///etc/passwd").is_err());
    for refused in [
        "http://127.0.0.1/",
        "http://[::1]/",
        "http://10.0.0.1/",
        "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data",
        "http://[fe80::1]/",
        "http://0.0.0.0/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:a00:1]/",
        "http://0.1.2.3/",
        "http://255.255.255.255/",
        "http://[::127.0.0.1]/",
        "http://[64:ff9b::7f00:1]/",
        "http://[64:ff9b::a9fe:a9fe]/latest/meta-data",
        "http://[2002:a9fe:a9fe::]/latest/meta-data",
        "http://[2002:c0a8:101::1]/",
    ] {
        assert!(
            check(refused).is_err_and(|e| e.contains("refused by the remote content policy")),
            "{refused}"
        );
    }
    assert!(check("https://93.184.216.34/").is_ok());
    // A public IPv4 address through NAT64 or 6to4 is fine.
    assert!(check("https://[64:ff9b::5db8:d822]/").is_ok());
    assert!(check("https://[2002:5db8:d822::1]/").is_ok());
    assert!(check("https://example.com/").is_ok());
}

#[tokio::test]
async fn redirects_are_followed_within_the_limit_and_rechecked() {
    let target = Origin::start(Answer::Body("moved"), Duration::ZERO).await;
    let hop = Origin::start(Answer::Redirect(target.url("/final")), Duration::ZERO).await;
    let fetch = |url: String, policy: RemotePolicy, redirects: u32| async move {
        let mut spec = remote(&url);
        spec.max_redirects = redirects;
        match Fetcher::new(&spec, &policy) {
            Ok(f) => f.fetch().await.map(|f| f.body),
            Err(e) => panic!("{e}"),
        }
    };
    let ok = fetch(hop.url("/"), loopback(), 1).await;
    assert_eq!(ok.ok().as_deref(), Some(&b"moved"[..]));
    let too_many = fetch(hop.url("/"), loopback(), 0).await;
    assert_eq!(too_many, Err(FetchError::TooManyRedirects(0)));

    // A redirect to a refused address is checked like the first URL.
    hop.set(Answer::Redirect("http://10.1.2.3/internal".to_owned()));
    let refused = fetch(hop.url("/"), loopback(), 3).await;
    assert!(
        matches!(refused, Err(FetchError::Refused { .. })),
        "{refused:?}"
    );
    hop.set(Answer::Redirect("ftp://example.com/x".to_owned()));
    let scheme = fetch(hop.url("/"), loopback(), 3).await;
    assert!(
        matches!(scheme, Err(FetchError::Scheme { .. })),
        "{scheme:?}"
    );
    assert_eq!(target.hits.load(SeqCst), 1);
}

#[tokio::test]
async fn bodies_over_the_size_limit_and_slow_origins_fail() {
    let big = Origin::start(Answer::Body(include_str!("../rewrite.rs")), Duration::ZERO).await;
    let mut spec = remote(&big.url("/"));
    spec.max_size = 100;
    let f = Fetcher::new(&spec, &loopback()).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        f.fetch().await,
        Err(FetchError::TooLarge { limit: 100, .. })
    ));

    let slow = Origin::start(Answer::Body("late"), Duration::from_secs(5)).await;
    let mut spec = remote(&slow.url("/"));
    spec.timeout = Duration::from_millis(200);
    let f = Fetcher::new(&spec, &loopback()).unwrap_or_else(|e| panic!("{e}"));
    let started = std::time::Instant::now();
    assert!(matches!(f.fetch().await, Err(FetchError::Timeout { .. })));
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_new_snapshot_keeps_unchanged_remote_caches_and_resets_changed_ones() {
    let origin = Origin::start(Answer::Body("cached"), Duration::ZERO).await;
    let events = EventSink::channel().0;
    let sources = |ttl_b: u64| {
        let mut b = remote(&origin.url("/b"));
        b.ttl = Duration::from_secs(ttl_b);
        vec![source("a", remote(&origin.url("/a"))), source("b", b)]
    };
    let build = |sources: Vec<ContentSource>, previous: Option<&ContentSet>| {
        ContentSet::build(
            &sources,
            &loopback(),
            &Default::default(),
            &Default::default(),
            previous,
            &events,
        )
        .unwrap_or_else(|e| panic!("{e}"))
    };
    let first = build(sources(60), None);
    serve(&first, "a").await;
    serve(&first, "b").await;
    assert_eq!(origin.hits.load(SeqCst), 2);

    // `b` changed (its TTL): only `b` starts empty and is fetched again.
    let second = build(sources(30), Some(&first));
    assert!(ContentSet::same_runtime(&first, &second, "a"));
    assert!(!ContentSet::same_runtime(&first, &second, "b"));
    let entries: Vec<u64> = second.stats().iter().map(|s| s.entries).collect();
    assert_eq!(entries, vec![1, 0]);
    serve(&second, "a").await;
    serve(&second, "b").await;
    assert_eq!(origin.hits.load(SeqCst), 3);

    // A changed address policy is a changed definition too.
    let third = ContentSet::build(
        &sources(30),
        &RemotePolicy::default(),
        &Default::default(),
        &Default::default(),
        Some(&second),
        &events,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(!ContentSet::same_runtime(&second, &third, "a"));
}
