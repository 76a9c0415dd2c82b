use proptest::prelude::*;

use super::*;
use crate::config::{
    Action, Backend, ContentSource, ForwardAction, Listener, Rule, RuleMatch, Server,
};
use crate::convert::{file_blobs, set_file_blobs};
use crate::fixtures::prefix_rule as rule;

fn file_source(name: &str, path: &str) -> ContentSource {
    ContentSource {
        name: name.into(),
        content_type: None,
        file: Some(path.into()),
        inline: None,
        remote: None,
        fallback: None,
    }
}

fn wire(c: &Config, blobs: &BTreeMap<String, BlobRef>) -> proto::Config {
    let mut w = proto::Config::from(c);
    set_file_blobs(&mut w, blobs);
    w
}

fn blob(sha: char, size: u64) -> BlobRef {
    BlobRef {
        sha256: sha.to_string().repeat(64),
        size,
    }
}

/// Diffs `old` -> `new`, applies the delta to `old`, checks the result.
fn round_trip(old: &Config, new: &Config) -> proto::SnapshotDelta {
    round_trip_with_blobs(old, &BTreeMap::new(), new, &BTreeMap::new())
}

fn round_trip_with_blobs(
    old: &Config,
    old_blobs: &BTreeMap<String, BlobRef>,
    new: &Config,
    new_blobs: &BTreeMap<String, BlobRef>,
) -> proto::SnapshotDelta {
    let d = diff(
        3,
        "h3",
        &wire(old, old_blobs),
        4,
        "h4",
        &wire(new, new_blobs),
    );
    assert_eq!((d.base_version, d.version), (3, 4));
    let (config, blobs) = apply(old, old_blobs, d.clone()).expect("applies");
    assert_eq!(&config, new);
    assert_eq!(&blobs, new_blobs);
    d
}

#[test]
fn one_new_rule_among_many_is_one_item() {
    let old = Config {
        content_sources: vec![ContentSource::inline("s", "x")],
        rules: (0..1000).map(|i| rule(&format!("r{i}"), "/")).collect(),
        ..Config::default()
    };
    let mut new = old.clone();
    new.rules.insert(500, rule("added", "/added"));
    let d = round_trip(&old, &new);
    assert_eq!(size(&d), 1);
    assert_eq!(d.rules.as_ref().map(|r| r.index.clone()), Some(vec![500]));
}

#[test]
fn moving_one_rule_sends_one_rule() {
    let rules: Vec<Rule> = (0..50).map(|i| rule(&format!("r{i}"), "/")).collect();
    let old = Config {
        content_sources: vec![ContentSource::inline("s", "x")],
        rules,
        ..Config::default()
    };
    let mut new = old.clone();
    let last = new.rules.remove(49);
    new.rules.insert(0, last);
    assert_eq!(size(&round_trip(&old, &new)), 1);
    let first = new.rules.remove(0);
    new.rules.push(first);
    new.rules.swap(10, 20);
    assert_eq!(size(&round_trip(&old, &new)), 2);
}

#[test]
fn every_list_limits_and_blobs_follow() {
    let backend = |name: &str, addr: &str| {
        Backend::new(
            name,
            vec![Server {
                address: addr.into(),
                weight: 1,
            }],
        )
    };
    let old = Config {
        listeners: vec![Listener {
            name: "main".into(),
            address: "0.0.0.0:8080".into(),
        }],
        backends: vec![backend("a", "a:1"), backend("b", "b:1")],
        content_sources: vec![
            ContentSource::inline("s", "x"),
            file_source("page", "p.html"),
            file_source("gone", "g.html"),
        ],
        rules: vec![rule("r", "/")],
        ..Config::default()
    };
    let old_blobs: BTreeMap<_, _> = [("page".into(), blob('a', 1)), ("gone".into(), blob('b', 2))]
        .into_iter()
        .collect();
    let mut new = old.clone();
    new.listeners.clear();
    new.backends[1] = backend("b", "b:2");
    new.backends.push(backend("c", "c:1"));
    new.content_sources.remove(2);
    new.limits.max_body_bytes = 77;
    new.remote_content.allow_private = true;
    new.rules.push(Rule::new(
        "fwd",
        RuleMatch::default(),
        Action::Forward(ForwardAction {
            backend: "c".into(),
            strip_prefix: None,
            add_prefix: None,
        }),
    ));
    // The page's file changed: same source definition, new digest.
    let new_blobs: BTreeMap<_, _> = [("page".into(), blob('c', 3))].into_iter().collect();
    let d = round_trip_with_blobs(&old, &old_blobs, &new, &new_blobs);
    let sources = d.content_sources.expect("sources");
    assert_eq!(sources.removed, vec!["gone".to_owned()]);
    assert_eq!(sources.index, vec![1]);
    assert_eq!(file_blobs(&wire(&new, &new_blobs)), new_blobs);
}

#[test]
fn malformed_deltas_are_refused() {
    let old = Config {
        content_sources: vec![ContentSource::inline("s", "x")],
        rules: vec![rule("a", "/a"), rule("b", "/b")],
        ..Config::default()
    };
    let mut d = diff(
        1,
        "h",
        &wire(&old, &BTreeMap::new()),
        2,
        "h2",
        &proto::Config::default(),
    );
    // Two sets at the same index, then an index past the end.
    d.rules = Some(proto::RuleChanges {
        removed: vec![],
        index: vec![0, 0],
        set: vec![
            proto::Rule::from_domain(&rule("x", "/x")),
            proto::Rule::from_domain(&rule("y", "/y")),
        ],
    });
    assert!(matches!(
        apply(&old, &BTreeMap::new(), d.clone()),
        Err(DeltaError::Malformed(_))
    ));
    d.rules = Some(proto::RuleChanges {
        removed: vec![],
        index: vec![9],
        set: vec![proto::Rule::from_domain(&rule("x", "/x"))],
    });
    assert!(matches!(
        apply(&old, &BTreeMap::new(), d.clone()),
        Err(DeltaError::Malformed(_))
    ));
    d.rules = Some(proto::RuleChanges {
        removed: vec![],
        index: vec![],
        set: vec![proto::Rule::from_domain(&rule("x", "/x"))],
    });
    assert!(matches!(
        apply(&old, &BTreeMap::new(), d),
        Err(DeltaError::Malformed(_))
    ));
}

trait FromDomain {
    fn from_domain(r: &Rule) -> Self;
}

impl FromDomain for proto::Rule {
    fn from_domain(r: &Rule) -> Self {
        let c = Config {
            rules: vec![r.clone()],
            ..Config::default()
        };
        proto::Config::from(&c).rules.remove(0)
    }
}

proptest! {
    // Property: for any two rule lists, applying the diff to the old list
    // gives the new one exactly (order included).
    #[test]
    fn apply_of_diff_is_identity(
        old in prop::collection::vec((0u8..12, 0u8..3), 0..12),
        new in prop::collection::vec((0u8..12, 0u8..3), 0..12),
    ) {
        let rules = |v: Vec<(u8, u8)>| {
            let mut seen = HashSet::default();
            v.into_iter()
                .filter(|(n, _)| seen.insert(*n))
                .map(|(n, p)| rule(&format!("r{n}"), &format!("/{p}")))
                .collect::<Vec<_>>()
        };
        let old = Config { rules: rules(old), ..Config::default() };
        let new = Config { rules: rules(new), ..Config::default() };
        let d = diff(1, "a", &wire(&old, &BTreeMap::new()), 2, "b", &wire(&new, &BTreeMap::new()));
        let (got, _) = apply(&old, &BTreeMap::new(), d).expect("applies");
        prop_assert_eq!(got, new);
    }
}
