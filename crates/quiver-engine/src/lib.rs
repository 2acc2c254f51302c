//! Quiver's engine: a columnar, versioned table store over `object_store`.
//!
//! Data flows one way: [`table`] (databases, tables, versions, commits) → [`format`] (data
//! files: pages, statistics, take) → [`storage`] (the object store). [`schema`] holds the
//! stored form of schemas shared by manifests and data files. See docs/ARCHITECTURE.md.

pub mod error;
pub mod events;
pub mod filter;
pub mod format;
pub mod fts;
pub mod index;
pub mod linalg;
pub mod maintenance;
pub mod plan;
pub mod query;
pub mod schema;
pub mod storage;
pub mod vocab;

pub use error::{Error, FilterError, FilterErrorKind, Result};
pub use filter::{Expression, Filter};
pub mod table;

pub use table::{
    batches_stream, BatchStream, ColumnAlteration, ConnectOptions, CreateMode, Database,
    DeleteResult, NewColumns, ScanOptions, Table, VersionInfo, WriteParams,
};
