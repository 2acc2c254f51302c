//! Simulated power loss: a store that keeps what a disk would, and cuts the power.
//!
//! [`PowerCutStore`] runs the engine over an in-memory "page cache" and records which objects
//! were flushed (through the engine's own `Flush` calls). At a random write the power goes:
//! every later call fails, and the disk that remains holds each flushed object as flushed,
//! and each object written or deleted since its last flush as it was before, as written, or
//! cut short (a file's tail not on disk) — every mix a real file system may leave. The table
//! is then opened again from that disk and checked:
//!
//! - with full durability: it opens; it holds exactly the rows of the last acknowledged
//!   commit, or of the commit in flight at the cut; every acknowledged tag still reads; no
//!   row appears twice;
//! - with process durability: it opens, at the state after some commit of the run.
//!
//! Every operation takes part: create, add, delete, update, mergeInsert, add/alter/drop
//! columns, createIndex, compaction, optimize, cleanup (also of unverified files) and tags.
//! `QUIVER_POWER_CUTS=N` sets the number of cuts of each durability (the stress campaign
//! runs 1,000), `QUIVER_POWER_SEED` the seed; the default is a short run.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{FixedSizeListArray, Float32Array, Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::{BoxStream, StreamExt};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult, UploadPart,
};
use quiver_engine::maintenance::{optimize, OptimizeOptions};
use quiver_engine::query::{search, VectorSearch};
use quiver_engine::storage::{Durability, Flush, Storage, StorageOptions};
use quiver_engine::table::indices::{
    create_index, CreateIndexOptions, IndexKind, VectorIndexParams,
};
use quiver_engine::table::{
    CleanupOptions, ColumnAlteration, CompactionOptions, MergeInsert, NewColumns, UpdateValue,
};
use quiver_engine::{
    batches_stream, ConnectOptions, CreateMode, Database, Error, ScanOptions, Table, WriteParams,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const DIM: i32 = 8;

/// What the disk holds of one object: its bytes, or nothing.
type Content = Option<Bytes>;

#[derive(Debug, Default)]
struct Disk {
    /// Flushed state of every object flushed at least once (or present at power-on).
    durable: BTreeMap<Path, Content>,
    /// Objects written or deleted since their last flush.
    dirty: BTreeSet<Path>,
    mutations: u64,
    /// The power goes at this mutation.
    cut_at: u64,
    dead: bool,
}

/// An object store with a power switch; see the module comment.
#[derive(Clone)]
struct PowerCutStore {
    cache: Arc<InMemory>,
    disk: Arc<Mutex<Disk>>,
}

fn power_off() -> object_store::Error {
    object_store::Error::Generic {
        store: "PowerCut",
        source: "the power is off".into(),
    }
}

impl PowerCutStore {
    /// A machine booted on `disk` (every object durable), whose power goes at the
    /// `cut_at`-th write or delete.
    async fn boot(disk: &BTreeMap<Path, Bytes>, cut_at: u64) -> Self {
        let cache = Arc::new(InMemory::new());
        for (path, bytes) in disk {
            cache
                .put(path, PutPayload::from_bytes(bytes.clone()))
                .await
                .expect("boot");
        }
        PowerCutStore {
            cache,
            disk: Arc::new(Mutex::new(Disk {
                durable: disk
                    .iter()
                    .map(|(p, b)| (p.clone(), Some(b.clone())))
                    .collect(),
                cut_at,
                ..Default::default()
            })),
        }
    }

    fn alive(&self) -> object_store::Result<()> {
        if self.disk.lock().expect("disk").dead {
            Err(power_off())
        } else {
            Ok(())
        }
    }

    /// Counts a write, delete or flush; the power may go instead (before it takes effect).
    fn tick(disk: &mut Disk) -> object_store::Result<()> {
        if disk.dead {
            return Err(power_off());
        }
        disk.mutations += 1;
        if disk.mutations >= disk.cut_at {
            disk.dead = true;
            return Err(power_off());
        }
        Ok(())
    }

    /// Counts a write or delete of `path`; the power may go instead.
    fn mutate(&self, path: &Path) -> object_store::Result<()> {
        let mut disk = self.disk.lock().expect("disk");
        Self::tick(&mut disk)?;
        disk.dirty.insert(path.clone());
        Ok(())
    }

    fn is_dead(&self) -> bool {
        self.disk.lock().expect("disk").dead
    }

    async fn current(&self, path: &Path) -> Content {
        match self.cache.get(path).await {
            Ok(r) => Some(r.bytes().await.expect("cache read")),
            Err(_) => None,
        }
    }

    /// Cuts the power (if it is still on) and returns what the disk holds.
    async fn cut(&self, rng: &mut StdRng) -> BTreeMap<Path, Bytes> {
        let (durable, dirty) = {
            let mut disk = self.disk.lock().expect("disk");
            disk.dead = true;
            (disk.durable.clone(), disk.dirty.clone())
        };
        let mut out: BTreeMap<Path, Bytes> = durable
            .iter()
            .filter(|(p, _)| !dirty.contains(*p))
            .filter_map(|(p, c)| c.clone().map(|b| (p.clone(), b)))
            .collect();
        for path in dirty {
            let before = durable.get(&path).cloned().flatten();
            let after = self.current(&path).await;
            let kept = match rng.random_range(0..3) {
                0 => before,
                1 => after,
                _ => match after {
                    Some(b) if !b.is_empty() => Some(b.slice(0..rng.random_range(0..b.len()))),
                    _ => before,
                },
            };
            if let Some(b) = kept {
                out.insert(path, b);
            }
        }
        out
    }
}

impl Flush for PowerCutStore {
    fn flush<'a>(&'a self, paths: &'a [Path]) -> BoxFuture<'a, quiver_engine::Result<()>> {
        Box::pin(async move {
            Self::tick(&mut self.disk.lock().expect("disk"))?;
            for path in paths {
                let now = self.current(path).await;
                let mut disk = self.disk.lock().expect("disk");
                if disk.dead {
                    return Err(power_off().into());
                }
                disk.durable.insert(path.clone(), now);
                disk.dirty.remove(path);
            }
            Ok(())
        })
    }

    fn flush_all(&self) -> BoxFuture<'_, quiver_engine::Result<()>> {
        Box::pin(async move {
            let dirty: Vec<Path> = self
                .disk
                .lock()
                .expect("disk")
                .dirty
                .iter()
                .cloned()
                .collect();
            self.flush(&dirty).await
        })
    }
}

impl fmt::Debug for PowerCutStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PowerCutStore")
    }
}

impl fmt::Display for PowerCutStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PowerCutStore")
    }
}

/// A multipart upload whose completion is one write.
#[derive(Debug)]
struct Upload {
    store: PowerCutStore,
    path: Path,
    inner: Box<dyn MultipartUpload>,
}

#[async_trait]
impl MultipartUpload for Upload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        if self.store.is_dead() {
            return Box::pin(async { Err(power_off()) });
        }
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        self.store.mutate(&self.path)?;
        self.inner.complete().await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.inner.abort().await
    }
}

#[async_trait]
impl ObjectStore for PowerCutStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.mutate(location)?;
        self.cache.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.alive()?;
        Ok(Box::new(Upload {
            store: self.clone(),
            path: location.clone(),
            inner: self.cache.put_multipart_opts(location, opts).await?,
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.alive()?;
        self.cache.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[std::ops::Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.alive()?;
        self.cache.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let store = self.clone();
        locations
            .then(move |location| {
                let store = store.clone();
                async move {
                    let location = location?;
                    store.mutate(&location)?;
                    store.cache.delete(&location).await?;
                    Ok(location)
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        if self.is_dead() {
            return futures::stream::once(async { Err(power_off()) }).boxed();
        }
        self.cache.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.alive()?;
        self.cache.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.mutate(to)?;
        self.cache.copy_opts(from, to, options).await
    }
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("v", DataType::Int64, false),
        Field::new(
            "vector",
            DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, true)), DIM),
            false,
        ),
    ]))
}

fn rows(pairs: &[(i64, i64)]) -> RecordBatch {
    rows_for(&schema(), pairs)
}

/// Rows of `table_schema`: columns added by the writer hold `v * 2`.
fn rows_for(table_schema: &SchemaRef, pairs: &[(i64, i64)]) -> RecordBatch {
    let values = Float32Array::from_iter_values(
        pairs
            .iter()
            .flat_map(|&(id, _)| (0..DIM).map(move |j| ((id * 7 + j as i64) % 101) as f32)),
    );
    let vectors = FixedSizeListArray::try_new(
        Arc::new(Field::new("item", DataType::Float32, true)),
        DIM,
        Arc::new(values),
        None,
    )
    .expect("vectors");
    let mut columns: Vec<arrow_array::ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(pairs.iter().map(|p| p.0))),
        Arc::new(Int64Array::from_iter_values(pairs.iter().map(|p| p.1))),
        Arc::new(vectors),
    ];
    for _ in 3..table_schema.fields().len() {
        columns.push(Arc::new(Int64Array::from_iter_values(
            pairs.iter().map(|p| p.1 * 2),
        )));
    }
    RecordBatch::try_new(table_schema.clone(), columns).expect("rows")
}

/// id → v: the rows of one version.
type State = BTreeMap<i64, i64>;

async fn contents(t: &Table) -> quiver_engine::Result<State> {
    let batches = t
        .scan_all(ScanOptions {
            columns: Some(vec!["id".into(), "v".into()]),
            ..Default::default()
        })
        .await?;
    let mut state = State::new();
    for b in &batches {
        let ids = b.column(0).as_primitive::<Int64Type>();
        let vs = b.column(1).as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            let id = ids.value(i);
            assert!(
                state.insert(id, vs.value(i)).is_none(),
                "row {id} appears twice"
            );
        }
    }
    Ok(state)
}

fn id_list(ids: &[i64]) -> String {
    ids.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// One step of the random writer, with the state it leads to.
struct Step {
    name: String,
    after: State,
}

struct Writer {
    rng: StdRng,
    next_id: i64,
    column_serial: u32,
    tag_serial: u32,
}

impl Writer {
    /// Up to `at_most` distinct ids of `state` (which is not empty).
    fn pick(&mut self, state: &State, at_most: usize) -> Vec<i64> {
        let ids: Vec<i64> = state.keys().copied().collect();
        let n = self.rng.random_range(1..=at_most.min(ids.len()));
        let mut out: Vec<i64> = (0..n)
            .map(|_| ids[self.rng.random_range(0..ids.len())])
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Runs one random operation on `t`; `Ok(None)` for operations that leave the rows as
    /// they are. `tags` collects tags created (name → the rows they hold).
    async fn step(
        &mut self,
        t: &Table,
        state: &State,
        tags: &mut BTreeMap<String, State>,
        allow_tags: bool,
    ) -> (String, State, quiver_engine::Result<()>) {
        let extras: Vec<String> = t
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|n| !["id", "v", "vector"].contains(&n.as_str()))
            .collect();
        let mut after = state.clone();
        let pick = self.rng.random_range(0..100);
        let (name, result): (String, quiver_engine::Result<()>) = match pick {
            0..=24 => {
                let n = self.rng.random_range(1..=20);
                let fresh: Vec<(i64, i64)> = (0..n).map(|i| (self.next_id + i, 0)).collect();
                self.next_id += n;
                after.extend(fresh.iter().copied());
                let r = t
                    .append(
                        batches_stream(vec![rows_for(&t.schema(), &fresh)]),
                        WriteParams::default(),
                    )
                    .await
                    .map(|_| ());
                (format!("add {n}"), r)
            }
            25..=34 if !state.is_empty() => {
                let ids = self.pick(state, 8);
                for id in &ids {
                    after.remove(id);
                }
                let r = t
                    .delete(&format!("id IN ({})", id_list(&ids)))
                    .await
                    .map(|_| ());
                (format!("delete {}", ids.len()), r)
            }
            35..=44 if !state.is_empty() => {
                let ids = self.pick(state, 8);
                for id in &ids {
                    *after.get_mut(id).expect("picked") += 1;
                }
                let r = t
                    .update(
                        Some(&format!("id IN ({})", id_list(&ids))),
                        vec![("v".into(), UpdateValue::Sql("v + 1".into()))],
                    )
                    .await
                    .map(|_| ());
                (format!("update {}", ids.len()), r)
            }
            45..=54 => {
                let matched = if state.is_empty() {
                    Vec::new()
                } else {
                    self.pick(state, 6)
                };
                let fresh: Vec<i64> = (0..self.rng.random_range(0..4))
                    .map(|i| self.next_id + i)
                    .collect();
                self.next_id += fresh.len() as i64;
                let mut source = Vec::new();
                for id in &matched {
                    source.push((*id, state[id] + 1));
                }
                source.extend(fresh.iter().map(|&id| (id, 0)));
                after.extend(source.iter().copied());
                let spec = MergeInsert {
                    on: vec!["id".into()],
                    when_matched_update_all: Some(None),
                    when_not_matched_insert_all: true,
                    ..Default::default()
                };
                let r = if source.is_empty() {
                    Ok(())
                } else {
                    let table_schema = t.schema();
                    t.merge_insert(&spec, &table_schema, vec![rows_for(&table_schema, &source)])
                        .await
                        .map(|_| ())
                };
                (format!("mergeInsert {}", source.len()), r)
            }
            55..=59 => {
                self.column_serial += 1;
                let col = format!("x{}", self.column_serial);
                let r = t
                    .add_columns(NewColumns::Sql(vec![(col.clone(), "v * 2".into())]))
                    .await
                    .map(|_| ());
                (format!("addColumns {col}"), r)
            }
            60..=62 if !extras.is_empty() => {
                self.column_serial += 1;
                let from = extras[0].clone();
                let r = t
                    .alter_columns(&[ColumnAlteration {
                        path: from.clone(),
                        rename: Some(format!("r{}", self.column_serial)),
                        ..Default::default()
                    }])
                    .await
                    .map(|_| ());
                (format!("alterColumns {from}"), r)
            }
            63..=65 if !extras.is_empty() => {
                let r = t.drop_columns(&[extras[0].clone()]).await.map(|_| ());
                (format!("dropColumns {}", extras[0]), r)
            }
            66..=71 if state.len() >= 8 => {
                let r = create_index(
                    t,
                    "vector",
                    CreateIndexOptions {
                        config: Some(
                            VectorIndexParams {
                                kind: IndexKind::IvfFlat,
                                num_partitions: Some(2),
                                ..Default::default()
                            }
                            .into(),
                        ),
                        replace: true,
                        ..Default::default()
                    },
                )
                .await
                .map(|_| ());
                ("createIndex".into(), r)
            }
            72..=79 => {
                let r = t
                    .compact_files(CompactionOptions {
                        materialize_deletions_threshold: 0.0,
                        ..Default::default()
                    })
                    .await
                    .map(|_| ());
                ("compactFiles".into(), r)
            }
            80..=86 => {
                let r = optimize(
                    t,
                    OptimizeOptions {
                        cleanup: CleanupOptions {
                            before: Some(SystemTime::now()),
                            ..Default::default()
                        },
                        ..Default::default()
                    },
                )
                .await
                .map(|_| ());
                ("optimize".into(), r)
            }
            87..=92 => {
                let delete_unverified = self.rng.random_bool(0.5);
                let r = t
                    .cleanup_old_versions(CleanupOptions {
                        before: Some(SystemTime::now()),
                        delete_unverified,
                        ..Default::default()
                    })
                    .await
                    .map(|_| ());
                (format!("cleanup (unverified: {delete_unverified})"), r)
            }
            93..=99 if allow_tags => {
                self.tag_serial += 1;
                let name = format!("t{}", self.tag_serial);
                let r = t.create_tag(&name, t.version()).await;
                if r.is_ok() {
                    tags.insert(name.clone(), state.clone());
                }
                (format!("tag {name}"), r)
            }
            _ => ("nothing".into(), Ok(())),
        };
        (name, after, result)
    }
}

async fn connect(store: &PowerCutStore, durability: Durability) -> Database {
    let storage = Storage::from_store(
        Arc::new(store.clone()),
        Path::default(),
        StorageOptions {
            durability,
            ..Default::default()
        },
        "memory://power-cut",
    )
    .with_flusher(Arc::new(store.clone()));
    Database::from_storage(storage, ConnectOptions::default())
}

/// Figures of one campaign.
#[derive(Debug, Default)]
struct Figures {
    cuts: u64,
    acknowledged: u64,
    landed_in_flight: u64,
    older_version_after_cut: u64,
    skipped_versions: u64,
}

/// Runs `cuts` power cuts with `durability`; panics on the first broken promise.
async fn campaign(seed: u64, cuts: u64, durability: Durability) -> Figures {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut writer = Writer {
        rng: StdRng::seed_from_u64(seed ^ 0x5eed),
        next_id: 0,
        column_serial: 0,
        tag_serial: 0,
    };
    let mut figures = Figures::default();
    // The table is created on a disk that keeps everything, so every run starts from one.
    let mut disk = {
        let store = PowerCutStore::boot(&BTreeMap::new(), u64::MAX).await;
        let db = connect(&store, Durability::Full).await;
        let start: Vec<(i64, i64)> = (0..10).map(|i| (i, 0)).collect();
        writer.next_id = 10;
        db.create_table(
            "t",
            schema(),
            batches_stream(vec![rows(&start)]),
            CreateMode::Create,
            WriteParams::default(),
        )
        .await
        .expect("create");
        store.flush_all().await.expect("flush");
        store.cut(&mut rng).await
    };
    let mut state: State = (0..10).map(|i| (i, 0)).collect();
    let mut acked_version = 1u64;
    let mut tags: BTreeMap<String, State> = BTreeMap::new();
    // States the table may hold after the next cut.
    let mut allowed: Vec<State> = vec![state.clone()];
    let mut in_flight: Option<Step> = None;
    let mut fresh_tags: HashSet<String> = HashSet::new();
    for cut in 0..cuts {
        // Power on: the table must open, with what was promised.
        let store = PowerCutStore::boot(&disk, u64::MAX).await;
        let db = connect(&store, durability).await;
        let t = db
            .open_table("t")
            .await
            .unwrap_or_else(|e| panic!("cut {cut}: the table does not open: {e}"));
        figures.skipped_versions += t.skipped_versions().len() as u64;
        let found = contents(&t)
            .await
            .unwrap_or_else(|e| panic!("cut {cut}: the table opened but cannot be read: {e}"));
        match durability {
            Durability::Full => {
                let landed = in_flight
                    .as_ref()
                    .is_some_and(|s| s.after == found && s.after != state);
                if landed {
                    figures.landed_in_flight += 1;
                } else {
                    assert_eq!(
                        found,
                        state,
                        "cut {cut}: acknowledged rows lost or changed (in flight: {:?})",
                        in_flight.as_ref().map(|s| &s.name)
                    );
                }
                assert!(
                    t.version() >= acked_version,
                    "cut {cut}: version {} is older than the acknowledged {acked_version}",
                    t.version()
                );
                // Tags made since the last cut, and one older one (all of them every cut
                // would cost quadratic time over a long run).
                let older: Vec<&String> =
                    tags.keys().filter(|n| !fresh_tags.contains(*n)).collect();
                let sample =
                    (!older.is_empty()).then(|| older[rng.random_range(0..older.len())].clone());
                for (name, rows) in tags
                    .iter()
                    .filter(|(n, _)| fresh_tags.contains(*n) || sample.as_ref() == Some(*n))
                {
                    let reader = db.open_table("t").await.expect("open");
                    reader
                        .checkout_tag(name)
                        .await
                        .unwrap_or_else(|e| panic!("cut {cut}: tag {name} is gone: {e}"));
                    assert_eq!(
                        &contents(&reader).await.expect("tag rows"),
                        rows,
                        "tag {name}"
                    );
                }
            }
            Durability::Process => {
                let known = allowed.contains(&found)
                    || in_flight.as_ref().is_some_and(|s| s.after == found);
                if in_flight
                    .as_ref()
                    .is_some_and(|s| s.after == found && s.after != state)
                {
                    figures.landed_in_flight += 1;
                }
                assert!(known, "cut {cut}: the table holds rows no commit made");
                if found != state {
                    figures.older_version_after_cut += 1;
                }
            }
        }
        if !t.manifest().proto.indices.is_empty() {
            let q = VectorSearch {
                query: vec![1.0; DIM as usize],
                k: 3,
                ..Default::default()
            };
            search(&t, &q)
                .await
                .unwrap_or_else(|e| panic!("cut {cut}: search after recovery: {e}"));
        }
        state = found;
        acked_version = t.version();
        allowed = vec![state.clone()];
        in_flight = None;
        writer.next_id = writer
            .next_id
            .max(state.keys().next_back().map_or(0, |m| m + 1));
        drop(db);

        // Run, until the power goes at a random write.
        let cut_at = rng.random_range(1..=60);
        let store = PowerCutStore::boot(&disk, cut_at).await;
        let db = connect(&store, durability).await;
        let t = db.open_table("t").await.expect("open after boot");
        fresh_tags.clear();
        let tags_before: HashSet<String> = tags.keys().cloned().collect();
        for _ in 0..40 {
            let (name, after, result) = writer
                .step(&t, &state, &mut tags, durability == Durability::Full)
                .await;
            match result {
                Ok(()) => {
                    figures.acknowledged += 1;
                    state = after;
                    acked_version = t.version();
                    allowed.push(state.clone());
                }
                Err(_) if store.is_dead() => {
                    in_flight = Some(Step { name, after });
                    break;
                }
                Err(e) => panic!("cut {cut}: {name} failed with the power on: {e}"),
            }
        }
        fresh_tags.extend(tags.keys().filter(|n| !tags_before.contains(*n)).cloned());
        disk = store.cut(&mut rng).await;
        figures.cuts += 1;
    }
    figures
}

/// `QUIVER_POWER_SEED` varies the runs (the stress campaign passes its seed).
fn seed(base: u64) -> u64 {
    std::env::var("QUIVER_POWER_SEED")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(base, |s| s.wrapping_mul(1_000_003) ^ base)
}

fn cuts() -> u64 {
    std::env::var("QUIVER_POWER_CUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_commits_survive_power_loss() {
    let f = campaign(seed(7), cuts(), Durability::Full).await;
    println!("full durability: {f:?}");
    assert_eq!(f.cuts, cuts());
    assert!(f.acknowledged > f.cuts, "{f:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relaxed_durability_still_opens_after_power_loss() {
    let f = campaign(seed(11), cuts(), Durability::Process).await;
    println!("process durability: {f:?}");
    assert!(
        f.older_version_after_cut > 0,
        "no cut took anything back: {f:?}"
    );
}

#[tokio::test]
async fn a_damaged_newest_version_is_skipped_reported_and_written_past() {
    let store = PowerCutStore::boot(&BTreeMap::new(), u64::MAX).await;
    let db = connect(&store, Durability::Full).await;
    let t = db
        .create_table(
            "t",
            schema(),
            batches_stream(vec![rows(&[(0, 0), (1, 0)])]),
            CreateMode::Create,
            WriteParams::default(),
        )
        .await
        .expect("create");
    t.append(
        batches_stream(vec![rows(&[(2, 0)])]),
        WriteParams::default(),
    )
    .await
    .expect("v2");
    t.append(
        batches_stream(vec![rows(&[(3, 0)])]),
        WriteParams::default(),
    )
    .await
    .expect("v3");
    // Version 3's data file loses its tail; version 2's manifest is truncated too.
    let v3_file = t.manifest().proto.fragments[2].files[0].path.clone();
    let path = Path::from(format!("t.quiver/{v3_file}"));
    let bytes = store.current(&path).await.expect("file");
    store
        .cache
        .put(
            &path,
            PutPayload::from_bytes(bytes.slice(0..bytes.len() / 2)),
        )
        .await
        .expect("damage");
    let listing: Vec<ObjectMeta> = store
        .cache
        .list(Some(&Path::from("t.quiver/_versions")))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(|m| m.expect("meta"))
        .collect();
    let v2 = listing
        .iter()
        .find(|m| {
            m.location
                .as_ref()
                .ends_with(&format!("{:020}.manifest", u64::MAX - 2))
        })
        .expect("v2 manifest")
        .location
        .clone();
    let bytes = store.current(&v2).await.expect("manifest");
    store
        .cache
        .put(&v2, PutPayload::from_bytes(bytes.slice(0..bytes.len() - 3)))
        .await
        .expect("damage");

    let db = connect(&store, Durability::Full).await;
    let t = db.open_table("t").await.expect("opens at version 1");
    assert_eq!(t.version(), 1);
    let skipped: Vec<u64> = t.skipped_versions().iter().map(|s| s.version).collect();
    assert_eq!(skipped, vec![2, 3]);
    assert!(
        t.skipped_versions()[1].reason.contains("bytes where"),
        "{:?}",
        t.skipped_versions()
    );
    assert_eq!(contents(&t).await.expect("rows").len(), 2);
    // An explicit checkout of a damaged version is a typed error.
    let err = t.checkout(3).await.expect_err("damaged");
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    let err = t.checkout(2).await.expect_err("damaged");
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    t.checkout_latest().await.expect("latest intact");
    assert_eq!(t.version(), 1);
    // The next write builds on version 1 and numbers past the damaged ones.
    t.append(
        batches_stream(vec![rows(&[(9, 0)])]),
        WriteParams::default(),
    )
    .await
    .expect("write after recovery");
    assert_eq!(t.version(), 4);
    let fresh = db.open_table("t").await.expect("open");
    assert_eq!(fresh.version(), 4);
    assert!(fresh.skipped_versions().is_empty());
    assert_eq!(
        contents(&fresh)
            .await
            .expect("rows")
            .keys()
            .copied()
            .collect::<Vec<_>>(),
        vec![0, 1, 9]
    );
    // Nothing valid was deleted: version 1 still reads; the damaged files are still there.
    fresh.checkout(1).await.expect("v1");
    assert!(store.current(&path).await.is_some());
    let versions = common::version_numbers(&fresh).await;
    // Version 3 reads back (only its data file is damaged); version 2 does not.
    assert_eq!(versions, vec![1, 3, 4]);
}

/// A power cut at every write or flush of a table's creation (and of its overwrite): after
/// it, the table is either absent (creation not acknowledged) or opens with all its rows.
#[tokio::test]
async fn creating_a_table_survives_a_cut_at_every_point() {
    let mut rng = StdRng::seed_from_u64(5);
    let first: Vec<(i64, i64)> = (0..20).map(|i| (i, 0)).collect();
    let second: Vec<(i64, i64)> = (100..105).map(|i| (i, 1)).collect();
    for (mode, cuts) in [
        (CreateMode::Create, 0u64..12),
        (CreateMode::Overwrite, 0..12),
    ] {
        for cut_at in cuts {
            // Overwrite starts from a durable table holding `first`.
            let start = if mode == CreateMode::Overwrite {
                let store = PowerCutStore::boot(&BTreeMap::new(), u64::MAX).await;
                let db = connect(&store, Durability::Full).await;
                db.create_table(
                    "t",
                    schema(),
                    batches_stream(vec![rows(&first)]),
                    CreateMode::Create,
                    WriteParams::default(),
                )
                .await
                .expect("create");
                store.cut(&mut rng).await
            } else {
                BTreeMap::new()
            };
            let store = PowerCutStore::boot(&start, cut_at + 1).await;
            let db = connect(&store, Durability::Full).await;
            let data = if mode == CreateMode::Overwrite {
                &second
            } else {
                &first
            };
            let acked = db
                .create_table(
                    "t",
                    schema(),
                    batches_stream(vec![rows(data)]),
                    mode,
                    WriteParams::default(),
                )
                .await
                .is_ok();
            let disk = store.cut(&mut rng).await;
            let store = PowerCutStore::boot(&disk, u64::MAX).await;
            let db = connect(&store, Durability::Full).await;
            let want: State = data.iter().copied().collect();
            let before: State = first.iter().copied().collect();
            match db.open_table("t").await {
                Ok(t) => {
                    let found = contents(&t).await.expect("rows");
                    assert!(
                        found == want
                            || (!acked && mode == CreateMode::Overwrite && found == before),
                        "{mode:?}, cut at {cut_at}: unexpected rows"
                    );
                }
                Err(Error::TableNotFound(_)) if !acked && mode == CreateMode::Create => {}
                Err(e) => panic!("{mode:?}, cut at {cut_at} (acknowledged: {acked}): {e}"),
            }
        }
    }
}
