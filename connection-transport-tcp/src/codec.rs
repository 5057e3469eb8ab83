//! Framing: how a byte stream is cut into frames, through tokio-util's
//! [`Decoder`]/[`Encoder`].
//!
//! A transport, a listener and a cache are generic over a [`Framing`]: a codec plus the
//! type of frame the application sends with it. Three come with the crate:
//!
//! | framing | frame sent | frame received | limit |
//! |---|---|---|---|
//! | [`LengthDelimited`] | [`Bytes`] | [`Bytes`] | `max_frame_len` (1 MiB by default) |
//! | [`Lines`] | [`String`] | [`String`] | `max_line_len` (64 KiB by default) |
//! | [`Raw`] | [`Bytes`] | [`Bytes`] (whatever one read returned) | the read buffer |
//!
//! Any codec of your own is a framing as it is (frames of type `F` sent, its `Item`
//! received):
//!
//! ```
//! use bytes::BytesMut;
//! use connection_transport_tcp::codec::Framing;
//! use tokio_util::codec::{Decoder, Encoder};
//!
//! #[derive(Clone, Default)]
//! struct OneByte;
//! impl Decoder for OneByte {
//!     type Item = u8;
//!     type Error = std::io::Error;
//!     fn decode(&mut self, src: &mut BytesMut) -> Result<Option<u8>, std::io::Error> {
//!         Ok((!src.is_empty()).then(|| src.split_to(1)[0]))
//!     }
//! }
//! impl Encoder<u8> for OneByte {
//!     type Error = std::io::Error;
//!     fn encode(&mut self, b: u8, dst: &mut BytesMut) -> Result<(), std::io::Error> {
//!         dst.extend_from_slice(&[b]);
//!         Ok(())
//!     }
//! }
//! fn framing<C: Framing<u8>>(_: C) {}
//! framing(OneByte);
//! ```
//!
//! A frame over its framing's limit is an error ([`FrameTooLarge`] inside the codec's
//! error), and the connection that sent it is closed. A length prefix is checked against
//! the limit before anything is reserved for it, and what is reserved while a large frame
//! arrives grows with what has arrived, never with what the prefix claims.

use std::fmt;
use std::io;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder, LinesCodec, LinesCodecError};

/// A codec that reads frames and writes frames of type `F`: what the transport, the
/// listener and the cache are generic over. Every [`Decoder`] + [`Encoder<F>`] whose
/// errors say what went wrong is one (a blanket implementation), your own codecs
/// included; nothing to implement.
///
/// Both error types must be `std::error::Error`, so a decode error can be reported and a
/// [`FrameTooLarge`] told apart (see [`is_frame_too_large`]).
pub trait Framing<F>:
    Decoder<Item: Send + 'static, Error: std::error::Error + Send + Sync + 'static>
    + Encoder<F, Error: std::error::Error + Send + Sync + 'static>
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<C, F> Framing<F> for C where
    C: Decoder<Item: Send + 'static, Error: std::error::Error + Send + Sync + 'static>
        + Encoder<F, Error: std::error::Error + Send + Sync + 'static>
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// A frame over the limit of its framing: the error a decoder or encoder reports inside
/// its own error type (for the framings of this crate, an [`io::Error`] of kind
/// `InvalidData` wrapping this).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameTooLarge {
    /// The framing's limit, in bytes.
    pub limit: usize,
    /// The size the frame has or claims, when known (a length prefix says it before the
    /// frame arrives; a line has no length until its end).
    pub claimed: Option<u64>,
}

impl fmt::Display for FrameTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.claimed {
            Some(n) => write!(
                f,
                "frame of {n} bytes is over the limit of {} bytes",
                self.limit
            ),
            None => write!(f, "frame is over the limit of {} bytes", self.limit),
        }
    }
}

impl std::error::Error for FrameTooLarge {}

impl From<FrameTooLarge> for io::Error {
    fn from(e: FrameTooLarge) -> Self {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

/// Whether `error` (a codec's error, or anything whose source chain holds one) is a frame
/// over its framing's limit, and which.
pub fn is_frame_too_large(error: &(dyn std::error::Error + 'static)) -> Option<FrameTooLarge> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cur {
        if let Some(t) = e.downcast_ref::<FrameTooLarge>() {
            return Some(*t);
        }
        if let Some(io) = e.downcast_ref::<io::Error>()
            && let Some(t) = io.get_ref().and_then(|i| i.downcast_ref::<FrameTooLarge>())
        {
            return Some(*t);
        }
        cur = e.source();
    }
    None
}

/// The width of a length prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum LengthWidth {
    /// One byte (frames up to 255 bytes).
    U8,
    /// Two bytes.
    U16,
    /// Four bytes (the default).
    U32,
    /// Eight bytes.
    U64,
}

impl LengthWidth {
    /// The prefix's size in bytes.
    pub const fn bytes(self) -> usize {
        match self {
            Self::U8 => 1,
            Self::U16 => 2,
            Self::U32 => 4,
            Self::U64 => 8,
        }
    }

    /// The largest length the prefix can carry.
    pub const fn max_len(self) -> u64 {
        match self {
            Self::U8 => u8::MAX as u64,
            Self::U16 => u16::MAX as u64,
            Self::U32 => u32::MAX as u64,
            Self::U64 => u64::MAX,
        }
    }
}

/// Byte order of a length prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Endian {
    /// Network byte order (the default).
    Big,
    /// Little endian.
    Little,
}

/// Frames preceded by their length: a 1, 2, 4 or 8-byte prefix in big or little endian
/// that counts the payload only. Frames are [`Bytes`] both ways.
///
/// The default is a 4-byte big-endian prefix and frames of at most 1 MiB
/// ([`DEFAULT_MAX_FRAME_LEN`](Self::DEFAULT_MAX_FRAME_LEN)).
///
/// Unlike tokio-util's `LengthDelimitedCodec`, which reserves the whole claimed length
/// as soon as a prefix under the limit arrives (so a peer that claims 8 MiB and sends
/// nothing more holds 8 MiB of this process), this codec reserves at most 64 KiB ahead of
/// what has arrived.
///
/// ```
/// use bytes::{Bytes, BytesMut};
/// use connection_transport_tcp::codec::{Endian, LengthDelimited, LengthWidth};
/// use tokio_util::codec::{Decoder, Encoder};
///
/// let mut codec = LengthDelimited::new()
///     .width(LengthWidth::U16)
///     .endian(Endian::Little)
///     .max_frame_len(1024);
/// let mut buf = BytesMut::new();
/// codec.encode(Bytes::from_static(b"hi"), &mut buf)?;
/// assert_eq!(&buf[..], b"\x02\x00hi");
/// assert_eq!(codec.decode(&mut buf)?, Some(Bytes::from_static(b"hi")));
///
/// // A prefix over the limit is refused before anything is read or reserved for it.
/// let mut evil = BytesMut::from(&b"\xff\xff"[..]);
/// assert!(codec.decode(&mut evil).is_err());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LengthDelimited {
    width: LengthWidth,
    endian: Endian,
    max_frame_len: usize,
    /// The payload length of the frame being read, once its prefix is consumed.
    pending: Option<usize>,
}

/// How far ahead of the bytes already received a large frame's buffer grows.
const RESERVE_AHEAD: usize = 64 << 10;

impl Default for LengthDelimited {
    fn default() -> Self {
        Self::new()
    }
}

impl LengthDelimited {
    /// The default frame limit: 1 MiB.
    pub const DEFAULT_MAX_FRAME_LEN: usize = 1 << 20;

    /// A 4-byte big-endian prefix, frames up to 1 MiB.
    pub const fn new() -> Self {
        Self {
            width: LengthWidth::U32,
            endian: Endian::Big,
            max_frame_len: Self::DEFAULT_MAX_FRAME_LEN,
            pending: None,
        }
    }

    /// The prefix width.
    pub const fn width(mut self, width: LengthWidth) -> Self {
        self.width = width;
        self
    }

    /// The prefix byte order.
    pub const fn endian(mut self, endian: Endian) -> Self {
        self.endian = endian;
        self
    }

    /// The largest payload accepted or sent, in bytes. A frame over it is an error both
    /// ways (a peer's frame closes the connection; a frame of yours is refused before a
    /// byte is written).
    pub const fn max_frame_len(mut self, max: usize) -> Self {
        self.max_frame_len = max;
        self
    }

    /// The largest payload accepted or sent.
    pub const fn frame_limit(&self) -> usize {
        self.max_frame_len
    }

    fn limit(&self) -> u64 {
        (self.max_frame_len as u64).min(self.width.max_len())
    }

    fn read_len(&self, src: &[u8]) -> u64 {
        let n = self.width.bytes();
        let mut raw = [0u8; 8];
        match self.endian {
            Endian::Big => {
                raw[8 - n..].copy_from_slice(&src[..n]);
                u64::from_be_bytes(raw)
            }
            Endian::Little => {
                raw[..n].copy_from_slice(&src[..n]);
                u64::from_le_bytes(raw)
            }
        }
    }
}

impl Decoder for LengthDelimited {
    type Item = Bytes;
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, io::Error> {
        let len = match self.pending {
            Some(len) => len,
            None => {
                let head = self.width.bytes();
                if src.len() < head {
                    return Ok(None);
                }
                let claimed = self.read_len(src);
                if claimed > self.limit() {
                    return Err(FrameTooLarge {
                        limit: self.max_frame_len,
                        claimed: Some(claimed),
                    }
                    .into());
                }
                src.advance(head);
                // Cannot truncate: claimed <= max_frame_len, a usize.
                let len = claimed as usize;
                self.pending = Some(len);
                len
            }
        };
        if src.len() < len {
            let ahead = (len - src.len()).min(RESERVE_AHEAD);
            src.reserve(ahead);
            return Ok(None);
        }
        self.pending = None;
        Ok(Some(src.split_to(len).freeze()))
    }
}

impl Encoder<Bytes> for LengthDelimited {
    type Error = io::Error;

    fn encode(&mut self, frame: Bytes, dst: &mut BytesMut) -> Result<(), io::Error> {
        if frame.len() as u64 > self.limit() {
            return Err(FrameTooLarge {
                limit: self.max_frame_len,
                claimed: Some(frame.len() as u64),
            }
            .into());
        }
        let n = self.width.bytes();
        let len = frame.len() as u64;
        dst.reserve(n + frame.len());
        match self.endian {
            Endian::Big => dst.put_slice(&len.to_be_bytes()[8 - n..]),
            Endian::Little => dst.put_slice(&len.to_le_bytes()[..n]),
        }
        dst.extend_from_slice(&frame);
        Ok(())
    }
}

/// Lines ending in `\n` (a `\r` before it is dropped), as [`String`]s, of at most
/// `max_line_len` bytes (64 KiB by default). tokio-util's [`LinesCodec`] with a limit;
/// a line without one could grow until memory runs out.
///
/// ```
/// use bytes::BytesMut;
/// use connection_transport_tcp::codec::Lines;
/// use tokio_util::codec::{Decoder, Encoder};
///
/// let mut codec = Lines::new(16);
/// let mut buf = BytesMut::from(&b"hello\r\nworld"[..]);
/// assert_eq!(codec.decode(&mut buf)?, Some("hello".to_string()));
/// assert_eq!(codec.decode(&mut buf)?, None, "no newline yet");
/// codec.encode("bye".to_string(), &mut buf)?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lines {
    inner: LinesCodec,
    max: usize,
}

impl Default for Lines {
    fn default() -> Self {
        Self::new(Self::DEFAULT_MAX_LINE_LEN)
    }
}

impl Lines {
    /// The default line limit: 64 KiB.
    pub const DEFAULT_MAX_LINE_LEN: usize = 64 << 10;

    /// Lines of at most `max_line_len` bytes, the newline not counted.
    pub fn new(max_line_len: usize) -> Self {
        Self {
            inner: LinesCodec::new_with_max_length(max_line_len),
            max: max_line_len,
        }
    }

    /// The line limit.
    pub fn max_line_len(&self) -> usize {
        self.max
    }
}

impl Lines {
    fn error(&self, e: LinesCodecError) -> io::Error {
        match e {
            LinesCodecError::MaxLineLengthExceeded => FrameTooLarge {
                limit: self.max,
                claimed: None,
            }
            .into(),
            LinesCodecError::Io(e) => e,
        }
    }
}

/// Errors are [`io::Error`]s: a line over the limit wraps [`FrameTooLarge`], a line that
/// is not UTF-8 is `InvalidData`.
impl Decoder for Lines {
    type Item = String;
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<String>, io::Error> {
        self.inner.decode(src).map_err(|e| self.error(e))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<String>, io::Error> {
        self.inner.decode_eof(src).map_err(|e| self.error(e))
    }
}

impl Encoder<String> for Lines {
    type Error = io::Error;

    fn encode(&mut self, line: String, dst: &mut BytesMut) -> Result<(), io::Error> {
        if line.len() > self.max {
            return Err(FrameTooLarge {
                limit: self.max,
                claimed: Some(line.len() as u64),
            }
            .into());
        }
        self.inner.encode(line, dst).map_err(|e| self.error(e))
    }
}

/// No framing: each read hands over the bytes it got, each send writes its bytes as
/// they are. For protocols that frame themselves, and for proxies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Raw;

impl Decoder for Raw {
    type Item = Bytes;
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, io::Error> {
        if src.is_empty() {
            Ok(None)
        } else {
            Ok(Some(src.split().freeze()))
        }
    }
}

impl Encoder<Bytes> for Raw {
    type Error = io::Error;

    fn encode(&mut self, data: Bytes, dst: &mut BytesMut) -> Result<(), io::Error> {
        dst.extend_from_slice(&data);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_width_and_endian_round_trips() {
        for width in [
            LengthWidth::U8,
            LengthWidth::U16,
            LengthWidth::U32,
            LengthWidth::U64,
        ] {
            for endian in [Endian::Big, Endian::Little] {
                let mut c = LengthDelimited::new().width(width).endian(endian);
                let mut buf = BytesMut::new();
                c.encode(Bytes::from_static(b"abc"), &mut buf).unwrap();
                assert_eq!(buf.len(), width.bytes() + 3);
                let first = if endian == Endian::Big {
                    width.bytes() - 1
                } else {
                    0
                };
                assert_eq!(buf[first], 3, "{width:?} {endian:?}");
                assert_eq!(c.decode(&mut buf).unwrap().unwrap(), &b"abc"[..]);
                assert!(buf.is_empty());
            }
        }
    }

    #[test]
    fn a_4_gib_claim_is_refused_without_reserving_it() {
        let mut c = LengthDelimited::new().width(LengthWidth::U64);
        let mut buf = BytesMut::from(&(4u64 << 30).to_be_bytes()[..]);
        let err = c.decode(&mut buf).unwrap_err();
        let too = is_frame_too_large(&err).unwrap();
        assert_eq!(too.claimed, Some(4 << 30));
        assert!(buf.capacity() < 1024);
    }

    #[test]
    fn a_large_frame_under_the_limit_reserves_only_ahead_of_arrival() {
        let mut c = LengthDelimited::new().max_frame_len(usize::MAX);
        let mut buf = BytesMut::from(&u32::MAX.to_be_bytes()[..]);
        assert_eq!(c.decode(&mut buf).unwrap(), None);
        assert!(buf.capacity() <= 2 * RESERVE_AHEAD, "{}", buf.capacity());
    }

    #[test]
    fn a_u8_prefix_caps_the_limit_and_the_encoder_refuses_oversized_frames() {
        let mut c = LengthDelimited::new().width(LengthWidth::U8);
        let mut buf = BytesMut::new();
        let err = c.encode(Bytes::from(vec![0; 256]), &mut buf).unwrap_err();
        assert!(is_frame_too_large(&err).is_some());
        assert!(buf.is_empty(), "nothing written");
    }

    #[test]
    fn frames_split_at_every_point_decode_the_same() {
        let mut wire = BytesMut::new();
        let mut c = LengthDelimited::new();
        for f in [&b"one"[..], b"", b"three"] {
            c.encode(Bytes::copy_from_slice(f), &mut wire).unwrap();
        }
        for cut in 0..wire.len() {
            let mut c = LengthDelimited::new();
            let mut buf = BytesMut::from(&wire[..cut]);
            let mut got = Vec::new();
            while let Some(f) = c.decode(&mut buf).unwrap() {
                got.push(f);
            }
            buf.extend_from_slice(&wire[cut..]);
            while let Some(f) = c.decode(&mut buf).unwrap() {
                got.push(f);
            }
            assert_eq!(got, vec![&b"one"[..], b"", b"three"], "cut at {cut}");
        }
    }

    #[test]
    fn an_overlong_line_is_a_frame_too_large() {
        let mut c = Lines::new(4);
        let mut buf = BytesMut::from(&b"toolong\n"[..]);
        let err = c.decode(&mut buf).unwrap_err();
        assert_eq!(is_frame_too_large(&err).unwrap().limit, 4);
        let err = c.encode("12345".into(), &mut BytesMut::new()).unwrap_err();
        assert_eq!(is_frame_too_large(&err).unwrap().claimed, Some(5));
    }
}
