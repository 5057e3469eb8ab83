//! x
#![forbid(unsafe_code)]

mod decoder;
mod event;
mod parser;

pub use decoder::{DecodeError, SseDecoder};
pub use event::{SseEvent, SseItem};
pub use parser::{SseParseError, SseParser};
