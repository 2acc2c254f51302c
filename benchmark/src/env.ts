// Where and what a run measures: the testbed (machine) and the build under test.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import os from "node:os";
import { fileURLToPath } from "node:url";

export const repoRoot = fileURLToPath(new URL("../../", import.meta.url));

export interface Testbed {
  host: string;
  cpu_model: string;
  cpu_cores: number;
  memory_bytes: number;
  os: string;
}

export interface Build {
  package: string;
  version: string;
  git_commit: string;
  commit_time: Date | null;
  dirty: boolean;
}

export function testbed(): Testbed {
  const cpus = os.cpus();
  return {
    host: os.hostname(),
    cpu_model: cpus[0]?.model.trim() ?? "unknown",
    cpu_cores: cpus.length,
    memory_bytes: os.totalmem(),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
  };
}

function git(args: string[]): string | null {
  try {
    return execFileSync("git", args, { cwd: repoRoot, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    return null;
  }
}

export function build(): Build {
  const pkg = JSON.parse(readFileSync(new URL("package.json", `file://${repoRoot}`), "utf8")) as {
    name: string;
    version: string;
  };
  const commitTime = git(["log", "-1", "--format=%cI"]);
  const status = git(["status", "--porcelain", "--untracked-files=no"]);
  return {
    package: pkg.name,
    version: pkg.version,
    git_commit: git(["rev-parse", "HEAD"]) ?? "unknown",
    commit_time: commitTime ? new Date(commitTime) : null,
    dirty: status === null ? false : status.length > 0,
  };
}

/** Version of an installed package, read from its package.json. */
export function installedVersion(name: string): string {
  const file = new URL(`node_modules/${name}/package.json`, `file://${repoRoot}`);
  return (JSON.parse(readFileSync(file, "utf8")) as { version: string }).version;
}
