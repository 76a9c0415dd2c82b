//! Wall-clock helpers: unix milliseconds for storage, RFC 3339 for APIs.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

pub fn now_unix_ms() -> u64 {
    let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
    u64::try_from(nanos / 1_000_000).unwrap_or(0)
}

/// Formats unix milliseconds as RFC 3339 (UTC).
pub fn rfc3339_from_unix_ms(ms: u64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

pub fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}
