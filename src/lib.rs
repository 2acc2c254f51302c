//! Node.js binding of Quiver (napi-rs). Thin by design: argument conversion, async tasks and
//! error mapping only; the engine lives in `crates/quiver-engine`. The full API arrives with
//! the Node API issue; for now the addon reports its version and engine format version.

use napi_derive::napi;

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
