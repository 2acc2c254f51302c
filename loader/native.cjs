// Loads the native engine: the `.node` file built in this checkout (development) or the
// prebuilt platform package (`quiverdb-<platform>`, installed as an optional dependency).
// Shared by the ESM and CommonJS builds through the package's "#native" import.
"use strict";

try {
  module.exports = require("../native/index.cjs");
} catch (error) {
  const platform = `${process.platform}-${process.arch}`;
  const message =
    `quiverdb: no native engine for this platform (${platform}, Node ${process.version}).\n` +
    "Prebuilt binaries exist for linux-x64-gnu, linux-x64-musl, linux-arm64-gnu, darwin-x64, " +
    "darwin-arm64 and win32-x64-msvc, installed as the optional dependency " +
    "`quiverdb-<platform>`.\n" +
    "- If yours is listed, reinstall without --no-optional/--omit=optional, and make sure the " +
    "lockfile was not made on another platform (delete node_modules and the lockfile, then " +
    "`npm install`).\n" +
    "- Otherwise build from source: clone the repository, install Rust (https://rustup.rs), " +
    "and run `npm install` there.";
  const wrapped = new Error(message, { cause: error });
  wrapped.code = "NativeBindingMissing";
  throw wrapped;
}
