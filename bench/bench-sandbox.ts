import { benchArgs } from "./args";
import { spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { rmSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import * as path from "node:path";
import { silentLogger } from "../programs/gatekeeper/log";
import { startSandboxApi, type SandboxApi } from "../programs/sandbox/app";
import { readSandboxConfig } from "../programs/sandbox/config";
import { ROOTFS_TREE } from "../programs/sandbox/rootfs";
import { runscMissingReason, runscPath } from "../tools/runsc";
import { readRootfsManifest, rootfsMissingReason, sandboxRootfsDir } from "../tools/sandbox-rootfs";

/**
 * The sandbox's figures (`npm run bench -- sandbox`, as root): the wall time of a trivial
 * `python3 -c 'print(1)'` run plainly (the same interpreter from the languages' tree, chrooted),
 * through the sandbox API cold (no warm pool: `runsc run` per request) and warm (a fresh sandbox
 * from the pool: `runsc exec`), and executions per second with the pool and every slot busy.
 * Medians of --runs; the machine's load average is printed with them, since it moves everything.
 */

const { values } = benchArgs(
  "bench sandbox",
  "usage: npm run bench -- sandbox [--runs 10] [--duration 15] [--concurrency 2]",
  {
    runs: { type: "string", default: "10" },
    duration: { type: "string", default: "15" },
    concurrency: { type: "string", default: "2" },
  },
);
const runs = Math.max(3, Number(values.runs) || 10);
const durationMs = Math.max(3, Number(values.duration) || 15) * 1000;
const concurrency = Math.max(1, Number(values.concurrency) || 2);

const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const p90 = (xs: readonly number[]): number =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * 0.9))];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const load = () =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(" ");
const TRIVIAL = { language: "python", files: [{ content: "print(1)" }] };

async function startApi(
  label: string,
  env: Record<string, string>,
): Promise<{ api: SandboxApi; call: () => Promise<{ ms: number; wallMs: number }>; stateDir: string }> {
  const token = randomBytes(16).toString("hex");
  const tag = `bench-${label}-${process.pid}`;
  const stateDir = `/run/ih-${tag}`;
  const config = readSandboxConfig({
    SANDBOX_TOKEN_SHA256: createHash("sha256").update(token).digest("hex"),
    SANDBOX_PORT: "0",
    SANDBOX_RUNSC: runscPath()!,
    SANDBOX_ROOTFS_DIR: sandboxRootfsDir(),
    SANDBOX_STATE_DIR: stateDir,
    SANDBOX_CGROUP_PARENT: `/ih-${tag}`,
    ...env,
  });
  const api = await startSandboxApi(config, silentLogger);
  const url = `http://127.0.0.1:${api.port}/v1/sandbox/executions`;
  const call = async () => {
    const started = performance.now();
    const answer = await fetch(url, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "x-hub-key-id": "k_bench", "content-type": "application/json" },
      body: JSON.stringify(TRIVIAL),
    });
    const body = (await answer.json()) as { stdout?: string; wall_ms?: number; error?: { message: string } };
    if (answer.status !== 200 || body.stdout !== "1\n")
      throw new Error(`execution failed: ${answer.status} ${JSON.stringify(body).slice(0, 300)}`);
    return { ms: performance.now() - started, wallMs: body.wall_ms ?? 0 };
  };
  return { api, call, stateDir };
}

async function main(): Promise<void> {
  const missing = [
    process.getuid?.() !== 0 ? "run as root (runsc needs it)" : "",
    runscPath() ? "" : runscMissingReason(),
    readRootfsManifest() ? "" : rootfsMissingReason(),
  ].filter(Boolean);
  if (missing.length) throw new Error(missing.join("; "));
  const out = (line: string) => process.stdout.write(`${line}\n`);
  out(`machine: ${cpus().length} x ${cpus()[0]?.model ?? "?"}; load average ${load()} at start`);

  const rootfs = path.join(sandboxRootfsDir(), ROOTFS_TREE);
  const plain: number[] = [];
  for (let i = 0; i < runs; i++) {
    const started = performance.now();
    const result = spawnSync("chroot", [rootfs, "/usr/bin/python3", "-c", "print(1)"], { encoding: "utf8" });
    if (result.stdout !== "1\n") throw new Error(`plain run failed: ${result.stderr}`);
    plain.push(performance.now() - started);
  }

  const cold = await startApi("cold", { SANDBOX_WARM: "0", SANDBOX_SLOTS: "1" });
  const coldTimes: number[] = [];
  try {
    for (let i = 0; i < runs; i++) {
      coldTimes.push((await cold.call()).ms);
      await sleep(300);
    }
  } finally {
    await cold.api.close();
    rmSync(cold.stateDir, { recursive: true, force: true });
  }

  const warm = await startApi("warm", {
    SANDBOX_WARM: String(Math.max(2, concurrency)),
    SANDBOX_SLOTS: String(concurrency),
    SANDBOX_SLOTS_PER_KEY: String(concurrency),
  });
  const warmTimes: number[] = [];
  const execTimes: number[] = [];
  let completed = 0;
  let loadDuring = "";
  try {
    await sleep(4000);
    for (let i = 0; i < runs; i++) {
      // Enough time for the pool to refill: each request meets a warm sandbox.
      while (warm.api.executor.pool.readyCount === 0) await sleep(100);
      const { ms, wallMs } = await warm.call();
      warmTimes.push(ms);
      execTimes.push(wallMs);
      await sleep(300);
    }
    const until = performance.now() + durationMs;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (performance.now() < until) {
          await warm.call();
          completed += 1;
        }
      }),
    );
    loadDuring = load();
  } finally {
    await warm.api.close();
    rmSync(warm.stateDir, { recursive: true, force: true });
  }

  const row = (name: string, xs: readonly number[]) =>
    out(
      `${name.padEnd(44)} median ${median(xs).toFixed(0).padStart(5)} ms   p90 ${p90(xs).toFixed(0).padStart(5)} ms   x plain ${(median(xs) / median(plain)).toFixed(1)}`,
    );
  out(`trivial python3 -c 'print(1)', ${runs} runs each:`);
  row("plain (chroot into the languages' tree)", plain);
  row("cold: POST /executions, runsc run per request", coldTimes);
  row("warm: POST /executions, a pooled sandbox", warmTimes);
  row("  of which runsc exec (the API's wall_ms)", execTimes);
  out(
    `throughput: ${(completed / (durationMs / 1000)).toFixed(2)} executions/s with ${concurrency} clients and ${concurrency} slots for ${durationMs / 1000} s (each execution takes a fresh sandbox; the pool refills behind it); load average ${loadDuring} at the end`,
  );
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`bench sandbox: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);
