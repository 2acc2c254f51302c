//! Gathered reads: concurrent readers of one operation (a take's columns) hand their ranges
//! to one request per file instead of one each. On a cloud store a row fetch reads a few
//! bytes from each column; the small columns' pages lie close together at the end of the file
//! (the writer flushes them last), so gathered they coalesce into one request where apart
//! they cost one each: fewer requests for S3 to bill, and one less straggler to wait for.
//!
//! The members of a gather are fixed when it is made. A member that reads waits until every
//! other live member waits too (or has finished); the last one to arrive reads for all of
//! them. A member leaves when dropped, so a finished, failed or cancelled reader never holds
//! the others up.

use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use object_store::path::Path;
use tokio::sync::oneshot;

use super::Storage;
use crate::error::Result;

/// One gather's shared state.
struct State {
    /// Members not yet dropped.
    live: usize,
    /// Members waiting for their bytes.
    waiting: Vec<Waiter>,
}

/// A member's request, waiting.
struct Waiter {
    read: Read,
    reply: oneshot::Sender<Reply>,
}

/// Ranges of one object.
struct Read {
    storage: Storage,
    path: Path,
    size: u64,
    ranges: Vec<Range<u64>>,
    /// Extents to read whole with any of the ranges (see [`Storage::read_ranges_cached`]).
    extents: Vec<Range<u64>>,
}

enum Reply {
    /// The bytes of the waiter's ranges, in its order.
    Bytes(Vec<Bytes>),
    /// Every other member now waits: read for these waiters and yourself.
    Lead(Vec<Waiter>),
    /// The gathered read failed: read alone (and meet its error, if it is still there).
    Alone,
}

/// One reader's place in a gather; see the module doc.
pub struct GatherMember {
    state: Arc<Mutex<State>>,
}

/// `n` members of a new gather, one per concurrent reader.
pub fn gather(n: usize) -> Vec<GatherMember> {
    let state = Arc::new(Mutex::new(State {
        live: n,
        waiting: Vec::new(),
    }));
    (0..n)
        .map(|_| GatherMember {
            state: state.clone(),
        })
        .collect()
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // The state is consistent between statements, so a panic elsewhere leaves it usable.
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl GatherMember {
    /// [`Storage::read_ranges_cached`] of `ranges` of `path` (an immutable object of `size`
    /// bytes), gathered with the other members' reads.
    pub async fn read(
        &self,
        storage: &Storage,
        path: &Path,
        size: u64,
        ranges: &[Range<u64>],
        extents: &[Range<u64>],
    ) -> Result<Vec<Bytes>> {
        let read = Read {
            storage: storage.clone(),
            path: path.clone(),
            size,
            ranges: ranges.to_vec(),
            extents: extents.to_vec(),
        };
        // Either every other member waits (this one reads for all) or this one waits.
        let turn = {
            let mut state = lock(&self.state);
            state.waiting.retain(|w| !w.reply.is_closed());
            if state.waiting.len() + 1 >= state.live {
                Err((read, std::mem::take(&mut state.waiting)))
            } else {
                let (reply, answer) = oneshot::channel();
                state.waiting.push(Waiter { read, reply });
                Ok(answer)
            }
        };
        let answer = match turn {
            Err((read, others)) => return lead(read, others).await,
            Ok(answer) => answer,
        };
        match answer.await {
            Ok(Reply::Bytes(bytes)) => Ok(bytes),
            Ok(Reply::Lead(others)) => {
                let read = Read {
                    storage: storage.clone(),
                    path: path.clone(),
                    size,
                    ranges: ranges.to_vec(),
                    extents: extents.to_vec(),
                };
                lead(read, others).await
            }
            // The leader failed or was cancelled.
            Ok(Reply::Alone) | Err(_) => {
                storage
                    .read_ranges_cached(path, size, ranges, extents)
                    .await
            }
        }
    }
}

impl Drop for GatherMember {
    fn drop(&mut self) {
        let mut state = lock(&self.state);
        state.live = state.live.saturating_sub(1);
        state.waiting.retain(|w| !w.reply.is_closed());
        if state.waiting.is_empty() || state.waiting.len() < state.live {
            return;
        }
        // Everyone left waits: hand the read to one of them.
        let mut waiting = std::mem::take(&mut state.waiting);
        drop(state);
        while !waiting.is_empty() {
            let first = waiting.remove(0);
            match first.reply.send(Reply::Lead(waiting)) {
                Ok(()) => return,
                // Cancelled since: offer it to the next.
                Err(Reply::Lead(rest)) => waiting = rest,
                Err(_) => return,
            }
        }
    }
}

/// Reads `mine` and the waiters' ranges, one request set per object, and answers the waiters.
async fn lead(mine: Read, others: Vec<Waiter>) -> Result<Vec<Bytes>> {
    if others.is_empty() {
        return mine
            .storage
            .read_ranges_cached(&mine.path, mine.size, &mine.ranges, &mine.extents)
            .await;
    }
    // Objects in order of first appearance, each with the ranges and extents of every
    // request for it; `placed[i]` is where request i's ranges start (object, index), `mine`
    // first.
    let mut objects: Vec<Read> = Vec::new();
    let mut placed = Vec::with_capacity(others.len() + 1);
    for read in std::iter::once(&mine).chain(others.iter().map(|w| &w.read)) {
        let same = |o: &Read| o.path == read.path && o.storage.uri() == read.storage.uri();
        let at = match objects.iter().position(same) {
            Some(at) => at,
            None => {
                objects.push(Read {
                    storage: read.storage.clone(),
                    path: read.path.clone(),
                    size: read.size,
                    ranges: Vec::new(),
                    extents: Vec::new(),
                });
                objects.len() - 1
            }
        };
        let all = &mut objects[at];
        placed.push((at, all.ranges.len()));
        all.ranges.extend(read.ranges.iter().cloned());
        all.extents.extend(read.extents.iter().cloned());
    }
    let mut results = futures::future::join_all(objects.iter().map(|o| {
        o.storage
            .read_ranges_cached(&o.path, o.size, &o.ranges, &o.extents)
    }))
    .await;
    let part = |results: &[Result<Vec<Bytes>>], (at, from): (usize, usize), n: usize| {
        results[at]
            .as_ref()
            .ok()
            .and_then(|bytes| bytes.get(from..from + n))
            .map(<[Bytes]>::to_vec)
    };
    for (waiter, &place) in others.into_iter().zip(&placed[1..]) {
        let reply = match part(&results, place, waiter.read.ranges.len()) {
            Some(bytes) => Reply::Bytes(bytes),
            None => Reply::Alone,
        };
        // A waiter cancelled since needs no answer.
        let _ = waiter.reply.send(reply);
    }
    let (at, from) = placed[0];
    let n = mine.ranges.len();
    match std::mem::replace(&mut results[at], Ok(Vec::new())) {
        Ok(mut bytes) if bytes.len() >= from + n => Ok(bytes.drain(from..from + n).collect()),
        Ok(_) => Err(crate::error::Error::Internal(
            "a gathered read returned too few ranges".into(),
        )),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
#[allow(clippy::single_range_in_vec_init)] // one range per read reads plainest here
mod tests {
    use super::*;
    use crate::error::Error;

    /// A memory store treated as a cloud store (256 KiB coalesce gap), no block cache, with a
    /// 1 MiB object `a` and a 1 KiB object `b`.
    async fn store() -> (Storage, Path, Path, Vec<u8>) {
        let storage = Storage::from_uri("memory://")
            .expect("memory store")
            .checking_conditional_puts();
        let data: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
        let (a, b) = (storage.path("a"), storage.path("b"));
        storage
            .put(&a, Bytes::from(data.clone()))
            .await
            .expect("put a");
        storage
            .put(&b, Bytes::from(data[..1024].to_vec()))
            .await
            .expect("put b");
        (storage, a, b, data)
    }

    fn reads(storage: &Storage) -> u64 {
        storage.io_stats().read_ops
    }

    #[tokio::test]
    async fn concurrent_members_read_one_request_per_object() {
        let (storage, a, b, data) = store().await;
        let members = gather(4);
        let before = reads(&storage);
        let wanted = [0..10u64, 100_000..100_100, 200_000..200_008];
        let (x, y, z, w) = tokio::join!(
            members[0].read(&storage, &a, 1 << 20, &wanted[..1], &[]),
            members[1].read(&storage, &a, 1 << 20, &wanted[1..2], &[]),
            members[2].read(&storage, &b, 1024, &[5..9], &[]),
            members[3].read(&storage, &a, 1 << 20, &wanted[2..], &[]),
        );
        // One coalesced request for `a` (its ranges lie within the gap), one for `b`.
        assert_eq!(reads(&storage) - before, 2);
        for (got, range) in [x, y, w].into_iter().zip(wanted) {
            let got = got.expect("read");
            assert_eq!(&got[0][..], &data[range.start as usize..range.end as usize]);
        }
        assert_eq!(&z.expect("read b")[0][..], &data[5..9]);
    }

    /// A member that finishes (or never reads) leaves; the members still waiting then read
    /// without it, so nothing waits forever.
    #[tokio::test]
    async fn a_member_leaving_hands_the_read_to_those_waiting() {
        let (storage, a, _, data) = store().await;
        let mut members = gather(3);
        let idle = members.pop().expect("member");
        let before = reads(&storage);
        let ((x, y), ()) = tokio::join!(
            async {
                tokio::join!(
                    members[0].read(&storage, &a, 1 << 20, &[0..4], &[]),
                    members[1].read(&storage, &a, 1 << 20, &[8..12], &[]),
                )
            },
            async {
                tokio::task::yield_now().await;
                drop(idle);
            }
        );
        assert_eq!(&x.expect("x")[0][..], &data[0..4]);
        assert_eq!(&y.expect("y")[0][..], &data[8..12]);
        assert_eq!(reads(&storage) - before, 1);

        // Alone, a member reads at once.
        let alone = gather(1);
        let got = alone[0].read(&storage, &a, 1 << 20, &[3..5], &[]).await;
        assert_eq!(&got.expect("alone")[0][..], &data[3..5]);
    }

    /// A cancelled member (its future dropped while it waits) holds nobody up.
    #[tokio::test]
    async fn a_cancelled_member_holds_nobody_up() {
        let (storage, a, _, data) = store().await;
        let members = gather(3);
        {
            let waiting = members[0].read(&storage, &a, 1 << 20, &[0..4], &[]);
            let mut waiting = Box::pin(waiting);
            // Polled once: it now waits for the others.
            assert!(futures::poll!(waiting.as_mut()).is_pending());
        }
        let mut members = members.into_iter();
        drop(members.next());
        let (x, y) = (members.next().expect("x"), members.next().expect("y"));
        let (x, y) = tokio::join!(
            x.read(&storage, &a, 1 << 20, &[16..20], &[]),
            y.read(&storage, &a, 1 << 20, &[32..36], &[]),
        );
        assert_eq!(&x.expect("x")[0][..], &data[16..20]);
        assert_eq!(&y.expect("y")[0][..], &data[32..36]);
    }

    /// A failed object's readers meet their own error; the other objects' readers get their
    /// bytes.
    #[tokio::test]
    async fn a_failed_object_fails_only_its_readers() {
        let (storage, a, _, data) = store().await;
        let missing = storage.path("missing");
        let members = gather(3);
        let (x, y, z) = tokio::join!(
            members[0].read(&storage, &missing, 100, &[0..4], &[]),
            members[1].read(&storage, &a, 1 << 20, &[0..4], &[]),
            members[2].read(&storage, &missing, 100, &[8..12], &[]),
        );
        assert!(
            matches!(x, Err(Error::Storage(object_store::Error::NotFound { .. }))),
            "{x:?}"
        );
        assert_eq!(&y.expect("y")[0][..], &data[0..4]);
        assert!(
            matches!(z, Err(Error::Storage(object_store::Error::NotFound { .. }))),
            "{z:?}"
        );
    }
}
