import { benchArgs } from "./lib/bench-args";
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import * as http from "node:http";
import { cpus, loadavg } from "node:os";
import { performance } from "node:perf_hooks";
import autocannon from "autocannon";
import { Client } from "pg";
import { TRAEFIK_VERSION } from "./tools/traefik";
import { GatewayRig, RIG_BACKEND_KEY, rigMissing } from "../test/helpers/gateway-rig";
import { table } from "./lib/plan-view";

/**
 * What the gateway adds to a request: the real Traefik (built at the image's version, the plan's
 * files), its two forwardAuth hops, the bundled gatekeeper fsync'ing every decision to its spool
 * and shipping it to a real PostgreSQL, against calling the same stand-in backend directly, in
 * one run on one machine (test/helpers/gateway-rig.ts). The request is a non-streaming chat
 * completion answered at once by the llama.cpp stand-in, so the backend's own time is nearly nil.
 *
 *   npm run bench -- gateway [--rounds 3] [--seconds 8] [--rate 1000] [--connections 16]
 *
 * - paced: an open-loop client sends `rate` requests a second, evenly spaced (1 ms timer ticks),
 *   latency from send to last byte; rounds alternate direct and gateway so drift in the shared
 *   machine's load hits both. Added latency = gateway percentile − direct percentile, per round;
 *   the median round is reported.
 * - saturation: autocannon, `connections` closed-loop clients, requests/s of each target and
 *   their ratio (the machine's speed cancels in the ratio), and the CPU time each process spends
 *   per request (from /proc), which says what a core count buys.
 * Target: p99 added latency < 5 ms at 1,000 req/s. The last line is that figure.
 */

const { values } = benchArgs("bench gateway", "usage: npm run bench -- gateway [--rounds 3] [--seconds 8] [--rate 1000] [--connections 16] [--light-rate 250] [--warmup 2]", { rounds: { type: "string", default: "3" }, seconds: { type: "string", default: "8" }, rate: { type: "string", default: "1000" }, connections: { type: "string", default: "16" }, "light-rate": { type: "string", default: "250" }, warmup: { type: "string", default: "2" } });
const ROUNDS = Number(values.rounds);
const SECONDS = Number(values.seconds);
const RATE = Number(values.rate);
const CONNECTIONS = Number(values.connections);
const WARMUP_S = Number(values.warmup);
/** A second, lighter paced rate: the overhead of one request without the queueing of a busy machine. */
const LIGHT_RATE = Number(values["light-rate"]);
const TARGET_P99_MS = 5;

interface Target {
  readonly name: "direct" | "gateway";
  readonly port: number;
  readonly headers: Record<string, string>;
}

const BODY = JSON.stringify({ model: "coder", messages: [{ role: "user", content: "benchmark" }] });
const PATH = "/v1/chat/completions";

const percentile = (sorted: Float64Array, p: number): number => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] : NaN);

interface Run {
  readonly latencies: Float64Array;
  readonly ok: number;
  readonly failed: number;
  readonly seconds: number;
}

/** Open loop: requests go out on schedule whether or not earlier ones have answered. */
function paced(target: Target, rate: number, seconds: number): Promise<Run> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 512 });
  const total = Math.round(rate * seconds);
  const interval = 1000 / rate;
  const latencies: number[] = [];
  let sent = 0;
  let done = 0;
  let failed = 0;
  const headers = { ...target.headers, "content-type": "application/json", "content-length": String(Buffer.byteLength(BODY)) };
  return new Promise((resolve) => {
    const start = performance.now();
    const finish = () => {
      agent.destroy();
      resolve({ latencies: Float64Array.from(latencies).sort(), ok: latencies.length, failed, seconds: (performance.now() - start) / 1000 });
    };
    const fire = () => {
      const t0 = performance.now();
      const req = http.request({ host: "127.0.0.1", port: target.port, method: "POST", path: PATH, headers, agent }, (res) => {
        res.resume();
        res.on("end", () => {
          if (res.statusCode === 200) latencies.push(performance.now() - t0);
          else failed++;
          if (++done === total) finish();
        });
      });
      req.on("error", () => {
        failed++;
        if (++done === total) finish();
      });
      req.end(BODY);
    };
    const tick = () => {
      const due = Math.min(total, Math.floor((performance.now() - start) / interval) + 1);
      while (sent < due) {
        fire();
        sent++;
      }
      if (sent < total) setTimeout(tick, 1);
    };
    tick();
  });
}

function saturate(target: Target, seconds: number): Promise<Run> {
  const latencies: number[] = [];
  return new Promise((resolve, reject) => {
    const instance = autocannon(
      { url: `http://127.0.0.1:${target.port}${PATH}`, method: "POST", body: BODY, headers: { ...target.headers, "content-type": "application/json" }, connections: CONNECTIONS, pipelining: 1, duration: seconds },
      (error: unknown, result) => {
        if (error) return reject(error);
        const elapsed = (result.finish.getTime() - result.start.getTime()) / 1000;
        resolve({ latencies: Float64Array.from(latencies).sort(), ok: latencies.length, failed: result.non2xx + result.errors + result.timeouts, seconds: elapsed });
      },
    );
    instance.on("response", (_client, status, _bytes, responseTime) => {
      if (status === 200) latencies.push(responseTime);
    });
  });
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** CPU time (user + system, ms) a process has used, from /proc (Linux). */
function cpuMs(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
    return (Number(fields[11]) + Number(fields[12])) * (1000 / CLOCK_TICKS);
  } catch {
    return 0;
  }
}
const CLOCK_TICKS = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout.trim()) || 100;
/** Every PostgreSQL server process (the throwaway cluster is the only one the rig runs). */
function postgresCpuMs(): number {
  let total = 0;
  for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    try {
      if (readFileSync(`/proc/${pid}/comm`, "utf8").trim() === "postgres") total += cpuMs(Number(pid));
    } catch {
      // gone meanwhile
    }
  }
  return total;
}

interface CpuSample {
  readonly traefik: number;
  readonly gatekeeper: number;
  readonly postgres: number;
  /** This process: the load client and the in-process stand-in backend. */
  readonly client: number;
}
function cpuSample(rig: GatewayRig): CpuSample {
  const self = process.cpuUsage();
  return { traefik: cpuMs(rig.traefik.pid), gatekeeper: cpuMs(rig.gatekeeper.pid), postgres: postgresCpuMs(), client: (self.user + self.system) / 1000 };
}
// Clamped at 0: a PostgreSQL backend process that exits during the run takes its time with it.
const cpuPerRequest = (a: CpuSample, b: CpuSample, n: number): CpuSample => ({ traefik: Math.max(0, b.traefik - a.traefik) / n, gatekeeper: Math.max(0, b.gatekeeper - a.gatekeeper) / n, postgres: Math.max(0, b.postgres - a.postgres) / n, client: Math.max(0, b.client - a.client) / n });
const ms = (n: number) => n.toFixed(2);

async function main(): Promise<void> {
  const missing = rigMissing();
  if (missing) {
    process.stderr.write(`bench gateway: cannot run here: ${missing}\n`);
    process.exitCode = 1;
    return;
  }
  const load = loadavg()[0];
  // The preset limits would stop a benchmark at once: the highest the settings allow (the
  // per-address limit is ten times rateLimitPerMinute) and a key without a practical limit.
  const rig = await GatewayRig.start({ logToFile: true, settings: { rateLimitPerMinute: 100_000, rateLimitBurst: 100_000 }, keys: { bench: { scopes: ["llm"], ratePerMinute: 1_000_000, burst: 1_000_000 } } });
  try {
    const direct: Target = { name: "direct", port: rig.standIns.fallback!.port, headers: { authorization: `Bearer ${RIG_BACKEND_KEY}` } };
    const gateway: Target = { name: "gateway", port: rig.entry.web, headers: { authorization: `Bearer ${rig.keys.bench.key}` } };
    const rowsBefore = await auditCount(rig);

    if (WARMUP_S > 0) for (const t of [direct, gateway]) await saturate(t, WARMUP_S);
    const pacedRows: string[][] = [];
    const added50: number[] = [];
    const added99: number[] = [];
    let gatewayAnswered = 0;
    let gatewaySent = 0;
    let failures = 0;
    for (let round = 1; round <= ROUNDS; round++) {
      const order = round % 2 ? [direct, gateway] : [gateway, direct];
      const runs: Record<string, Run> = {};
      for (const t of order) runs[t.name] = await paced(t, RATE, SECONDS);
      for (const t of [direct, gateway]) {
        const r = runs[t.name];
        failures += r.failed;
        pacedRows.push([String(round), t.name, (r.ok / r.seconds).toFixed(0), ms(percentile(r.latencies, 50)), ms(percentile(r.latencies, 99)), ms(percentile(r.latencies, 99.9)), String(r.failed)]);
      }
      gatewayAnswered += runs.gateway.ok;
      gatewaySent += runs.gateway.ok + runs.gateway.failed;
      added50.push(percentile(runs.gateway.latencies, 50) - percentile(runs.direct.latencies, 50));
      added99.push(percentile(runs.gateway.latencies, 99) - percentile(runs.direct.latencies, 99));
    }
    const light: Record<string, Run> = {};
    for (const t of [direct, gateway]) {
      light[t.name] = await paced(t, LIGHT_RATE, SECONDS);
      failures += light[t.name].failed;
      pacedRows.push([`${LIGHT_RATE}/s`, t.name, (light[t.name].ok / light[t.name].seconds).toFixed(0), ms(percentile(light[t.name].latencies, 50)), ms(percentile(light[t.name].latencies, 99)), ms(percentile(light[t.name].latencies, 99.9)), String(light[t.name].failed)]);
    }
    gatewayAnswered += light.gateway.ok;
    gatewaySent += light.gateway.ok + light.gateway.failed;
    const satRows: string[][] = [];
    const sat: Record<string, Run> = {};
    const cpu: Record<string, CpuSample> = {};
    for (const t of [direct, gateway]) {
      const before = cpuSample(rig);
      sat[t.name] = await saturate(t, SECONDS);
      cpu[t.name] = cpuPerRequest(before, cpuSample(rig), sat[t.name].ok + sat[t.name].failed);
      const r = sat[t.name];
      failures += r.failed;
      satRows.push([t.name, (r.ok / r.seconds).toFixed(0), ms(percentile(r.latencies, 50)), ms(percentile(r.latencies, 99)), String(r.failed)]);
    }
    gatewayAnswered += sat.gateway.ok;
    gatewaySent += sat.gateway.ok + sat.gateway.failed;
    const rows = (await auditCount(rig)) - rowsBefore;

    const satRatio = sat.gateway.ok / sat.gateway.seconds / (sat.direct.ok / sat.direct.seconds);
    const p99 = median(added99);
    process.stdout.write(`Gateway overhead: Traefik ${TRAEFIK_VERSION} (built from the module proxy) + its forwardAuth hops + the bundled gatekeeper (spool fsync, audit rows to PostgreSQL) vs the llama.cpp stand-in directly; POST ${PATH}.\n`);
    process.stdout.write(`Node ${process.version}, ${cpus().length} cores shared by the client, Traefik, the gatekeeper, PostgreSQL, nginx and the stand-in; 1-min load average ${load.toFixed(2)} at start.\n\n`);
    process.stdout.write(`Paced at ${RATE} req/s (rounds 1-${ROUNDS}) and at ${LIGHT_RATE} req/s, ${SECONDS} s per run, open loop:\n${table(["round", "target", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "failed"], pacedRows)}\n\n`);
    process.stdout.write(`Saturation, ${CONNECTIONS} autocannon connections, ${SECONDS} s:\n${table(["target", "req/s", "p50 ms", "p99 ms", "failed"], satRows)}\n\n`);
    const total = (c: CpuSample) => c.traefik + c.gatekeeper + c.postgres + c.client;
    process.stdout.write(
      `CPU per request at saturation, ms (the machine's speed mostly cancels between the rows):\n${table(
        ["target", "Traefik", "gatekeeper", "PostgreSQL", "client + stand-in", "total", `capacity of ${cpus().length} cores`],
        [direct, gateway].map((t) => {
          const c = cpu[t.name];
          return [t.name, ms(c.traefik), ms(c.gatekeeper), ms(c.postgres), ms(c.client), ms(total(c)), `${((cpus().length * 1000) / total(c)).toFixed(0)} req/s`];
        }),
      )}\n\n`,
    );
    process.stdout.write(
      `${table(
        ["figure", "value", "target", "met"],
        [
          [`added latency at ${RATE} req/s, p50 (median of ${ROUNDS} rounds)`, `${ms(median(added50))} ms`, "", ""],
          [`added latency at ${RATE} req/s, p99 (median of ${ROUNDS} rounds; per round ${added99.map(ms).join(", ")})`, `${ms(p99)} ms`, `< ${TARGET_P99_MS} ms`, p99 < TARGET_P99_MS ? "yes" : "NO"],
          [`added latency at ${LIGHT_RATE} req/s, p50 / p99`, `${ms(percentile(light.gateway.latencies, 50) - percentile(light.direct.latencies, 50))} / ${ms(percentile(light.gateway.latencies, 99) - percentile(light.direct.latencies, 99))} ms`, "", ""],
          ["gateway throughput at saturation / direct", `${(satRatio * 100).toFixed(1)} %`, "", ""],
          ["CPU the gateway adds per request", `${ms(total(cpu.gateway) - total(cpu.direct))} ms`, "", ""],
          ["failed requests", String(failures), "0", failures === 0 ? "yes" : "NO"],
          ["audit rows for the gateway's requests", `${rows} for ${gatewaySent} sent (${gatewayAnswered} answered)`, "≥ answered", rows >= gatewayAnswered ? "yes" : "NO"],
        ],
      )}\n\n`,
    );
    process.stdout.write(`p99 added latency at ${RATE} req/s: ${ms(p99)} ms\n`);
    if (failures > 0 || rows < gatewayAnswered) process.exitCode = 1;
  } finally {
    await rig.stop();
  }
}

async function auditCount(rig: GatewayRig): Promise<number> {
  await rig.auditShipped(120_000);
  const client = new Client({ connectionString: rig.databaseUrl });
  client.on("error", () => undefined);
  await client.connect();
  try {
    const r = await client.query<{ n: string }>("SELECT count(*)::text AS n FROM gatekeeper.decisions WHERE key_id = $1", [rig.keys.bench.id]);
    return Number(r.rows[0].n);
  } finally {
    await client.end();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`bench gateway failed: ${(error as Error).stack ?? String(error)}\n`);
  process.exitCode = 1;
});
