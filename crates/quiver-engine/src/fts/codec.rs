//! The byte layout of one term's posting list: fixed-size blocks of document ids (delta
//! encoded) and term frequencies, each bit-packed at the narrowest width that holds the
//! block, behind a header per block that says where it ends, its last document and the
//! largest score any of its documents can reach (what block-max WAND skips by). Positions
//! follow as varint deltas, read only by phrase queries. See docs/FORMAT.md, "Full-text
//! index".

use crate::error::{Error, Result};

/// Postings per block.
pub const BLOCK: usize = 128;
/// Bytes of a block header.
pub const BLOCK_HEADER: usize = 20;

/// What a block header says: enough to skip the block, or bound its scores, undecoded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockHeader {
    /// The block's last (largest) document.
    pub last_doc: u32,
    /// Where the block's body ends, from the start of the bodies.
    pub end: u32,
    /// The largest term-frequency part of BM25 (`tf·(k1+1) / (tf + k1·norm)`) among its
    /// documents, at the segment's average document length.
    pub max_score: f32,
    /// Its largest term frequency and shortest document: a bound at any average length.
    pub max_tf: u32,
    pub min_len: u32,
}

/// Bits needed for `v`.
#[inline]
fn width_of(v: u32) -> u8 {
    (32 - v.leading_zeros()) as u8
}

/// Appends `values` packed at `width` bits each, least significant bits first.
fn pack(values: &[u32], width: u8, out: &mut Vec<u8>) {
    if width == 0 {
        return;
    }
    let mut acc: u64 = 0;
    let mut bits = 0u32;
    for &v in values {
        acc |= u64::from(v) << bits;
        bits += u32::from(width);
        while bits >= 8 {
            out.push(acc as u8);
            acc >>= 8;
            bits -= 8;
        }
    }
    if bits > 0 {
        out.push(acc as u8);
    }
}

/// Reads `out.len()` values of `width` bits from `bytes`; returns the bytes used.
fn unpack(bytes: &[u8], width: u8, out: &mut [u32]) -> Option<usize> {
    let used = (out.len() * usize::from(width)).div_ceil(8);
    if width > 32 || bytes.len() < used {
        return None;
    }
    if width == 0 {
        out.fill(0);
        return Some(0);
    }
    let mask = if width == 32 {
        u64::from(u32::MAX)
    } else {
        (1u64 << width) - 1
    };
    let mut acc: u64 = 0;
    let mut bits = 0u32;
    let mut next = 0usize;
    for v in out.iter_mut() {
        while bits < u32::from(width) {
            acc |= u64::from(bytes[next]) << bits;
            next += 1;
            bits += 8;
        }
        *v = (acc & mask) as u32;
        acc >>= width;
        bits -= u32::from(width);
    }
    Some(used)
}

/// Appends `v` as a LEB128 varint.
#[inline]
pub fn put_varint(mut v: u32, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a varint at `*at`, moving past it.
#[inline]
pub fn get_varint(bytes: &[u8], at: &mut usize) -> Option<u32> {
    let mut v: u32 = 0;
    for shift in (0..35).step_by(7) {
        let b = *bytes.get(*at)?;
        *at += 1;
        v |= u32::from(b & 0x7f).checked_shl(shift)?;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Appends `v` as a little-endian base-128 varint (1 to 10 bytes).
pub fn put_varint64(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a varint of up to 64 bits at `*at`, moving past it; `None` when truncated or longer
/// than 10 bytes.
#[inline]
pub fn get_varint64(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut v: u64 = 0;
    for shift in (0..70).step_by(7) {
        let b = *bytes.get(*at)?;
        *at += 1;
        v |= u64::from(b & 0x7f).checked_shl(shift)?;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Encodes a posting list: `docs` ascending, `freqs` ≥ 1, one bound per block (`bounds`:
/// max score, max tf, min length of each block's documents). Appends headers then bodies.
pub fn encode_postings(
    docs: &[u32],
    freqs: &[u32],
    mut bounds: impl FnMut(std::ops::Range<usize>) -> (f32, u32, u32),
    out: &mut Vec<u8>,
) {
    let blocks = docs.len().div_ceil(BLOCK);
    let header_at = out.len();
    out.resize(header_at + blocks * BLOCK_HEADER, 0);
    let body_at = out.len();
    let mut deltas = [0u32; BLOCK];
    let mut tfs = [0u32; BLOCK];
    let mut prev = 0u32;
    for b in 0..blocks {
        let range = b * BLOCK..((b + 1) * BLOCK).min(docs.len());
        let n = range.len();
        for (i, j) in range.clone().enumerate() {
            deltas[i] = docs[j] - prev;
            prev = docs[j];
            tfs[i] = freqs[j] - 1;
        }
        let dw = deltas[..n].iter().copied().map(width_of).max().unwrap_or(0);
        let tw = tfs[..n].iter().copied().map(width_of).max().unwrap_or(0);
        out.push(dw);
        out.push(tw);
        pack(&deltas[..n], dw, out);
        pack(&tfs[..n], tw, out);
        let (max_score, max_tf, min_len) = bounds(range.clone());
        let h = header_at + b * BLOCK_HEADER;
        out[h..h + 4].copy_from_slice(&docs[range.end - 1].to_le_bytes());
        let end = (out.len() - body_at) as u32;
        out[h + 4..h + 8].copy_from_slice(&end.to_le_bytes());
        out[h + 8..h + 12].copy_from_slice(&max_score.to_le_bytes());
        out[h + 12..h + 16].copy_from_slice(&max_tf.to_le_bytes());
        out[h + 16..h + 20].copy_from_slice(&min_len.to_le_bytes());
    }
}

/// A posting list as read: its block headers decoded, bodies decoded block by block.
#[derive(Debug, Clone)]
pub struct Postings {
    pub len: usize,
    pub headers: Vec<BlockHeader>,
    bodies: bytes::Bytes,
}

fn corrupt(what: &str) -> Error {
    Error::corrupt("full-text index", format!("a posting list {what}"))
}

impl Postings {
    /// Reads the headers of a list of `len` postings from `bytes` (headers then bodies).
    pub fn parse(bytes: bytes::Bytes, len: usize) -> Result<Self> {
        let blocks = len.div_ceil(BLOCK);
        let header_bytes = blocks
            .checked_mul(BLOCK_HEADER)
            .filter(|&h| h <= bytes.len())
            .ok_or_else(|| corrupt("is shorter than its headers"))?;
        let mut headers = Vec::with_capacity(blocks);
        let u32_at =
            |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let mut prev_end = 0;
        let mut prev_last = None;
        for b in 0..blocks {
            let h = b * BLOCK_HEADER;
            let header = BlockHeader {
                last_doc: u32_at(h),
                end: u32_at(h + 4),
                max_score: f32::from_bits(u32_at(h + 8)),
                max_tf: u32_at(h + 12),
                min_len: u32_at(h + 16),
            };
            if header.end < prev_end
                || header.end as usize > bytes.len() - header_bytes
                || prev_last.is_some_and(|p| header.last_doc <= p)
                || !header.max_score.is_finite()
            {
                return Err(corrupt("has inconsistent block headers"));
            }
            prev_end = header.end;
            prev_last = Some(header.last_doc);
            headers.push(header);
        }
        Ok(Postings {
            len,
            headers,
            bodies: bytes.slice(header_bytes..),
        })
    }

    /// Postings of block `b`.
    #[inline]
    pub fn block_len(&self, b: usize) -> usize {
        if b + 1 == self.headers.len() {
            self.len - b * BLOCK
        } else {
            BLOCK
        }
    }

    /// Decodes block `b` into `docs` and `freqs` (the first `block_len(b)` of each).
    pub fn decode_block(
        &self,
        b: usize,
        docs: &mut [u32; BLOCK],
        freqs: &mut [u32; BLOCK],
    ) -> Result<()> {
        let start = if b == 0 {
            0
        } else {
            self.headers[b - 1].end as usize
        };
        let end = self.headers[b].end as usize;
        let body = &self.bodies[start..end];
        let n = self.block_len(b);
        if body.len() < 2 {
            return Err(corrupt("has a truncated block"));
        }
        let (dw, tw) = (body[0], body[1]);
        let used = unpack(&body[2..], dw, &mut docs[..n])
            .ok_or_else(|| corrupt("has a truncated block"))?;
        unpack(&body[2 + used..], tw, &mut freqs[..n])
            .ok_or_else(|| corrupt("has a truncated block"))?;
        let mut prev = if b == 0 {
            0
        } else {
            self.headers[b - 1].last_doc
        };
        for (i, d) in docs[..n].iter_mut().enumerate() {
            let doc = prev.checked_add(*d).ok_or_else(|| corrupt("overflows"))?;
            if (i > 0 || b > 0) && doc <= prev {
                return Err(corrupt("is not ascending"));
            }
            *d = doc;
            prev = doc;
        }
        if docs[n - 1] != self.headers[b].last_doc {
            return Err(corrupt("disagrees with its block header"));
        }
        for f in &mut freqs[..n] {
            *f = f.checked_add(1).ok_or_else(|| corrupt("overflows"))?;
        }
        Ok(())
    }

    /// Every posting, decoded (merges and exhaustive queries).
    pub fn decode_all(&self) -> Result<(Vec<u32>, Vec<u32>)> {
        let mut docs = Vec::with_capacity(self.len);
        let mut freqs = Vec::with_capacity(self.len);
        let (mut d, mut f) = ([0u32; BLOCK], [0u32; BLOCK]);
        for b in 0..self.headers.len() {
            self.decode_block(b, &mut d, &mut f)?;
            let n = self.block_len(b);
            docs.extend_from_slice(&d[..n]);
            freqs.extend_from_slice(&f[..n]);
        }
        Ok((docs, freqs))
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.headers.len() * std::mem::size_of::<BlockHeader>() + self.bodies.len() + 64
    }
}

/// Appends the positions of one document (ascending) as varint deltas.
pub fn encode_positions(positions: &[u32], out: &mut Vec<u8>) {
    let mut prev = 0;
    for &p in positions {
        put_varint(p - prev, out);
        prev = p;
    }
}

/// Decodes the positions of a whole list: `freqs[i]` positions per document, into `out`
/// (concatenated; document `i`'s start where the previous ones' counts end).
pub fn decode_positions(bytes: &[u8], freqs: &[u32], out: &mut Vec<u32>) -> Result<()> {
    let mut at = 0;
    for &f in freqs {
        let mut prev = 0u32;
        for _ in 0..f {
            let d = get_varint(bytes, &mut at).ok_or_else(|| corrupt("has truncated positions"))?;
            prev = prev
                .checked_add(d)
                .ok_or_else(|| corrupt("has positions out of range"))?;
            out.push(prev);
        }
    }
    if at != bytes.len() {
        return Err(corrupt("has more positions than its frequencies say"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn postings_strategy() -> impl Strategy<Value = (Vec<u32>, Vec<u32>)> {
        proptest::collection::btree_set(0u32..2_000_000, 1..700).prop_flat_map(|docs| {
            let docs: Vec<u32> = docs.into_iter().collect();
            let n = docs.len();
            (
                Just(docs),
                proptest::collection::vec(
                    prop_oneof![1u32..4, 1u32..100_000, Just(u32::MAX - 1)],
                    n,
                ),
            )
        })
    }

    proptest! {
        #[test]
        fn postings_round_trip((docs, freqs) in postings_strategy()) {
            let mut bytes = Vec::new();
            encode_postings(&docs, &freqs, |r| (r.len() as f32, r.start as u32, r.end as u32), &mut bytes);
            let list = Postings::parse(bytes::Bytes::from(bytes), docs.len()).unwrap();
            let (d, f) = list.decode_all().unwrap();
            prop_assert_eq!(&d, &docs);
            prop_assert_eq!(&f, &freqs);
            for (b, h) in list.headers.iter().enumerate() {
                prop_assert_eq!(h.last_doc, docs[((b + 1) * BLOCK).min(docs.len()) - 1]);
                prop_assert_eq!(h.max_tf, (b * BLOCK) as u32);
            }
        }

        #[test]
        fn positions_round_trip(lists in proptest::collection::vec(proptest::collection::btree_set(0u32..u32::MAX, 1..20), 1..30)) {
            let mut bytes = Vec::new();
            let mut freqs = Vec::new();
            let mut all = Vec::new();
            for l in &lists {
                let l: Vec<u32> = l.iter().copied().collect();
                encode_positions(&l, &mut bytes);
                freqs.push(l.len() as u32);
                all.extend(l);
            }
            let mut out = Vec::new();
            decode_positions(&bytes, &freqs, &mut out).unwrap();
            prop_assert_eq!(out, all);
        }

        #[test]
        fn damaged_lists_error_and_never_panic(
            (docs, freqs) in postings_strategy(),
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
            cut in any::<usize>(),
        ) {
            let mut bytes = Vec::new();
            encode_postings(&docs, &freqs, |_| (1.0, 1, 1), &mut bytes);
            for (at, v) in flips {
                let i = at % bytes.len();
                bytes[i] ^= v;
            }
            bytes.truncate(cut % (bytes.len() + 1));
            if let Ok(list) = Postings::parse(bytes::Bytes::from(bytes), docs.len()) {
                let _ = list.decode_all();
            }
        }
    }
}
