//! Parsing configs from YAML and JSON, printing them back, and the content
//! hash that identifies a config independently of its version.

use sha2::{Digest, Sha256};

use crate::config::Config;

/// A config document that could not be read; the message says where.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{message}")]
pub struct ParseError {
    pub message: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
}

/// Parses YAML; errors name the line and column (1-based).
pub fn parse_yaml(text: &str) -> Result<Config, ParseError> {
    serde_yaml_ng::from_str(text).map_err(|e| {
        let loc = e.location();
        ParseError {
            message: e.to_string(),
            line: loc.as_ref().map(|l| l.line()),
            column: loc.as_ref().map(|l| l.column()),
        }
    })
}

/// Parses JSON; errors name the line and column (1-based).
pub fn parse_json(bytes: &[u8]) -> Result<Config, ParseError> {
    serde_json::from_slice(bytes).map_err(|e| ParseError {
        message: e.to_string(),
        line: Some(e.line()),
        column: Some(e.column()),
    })
}

/// The config as humane YAML.
pub fn to_yaml(config: &Config) -> String {
    // Serialising plain data structs cannot fail; fall back to JSON (which
    // is valid YAML) rather than panic if it ever did.
    serde_yaml_ng::to_string(config)
        .unwrap_or_else(|_| serde_json::to_string_pretty(config).unwrap_or_default())
}

/// Hex sha256 of the canonical JSON encoding. Maps are ordered and every
/// field is always written in declaration order, so equal configs hash equal.
pub fn config_hash(config: &Config) -> String {
    let canonical = serde_json::to_vec(config).unwrap_or_default();
    hex::encode(Sha256::digest(&canonical))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humane_yaml_parses() {
        let cfg = parse_yaml(
            r#"
backends:
  - name: api
    load_balancing: weighted_round_robin
    servers: [{ address: "127.0.0.1:3000", weight: 3 }]
    timeouts: { connect: 250ms, request: 5s }
rules:
  - name: r
    match: { path_prefix: /api }
    action: { forward: { backend: api } }
"#,
        )
        .expect("valid yaml");
        assert_eq!(cfg.backends[0].timeouts.connect.as_millis(), 250);
        assert_eq!(cfg.backends[0].timeouts.request.as_secs(), 5);
        assert_eq!(cfg.backends[0].servers[0].weight, 3);
    }

    #[test]
    fn unknown_field_is_rejected_with_location() {
        let err = parse_yaml("rules:\n  - name: r\n    actoin: {}\n").unwrap_err();
        assert!(err.message.contains("actoin"), "{}", err.message);
        assert_eq!(err.line, Some(3));
    }

    #[test]
    fn malformed_yaml_has_line_and_column() {
        let err = parse_yaml("rules: [\n  {name: a\n").unwrap_err();
        assert!(err.line.is_some() && err.column.is_some(), "{err:?}");
    }

    #[test]
    fn hash_is_stable_and_sensitive() {
        let a = parse_yaml("rules: []").expect("yaml");
        let mut b = a.clone();
        assert_eq!(config_hash(&a), config_hash(&b));
        b.listeners.push(crate::config::Listener {
            name: "l".into(),
            address: "0.0.0.0:1".into(),
        });
        assert_ne!(config_hash(&a), config_hash(&b));
    }

    #[test]
    fn yaml_round_trips() {
        let text = "backends:\n- name: b\n  servers:\n  - address: 127.0.0.1:1\n";
        let cfg = parse_yaml(text).expect("yaml");
        assert_eq!(parse_yaml(&to_yaml(&cfg)).expect("round trip"), cfg);
    }
}
