import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["__test__/**/*.test.ts"],
    testTimeout: 60_000,
    globalSetup: ["__test__/support/s3-setup.ts"],
  },
});
