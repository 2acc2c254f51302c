//! The connection's index cache: loaded indexes and their parts (IVF models, B-tree pages,
//! bitmaps), type-erased so every index kind shares one byte budget. Each entry is weighed by
//! the heap size its loader reports; concurrent misses of one key load it once (the others
//! wait for that load, or retry it when it fails).

use std::any::Any;
use std::future::Future;
use std::sync::Arc;

use quick_cache::sync::Cache;
use quick_cache::Weighter;

use crate::error::Result;

/// One cached value and its weight.
#[derive(Clone)]
struct Entry {
    value: Arc<dyn Any + Send + Sync>,
    bytes: usize,
}

#[derive(Clone)]
struct EntryWeighter;

impl Weighter<String, Entry> for EntryWeighter {
    fn weight(&self, key: &String, value: &Entry) -> u64 {
        (key.len() + value.bytes) as u64
    }
}

/// Statistics of a cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    pub entries: u64,
    pub bytes: u64,
    pub capacity_bytes: u64,
}

/// A byte-weighed cache of index parts keyed by string (callers prefix keys with the index
/// file's URI and, where row addresses were translated, the translation they went through).
pub struct IndexCache {
    cache: Cache<String, Entry, EntryWeighter>,
    capacity: u64,
}

impl std::fmt::Debug for IndexCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexCache")
            .field("stats", &self.stats())
            .finish()
    }
}

impl IndexCache {
    /// A cache holding at most `capacity_bytes` (0: nothing is kept).
    pub fn new(capacity_bytes: u64) -> Self {
        // One shard: a sharded cache splits its capacity between shards and never keeps an
        // entry heavier than one shard's share, and a graph partition of a million rows
        // (550 MB) outweighed 2 GiB / 8. Lookups are per query, not per row, so one lock
        // does not contend.
        let cache = crate::storage::weighted_cache(256, capacity_bytes, 1, EntryWeighter);
        IndexCache {
            cache,
            capacity: capacity_bytes,
        }
    }

    /// The value under `key` if cached as a `T`.
    pub fn get<T: Any + Send + Sync>(&self, key: &str) -> Option<Arc<T>> {
        self.cache
            .get(key)
            .and_then(|e| Arc::downcast::<T>(e.value).ok())
    }

    /// The value under `key`, loaded by `load` (which returns it and its heap size) when it is
    /// not cached; the flag says whether this call loaded it. Concurrent callers of one
    /// missing key wait for one load instead of each reading the same bytes.
    pub async fn get_or_load<T, F>(&self, key: &str, load: F) -> Result<(Arc<T>, bool)>
    where
        T: Any + Send + Sync,
        F: Future<Output = Result<(T, usize)>>,
    {
        if self.capacity == 0 {
            let (value, _) = load.await?;
            return Ok((Arc::new(value), true));
        }
        let guard = match self.cache.get_value_or_guard_async(key).await {
            Ok(entry) => {
                if let Ok(value) = Arc::downcast::<T>(entry.value) {
                    return Ok((value, false));
                }
                // Another type under the same key (a caller bug): load without caching.
                let (value, _) = load.await?;
                return Ok((Arc::new(value), true));
            }
            Err(guard) => guard,
        };
        let (value, bytes) = load.await?;
        let value = Arc::new(value);
        let _ = guard.insert(Entry {
            value: value.clone(),
            bytes,
        });
        Ok((value, true))
    }

    /// Stores `value` (of heap size `bytes`) under `key`.
    pub fn insert<T: Any + Send + Sync>(&self, key: String, value: Arc<T>, bytes: usize) {
        if self.capacity > 0 {
            self.cache.insert(key, Entry { value, bytes });
        }
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            entries: self.cache.len() as u64,
            bytes: self.cache.weight(),
            capacity_bytes: self.capacity,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_misses_of_one_key_load_once() {
        let cache = Arc::new(IndexCache::new(1 << 20));
        let loads = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (cache, loads) = (cache.clone(), loads.clone());
                tokio::spawn(async move {
                    let (v, _) = cache
                        .get_or_load("k", async {
                            loads.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                            Ok((vec![7u8; 100], 100))
                        })
                        .await
                        .unwrap();
                    v.len()
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), 100);
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        assert_eq!(cache.stats().entries, 1);
        assert!(cache.stats().bytes >= 100);
    }

    /// An entry of most of the capacity is kept (a sharded cache dropped any entry heavier
    /// than its capacity over the shard count, so huge index parts were read every query).
    #[tokio::test]
    async fn an_entry_of_most_of_the_capacity_stays_cached() {
        let cache = IndexCache::new(1000);
        let (_, loaded) = cache
            .get_or_load("big", async { Ok((1u8, 900)) })
            .await
            .unwrap();
        assert!(loaded);
        let (_, loaded) = cache
            .get_or_load("big", async { Ok((1u8, 900)) })
            .await
            .unwrap();
        assert!(!loaded, "kept: {:?}", cache.stats());
        assert!(cache.get::<u8>("big").is_some());
    }

    #[tokio::test]
    async fn a_failed_load_is_retried_and_types_are_checked() {
        let cache = IndexCache::new(1 << 20);
        let err = cache
            .get_or_load::<Vec<u8>, _>("k", async { Err(crate::error::Error::invalid("boom")) })
            .await;
        assert!(err.is_err());
        let (v, loaded) = cache
            .get_or_load("k", async { Ok((5u32, 4)) })
            .await
            .unwrap();
        assert!(loaded && *v == 5);
        assert!(cache.get::<u32>("k").is_some());
        assert!(cache.get::<u64>("k").is_none());
    }
}
