// The "#native" package import (package.json "imports") resolves to loader/native.cjs, which
// loads the napi addon; its surface is typed in native.ts.
declare module "#native" {
  const binding: unknown;
  export default binding;
}
