//! What a change does, by named item: the dry-run diff of
//! `POST /api/config/validate`, the summary stored in history and audit,
//! and the content sources a change updated.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;
use switchyard_shared::config::Config;

use super::{Checked, SnapshotData};
use crate::content::Blob;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Added,
    Removed,
    Changed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Change {
    pub op: Op,
    /// `listener`, `backend`, `content_source` or `rule`.
    pub kind: &'static str,
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Diff {
    pub changes: Vec<Change>,
    /// Rules present in both configs now come in a different order (which
    /// changes which rule wins).
    pub rules_reordered: bool,
}

/// Linear in the list sizes (configs have thousands of rules): names are
/// looked up in hash maps, never by scanning the other list.
fn diff_named<T: PartialEq>(
    kind: &'static str,
    old: &[T],
    new: &[T],
    name: impl Fn(&T) -> &str,
    out: &mut Vec<Change>,
) {
    let new_by_name: HashMap<&str, &T> = new.iter().map(|n| (name(n), n)).collect();
    let old_names: HashSet<&str> = old.iter().map(&name).collect();
    for o in old {
        match new_by_name.get(name(o)) {
            None => out.push(Change {
                op: Op::Removed,
                kind,
                name: name(o).to_owned(),
            }),
            Some(n) if *n != o => out.push(Change {
                op: Op::Changed,
                kind,
                name: name(o).to_owned(),
            }),
            Some(_) => {}
        }
    }
    for n in new {
        if !old_names.contains(name(n)) {
            out.push(Change {
                op: Op::Added,
                kind,
                name: name(n).to_owned(),
            });
        }
    }
}

impl Diff {
    pub fn between(old: &Config, new: &Config) -> Self {
        let mut changes = Vec::new();
        diff_named(
            "listener",
            &old.listeners,
            &new.listeners,
            |l| &l.name,
            &mut changes,
        );
        diff_named(
            "backend",
            &old.backends,
            &new.backends,
            |b| &b.name,
            &mut changes,
        );
        diff_named(
            "content_source",
            &old.content_sources,
            &new.content_sources,
            |s| &s.name,
            &mut changes,
        );
        diff_named("rule", &old.rules, &new.rules, |r| &r.name, &mut changes);
        // The rules present in both, in each config's order.
        fn common<'a>(a: &'a Config, b: &Config) -> Vec<&'a str> {
            let in_b: HashSet<&str> = b.rules.iter().map(|r| r.name.as_str()).collect();
            a.rules
                .iter()
                .map(|r| r.name.as_str())
                .filter(|n| in_b.contains(n))
                .collect()
        }
        let rules_reordered = common(old, new) != common(new, old);
        Self {
            changes,
            rules_reordered,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && !self.rules_reordered
    }

    /// One line: `+rule a, ~backend web, -content_source x, rules reordered`.
    pub fn summary(&self) -> String {
        if self.is_empty() {
            return "no changes to named items".to_owned();
        }
        let mut parts: Vec<String> = self
            .changes
            .iter()
            .map(|c| {
                let sign = match c.op {
                    Op::Added => '+',
                    Op::Removed => '-',
                    Op::Changed => '~',
                };
                format!("{sign}{} {}", c.kind, c.name)
            })
            .collect();
        if self.rules_reordered {
            parts.push("rules reordered".to_owned());
        }
        parts.join(", ")
    }
}

/// Content sources that are new or whose definition or file content
/// changed in this version (for the `content_updated` event).
pub(super) fn updated_sources(current: &SnapshotData, checked: &Checked) -> Vec<serde_json::Value> {
    checked
        .config
        .content_sources
        .iter()
        .filter(|s| {
            let old = current
                .config
                .content_sources
                .iter()
                .find(|o| o.name == s.name);
            old != Some(*s)
                || current.blobs.get(&s.name).map(|b| &b.sha256)
                    != checked.blobs.get(&s.name).map(|b| &b.sha256)
        })
        .map(|s| {
            let blob = checked.blobs.get(&s.name);
            serde_json::json!({
                "source": s.name,
                "sha256": blob.map(|b| b.sha256.clone()),
                "size": blob.map(|b| b.size),
            })
        })
        .collect()
}

/// The summary of a change that only touched file content.
pub(super) fn content_summary(
    old: &BTreeMap<String, Blob>,
    new: &BTreeMap<String, Blob>,
) -> String {
    let changed: Vec<&str> = new
        .iter()
        .filter(|(name, blob)| old.get(*name).map(|b| &b.sha256) != Some(&blob.sha256))
        .map(|(name, _)| name.as_str())
        .collect();
    if changed.is_empty() {
        "no changes to named items".to_owned()
    } else {
        format!("file content changed: {}", changed.join(", "))
    }
}
