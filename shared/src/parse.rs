//! Parsing configs from YAML and JSON, printing them back, and the content
//! hash that identifies a config independently of its version.

use serde::de::DeserializeOwned;
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

impl ParseError {
    /// The message without the ` at line L column C` the parsers add for
    /// this error's own position, for callers that print `line` and
    /// `column` themselves. (serde_yaml leaves it out for line 1 column 1,
    /// so the message alone would lose the location there.) A context the
    /// parser adds after it (", while parsing ... at line 3 column 8") stays.
    pub fn detail(&self) -> std::borrow::Cow<'_, str> {
        let (Some(line), Some(column)) = (self.line, self.column) else {
            return self.message.as_str().into();
        };
        let own = format!(" at line {line} column {column}");
        match self.message.find(&own) {
            Some(at) => {
                let rest = &self.message[at + own.len()..];
                if rest.is_empty() || rest.starts_with(',') {
                    format!("{}{rest}", &self.message[..at]).into()
                } else {
                    self.message.as_str().into()
                }
            }
            None => self.message.as_str().into(),
        }
    }

    /// `<source>:<line>:<column>: <detail>`, or `<source>: <message>` when
    /// the parser gave no location.
    pub fn located(&self, source: &str) -> String {
        match (self.line, self.column) {
            (Some(line), Some(column)) => format!("{source}:{line}:{column}: {}", self.detail()),
            _ => format!("{source}: {}", self.message),
        }
    }
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

/// Why a JSON document did not parse into the expected type. Lines and
/// columns are 1-based; messages leave the location out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonError {
    /// Not well-formed JSON (trailing bytes after the document included).
    Syntax {
        message: String,
        line: usize,
        column: usize,
    },
    /// Well-formed JSON of the wrong shape (a missing field, a wrong type,
    /// an unknown field); `path` names the place (`rules[0].action`).
    Shape {
        path: String,
        message: String,
        line: usize,
        column: usize,
    },
}

/// serde_json's message without its " at line L column C" tail.
fn bare_message(e: &serde_json::Error) -> String {
    let full = e.to_string();
    let tail = format!(" at line {} column {}", e.line(), e.column());
    match full.strip_suffix(&tail) {
        Some(bare) => bare.to_owned(),
        None => full,
    }
}

/// The path of a shape error. serde reports a missing field at the object
/// that lacks it; naming the field itself is what a client needs to fix
/// the document. (Unknown fields are already reported at the field.)
fn shape_path(path: &serde_path_to_error::Path, message: &str) -> String {
    let at = path.to_string();
    let at = if at == "." { String::new() } else { at };
    let field = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    match field {
        Some(f) if at.is_empty() => f.to_owned(),
        Some(f) => format!("{at}.{f}"),
        None => at,
    }
}

/// Parses a JSON document into `T`, telling a syntax error from a shape
/// error and saying where each one is.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, JsonError> {
    let syntax = |e: serde_json::Error| JsonError::Syntax {
        message: bare_message(&e),
        line: e.line(),
        column: e.column(),
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(value) => {
            de.end().map_err(syntax)?;
            Ok(value)
        }
        Err(e) => {
            let path = e.path().clone();
            let inner = e.into_inner();
            if !inner.is_data() {
                return Err(syntax(inner));
            }
            let message = bare_message(&inner);
            Err(JsonError::Shape {
                path: shape_path(&path, &message),
                message,
                line: inner.line(),
                column: inner.column(),
            })
        }
    }
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
    fn json_errors_tell_syntax_from_shape_and_say_where() {
        let err = parse_json::<Config>(b"{\n  \"rules\": [\n").err();
        assert!(
            matches!(err, Some(JsonError::Syntax { line: 3, .. })),
            "{err:?}"
        );
        let err = parse_json::<Config>(b"{} x").err();
        assert!(matches!(err, Some(JsonError::Syntax { .. })), "{err:?}");
        let body = br#"{"rules": [{"name": "a", "match": {}}]}"#;
        match parse_json::<Config>(body) {
            Err(JsonError::Shape { path, message, .. }) => {
                assert_eq!(path, "rules[0].action");
                assert!(message.starts_with("missing field `action`"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

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
    fn located_names_file_line_and_column_once() {
        let err = parse_yaml("rules:\n  - name: r\n    actoin: {}\n").unwrap_err();
        let text = err.located("conf.yaml");
        assert!(text.starts_with("conf.yaml:3:5: "), "{text}");
        assert!(text.contains("actoin"), "{text}");
        assert!(!text.contains("at line"), "location printed twice: {text}");
    }

    #[test]
    fn a_yaml_syntax_error_keeps_its_context() {
        let err = parse_yaml("rules:\n  - name: a\n    match: {path_prefix: /a\n").unwrap_err();
        let text = err.located("c.yaml");
        assert!(text.starts_with("c.yaml:4:1: "), "{text}");
        assert!(
            !text.contains("line 4"),
            "own location printed twice: {text}"
        );
        assert!(text.contains("while parsing"), "context lost: {text}");
    }

    #[test]
    fn an_error_at_line_1_column_1_keeps_its_location() {
        // A list where a mapping is expected fails at the very first byte;
        // serde_yaml's own message then carries no location at all.
        let err = parse_yaml("- a\n- b\n").unwrap_err();
        assert_eq!((err.line, err.column), (Some(1), Some(1)), "{err:?}");
        let text = err.located("conf.yaml");
        assert!(text.starts_with("conf.yaml:1:1: "), "{text}");
    }

    #[test]
    fn located_without_a_position_names_the_source() {
        let err = ParseError {
            message: "EOF while parsing a value".into(),
            line: None,
            column: None,
        };
        assert_eq!(err.located("c.yaml"), "c.yaml: EOF while parsing a value");
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
