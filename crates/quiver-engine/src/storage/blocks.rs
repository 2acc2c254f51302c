//! The block cache of cloud stores: aligned blocks of immutable data files, weighed in bytes.
//! A round trip to S3 costs milliseconds where a local read costs microseconds, so a warm
//! search (its index cached) would still pay one for the vectors it refines and one for the
//! rows it returns; with their blocks cached it pays none. Keys name the store's namespace
//! and the file; files are never rewritten, so blocks never go stale.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::ops::Range;

use bytes::{Bytes, BytesMut};
use quick_cache::sync::Cache;
use quick_cache::{Equivalent, Weighter};

/// Bytes in a block. A round trip costs the same for 3 KiB (a 768-d float32 vector) as for
/// 64, but a warm search's working set is its candidates' vectors, one or two blocks each:
/// small blocks keep five times more of them in the same budget than 64 KiB ones would.
pub const BLOCK: u64 = 16 * 1024;

/// Ranges at least this long (a scan's pages) are read past the cache: a scan would copy
/// everything it reads into blocks that random reads will not ask for again.
pub const UNCACHED_RANGE: u64 = 256 * 1024;

/// Default byte budget of the block cache.
pub const DEFAULT_DATA_CACHE_BYTES: u64 = 256 * 1024 * 1024;

#[derive(Clone)]
struct BlockWeighter;

impl Weighter<(String, u64), Bytes> for BlockWeighter {
    fn weight(&self, key: &(String, u64), value: &Bytes) -> u64 {
        (key.0.len() + 16 + value.len()) as u64
    }
}

/// A borrowed block key, so that a lookup allocates nothing. Hashes as the owned
/// `(String, u64)` does: a tuple hashes its fields in order, a `String` as its `str`.
struct BlockRef<'a>(&'a str, u64);

impl Hash for BlockRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
        self.1.hash(state);
    }
}

impl Equivalent<(String, u64)> for BlockRef<'_> {
    fn equivalent(&self, key: &(String, u64)) -> bool {
        self.1 == key.1 && self.0 == key.0
    }
}

/// Blocks of data files read from a cloud store.
pub struct BlockCache {
    cache: Cache<(String, u64), Bytes, BlockWeighter>,
    capacity: u64,
}

impl std::fmt::Debug for BlockCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockCache")
            .field("bytes", &self.cache.weight())
            .field("capacity", &self.capacity)
            .finish()
    }
}

/// A byte-weighted cache of `capacity` bytes in `shards` shards (the caches of blocks and of
/// indexes differ only in these).
pub(crate) fn weighted_cache<K, V, W>(
    items: usize,
    capacity: u64,
    shards: usize,
    weighter: W,
) -> Cache<K, V, W>
where
    K: Eq + std::hash::Hash,
    V: Clone,
    W: Weighter<K, V> + Clone,
{
    let options = quick_cache::OptionsBuilder::new()
        .estimated_items_capacity(items)
        .weight_capacity(capacity.max(1))
        .shards(shards)
        .build();
    match options {
        Ok(options) => {
            Cache::with_options(options, weighter, Default::default(), Default::default())
        }
        // Only a zero shard count is refused; neither caller passes one.
        Err(_) => Cache::with_weighter(items, capacity.max(1), weighter),
    }
}

impl BlockCache {
    /// A cache of at most `capacity` bytes (0 keeps nothing).
    pub fn new(capacity: u64) -> Self {
        // A sharded cache splits its budget between shards and evicts within one, so each
        // shard must hold many blocks: with a shard of two blocks, a third landing in it would
        // evict one just read, and shards of a few hundred overflow by chance well before the
        // cache is full. At least 4,096 blocks (64 MiB) a shard, at most 16 shards.
        let blocks = (capacity / BLOCK).max(1);
        let shards = (blocks / 4096).clamp(1, 16) as usize;
        let cache = weighted_cache(
            blocks.min(1 << 20) as usize,
            capacity,
            shards,
            BlockWeighter,
        );
        BlockCache { cache, capacity }
    }

    pub(crate) fn get(&self, file: &str, block: u64) -> Option<Bytes> {
        self.cache.get(&BlockRef(file, block))
    }

    pub(crate) fn insert(&self, file: &str, block: u64, bytes: Bytes) {
        if self.capacity > 0 {
            // A block owns its bytes: a slice of a larger coalesced read would keep all of it.
            self.cache
                .insert((file.to_string(), block), Bytes::copy_from_slice(&bytes));
        }
    }

    /// Bytes held.
    pub fn size_bytes(&self) -> u64 {
        self.cache.weight()
    }

    /// Blocks held.
    pub fn len(&self) -> u64 {
        self.cache.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.cache.len() == 0
    }
}

/// The blocks `ranges` touch, ascending, each once.
pub(crate) fn blocks_of(ranges: &[Range<u64>]) -> Vec<u64> {
    let mut blocks: Vec<u64> = ranges
        .iter()
        .filter(|r| r.start < r.end)
        .flat_map(|r| r.start / BLOCK..r.end.div_ceil(BLOCK))
        .collect();
    blocks.sort_unstable();
    blocks.dedup();
    blocks
}

/// The bytes of block `b` of an object of `size` bytes.
pub(crate) fn block_range(b: u64, size: u64) -> Range<u64> {
    b * BLOCK..((b + 1) * BLOCK).min(size)
}

/// The bytes of `range` from the blocks holding it: a slice when one block does, a copy when
/// it spans several. `None` when a block is missing.
pub(crate) fn assemble(range: &Range<u64>, blocks: &HashMap<u64, Bytes>) -> Option<Bytes> {
    if range.start >= range.end {
        return Some(Bytes::new());
    }
    let first = range.start / BLOCK;
    let last = (range.end - 1) / BLOCK;
    let slice = |b: u64, from: u64, to: u64| -> Option<&[u8]> {
        let block = blocks.get(&b)?;
        let base = b * BLOCK;
        block.get((from - base) as usize..(to - base) as usize)
    };
    if first == last {
        let block = blocks.get(&first)?;
        let base = first * BLOCK;
        let (from, to) = ((range.start - base) as usize, (range.end - base) as usize);
        return (to <= block.len()).then(|| block.slice(from..to));
    }
    let mut out = BytesMut::with_capacity((range.end - range.start) as usize);
    for b in first..=last {
        let from = range.start.max(b * BLOCK);
        let to = range.end.min((b + 1) * BLOCK);
        out.extend_from_slice(slice(b, from, to)?);
    }
    Some(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the ranges, assembling them from their blocks gives the object's bytes.
        #[test]
        fn ranges_assemble_from_their_blocks(
            size in 1u64..400_000,
            ranges in proptest::collection::vec((0u64..400_000, 0u64..150_000), 1..12),
        ) {
            let data: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
            let ranges: Vec<Range<u64>> = ranges
                .into_iter()
                .map(|(s, l)| s.min(size)..(s + l).min(size))
                .collect();
            let blocks: HashMap<u64, Bytes> = blocks_of(&ranges)
                .into_iter()
                .map(|b| {
                    let r = block_range(b, size);
                    (b, Bytes::copy_from_slice(&data[r.start as usize..r.end as usize]))
                })
                .collect();
            for r in &ranges {
                let got = assemble(r, &blocks).expect("every block is there");
                prop_assert_eq!(&got[..], &data[r.start as usize..r.end as usize]);
            }
        }
    }

    /// Blocks that fit the budget all stay, whichever shard they hash to: a small cache is one
    /// shard, not several too small for two blocks.
    #[test]
    fn blocks_within_the_budget_all_stay() {
        for capacity in [1u64 << 20, 64 << 20] {
            let cache = BlockCache::new(capacity);
            let fit = (capacity / (BLOCK + 64)) * 9 / 10;
            let block = Bytes::from(vec![7u8; BLOCK as usize]);
            for i in 0..fit {
                cache.insert(&format!("ns/t/data/{}.qvd#", i % 5), i, block.clone());
            }
            for i in 0..fit {
                let got = cache.get(&format!("ns/t/data/{}.qvd#", i % 5), i);
                assert_eq!(got.as_deref(), Some(&block[..]), "block {i} of {fit}");
            }
            assert!(cache.get("ns/t/data/9.qvd#", 0).is_none());
        }
    }
}
