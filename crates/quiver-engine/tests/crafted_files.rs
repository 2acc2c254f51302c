//! Crafted files: data files, manifests, deletion files and index files whose metadata says
//! anything at all (counts, offsets, lengths, page tables, types, index headers), re-encoded
//! with valid checksums and framing so every check behind the CRC is exercised. Every read
//! path (open, scans, take, exact search streamed from a local file, indexed search) returns
//! rows or a typed `Corrupt`/`IncompatibleVersion`: never a panic, never another error, and
//! never a single allocation larger than [`CAP`] (a counting allocator watches every one).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use arrow_array::{Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Fields, Schema};
use proptest::prelude::*;
use prost::Message;
use quiver_engine::format::{
    decode_block, encode_block, ColumnIndexProto, ColumnLocation, ColumnMetadataProto, Footer,
    FOOTER_LEN,
};
use quiver_engine::index::scalar::{LookupProto, PartProto};
use quiver_engine::index::VectorIndexDetailsProto;
use quiver_engine::linalg::DistanceType;
use quiver_engine::query::{search, VectorSearch};
use quiver_engine::storage::StorageOptions;
use quiver_engine::table::indices::{
    create_index, CreateIndexOptions, IndexKind, VectorIndexParams,
};
use quiver_engine::table::manifest::ManifestProto;
use quiver_engine::{
    batches_stream, ConnectOptions, CreateMode, Database, Error, ScanOptions, Table, WriteParams,
};
use roaring::RoaringBitmap;

// ---------------------------------------------------------------------------------------
// Allocation watch

/// Largest single allocation allowed while these tests run. The files are kilobytes, so an
/// allocation anywhere near this was sized by a count or length read from a file.
const CAP: usize = 64 << 20;
/// Larger requests are refused outright (the process aborts, failing the run) instead of
/// granted and reported by the case that made them.
const REFUSE: usize = 4 << 30;
static LARGEST: AtomicUsize = AtomicUsize::new(0);

struct WatchingAllocator;

fn watch(size: usize) -> bool {
    LARGEST.fetch_max(size, Ordering::Relaxed);
    size > REFUSE
}

unsafe impl GlobalAlloc for WatchingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if watch(layout.size()) {
            return std::ptr::null_mut();
        }
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if watch(layout.size()) {
            return std::ptr::null_mut();
        }
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if watch(new_size) {
            return std::ptr::null_mut();
        }
        System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: WatchingAllocator = WatchingAllocator;

// ---------------------------------------------------------------------------------------
// The table every case damages

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
    })
}

/// Vector columns of the fixture: name, length, and a query for it.
const VECTORS: [(&str, usize, [f64; 8]); 3] = [
    ("vector", 8, [0.5, -0.25, 1.0, 0.0, 3.0, -2.0, 0.1, 0.7]),
    ("other", 4, [1.0, 2.0, 3.0, 4.0, 0.0, 0.0, 0.0, 0.0]),
    ("bits", 2, [170.0, 85.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]),
];

/// A local table of 400 rows in three fragments (several 4 KiB pages each) with a column of
/// every shape (a NOT NULL id, vectors, strings, lists, a struct), deleted rows in two
/// fragments, and three vector indexes: IVF_PQ (l2), IVF_FLAT (cosine) and IVF_FLAT (hamming).
struct Fixture {
    _dir: tempfile::TempDir,
    uri: String,
    table_dir: PathBuf,
    /// Every file of the table (relative to its folder) with its bytes as written.
    files: Vec<(String, Vec<u8>)>,
    /// The live row addresses, for `take`.
    live_rows: Vec<u64>,
}

impl Fixture {
    /// Live rows chosen by `rows`.
    fn pick_rows(&self, rows: &[Pick]) -> Vec<u64> {
        rows.iter()
            .map(|i| self.live_rows[i.index(self.live_rows.len())])
            .collect()
    }

    fn bytes(&self, relative: &str) -> &[u8] {
        &self
            .files
            .iter()
            .find(|(p, _)| p == relative)
            .expect("a file of the table")
            .1
    }

    fn paths_under(&self, folder: &str) -> Vec<String> {
        self.files
            .iter()
            .map(|(p, _)| p.clone())
            .filter(|p| p.starts_with(folder))
            .collect()
    }

    /// The newest manifest (manifest names sort newest first).
    fn manifest_path(&self) -> String {
        self.paths_under("_versions/")
            .into_iter()
            .min()
            .expect("a manifest")
    }

    fn manifest(&self) -> ManifestProto {
        decode_payload(self.bytes(&self.manifest_path()))
    }

    /// Replaces a file the way a writer never would (atomically, so no old handle or map
    /// sees it change).
    fn write(&self, relative: &str, bytes: &[u8]) {
        let path = self.table_dir.join(relative);
        let staging = path.with_extension("crafting");
        std::fs::write(&staging, bytes).expect("write");
        std::fs::rename(&staging, &path).expect("rename");
    }

    fn restore(&self, relative: &str) {
        self.write(relative, self.bytes(relative));
    }
}

fn decode_payload<M: Message + Default>(block: &[u8]) -> M {
    M::decode(decode_block(block, &"fixture", "block").expect("intact block")).expect("decode")
}

fn fixture_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("vector", common::vector_type(DataType::Float32, 8), true),
        Field::new("other", common::vector_type(DataType::Float32, 4), true),
        Field::new("bits", common::vector_type(DataType::UInt8, 2), true),
        Field::new("text", DataType::Utf8, true),
        Field::new("tags", DataType::List(common::item(DataType::Utf8)), true),
        Field::new("flag", DataType::Boolean, true),
        Field::new(
            "meta",
            DataType::Struct(Fields::from(vec![
                Field::new("a", DataType::Int32, true),
                Field::new("b", DataType::LargeUtf8, true),
            ])),
            true,
        ),
    ]))
}

fn fixture_batch(start: i64, rows: usize, seed: u64) -> RecordBatch {
    let random = common::random_batch(&fixture_schema(), rows, seed, 0.05);
    let mut fields = vec![Field::new("id", DataType::Int64, false)];
    fields.extend(random.schema().fields().iter().map(|f| f.as_ref().clone()));
    let mut columns = vec![Arc::new(Int64Array::from_iter_values(start..start + rows as i64)) as _];
    columns.extend(random.columns().iter().cloned());
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).expect("batch")
}

async fn build_fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let uri = dir.path().to_str().expect("utf-8 path").to_string();
    let db = Database::connect(&uri, ConnectOptions::default())
        .await
        .expect("connect");
    let params = || WriteParams {
        page_size: 4096,
        max_rows_per_file: 200,
        ..Default::default()
    };
    let first = fixture_batch(0, 300, 1);
    let table = db
        .create_table(
            "t",
            first.schema(),
            batches_stream(vec![first]),
            CreateMode::Create,
            params(),
        )
        .await
        .expect("create");
    table
        .append(batches_stream(vec![fixture_batch(300, 100, 2)]), params())
        .await
        .expect("append");
    let doomed = table
        .row_ids_at(&[3, 4, 150, 199, 201, 250])
        .await
        .expect("addresses");
    table.delete_rows(&doomed).await.expect("delete");
    for (column, kind, distance, partitions) in [
        ("vector", IndexKind::IvfPq, DistanceType::L2, 4),
        ("other", IndexKind::IvfFlat, DistanceType::Cosine, 3),
        ("bits", IndexKind::IvfFlat, DistanceType::Hamming, 2),
    ] {
        let options = CreateIndexOptions {
            config: Some(
                VectorIndexParams {
                    kind,
                    distance_type: distance,
                    num_partitions: Some(partitions),
                    num_sub_vectors: (kind == IndexKind::IvfPq).then_some(4),
                    max_iterations: Some(5),
                    ..Default::default()
                }
                .into(),
            ),
            ..Default::default()
        };
        create_index(&table, column, options).await.expect("index");
    }
    let positions: Vec<u64> = (0..table.count_rows()).collect();
    let live_rows = table.row_ids_at(&positions).await.expect("addresses");
    let table_dir = dir.path().join("t.quiver");
    let mut files = Vec::new();
    let mut folders = vec![table_dir.clone()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).expect("list") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                folders.push(path);
            } else {
                let relative = path.strip_prefix(&table_dir).expect("inside");
                let relative = relative.to_str().expect("utf-8").replace('\\', "/");
                files.push((relative, std::fs::read(&path).expect("read")));
            }
        }
    }
    files.sort();
    Fixture {
        _dir: dir,
        uri,
        table_dir,
        files,
        live_rows,
    }
}

fn fixture(slot: &'static OnceLock<Fixture>) -> &'static Fixture {
    slot.get_or_init(|| runtime().block_on(build_fixture()))
}

// ---------------------------------------------------------------------------------------
// Every read path

/// Which errors besides damage a crafted file may legitimately cause.
#[derive(Clone, Copy)]
struct Allowed {
    /// `take` of rows the crafted metadata says are gone (deleted, past a fragment's end).
    row_not_found: bool,
}

fn check<T>(what: &str, result: Result<T, Error>, allowed: Allowed) -> Option<T> {
    match result {
        Ok(v) => Some(v),
        Err(Error::Corrupt { .. } | Error::IncompatibleVersion { .. }) => None,
        Err(Error::RowNotFound(_)) if allowed.row_not_found => None,
        Err(e) => panic!("{what}: untyped error {e:?}"),
    }
}

/// Whether `table` still has vector column `name` of `dim` values (a crafted schema may have
/// changed it; searching it would then be a wrong argument, not damage).
fn has_vectors(table: &Table, name: &str, dim: usize) -> bool {
    let schema = table.schema();
    matches!(
        schema.field_with_name(name).map(|f| f.data_type()),
        Ok(DataType::FixedSizeList(item, d))
            if *d as usize == dim
                && matches!(item.data_type(), DataType::Float32 | DataType::UInt8)
    )
}

/// Rows a case takes: some of the fixture's live rows, in any order, repeats allowed.
fn rows() -> impl Strategy<Value = Vec<Pick>> {
    prop::collection::vec(choice(), 1..24)
}

/// Runs every read path on the table as the files now are, from a fresh connection (no
/// cache from an earlier case), with `pread` and with memory maps; `take` reads `rows`.
async fn read_everything(f: &Fixture, rows: &[u64], allowed: Allowed) {
    for memory_map in [false, true] {
        let options = ConnectOptions {
            storage: Some(StorageOptions {
                memory_map,
                ..Default::default()
            }),
            ..Default::default()
        };
        let db = Database::connect(&f.uri, options).await.expect("connect");
        let Some(table) = check("open", db.open_table("t").await, allowed) else {
            continue;
        };
        if !table.skipped_versions().is_empty() {
            // Opening found the newest version damaged (a file of another size) and fell
            // back to an older one: detected.
            continue;
        }
        let _ = (table.count_rows(), table.stats());
        check("versions", table.list_versions().await, allowed);
        check(
            "scan",
            table.scan_all(ScanOptions::default()).await,
            allowed,
        );
        let limited = ScanOptions {
            offset: 3,
            limit: Some(20),
            with_row_id: true,
            ..Default::default()
        };
        check("small scan", table.scan_all(limited).await, allowed);
        check("take", table.take(rows, None, true).await, allowed);
        if let Ok(filter) = table.parse_filter("id > 40 AND text IS NOT NULL AND flag") {
            let filtered = ScanOptions {
                filter: Some(filter),
                ..Default::default()
            };
            check("filtered scan", table.scan_all(filtered).await, allowed);
        }
        let prefilter = table.parse_filter("id < 12").ok();
        for (column, dim, query) in VECTORS {
            if !has_vectors(&table, column, dim) {
                continue;
            }
            let base = VectorSearch {
                column: Some(column.to_string()),
                query: query[..dim].to_vec(),
                k: 7,
                ..Default::default()
            };
            let searches = [
                VectorSearch {
                    nprobes: Some(2),
                    ..base.clone()
                },
                VectorSearch {
                    bypass_index: true,
                    ..base.clone()
                },
                VectorSearch {
                    filter: prefilter.clone(),
                    ..base.clone()
                },
            ];
            for s in &searches {
                check(
                    &format!("search {column}"),
                    search(&table, s).await,
                    allowed,
                );
            }
        }
    }
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(
        largest <= CAP,
        "an allocation of {largest} bytes (more than {CAP})"
    );
}

// ---------------------------------------------------------------------------------------
// What the edits set numbers to

#[derive(Debug, Clone)]
enum Value {
    Set(u64),
    Add(i64),
}

impl Value {
    fn apply(&self, current: u64) -> u64 {
        match self {
            Value::Set(v) => *v,
            Value::Add(d) => current.wrapping_add_signed(*d),
        }
    }
}

/// Zero, alignments, the 32-bit limits and values that overflow when added to or multiplied.
const BOUNDARIES: [u64; 14] = [
    0,
    1,
    7,
    8,
    63,
    64,
    4096,
    i32::MAX as u64,
    u32::MAX as u64,
    1 << 32,
    1 << 40,
    u64::MAX / 2,
    u64::MAX - 7,
    u64::MAX,
];

/// Boundaries and small values near the truth.
fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(BOUNDARIES.to_vec()).prop_map(Value::Set),
        (0u64..70_000).prop_map(Value::Set),
        (-130i64..130).prop_map(Value::Add),
    ]
}

/// Logical types a crafted field may claim, supported or not.
const TYPES: [&str; 16] = [
    "bool",
    "int8",
    "int64",
    "float64",
    "utf8",
    "large_binary",
    "date32",
    "timestamp:ns",
    "fixed_size_list:8",
    "fixed_size_list:1",
    "fixed_size_list:1048576",
    "fixed_size_list:2147483647",
    "list",
    "struct",
    "timestamp:xs",
    "no such type",
];

/// Chooses among however many elements there turn out to be.
#[derive(Debug, Clone, Copy)]
struct Pick(usize);

impl Pick {
    const FIRST: Pick = Pick(0);
    const LAST: Pick = Pick(usize::MAX);

    fn index(self, len: usize) -> usize {
        if self.0 == usize::MAX {
            len - 1
        } else {
            self.0 % len
        }
    }
}

fn choice() -> impl Strategy<Value = Pick> {
    prop_oneof![
        Just(Pick::FIRST),
        Just(Pick::LAST),
        any::<usize>().prop_map(Pick)
    ]
}

/// Removes the element `at` chooses, or appends a copy of it.
fn remove_or_repeat<T: Clone>(items: &mut Vec<T>, at: &Pick, repeat: bool) {
    if items.is_empty() {
        return;
    }
    let i = at.index(items.len());
    if repeat {
        items.push(items[i].clone());
    } else {
        items.remove(i);
    }
}

fn pick<'a, T>(items: &'a mut [T], i: &Pick) -> Option<&'a mut T> {
    if items.is_empty() {
        None
    } else {
        let at = i.index(items.len());
        items.get_mut(at)
    }
}

// ---------------------------------------------------------------------------------------
// Data files

/// A data file taken apart: the pages, then what the edits change.
struct DataFile {
    pages: Vec<u8>,
    columns: Vec<ColumnMetadataProto>,
    num_rows: u64,
}

impl DataFile {
    fn parse(bytes: &[u8]) -> Self {
        let footer =
            Footer::decode(&bytes[bytes.len() - FOOTER_LEN as usize..], &"f").expect("footer");
        let index: ColumnIndexProto = decode_payload(
            &bytes[footer.column_index_offset as usize..bytes.len() - FOOTER_LEN as usize],
        );
        let meta_start = index
            .columns
            .iter()
            .map(|c| c.offset)
            .min()
            .expect("columns");
        let columns = index
            .columns
            .iter()
            .map(|c| decode_payload(&bytes[c.offset as usize..(c.offset + c.length) as usize]))
            .collect();
        DataFile {
            pages: bytes[..meta_start as usize].to_vec(),
            columns,
            num_rows: index.num_rows,
        }
    }
}

#[derive(Debug, Clone)]
enum DataEdit {
    /// A page's offset, length, rows, nulls, checksum, statistics or NaN flag.
    Page {
        column: Pick,
        page: Pick,
        field: u8,
        value: Value,
    },
    /// One number of a page's buffer table.
    Buffer {
        column: Pick,
        page: Pick,
        slot: Pick,
        value: Value,
    },
    /// A page's buffer table with entries removed or added.
    BufferCount {
        column: Pick,
        page: Pick,
        remove: bool,
        count: usize,
    },
    /// A page removed or repeated.
    PageCount {
        column: Pick,
        page: Pick,
        repeat: bool,
    },
    /// A field of a column's type subtree with another type, id or parent, or repeated.
    FieldType {
        column: Pick,
        field: Pick,
        logical_type: &'static str,
    },
    FieldIds {
        column: Pick,
        field: Pick,
        id: Value,
        parent: Value,
    },
    FieldCount {
        column: Pick,
        field: Pick,
        repeat: bool,
    },
    ColumnFieldId {
        column: Pick,
        value: Value,
    },
    /// Edits of the column index, after the blocks are placed: a location's field id,
    /// offset or length, the row count, a column removed or repeated.
    Location {
        column: Pick,
        field: u8,
        value: Value,
    },
    IndexRows(Value),
    ColumnCount {
        column: Pick,
        repeat: bool,
    },
    /// The footer's index offset, index length, column count, row count or version.
    Footer {
        field: u8,
        value: Value,
    },
}

fn data_edit() -> impl Strategy<Value = DataEdit> {
    let i = choice;
    prop_oneof![
        3 => (i(), i(), 0u8..7, value()).prop_map(|(column, page, field, value)| {
            DataEdit::Page { column, page, field, value }
        }),
        3 => (i(), i(), i(), value()).prop_map(|(column, page, slot, value)| {
            DataEdit::Buffer { column, page, slot, value }
        }),
        1 => (i(), i(), any::<bool>(), 1usize..4).prop_map(|(column, page, remove, count)| {
            DataEdit::BufferCount { column, page, remove, count }
        }),
        1 => (i(), i(), any::<bool>())
            .prop_map(|(column, page, repeat)| DataEdit::PageCount { column, page, repeat }),
        1 => (i(), i(), prop::sample::select(TYPES.to_vec())).prop_map(
            |(column, field, logical_type)| DataEdit::FieldType { column, field, logical_type }
        ),
        1 => (i(), i(), value(), value())
            .prop_map(|(column, field, id, parent)| DataEdit::FieldIds { column, field, id, parent }),
        1 => (i(), i(), any::<bool>())
            .prop_map(|(column, field, repeat)| DataEdit::FieldCount { column, field, repeat }),
        1 => (i(), value()).prop_map(|(column, value)| DataEdit::ColumnFieldId { column, value }),
        1 => (i(), 0u8..3, value())
            .prop_map(|(column, field, value)| DataEdit::Location { column, field, value }),
        1 => value().prop_map(DataEdit::IndexRows),
        1 => (i(), any::<bool>()).prop_map(|(column, repeat)| DataEdit::ColumnCount { column, repeat }),
        1 => (0u8..6, value()).prop_map(|(field, value)| DataEdit::Footer { field, value }),
    ]
}

/// The file with `edits` applied, every block and the footer framed and checksummed anew.
fn craft_data_file(original: &[u8], edits: &[DataEdit]) -> Vec<u8> {
    let mut file = DataFile::parse(original);
    for edit in edits {
        match edit {
            DataEdit::Page {
                column,
                page,
                field,
                value,
            } => {
                let Some(c) = pick(&mut file.columns, column) else {
                    continue;
                };
                let Some(p) = pick(&mut c.pages, page) else {
                    continue;
                };
                match field {
                    0 => p.offset = value.apply(p.offset),
                    1 => p.length = value.apply(p.length),
                    2 => p.num_rows = value.apply(p.num_rows),
                    3 => p.null_count = value.apply(p.null_count),
                    4 => p.crc32 = value.apply(u64::from(p.crc32)) as u32,
                    5 => {
                        p.min = Some(
                            value.apply(0).to_le_bytes()[..(value.apply(0) % 9) as usize].to_vec(),
                        )
                    }
                    _ => p.has_nan = !p.has_nan,
                }
            }
            DataEdit::Buffer {
                column,
                page,
                slot,
                value,
            } => {
                let Some(c) = pick(&mut file.columns, column) else {
                    continue;
                };
                if let Some(b) = pick(&mut c.pages, page).and_then(|p| pick(&mut p.buffers, slot)) {
                    *b = value.apply(*b);
                }
            }
            DataEdit::BufferCount {
                column,
                page,
                remove,
                count,
            } => {
                let Some(c) = pick(&mut file.columns, column) else {
                    continue;
                };
                if let Some(p) = pick(&mut c.pages, page) {
                    if *remove {
                        let keep = p.buffers.len().saturating_sub(*count);
                        p.buffers.truncate(keep);
                    } else {
                        p.buffers.extend(std::iter::repeat_n(0, *count));
                    }
                }
            }
            DataEdit::PageCount {
                column,
                page,
                repeat,
            } => {
                let Some(c) = pick(&mut file.columns, column) else {
                    continue;
                };
                remove_or_repeat(&mut c.pages, page, *repeat);
            }
            DataEdit::FieldType {
                column,
                field,
                logical_type,
            } => {
                let Some(c) = pick(&mut file.columns, column) else {
                    continue;
                };
                if let Some(f) = pick(&mut c.fields, field) {
                    f.logical_type = logical_type.to_string();
                }
            }
            DataEdit::FieldIds {
                column,
                field,
                id,
                parent,
            } => {
                let Some(c) = pick(&mut file.columns, column) else {
                    continue;
                };
                if let Some(f) = pick(&mut c.fields, field) {
                    f.id = id.apply(f.id as u64) as i32;
                    f.parent_id = parent.apply(f.parent_id as u64) as i32;
                }
            }
            DataEdit::FieldCount {
                column,
                field,
                repeat,
            } => {
                let Some(c) = pick(&mut file.columns, column) else {
                    continue;
                };
                remove_or_repeat(&mut c.fields, field, *repeat);
            }
            DataEdit::ColumnFieldId { column, value } => {
                if let Some(c) = pick(&mut file.columns, column) {
                    c.field_id = value.apply(c.field_id as u64) as i32;
                }
            }
            DataEdit::Location { .. }
            | DataEdit::IndexRows(_)
            | DataEdit::ColumnCount { .. }
            | DataEdit::Footer { .. } => {}
        }
    }
    let mut out = file.pages;
    let mut index = ColumnIndexProto {
        columns: Vec::new(),
        num_rows: file.num_rows,
    };
    for c in &file.columns {
        let block = encode_block(c.encode_to_vec());
        index.columns.push(ColumnLocation {
            field_id: c.field_id,
            offset: out.len() as u64,
            length: block.len() as u64,
        });
        out.extend(block);
    }
    for edit in edits {
        match edit {
            DataEdit::Location {
                column,
                field,
                value,
            } => {
                if let Some(l) = pick(&mut index.columns, column) {
                    match field {
                        0 => l.field_id = value.apply(l.field_id as u64) as i32,
                        1 => l.offset = value.apply(l.offset),
                        _ => l.length = value.apply(l.length),
                    }
                }
            }
            DataEdit::IndexRows(value) => index.num_rows = value.apply(index.num_rows),
            DataEdit::ColumnCount { column, repeat } => {
                remove_or_repeat(&mut index.columns, column, *repeat);
            }
            _ => {}
        }
    }
    let index_block = encode_block(index.encode_to_vec());
    let mut footer = Footer {
        column_index_offset: out.len() as u64,
        column_index_length: index_block.len() as u32,
        num_columns: index.columns.len() as u32,
        num_rows: index.num_rows,
        major: quiver_engine::format::FORMAT_MAJOR,
        minor: quiver_engine::format::FORMAT_MINOR,
    };
    out.extend(index_block);
    for edit in edits {
        if let DataEdit::Footer { field, value } = edit {
            match field {
                0 => footer.column_index_offset = value.apply(footer.column_index_offset),
                1 => {
                    let length = u64::from(footer.column_index_length);
                    footer.column_index_length = value.apply(length) as u32;
                }
                2 => footer.num_columns = value.apply(u64::from(footer.num_columns)) as u32,
                3 => footer.num_rows = value.apply(footer.num_rows),
                4 => footer.major = value.apply(u64::from(footer.major)) as u16,
                _ => footer.minor = value.apply(u64::from(footer.minor)) as u16,
            }
        }
    }
    out.extend(footer.encode());
    out
}

// ---------------------------------------------------------------------------------------
// Deletion files

#[derive(Debug, Clone)]
enum DeletionEdit {
    /// A valid bitmap of any rows (some past the fragment), with the manifest's count set to
    /// its size or to anything.
    Bitmap {
        rows: Vec<u32>,
        ranges: Vec<(u32, u32)>,
        optimize: bool,
        count: Option<Value>,
    },
    /// The stored serialization with bytes replaced (cookie, container count, keys,
    /// cardinalities, offsets, values), cut short or extended.
    Bytes {
        writes: Vec<(Pick, u8)>,
        cut: Option<Pick>,
        extend: Vec<u8>,
    },
}

fn deletion_edit() -> impl Strategy<Value = DeletionEdit> {
    prop_oneof![
        (
            prop::collection::vec(prop_oneof![8 => 0u32..100, 1 => any::<u32>()], 0..40),
            prop::collection::vec(
                prop_oneof![8 => (0u32..100, 0u32..60), 1 => (0u32..300_000, 0u32..70_000)],
                0..3,
            ),
            any::<bool>(),
            prop_oneof![4 => Just(None), 1 => value().prop_map(Some)],
        )
            .prop_map(|(rows, ranges, optimize, count)| DeletionEdit::Bitmap {
                rows,
                ranges,
                optimize,
                count,
            }),
        (
            prop::collection::vec((choice(), any::<u8>()), 1..6),
            prop::option::of(choice()),
            prop::collection::vec(any::<u8>(), 0..24),
        )
            .prop_map(|(writes, cut, extend)| DeletionEdit::Bytes {
                writes,
                cut,
                extend
            }),
    ]
}

// ---------------------------------------------------------------------------------------
// Index files

/// The index file's message as FORMAT.md specifies it (section 6).
#[derive(Clone, PartialEq, prost::Message)]
struct IvfFile {
    #[prost(string, tag = "1")]
    kind: String,
    #[prost(string, tag = "2")]
    distance: String,
    #[prost(uint32, tag = "3")]
    dim: u32,
    #[prost(uint32, tag = "4")]
    num_partitions: u32,
    #[prost(bytes = "vec", tag = "5")]
    centroids: Vec<u8>,
    #[prost(uint64, repeated, tag = "6")]
    offsets: Vec<u64>,
    #[prost(bytes = "vec", tag = "7")]
    row_ids: Vec<u8>,
    #[prost(uint32, tag = "8")]
    pq_sub_vectors: u32,
    #[prost(bytes = "vec", tag = "9")]
    pq_codebooks: Vec<u8>,
    #[prost(bytes = "vec", tag = "10")]
    payload: Vec<u8>,
}

impl IvfFile {
    /// Byte fields by number: centroids, row ids, codebooks, payload.
    fn bytes_field(&mut self, field: u8) -> &mut Vec<u8> {
        match field % 4 {
            0 => &mut self.centroids,
            1 => &mut self.row_ids,
            2 => &mut self.pq_codebooks,
            _ => &mut self.payload,
        }
    }
}

/// How a crafted index file is laid out: the container (the model, then one part per
/// partition, split by the file's own offsets clamped to its rows) with one number of its
/// lookup maybe changed, or the earlier one-block layout.
#[derive(Debug, Clone)]
enum IndexLayout {
    OneBlock,
    Container {
        /// Part, which of entries/offset/length, the new value.
        lookup_edit: Option<(Pick, u8, Value)>,
    },
}

fn index_layout() -> impl Strategy<Value = IndexLayout> {
    prop_oneof![
        1 => Just(IndexLayout::OneBlock),
        2 => Just(IndexLayout::Container { lookup_edit: None }),
        2 => (choice(), 0u8..3, value())
            .prop_map(|(p, w, v)| IndexLayout::Container { lookup_edit: Some((p, w, v)) }),
    ]
}

/// Reads an index file of either layout back into one message.
fn read_index_file(bytes: &[u8]) -> IvfFile {
    let footer = &bytes[bytes.len() - 24..];
    if &footer[16..20] != b"QSIX" {
        return decode_payload(bytes);
    }
    let at = |i: usize| u64::from_le_bytes(footer[i..i + 8].try_into().expect("8 bytes")) as usize;
    let lookup: LookupProto = decode_payload(&bytes[at(0)..at(0) + at(8)]);
    let part = |i: usize| {
        let p = &lookup.parts[i];
        let block = &bytes[p.offset as usize..(p.offset + p.length) as usize];
        decode_block(block, &"fixture", "part")
            .expect("intact part")
            .to_vec()
    };
    let mut file: IvfFile = IvfFile::decode(part(0).as_slice()).expect("model");
    for i in 1..lookup.parts.len() {
        let bytes = part(i);
        let ids = lookup.parts[i].entries as usize * 8;
        file.row_ids.extend_from_slice(&bytes[..ids]);
        file.payload.extend_from_slice(&bytes[ids..]);
    }
    file
}

/// Writes `file` in `layout`.
fn write_index_file(file: &IvfFile, layout: &IndexLayout) -> Vec<u8> {
    let IndexLayout::Container { lookup_edit } = layout else {
        return encode_block(file.encode_to_vec());
    };
    let rows = file.row_ids.len() / 8;
    let width = file.payload.len().checked_div(rows).unwrap_or(0);
    let mut model = file.clone();
    model.row_ids.clear();
    model.payload.clear();
    let mut parts = vec![(model.encode_to_vec(), 0u64)];
    let partitions = file.offsets.len().saturating_sub(1);
    let mut end = 0;
    for p in 0..partitions {
        let start = (file.offsets[p] as usize).min(rows).max(end);
        end = (file.offsets[p + 1] as usize).clamp(start, rows);
        let mut bytes = file.row_ids[start * 8..end * 8].to_vec();
        bytes.extend_from_slice(&file.payload[start * width..end * width]);
        parts.push((bytes, (end - start) as u64));
    }
    // What the offsets leave out (crafted sizes) goes with the last part.
    if let Some((last, _)) = parts.last_mut().filter(|_| partitions > 0) {
        last.extend_from_slice(&file.row_ids[end * 8..]);
        last.extend_from_slice(&file.payload[(end * width).min(file.payload.len())..]);
    }
    let mut out = Vec::new();
    let mut lookup = LookupProto {
        index_type: file.kind.clone(),
        key_kind: 0,
        parts: Vec::new(),
        entries: 0,
    };
    for (bytes, entries) in parts {
        let block = encode_block(bytes);
        lookup.parts.push(PartProto {
            offset: out.len() as u64,
            length: block.len() as u64,
            entries,
            ..Default::default()
        });
        lookup.entries += entries;
        out.extend(block);
    }
    if let Some((part, which, value)) = lookup_edit {
        let i = part.index(lookup.parts.len());
        let p = &mut lookup.parts[i];
        match which {
            0 => p.entries = value.apply(p.entries),
            1 => p.offset = value.apply(p.offset),
            _ => p.length = value.apply(p.length),
        }
    }
    let block = encode_block(lookup.encode_to_vec());
    let offset = out.len() as u64;
    out.extend_from_slice(&block);
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(&(block.len() as u64).to_le_bytes());
    out.extend_from_slice(b"QSIX");
    out.extend_from_slice(&1u32.to_le_bytes());
    out
}

#[derive(Debug, Clone)]
enum IndexEdit {
    Kind(&'static str),
    Distance(&'static str),
    Dim(Value),
    Partitions(Value),
    SubVectors(Value),
    /// A byte field grown or shrunk.
    Resize {
        field: u8,
        delta: i32,
    },
    /// A partition offset set, or one added or removed.
    Offset {
        slot: Pick,
        value: Value,
    },
    OffsetCount {
        push: bool,
    },
    /// A row address set to a row of a covered fragment (maybe past its end) or anything.
    RowId {
        slot: Pick,
        fragment: Pick,
        row: u32,
        anywhere: bool,
    },
    /// A float of the centroids, codebooks or flat vectors set to an odd value.
    Float {
        field: u8,
        slot: Pick,
        value: f32,
    },
    /// A byte set anywhere in a byte field (PQ codes, binary vectors).
    Byte {
        field: u8,
        slot: Pick,
        byte: u8,
    },
}

fn index_edit() -> impl Strategy<Value = IndexEdit> {
    let i = choice;
    prop_oneof![
        1 => prop::sample::select(vec!["IVF_PQ", "IVF_FLAT", "HNSW", ""]).prop_map(IndexEdit::Kind),
        1 => prop::sample::select(vec!["l2", "cosine", "dot", "hamming", "manhattan"])
            .prop_map(IndexEdit::Distance),
        1 => value().prop_map(IndexEdit::Dim),
        1 => value().prop_map(IndexEdit::Partitions),
        1 => value().prop_map(IndexEdit::SubVectors),
        2 => (0u8..4, prop_oneof![-64i32..64, Just(-4096), Just(4096)])
            .prop_map(|(field, delta)| IndexEdit::Resize { field, delta }),
        2 => (i(), value()).prop_map(|(slot, value)| IndexEdit::Offset { slot, value }),
        1 => any::<bool>().prop_map(|push| IndexEdit::OffsetCount { push }),
        3 => (i(), i(), prop_oneof![0u32..500, any::<u32>()], any::<bool>()).prop_map(
            |(slot, fragment, row, anywhere)| IndexEdit::RowId { slot, fragment, row, anywhere }
        ),
        2 => (
            prop_oneof![Just(0u8), Just(2), Just(3)],
            i(),
            prop::sample::select(vec![f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0, 1e38, -1e-38]),
        )
            .prop_map(|(field, slot, value)| IndexEdit::Float { field, slot, value }),
        2 => (0u8..4, i(), any::<u8>())
            .prop_map(|(field, slot, byte)| IndexEdit::Byte { field, slot, byte }),
    ]
}

/// Makes the manifest's entry describe `file` as it now is.
fn describe(meta: &mut quiver_engine::table::manifest::IndexMetadataProto, file: &IvfFile) {
    edit_details(meta, |d| {
        d.dim = file.dim;
        d.num_partitions = file.num_partitions;
        d.num_sub_vectors = file.pq_sub_vectors;
        d.num_rows = file.row_ids.len() as u64 / 8;
        d.distance_type = file.distance.clone();
    });
    meta.index_type = file.kind.clone();
}

fn craft_index(file: &mut IvfFile, edits: &[IndexEdit], covered: &[u64]) {
    for edit in edits {
        match edit {
            IndexEdit::Kind(k) => file.kind = k.to_string(),
            IndexEdit::Distance(d) => file.distance = d.to_string(),
            IndexEdit::Dim(v) => file.dim = v.apply(u64::from(file.dim)) as u32,
            IndexEdit::Partitions(v) => {
                file.num_partitions = v.apply(u64::from(file.num_partitions)) as u32
            }
            IndexEdit::SubVectors(v) => {
                file.pq_sub_vectors = v.apply(u64::from(file.pq_sub_vectors)) as u32
            }
            IndexEdit::Resize { field, delta } => {
                let bytes = file.bytes_field(*field);
                let len = (bytes.len() as i64 + i64::from(*delta)).max(0) as usize;
                bytes.resize(len, 0x7f);
            }
            IndexEdit::Offset { slot, value } => {
                if let Some(o) = pick(&mut file.offsets, slot) {
                    *o = value.apply(*o);
                }
            }
            IndexEdit::OffsetCount { push } => {
                if *push {
                    let last = file.offsets.last().copied().unwrap_or(0);
                    file.offsets.push(last);
                } else {
                    file.offsets.pop();
                }
            }
            IndexEdit::RowId {
                slot,
                fragment,
                row,
                anywhere,
            } => {
                let rows = file.row_ids.len() / 8;
                if rows == 0 {
                    continue;
                }
                let at = slot.index(rows) * 8;
                let address = if *anywhere || covered.is_empty() {
                    u64::from(*row).wrapping_mul(0x9E37_79B9_7F4A_7C15)
                } else {
                    covered[fragment.index(covered.len())] << 32 | u64::from(*row)
                };
                file.row_ids[at..at + 8].copy_from_slice(&address.to_le_bytes());
            }
            IndexEdit::Float { field, slot, value } => {
                let bytes = file.bytes_field(*field);
                let floats = bytes.len() / 4;
                if floats > 0 {
                    let at = slot.index(floats) * 4;
                    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
                }
            }
            IndexEdit::Byte { field, slot, byte } => {
                let bytes = file.bytes_field(*field);
                if let Some(b) = pick(bytes, slot) {
                    *b = *byte;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Manifests

#[derive(Debug, Clone)]
enum ManifestEdit {
    Version(Value),
    NextFragmentId(Value),
    MaxFieldId(Value),
    FragmentId {
        fragment: Pick,
        value: Value,
    },
    PhysicalRows {
        fragment: Pick,
        value: Value,
    },
    /// A data file entry pointed at another file of the table (any kind).
    FilePath {
        fragment: Pick,
        to: Pick,
    },
    FileFieldIds {
        fragment: Pick,
        value: Value,
        clear: bool,
    },
    NoFiles {
        fragment: Pick,
    },
    /// A deletion entry pointed at any file of the table, with any count; or removed.
    Deletion {
        fragment: Pick,
        to: Pick,
        count: Value,
    },
    NoDeletion {
        fragment: Pick,
    },
    FragmentCount {
        fragment: Pick,
        repeat: bool,
    },
    Field {
        field: Pick,
        id: Value,
        parent: Value,
    },
    FieldType {
        field: Pick,
        logical_type: &'static str,
    },
    FieldCount {
        field: Pick,
        repeat: bool,
    },
    /// An index entry's details (dimensions, counts, distance), covered fragments, column,
    /// type or file.
    IndexDetails {
        index: Pick,
        field: u8,
        value: Value,
    },
    IndexDistance {
        index: Pick,
        distance: &'static str,
    },
    IndexFragments {
        index: Pick,
        value: Value,
        clear: bool,
    },
    IndexColumn {
        index: Pick,
        value: Value,
    },
    IndexType {
        index: Pick,
        kind: &'static str,
    },
    IndexUuid {
        index: Pick,
        from: Pick,
    },
}

fn manifest_edit() -> impl Strategy<Value = ManifestEdit> {
    let i = choice;
    prop_oneof![
        1 => value().prop_map(ManifestEdit::Version),
        1 => value().prop_map(ManifestEdit::NextFragmentId),
        1 => value().prop_map(ManifestEdit::MaxFieldId),
        1 => (i(), value()).prop_map(|(fragment, value)| ManifestEdit::FragmentId { fragment, value }),
        2 => (i(), value())
            .prop_map(|(fragment, value)| ManifestEdit::PhysicalRows { fragment, value }),
        1 => (i(), i()).prop_map(|(fragment, to)| ManifestEdit::FilePath { fragment, to }),
        1 => (i(), value(), any::<bool>()).prop_map(|(fragment, value, clear)| {
            ManifestEdit::FileFieldIds { fragment, value, clear }
        }),
        1 => i().prop_map(|fragment| ManifestEdit::NoFiles { fragment }),
        2 => (i(), i(), value())
            .prop_map(|(fragment, to, count)| ManifestEdit::Deletion { fragment, to, count }),
        1 => i().prop_map(|fragment| ManifestEdit::NoDeletion { fragment }),
        1 => (i(), any::<bool>())
            .prop_map(|(fragment, repeat)| ManifestEdit::FragmentCount { fragment, repeat }),
        1 => (i(), value(), value()).prop_map(|(field, id, parent)| ManifestEdit::Field {
            field,
            id,
            parent
        }),
        1 => (i(), prop::sample::select(TYPES.to_vec()))
            .prop_map(|(field, logical_type)| ManifestEdit::FieldType { field, logical_type }),
        1 => (i(), any::<bool>()).prop_map(|(field, repeat)| ManifestEdit::FieldCount { field, repeat }),
        2 => (i(), 0u8..5, value())
            .prop_map(|(index, field, value)| ManifestEdit::IndexDetails { index, field, value }),
        1 => (i(), prop::sample::select(vec!["l2", "cosine", "dot", "hamming", "?"]))
            .prop_map(|(index, distance)| ManifestEdit::IndexDistance { index, distance }),
        1 => (i(), value(), any::<bool>()).prop_map(|(index, value, clear)| {
            ManifestEdit::IndexFragments { index, value, clear }
        }),
        1 => (i(), value()).prop_map(|(index, value)| ManifestEdit::IndexColumn { index, value }),
        1 => (i(), prop::sample::select(vec!["IVF_PQ", "IVF_FLAT", "BTREE"]))
            .prop_map(|(index, kind)| ManifestEdit::IndexType { index, kind }),
        1 => (i(), i()).prop_map(|(index, from)| ManifestEdit::IndexUuid { index, from }),
    ]
}

fn edit_details(
    meta: &mut quiver_engine::table::manifest::IndexMetadataProto,
    edit: impl FnOnce(&mut VectorIndexDetailsProto),
) {
    let mut details = VectorIndexDetailsProto::decode(meta.details.as_slice()).unwrap_or_default();
    edit(&mut details);
    meta.details = details.encode_to_vec();
}

fn craft_manifest(m: &mut ManifestProto, edits: &[ManifestEdit], files: &[String]) {
    let any_file = |to: &Pick| files[to.index(files.len())].clone();
    for edit in edits {
        match edit {
            ManifestEdit::Version(v) => m.version = v.apply(m.version),
            ManifestEdit::NextFragmentId(v) => m.next_fragment_id = v.apply(m.next_fragment_id),
            ManifestEdit::MaxFieldId(v) => m.max_field_id = v.apply(m.max_field_id as u64) as i32,
            ManifestEdit::FragmentId { fragment, value } => {
                if let Some(f) = pick(&mut m.fragments, fragment) {
                    f.id = value.apply(f.id);
                }
            }
            ManifestEdit::PhysicalRows { fragment, value } => {
                if let Some(f) = pick(&mut m.fragments, fragment) {
                    f.physical_rows = value.apply(f.physical_rows);
                }
            }
            ManifestEdit::FilePath { fragment, to } => {
                if let Some(file) =
                    pick(&mut m.fragments, fragment).and_then(|f| f.files.first_mut())
                {
                    file.path = any_file(to);
                }
            }
            ManifestEdit::FileFieldIds {
                fragment,
                value,
                clear,
            } => {
                if let Some(file) =
                    pick(&mut m.fragments, fragment).and_then(|f| f.files.first_mut())
                {
                    if *clear {
                        file.field_ids.clear();
                    } else if let Some(id) = file.field_ids.first_mut() {
                        *id = value.apply(*id as u64) as i32;
                    }
                }
            }
            ManifestEdit::NoFiles { fragment } => {
                if let Some(f) = pick(&mut m.fragments, fragment) {
                    f.files.clear();
                }
            }
            ManifestEdit::Deletion {
                fragment,
                to,
                count,
            } => {
                if let Some(f) = pick(&mut m.fragments, fragment) {
                    let old = f.deletion.take().map_or(0, |d| d.num_deleted_rows);
                    f.deletion = Some(quiver_engine::table::manifest::DeletionFileProto {
                        path: any_file(to),
                        num_deleted_rows: count.apply(old),
                        size_bytes: 0,
                    });
                }
            }
            ManifestEdit::NoDeletion { fragment } => {
                if let Some(f) = pick(&mut m.fragments, fragment) {
                    f.deletion = None;
                }
            }
            ManifestEdit::FragmentCount { fragment, repeat } => {
                remove_or_repeat(&mut m.fragments, fragment, *repeat);
            }
            ManifestEdit::Field { field, id, parent } => {
                if let Some(f) = pick(&mut m.fields, field) {
                    f.id = id.apply(f.id as u64) as i32;
                    f.parent_id = parent.apply(f.parent_id as u64) as i32;
                }
            }
            ManifestEdit::FieldType {
                field,
                logical_type,
            } => {
                if let Some(f) = pick(&mut m.fields, field) {
                    f.logical_type = logical_type.to_string();
                }
            }
            ManifestEdit::FieldCount { field, repeat } => {
                remove_or_repeat(&mut m.fields, field, *repeat);
            }
            ManifestEdit::IndexDetails {
                index,
                field,
                value,
            } => {
                if let Some(meta) = pick(&mut m.indices, index) {
                    edit_details(meta, |d| match field {
                        0 => d.dim = value.apply(u64::from(d.dim)) as u32,
                        1 => d.num_partitions = value.apply(u64::from(d.num_partitions)) as u32,
                        2 => d.num_sub_vectors = value.apply(u64::from(d.num_sub_vectors)) as u32,
                        3 => d.num_rows = value.apply(d.num_rows),
                        _ => d.num_bits = value.apply(u64::from(d.num_bits)) as u32,
                    });
                }
            }
            ManifestEdit::IndexDistance { index, distance } => {
                if let Some(meta) = pick(&mut m.indices, index) {
                    edit_details(meta, |d| d.distance_type = distance.to_string());
                }
            }
            ManifestEdit::IndexFragments {
                index,
                value,
                clear,
            } => {
                if let Some(meta) = pick(&mut m.indices, index) {
                    if *clear {
                        meta.fragment_ids.clear();
                    } else if let Some(id) = meta.fragment_ids.first_mut() {
                        *id = value.apply(*id);
                    }
                }
            }
            ManifestEdit::IndexColumn { index, value } => {
                if let Some(meta) = pick(&mut m.indices, index) {
                    for id in &mut meta.field_ids {
                        *id = value.apply(*id as u64) as i32;
                    }
                }
            }
            ManifestEdit::IndexType { index, kind } => {
                if let Some(meta) = pick(&mut m.indices, index) {
                    meta.index_type = kind.to_string();
                }
            }
            ManifestEdit::IndexUuid { index, from } => {
                if m.indices.is_empty() {
                    continue;
                }
                let uuid = m.indices[from.index(m.indices.len())].uuid.clone();
                let at = index.index(m.indices.len());
                m.indices[at].uuid = uuid;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The properties

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// A data file whose page tables, types, column index and footer say anything.
    #[test]
    fn crafted_data_files(
        file in choice(),
        edits in prop::collection::vec(data_edit(), 1..3),
        take in rows(),
    ) {
        static FIXTURE: OnceLock<Fixture> = OnceLock::new();
        let f = fixture(&FIXTURE);
        let files = f.paths_under("data/");
        let path = &files[file.index(files.len())];
        f.write(path, &craft_data_file(f.bytes(path), &edits));
        runtime().block_on(read_everything(f, &f.pick_rows(&take), Allowed { row_not_found: false }));
        f.restore(path);
    }

    /// A manifest whose fragments, schema and index entries say anything.
    #[test]
    fn crafted_manifests(
        edits in prop::collection::vec(manifest_edit(), 1..4),
        take in rows(),
    ) {
        static FIXTURE: OnceLock<Fixture> = OnceLock::new();
        let f = fixture(&FIXTURE);
        let path = f.manifest_path();
        let mut manifest = f.manifest();
        let files: Vec<String> = f.files.iter().map(|(p, _)| p.clone()).collect();
        craft_manifest(&mut manifest, &edits, &files);
        f.write(&path, &encode_block(manifest.encode_to_vec()));
        runtime().block_on(read_everything(f, &f.pick_rows(&take), Allowed { row_not_found: true }));
        f.restore(&path);
    }

    /// A deletion file holding any bitmap, or a damaged serialization, under a valid CRC.
    #[test]
    fn crafted_deletion_files(
        which in choice(),
        edit in deletion_edit(),
        take in rows(),
    ) {
        static FIXTURE: OnceLock<Fixture> = OnceLock::new();
        let f = fixture(&FIXTURE);
        let deletions = f.paths_under("_deletions/");
        let path = &deletions[which.index(deletions.len())];
        let mut manifest = f.manifest();
        let entry = manifest
            .fragments
            .iter_mut()
            .filter_map(|fragment| fragment.deletion.as_mut())
            .find(|d| &d.path == path);
        let payload = match &edit {
            DeletionEdit::Bitmap { rows, ranges, optimize, count } => {
                let mut bitmap: RoaringBitmap = rows.iter().copied().collect();
                for &(start, len) in ranges {
                    bitmap.insert_range(start..start.saturating_add(len));
                }
                if *optimize {
                    bitmap.optimize();
                }
                if let Some(entry) = entry {
                    entry.num_deleted_rows = count
                        .as_ref()
                        .map_or(bitmap.len(), |c| c.apply(entry.num_deleted_rows));
                }
                let mut payload = Vec::new();
                bitmap.serialize_into(&mut payload).expect("serialize");
                payload
            }
            DeletionEdit::Bytes { writes, cut, extend } => {
                let mut payload = decode_block(f.bytes(path), &"d", "d").expect("intact").to_vec();
                for (at, byte) in writes {
                    if let Some(b) = pick(&mut payload, at) {
                        *b = *byte;
                    }
                }
                if let Some(cut) = cut {
                    payload.truncate(cut.index(payload.len() + 1));
                }
                payload.extend(extend);
                payload
            }
        };
        let manifest_path = f.manifest_path();
        f.write(path, &encode_block(payload));
        f.write(&manifest_path, &encode_block(manifest.encode_to_vec()));
        runtime().block_on(read_everything(f, &f.pick_rows(&take), Allowed { row_not_found: true }));
        f.restore(path);
        f.restore(&manifest_path);
    }

    /// An index file whose header, partition table, row addresses and vectors say anything;
    /// with `describe`, the manifest's details are changed to agree with it, so that what
    /// the file itself must be consistent about is what is tested.
    #[test]
    fn crafted_index_files(
        which in choice(),
        edits in prop::collection::vec(index_edit(), 1..4),
        describe in any::<bool>(),
        layout in index_layout(),
        take in rows(),
    ) {
        static FIXTURE: OnceLock<Fixture> = OnceLock::new();
        let f = fixture(&FIXTURE);
        let mut manifest = f.manifest();
        let at = which.index(manifest.indices.len());
        let meta = &mut manifest.indices[at];
        let path = format!("_indices/{}/index.qvi", meta.uuid);
        let mut file = read_index_file(f.bytes(&path));
        craft_index(&mut file, &edits, &meta.fragment_ids);
        let bytes = write_index_file(&file, &layout);
        // The size always agrees: a table whose newest version lists a file of another size
        // opens at the version before, and the crafted file would not be read at all.
        meta.size_bytes = bytes.len() as u64;
        if describe {
            self::describe(meta, &file);
        }
        let manifest_path = f.manifest_path();
        f.write(&path, &bytes);
        f.write(&manifest_path, &encode_block(manifest.encode_to_vec()));
        runtime().block_on(read_everything(f, &f.pick_rows(&take), Allowed { row_not_found: false }));
        f.restore(&path);
        f.restore(&manifest_path);
    }
}

// The combinations a random search rarely meets (a footer offset of 2^64 - 1 and an index
// length that wraps it): every boundary value in every number of the first and last entry.

/// Each of `edits` in turn, crafted into the file at `path` (and the manifest, for index
/// edits), read through every path.
fn sweep<E>(f: &Fixture, edits: &[E], apply: impl Fn(&E)) {
    let rows = &f.live_rows[..16];
    for edit in edits {
        apply(edit);
        let allowed = Allowed {
            row_not_found: true,
        };
        runtime().block_on(read_everything(f, rows, allowed));
    }
    for (path, bytes) in &f.files {
        f.write(path, bytes);
    }
}

#[test]
fn boundary_values_in_data_files() {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    let f = fixture(&FIXTURE);
    let mut edits = Vec::new();
    for value in BOUNDARIES.map(Value::Set) {
        for at in [Pick::FIRST, Pick::LAST] {
            edits.extend((0..5).map(|field| DataEdit::Page {
                column: at,
                page: at,
                field,
                value: value.clone(),
            }));
            edits.extend((0..4).map(|slot| DataEdit::Buffer {
                column: at,
                page: at,
                slot: Pick(slot),
                value: value.clone(),
            }));
            edits.extend((0..3).map(|field| DataEdit::Location {
                column: at,
                field,
                value: value.clone(),
            }));
        }
        edits.push(DataEdit::IndexRows(value.clone()));
        edits.extend((0..6).map(|field| DataEdit::Footer {
            field,
            value: value.clone(),
        }));
    }
    let path = &f.paths_under("data/")[0];
    sweep(f, &edits, |edit| {
        f.write(
            path,
            &craft_data_file(f.bytes(path), std::slice::from_ref(edit)),
        )
    });
}

#[test]
fn boundary_values_in_manifests() {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    let f = fixture(&FIXTURE);
    let mut edits = Vec::new();
    for value in BOUNDARIES.map(Value::Set) {
        edits.push(ManifestEdit::Version(value.clone()));
        edits.push(ManifestEdit::NextFragmentId(value.clone()));
        edits.push(ManifestEdit::MaxFieldId(value.clone()));
        for at in [Pick::FIRST, Pick::LAST] {
            edits.push(ManifestEdit::FragmentId {
                fragment: at,
                value: value.clone(),
            });
            edits.push(ManifestEdit::PhysicalRows {
                fragment: at,
                value: value.clone(),
            });
        }
        for index in [Pick(0), Pick(1), Pick(2)] {
            edits.extend((0..5).map(|field| ManifestEdit::IndexDetails {
                index,
                field,
                value: value.clone(),
            }));
        }
    }
    let path = f.manifest_path();
    let files: Vec<String> = f.files.iter().map(|(p, _)| p.clone()).collect();
    sweep(f, &edits, |edit| {
        let mut manifest = f.manifest();
        craft_manifest(&mut manifest, std::slice::from_ref(edit), &files);
        f.write(&path, &encode_block(manifest.encode_to_vec()));
    });
}

#[test]
fn boundary_values_in_index_files() {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    let f = fixture(&FIXTURE);
    let mut edits = Vec::new();
    for value in BOUNDARIES.map(Value::Set) {
        for index in 0..3 {
            for edit in [
                IndexEdit::Dim(value.clone()),
                IndexEdit::Partitions(value.clone()),
                IndexEdit::SubVectors(value.clone()),
                IndexEdit::Offset {
                    slot: Pick::FIRST,
                    value: value.clone(),
                },
                IndexEdit::Offset {
                    slot: Pick::LAST,
                    value: value.clone(),
                },
            ] {
                edits.push((index, edit));
            }
        }
    }
    let manifest_path = f.manifest_path();
    sweep(f, &edits, |(index, edit)| {
        let mut manifest = f.manifest();
        let meta = &mut manifest.indices[*index];
        let path = format!("_indices/{}/index.qvi", meta.uuid);
        let mut file = read_index_file(f.bytes(&path));
        craft_index(&mut file, std::slice::from_ref(edit), &meta.fragment_ids);
        describe(meta, &file);
        let layout = if *index == 1 {
            IndexLayout::OneBlock
        } else {
            IndexLayout::Container { lookup_edit: None }
        };
        let bytes = write_index_file(&file, &layout);
        meta.size_bytes = bytes.len() as u64;
        f.write(&path, &bytes);
        f.write(&manifest_path, &encode_block(manifest.encode_to_vec()));
    });
}

/// Index files of the earlier one-block layout still read, and answer as the container does.
#[test]
fn one_block_index_files_answer_as_containers() {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    let f = fixture(&FIXTURE);
    let nearest = || {
        runtime().block_on(async {
            let db = Database::connect(&f.uri, ConnectOptions::default())
                .await
                .expect("connect");
            let table = db.open_table("t").await.expect("open");
            let mut found = Vec::new();
            for (column, dim, query) in VECTORS {
                let s = VectorSearch {
                    column: Some(column.to_string()),
                    query: query[..dim].to_vec(),
                    k: 7,
                    nprobes: Some(2),
                    with_row_id: true,
                    ..Default::default()
                };
                let batch = search(&table, &s).await.expect("search");
                found.push(common::row_ids_of(&[batch]));
            }
            found
        })
    };
    let from_containers = nearest();
    assert!(from_containers.iter().all(|rows| rows.len() == 7));
    let mut manifest = f.manifest();
    let mut paths = Vec::new();
    for meta in &mut manifest.indices {
        let path = format!("_indices/{}/index.qvi", meta.uuid);
        assert_eq!(&f.bytes(&path)[f.bytes(&path).len() - 8..][..4], b"QSIX");
        let bytes = write_index_file(&read_index_file(f.bytes(&path)), &IndexLayout::OneBlock);
        meta.size_bytes = bytes.len() as u64;
        f.write(&path, &bytes);
        paths.push(path);
    }
    let manifest_path = f.manifest_path();
    f.write(&manifest_path, &encode_block(manifest.encode_to_vec()));
    let from_one_block = nearest();
    for path in paths.iter().chain([&manifest_path]) {
        f.restore(path);
    }
    assert_eq!(from_one_block, from_containers);
}

/// The fixture itself reads back whole, through every path, with nothing crafted.
#[test]
fn intact_fixture_reads_everywhere() {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    let f = fixture(&FIXTURE);
    runtime().block_on(async {
        let db = Database::connect(&f.uri, ConnectOptions::default())
            .await
            .expect("connect");
        let table = db.open_table("t").await.expect("open");
        let rows: usize = table
            .scan_all(ScanOptions::default())
            .await
            .expect("scan")
            .iter()
            .map(RecordBatch::num_rows)
            .sum();
        assert_eq!(rows, 394);
        let taken = table.take(&f.live_rows, None, true).await.expect("take");
        assert_eq!(taken.num_rows(), 394);
        for (column, dim, query) in VECTORS {
            for bypass_index in [false, true] {
                let s = VectorSearch {
                    column: Some(column.to_string()),
                    query: query[..dim].to_vec(),
                    k: 7,
                    bypass_index,
                    ..Default::default()
                };
                assert_eq!(search(&table, &s).await.expect("search").num_rows(), 7);
            }
        }
        assert_eq!(f.paths_under("_indices/").len(), 3);
        assert_eq!(f.paths_under("_deletions/").len(), 2);
    });
    let allowed = Allowed {
        row_not_found: false,
    };
    runtime().block_on(read_everything(f, &f.live_rows, allowed));
}

/// A reader given a data file whose footer claims the metadata starts at byte 8 of a large
/// file reads only the file's end, then refuses it; it never reads the claimed region.
#[test]
fn a_footer_claiming_huge_metadata_reads_only_the_tail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = quiver_engine::storage::Storage::from_uri(dir.path().to_str().expect("utf-8"))
        .expect("storage");
    let path = storage.path("big.qvd");
    let size: u64 = 200 << 20;
    // A sparse file: 200 MiB of zeros, then a column index block and a footer claiming every
    // byte from 8 on is column metadata.
    let index = ColumnIndexProto {
        columns: vec![ColumnLocation {
            field_id: 0,
            offset: 8,
            length: size - 8,
        }],
        num_rows: 1,
    };
    let index_block = encode_block(index.encode_to_vec());
    let index_offset = size;
    let footer = Footer {
        column_index_offset: index_offset,
        column_index_length: index_block.len() as u32,
        num_columns: 1,
        num_rows: 1,
        major: quiver_engine::format::FORMAT_MAJOR,
        minor: quiver_engine::format::FORMAT_MINOR,
    };
    let file = std::fs::File::create(dir.path().join("big.qvd")).expect("create");
    file.set_len(index_offset).expect("sparse");
    use std::io::{Seek, Write};
    let mut file = file;
    file.seek(std::io::SeekFrom::Start(index_offset))
        .expect("seek");
    file.write_all(&index_block).expect("index");
    file.write_all(&footer.encode()).expect("footer");
    drop(file);
    runtime().block_on(async {
        let before = storage.io_stats();
        let err = quiver_engine::format::reader::read_metadata(&storage, &path)
            .await
            .expect_err("claimed metadata larger than allowed");
        assert!(
            matches!(&err, Error::Corrupt { reason, .. } if reason.contains("larger than")),
            "{err}"
        );
        let read = storage.io_stats().since(&before).read_bytes;
        assert!(read <= 64 * 1024, "read {read} bytes");
    });
}
