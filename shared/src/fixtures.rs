//! Small config builders shared by the crate's unit tests.

use crate::config::{Action, ReplaceAction, Rule, RuleMatch};

/// A rule named `name` answering requests under `prefix` from source `s`.
pub fn prefix_rule(name: &str, prefix: &str) -> Rule {
    Rule::new(
        name,
        RuleMatch {
            path_prefix: Some(prefix.into()),
            ..RuleMatch::default()
        },
        Action::Replace(ReplaceAction {
            source: "s".into(),
            status: 200,
            headers: Default::default(),
        }),
    )
}
