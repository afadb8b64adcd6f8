import { benchArgs } from "./args";
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import {
  constants as fsConstants,
  promises as fsp,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import * as http from "node:http";
import * as net from "node:net";
import { cpus, loadavg, tmpdir } from "node:os";
import * as path from "node:path";
import autocannon from "autocannon";
import { Client } from "pg";
import { bundleGatekeeper } from "../programs/gatekeeper/bundle";
import { newApiKey } from "../programs/gatekeeper/keys";
import { DEFAULT_COMMITS_IN_FLIGHT } from "../programs/gatekeeper/spool";
import { freeLoopbackPort, PostgresCluster } from "../test/helpers/postgres";
import { table } from "../cli/plan/view";

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
 * The spool's disk is timed too (a group commit's worth, written durably): the decision waits for
 * that by design, so it is the floor under the gatekeeper's latency. The CPU time each server
 * process used per answered request is read from /proc (all its threads, kernel time included). A second gatekeeper with
 * one group commit in flight (the design before GATEKEEPER_SPOOL_COMMITS_IN_FLIGHT) runs alongside,
 * so the gain of committing several at once is measured in the same minutes.
 * Targets on a 2-core machine: ≥ 5,000 decisions/s at saturation, p99 < 5 ms paced at 5,000/s.
 *
 *   npm run bench -- gatekeeper [--duration 10] [--connections 16] [--rate 5000] [--warmup 2] [--repeat 1]
 */

const { values } = benchArgs(
  "bench gatekeeper",
  "usage: npm run bench -- gatekeeper [--duration 10] [--connections 16] [--rate 5000] [--warmup 2] [--repeat 1]",
  {
    duration: { type: "string", default: "10" },
    connections: { type: "string", default: "16" },
    rate: { type: "string", default: "5000" },
    warmup: { type: "string", default: "2" },
    repeat: { type: "string", default: "1" },
  },
);
const DURATION_S = Number(values.duration);
const CONNECTIONS = Number(values.connections);
const RATE = Number(values.rate);
const WARMUP_S = Number(values.warmup);
const REPEAT = Math.max(1, Number(values.repeat));
const TARGET_RATE = 5000;
const TARGET_P99_MS = 5;
const BACKEND_KEY = "bench-backend-key";
const FORWARDED = {
  "x-forwarded-for": "198.51.100.7",
  "x-forwarded-method": "POST",
  "x-forwarded-uri": "/v1/chat/completions",
};

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
  /** CPU time (user + system) of the server's process per answered request, µs; NaN where /proc is missing. */
  cpuUsPerAnswer: number;
  /** Gatekeeper runs: decisions per spool commit (group commit's batching). */
  decisionsPerCommit?: number;
  /** Answered 200 per second of the run. */
  readonly rate: number;
  /** Every 200's latency in ms, sorted (sub-millisecond precision). */
  readonly latenciesMs: Float64Array;
  readonly failures: number;
  readonly answered: readonly string[];
  readonly issued: number;
}

const percentile = (sorted: Float64Array, p: number): number =>
  sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] : NaN;

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
        resolve({
          label,
          cpuUsPerAnswer: NaN,
          rate: answered.length / elapsedS,
          latenciesMs: Float64Array.from(latencies).sort(),
          failures: result.non2xx + result.errors + result.timeouts,
          answered,
          issued: next,
        });
      },
    );
    instance.on("response", (_client, status, _bytes, responseTime) => {
      if (status === 200) latencies.push(responseTime);
    });
  });
}

/**
 * A minimal HTTP/1.1 keep-alive client for the paced runs: a raw request per socket at a time, the
 * answer parsed just enough (status, Content-Length, which every answer here carries). On 2 shared
 * cores the load generator's own cost lands on the gatekeeper's latency: Node's http client took
 * 83-134 µs of CPU per request here and fell seconds behind at 5,000/s; this one takes about 40 µs.
 */
class KeepAliveClient {
  private readonly idle: net.Socket[] = [];
  private readonly queue: { readonly request: string; readonly done: (status: number) => void }[] = [];
  private readonly waiting = new Map<net.Socket, (status: number) => void>();
  private open = 0;

  constructor(
    private readonly port: number,
    private readonly maxSockets: number,
  ) {}

  /** Sends `request` (the whole head, ending in a blank line); `done` gets the status, or 0 on a socket error. */
  send(request: string, done: (status: number) => void): void {
    const socket = this.idle.pop() ?? (this.open < this.maxSockets ? this.connect() : undefined);
    if (!socket) {
      this.queue.push({ request, done });
      return;
    }
    this.waiting.set(socket, done);
    socket.write(request);
  }

  close(): void {
    for (const socket of [...this.idle, ...this.waiting.keys()]) socket.destroy();
  }

  private connect(): net.Socket {
    this.open += 1;
    const socket = net.connect(this.port, "127.0.0.1");
    socket.setNoDelay(true);
    let buffered: Buffer | undefined;
    socket.on("data", (chunk: Buffer) => {
      buffered = buffered ? Buffer.concat([buffered, chunk]) : chunk;
      for (;;) {
        const headEnd: number = buffered.indexOf(HEAD_END);
        if (headEnd < 0) return;
        const head: string = buffered.toString("latin1", 0, headEnd);
        const length: number = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] ?? 0);
        if (buffered.length < headEnd + 4 + length) return;
        buffered = buffered.length === headEnd + 4 + length ? undefined : buffered.subarray(headEnd + 4 + length);
        const done = this.waiting.get(socket);
        this.waiting.delete(socket);
        this.release(socket);
        done?.(Number(head.slice(9, 12)));
        if (!buffered) return;
      }
    });
    const lost = () => {
      this.open -= 1;
      const index = this.idle.indexOf(socket);
      if (index >= 0) this.idle.splice(index, 1);
      const done = this.waiting.get(socket);
      this.waiting.delete(socket);
      done?.(0);
    };
    socket.once("close", lost);
    socket.on("error", () => undefined);
    return socket;
  }

  private release(socket: net.Socket): void {
    const next = this.queue.shift();
    if (!next) {
      this.idle.push(socket);
      return;
    }
    this.waiting.set(socket, next.done);
    socket.write(next.request);
  }
}
const HEAD_END = Buffer.from("\r\n\r\n");

/**
 * Open loop: request i is due at start + i / rate and is sent then (the sender wakes every
 * millisecond and sends whatever is due), on as many keep-alive connections as are needed.
 * Latency runs from when the request was due to its answer, so queueing anywhere counts.
 */
async function pace(
  label: string,
  port: number,
  key: string,
  prefix: string,
  seconds: number,
  rate: number,
): Promise<Run> {
  const client = new KeepAliveClient(port, 512);
  const total = Math.round(seconds * rate);
  const latencies = new Float64Array(total);
  const answered: string[] = [];
  const fixedHeaders = `Host: 127.0.0.1\r\nAuthorization: Bearer ${key}\r\nX-Forwarded-For: ${FORWARDED["x-forwarded-for"]}\r\nX-Forwarded-Method: ${FORWARDED["x-forwarded-method"]}\r\nX-Forwarded-Uri: ${FORWARDED["x-forwarded-uri"]}\r\n`;
  let done = 0;
  let ok = 0;
  let failures = 0;
  let sent = 0;
  const start = performance.now();
  await new Promise<void>((finish) => {
    const send = (index: number) => {
      const dueMs = start + (index * 1000) / rate;
      const id = `${prefix}-${index}`;
      client.send(`GET /auth?scope=llm HTTP/1.1\r\n${fixedHeaders}X-Request-Id: ${id}\r\n\r\n`, (status) => {
        if (status === 200) {
          latencies[ok++] = performance.now() - dueMs;
          answered.push(id);
        } else failures += 1;
        if (++done === total) finish();
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
  client.close();
  return {
    label,
    cpuUsPerAnswer: NaN,
    rate: ok / elapsedS,
    latenciesMs: latencies.slice(0, ok).sort(),
    failures,
    answered,
    issued: total,
  };
}

interface DiskSample {
  /** Sorted latencies, ms. */
  readonly ms: Float64Array;
  /** Process CPU (user + system, all threads) per operation, µs. */
  readonly cpuUs: number;
}

/**
 * The spool's disk, timed the two ways a commit can be made durable: a write followed by
 * fdatasync (two trips to libuv's thread pool), and one write on a file opened with O_DSYNC
 * (what the spool does). 4.8 kB each, a typical group commit; alternating blocks of 50.
 */
async function diskSync(
  dir: string,
  samples: number,
): Promise<{ readonly fdatasync: DiskSample; readonly dsync: DiskSample }> {
  const data = Buffer.alloc(16 * 300, 0x61);
  const run = async (kind: "fdatasync" | "dsync", file: string) => {
    const flags = fsConstants.O_WRONLY | fsConstants.O_CREAT | (kind === "dsync" ? fsConstants.O_DSYNC : 0);
    const handle = await fsp.open(file, flags, 0o600);
    const times: number[] = [];
    let offset = 0;
    let cpu = 0;
    try {
      for (let block = 0; block < samples / 50; block++) {
        const before = process.cpuUsage();
        for (let i = 0; i < 50; i++) {
          const started = performance.now();
          await handle.write(data, 0, data.length, offset);
          if (kind === "fdatasync") await handle.datasync();
          offset += data.length;
          times.push(performance.now() - started);
        }
        const used = process.cpuUsage(before);
        cpu += used.user + used.system;
        await new Promise((r) => setImmediate(r));
      }
    } finally {
      await handle.close();
      await fsp.rm(file, { force: true });
    }
    return { ms: Float64Array.from(times).sort(), cpuUs: cpu / times.length };
  };
  const fdatasync = await run("fdatasync", path.join(dir, "bench-fdatasync.tmp"));
  const dsync = await run("dsync", path.join(dir, "bench-dsync.tmp"));
  return { fdatasync, dsync };
}

/** A process's CPU time so far (utime + stime of /proc/<pid>/stat), µs; NaN where there is no /proc. */
function processCpuUs(pid: number | undefined): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name (which may hold spaces) start after the last ")".
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ticks = Number(fields[11]) + Number(fields[12]);
    const ticksPerSecond = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
    return (ticks / ticksPerSecond) * 1e6;
  } catch {
    return NaN;
  }
}

/** Runs `load` and records the server process's CPU time per answered request. */
async function measured(pid: number | undefined, load: () => Promise<Run>, gatekeeperPort?: number): Promise<Run> {
  const spool = async () =>
    gatekeeperPort === undefined
      ? undefined
      : ((await getJson(gatekeeperPort, "/healthz")).body as { spool: { decisions: number; commits: number } }).spool;
  const spoolBefore = await spool();
  const before = processCpuUs(pid);
  const run = await load();
  run.cpuUsPerAnswer = (processCpuUs(pid) - before) / Math.max(1, run.answered.length);
  const spoolAfter = await spool();
  if (spoolBefore && spoolAfter)
    run.decisionsPerCommit =
      (spoolAfter.decisions - spoolBefore.decisions) / Math.max(1, spoolAfter.commits - spoolBefore.commits);
  return run;
}

/** The control: Node's HTTP server answering as the gatekeeper does on a yes, doing nothing else. */
const TRIVIAL_SERVER = `
const http = require("node:http");
http.createServer((req, res) => {
  res.writeHead(200, { Authorization: "Bearer ${BACKEND_KEY}", "X-Api-Key": "${BACKEND_KEY}", "X-Hub-Key-Id": "k_bench", "X-Request-Id": String(req.headers["x-request-id"] ?? ""), "Cache-Control": "no-store", "Content-Length": "0" });
  res.end();
}).listen(Number(process.env.PORT), "127.0.0.1");
`;

function startProcess(
  args: readonly string[],
  env: Record<string, string>,
): { child: ChildProcess; output: () => string } {
  const child = spawn(process.execPath, [...args], {
    env: { PATH: process.env.PATH ?? "", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
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
    writeFileSync(
      keysFile,
      JSON.stringify({
        version: 1,
        keys: [
          { id: fresh.id, name: "bench", sha256: fresh.sha256, scopes: ["llm"], created: new Date().toISOString() },
        ],
      }),
    );
    const bundle = path.join(dir, "gatekeeper.js");
    writeFileSync(bundle, bundleGatekeeper());
    const disk = await diskSync(dir, 400);
    const syncMs = disk.dsync.ms;

    const startGatekeeper = async (label: string, commitsInFlight: number, prefix: string) => {
      const port = await freeLoopbackPort();
      const started = startProcess([bundle], {
        GATEKEEPER_PORT: String(port),
        GATEKEEPER_HOST: "127.0.0.1",
        GATEKEEPER_KEYS_FILE: keysFile,
        GATEKEEPER_SPOOL_DIR: path.join(dir, `spool-${commitsInFlight}`),
        GATEKEEPER_SPOOL_COMMITS_IN_FLIGHT: String(commitsInFlight),
        GATEKEEPER_BACKEND_KEY: BACKEND_KEY,
        // The bench measures the decision path, not the bucket: no key runs out.
        GATEKEEPER_DEFAULT_RATE_PER_MINUTE: "1000000",
        GATEKEEPER_DEFAULT_BURST: "1000000",
        DATABASE_URL: databaseUrl,
      });
      children.push(started);
      return { label, port, prefix, ...started };
    };
    const gatekeepers = [
      await startGatekeeper("gatekeeper", DEFAULT_COMMITS_IN_FLIGHT, "bench"),
      await startGatekeeper("gatekeeper, 1 commit in flight", 1, "bench1"),
    ];
    const trivialPort = await freeLoopbackPort();
    const trivial = startProcess(["-e", TRIVIAL_SERVER], { PORT: String(trivialPort) });
    children.push(trivial);
    const exited = (c: { child: ChildProcess }, name: string) => {
      if (c.child.exitCode !== null) throw new Error(`the ${name} exited with ${c.child.exitCode}`);
    };
    for (const gatekeeper of gatekeepers) {
      await until(
        `${gatekeeper.label} to become healthy`,
        async () => {
          exited(gatekeeper, gatekeeper.label);
          return (await getJson(gatekeeper.port, "/healthz")).status === 200;
        },
        15_000,
      );
    }
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
      for (const gatekeeper of gatekeepers) await saturate("warm-up", gatekeeper.port, fresh.key, "warmup", WARMUP_S);
    }
    const [main, serial] = gatekeepers;
    const runs: {
      trivialMax: Run;
      gatekeeperMax: Run;
      serialMax: Run;
      trivialPaced: Run;
      gatekeeperPaced: Run;
      serialPaced: Run;
    }[] = [];
    for (let round = 0; round < REPEAT; round++) {
      // Interleaved, so drift in the machine's load hits every side alike.
      const trivialMax = await measured(trivial.child.pid, () =>
        saturate("trivial server, saturation", trivialPort, fresh.key, `trivial-max-${round}`, DURATION_S),
      );
      const gatekeeperMax = await measured(
        main.child.pid,
        () => saturate(`${main.label}, saturation`, main.port, fresh.key, `${main.prefix}-max-${round}`, DURATION_S),
        main.port,
      );
      const serialMax = await measured(
        serial.child.pid,
        () =>
          saturate(`${serial.label}, saturation`, serial.port, fresh.key, `${serial.prefix}-max-${round}`, DURATION_S),
        serial.port,
      );
      const trivialPaced = await measured(trivial.child.pid, () =>
        pace(`trivial server, paced ${RATE}/s`, trivialPort, fresh.key, `trivial-paced-${round}`, DURATION_S, RATE),
      );
      const gatekeeperPaced = await measured(
        main.child.pid,
        () =>
          pace(
            `${main.label}, paced ${RATE}/s`,
            main.port,
            fresh.key,
            `${main.prefix}-paced-${round}`,
            DURATION_S,
            RATE,
          ),
        main.port,
      );
      const serialPaced = await measured(
        serial.child.pid,
        () =>
          pace(
            `${serial.label}, paced ${RATE}/s`,
            serial.port,
            fresh.key,
            `${serial.prefix}-paced-${round}`,
            DURATION_S,
            RATE,
          ),
        serial.port,
      );
      runs.push({ trivialMax, gatekeeperMax, serialMax, trivialPaced, gatekeeperPaced, serialPaced });
    }
    const gatekeeperRuns = runs.flatMap((r) => [r.gatekeeperMax, r.gatekeeperPaced, r.serialMax, r.serialPaced]);
    const answered = gatekeeperRuns.flatMap((r) => r.answered);
    const issued = gatekeeperRuns.reduce((sum, r) => sum + r.issued, 0);
    const failures = gatekeeperRuns.reduce((sum, r) => sum + r.failures, 0);

    const loadEnded = Date.now();
    for (const gatekeeper of gatekeepers) {
      await until(
        "the spools to be shipped",
        async () => {
          const health = (await getJson(gatekeeper.port, "/healthz")).body as { spool: { unshippedBytes: number } };
          return health.spool.unshippedBytes === 0;
        },
        60_000,
      );
    }
    const drainMs = Date.now() - loadEnded;
    const db = new Client({ connectionString: databaseUrl });
    db.on("error", () => undefined);
    await db.connect();
    const ids = (
      await db.query<{ request_id: string }>(
        "SELECT request_id FROM gatekeeper.decisions WHERE request_id LIKE 'bench-%' OR request_id LIKE 'bench1-%'",
      )
    ).rows.map((r) => r.request_id);
    await db.end();
    const present = new Set(ids);
    const missing = answered.filter((id) => !present.has(id)).length;

    const ms = (n: number) => n.toFixed(2);
    const row = (run: Run) => [
      run.label,
      run.rate.toFixed(0),
      ms(percentile(run.latenciesMs, 50)),
      ms(percentile(run.latenciesMs, 99)),
      ms(percentile(run.latenciesMs, 99.9)),
      ms(run.latenciesMs[run.latenciesMs.length - 1] ?? NaN),
      run.cpuUsPerAnswer.toFixed(0),
      run.decisionsPerCommit?.toFixed(1) ?? "",
      String(run.failures),
    ];
    const loadAtEnd = loadavg();
    const out = (text: string) => process.stdout.write(`${text}\n`);
    out(
      `Gatekeeper GET /auth on loopback: the bundle in its own process, every decision on disk in the spool before its answer (group commit) and shipped to PostgreSQL ${cluster.port}.`,
    );
    out(
      `Machine: ${cpus()[0]?.model ?? "unknown CPU"}, ${cpus().length} cores shared by the load generator, the gatekeeper and PostgreSQL; Node ${process.version}.`,
    );
    out(
      `Load average (1/5/15 min): ${loadAtStart.map((l) => l.toFixed(2)).join(" / ")} at the start, ${loadAtEnd.map((l) => l.toFixed(2)).join(" / ")} at the end. Figures are only comparable when it is low.`,
    );
    out(
      `Saturation: ${CONNECTIONS} autocannon connections. Paced: ${RATE}/s on a fixed schedule, latency from when each request was due. ${DURATION_S} s per run, ${REPEAT} round(s), ${WARMUP_S} s warm-up.`,
    );
    const diskLine = (name: string, d: DiskSample) =>
      `${name}: p50 ${ms(percentile(d.ms, 50))} ms, p99 ${ms(percentile(d.ms, 99))} ms, ${d.cpuUs.toFixed(0)} µs CPU each`;
    out(
      `Spool disk, 4.8 kB commits (${disk.dsync.ms.length} each): ${diskLine("write + fdatasync", disk.fdatasync)}; ${diskLine("O_DSYNC write (the spool's)", disk.dsync)}.\n`,
    );
    out(
      table(
        [
          "run",
          "answered/s",
          "p50 ms",
          "p99 ms",
          "p99.9 ms",
          "max ms",
          "server CPU µs/answer",
          "decisions/commit",
          "non-200/errors",
        ],
        runs.flatMap((r) => [
          row(r.trivialMax),
          row(r.gatekeeperMax),
          row(r.serialMax),
          row(r.trivialPaced),
          row(r.gatekeeperPaced),
          row(r.serialPaced),
        ]),
      ),
    );
    out("");
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const maxRate = median(runs.map((r) => r.gatekeeperMax.rate));
    const pacedP99 = median(runs.map((r) => percentile(r.gatekeeperPaced.latenciesMs, 99)));
    const throughputRatio = median(runs.map((r) => r.gatekeeperMax.rate / r.trivialMax.rate));
    const p99Ratio = median(
      runs.map((r) => percentile(r.gatekeeperPaced.latenciesMs, 99) / percentile(r.trivialPaced.latenciesMs, 99)),
    );
    const p99OverDisk = median(runs.map((r) => percentile(r.gatekeeperPaced.latenciesMs, 99))) / percentile(syncMs, 99);
    const overSerialRate = median(runs.map((r) => r.gatekeeperMax.rate / r.serialMax.rate));
    const overSerialP99 = median(
      runs.map((r) => percentile(r.gatekeeperPaced.latenciesMs, 99) / percentile(r.serialPaced.latenciesMs, 99)),
    );
    out(
      table(
        ["figure (median over rounds)", "value"],
        [
          ["gatekeeper ÷ trivial server, answered/s at saturation", throughputRatio.toFixed(2)],
          [`gatekeeper ÷ trivial server, p99 paced at ${RATE}/s`, p99Ratio.toFixed(2)],
          [`gatekeeper p99 paced at ${RATE}/s ÷ the disk's O_DSYNC write p99`, p99OverDisk.toFixed(2)],
          ["O_DSYNC write ÷ write + fdatasync, CPU per commit", (disk.dsync.cpuUs / disk.fdatasync.cpuUs).toFixed(2)],
          [
            "gatekeeper ÷ trivial server, CPU per answer at saturation",
            median(runs.map((r) => r.gatekeeperMax.cpuUsPerAnswer / r.trivialMax.cpuUsPerAnswer)).toFixed(2),
          ],
          [
            `gatekeeper ÷ trivial server, CPU per answer paced at ${RATE}/s`,
            median(runs.map((r) => r.gatekeeperPaced.cpuUsPerAnswer / r.trivialPaced.cpuUsPerAnswer)).toFixed(2),
          ],
          [`${DEFAULT_COMMITS_IN_FLIGHT} commits in flight ÷ 1, answered/s at saturation`, overSerialRate.toFixed(2)],
          [`${DEFAULT_COMMITS_IN_FLIGHT} commits in flight ÷ 1, p99 paced at ${RATE}/s`, overSerialP99.toFixed(2)],
        ],
      ),
    );
    out("");
    out(
      table(
        ["check", "value", "target", "met"],
        [
          ["decisions/s at saturation", maxRate.toFixed(0), `≥ ${TARGET_RATE}`, maxRate >= TARGET_RATE ? "yes" : "NO"],
          [
            `p99 latency paced at ${RATE}/s, ms`,
            ms(pacedP99),
            `< ${TARGET_P99_MS}${RATE === TARGET_RATE ? "" : ` (target is at ${TARGET_RATE}/s)`}`,
            RATE === TARGET_RATE && pacedP99 < TARGET_P99_MS ? "yes" : "NO",
          ],
          ["refused or failed requests", String(failures), "0", failures === 0 ? "yes" : "NO"],
          ["requests issued / answered 200", `${issued} / ${answered.length}`, "", ""],
          [
            "audit rows in PostgreSQL",
            String(ids.length),
            "≥ answered, ≤ issued",
            ids.length >= answered.length && ids.length <= issued ? "yes" : "NO",
          ],
          ["answered but missing from the table", String(missing), "0", missing === 0 ? "yes" : "NO"],
          [
            "duplicate request ids in the table",
            String(ids.length - present.size),
            "0",
            ids.length === present.size ? "yes" : "NO",
          ],
          ["backlog shipped after the load ended, ms", String(drainMs), "", ""],
        ],
      ),
    );
    if (missing > 0 || ids.length !== present.size) process.exitCode = 1;
  } catch (error) {
    process.stderr.write(
      `bench failed: ${(error as Error).message}\n${children.map((c) => c.output().slice(-4000)).join("\n")}\n`,
    );
    process.exitCode = 1;
  } finally {
    for (const c of children) c.child.kill("SIGTERM");
    await sleep(300);
    await cluster.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

void main();
