//! Node.js binding of Quiver (napi-rs). Thin by design: argument conversion, async tasks and
//! error mapping only; the engine lives in `crates/quiver-engine`. Data crosses the boundary
//! as Arrow IPC stream bytes (one copy); the TypeScript layer in `lib/` decodes them with
//! apache-arrow and turns errors into typed `Error` subclasses using the `[Code]` prefix that
//! [`to_js_error`] puts on every message.

pub mod args;
pub mod connection;
pub mod errors;
pub mod fts;
pub mod index;
pub mod ipc;
pub mod logging;
pub mod maintenance;
pub mod query;
pub mod table;
pub mod writer;

use napi_derive::napi;

/// napi's tokio runtime with a small blocking pool: local file reads run on blocking threads,
/// and every extra thread keeps a malloc arena of its own, holding freed read buffers (a
/// serving process's peak RSS grew by tens of MiB that way).
#[napi_derive::module_init]
fn init_runtime() {
    logging::init();
    // The compute pool (searches, index builds, scans' decoding): one thread a core unless
    // QUIVER_CPU_THREADS says otherwise (several processes on one machine, or an app that
    // keeps a core for its UI).
    if let Ok(value) = std::env::var("QUIVER_CPU_THREADS") {
        match value.trim().parse::<usize>() {
            Ok(n) if n > 0 => {
                let _ = rayon::ThreadPoolBuilder::new().num_threads(n).build_global();
            }
            _ => eprintln!(
                "quiverdb: QUIVER_CPU_THREADS={value:?} is not a whole number above 0; using one thread a core"
            ),
        }
    }
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    if let Ok(runtime) = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(2 * cores.max(2))
        .build()
    {
        napi::bindgen_prelude::create_custom_tokio_runtime(runtime);
    }
}

/// Version of the native addon (matches the npm package version).
#[napi]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

/// Major.minor version of the data file format this build writes.
#[napi]
pub fn format_version() -> String {
    format!(
        "{}.{}",
        quiver_engine::format::FORMAT_MAJOR,
        quiver_engine::format::FORMAT_MINOR
    )
}
