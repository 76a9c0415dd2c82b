//! HTTP/1.1 as pure functions over buffers. Towards upstream servers: the
//! request head written to a server ([`encode_request_head`]), a response
//! head parsed from the bytes read back and how its body is framed
//! ([`parse_response_head`]), and the chunked body decoder
//! ([`ChunkedDecoder`]). Towards clients: a bodiless request head
//! ([`parse_request_head`]) and the response head with its framing
//! ([`response_framing`], [`encode_response_head`]). The data plane drives
//! these over its own sockets; nothing here does I/O.

mod chunked;
mod request;
mod response;
mod server;

pub use chunked::{ChunkedDecoder, Decoded};
pub use request::encode_request_head;
pub use response::{parse_response_head, BodyFraming, ResponseHead, MAX_HEADERS, MAX_HEAD_BYTES};
pub use server::{
    encode_chunk_size, encode_response_head, parse_request_head, response_framing,
    ConnectionHeader, ParsedRequest, RequestHead, ResponseFraming, LAST_CHUNK,
};

/// Why bytes from a server are not a valid HTTP/1.1 response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Http1Error {
    #[error("malformed response head: {0}")]
    Head(httparse::Error),
    #[error("response head longer than {limit} bytes")]
    HeadTooLarge { limit: usize },
    #[error("invalid response header {name}")]
    InvalidHeader { name: String },
    #[error("invalid or conflicting Content-Length")]
    InvalidContentLength,
    #[error("invalid chunk size line")]
    InvalidChunkSize,
    #[error("chunk extension longer than {limit} bytes")]
    ChunkExtensionTooLong { limit: usize },
    #[error("missing CRLF after chunk data")]
    MissingChunkEnd,
    #[error("trailer section longer than {limit} bytes")]
    TrailersTooLarge { limit: usize },
    #[error("malformed trailer section: {0}")]
    Trailers(httparse::Error),
}
