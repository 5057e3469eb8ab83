//! Property tests for the framing decoders (the bounded stand-in for a fuzz target:
//! cargo-fuzz needs a nightly toolchain CI does not have). Arbitrary bytes never make a
//! decoder panic or hand out a frame over its limit; encoded frames decode to themselves
//! however the stream is cut; a length prefix over the limit fails before anything is
//! reserved for it.

use bytes::{Bytes, BytesMut};
use connection_transport_tcp::codec::{Endian, LengthWidth, is_frame_too_large};
use connection_transport_tcp::{LengthDelimited, Lines};
use proptest::prelude::*;
use tokio_util::codec::{Decoder, Encoder};

fn codec(width: u8, little: bool, max: usize) -> LengthDelimited {
    let width = match width % 4 {
        0 => LengthWidth::U8,
        1 => LengthWidth::U16,
        2 => LengthWidth::U32,
        _ => LengthWidth::U64,
    };
    let endian = if little { Endian::Little } else { Endian::Big };
    LengthDelimited::new()
        .width(width)
        .endian(endian)
        .max_frame_len(max)
}

/// Feeds `wire` in the given chunk sizes; returns the frames, or the first error.
fn feed<D: Decoder>(mut d: D, wire: &[u8], chunks: &[usize]) -> Result<Vec<D::Item>, D::Error> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut rest = wire;
    let mut sizes = chunks.iter().cycle();
    while !rest.is_empty() {
        let n = (*sizes.next().unwrap_or(&1)).clamp(1, rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        while let Some(f) = d.decode(&mut buf)? {
            out.push(f);
        }
    }
    Ok(out)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_nor_exceed_the_limit(
        wire in proptest::collection::vec(any::<u8>(), 0..4096),
        chunks in proptest::collection::vec(1usize..64, 1..8),
        width in any::<u8>(),
        little in any::<bool>(),
        max in 0usize..2048,
    ) {
        match feed(codec(width, little, max), &wire, &chunks) {
            Ok(frames) => prop_assert!(frames.iter().all(|f| f.len() <= max)),
            Err(e) => prop_assert!(is_frame_too_large(&e).is_some(), "{e}"),
        }
        if let Ok(lines) = feed(Lines::new(max), &wire, &chunks) {
            prop_assert!(lines.iter().all(|l| l.len() <= max));
        }
    }

    #[test]
    fn encoded_frames_decode_to_themselves_however_the_stream_is_cut(
        frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..20),
        chunks in proptest::collection::vec(1usize..97, 1..8),
        width in 1u8..4,
        little in any::<bool>(),
    ) {
        let mut c = codec(width, little, 1 << 20);
        let mut wire = BytesMut::new();
        for f in &frames {
            c.encode(Bytes::copy_from_slice(f), &mut wire).unwrap();
        }
        let got = feed(c, &wire, &chunks).unwrap();
        let got: Vec<Vec<u8>> = got.iter().map(|b| b.to_vec()).collect();
        prop_assert_eq!(got, frames);
    }

    #[test]
    fn a_claim_over_the_limit_fails_before_reserving_it(
        claim in 1025u64..u64::MAX,
        little in any::<bool>(),
    ) {
        let mut c = codec(3, little, 1024);
        let head = if little { claim.to_le_bytes() } else { claim.to_be_bytes() };
        let mut buf = BytesMut::from(&head[..]);
        let err = c.decode(&mut buf).unwrap_err();
        prop_assert_eq!(is_frame_too_large(&err).and_then(|t| t.claimed), Some(claim));
        prop_assert!(buf.capacity() < 4096);
    }
}
