import { startMoto, createBucket, startProxy } from "../scripts/s3-server.mjs";
const moto = await startMoto();
await createBucket(moto.endpoint, "raw-dbg");
const proxy = await startProxy(moto.endpoint, { latencyMs: 10 });
const body = Buffer.alloc(8 << 20, 7);
for (const conc of [1, 4, 8]) {
  const n = 38;
  let next = 0;
  const st = performance.now();
  await Promise.all(Array.from({ length: conc }, async () => {
    while (next < n) { const i = next++; const r = await fetch(`${proxy.endpoint}/raw-dbg/o${conc}-${i}`, { method: "PUT", body }); await r.arrayBuffer(); }
  }));
  const s = (performance.now() - st) / 1000;
  console.log(`concurrency ${conc}: ${(n * 8 / s).toFixed(0)} MB/s, ${s.toFixed(2)} s for ${n * 8} MB`);
}
await proxy.close(); await moto.stop();
