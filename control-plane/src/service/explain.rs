//! "Explain match": would a sample request match a given rule, which
//! condition failed, and which rule would actually win.

use std::sync::{Arc, Mutex};

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde::{Deserialize, Serialize};
use switchyard_shared::config::Action;
use switchyard_shared::routing::{RequestInfo, RouteTable};

use super::Service;
use crate::error::ServiceError;

/// A sample request.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SampleRequest {
    #[serde(default = "default_method")]
    #[schema(pattern = "^[A-Za-z]{1,20}$")]
    pub method: String,
    pub host: String,
    /// The path; a query string is ignored.
    #[schema(pattern = "^/[!-~]*$")]
    pub path: String,
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
}

fn default_method() -> String {
    "GET".to_owned()
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Explanation {
    /// The version the answer is about.
    pub version: u64,
    pub rule: String,
    /// Whether this rule's conditions all hold.
    pub matched: bool,
    /// The first condition that failed, when not matched.
    pub failed_condition: Option<String>,
    /// The rule that would actually handle the request (first match).
    pub winning_rule: Option<String>,
    pub winning_position: Option<usize>,
    /// The action that would be taken (none: the data plane answers 404).
    pub action: Option<Action>,
}

/// The compiled table of the current version, built on first use.
#[derive(Default)]
pub struct TableCache {
    cached: Mutex<Option<(u64, Arc<RouteTable>)>>,
}

impl Service {
    fn route_table(&self) -> Result<(u64, Arc<RouteTable>), ServiceError> {
        let snap = self.current();
        let cache = self.table_cache();
        let mut cached = cache.cached.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((v, table)) = cached.as_ref() {
            if *v == snap.version {
                return Ok((*v, table.clone()));
            }
        }
        let table = Arc::new(RouteTable::compile(&snap.config).map_err(|e| {
            ServiceError::internal(format!("the live config does not compile: {e}"))
        })?);
        *cached = Some((snap.version, table.clone()));
        Ok((snap.version, table))
    }

    pub fn explain_rule(
        &self,
        name: &str,
        sample: &SampleRequest,
    ) -> Result<Explanation, ServiceError> {
        let method =
            Method::from_bytes(sample.method.to_ascii_uppercase().as_bytes()).map_err(|_| {
                ServiceError::bad_request(format!("invalid method `{}`", sample.method))
            })?;
        let mut headers = HeaderMap::new();
        for (k, v) in &sample.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| ServiceError::bad_request(format!("invalid header name `{k}`")))?;
            let value = HeaderValue::from_str(v).map_err(|_| {
                ServiceError::bad_request(format!("invalid value for header `{k}`"))
            })?;
            headers.append(name, value);
        }
        if !sample.path.starts_with('/') {
            return Err(ServiceError::bad_request("path must start with `/`"));
        }
        let path = sample.path.split('?').next().unwrap_or_default();
        let (version, table) = self.route_table()?;
        let index = table
            .position(name)
            .ok_or_else(|| ServiceError::not_found(format!("no rule named `{name}`")))?;
        let req = RequestInfo {
            method: &method,
            host: &sample.host,
            path,
            headers: &headers,
        };
        let check = table.explain(index, &req);
        let winner = table.route(&req);
        let rules = table.rules();
        Ok(Explanation {
            version,
            rule: name.to_owned(),
            matched: check.is_ok(),
            failed_condition: check.err(),
            winning_rule: winner.and_then(|i| rules.get(i)).map(|r| r.name.clone()),
            winning_position: winner,
            action: winner.and_then(|i| rules.get(i)).map(|r| r.action.clone()),
        })
    }
}
