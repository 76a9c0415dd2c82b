//! Which rules of a new config are identical to rules of the previous one.
//! The previous config passed validation and was compiled, so an identical
//! rule needs neither again: on a change of one rule among thousands, only
//! that rule is checked and compiled (its regexes included), while names
//! and references are still checked for every rule.

use rustc_hash::FxHashMap as HashMap;

use crate::config::Config;

/// For each rule of a new config, the index of the identical rule (same
/// name, same definition) in the previous config, if any. The default
/// reuses nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleReuse {
    previous: Vec<Option<usize>>,
}

impl RuleReuse {
    /// Matches the rules of `next` against those of `previous` by name,
    /// then by full equality. `previous` must be a config that passed
    /// validation (callers skip checks for what it has in common).
    pub fn between(previous: &Config, next: &Config) -> Self {
        let by_name: HashMap<&str, usize> = previous
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| (r.name.as_str(), i))
            .collect();
        let previous = next
            .rules
            .iter()
            .map(|r| {
                by_name
                    .get(r.name.as_str())
                    .copied()
                    .filter(|&j| previous.rules[j] == *r)
            })
            .collect();
        Self { previous }
    }

    /// The previous index of the identical rule at `index`, if any.
    pub fn previous(&self, index: usize) -> Option<usize> {
        self.previous.get(index).copied().flatten()
    }

    /// How many rules are reused.
    pub fn reused(&self) -> usize {
        self.previous.iter().filter(|p| p.is_some()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ContentSource, Rule};
    use crate::fixtures::prefix_rule as rule;

    fn config(rules: Vec<Rule>) -> Config {
        Config {
            content_sources: vec![ContentSource::inline("s", "x")],
            rules,
            ..Config::default()
        }
    }

    #[test]
    fn identical_rules_are_found_by_name_wherever_they_moved() {
        let old = config(vec![rule("a", "/a"), rule("b", "/b"), rule("c", "/c")]);
        let new = config(vec![
            rule("new", "/n"),
            rule("c", "/c"),
            rule("a", "/changed"),
            rule("b", "/b"),
        ]);
        let reuse = RuleReuse::between(&old, &new);
        assert_eq!(reuse.previous(0), None);
        assert_eq!(reuse.previous(1), Some(2));
        assert_eq!(reuse.previous(2), None, "same name, other definition");
        assert_eq!(reuse.previous(3), Some(1));
        assert_eq!(reuse.previous(4), None, "out of range");
        assert_eq!(reuse.reused(), 2);
        assert_eq!(RuleReuse::default().previous(0), None);
    }
}
