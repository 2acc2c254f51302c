// A real S3 API on loopback for tests and benchmarks: moto's server (installed once into a
// private virtual environment under node_modules/.cache), started on a free port, and a small
// HTTP proxy in front of it that can add latency, answer 503 SlowDown or drop connections.
//
//   node scripts/s3-server.mjs install    installs moto (what `npm test` needs) and exits
//   node scripts/s3-server.mjs            starts a server and prints its endpoint until killed
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
/** moto's conditional PUT (If-None-Match: *) works from 5.1.11 on, and not in 5.2.0. */
export const MOTO_VERSION = "5.1.22";
const venv = path.join(root, "node_modules", ".cache", `quiver-moto-${MOTO_VERSION}`);
const python = path.join(venv, process.platform === "win32" ? "Scripts/python.exe" : "bin/python");

function run(cmd, args) {
  const r = spawnSync(cmd, args, { stdio: ["ignore", "pipe", "pipe"], encoding: "utf8" });
  return r.status === 0 ? r.stdout : null;
}

/** Installs moto into the private environment unless it is there; returns its python. */
export function installMoto() {
  if (existsSync(python) && run(python, ["-c", "import moto.server"]) !== null) return python;
  const system = ["python3", "python"].find((p) => run(p, ["--version"]) !== null);
  if (!system) throw new Error("the S3 tests need Python 3 (python3 on PATH) to run moto's S3 server");
  mkdirSync(path.dirname(venv), { recursive: true });
  const steps = [
    [system, ["-m", "venv", venv]],
    [python, ["-m", "pip", "install", "--quiet", "--disable-pip-version-check", `moto[server]==${MOTO_VERSION}`]],
  ];
  for (const [cmd, args] of steps) {
    const r = spawnSync(cmd, args, { stdio: "inherit" });
    if (r.status !== 0) throw new Error(`installing moto for the S3 tests failed: ${cmd} ${args.join(" ")}`);
  }
  return python;
}

/** A port free now on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function waitUntilUp(endpoint, child, deadlineMs) {
  const until = Date.now() + deadlineMs;
  while (Date.now() < until) {
    if (child.exitCode !== null) throw new Error(`moto's server exited with code ${child.exitCode}`);
    try {
      const res = await fetch(`${endpoint}/`);
      await res.arrayBuffer();
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error(`moto's server did not answer at ${endpoint} within ${deadlineMs} ms`);
}

/**
 * Starts moto's S3 server on a free loopback port. Returns `{ endpoint, stop() }`; buckets are
 * made with `createBucket(endpoint, name)`.
 */
export async function startMoto() {
  const py = installMoto();
  const port = await freePort();
  const child = spawn(py, ["-m", "moto.server", "-H", "127.0.0.1", "-p", String(port)], {
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, MOTO_ALLOW_NONEXISTENT_REGION: "true" },
  });
  let stderr = "";
  child.stderr.on("data", (d) => {
    stderr = (stderr + d).slice(-4000);
  });
  const endpoint = `http://127.0.0.1:${port}`;
  try {
    await waitUntilUp(endpoint, child, 30_000);
  } catch (e) {
    child.kill("SIGKILL");
    throw new Error(`${e.message}\n${stderr}`);
  }
  return {
    endpoint,
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once("exit", () => resolve());
        child.kill("SIGTERM");
        setTimeout(() => child.kill("SIGKILL"), 2000).unref();
      }),
  };
}

/** Creates a bucket (moto accepts unsigned requests). */
export async function createBucket(endpoint, name) {
  const res = await fetch(`${endpoint}/${name}`, { method: "PUT" });
  await res.arrayBuffer();
  if (!res.ok && res.status !== 409) throw new Error(`creating bucket ${name} failed: HTTP ${res.status}`);
}

/** Storage options that point Quiver at a loopback S3 endpoint. */
export function s3Options(endpoint) {
  return {
    endpoint,
    region: "us-east-1",
    accessKeyId: "testing",
    secretAccessKey: "testing",
    allowHttp: "true",
  };
}

const SLOW_DOWN =
  '<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>';

/**
 * An HTTP proxy in front of `target` (an endpoint). `faults` may change at any time:
 * `latencyMs` added before each request is forwarded; `slowDown` (0..1) share of requests
 * answered 503 SlowDown without forwarding; `reset` (0..1) share forwarded whose client
 * connection is then destroyed before the answer (the server acted, the client never knows).
 * `stripConditional`: drop If-None-Match headers (a store that does not honour conditional
 * writes). `timeline`: an array that receives `{ method, url, range, start, end }` (performance.now()
 * milliseconds, latency included) of each request once answered. `counts` says what it did.
 * Returns `{ endpoint, faults, counts, close() }`.
 */
export async function startProxy(target, faults = {}) {
  const upstream = new URL(target);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  const state = { latencyMs: 0, slowDown: 0, reset: 0, stripConditional: false, ...faults };
  const counts = { requests: 0, slowDowns: 0, resets: 0 };
  const server = http.createServer((req, res) => {
    counts.requests++;
    if (state.log) state.log.push(`${req.method} ${req.url}${req.headers.range ? ` ${req.headers.range}` : ""}`);
    if (state.timeline) {
      const timeline = state.timeline;
      const start = performance.now();
      res.once("close", () => timeline.push({ method: req.method, url: req.url, range: req.headers.range, start, end: performance.now() }));
    }
    const forward = () => {
      if (Math.random() < state.slowDown) {
        counts.slowDowns++;
        req.resume();
        res.writeHead(503, { "content-type": "application/xml", "content-length": Buffer.byteLength(SLOW_DOWN) });
        res.end(SLOW_DOWN);
        return;
      }
      const resetThis = Math.random() < state.reset;
      const headers = { ...req.headers };
      if (state.stripConditional) delete headers["if-none-match"];
      const out = http.request(
        {
          host: upstream.hostname,
          port: upstream.port,
          method: req.method,
          path: req.url,
          headers,
          agent,
        },
        (answer) => {
          if (resetThis) {
            counts.resets++;
            answer.resume();
            answer.on("end", () => req.socket.destroy());
            return;
          }
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        },
      );
      out.on("error", () => res.destroy());
      req.pipe(out);
    };
    if (state.latencyMs > 0) setTimeout(forward, state.latencyMs);
    else forward();
  });
  const port = await freePort();
  await new Promise((resolve) => server.listen(port, "127.0.0.1", resolve));
  return {
    endpoint: `http://127.0.0.1:${port}`,
    faults: state,
    counts,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
        agent.destroy();
      }),
  };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  if (process.argv[2] === "install") {
    installMoto();
  } else {
    const moto = await startMoto();
    console.log(moto.endpoint);
    const stop = () => moto.stop().then(() => process.exit(0));
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  }
}
