//! Properties of the parser on generated streams:
//!
//! - chunking never changes the items or the last event ID;
//! - on the inputs eventsource-stream handles correctly, its events are ours
//!   (differential test);
//! - bounded fuzzing: on any bytes, split anyhow, no panic, and what comes out keeps
//!   the model's invariants.

use connection_transport_sse::{SseDecoder, SseEvent, SseItem, SseParser};
use futures::StreamExt;
use proptest::prelude::*;

/// One line of an event stream, drawn from the pieces that matter to the processing
/// model: the known field names and near misses, with and without a colon and a space,
/// values with colons, NUL, non-ASCII and digits, comments and blank lines.
fn line() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        4 => Just("data"),
        2 => Just("id"),
        2 => Just("event"),
        1 => Just("retry"),
        1 => Just("Data"),
        1 => Just("dat"),
        1 => Just("foo"),
        1 => Just(""),
    ];
    let sep = prop_oneof![Just(":"), Just(": "), Just(":  "), Just("")];
    let value = prop_oneof![
        "[a-z0-9 ]{0,12}",
        "[0-9]{1,6}",
        Just("+12".to_owned()),
        Just("a:b: c".to_owned()),
        Just("x\u{0}y".to_owned()),
        Just("é€😀".to_owned()),
        Just("\u{FEFF}".to_owned()),
        Just(String::new()),
    ];
    prop_oneof![
        6 => (name, sep, value).prop_map(|(n, s, v)| format!("{n}{s}{v}")),
        1 => "[a-z ]{0,8}".prop_map(|c| format!(":{c}")),
        3 => Just(String::new()),
    ]
}

fn eol() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("\n"), Just("\r"), Just("\r\n")]
}

/// A stream of lines with mixed line ends, maybe unterminated at the end.
fn stream_text() -> impl Strategy<Value = String> {
    (prop::collection::vec((line(), eol()), 0..24), line()).prop_map(|(lines, tail)| {
        let mut s: String = lines.into_iter().map(|(l, e)| l + e).collect();
        s.push_str(&tail);
        s
    })
}

/// Cut points into `len` bytes: sorted, possibly repeated (empty chunks).
fn cuts(len: usize, points: &[prop::sample::Index]) -> Vec<usize> {
    let mut at: Vec<usize> = points.iter().map(|i| i.index(len + 1)).collect();
    at.sort_unstable();
    at
}

fn chunked<'a>(input: &'a [u8], at: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut from = 0;
    for &to in at {
        out.push(&input[from..to]);
        from = to;
    }
    out.push(&input[from..]);
    out
}

fn parse(chunks: &[&[u8]]) -> (Vec<SseItem>, String) {
    let mut p = SseParser::new();
    let mut items = Vec::new();
    for c in chunks {
        p.feed(c, |i| items.push(i)).expect("no limit set");
    }
    p.finish();
    (items, p.last_event_id().to_owned())
}

/// eventsource-stream 0.2 on the same chunks, as (type, data, id) of each event.
fn peer(chunks: &[&[u8]]) -> Vec<(String, String, String)> {
    let source = futures::stream::iter(
        chunks
            .iter()
            .map(|c| Ok::<_, std::convert::Infallible>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    futures::executor::block_on(
        eventsource_stream::EventStream::new(source)
            .map(|r| {
                let e = r.expect("the peer accepts valid UTF-8 without a BOM");
                (e.event, e.data, e.id)
            })
            .collect(),
    )
}

fn triple(e: &SseEvent) -> (String, String, String) {
    (
        e.event_type().to_owned(),
        e.data().to_owned(),
        e.id().to_owned(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn chunking_never_changes_the_items(
        text in stream_text(),
        bom in any::<bool>(),
        points in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let mut input = if bom { b"\xEF\xBB\xBF".to_vec() } else { Vec::new() };
        input.extend_from_slice(text.as_bytes());
        let whole = parse(&[&input]);
        let at = cuts(input.len(), &points);
        prop_assert_eq!(&parse(&chunked(&input, &at)), &whole);
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        prop_assert_eq!(&parse(&bytes), &whole);
    }

    #[test]
    fn the_decoder_stream_gives_what_the_parser_gives(
        text in stream_text(),
        points in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let input = text.as_bytes();
        let at = cuts(input.len(), &points);
        let chunks = chunked(input, &at);
        let source = futures::stream::iter(chunks.iter().map(|c| Ok::<_, ()>(c.to_vec())).collect::<Vec<_>>());
        let items: Vec<SseItem> = futures::executor::block_on(
            SseDecoder::new(source).map(|r| r.expect("no error")).collect(),
        );
        prop_assert_eq!(items, parse(&chunks).0);
    }

    /// Differential test against eventsource-stream on the inputs it handles
    /// correctly: valid UTF-8, no leading BOM (it panics on one), and no CR as the
    /// very last byte (it waits for an LF that never comes, where a CR alone already
    /// ends the line). Its `last_event_id()` is not compared: it misses blocks with
    /// only an `id`, one of the reasons this parser exists.
    #[test]
    fn our_events_are_eventsource_streams(
        text in stream_text(),
        points in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
    ) {
        let text = text.trim_start_matches('\u{FEFF}').trim_end_matches('\r');
        let input = text.as_bytes();
        let at = cuts(input.len(), &points);
        let chunks = chunked(input, &at);
        let ours: Vec<_> = parse(&chunks).0.iter().filter_map(SseItem::as_event).map(triple).collect();
        prop_assert_eq!(ours, peer(&chunks), "input {:?}", text);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4_000, ..ProptestConfig::default() })]

    /// The bounded fuzz target: any bytes (mostly event-stream-like, with invalid
    /// UTF-8, BOMs and stray CRs mixed in), split anyhow, with and without a size
    /// limit. No panic; chunking changes nothing; every event keeps the model's
    /// invariants; the limit holds.
    #[test]
    fn fuzz_any_bytes(
        parts in prop::collection::vec(prop_oneof![
            3 => stream_text().prop_map(String::into_bytes),
            2 => prop::collection::vec(any::<u8>(), 0..64),
            1 => Just(b"\xEF\xBB\xBF".to_vec()),
            1 => Just(b"\r".to_vec()),
            1 => Just(b"\xE2\x82".to_vec()),
        ], 0..8),
        points in prop::collection::vec(any::<prop::sample::Index>(), 0..16),
        limit in prop_oneof![Just(usize::MAX), 1usize..256],
    ) {
        let input: Vec<u8> = parts.concat();
        let at = cuts(input.len(), &points);
        let chunks = chunked(&input, &at);
        let run = |chunks: &[&[u8]]| {
            let mut p = SseParser::new().with_max_event_size(limit);
            let mut items = Vec::new();
            let mut failed = false;
            for c in chunks {
                if p.feed(c, |i| items.push(i)).is_err() {
                    failed = true;
                    break;
                }
                // The pending line, the data and the type are each within the limit.
                assert!(limit == usize::MAX || p.buffered() <= 3 * limit, "{} > 3 * {limit}", p.buffered());
            }
            (items, failed)
        };
        let (items, failed) = run(&chunks);
        if limit == usize::MAX {
            prop_assert!(!failed);
            prop_assert_eq!(&items, &run(&[&input]).0);
        }
        for item in &items {
            match item {
                SseItem::Event(e) => {
                    prop_assert!(!e.data().contains('\r'));
                    prop_assert!(!e.event_type().contains(['\r', '\n']));
                    prop_assert!(!e.id().contains(['\r', '\n', '\0']));
                    prop_assert!(e.data().len() <= limit);
                }
                SseItem::Comment(c) => prop_assert!(!c.contains(['\r', '\n'])),
                _ => {}
            }
        }
    }
}
