//! HTTP/1.1 upgrades (WebSocket) through the proxy: the client's
//! `Upgrade` is forwarded with the request; when the server answers `101
//! Switching Protocols`, both sides are upgraded by hyper and their bytes
//! copied both ways until either closes.

use http::header::{CONNECTION, UPGRADE};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::body::ProxyBody;

/// The client side of a requested upgrade.
#[derive(Debug)]
pub struct ClientUpgrade {
    /// The `Upgrade` header value (e.g. `websocket`).
    protocol: HeaderValue,
    on_upgrade: OnUpgrade,
}

/// Takes the upgrade out of an HTTP/1.1 request asking for one (before the
/// hop-by-hop headers that carry it are removed).
pub fn take(headers: &HeaderMap, extensions: &mut http::Extensions) -> Option<ClientUpgrade> {
    // Most requests have no `Upgrade`: one lookup of a standard header.
    let protocol = headers.get(UPGRADE)?;
    let wants = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if !wants {
        return None;
    }
    let on_upgrade = extensions.remove::<OnUpgrade>()?;
    Some(ClientUpgrade {
        protocol: protocol.clone(),
        on_upgrade,
    })
}

impl ClientUpgrade {
    /// Puts the upgrade request back on the upstream request's headers.
    pub fn restore(&self, headers: &mut HeaderMap) {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, self.protocol.clone());
    }

    /// Answers the client: a `101` from the server is passed on and the two
    /// upgraded connections are joined; anything else is returned as is.
    pub fn splice(self, mut upstream: Response<ProxyBody>) -> Response<ProxyBody> {
        if upstream.status() != StatusCode::SWITCHING_PROTOCOLS {
            return upstream;
        }
        let server_side = hyper::upgrade::on(&mut upstream);
        let protocol = upstream
            .headers()
            .get(UPGRADE)
            .cloned()
            .unwrap_or(self.protocol);
        tokio::spawn(async move {
            let (client, server) = match tokio::try_join!(self.on_upgrade, server_side) {
                Ok(both) => both,
                Err(e) => {
                    tracing::debug!(error = %e, "upgrade failed");
                    return;
                }
            };
            let mut client = TokioIo::new(client);
            let mut server = TokioIo::new(server);
            if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut server).await {
                tracing::debug!(error = %e, "upgraded connection ended");
            }
        });
        let (mut parts, _) = upstream.into_parts();
        parts
            .headers
            .insert(CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(UPGRADE, protocol);
        Response::from_parts(parts, ProxyBody::Full(None))
    }
}
