//! [`SseDecoder`]: the parser as a [`Stream`] adapter over any stream of byte chunks
//! (a `reqwest` body, a file, a test's chunks).

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;

use crate::event::SseItem;
use crate::parser::{SseParseError, SseParser};

/// What an [`SseDecoder`] yields on failure: the source stream's error, or the parser's.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError<E> {
    /// The source stream failed.
    #[error("the event stream's source failed: {0}")]
    Source(E),
    /// The parser refused the input (see [`SseParseError`]).
    #[error(transparent)]
    Parse(#[from] SseParseError),
}

pin_project_lite::pin_project! {
    /// Parses a stream of byte chunks into [`SseItem`]s.
    ///
    /// The stream ends when the source ends (an incomplete last event is discarded) or
    /// after the first error.
    ///
    /// ```
    /// use connection_transport_sse::{SseDecoder, SseItem};
    /// use futures::{StreamExt, stream};
    ///
    /// # futures::executor::block_on(async {
    /// let chunks = stream::iter([Ok::<_, std::io::Error>("data: he"), Ok("llo\n\n")]);
    /// let items: Vec<_> = SseDecoder::new(chunks).collect().await;
    /// assert_eq!(items[0].as_ref().unwrap().as_event().unwrap().data(), "hello");
    /// # });
    /// ```
    #[derive(Debug)]
    pub struct SseDecoder<S> {
        #[pin]
        source: S,
        parser: SseParser,
        ready: VecDeque<SseItem>,
        done: bool,
    }
}

impl<S> SseDecoder<S> {
    /// A decoder of `source` with a fresh [`SseParser`].
    pub fn new(source: S) -> Self {
        Self::with_parser(source, SseParser::new())
    }

    /// A decoder of `source` with a configured parser (a last event ID to start from, a
    /// size limit).
    pub fn with_parser(source: S, parser: SseParser) -> Self {
        Self {
            source,
            parser,
            ready: VecDeque::new(),
            done: false,
        }
    }

    /// The parser, for its [`last_event_id`](SseParser::last_event_id).
    pub fn parser(&self) -> &SseParser {
        &self.parser
    }
}

impl<S, B, E> Stream for SseDecoder<S>
where
    S: Stream<Item = Result<B, E>>,
    B: AsRef<[u8]>,
{
    type Item = Result<SseItem, DecodeError<E>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        loop {
            if let Some(item) = this.ready.pop_front() {
                return Poll::Ready(Some(Ok(item)));
            }
            if *this.done {
                return Poll::Ready(None);
            }
            match std::task::ready!(this.source.as_mut().poll_next(cx)) {
                Some(Ok(chunk)) => {
                    let ready = &mut *this.ready;
                    if let Err(e) = this.parser.feed(chunk.as_ref(), |i| ready.push_back(i)) {
                        *this.done = true;
                        this.ready.clear();
                        return Poll::Ready(Some(Err(e.into())));
                    }
                }
                Some(Err(e)) => {
                    *this.done = true;
                    return Poll::Ready(Some(Err(DecodeError::Source(e))));
                }
                None => {
                    *this.done = true;
                    this.parser.finish();
                }
            }
        }
    }
}
