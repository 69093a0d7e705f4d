//! Request bodies for decision log uploads: gzip'd JSON arrays of events,
//! each at most `upload_size_limit_bytes` compressed, cut from the front of
//! the buffer one at a time.

use std::io::Write;

/// The next request body, from the front of the events.
#[derive(Debug)]
pub(super) enum Next {
    /// The gzip'd JSON array of the first `events` events.
    Chunk { body: Vec<u8>, events: usize },
    /// The first event does not fit in a request on its own.
    TooLarge,
}

/// The gzip'd JSON array of as many of the first `events` as fit in `limit`
/// compressed bytes. Chunks are cut by an uncompressed `budget` that grows
/// while chunks come out well under the limit and halves a chunk that comes
/// out over it (OPA's encoder adapts its uncompressed limit the same way).
pub(super) fn next_chunk(events: &[Vec<u8>], limit: usize, budget: &mut usize) -> Next {
    let Some(first) = events.first() else {
        return Next::TooLarge;
    };
    let mut end = 1;
    let mut size = first.len() + 2;
    while end < events.len() && size + events[end].len() < *budget {
        size += events[end].len() + 1;
        end += 1;
    }
    loop {
        let body = gzip_array(&events[..end]);
        if body.len() <= limit {
            if body.len() < limit / 10 * 9 && end < events.len() {
                *budget = budget.saturating_add(*budget / 2);
            }
            return Next::Chunk { body, events: end };
        }
        if end == 1 {
            return Next::TooLarge;
        }
        end /= 2;
        *budget = (*budget / 2).max(limit);
    }
}

fn gzip_array(events: &[Vec<u8>]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writes to a Vec cannot fail.
    let _ = gz.write_all(b"[");
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            let _ = gz.write_all(b",");
        }
        let _ = gz.write_all(event);
    }
    let _ = gz.write_all(b"]");
    gz.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gunzip(body: &[u8]) -> serde_json::Value {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(body), &mut text).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    fn event(i: usize, pad: usize) -> Vec<u8> {
        // Pseudo-random padding (xorshift), so that gzip cannot squeeze it away.
        let mut x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let noise: String = (0..pad)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from(b'a' + (x % 26) as u8)
            })
            .collect();
        format!(r#"{{"decision_id":"{i}","input":"{noise}"}}"#).into_bytes()
    }

    /// Cuts `events` into chunks as `upload_once` does: the ids sent, in
    /// order, and how many chunks and dropped events.
    fn cut(mut events: &[Vec<u8>], limit: usize) -> (Vec<String>, usize, usize) {
        let (mut ids, mut chunks, mut dropped) = (Vec::new(), 0, 0);
        let mut budget = limit * 4;
        while !events.is_empty() {
            match next_chunk(events, limit, &mut budget) {
                Next::Chunk { body, events: n } => {
                    assert!(body.len() <= limit, "{} > {limit}", body.len());
                    let array = gunzip(&body);
                    assert_eq!(array.as_array().unwrap().len(), n);
                    for e in array.as_array().unwrap() {
                        ids.push(e["decision_id"].as_str().unwrap().to_string());
                    }
                    chunks += 1;
                    events = &events[n..];
                }
                Next::TooLarge => {
                    dropped += 1;
                    events = &events[1..];
                }
            }
        }
        (ids, chunks, dropped)
    }

    #[test]
    fn chunks_stay_under_the_limit_and_keep_every_event_in_order() {
        let events: Vec<Vec<u8>> = (0..500).map(|i| event(i, 200)).collect();
        let (ids, chunks, dropped) = cut(&events, 4096);
        assert_eq!(dropped, 0);
        assert!(chunks > 1, "{chunks}");
        let expected: Vec<String> = (0..500).map(|i| i.to_string()).collect();
        assert_eq!(ids, expected);
        // The smallest limit OPA allows: every such event is too large.
        assert_eq!(cut(&events[..3], 90), (Vec::new(), 0, 3));
    }

    #[test]
    fn an_event_too_large_for_any_chunk_is_dropped_alone() {
        let events = vec![event(0, 10), event(1, 5000), event(2, 10)];
        let (ids, _, dropped) = cut(&events, 500);
        assert_eq!(dropped, 1);
        assert_eq!(ids, ["0", "2"]);
    }
}
