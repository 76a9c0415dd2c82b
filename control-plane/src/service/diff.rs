//! What a change does, by named item: the dry-run diff of
//! `POST /api/config/validate` and the summary stored in history and audit.

use serde::Serialize;
use switchyard_shared::config::Config;

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

fn diff_named<T: PartialEq>(
    kind: &'static str,
    old: &[T],
    new: &[T],
    name: impl Fn(&T) -> &str,
    out: &mut Vec<Change>,
) {
    for o in old {
        match new.iter().find(|n| name(n) == name(o)) {
            None => out.push(Change {
                op: Op::Removed,
                kind,
                name: name(o).to_owned(),
            }),
            Some(n) if n != o => out.push(Change {
                op: Op::Changed,
                kind,
                name: name(o).to_owned(),
            }),
            Some(_) => {}
        }
    }
    for n in new {
        if !old.iter().any(|o| name(o) == name(n)) {
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
        let common = |a: &Config, b: &Config| -> Vec<String> {
            a.rules
                .iter()
                .filter(|r| b.rules.iter().any(|o| o.name == r.name))
                .map(|r| r.name.clone())
                .collect()
        };
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
