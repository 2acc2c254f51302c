// vitest global setup: one loopback S3 server (moto) for the whole run, provided to the test
// files as `s3Endpoint`. Installing moto the first time takes about half a minute.
import type { TestProject } from "vitest/node";
// @ts-expect-error: a plain ESM script without types
import { startMoto } from "../../scripts/s3-server.mjs";

declare module "vitest" {
  export interface ProvidedContext {
    s3Endpoint: string;
  }
}

export default async function setup(project: TestProject) {
  const moto = await startMoto();
  project.provide("s3Endpoint", moto.endpoint);
  return async () => {
    await moto.stop();
  };
}
