//! Validation of a whole config: every problem, each with its path
//! (`rules[3].match.path_regex: ...`), references included.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;

use http::{HeaderName, HeaderValue, Method};
use serde::{Deserialize, Serialize};

use crate::config::{Action, Config, ContentKind, PathMatch, Rule};
use crate::reuse::RuleReuse;
// Names of thousands of rules are checked on every version.
use rustc_hash::FxHashSet as HashSet;

/// Regexes are compiled with this size limit so one rule cannot make a
/// data plane allocate without bound.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// One thing wrong with a config, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem found; never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors {
    pub problems: Vec<Problem>,
}

impl ValidationErrors {
    pub fn single(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            problems: vec![Problem {
                path: path.into(),
                message: message.into(),
            }],
        }
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct Collector {
    problems: Vec<Problem>,
}

impl Collector {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }
}

/// Checks the whole config and returns every problem found.
pub fn validate(config: &Config) -> Result<(), ValidationErrors> {
    validate_reusing(config, &RuleReuse::default())
}

/// Like [`validate`], for a config derived from one that passed: rules that
/// `reuse` maps to an identical rule of that config skip their
/// self-contained checks (syntax, regex compilation); their names and
/// references are still checked against this config.
pub fn validate_reusing(config: &Config, reuse: &RuleReuse) -> Result<(), ValidationErrors> {
    let mut c = Collector::default();

    let mut names = HashSet::default();
    for (i, l) in config.listeners.iter().enumerate() {
        let at = format!("listeners[{i}]");
        check_name(&mut c, &at, &l.name, &mut names, "listener");
        if let Err(e) = l.address.parse::<SocketAddr>() {
            c.add(
                format!("{at}.address"),
                format!("`{}` is not ip:port ({e})", l.address),
            );
        }
    }

    let mut backends = HashSet::default();
    for (i, b) in config.backends.iter().enumerate() {
        let at = format!("backends[{i}]");
        check_name(&mut c, &at, &b.name, &mut backends, "backend");
        if b.servers.is_empty() {
            c.add(
                format!("{at}.servers"),
                "a backend needs at least one server",
            );
        }
        let mut seen = HashSet::default();
        for (j, s) in b.servers.iter().enumerate() {
            let sat = format!("{at}.servers[{j}]");
            if let Err(msg) = check_host_port(&s.address) {
                c.add(format!("{sat}.address"), msg);
            } else if !seen.insert(s.address.as_str()) {
                c.add(
                    format!("{sat}.address"),
                    format!("duplicate server `{}`", s.address),
                );
            }
            if s.weight == 0 || s.weight > 10_000 {
                c.add(
                    format!("{sat}.weight"),
                    "weight must be between 1 and 10000",
                );
            }
        }
        let t = &b.timeouts;
        for (field, d) in [
            ("connect", t.connect),
            ("request", t.request),
            ("idle", t.idle),
        ] {
            if d.is_zero() {
                c.add(
                    format!("{at}.timeouts.{field}"),
                    "must be greater than zero",
                );
            }
        }
        extensions::backend(&mut c, &at, b);
    }

    extensions::limits(&mut c, config);
    let all_sources: HashSet<&str> = config
        .content_sources
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    let mut sources = HashSet::default();
    for (i, s) in config.content_sources.iter().enumerate() {
        let at = format!("content_sources[{i}]");
        check_name(&mut c, &at, &s.name, &mut sources, "content source");
        match s.kind() {
            None => c.add(&at, "set exactly one of `file`, `inline` and `remote`"),
            Some(ContentKind::Remote(_)) => {}
            Some(ContentKind::File(path)) => {
                if let Err(msg) = check_relative_path(path) {
                    c.add(format!("{at}.file"), msg);
                }
            }
            Some(ContentKind::Inline(_)) => {}
        }
        if let Some(ct) = &s.content_type {
            if HeaderValue::from_str(ct).is_err() || !ct.contains('/') {
                c.add(
                    format!("{at}.content_type"),
                    format!("`{ct}` is not a MIME type"),
                );
            }
        }
        extensions::source(&mut c, &at, s, &all_sources);
    }
    extensions::source_cycles(&mut c, config);

    let mut rules = HashSet::default();
    for (i, r) in config.rules.iter().enumerate() {
        if reuse.previous(i).is_some() {
            rule_references(&mut c, i, r, &mut rules, &backends, &sources);
        } else {
            validate_rule(&mut c, i, r, &mut rules, &backends, &sources);
        }
    }

    if c.problems.is_empty() {
        Ok(())
    } else {
        Err(ValidationErrors {
            problems: c.problems,
        })
    }
}

fn validate_rule<'a>(
    c: &mut Collector,
    i: usize,
    r: &'a Rule,
    rules: &mut HashSet<&'a str>,
    backends: &HashSet<&str>,
    sources: &HashSet<&str>,
) {
    let at = format!("rules[{i}]");
    check_name(c, &at, &r.name, rules, "rule");
    let m = &r.matcher;
    for (j, h) in m.hosts.iter().enumerate() {
        if let Err(msg) = check_host_pattern(h) {
            c.add(format!("{at}.match.hosts[{j}]"), msg);
        }
    }
    match m.path() {
        None => c.add(
            format!("{at}.match"),
            "set at most one of `path_prefix`, `path_exact` and `path_regex`",
        ),
        Some(PathMatch::Prefix(p)) if !p.starts_with('/') => {
            c.add(format!("{at}.match.path_prefix"), "must start with `/`")
        }
        Some(PathMatch::Exact(p)) if !p.starts_with('/') => {
            c.add(format!("{at}.match.path_exact"), "must start with `/`")
        }
        Some(PathMatch::Regex(re)) => {
            if let Err(e) = regex::RegexBuilder::new(re)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
            {
                c.add(format!("{at}.match.path_regex"), regex_error_message(&e));
            }
        }
        Some(_) => {}
    }
    let mut methods = HashSet::default();
    for (j, meth) in m.methods.iter().enumerate() {
        let upper = meth.to_ascii_uppercase();
        if meth.is_empty() || Method::from_bytes(upper.as_bytes()).is_err() {
            c.add(
                format!("{at}.match.methods[{j}]"),
                format!("`{meth}` is not an HTTP method"),
            );
        } else if !methods.insert(upper) {
            c.add(
                format!("{at}.match.methods[{j}]"),
                format!("duplicate method `{meth}`"),
            );
        }
    }
    check_headers(c, &format!("{at}.match.headers"), m.headers.iter());

    match &r.action {
        Action::Forward(f) => {
            if !backends.contains(f.backend.as_str()) {
                c.add(
                    format!("{at}.action.forward.backend"),
                    format!("unknown backend `{}`", f.backend),
                );
            }
            for (field, value) in [
                ("strip_prefix", &f.strip_prefix),
                ("add_prefix", &f.add_prefix),
            ] {
                if value.as_ref().is_some_and(|p| !p.starts_with('/')) {
                    c.add(
                        format!("{at}.action.forward.{field}"),
                        "must start with `/`",
                    );
                }
            }
        }
        Action::Replace(rep) => {
            if !sources.contains(rep.source.as_str()) {
                c.add(
                    format!("{at}.action.replace.source"),
                    format!("unknown content source `{}`", rep.source),
                );
            }
            if !(100..=599).contains(&rep.status) || (100..200).contains(&rep.status) {
                c.add(
                    format!("{at}.action.replace.status"),
                    format!("{} is not a final HTTP status (200-599)", rep.status),
                );
            }
            check_headers(
                c,
                &format!("{at}.action.replace.headers"),
                rep.headers.iter(),
            );
        }
    }
    extensions::rule(c, &at, r, sources);
}

/// The checks of a rule that depend on the rest of the config: its name
/// is unique, and the backend and content sources it names exist. Paths are
/// only formatted when something is wrong.
fn rule_references<'a>(
    c: &mut Collector,
    i: usize,
    r: &'a Rule,
    rules: &mut HashSet<&'a str>,
    backends: &HashSet<&str>,
    sources: &HashSet<&str>,
) {
    if !rules.insert(&r.name) {
        c.add(
            format!("rules[{i}].name"),
            format!("duplicate rule name `{}`", r.name),
        );
    }
    match &r.action {
        Action::Forward(f) if !backends.contains(f.backend.as_str()) => c.add(
            format!("rules[{i}].action.forward.backend"),
            format!("unknown backend `{}`", f.backend),
        ),
        Action::Replace(rep) if !sources.contains(rep.source.as_str()) => c.add(
            format!("rules[{i}].action.replace.source"),
            format!("unknown content source `{}`", rep.source),
        ),
        _ => {}
    }
    if let Some(f) = &r.fallback {
        if !sources.contains(f.source.as_str()) {
            c.add(
                format!("rules[{i}].fallback.source"),
                format!("unknown content source `{}`", f.source),
            );
        }
    }
}

/// Names appear in URLs (`/api/rules/{name}`) and metric labels, so they
/// are kept to a safe alphabet.
fn check_name<'a>(
    c: &mut Collector,
    at: &str,
    name: &'a str,
    seen: &mut HashSet<&'a str>,
    what: &str,
) {
    if let Err(msg) = check_name_syntax(name) {
        c.add(format!("{at}.name"), msg);
    } else if !seen.insert(name) {
        c.add(
            format!("{at}.name"),
            format!("duplicate {what} name `{name}`"),
        );
    }
}

/// Whether `name` is usable as a rule, backend or source name.
pub fn check_name_syntax(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 128 {
        return Err("must be 1 to 128 characters".into());
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(format!(
            "`{name}` may only contain letters, digits, `-`, `_` and `.`"
        ));
    }
    Ok(())
}

fn check_headers<'a>(
    c: &mut Collector,
    at: &str,
    headers: impl Iterator<Item = (&'a String, &'a String)>,
) {
    for (name, value) in headers {
        if HeaderName::from_bytes(name.as_bytes()).is_err() {
            c.add(
                format!("{at}.{name}"),
                format!("`{name}` is not a valid header name"),
            );
        }
        if HeaderValue::from_str(value).is_err() {
            c.add(format!("{at}.{name}"), "value is not a valid header value");
        }
    }
}

pub(crate) fn check_host_port(address: &str) -> Result<(), String> {
    if address.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    let bad = || format!("`{address}` is not host:port");
    let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
    port.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("`{address}`: port must be 1-65535"))?;
    check_hostname(host).map_err(|m| format!("`{address}`: {m}"))
}

pub(crate) fn check_hostname(host: &str) -> Result<(), String> {
    if host.is_empty() || host.len() > 253 {
        return Err("host name must be 1 to 253 characters".into());
    }
    for label in host.trim_end_matches('.').split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !label.starts_with('-');
        if !ok {
            return Err(format!("`{host}` is not a valid host name"));
        }
    }
    Ok(())
}

fn check_host_pattern(pattern: &str) -> Result<(), String> {
    let host = pattern.strip_prefix("*.").unwrap_or(pattern);
    if host.contains('*') {
        return Err(format!(
            "`{pattern}`: a wildcard is only allowed as a leading `*.`"
        ));
    }
    if host.contains(':') {
        return Err(format!("`{pattern}`: hosts are matched without a port"));
    }
    check_hostname(host)
}

fn check_relative_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("must not be empty".into());
    }
    if path.starts_with('/') || path.starts_with('\\') || path.contains('\0') {
        return Err(format!("`{path}` must be relative to the content root"));
    }
    if path.split(['/', '\\']).any(|seg| seg == "..") {
        return Err(format!("`{path}` must not contain `..`"));
    }
    if path.contains('%') {
        return Err(format!("`{path}` must not be percent-encoded"));
    }
    Ok(())
}

fn regex_error_message(e: &regex::Error) -> String {
    // The regex crate's message spans several lines with a caret diagram;
    // keep its last line, which says what is wrong.
    let text = e.to_string();
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid regex");
    format!(
        "invalid regex: {}",
        last.trim().trim_start_matches("error: ")
    )
}

/// Index of items by name, used by callers that resolve references.
pub fn index_by_name<'a, T>(items: &'a [T], name: impl Fn(&T) -> &str) -> HashMap<String, usize>
where
    T: 'a,
{
    items
        .iter()
        .enumerate()
        .map(|(i, t)| (name(t).to_owned(), i))
        .collect()
}

mod extensions;
pub use extensions::remote_address_allowed;

#[cfg(test)]
mod tests;
