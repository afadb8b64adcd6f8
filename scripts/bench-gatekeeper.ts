import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, fdatasyncSync, mkdirSync, mkdtempSync, openSync, rmSync, unlinkSync, writeFileSync, writeSync } from "node:fs";
import * as http from "node:http";
import { cpus, loadavg, tmpdir } from "node:os";
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
 * rows. Every request carries a unique X-Request-Id; afterwards every answered id must be in the
 * table exactly once.
 *
 * Two load shapes, each also run against a trivial Node HTTP server in the same run (same
 * headers, no work, no disk), so the machine's speed cancels out of the ratios:
 * - saturation: autocannon, `--connections` closed-loop clients as fast as they go (throughput);
 * - paced: open loop, requests sent on a fixed schedule of `--rate` per second, each one's latency
 *   counted from when it was due (so a stall is not hidden by sending less: no coordinated omission).
 *   autocannon cannot do this: its rate sends each connection's quota back to back at the start of
 *   each second, which is saturation for most of the second.
 * The spool's disk is timed too (write + fdatasync of a group commit's size): the decision waits
 * for that by design, so it is the floor under the gatekeeper's latency.
 * Targets on a 2-core machine: ≥ 5,000 decisions/s at saturation, p99 < 5 ms paced at 5,000/s.
 *
 *   npm run bench -- gatekeeper [--duration 10] [--connections 16] [--rate 5000] [--warmup 2] [--repeat 1]
 */

const { values } = parseArgs({
  options: {
    duration: { type: "string", default: "10" },
    connections: { type: "string", default: "16" },
    rate: { type: "string", default: "5000" },
    warmup: { type: "string", default: "2" },
    repeat: { type: "string", default: "1" },
  },
  strict: true,
});
const DURATION_S = Number(values.duration);
const CONNECTIONS = Number(values.connections);
const RATE = Number(values.rate);
const WARMUP_S = Number(values.warmup);
const REPEAT = Math.max(1, Number(values.repeat));
const TARGET_RATE = 5000;
const TARGET_P99_MS = 5;
const BACKEND_KEY = "bench-backend-key";
const FORWARDED = { "x-forwarded-for": "198.51.100.7", "x-forwarded-method": "POST", "x-forwarded-uri": "/v1/chat/completions" };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function getJson(port: number, target: string): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: "127.0.0.1", port, path: target }, (res) => {
        let text = "";
        res.on("data", (c: Buffer) => (text += c.toString()));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text || "null") as unknown }));
      })
      .on("error", reject);
  });
}

async function until(what: string, probe: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe().catch((error: Error) => (error.message.includes("exited") ? Promise.reject(error) : false)))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

interface Run {
  readonly label: string;
  /** Answered 200 per second of the run. */
  readonly rate: number;
  /** Every 200's latency in ms, sorted (sub-millisecond precision). */
  readonly latenciesMs: Float64Array;
  readonly failures: number;
  readonly answered: readonly string[];
  readonly issued: number;
}

const percentile = (sorted: Float64Array, p: number): number => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] : NaN);

/** Closed loop: CONNECTIONS autocannon clients, one request in flight each, as fast as they go. */
function saturate(label: string, port: number, key: string, prefix: string, seconds: number): Promise<Run> {
  const answered: string[] = [];
  const latencies: number[] = [];
  let next = 0;
  const headers = { authorization: `Bearer ${key}`, ...FORWARDED };
  return new Promise((resolve, reject) => {
    const instance = autocannon(
      {
        url: `http://127.0.0.1:${port}/auth?scope=llm`,
        connections: CONNECTIONS,
        pipelining: 1,
        duration: seconds,
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
      (error: unknown, result) => {
        if (error) return reject(error);
        const elapsedS = (result.finish.getTime() - result.start.getTime()) / 1000;
        resolve({ label, rate: answered.length / elapsedS, latenciesMs: Float64Array.from(latencies).sort(), failures: result.non2xx + result.errors + result.timeouts, answered, issued: next });
      },
    );
    instance.on("response", (_client, status, _bytes, responseTime) => {
      if (status === 200) latencies.push(responseTime);
    });
  });
}

/**
 * Open loop: request i is due at start + i / rate and is sent then (the sender wakes every
 * millisecond and sends whatever is due), on as many keep-alive connections as are needed.
 * Latency runs from when the request was due to its answer, so queueing anywhere counts.
 */
async function pace(label: string, port: number, key: string, prefix: string, seconds: number, rate: number): Promise<Run> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 512 });
  const total = Math.round(seconds * rate);
  const latencies = new Float64Array(total);
  const answered: string[] = [];
  let done = 0;
  let ok = 0;
  let failures = 0;
  let sent = 0;
  const start = performance.now();
  await new Promise<void>((finish) => {
    const settle = () => {
      done += 1;
      if (done === total) finish();
    };
    const send = (index: number) => {
      const dueMs = start + (index * 1000) / rate;
      const id = `${prefix}-${index}`;
      const req = http.get({ host: "127.0.0.1", port, path: "/auth?scope=llm", agent, headers: { authorization: `Bearer ${key}`, ...FORWARDED, "x-request-id": id } }, (res) => {
        res.resume();
        res.on("end", () => {
          if (res.statusCode === 200) {
            latencies[ok++] = performance.now() - dueMs;
            answered.push(id);
          } else failures += 1;
          settle();
        });
      });
      req.on("error", () => {
        failures += 1;
        settle();
      });
    };
    const tick = () => {
      const due = Math.min(total, Math.floor(((performance.now() - start) * rate) / 1000) + 1);
      while (sent < due) send(sent++);
      if (sent < total) setTimeout(tick, 1);
    };
    tick();
  });
  const elapsedS = (performance.now() - start) / 1000;
  agent.destroy();
  return { label, rate: ok / elapsedS, latenciesMs: latencies.slice(0, ok).sort(), failures, answered, issued: total };
}

/** Write + fdatasync of a group commit's worth of lines (16 × 300 bytes), as the spool does, in its directory. */
function diskSyncMs(dir: string, samples: number): Float64Array {
  const file = path.join(dir, "bench-fdatasync.tmp");
  const fd = openSync(file, "wx");
  const data = Buffer.alloc(16 * 300, 0x61);
  const times = new Float64Array(samples);
  try {
    for (let i = 0; i < samples; i++) {
      const started = performance.now();
      writeSync(fd, data);
      fdatasyncSync(fd);
      times[i] = performance.now() - started;
    }
  } finally {
    closeSync(fd);
    unlinkSync(file);
  }
  return times.sort();
}

/** The control: Node's HTTP server answering as the gatekeeper does on a yes, doing nothing else. */
const TRIVIAL_SERVER = `
const http = require("node:http");
http.createServer((req, res) => {
  res.writeHead(200, { Authorization: "Bearer ${BACKEND_KEY}", "X-Api-Key": "${BACKEND_KEY}", "X-Hub-Key-Id": "k_bench", "X-Request-Id": String(req.headers["x-request-id"] ?? ""), "Cache-Control": "no-store", "Content-Length": "0" });
  res.end();
}).listen(Number(process.env.PORT), "127.0.0.1");
`;

function startProcess(args: readonly string[], env: Record<string, string>): { child: ChildProcess; output: () => string } {
  const child = spawn(process.execPath, [...args], { env: { PATH: process.env.PATH ?? "", ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout?.on("data", (c: Buffer) => (output += c.toString()));
  child.stderr?.on("data", (c: Buffer) => (output += c.toString()));
  return { child, output: () => output };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), "gk-bench-"));
  const cluster = await PostgresCluster.create();
  const children: { child: ChildProcess; output: () => string }[] = [];
  const loadAtStart = loadavg();
  try {
    const databaseUrl = await cluster.createDatabase("bench");
    const fresh = newApiKey();
    const keysFile = path.join(dir, "keys", "keys.json");
    mkdirSync(path.dirname(keysFile), { recursive: true });
    writeFileSync(keysFile, JSON.stringify({ version: 1, keys: [{ id: fresh.id, name: "bench", sha256: fresh.sha256, scopes: ["llm"], created: new Date().toISOString() }] }));
    const bundle = path.join(dir, "gatekeeper.js");
    writeFileSync(bundle, bundleGatekeeper());
    const spoolDir = path.join(dir, "spool");
    mkdirSync(spoolDir);
    const syncMs = diskSyncMs(spoolDir, 400);

    const gatekeeperPort = await freeLoopbackPort();
    const gatekeeper = startProcess([bundle], {
      GATEKEEPER_PORT: String(gatekeeperPort),
      GATEKEEPER_HOST: "127.0.0.1",
      GATEKEEPER_KEYS_FILE: keysFile,
      GATEKEEPER_SPOOL_DIR: spoolDir,
      GATEKEEPER_BACKEND_KEY: BACKEND_KEY,
      // The bench measures the decision path, not the bucket: no key runs out.
      GATEKEEPER_DEFAULT_RATE_PER_MINUTE: "1000000",
      GATEKEEPER_DEFAULT_BURST: "1000000",
      DATABASE_URL: databaseUrl,
    });
    children.push(gatekeeper);
    const trivialPort = await freeLoopbackPort();
    const trivial = startProcess(["-e", TRIVIAL_SERVER], { PORT: String(trivialPort) });
    children.push(trivial);
    const exited = (c: { child: ChildProcess }, name: string) => {
      if (c.child.exitCode !== null) throw new Error(`the ${name} exited with ${c.child.exitCode}`);
    };
    await until(
      "the gatekeeper to become healthy",
      async () => {
        exited(gatekeeper, "gatekeeper");
        return (await getJson(gatekeeperPort, "/healthz")).status === 200;
      },
      15_000,
    );
    await until(
      "the trivial server to answer",
      async () => {
        exited(trivial, "trivial server");
        return (await getJson(trivialPort, "/auth")).status === 200;
      },
      15_000,
    );

    if (WARMUP_S > 0) {
      await saturate("warm-up", trivialPort, fresh.key, "warmup", WARMUP_S);
      await saturate("warm-up", gatekeeperPort, fresh.key, "warmup", WARMUP_S);
    }
    const runs: { trivialMax: Run; gatekeeperMax: Run; trivialPaced: Run; gatekeeperPaced: Run }[] = [];
    for (let round = 0; round < REPEAT; round++) {
      // Interleaved, so drift in the machine's load hits both sides alike.
      const trivialMax = await saturate("trivial server, saturation", trivialPort, fresh.key, `trivial-max-${round}`, DURATION_S);
      const gatekeeperMax = await saturate("gatekeeper, saturation", gatekeeperPort, fresh.key, `bench-max-${round}`, DURATION_S);
      const trivialPaced = await pace(`trivial server, paced ${RATE}/s`, trivialPort, fresh.key, `trivial-paced-${round}`, DURATION_S, RATE);
      const gatekeeperPaced = await pace(`gatekeeper, paced ${RATE}/s`, gatekeeperPort, fresh.key, `bench-paced-${round}`, DURATION_S, RATE);
      runs.push({ trivialMax, gatekeeperMax, trivialPaced, gatekeeperPaced });
    }
    const gatekeeperRuns = runs.flatMap((r) => [r.gatekeeperMax, r.gatekeeperPaced]);
    const answered = gatekeeperRuns.flatMap((r) => r.answered);
    const issued = gatekeeperRuns.reduce((sum, r) => sum + r.issued, 0);
    const failures = gatekeeperRuns.reduce((sum, r) => sum + r.failures, 0);

    const loadEnded = Date.now();
    await until(
      "the spool to be shipped",
      async () => {
        const health = (await getJson(gatekeeperPort, "/healthz")).body as { spool: { unshippedBytes: number } };
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
    const present = new Set(ids);
    const missing = answered.filter((id) => !present.has(id)).length;

    const ms = (n: number) => n.toFixed(2);
    const row = (run: Run) => [run.label, run.rate.toFixed(0), ms(percentile(run.latenciesMs, 50)), ms(percentile(run.latenciesMs, 99)), ms(percentile(run.latenciesMs, 99.9)), ms(run.latenciesMs[run.latenciesMs.length - 1] ?? NaN), String(run.failures)];
    const loadAtEnd = loadavg();
    const out = (text: string) => process.stdout.write(`${text}\n`);
    out(`Gatekeeper GET /auth on loopback: the bundle in its own process, every decision written and fdatasync'ed to the spool (group commit) and shipped to PostgreSQL ${cluster.port}.`);
    out(`Machine: ${cpus()[0]?.model ?? "unknown CPU"}, ${cpus().length} cores shared by the load generator, the gatekeeper and PostgreSQL; Node ${process.version}.`);
    out(`Load average (1/5/15 min): ${loadAtStart.map((l) => l.toFixed(2)).join(" / ")} at the start, ${loadAtEnd.map((l) => l.toFixed(2)).join(" / ")} at the end. Figures are only comparable when it is low.`);
    out(`Saturation: ${CONNECTIONS} autocannon connections. Paced: ${RATE}/s on a fixed schedule, latency from when each request was due. ${DURATION_S} s per run, ${REPEAT} round(s), ${WARMUP_S} s warm-up.`);
    out(`Spool disk, write + fdatasync of 4.8 kB (400 samples): p50 ${ms(percentile(syncMs, 50))} ms, p99 ${ms(percentile(syncMs, 99))} ms.\n`);
    out(table(["run", "answered/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "non-200/errors"], runs.flatMap((r) => [row(r.trivialMax), row(r.gatekeeperMax), row(r.trivialPaced), row(r.gatekeeperPaced)])));
    out("");
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const maxRate = median(runs.map((r) => r.gatekeeperMax.rate));
    const pacedP99 = median(runs.map((r) => percentile(r.gatekeeperPaced.latenciesMs, 99)));
    const throughputRatio = median(runs.map((r) => r.gatekeeperMax.rate / r.trivialMax.rate));
    const p99Ratio = median(runs.map((r) => percentile(r.gatekeeperPaced.latenciesMs, 99) / percentile(r.trivialPaced.latenciesMs, 99)));
    const p99OverDisk = median(runs.map((r) => percentile(r.gatekeeperPaced.latenciesMs, 99))) / percentile(syncMs, 99);
    out(
      table(
        ["figure (median over rounds)", "value"],
        [
          ["gatekeeper ÷ trivial server, answered/s at saturation", throughputRatio.toFixed(2)],
          [`gatekeeper ÷ trivial server, p99 paced at ${RATE}/s`, p99Ratio.toFixed(2)],
          [`gatekeeper p99 paced at ${RATE}/s ÷ the disk's fdatasync p99`, p99OverDisk.toFixed(2)],
        ],
      ),
    );
    out("");
    out(
      table(
        ["check", "value", "target", "met"],
        [
          ["decisions/s at saturation", maxRate.toFixed(0), `≥ ${TARGET_RATE}`, maxRate >= TARGET_RATE ? "yes" : "NO"],
          [`p99 latency paced at ${RATE}/s, ms`, ms(pacedP99), `< ${TARGET_P99_MS}${RATE === TARGET_RATE ? "" : ` (target is at ${TARGET_RATE}/s)`}`, RATE === TARGET_RATE && pacedP99 < TARGET_P99_MS ? "yes" : "NO"],
          ["refused or failed requests", String(failures), "0", failures === 0 ? "yes" : "NO"],
          ["requests issued / answered 200", `${issued} / ${answered.length}`, "", ""],
          ["audit rows in PostgreSQL", String(ids.length), "≥ answered, ≤ issued", ids.length >= answered.length && ids.length <= issued ? "yes" : "NO"],
          ["answered but missing from the table", String(missing), "0", missing === 0 ? "yes" : "NO"],
          ["duplicate request ids in the table", String(ids.length - present.size), "0", ids.length === present.size ? "yes" : "NO"],
          ["backlog shipped after the load ended, ms", String(drainMs), "", ""],
        ],
      ),
    );
    if (missing > 0 || ids.length !== present.size) process.exitCode = 1;
  } catch (error) {
    process.stderr.write(`bench failed: ${(error as Error).message}\n${children.map((c) => c.output().slice(-4000)).join("\n")}\n`);
    process.exitCode = 1;
  } finally {
    for (const c of children) c.child.kill("SIGTERM");
    await sleep(300);
    await cluster.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

void main();
