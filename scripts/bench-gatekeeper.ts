import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import * as http from "node:http";
import { cpus, tmpdir } from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import autocannon from "autocannon";
import { Client } from "pg";
import { bundleGatekeeper } from "../programs/gatekeeper/bundle";
import { newApiKey } from "../programs/gatekeeper/keys";
import { freeLoopbackPort, PostgresCluster } from "../test/helpers/postgres";
import { table } from "./lib/plan-view";

/**
 * Load test of the gatekeeper as deployed: the esbuild bundle in its own Node process, the audit
 * spool fsync'ing every decision, a real PostgreSQL (a throwaway Debian cluster) receiving the
 * rows. autocannon drives GET /auth on loopback with a unique X-Request-Id per request and
 * remembers which were answered; afterwards every answered id must be in the table exactly once.
 * Targets on a 2-core machine: ≥ 5,000 decisions/s, p99 < 5 ms.
 *
 *   npx tsx scripts/bench-gatekeeper.ts [--duration 10] [--connections 16] [--warmup 2]
 */

const { values } = parseArgs({
  options: { duration: { type: "string", default: "10" }, connections: { type: "string", default: "16" }, warmup: { type: "string", default: "2" } },
  strict: true,
});
const DURATION_S = Number(values.duration);
const CONNECTIONS = Number(values.connections);
const WARMUP_S = Number(values.warmup);
const TARGET_RATE = 5000;
const TARGET_P99_MS = 5;
const BACKEND_KEY = "bench-backend-key";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function getJson(port: number, target: string): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: "127.0.0.1", port, path: target }, (res) => {
        let text = "";
        res.on("data", (c: Buffer) => (text += c.toString()));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as unknown }));
      })
      .on("error", reject);
  });
}

async function until(what: string, probe: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe().catch((error: Error) => (error.message.startsWith("the gatekeeper exited") ? Promise.reject(error) : false)))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

interface Run {
  readonly result: autocannon.Result;
  readonly answered: string[];
  /** Requests given an id (sent, or cut off when the run ended). */
  readonly issued: number;
  /** Every 200's response time, ms with sub-millisecond precision (autocannon's histogram keeps whole ms). */
  readonly latenciesMs: Float64Array;
}

const percentile = (sorted: Float64Array, p: number): number => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] : NaN);

/** One autocannon run; ids `<prefix>-<n>` per request, the answered ones collected. */
function drive(port: number, key: string, prefix: string, seconds: number, overallRate?: number): Promise<Run> {
  const answered: string[] = [];
  const latencies: number[] = [];
  let next = 0;
  const headers = { authorization: `Bearer ${key}`, "x-forwarded-for": "198.51.100.7", "x-forwarded-method": "POST", "x-forwarded-uri": "/v1/chat/completions" };
  return new Promise((resolve, reject) => {
    const instance = autocannon(
      {
        url: `http://127.0.0.1:${port}/auth?scope=llm`,
        connections: CONNECTIONS,
        pipelining: 1,
        duration: seconds,
        ...(overallRate ? { overallRate } : {}),
        requests: [
          {
            setupRequest: (request, context) => {
              const id = `${prefix}-${next++}`;
              (context as { id?: string }).id = id;
              return { ...request, headers: { ...headers, "x-request-id": id } };
            },
            onResponse: (status, _body, context) => {
              const id = (context as { id?: string }).id;
              if (status === 200 && id) answered.push(id);
            },
          },
        ],
      },
      (error: unknown, result) => (error ? reject(error) : resolve({ result, answered, issued: next, latenciesMs: Float64Array.from(latencies).sort() })),
    );
    instance.on("response", (_client, status, _bytes, responseTime) => {
      if (status === 200) latencies.push(responseTime);
    });
  });
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), "gk-bench-"));
  const cluster = await PostgresCluster.create();
  const child = { process: undefined as ReturnType<typeof spawn> | undefined, output: "" };
  try {
    const databaseUrl = await cluster.createDatabase("bench");
    const fresh = newApiKey();
    const keysFile = path.join(dir, "keys", "keys.json");
    mkdirSync(path.dirname(keysFile), { recursive: true });
    writeFileSync(keysFile, JSON.stringify({ version: 1, keys: [{ id: fresh.id, name: "bench", sha256: fresh.sha256, scopes: ["llm"], created: new Date().toISOString() }] }));
    const bundle = path.join(dir, "gatekeeper.js");
    writeFileSync(bundle, bundleGatekeeper());
    const port = await freeLoopbackPort();
    child.process = spawn(process.execPath, [bundle], {
      env: {
        PATH: process.env.PATH ?? "",
        GATEKEEPER_PORT: String(port),
        GATEKEEPER_HOST: "127.0.0.1",
        GATEKEEPER_KEYS_FILE: keysFile,
        GATEKEEPER_SPOOL_DIR: path.join(dir, "spool"),
        GATEKEEPER_BACKEND_KEY: BACKEND_KEY,
        // The bench measures the decision path, not the bucket: no key runs out.
        GATEKEEPER_DEFAULT_RATE_PER_MINUTE: "1000000",
        GATEKEEPER_DEFAULT_BURST: "1000000",
        DATABASE_URL: databaseUrl,
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    child.process.stdout?.on("data", (c: Buffer) => (child.output += c.toString()));
    child.process.stderr?.on("data", (c: Buffer) => (child.output += c.toString()));
    await until(
      "the gatekeeper to become healthy",
      async () => {
        if (child.process?.exitCode !== null) throw new Error(`the gatekeeper exited with ${child.process?.exitCode}`);
        return (await getJson(port, "/healthz")).status === 200;
      },
      15_000,
    );

    if (WARMUP_S > 0) await drive(port, fresh.key, "warmup", WARMUP_S);
    // Saturation: as fast as CONNECTIONS closed-loop clients go, for the throughput figure.
    const saturated = await drive(port, fresh.key, "bench-max", DURATION_S);
    // Paced at the target rate, for the latency figure. autocannon paces per second (each
    // connection sends its quota, then waits for the next second), so load comes in bursts.
    const paced = await drive(port, fresh.key, "bench-paced", DURATION_S, TARGET_RATE);
    const answered = [...saturated.answered, ...paced.answered];
    const sent = saturated.issued + paced.issued;
    const failures = (run: Run) => run.result.non2xx + run.result.errors + run.result.timeouts;

    const loadEnded = Date.now();
    await until(
      "the spool to be shipped",
      async () => {
        const health = (await getJson(port, "/healthz")).body as { spool: { unshippedBytes: number } };
        return health.spool.unshippedBytes === 0;
      },
      60_000,
    );
    const drainMs = Date.now() - loadEnded;
    const db = new Client({ connectionString: databaseUrl });
    db.on("error", () => undefined);
    await db.connect();
    const ids = (await db.query<{ request_id: string }>("SELECT request_id FROM gatekeeper.decisions WHERE request_id LIKE 'bench-%'")).rows.map((r) => r.request_id);
    await db.end();
    const rows = ids.length;
    const present = new Set(ids);
    const distinct = present.size;
    const missing = answered.filter((id) => !present.has(id)).length;

    const rate = (run: Run) => run.answered.length / ((run.result.finish.getTime() - run.result.start.getTime()) / 1000);
    const ms = (n: number) => n.toFixed(2);
    const maxRate = rate(saturated);
    const pacedP99 = percentile(paced.latenciesMs, 99);
    process.stdout.write(`Gatekeeper GET /auth on loopback, bundle in its own process; every decision fsync'ed to the spool (group commit) and shipped to PostgreSQL ${cluster.port}.\n`);
    process.stdout.write(`${CONNECTIONS} autocannon connections, ${DURATION_S} s per run after a ${WARMUP_S} s warm-up; Node ${process.version}, ${cpus().length} cores (autocannon, gatekeeper and PostgreSQL share them).\n\n`);
    process.stdout.write(
      `${table(
        ["run", "decisions/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "non-2xx/errors/timeouts"],
        [
          ["saturation", maxRate.toFixed(0), ms(percentile(saturated.latenciesMs, 50)), ms(percentile(saturated.latenciesMs, 99)), ms(percentile(saturated.latenciesMs, 99.9)), ms(saturated.latenciesMs[saturated.latenciesMs.length - 1] ?? NaN), String(failures(saturated))],
          [`paced at ${TARGET_RATE}/s`, rate(paced).toFixed(0), ms(percentile(paced.latenciesMs, 50)), ms(pacedP99), ms(percentile(paced.latenciesMs, 99.9)), ms(paced.latenciesMs[paced.latenciesMs.length - 1] ?? NaN), String(failures(paced))],
        ],
      )}\n\n`,
    );
    process.stdout.write(
      `${table(
        ["check", "value", "target", "met"],
        [
          ["decisions/s at saturation", maxRate.toFixed(0), `≥ ${TARGET_RATE}`, maxRate >= TARGET_RATE ? "yes" : "NO"],
          [`p99 latency at ${TARGET_RATE}/s, ms`, ms(pacedP99), `< ${TARGET_P99_MS}`, pacedP99 < TARGET_P99_MS ? "yes" : "NO"],
          ["refused or failed requests", String(failures(saturated) + failures(paced)), "0", failures(saturated) + failures(paced) === 0 ? "yes" : "NO"],
          ["requests issued / answered 200", `${sent} / ${answered.length}`, "", ""],
          ["audit rows in PostgreSQL", String(rows), "≥ answered, ≤ issued", rows >= answered.length && rows <= sent ? "yes" : "NO"],
          ["answered but missing from the table", String(missing), "0", missing === 0 ? "yes" : "NO"],
          ["duplicate request ids in the table", String(rows - distinct), "0", rows === distinct ? "yes" : "NO"],
          ["backlog shipped after the load ended, ms", String(drainMs), "", ""],
        ],
      )}\n`,
    );
    if (missing > 0 || rows !== distinct) process.exitCode = 1;
  } catch (error) {
    process.stderr.write(`bench failed: ${(error as Error).message}\ngatekeeper output:\n${child.output.slice(-4000)}\n`);
    process.exitCode = 1;
  } finally {
    child.process?.kill("SIGTERM");
    await sleep(200);
    await cluster.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

void main();
