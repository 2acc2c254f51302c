// Public TypeScript API of quiverdb. The connection, table and query API arrive with the Node
// API issue; until then this module exposes the native addon's version information.
import { createRequire } from "node:module";

interface NativeBinding {
  version(): string;
  formatVersion(): string;
}

const require = createRequire(import.meta.url);
const native: NativeBinding = require("../native/index.cjs");

/** Version of the native engine (equals the npm package version). */
export function version(): string {
  return native.version();
}

/** Major.minor version of the data file format this build writes. */
export function formatVersion(): string {
  return native.formatVersion();
}
