// Marks dist/cjs as CommonJS and gives it its own "#native" import: package imports resolve in
// the scope of the nearest package.json, which for dist/cjs is the one written here.
import { writeFileSync } from "node:fs";

const pkg = { type: "commonjs", imports: { "#native": "./load-native.cjs" } };
writeFileSync(new URL("../dist/cjs/package.json", import.meta.url), JSON.stringify(pkg, null, 2) + "\n");
writeFileSync(
  new URL("../dist/cjs/load-native.cjs", import.meta.url),
  '"use strict";\nmodule.exports = require("../../loader/native.cjs");\n',
);
