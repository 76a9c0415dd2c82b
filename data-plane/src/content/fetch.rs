//! Fetching a remote content source from its origin, behind the address
//! policy: http/https only; loopback, private and link-local addresses
//! refused unless the config allows them (`remote_address_allowed` lists
//! the always-refused ranges and how IPv4 inside IPv6 is judged). The
//! policy is enforced on every hop: redirects are followed by hand (each
//! target re-checked), IP literals are checked before connecting, and host
//! names go through a resolver that drops refused addresses, so a name
//! that resolves (or re-resolves, DNS rebinding) to an internal address is
//! never dialled.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_TYPE, LAST_MODIFIED, LOCATION};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;
use switchyard_shared::config::{RemotePolicy, RemoteSource};
use switchyard_shared::validate::remote_address_allowed;

/// Why a remote source could not be fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("`{0}` is not a valid URL")]
    BadUrl(String),
    #[error("`{url}`: only http and https are allowed")]
    Scheme { url: String },
    #[error("`{url}`: address {ip} is refused by the remote content policy (loopback, private and link-local targets need remote_content.allow_loopback / allow_private; 0.0.0.0/8, broadcast, multicast and internal addresses behind NAT64 or 6to4 are always refused)")]
    Refused { url: String, ip: IpAddr },
    #[error("{host} resolves only to addresses refused by the remote content policy ({ips})")]
    RefusedName { host: String, ips: String },
    #[error("more than {0} redirects")]
    TooManyRedirects(u32),
    #[error("`{url}` answered {status}")]
    Status { url: String, status: u16 },
    #[error("`{url}`: body larger than the {limit} bytes allowed")]
    TooLarge { url: String, limit: u64 },
    #[error("`{url}`: no answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("`{url}`: {reason}")]
    Http { url: String, reason: String },
}

/// A fetched body and what the origin said about it.
#[derive(Debug)]
pub struct Fetched {
    pub body: Bytes,
    pub content_type: Option<String>,
    pub last_modified: Option<SystemTime>,
}

/// One remote source's client: its policy lives in the resolver.
#[derive(Debug, Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    policy: RemotePolicy,
    spec: RemoteSource,
}

impl Fetcher {
    pub fn new(spec: &RemoteSource, policy: &RemotePolicy) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(PolicyResolver {
                policy: policy.clone(),
            }))
            .no_proxy()
            .connect_timeout(spec.timeout)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            client,
            policy: policy.clone(),
            spec: spec.clone(),
        })
    }

    /// The whole fetch (all redirects, the body) within the source timeout.
    pub async fn fetch(&self) -> Result<Fetched, FetchError> {
        let timeout = self.spec.timeout;
        match tokio::time::timeout(timeout, self.fetch_inner()).await {
            Ok(result) => result,
            Err(_) => Err(FetchError::Timeout {
                url: self.spec.url.clone(),
                timeout,
            }),
        }
    }

    async fn fetch_inner(&self) -> Result<Fetched, FetchError> {
        let mut url =
            Url::parse(&self.spec.url).map_err(|_| FetchError::BadUrl(self.spec.url.clone()))?;
        let mut redirects = 0;
        loop {
            check_url(&url, &self.policy)?;
            let http = |e: reqwest::Error| FetchError::Http {
                url: url.to_string(),
                reason: crate::error::error_chain(&e),
            };
            let response = self.client.get(url.clone()).send().await.map_err(http)?;
            let status = response.status();
            if status.is_redirection() {
                let Some(location) = response
                    .headers()
                    .get(LOCATION)
                    .and_then(|l| l.to_str().ok())
                else {
                    return Err(FetchError::Status {
                        url: url.to_string(),
                        status: status.as_u16(),
                    });
                };
                if redirects >= self.spec.max_redirects {
                    return Err(FetchError::TooManyRedirects(self.spec.max_redirects));
                }
                redirects += 1;
                url = url
                    .join(location)
                    .map_err(|_| FetchError::BadUrl(location.to_owned()))?;
                continue;
            }
            if !status.is_success() {
                return Err(FetchError::Status {
                    url: url.to_string(),
                    status: status.as_u16(),
                });
            }
            return self.read_body(url.as_str(), response).await;
        }
    }

    /// Reads the body, stopping as soon as it passes `max_size`.
    async fn read_body(
        &self,
        url: &str,
        mut response: reqwest::Response,
    ) -> Result<Fetched, FetchError> {
        let limit = self.spec.max_size;
        let too_large = || FetchError::TooLarge {
            url: url.to_owned(),
            limit,
        };
        if response.content_length().is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v: &http::HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        let content_type = header(CONTENT_TYPE);
        let last_modified = header(LAST_MODIFIED).and_then(|v| httpdate::parse_http_date(&v).ok());
        let mut body = BytesMut::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| FetchError::Http {
            url: url.to_owned(),
            reason: crate::error::error_chain(&e),
        })? {
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched {
            body: body.freeze(),
            content_type,
            last_modified,
        })
    }
}

/// Scheme and IP-literal checks (names are checked by the resolver).
pub fn check_url(url: &Url, policy: &RemotePolicy) -> Result<(), FetchError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(FetchError::Scheme {
            url: url.to_string(),
        });
    }
    let Some(host) = url.host_str() else {
        return Err(FetchError::BadUrl(url.to_string()));
    };
    // IPv6 literals keep their brackets in `host_str`.
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    let Ok(ip) = literal.parse::<IpAddr>() else {
        return Ok(());
    };
    if remote_address_allowed(ip, policy) {
        Ok(())
    } else {
        Err(FetchError::Refused {
            url: url.to_string(),
            ip,
        })
    }
}

/// Resolves with the system resolver and keeps only allowed addresses.
#[derive(Debug)]
struct PolicyResolver {
    policy: RemotePolicy,
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let (allowed, refused): (Vec<SocketAddr>, Vec<SocketAddr>) = all
                .into_iter()
                .partition(|a| remote_address_allowed(a.ip(), &policy));
            if allowed.is_empty() {
                let ips = refused
                    .iter()
                    .map(|a| a.ip().to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(Box::new(FetchError::RefusedName { host, ips })
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}
