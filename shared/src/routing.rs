//! The compiled routing table: first matching rule in config order, found
//! through host and path indexes so the cost per request stays nearly flat
//! as rules grow (no scan over every rule, no regex tried one by one).

use std::borrow::Cow;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use regex::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};
// Indexes keyed by config strings, rebuilt per version and probed per
// request (SipHash was a visible share of the proxy's CPU). Keys come from
// the config, so client-chosen lookups cannot degrade the maps.
use rustc_hash::FxHashMap as HashMap;

use crate::config::{Action, Config, PathMatch, Rule};
use crate::reuse::RuleReuse;
use crate::validate::{validate_reusing, ValidationErrors, REGEX_SIZE_LIMIT};

// Test-only tally of the steps one `route` takes (index probes and
// candidate rules examined), so a test can show the work stays flat as
// rules grow without timing anything.
#[cfg(test)]
thread_local! {
    static WORK: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

#[inline(always)]
fn tally() {
    #[cfg(test)]
    WORK.with(|w| w.set(w.get() + 1));
}

/// Steps taken on this thread since the last call (tests only).
#[cfg(test)]
fn take_work() -> u64 {
    WORK.with(|w| w.replace(0))
}

/// What the router needs to know about a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo<'a> {
    pub method: &'a Method,
    /// The Host header or URI authority; may carry a port, any case.
    pub host: &'a str,
    /// The path without the query string.
    pub path: &'a str,
    pub headers: &'a HeaderMap,
}

#[derive(Debug, Clone)]
enum CompiledPath {
    Any,
    Prefix(String),
    Exact(String),
    Regex(Regex),
}

/// One rule, ready to check against requests.
#[derive(Debug, Clone)]
pub struct CompiledRule {
    pub name: String,
    pub action: Action,
    hosts: Vec<String>,
    path: CompiledPath,
    methods: Vec<Method>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl CompiledRule {
    fn compile(rule: &Rule) -> Result<Self, String> {
        let m = &rule.matcher;
        let path = match m.path() {
            Some(PathMatch::Any) | None => CompiledPath::Any,
            Some(PathMatch::Prefix(p)) => CompiledPath::Prefix(p.to_owned()),
            Some(PathMatch::Exact(p)) => CompiledPath::Exact(p.to_owned()),
            Some(PathMatch::Regex(re)) => CompiledPath::Regex(
                RegexBuilder::new(re)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| e.to_string())?,
            ),
        };
        let methods = m
            .methods
            .iter()
            .map(|s| {
                Method::from_bytes(s.to_ascii_uppercase().as_bytes()).map_err(|e| e.to_string())
            })
            .collect::<Result<_, _>>()?;
        let headers = m
            .headers
            .iter()
            .map(|(k, v)| {
                Ok((
                    HeaderName::from_bytes(k.as_bytes()).map_err(|e| e.to_string())?,
                    HeaderValue::from_str(v).map_err(|e| e.to_string())?,
                ))
            })
            .collect::<Result<_, String>>()?;
        Ok(Self {
            name: rule.name.clone(),
            action: rule.action.clone(),
            hosts: m.hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
            path,
            methods,
            headers,
        })
    }

    /// Method and header conditions: the ones the indexes do not decide.
    fn matches_rest(&self, req: &RequestInfo<'_>) -> bool {
        (self.methods.is_empty() || self.methods.contains(req.method))
            && self
                .headers
                .iter()
                .all(|(name, want)| req.headers.get_all(name).iter().any(|v| v == want))
    }

    /// Checks every condition; the error names the first that fails.
    pub fn check(&self, req: &RequestInfo<'_>) -> Result<(), String> {
        let host = normalize_host(req.host);
        if !self.hosts.is_empty() && !self.hosts.iter().any(|p| host_matches(p, &host)) {
            return Err(format!("host `{host}` does not match {:?}", self.hosts));
        }
        let path_ok = match &self.path {
            CompiledPath::Any => true,
            CompiledPath::Prefix(p) => req.path.starts_with(p.as_str()),
            CompiledPath::Exact(p) => req.path == p,
            CompiledPath::Regex(re) => re.is_match(req.path),
        };
        if !path_ok {
            let cond = match &self.path {
                CompiledPath::Prefix(p) => format!("path_prefix `{p}`"),
                CompiledPath::Exact(p) => format!("path_exact `{p}`"),
                CompiledPath::Regex(re) => format!("path_regex `{}`", re.as_str()),
                CompiledPath::Any => String::new(),
            };
            return Err(format!("path `{}` does not match {cond}", req.path));
        }
        if !self.methods.is_empty() && !self.methods.contains(req.method) {
            let allowed: Vec<&str> = self.methods.iter().map(Method::as_str).collect();
            return Err(format!("method {} is not one of {allowed:?}", req.method));
        }
        for (name, want) in &self.headers {
            if !req.headers.get_all(name).iter().any(|v| v == want) {
                return Err(format!(
                    "header `{name}` is not `{}`",
                    want.to_str().unwrap_or("<binary>")
                ));
            }
        }
        Ok(())
    }
}

/// Rules of one host bucket, indexed by their path condition. Every list
/// holds rule indices in ascending (config) order.
#[derive(Debug, Default)]
struct PathIndex {
    exact: HashMap<String, Vec<u32>>,
    prefix: HashMap<String, Vec<u32>>,
    /// Distinct prefix lengths, longest first.
    prefix_lens: Vec<usize>,
    regex: Option<(RegexSet, Vec<u32>)>,
    regex_pending: Vec<(String, u32)>,
    any: Vec<u32>,
}

impl PathIndex {
    fn insert(&mut self, idx: u32, path: &CompiledPath) {
        match path {
            CompiledPath::Any => self.any.push(idx),
            CompiledPath::Exact(p) => self.exact.entry(p.clone()).or_default().push(idx),
            CompiledPath::Prefix(p) => {
                if !self.prefix_lens.contains(&p.len()) {
                    self.prefix_lens.push(p.len());
                }
                self.prefix.entry(p.clone()).or_default().push(idx)
            }
            CompiledPath::Regex(re) => self.regex_pending.push((re.as_str().to_owned(), idx)),
        }
    }

    /// Sorts the prefix lengths and builds the regex set; the set of
    /// `previous` (the same bucket one version earlier) is kept when its
    /// patterns are the same, as building one is the costly part.
    fn finish(&mut self, previous: Option<&PathIndex>) -> Result<(), String> {
        self.prefix_lens.sort_unstable_by(|a, b| b.cmp(a));
        if !self.regex_pending.is_empty() {
            let pending = std::mem::take(&mut self.regex_pending);
            let ids = pending.iter().map(|&(_, i)| i).collect();
            let same = previous
                .and_then(|p| p.regex.as_ref())
                .map(|(set, _)| set)
                .filter(|set| set.patterns().iter().eq(pending.iter().map(|(p, _)| p)));
            let set = match same {
                Some(set) => set.clone(),
                None => RegexSetBuilder::new(pending.iter().map(|(p, _)| p))
                    .size_limit(REGEX_SIZE_LIMIT.saturating_mul(pending.len().min(64)))
                    .build()
                    .map_err(|e| e.to_string())?,
            };
            self.regex = Some((set, ids));
        }
        Ok(())
    }

    /// Lowers `best` to the first rule in this bucket that matches.
    fn find(&self, rules: &[Arc<CompiledRule>], req: &RequestInfo<'_>, best: &mut u32) {
        consider(rules, req, &self.any, best);
        tally();
        if let Some(list) = self.exact.get(req.path) {
            consider(rules, req, list, best);
        }
        for &len in &self.prefix_lens {
            tally();
            if let Some(list) = req.path.get(..len).and_then(|p| self.prefix.get(p)) {
                consider(rules, req, list, best);
            }
        }
        if let Some((set, ids)) = &self.regex {
            // Only worth running when a regex rule could still win; the
            // yes/no search stops early and usually says no, the search
            // for every matching pattern does not.
            if ids.first().is_some_and(|&first| first < *best) && set.is_match(req.path) {
                tally();
                for i in set.matches(req.path).iter() {
                    consider(rules, req, std::slice::from_ref(&ids[i]), best);
                }
            }
        }
    }
}

/// Lowers `best` to the first index of `list` (ascending) whose rule also
/// passes the method and header conditions.
fn consider(rules: &[Arc<CompiledRule>], req: &RequestInfo<'_>, list: &[u32], best: &mut u32) {
    for &idx in list {
        if idx >= *best {
            return;
        }
        tally();
        if rules[idx as usize].matches_rest(req) {
            *best = idx;
            return;
        }
    }
}

/// The immutable routing table of one config version.
#[derive(Debug, Default)]
pub struct RouteTable {
    /// Shared with the next version's table where the rule is unchanged.
    rules: Vec<Arc<CompiledRule>>,
    exact_hosts: HashMap<String, PathIndex>,
    /// Keyed by the suffix after `*.`.
    wildcard_hosts: HashMap<String, PathIndex>,
    any_host: PathIndex,
}

impl RouteTable {
    /// Validates and compiles a config.
    pub fn compile(config: &Config) -> Result<Self, ValidationErrors> {
        Self::compile_reusing(config, None, &RuleReuse::default())
    }

    /// Validates and compiles a config derived from the one `previous` was
    /// compiled from, `reuse` mapping rules between the two: an unchanged
    /// rule keeps its compiled form (regexes included) and skips its
    /// self-contained checks, and a host bucket whose regexes did not
    /// change keeps its regex set. The result equals a full compile.
    pub fn compile_reusing(
        config: &Config,
        previous: Option<&RouteTable>,
        reuse: &RuleReuse,
    ) -> Result<Self, ValidationErrors> {
        validate_reusing(config, reuse)?;
        let mut table = RouteTable::default();
        for (i, rule) in config.rules.iter().enumerate() {
            let kept = previous
                .zip(reuse.previous(i))
                .and_then(|(p, j)| p.rules.get(j))
                .filter(|c| c.name == rule.name)
                .cloned();
            let compiled = match kept {
                Some(c) => c,
                None => Arc::new(
                    CompiledRule::compile(rule)
                        .map_err(|e| ValidationErrors::single(format!("rules[{i}]"), e))?,
                ),
            };
            let idx = u32::try_from(i)
                .map_err(|_| ValidationErrors::single("rules", "too many rules"))?;
            if compiled.hosts.is_empty() {
                table.any_host.insert(idx, &compiled.path);
            }
            // A rule listing the same host twice must be indexed once.
            let mut hosts: Vec<&String> = compiled.hosts.iter().collect();
            hosts.sort_unstable();
            hosts.dedup();
            for host in hosts {
                let bucket = match host.strip_prefix("*.") {
                    Some(suffix) => table.wildcard_hosts.entry(suffix.to_owned()).or_default(),
                    None => table.exact_hosts.entry(host.clone()).or_default(),
                };
                bucket.insert(idx, &compiled.path);
            }
            table.rules.push(compiled);
        }
        let finish = |b: &mut PathIndex, prev: Option<&PathIndex>| {
            b.finish(prev)
                .map_err(|e| ValidationErrors::single("rules", e))
        };
        finish(&mut table.any_host, previous.map(|p| &p.any_host))?;
        for (host, b) in &mut table.exact_hosts {
            finish(b, previous.and_then(|p| p.exact_hosts.get(host)))?;
        }
        for (suffix, b) in &mut table.wildcard_hosts {
            finish(b, previous.and_then(|p| p.wildcard_hosts.get(suffix)))?;
        }
        Ok(table)
    }

    pub fn rules(&self) -> &[Arc<CompiledRule>] {
        &self.rules
    }

    /// Index of the first rule (in config order) that matches the request.
    pub fn route(&self, req: &RequestInfo<'_>) -> Option<usize> {
        let mut best = u32::MAX;
        let host = normalize_host(req.host);
        tally();
        if let Some(bucket) = self.exact_hosts.get(host.as_ref()) {
            bucket.find(&self.rules, req, &mut best);
        }
        if !self.wildcard_hosts.is_empty() {
            let mut rest = host.as_ref();
            while let Some((_, suffix)) = rest.split_once('.') {
                tally();
                if let Some(bucket) = self.wildcard_hosts.get(suffix) {
                    bucket.find(&self.rules, req, &mut best);
                }
                rest = suffix;
            }
        }
        self.any_host.find(&self.rules, req, &mut best);
        (best != u32::MAX).then_some(best as usize)
    }

    /// Whether rule `index` matches, and if not, which condition failed.
    pub fn explain(&self, index: usize, req: &RequestInfo<'_>) -> Result<(), String> {
        self.rules
            .get(index)
            .ok_or_else(|| format!("no rule at index {index}"))?
            .check(req)
    }

    /// Index of the rule with this name.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.rules.iter().position(|r| r.name == name)
    }
}

/// Lower-cases and strips the port and a trailing dot, allocating only
/// when the host is not already in that form.
fn normalize_host(host: &str) -> Cow<'_, str> {
    let without_port = if host.starts_with('[') {
        // IPv6 literal: keep up to the closing bracket.
        host.find(']').map_or(host, |end| &host[..=end])
    } else {
        host.rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or(host, |(h, _)| h)
    };
    let trimmed = without_port.strip_suffix('.').unwrap_or(without_port);
    if trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(trimmed.to_ascii_lowercase())
    } else {
        Cow::Borrowed(trimmed)
    }
}

fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => {
            host.len() > suffix.len() + 1
                && host.ends_with(suffix)
                && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
        }
        None => pattern == host,
    }
}

#[cfg(test)]
mod tests;
