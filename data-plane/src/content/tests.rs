//! Unit tests of prepared responses, body rewriting and source sets.

use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::*;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;
use switchyard_shared::config::{BodyRewrite, ContentSource, RemotePolicy, Replacement};

use super::response::{parse_range, respond, Prepared, RangeAnswer};
use super::rewrite::{CompiledRewrite, Rewriter};
use super::ContentSet;
use crate::events::EventSink;
use crate::proxy::body::ProxyBody;

mod remote;

fn text(n: usize) -> Bytes {
    let line = "the quick brown fox jumps over the lazy dog\n";
    Bytes::from(line.repeat(n / line.len() + 1)[..n].to_owned())
}

fn prepared(body: Bytes, ranges: bool) -> Prepared {
    Prepared::new(
        body,
        None,
        HeaderValue::from_static("text/html; charset=utf-8"),
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        ranges,
    )
}

fn req(pairs: &[(HeaderName, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v) in pairs {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(n.clone(), v);
        }
    }
    h
}

async fn body(r: http::Response<ProxyBody>) -> Bytes {
    match r.into_body().collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) => panic!("body: {e}"),
    }
}

fn get(p: &Prepared, headers: &[(HeaderName, &str)]) -> http::Response<ProxyBody> {
    respond(
        p,
        StatusCode::OK,
        &HeaderMap::new(),
        &Method::GET,
        &req(headers),
    )
}

#[tokio::test]
async fn plain_get_has_type_length_strong_etag_and_last_modified() {
    let p = prepared(text(100), true);
    let r = get(&p, &[]);
    assert_eq!(r.status(), StatusCode::OK);
    let h = r.headers().clone();
    assert_eq!(h[CONTENT_TYPE], "text/html; charset=utf-8");
    assert_eq!(h[CONTENT_LENGTH], "100");
    assert_eq!(h[ACCEPT_RANGES], "bytes");
    assert_eq!(h[LAST_MODIFIED], "Tue, 14 Nov 2023 22:13:20 GMT");
    let etag = h[ETAG].to_str().unwrap_or("");
    assert!(etag.starts_with('"') && !etag.starts_with("W/"), "{etag}");
    assert_eq!(etag.len(), 34);
    assert_eq!(body(r).await, text(100));
}

#[tokio::test]
async fn conditional_requests_answer_304() {
    let p = prepared(text(2000), true);
    let etag = get(&p, &[])
        .headers()
        .get(ETAG)
        .cloned()
        .unwrap_or(HeaderValue::from_static("x"));
    let etag = etag.to_str().unwrap_or("");
    let r = get(&p, &[(IF_NONE_MATCH, etag)]);
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    assert!(r.headers().get(ETAG).is_some());
    assert!(body(r).await.is_empty());
    // The tag of the gzip variant matches the same content.
    let gz = get(&p, &[(ACCEPT_ENCODING, "gzip")]);
    let gz_tag = gz.headers()[ETAG].to_str().unwrap_or("").to_owned();
    assert_ne!(gz_tag, etag);
    let list = format!("\"other\", W/{gz_tag}");
    assert_eq!(
        get(&p, &[(IF_NONE_MATCH, list.as_str())]).status(),
        StatusCode::NOT_MODIFIED
    );
    assert_eq!(
        get(&p, &[(IF_NONE_MATCH, "\"other\"")]).status(),
        StatusCode::OK
    );
    // If-Modified-Since: not after the last modification -> 304.
    let same = "Tue, 14 Nov 2023 22:13:20 GMT";
    let before = "Tue, 14 Nov 2023 22:13:19 GMT";
    assert_eq!(
        get(&p, &[(IF_MODIFIED_SINCE, same)]).status(),
        StatusCode::NOT_MODIFIED
    );
    assert_eq!(
        get(&p, &[(IF_MODIFIED_SINCE, before)]).status(),
        StatusCode::OK
    );
    // If-None-Match wins over If-Modified-Since.
    assert_eq!(
        get(
            &p,
            &[(IF_NONE_MATCH, "\"other\""), (IF_MODIFIED_SINCE, same)]
        )
        .status(),
        StatusCode::OK
    );
    // A rule status other than 200 is always sent whole.
    let r = respond(
        &p,
        StatusCode::SERVICE_UNAVAILABLE,
        &HeaderMap::new(),
        &Method::GET,
        &req(&[(IF_NONE_MATCH, "*")]),
    );
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn single_ranges_give_206_and_unsatisfiable_ones_416() {
    let p = prepared(text(1000), true);
    let r = get(&p, &[(RANGE, "bytes=10-19")]);
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.headers()[CONTENT_RANGE], "bytes 10-19/1000");
    assert_eq!(r.headers()[CONTENT_LENGTH], "10");
    // Ranges are never compressed.
    assert!(r.headers().get(CONTENT_ENCODING).is_none());
    assert_eq!(body(r).await, text(1000).slice(10..20));

    let r = get(&p, &[(RANGE, "bytes=-5"), (ACCEPT_ENCODING, "gzip")]);
    assert_eq!(r.headers()[CONTENT_RANGE], "bytes 995-999/1000");
    assert_eq!(body(r).await, text(1000).slice(995..));

    let r = get(&p, &[(RANGE, "bytes=1000-")]);
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.headers()[CONTENT_RANGE], "bytes */1000");

    // If-Range with another tag: the whole body.
    let r = get(&p, &[(RANGE, "bytes=0-1"), (IF_RANGE, "\"nope\"")]);
    assert_eq!(r.status(), StatusCode::OK);
    // Inline sources offer no ranges.
    let inline = prepared(text(1000), false);
    assert_eq!(
        get(&inline, &[(RANGE, "bytes=0-1")]).status(),
        StatusCode::OK
    );
}

#[test]
fn range_parsing() {
    use RangeAnswer::*;
    assert_eq!(parse_range(b"bytes=0-0", 10), Range(0, 0));
    assert_eq!(parse_range(b"bytes=5-", 10), Range(5, 9));
    assert_eq!(parse_range(b"bytes=5-100", 10), Range(5, 9));
    assert_eq!(parse_range(b"bytes=-100", 10), Range(0, 9));
    assert_eq!(parse_range(b"bytes=-0", 10), Unsatisfiable);
    assert_eq!(parse_range(b"bytes=10-", 10), Unsatisfiable);
    assert_eq!(parse_range(b"bytes=0-1,3-4", 10), Ignore);
    assert_eq!(parse_range(b"bytes=4-2", 10), Ignore);
    assert_eq!(parse_range(b"items=0-1", 10), Ignore);
    assert_eq!(parse_range(b"bytes=a-b", 10), Ignore);
}

#[tokio::test]
async fn head_announces_the_length_without_a_body() {
    let p = prepared(text(300), true);
    let r = respond(
        &p,
        StatusCode::OK,
        &HeaderMap::new(),
        &Method::HEAD,
        &HeaderMap::new(),
    );
    assert_eq!(r.headers()[CONTENT_LENGTH], "300");
    assert!(body(r).await.is_empty());
}

#[tokio::test]
async fn gzip_and_brotli_are_negotiated_with_vary() {
    let original = text(5000);
    let p = prepared(original.clone(), true);
    assert_eq!(p.compressed(), (true, true));

    let r = get(&p, &[(ACCEPT_ENCODING, "gzip, deflate")]);
    assert_eq!(r.headers()[CONTENT_ENCODING], "gzip");
    assert_eq!(r.headers()[VARY], "accept-encoding");
    let gz = body(r).await;
    let mut out = Vec::new();
    let decoded = flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut out);
    assert!(decoded.is_ok());
    assert_eq!(out, original);

    let r = get(&p, &[(ACCEPT_ENCODING, "gzip;q=0.5, br")]);
    assert_eq!(r.headers()[CONTENT_ENCODING], "br");
    let br = body(r).await;
    let mut out = Vec::new();
    let decoded = brotli::Decompressor::new(&br[..], 4096).read_to_end(&mut out);
    assert!(decoded.is_ok());
    assert_eq!(out, original);

    // Refused codings and no header: identity.
    let r = get(&p, &[(ACCEPT_ENCODING, "br;q=0, gzip;q=0")]);
    assert!(r.headers().get(CONTENT_ENCODING).is_none());
    assert!(get(&p, &[]).headers().get(CONTENT_ENCODING).is_none());
    // Images are not compressed.
    let png = Prepared::new(
        text(5000),
        None,
        HeaderValue::from_static("image/png"),
        SystemTime::now(),
        true,
    );
    assert_eq!(png.compressed(), (false, false));
}

#[tokio::test]
async fn rule_headers_override_the_content_type() {
    let p = prepared(text(10), false);
    let mut extra = HeaderMap::new();
    extra.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-custom"),
    );
    extra.insert("x-a", HeaderValue::from_static("1"));
    let r = respond(
        &p,
        StatusCode::CREATED,
        &extra,
        &Method::GET,
        &HeaderMap::new(),
    );
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()[CONTENT_TYPE], "application/x-custom");
    assert_eq!(r.headers()["x-a"], "1");
}

fn rewrite(replacements: &[(&str, &str, bool)]) -> Arc<CompiledRewrite> {
    let spec = BodyRewrite {
        content_types: vec!["text/html".to_owned()],
        replacements: replacements
            .iter()
            .map(|(f, r, regex)| Replacement {
                find: (*f).to_owned(),
                replace: (*r).to_owned(),
                regex: *regex,
            })
            .collect(),
    };
    match CompiledRewrite::compile(&spec) {
        Ok(c) => Arc::new(c),
        Err(e) => panic!("compile: {e}"),
    }
}

fn run_chunks(rw: &Arc<CompiledRewrite>, input: &[u8], split: &[usize]) -> Vec<u8> {
    let mut r = Rewriter::new(rw.clone());
    let mut out = Vec::new();
    let mut at = 0;
    for &s in split {
        out.extend_from_slice(&r.push(&input[at..s]));
        at = s;
    }
    out.extend_from_slice(&r.push(&input[at..]));
    out.extend_from_slice(&r.finish());
    out
}

#[test]
fn literal_and_regex_matches_are_found_across_every_chunk_boundary() {
    let rw = rewrite(&[
        ("http://old.example", "https://new.example", false),
        (r"v(\d+)\.(\d+)", "version-$1-$2", true),
    ]);
    let input = b"<a href=\"http://old.example/x\">v1.22</a> and http://old.example again v3.4";
    let expected = b"<a href=\"https://new.example/x\">version-1-22</a> and https://new.example again version-3-4".to_vec();
    for i in 0..=input.len() {
        assert_eq!(run_chunks(&rw, input, &[i]), expected, "split at {i}");
        for j in i..=input.len() {
            assert_eq!(
                run_chunks(&rw, input, &[i, j]),
                expected,
                "split at {i},{j}"
            );
        }
    }
    // One byte at a time.
    let every: Vec<usize> = (1..input.len()).collect();
    assert_eq!(run_chunks(&rw, input, &every), expected);
}

#[test]
fn the_held_back_tail_is_bounded() {
    let rw = rewrite(&[("needle", "N", false)]);
    let mut r = Rewriter::new(rw);
    let chunk = vec![b'x'; 64 * 1024];
    let mut emitted = 0;
    for _ in 0..16 {
        emitted += r.push(&chunk).len();
    }
    // Everything but find.len() - 1 bytes has been sent on.
    assert_eq!(emitted, 16 * 64 * 1024 - 5);
    assert_eq!(r.finish().len(), 5);
}

#[tokio::test]
async fn rewrite_applies_to_listed_uncompressed_types_only() {
    let rw = rewrite(&[("a", "b", false)]);
    let response = |ct: &str, encoding: Option<&str>| {
        let mut r = http::Response::new(ProxyBody::full("aaa"));
        if let Ok(v) = HeaderValue::from_str(ct) {
            r.headers_mut().insert(CONTENT_TYPE, v);
        }
        r.headers_mut().insert(CONTENT_LENGTH, HeaderValue::from(3));
        r.headers_mut()
            .insert(ETAG, HeaderValue::from_static("\"abc\""));
        if let Some(e) = encoding.and_then(|e| HeaderValue::from_str(e).ok()) {
            r.headers_mut().insert(CONTENT_ENCODING, e);
        }
        r
    };
    let r = rw.apply(response("text/html; charset=utf-8", None));
    assert!(r.headers().get(CONTENT_LENGTH).is_none());
    assert_eq!(r.headers()[ETAG], "W/\"abc\"");
    assert_eq!(body(r).await, "bbb");
    // Not listed, or compressed: untouched.
    let r = rw.apply(response("image/png", None));
    assert_eq!(r.headers()[CONTENT_LENGTH], "3");
    assert_eq!(body(r).await, "aaa");
    let r = rw.apply(response("text/html", Some("gzip")));
    assert_eq!(body(r).await, "aaa");
}

fn source_set(sources: Vec<ContentSource>, previous: Option<&ContentSet>) -> ContentSet {
    match ContentSet::build(
        &sources,
        &RemotePolicy::default(),
        &Default::default(),
        &Default::default(),
        previous,
        &EventSink::channel().0,
    ) {
        Ok(s) => s,
        Err(e) => panic!("build: {e}"),
    }
}

#[tokio::test]
async fn unchanged_sources_keep_their_runtime_and_changed_ones_do_not() {
    let first = source_set(
        vec![
            ContentSource::inline("a", "one"),
            ContentSource::inline("b", "two"),
        ],
        None,
    );
    let second = source_set(
        vec![
            ContentSource::inline("a", "one"),
            ContentSource::inline("b", "TWO"),
        ],
        Some(&first),
    );
    assert!(ContentSet::same_runtime(&first, &second, "a"));
    assert!(!ContentSet::same_runtime(&first, &second, "b"));
    let r = second
        .serve(
            "b",
            StatusCode::OK,
            &HeaderMap::new(),
            &Method::GET,
            &HeaderMap::new(),
        )
        .await;
    assert_eq!(r.headers()[CONTENT_TYPE], "text/plain; charset=utf-8");
    assert_eq!(body(r).await, "TWO");
    let stats = second.stats();
    assert_eq!(stats.len(), 2);
    assert_eq!((stats[1].source.as_str(), stats[1].hits), ("b", 1));
}

#[tokio::test]
async fn an_unknown_source_answers_502() {
    let set = source_set(vec![], None);
    let r = set
        .serve(
            "x",
            StatusCode::OK,
            &HeaderMap::new(),
            &Method::GET,
            &HeaderMap::new(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert!(set.clear(Some("x")).is_err());
}
