//! The chunked transfer coding's decoder (RFC 9112 §7.1).

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};

use super::Http1Error;

/// Hex digits accepted in one chunk size (64 bits).
const MAX_SIZE_DIGITS: u8 = 16;
/// Bytes of chunk extensions accepted on one size line (they are ignored).
const MAX_EXTENSION: usize = 4096;
/// Bytes accepted in the trailer section.
const MAX_TRAILERS: usize = 16 * 1024;
const MAX_TRAILER_FIELDS: usize = 64;

/// One step of decoding.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// Body bytes, shared with the buffer they were read into.
    Data(Bytes),
    /// The trailer fields after the last chunk; the body has ended.
    Trailers(HeaderMap),
    /// The buffer ran out mid-body: read more and call again.
    NeedMore,
    /// The body has ended (no trailers, or they were returned already).
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size { size: u64, digits: u8 },
    Extension { size: u64, len: usize },
    SizeLf { size: u64 },
    Data(u64),
    DataCr,
    DataLf,
    Trailers,
    End,
}

/// Decodes a chunked body from the front of a buffer, however its bytes
/// are split across reads.
#[derive(Debug)]
pub struct ChunkedDecoder {
    state: State,
    trailers: Vec<u8>,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        Self {
            state: State::Size { size: 0, digits: 0 },
            trailers: Vec::new(),
        }
    }

    /// The whole body, trailers included, has been decoded.
    pub fn is_done(&self) -> bool {
        self.state == State::End
    }

    /// Decodes from the front of `buf`, consuming the bytes it used; bytes
    /// after the body's end are left in `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, Http1Error> {
        loop {
            match self.state {
                State::Data(remaining) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let take = remaining.min(buf.len() as u64);
                    let data = buf.split_to(take as usize).freeze();
                    self.state = if take == remaining {
                        State::DataCr
                    } else {
                        State::Data(remaining - take)
                    };
                    return Ok(Decoded::Data(data));
                }
                State::Trailers => return self.trailers(buf),
                State::End => return Ok(Decoded::End),
                _ => {
                    let Some(&byte) = buf.first() else {
                        return Ok(Decoded::NeedMore);
                    };
                    buf.advance(1);
                    self.state = step(self.state, byte)?;
                }
            }
        }
    }

    /// Collects the trailer section up to its blank line, then parses it.
    fn trailers(&mut self, buf: &mut BytesMut) -> Result<Decoded, Http1Error> {
        loop {
            let Some(&byte) = buf.first() else {
                return Ok(Decoded::NeedMore);
            };
            buf.advance(1);
            self.trailers.push(byte);
            if self.trailers.len() > MAX_TRAILERS {
                return Err(Http1Error::TrailersTooLarge {
                    limit: MAX_TRAILERS,
                });
            }
            if byte == b'\n' && (self.trailers == b"\r\n" || self.trailers.ends_with(b"\r\n\r\n")) {
                break;
            }
        }
        self.state = State::End;
        let section = std::mem::take(&mut self.trailers);
        if section == b"\r\n" {
            return Ok(Decoded::End);
        }
        let mut fields = [httparse::EMPTY_HEADER; MAX_TRAILER_FIELDS];
        let parsed = match httparse::parse_headers(&section, &mut fields) {
            Ok(httparse::Status::Complete((_, parsed))) => parsed,
            Ok(httparse::Status::Partial) => {
                return Err(Http1Error::Trailers(httparse::Error::Token))
            }
            Err(e) => return Err(Http1Error::Trailers(e)),
        };
        let mut map = HeaderMap::with_capacity(parsed.len());
        for field in parsed.iter() {
            let name = HeaderName::from_bytes(field.name.as_bytes());
            let value = HeaderValue::from_bytes(field.value);
            match (name, value) {
                (Ok(name), Ok(value)) => {
                    map.append(name, value);
                }
                _ => return Err(Http1Error::Trailers(httparse::Error::HeaderValue)),
            }
        }
        Ok(Decoded::Trailers(map))
    }
}

/// The state after `byte` on a size line or a chunk's closing CRLF.
fn step(state: State, byte: u8) -> Result<State, Http1Error> {
    Ok(match (state, byte) {
        (State::Size { size, digits }, _) if byte.is_ascii_hexdigit() => {
            if digits >= MAX_SIZE_DIGITS {
                return Err(Http1Error::InvalidChunkSize);
            }
            let value = char::from(byte).to_digit(16).unwrap_or(0);
            State::Size {
                size: size << 4 | u64::from(value),
                digits: digits + 1,
            }
        }
        (State::Size { size, digits }, b';' | b' ' | b'\t') if digits > 0 => {
            State::Extension { size, len: 0 }
        }
        (State::Size { size, digits }, b'\r') if digits > 0 => State::SizeLf { size },
        (State::Extension { size, .. }, b'\r') => State::SizeLf { size },
        (State::Extension { size, len }, _) if byte != b'\n' => {
            if len >= MAX_EXTENSION {
                return Err(Http1Error::ChunkExtensionTooLong {
                    limit: MAX_EXTENSION,
                });
            }
            State::Extension { size, len: len + 1 }
        }
        (State::SizeLf { size: 0 }, b'\n') => State::Trailers,
        (State::SizeLf { size }, b'\n') => State::Data(size),
        (State::DataCr, b'\r') => State::DataLf,
        (State::DataLf, b'\n') => State::Size { size: 0, digits: 0 },
        (State::DataCr | State::DataLf, _) => return Err(Http1Error::MissingChunkEnd),
        _ => return Err(Http1Error::InvalidChunkSize),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The body, the trailers and the bytes left after the end.
    type Outcome = (Vec<u8>, Option<HeaderMap>, Vec<u8>);

    /// Feeds `wire` in pieces of `piece` bytes.
    fn decode_in_pieces(wire: &[u8], piece: usize) -> Result<Outcome, Http1Error> {
        let mut decoder = ChunkedDecoder::new();
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        let mut trailers = None;
        let mut fed = 0;
        loop {
            match decoder.decode(&mut buf)? {
                Decoded::Data(d) => body.extend_from_slice(&d),
                Decoded::Trailers(t) => trailers = Some(t),
                Decoded::End => break,
                Decoded::NeedMore => {
                    if fed == wire.len() {
                        return Err(Http1Error::MissingChunkEnd);
                    }
                    let end = (fed + piece.max(1)).min(wire.len());
                    buf.extend_from_slice(&wire[fed..end]);
                    fed = end;
                }
            }
        }
        assert!(decoder.is_done());
        let mut rest = buf.to_vec();
        rest.extend_from_slice(&wire[fed..]);
        Ok((body, trailers, rest))
    }

    #[test]
    fn decodes_chunks_extensions_and_trailers_at_every_split() {
        let wire = b"5;name=value\r\nhello\r\n1A \r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Sum: 42\r\nX-Other: a\r\n\r\nNEXT";
        for piece in 1..wire.len() {
            let (body, trailers, rest) =
                decode_in_pieces(wire, piece).unwrap_or_else(|e| panic!("piece {piece}: {e}"));
            assert_eq!(body, b"helloabcdefghijklmnopqrstuvwxyz");
            let trailers = trailers.unwrap_or_default();
            assert_eq!(
                trailers.get("x-sum").map(|v| v.as_bytes()),
                Some(&b"42"[..])
            );
            assert_eq!(trailers.len(), 2);
            assert_eq!(rest, b"NEXT");
        }
    }

    #[test]
    fn an_empty_body_has_no_trailers() {
        let (body, trailers, rest) =
            decode_in_pieces(b"0\r\n\r\n", 1).unwrap_or_else(|e| panic!("{e}"));
        assert!(body.is_empty() && trailers.is_none() && rest.is_empty());
    }

    #[test]
    fn malformed_bodies_are_errors_that_say_what() {
        let cases: [(&[u8], Http1Error); 7] = [
            (b"x\r\n", Http1Error::InvalidChunkSize),
            (b"\r\n", Http1Error::InvalidChunkSize),
            (b"5\n", Http1Error::InvalidChunkSize),
            (b"12345678901234567\r\n", Http1Error::InvalidChunkSize),
            (b"3\r\nabcX", Http1Error::MissingChunkEnd),
            (b"3\r\nabc\rX", Http1Error::MissingChunkEnd),
            (
                b"0\r\nno colon here\r\n\r\n",
                Http1Error::Trailers(httparse::Error::HeaderName),
            ),
        ];
        for (wire, expected) in cases {
            let got = decode_in_pieces(wire, wire.len());
            assert_eq!(
                got.err(),
                Some(expected),
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
        let long_extension = format!("1;{}\r\n", "e".repeat(MAX_EXTENSION + 1));
        assert_eq!(
            decode_in_pieces(long_extension.as_bytes(), 64).err(),
            Some(Http1Error::ChunkExtensionTooLong {
                limit: MAX_EXTENSION
            })
        );
        let long_trailers = format!("0\r\nx: {}\r\n\r\n", "t".repeat(MAX_TRAILERS));
        assert_eq!(
            decode_in_pieces(long_trailers.as_bytes(), 4096).err(),
            Some(Http1Error::TrailersTooLarge {
                limit: MAX_TRAILERS
            })
        );
    }

    fn encode(body: &[u8], sizes: &[usize]) -> Vec<u8> {
        let mut wire = Vec::new();
        let mut rest = body;
        let mut sizes = sizes.iter().cycle();
        while !rest.is_empty() {
            let n = sizes.next().copied().unwrap_or(1).clamp(1, rest.len());
            wire.extend_from_slice(format!("{n:x}\r\n").as_bytes());
            wire.extend_from_slice(&rest[..n]);
            wire.extend_from_slice(b"\r\n");
            rest = &rest[n..];
        }
        wire.extend_from_slice(b"0\r\n\r\n");
        wire
    }

    proptest! {
        #[test]
        fn any_body_in_any_chunking_and_any_reads_comes_back_whole(
            body in proptest::collection::vec(any::<u8>(), 0..3000),
            sizes in proptest::collection::vec(1usize..700, 1..8),
            piece in 1usize..900,
        ) {
            let wire = encode(&body, &sizes);
            let decoded = decode_in_pieces(&wire, piece);
            prop_assert!(decoded.is_ok(), "{:?}", decoded.err());
            if let Ok((decoded, trailers, rest)) = decoded {
                prop_assert_eq!(decoded, body);
                prop_assert!(trailers.is_none());
                prop_assert!(rest.is_empty());
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(wire in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_in_pieces(&wire, 7);
        }
    }
}
