//! The event-stream parser: the WHATWG HTML "event stream interpretation" processing
//! model, fed bytes as they arrive.
//!
//! ```text
//!   bytes ──► [strip one leading BOM] ──► split lines at CR, LF, CRLF ──► decode
//!             (also split across chunks)   (a CR ending a chunk eats    UTF-8 with
//!                                           an LF starting the next)    U+FFFD
//!   line ──► ""          dispatch: last event ID := ID buffer; no data ─► nothing
//!            ":text"     Comment(text)
//!            "name:val"  data ─► data buffer += val + LF   event ─► type buffer
//!            "name"      id   ─► ID buffer (unless it holds NUL)
//!                        retry ─► Retry(ms) when val is ASCII digits only
//! ```
//!
//! Linear time whatever the chunking: each byte is scanned for a line end once (with
//! `memchr`), copied at most once into the pending-line buffer (which grows by
//! doubling), and decoded once, when its line is complete. A line that arrives whole
//! inside one chunk is never copied at all.
//!
//! Decoding a line at a time is the same as decoding the whole stream: CR and LF are
//! ASCII, so they never sit inside a UTF-8 sequence, and an incomplete sequence cut off
//! by a line end is one U+FFFD either way (the "maximal subpart" rule both follow).

use std::sync::Arc;
use std::time::Duration;

use crate::event::{SseEvent, SseItem};

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Why the parser refused its input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SseParseError {
    /// A line, or the data of one event, grew past the parser's limit
    /// ([`SseParser::with_max_event_size`]): a server streaming one endless line would
    /// otherwise take all the memory there is.
    #[error("an event or line is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
}

/// An incremental event-stream parser.
///
/// Feed it the bytes of one response as they arrive ([`feed`](Self::feed)); it calls
/// back with each [`SseItem`] as soon as the line that completes it has arrived. It
/// never fails on what the specification accepts: invalid UTF-8 becomes U+FFFD, and
/// unknown fields and malformed `retry` values are ignored. The only error is the size
/// limit, when one is set.
///
/// ```
/// use connection_transport_sse::{SseItem, SseParser};
///
/// let mut parser = SseParser::new();
/// let mut items = Vec::new();
/// // A BOM, CRLF line ends, a comment, and a chunk boundary inside "data".
/// parser.feed(b"\xEF\xBB\xBF: hi\r\nid: 7\r\nda", |i| items.push(i))?;
/// parser.feed(b"ta: hello\r\n\r\n", |i| items.push(i))?;
/// assert_eq!(items[0], SseItem::Comment(" hi".into()));
/// let event = items[1].as_event().unwrap();
/// assert_eq!((event.event_type(), event.data(), event.id()), ("message", "hello", "7"));
/// assert_eq!(parser.last_event_id(), "7");
/// # Ok::<(), connection_transport_sse::SseParseError>(())
/// ```
#[derive(Debug)]
pub struct SseParser {
    /// The bytes of a line whose end has not arrived yet.
    line: Vec<u8>,
    /// The last chunk ended with CR: an LF opening the next one belongs to that CR.
    after_cr: bool,
    /// No line has completed yet: the first one may start with a BOM.
    at_start: bool,
    data: String,
    event_type: String,
    /// The "last event ID buffer": what `id` fields set.
    id_buffer: Arc<str>,
    /// The source's "last event ID string": the buffer as of the last dispatch, which
    /// is what a reconnect sends as `Last-Event-ID`.
    last_event_id: Arc<str>,
    limit: usize,
    /// Bytes scanned, copied and decoded so far: what the linear-time test bounds.
    #[cfg(test)]
    work: usize,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new()
    }
}

impl SseParser {
    /// A parser for a new stream, with no last event ID and no size limit.
    pub fn new() -> Self {
        let empty: Arc<str> = Arc::from("");
        Self {
            line: Vec::new(),
            after_cr: false,
            at_start: true,
            data: String::new(),
            event_type: String::new(),
            id_buffer: empty.clone(),
            last_event_id: empty,
            limit: usize::MAX,
            #[cfg(test)]
            work: 0,
        }
    }

    /// Starts with `id` as the last event ID (the ID a stream resumes from).
    #[must_use]
    pub fn with_last_event_id(mut self, id: impl Into<Arc<str>>) -> Self {
        let id = id.into();
        self.id_buffer = id.clone();
        self.last_event_id = id;
        self
    }

    /// Refuses a line, or the data of one event, longer than `bytes`
    /// ([`SseParseError::TooLarge`]).
    #[must_use]
    pub fn with_max_event_size(mut self, bytes: usize) -> Self {
        self.limit = bytes;
        self
    }

    /// The last event ID: the `id` in force at the last dispatch (the blank line that
    /// ends a block), whether or not that block had data. Empty when there is none.
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// The last event ID, shared.
    pub fn last_event_id_shared(&self) -> &Arc<str> {
        &self.last_event_id
    }

    /// Bytes held for what is not complete yet (the pending line and event data).
    pub fn buffered(&self) -> usize {
        self.line.len() + self.data.len() + self.event_type.len()
    }

    /// Parses `chunk`, calling `emit` with each item it completes, in stream order.
    ///
    /// After an error the parser is in an unspecified state: call
    /// [`restart`](Self::restart) before feeding it again.
    pub fn feed(
        &mut self,
        chunk: &[u8],
        mut emit: impl FnMut(SseItem),
    ) -> Result<(), SseParseError> {
        let mut rest = chunk;
        #[cfg(test)]
        {
            self.work += chunk.len();
        }
        if self.after_cr {
            let Some((&first, tail)) = rest.split_first() else {
                return Ok(());
            };
            self.after_cr = false;
            if first == b'\n' {
                rest = tail;
            }
        }
        while let Some(pos) = memchr::memchr2(b'\n', b'\r', rest) {
            let mut next = pos + 1;
            if rest[pos] == b'\r' {
                match rest.get(next) {
                    Some(b'\n') => next += 1,
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
            if self.line.is_empty() {
                self.check(pos)?;
                self.complete_line(&rest[..pos], &mut emit)?;
            } else {
                #[cfg(test)]
                {
                    self.work += pos;
                }
                self.line.extend_from_slice(&rest[..pos]);
                self.check(self.line.len())?;
                let line = std::mem::take(&mut self.line);
                let result = self.complete_line(&line, &mut emit);
                // Keep the allocation for the next long line.
                self.line = line;
                self.line.clear();
                result?;
            }
            rest = &rest[next..];
        }
        if !rest.is_empty() {
            #[cfg(test)]
            {
                self.work += rest.len();
            }
            self.line.extend_from_slice(rest);
            self.check(self.line.len())?;
        }
        Ok(())
    }

    /// The end of the stream: an incomplete event (and an unterminated last line) is
    /// discarded, as the processing model says. The last event ID stays.
    pub fn finish(&mut self) {
        self.restart();
    }

    /// Gets ready for a new response on the same source: the buffers are emptied and
    /// the next bytes may start with a BOM again. The last event ID stays, and it is
    /// also where the new stream's ID buffer starts, as browsers do: read literally,
    /// the processing model would start that buffer empty, and a reconnected stream
    /// whose first event carries no `id` would then make the client forget where it
    /// was.
    pub fn restart(&mut self) {
        self.line.clear();
        self.data.clear();
        self.event_type.clear();
        self.after_cr = false;
        self.at_start = true;
        self.id_buffer = self.last_event_id.clone();
    }

    fn check(&self, len: usize) -> Result<(), SseParseError> {
        if len > self.limit {
            Err(SseParseError::TooLarge { limit: self.limit })
        } else {
            Ok(())
        }
    }

    fn complete_line(
        &mut self,
        mut bytes: &[u8],
        emit: &mut impl FnMut(SseItem),
    ) -> Result<(), SseParseError> {
        if self.at_start {
            self.at_start = false;
            bytes = bytes.strip_prefix(BOM).unwrap_or(bytes);
        }
        #[cfg(test)]
        {
            self.work += bytes.len();
        }
        match std::str::from_utf8(bytes) {
            Ok(line) => self.process_line(line, emit),
            Err(_) => self.process_line(&String::from_utf8_lossy(bytes), emit),
        }
    }

    fn process_line(
        &mut self,
        line: &str,
        emit: &mut impl FnMut(SseItem),
    ) -> Result<(), SseParseError> {
        let bytes = line.as_bytes();
        let Some(&first) = bytes.first() else {
            self.dispatch(emit);
            return Ok(());
        };
        if first == b':' {
            emit(SseItem::Comment(line[1..].to_owned()));
            return Ok(());
        }
        let (name, value) = match memchr::memchr(b':', bytes) {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(' ').unwrap_or(value))
            }
            None => (line, ""),
        };
        match name {
            "data" => {
                self.data.reserve(value.len() + 1);
                self.data.push_str(value);
                self.data.push('\n');
                self.check(self.data.len())?;
            }
            "event" => {
                self.event_type.clear();
                self.event_type.push_str(value);
            }
            // An ID with NUL is ignored; an unchanged one keeps its allocation.
            "id" if !value.contains('\0') && *self.id_buffer != *value => {
                self.id_buffer = Arc::from(value);
            }
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                // Saturates: a value past u64 milliseconds (584 million years) is
                // "never", which the client clamps to its maximum delay anyway.
                let ms = value.bytes().fold(0u64, |acc, b| {
                    acc.saturating_mul(10).saturating_add(u64::from(b - b'0'))
                });
                emit(SseItem::Retry(Duration::from_millis(ms)));
            }
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self, emit: &mut impl FnMut(SseItem)) {
        self.last_event_id = self.id_buffer.clone();
        if self.data.is_empty() {
            self.event_type.clear();
            return;
        }
        if self.data.ends_with('\n') {
            self.data.pop();
        }
        let data = std::mem::take(&mut self.data);
        let mut event_type = std::mem::take(&mut self.event_type);
        if event_type == "message" {
            event_type.clear();
        }
        emit(SseItem::Event(SseEvent::from_parts(
            event_type,
            data,
            self.last_event_id.clone(),
        )));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_chunks(chunks: &[&[u8]]) -> (Vec<SseItem>, String) {
        let mut parser = SseParser::new();
        let mut items = Vec::new();
        for c in chunks {
            parser.feed(c, |i| items.push(i)).unwrap();
        }
        parser.finish();
        (items, parser.last_event_id().to_owned())
    }

    /// Parses `input` whole, then split at every byte boundary (two chunks), then one
    /// byte at a time, and checks that each gives `expected` and `last_id`.
    #[track_caller]
    fn check_every_split(input: &[u8], expected: &[SseItem], last_id: &str) {
        let (whole, id) = parse_chunks(&[input]);
        assert_eq!(
            whole,
            expected,
            "whole input {:?}",
            String::from_utf8_lossy(input)
        );
        assert_eq!(id, last_id, "last event ID, whole input");
        for at in 0..=input.len() {
            let (a, b) = input.split_at(at);
            let (items, id) = parse_chunks(&[a, b]);
            assert_eq!(items, expected, "split at {at}");
            assert_eq!(id, last_id, "last event ID, split at {at}");
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        let (items, id) = parse_chunks(&bytes);
        assert_eq!(items, expected, "byte by byte");
        assert_eq!(id, last_id, "last event ID, byte by byte");
    }

    fn ev(ty: &str, data: &str, id: &str) -> SseItem {
        SseItem::Event(SseEvent::new(ty, data, id))
    }

    #[test]
    fn invalid_utf8_is_replaced_never_an_error() {
        // A lone continuation byte, a truncated sequence before the line end, an
        // overlong encoding, and a valid multi-byte character split by the chunking.
        check_every_split(
            b"data: a\x80b\ndata: \xE2\x82\ndata: \xC0\xAF\ndata: \xE2\x82\xAC\n\n",
            &[ev(
                "",
                "a\u{FFFD}b\n\u{FFFD}\n\u{FFFD}\u{FFFD}\n\u{20AC}",
                "",
            )],
            "",
        );
    }

    #[test]
    fn exactly_one_leading_bom_is_stripped() {
        check_every_split(b"\xEF\xBB\xBFdata: x\n\n", &[ev("", "x", "")], "");
        // A second BOM is part of the first field's name, which is then unknown.
        check_every_split(
            b"\xEF\xBB\xBF\xEF\xBB\xBFdata: x\n\ndata: y\n\n",
            &[ev("", "y", "")],
            "",
        );
        // A BOM anywhere else is content.
        check_every_split(b"data: \xEF\xBB\xBFx\n\n", &[ev("", "\u{FEFF}x", "")], "");
        // Half a BOM is invalid UTF-8, replaced, so the field name is unknown.
        check_every_split(b"\xEF\xBBdata: x\n\ndata: y\n\n", &[ev("", "y", "")], "");
    }

    #[test]
    fn cr_lf_and_crlf_end_lines_also_across_chunks() {
        let expected = [ev("", "a\nb", ""), ev("", "c", "")];
        check_every_split(b"data: a\rdata: b\r\rdata: c\r\r", &expected, "");
        check_every_split(b"data: a\ndata: b\n\ndata: c\n\n", &expected, "");
        check_every_split(b"data: a\r\ndata: b\r\n\r\ndata: c\r\n\r\n", &expected, "");
        check_every_split(b"data: a\r\ndata: b\n\rdata: c\r\n\n", &expected, "");
        // CR LF is one line end, but LF CR is two.
        check_every_split(
            b"data: a\n\rdata: b\n\n",
            &[ev("", "a", ""), ev("", "b", "")],
            "",
        );
    }

    #[test]
    fn a_space_after_the_colon_is_optional_and_only_one_is_removed() {
        check_every_split(
            b"data:a\ndata: b\ndata:  c\ndata\ndata:\n\n",
            &[ev("", "a\nb\n c\n\n", "")],
            "",
        );
        check_every_split(b"event:x\ndata\n\n", &[ev("x", "", "")], "");
    }

    #[test]
    fn data_lines_join_with_line_feeds() {
        check_every_split(
            b"data: first\ndata: second\ndata: third\n\n",
            &[ev("", "first\nsecond\nthird", "")],
            "",
        );
        // Only one trailing LF is removed.
        check_every_split(b"data: x\ndata\n\n", &[ev("", "x\n", "")], "");
    }

    #[test]
    fn comments_are_items_of_their_own_and_change_no_event() {
        check_every_split(
            b":hello\ndata: a\n: in the middle\ndata: b\n:\n\n",
            &[
                SseItem::Comment("hello".into()),
                SseItem::Comment(" in the middle".into()),
                SseItem::Comment(String::new()),
                ev("", "a\nb", ""),
            ],
            "",
        );
    }

    #[test]
    fn event_sets_the_type_for_one_event() {
        check_every_split(
            b"event: add\nevent: update\ndata: 1\n\ndata: 2\n\nevent: message\ndata: 3\n\nevent\ndata: 4\n\n",
            &[ev("update", "1", ""), ev("", "2", ""), ev("", "3", ""), ev("", "4", "")],
            "",
        );
        // A type without data dispatches nothing and does not carry over.
        check_every_split(b"event: lost\n\ndata: x\n\n", &[ev("", "x", "")], "");
    }

    #[test]
    fn id_with_nul_is_ignored() {
        check_every_split(
            b"id: 1\ndata: a\n\nid: 2\x00x\ndata: b\n\n",
            &[ev("", "a", "1"), ev("", "b", "1")],
            "1",
        );
    }

    #[test]
    fn id_persists_across_events_and_an_empty_id_clears_it() {
        check_every_split(
            b"id: 1\ndata: a\n\ndata: b\n\nid\ndata: c\n\n",
            &[ev("", "a", "1"), ev("", "b", "1"), ev("", "c", "")],
            "",
        );
    }

    #[test]
    fn a_block_without_data_still_updates_the_last_event_id() {
        check_every_split(b"id: 5\n\n", &[], "5");
        check_every_split(
            b"data: a\n\nid: 9\nevent: x\n\ndata: b\n\n",
            &[ev("", "a", ""), ev("", "b", "9")],
            "9",
        );
        // But not before its blank line: an id in an unfinished block is not yet the
        // last event ID.
        check_every_split(b"id: 1\n\nid: 2\ndata: x\n", &[], "1");
    }

    #[test]
    fn retry_is_accepted_only_as_ascii_digits() {
        check_every_split(
            b"retry: 1500\nretry: +1\nretry: -1\nretry: 1.5\nretry: 1 \nretry:\nretry: \xD9\xA3\nretry:0\n\n",
            &[SseItem::Retry(Duration::from_millis(1500)), SseItem::Retry(Duration::ZERO)],
            "",
        );
        check_every_split(
            b"retry: 99999999999999999999999\n",
            &[SseItem::Retry(Duration::from_millis(u64::MAX))],
            "",
        );
    }

    #[test]
    fn an_incomplete_event_at_the_end_is_discarded() {
        check_every_split(b"data: a\n\ndata: b\n", &[ev("", "a", "")], "");
        check_every_split(b"data: a\n\ndata: b", &[ev("", "a", "")], "");
        // A final CR is a complete line end: this block is complete.
        check_every_split(b"data: a\r\r", &[ev("", "a", "")], "");
    }

    #[test]
    fn unknown_fields_and_names_are_ignored() {
        check_every_split(
            b"foo: bar\nData: no\ndata : no\n data: no\ndata: yes\n\n",
            &[ev("", "yes", "")],
            "",
        );
    }

    #[test]
    fn the_size_limit_refuses_long_lines_and_events() {
        let mut p = SseParser::new().with_max_event_size(8);
        assert_eq!(
            p.feed(b"data: 123456789", |_| {}),
            Err(SseParseError::TooLarge { limit: 8 })
        );
        let mut p = SseParser::new().with_max_event_size(8);
        let r = p.feed(b"data: 1234\ndata: 5678\n", |_| {});
        assert_eq!(r, Err(SseParseError::TooLarge { limit: 8 }));
        let mut p = SseParser::new().with_max_event_size(8);
        let mut n = 0;
        p.feed(b"data: 12\n\ndata: 34\n\n", |_| n += 1).unwrap();
        assert_eq!(n, 2);
    }

    #[test]
    fn restart_keeps_the_last_event_id_and_allows_a_new_bom() {
        let mut p = SseParser::new().with_last_event_id("start");
        let mut items = Vec::new();
        p.feed(b"data: a\n\nid: 3\ndata: partial", |i| items.push(i))
            .unwrap();
        p.restart();
        p.feed(b"\xEF\xBB\xBFdata: b\n\n", |i| items.push(i))
            .unwrap();
        assert_eq!(items, [ev("", "a", "start"), ev("", "b", "start")]);
        assert_eq!(p.last_event_id(), "start");
    }

    #[test]
    fn a_long_line_in_small_chunks_takes_linear_time() {
        // 8 MiB in 1 KiB chunks. Each byte is scanned once, copied into the pending
        // line once and decoded once; the quadratic parsers rescan the pending line at
        // every chunk (4,096 passes over up to 8 MiB). The work is counted, not timed,
        // so the test is deterministic; `cargo xtask bench sse` (sse_long_line) times it.
        let mut p = SseParser::new();
        let chunk = [b'x'; 1024];
        let mut n = 0;
        p.feed(b"data: ", |_| {}).unwrap();
        for _ in 0..8 * 1024 {
            p.feed(&chunk, |_| {}).unwrap();
        }
        p.feed(b"\n\n", |i| {
            n += 1;
            assert_eq!(i.as_event().unwrap().data().len(), 8 << 20);
        })
        .unwrap();
        assert_eq!(n, 1);
        let input = 6 + (8 << 20) + 2;
        assert!(
            p.work <= 3 * input + 64,
            "work {} for {input} bytes",
            p.work
        );
        // The same input in one chunk costs about the same: no per-chunk overhead
        // proportional to what is pending.
        let mut whole = SseParser::new();
        let mut all = b"data: ".to_vec();
        all.extend(std::iter::repeat_n(b'x', 8 << 20));
        all.extend_from_slice(b"\n\n");
        whole.feed(&all, |_| {}).unwrap();
        assert!(p.work <= 2 * whole.work, "{} vs {}", p.work, whole.work);
    }
}
