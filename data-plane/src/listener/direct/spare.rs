//! Buffers of ended connections, kept on their thread for the next ones.
//!
//! A connection's read and write buffers and its header map are blocks of
//! several KiB, which the allocator serves from its slow path: with a new
//! connection per request they were most of its work (callgrind). A few
//! sets are kept, so a burst of connections reuses warm memory and an idle
//! data plane holds at most `KEPT` of them.

use std::cell::RefCell;

use bytes::BytesMut;
use http::HeaderMap;

/// Sets kept per thread.
const KEPT: usize = 32;
/// Buffers grown past these sizes (a huge head, a burst of output) are
/// freed rather than kept.
const INPUT_KEEP_MAX: usize = 32 * 1024;
const OUTPUT_KEEP_MAX: usize = 64 * 1024;

pub(super) struct Buffers {
    pub input: BytesMut,
    pub out: Vec<u8>,
    pub map: HeaderMap,
}

thread_local! {
    static SPARE: RefCell<Vec<Buffers>> = const { RefCell::new(Vec::new()) };
}

/// A kept set, if there is one.
pub(super) fn take() -> Option<Buffers> {
    SPARE.with_borrow_mut(Vec::pop)
}

/// Keeps `buffers` for another connection if they are empty-able in place
/// (no request still shares the input) and not oversized; `input_size` is
/// the room a fresh input buffer has.
pub(super) fn give(mut buffers: Buffers, input_size: usize) {
    buffers.input.clear();
    if !buffers.input.try_reclaim(input_size)
        || buffers.input.capacity() > INPUT_KEEP_MAX
        || buffers.out.capacity() > OUTPUT_KEEP_MAX
    {
        return;
    }
    buffers.out.clear();
    buffers.map.clear();
    SPARE.with_borrow_mut(|spare| {
        if spare.len() < KEPT {
            spare.push(buffers);
        }
    });
}

#[cfg(test)]
mod tests {
    use bytes::BufMut;

    use super::*;

    /// Empties this thread's list (a test thread may have run others).
    fn drain() {
        while take().is_some() {}
    }

    fn fresh() -> Buffers {
        Buffers {
            input: BytesMut::with_capacity(1024),
            out: Vec::with_capacity(512),
            map: HeaderMap::new(),
        }
    }

    #[test]
    fn given_buffers_come_back_empty_with_their_room() {
        drain();
        let mut used = fresh();
        used.input.put_slice(b"GET / HTTP/1.1\r\n\r\n");
        let head = used.input.split_to(10);
        drop(head);
        used.out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        used.map.insert("x-a", http::HeaderValue::from_static("1"));
        give(used, 1024);
        let back = take().unwrap_or_else(|| panic!("the set was not kept"));
        assert!(back.input.is_empty() && back.input.capacity() >= 1024);
        assert!(back.out.is_empty() && back.out.capacity() >= 512);
        assert!(back.map.is_empty());
        assert!(take().is_none());
    }

    #[test]
    fn shared_or_oversized_buffers_are_not_kept() {
        drain();
        let mut shared = fresh();
        shared.input.put_slice(b"GET / HTTP/1.1\r\n\r\n");
        let still_used = shared.input.split_to(5).freeze();
        give(shared, 1024);
        assert!(take().is_none(), "a buffer a request still shares was kept");
        drop(still_used);

        let mut big = fresh();
        big.out.reserve(OUTPUT_KEEP_MAX + 1);
        give(big, 1024);
        assert!(take().is_none(), "an oversized buffer was kept");
    }

    #[test]
    fn at_most_kept_sets_are_held() {
        drain();
        for _ in 0..KEPT + 5 {
            give(fresh(), 1024);
        }
        let mut n = 0;
        while take().is_some() {
            n += 1;
        }
        assert_eq!(n, KEPT);
    }
}
