//! Server-Sent Events parsed incrementally: events come out as soon as their terminating
//! blank line arrives, whatever the network split. Each event keeps its exact bytes so an
//! unchanged event is forwarded byte for byte.

use bytes::{Bytes, BytesMut};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The event exactly as received, including its terminating blank line.
    pub raw: Bytes,
    pub event: Option<String>,
    /// `data` lines joined with `\n`; `None` for comment-only blocks (keep-alives).
    pub data: Option<String>,
    pub id: Option<String>,
}

impl SseEvent {
    /// Serializes an event with new data (same type and id).
    pub fn with_data(&self, data: &str) -> Bytes {
        let mut out = String::new();
        if let Some(event) = &self.event {
            out.push_str(&format!("event: {event}\n"));
        }
        if let Some(id) = &self.id {
            out.push_str(&format!("id: {id}\n"));
        }
        for line in data.split('\n') {
            out.push_str(&format!("data: {line}\n"));
        }
        out.push('\n');
        Bytes::from(out)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SseError {
    #[error("event stream: an event exceeds {0} bytes")]
    TooLarge(usize),
    #[error("event stream: invalid UTF-8")]
    Utf8,
}

pub struct SseParser {
    buf: BytesMut,
    /// Where scanning for the end of the current event resumes.
    scanned: usize,
    max_event: usize,
    /// Whether the start of the stream (where a byte-order mark may stand) is behind us.
    started: bool,
}

/// A UTF-8 byte-order mark, which the event-stream format ignores at the start of a stream.
const BOM: &[u8] = b"\xEF\xBB\xBF";

impl SseParser {
    pub fn new(max_event: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            scanned: 0,
            max_event,
            started: false,
        }
    }

    /// Feeds bytes; returns the events completed by them.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        self.buf.extend_from_slice(chunk);
        if !self.started {
            // Clients drop a leading BOM and read the event behind it: so must the gateway,
            // or that event would pass unchecked.
            if self.buf.len() < BOM.len() && BOM.starts_with(&self.buf) {
                return Ok(Vec::new());
            }
            if self.buf.starts_with(BOM) {
                let _ = self.buf.split_to(BOM.len());
            }
            self.started = true;
        }
        let mut events = Vec::new();
        while let Some(end) = self.event_end() {
            let raw = self.buf.split_to(end).freeze();
            self.scanned = 0;
            events.push(parse_event(raw)?);
        }
        if self.buf.len() > self.max_event {
            return Err(SseError::TooLarge(self.max_event));
        }
        Ok(events)
    }

    /// Bytes left over when the stream ends (an unterminated event).
    pub fn remainder(&self) -> &[u8] {
        &self.buf
    }

    /// Offset just past the blank line that ends the first complete event.
    fn event_end(&mut self) -> Option<usize> {
        let buf = &self.buf[..];
        let mut i = self.scanned;
        let mut line_start = i;
        // Scanning always resumes at a line start.
        while i < buf.len() {
            let (is_end, len) = match buf[i] {
                b'\n' => (true, 1),
                // A CR at the end of the buffer may be the first half of CRLF: wait.
                b'\r' if i + 1 == buf.len() => break,
                b'\r' if buf[i + 1] == b'\n' => (true, 2),
                b'\r' => (true, 1),
                _ => (false, 1),
            };
            if is_end {
                if i == line_start {
                    return Some(i + len);
                }
                line_start = i + len;
                self.scanned = line_start;
            }
            i += len;
        }
        None
    }
}

fn parse_event(raw: Bytes) -> Result<SseEvent, SseError> {
    let text = std::str::from_utf8(&raw).map_err(|_| SseError::Utf8)?;
    let mut event = None;
    let mut data: Option<String> = None;
    let mut id = None;
    for line in text.split(['\n', '\r']) {
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => event = Some(value.to_owned()),
            "data" => match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => data = Some(value.to_owned()),
            },
            "id" => id = Some(value.to_owned()),
            _ => {} // `retry` and unknown fields pass through in `raw`.
        }
    }
    Ok(SseEvent {
        raw,
        event,
        data,
        id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = "event: message\r\nid: 1\r\ndata: {\"jsonrpc\":\"2.0\",\r\ndata: \"id\":1,\"result\":{}}\r\n\r\n: keep-alive\n\nevent: endpoint\ndata: /messages?session_id=abc\n\n";

    #[test]
    fn a_leading_byte_order_mark_does_not_hide_the_first_event() {
        let mut p = SseParser::new(1024);
        // Split inside the mark, as a network read may.
        assert!(p.push(b"\xEF\xBB").unwrap().is_empty());
        let events = p
            .push(b"\xBFdata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n")
            .unwrap();
        assert_eq!(events.len(), 1);
        assert!(events[0].data.as_deref().unwrap().contains("\"result\""));
        // Only at the start: later, the bytes are the event's.
        let mut p = SseParser::new(1024);
        p.push(b"data: a\n\n").unwrap();
        assert!(p.push(b"\xEF\xBB\xBFdata: b\n\n").is_ok());
    }

    #[test]
    fn events_survive_every_split() {
        // Feed the stream cut at every possible point, and byte by byte.
        for cut in 0..STREAM.len() {
            let mut p = SseParser::new(1 << 16);
            let mut events = p.push(&STREAM.as_bytes()[..cut]).unwrap();
            events.extend(p.push(&STREAM.as_bytes()[cut..]).unwrap());
            assert_eq!(events.len(), 3, "cut at {cut}");
            assert_eq!(
                events[0].data.as_deref(),
                Some("{\"jsonrpc\":\"2.0\",\n\"id\":1,\"result\":{}}")
            );
            assert_eq!(events[0].id.as_deref(), Some("1"));
            assert_eq!(events[1].data, None);
            assert_eq!(events[2].event.as_deref(), Some("endpoint"));
            let joined: Vec<u8> = events.iter().flat_map(|e| e.raw.to_vec()).collect();
            assert_eq!(joined, STREAM.as_bytes(), "raw bytes are kept exactly");
            assert!(p.remainder().is_empty());
        }
        let mut p = SseParser::new(1 << 16);
        let n: usize = STREAM.bytes().map(|b| p.push(&[b]).unwrap().len()).sum();
        assert_eq!(n, 3);
    }

    #[test]
    fn oversized_event_is_an_error() {
        let mut p = SseParser::new(16);
        assert_eq!(
            p.push(b"data: 0123456789abcdef0123"),
            Err(SseError::TooLarge(16))
        );
    }

    #[test]
    fn rewritten_event_keeps_type_and_id() {
        let mut p = SseParser::new(1024);
        let e = p
            .push(b"event: message\nid: 9\ndata: old\n\n")
            .unwrap()
            .remove(0);
        assert_eq!(
            &e.with_data("a\nb")[..],
            b"event: message\nid: 9\ndata: a\ndata: b\n\n"
        );
    }
}
