import { benchArgs } from "./args";
import { spawnSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import * as http from "node:http";
import { cpus, loadavg } from "node:os";
import * as path from "node:path";
import { performance } from "node:perf_hooks";
import autocannon from "autocannon";
import { Client } from "pg";
import { TRAEFIK_VERSION, traefikBinaryPath } from "../tools/traefik";
import { GatewayRig, RIG_BACKEND_KEY, rigMissing } from "../test/helpers/gateway-rig";
import { freeLoopbackPort } from "../test/helpers/postgres";
import { table } from "../cli/plan/view";

/**
 * What the gateway costs a request, against Traefik alone, in one run on one machine
 * (test/helpers/gateway-rig.ts): the real Traefik with the plan's files, forwardAuth to the
 * bundled gatekeeper (HTTP/2 over TLS), which fsyncs every decision to its spool and ships it to a
 * real PostgreSQL. The request is a non-streaming chat completion answered at once by the
 * llama.cpp stand-in, so the backend's own time is nearly nil. Targets (issue 24):
 *   - p99 added < 5 ms at 1,000 req/s (gateway − the stand-in called directly);
 *   - CPU per request ≤ 1.5 × Traefik alone (the gateway's processes against the floor's Traefik);
 *   - saturation ≥ 50 % of Traefik alone.
 * Compared:
 *   direct   the stand-in, called directly;
 *   floor    Traefik alone: the same binary, environment and static file (entry points, JSON access
 *            log, Prometheus metrics) proxying to the stand-in with no middleware;
 *   bare     Traefik with a minimal static file (no access log, no metrics): saturation only, to
 *            show what observability costs;
 *   gateway  the full gateway.
 *
 *   npm run bench -- gateway [--rounds 3] [--seconds 8] [--rate 1000] [--light-rate 250] [--connections 16] [--profile DIR]
 *
 * - paced: an open-loop client sends `rate` requests a second, evenly spaced (1 ms timer ticks),
 *   latency from send to last byte; within a round the targets' order rotates, so drift in the
 *   shared machine's load hits each. Added latency = gateway percentile − direct (and − floor)
 *   percentile, per round; the median round is reported.
 * - saturation: autocannon, `connections` closed-loop clients, requests/s of each target and the
 *   CPU time each process spends per request (from /proc: user + system, every thread), which
 *   cancels most of the machine's speed in the ratios.
 * - --profile DIR: Go's pprof of both Traefiks (API debug on a loopback entry point added to the
 *   benchmark's copies of the static file) and Node's --cpu-prof of the gatekeeper, during one
 *   extra saturation run each; prints the top entries when `go` is on PATH.
 * The load average is printed with every phase: the machine is shared.
 */

const { values } = benchArgs(
  "bench gateway",
  "usage: npm run bench -- gateway [--rounds 3] [--seconds 8] [--rate 1000] [--light-rate 250] [--connections 16] [--warmup 2] [--profile DIR]",
  {
    rounds: { type: "string", default: "3" },
    seconds: { type: "string", default: "8" },
    rate: { type: "string", default: "1000" },
    connections: { type: "string", default: "16" },
    "light-rate": { type: "string", default: "250" },
    warmup: { type: "string", default: "2" },
    profile: { type: "string" },
  },
);
const ROUNDS = Number(values.rounds);
const SECONDS = Number(values.seconds);
const RATE = Number(values.rate);
const CONNECTIONS = Number(values.connections);
const WARMUP_S = Number(values.warmup);
/** A second, lighter paced rate: the overhead of one request without the queueing of a busy machine. */
const LIGHT_RATE = Number(values["light-rate"]);
const PROFILE_DIR = values.profile ? path.resolve(values.profile) : undefined;
const TARGETS = { p99AddedMs: 5, cpuRatio: 1.5, saturationShare: 0.5 } as const;

type TargetName = "direct" | "floor" | "bare" | "gateway";
interface Target {
  readonly name: TargetName;
  readonly port: number;
  readonly headers: Record<string, string>;
  /** The Traefik process serving it, if any. */
  readonly traefikPid?: number;
}

const BODY = JSON.stringify({ model: "coder", messages: [{ role: "user", content: "benchmark" }] });
const PATH = "/v1/chat/completions";

const percentile = (sorted: Float64Array, p: number): number =>
  sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] : NaN;
const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const ms = (n: number) => n.toFixed(2);
const us = (n: number) => (n * 1000).toFixed(0);
const load = () => loadavg()[0].toFixed(1);

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
  const headers = {
    ...target.headers,
    "content-type": "application/json",
    "content-length": String(Buffer.byteLength(BODY)),
  };
  return new Promise((resolve) => {
    const start = performance.now();
    const finish = () => {
      agent.destroy();
      resolve({
        latencies: Float64Array.from(latencies).sort(),
        ok: latencies.length,
        failed,
        seconds: (performance.now() - start) / 1000,
      });
    };
    const fire = () => {
      const t0 = performance.now();
      const req = http.request(
        { host: "127.0.0.1", port: target.port, method: "POST", path: PATH, headers, agent },
        (res) => {
          res.resume();
          res.on("end", () => {
            if (res.statusCode === 200) latencies.push(performance.now() - t0);
            else failed++;
            if (++done === total) finish();
          });
        },
      );
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
      {
        url: `http://127.0.0.1:${target.port}${PATH}`,
        method: "POST",
        body: BODY,
        headers: { ...target.headers, "content-type": "application/json" },
        connections: CONNECTIONS,
        pipelining: 1,
        duration: seconds,
      },
      (error: unknown, result) => {
        if (error) return reject(error);
        const elapsed = (result.finish.getTime() - result.start.getTime()) / 1000;
        resolve({
          latencies: Float64Array.from(latencies).sort(),
          ok: latencies.length,
          failed: result.non2xx + result.errors + result.timeouts,
          seconds: elapsed,
        });
      },
    );
    instance.on("response", (_client, status, _bytes, responseTime) => {
      if (status === 200) latencies.push(responseTime);
    });
  });
}

// ---- CPU time from /proc --------------------------------------------------------------------------

const CLOCK_TICKS = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout.trim()) || 100;
/** CPU time (user + system, ms) of a process or one of its threads, from /proc (Linux). */
function cpuMs(statPath: string): number {
  try {
    const fields = readFileSync(statPath, "utf8").split(") ")[1].split(" ");
    return (Number(fields[11]) + Number(fields[12])) * (1000 / CLOCK_TICKS);
  } catch {
    return 0;
  }
}
const processCpu = (pid: number | undefined): number => (pid === undefined ? 0 : cpuMs(`/proc/${pid}/stat`));
/** Every PostgreSQL server process (the throwaway cluster is the only one the rig runs). */
function postgresCpuMs(): number {
  let total = 0;
  for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    try {
      if (readFileSync(`/proc/${pid}/comm`, "utf8").trim() === "postgres") total += processCpu(Number(pid));
    } catch {
      // gone meanwhile
    }
  }
  return total;
}

interface CpuSample {
  readonly traefik: number;
  /** The gatekeeper's event loop (its main thread): HTTP/2, TLS, the decision. */
  readonly gatekeeperLoop: number;
  /** Its other threads: libuv's pool (the spool's durable writes), V8's helpers. */
  readonly gatekeeperOther: number;
  readonly postgres: number;
  /** This process: the load client and the in-process stand-in backend. */
  readonly client: number;
}
function cpuSample(target: Target, gatekeeperPid: number | undefined): CpuSample {
  const self = process.cpuUsage();
  const loop = gatekeeperPid === undefined ? 0 : cpuMs(`/proc/${gatekeeperPid}/task/${gatekeeperPid}/stat`);
  return {
    traefik: processCpu(target.traefikPid),
    gatekeeperLoop: loop,
    gatekeeperOther: processCpu(gatekeeperPid) - loop,
    postgres: postgresCpuMs(),
    client: (self.user + self.system) / 1000,
  };
}
// Clamped at 0: a PostgreSQL backend process that exits during the run takes its time with it.
const perRequest = (a: CpuSample, b: CpuSample, n: number): CpuSample => ({
  traefik: Math.max(0, b.traefik - a.traefik) / n,
  gatekeeperLoop: Math.max(0, b.gatekeeperLoop - a.gatekeeperLoop) / n,
  gatekeeperOther: Math.max(0, b.gatekeeperOther - a.gatekeeperOther) / n,
  postgres: Math.max(0, b.postgres - a.postgres) / n,
  client: Math.max(0, b.client - a.client) / n,
});
/** The server side of a request: everything but the load client and the stand-in. */
const serverCpu = (c: CpuSample) => c.traefik + c.gatekeeperLoop + c.gatekeeperOther + c.postgres;

interface Saturation {
  readonly run: Run;
  readonly cpu: CpuSample;
  readonly load: string;
}

async function main(): Promise<void> {
  const missing = rigMissing();
  if (missing) {
    process.stderr.write(`bench gateway: cannot run here: ${missing}\n`);
    process.exitCode = 1;
    return;
  }
  const startLoad = load();
  if (PROFILE_DIR) mkdirSync(PROFILE_DIR, { recursive: true });
  const pprofPorts = PROFILE_DIR ? { gateway: await freeLoopbackPort(), floor: await freeLoopbackPort() } : undefined;
  // The preset limits would stop a benchmark at once: the highest the settings allow and a key without a practical limit.
  // No holding: with the GPU off, a preset's coder route asks the holder (a Node proxy in the
  // controller) before the stand-in, which is the cold start's cost, not the door's; `npm run
  // bench -- holder` measures it. Here the route goes to the stand-in as it does to a GPU that is up.
  const rig = await GatewayRig.start({
    logToFile: true,
    settings: { rateLimitPerMinute: 100_000, rateLimitBurst: 100_000, gpuHoldMaxSeconds: 0 },
    keys: { bench: { scopes: ["llm"], ratePerMinute: 1_000_000, burst: 1_000_000 } },
    ...(pprofPorts
      ? {
          traefikStatic: (doc: Record<string, unknown>) => ({
            ...doc,
            api: { debug: true, insecure: true },
            entryPoints: { ...(doc.entryPoints as object), traefik: { address: `127.0.0.1:${pprofPorts.gateway}` } },
          }),
        }
      : {}),
    ...(PROFILE_DIR
      ? { gatekeeperNodeArgs: ["--cpu-prof", `--cpu-prof-dir=${PROFILE_DIR}`, "--cpu-prof-name=gatekeeper.cpuprofile"] }
      : {}),
  });
  try {
    const floorTraefik = await rig.startTraefikAlone("observed", pprofPorts?.floor);
    const bareTraefik = await rig.startTraefikAlone("bare");
    const backendKey = { authorization: `Bearer ${RIG_BACKEND_KEY}` };
    const direct: Target = { name: "direct", port: rig.standIns.fallback!.port, headers: backendKey };
    const floor: Target = {
      name: "floor",
      port: floorTraefik.port,
      headers: backendKey,
      traefikPid: floorTraefik.process.pid,
    };
    const bare: Target = {
      name: "bare",
      port: bareTraefik.port,
      headers: backendKey,
      traefikPid: bareTraefik.process.pid,
    };
    const gateway: Target = {
      name: "gateway",
      port: rig.entry.web,
      headers: { authorization: `Bearer ${rig.keys.bench.key}` },
      traefikPid: rig.traefik.pid,
    };
    const pacedTargets = [direct, floor, gateway];
    const saturatedTargets = [direct, bare, floor, gateway];
    const rowsBefore = await auditCount(rig);
    const gatekeeperPid = rig.gatekeeper.pid;

    if (WARMUP_S > 0) for (const t of saturatedTargets) await saturate(t, WARMUP_S);
    const pacedRows: string[][] = [];
    const added = {
      p50: [] as number[],
      p99: [] as number[],
      p99Floor: [] as number[],
      light50: [] as number[],
      light99: [] as number[],
    };
    const sat: Record<TargetName, Saturation[]> = { direct: [], floor: [], bare: [], gateway: [] };
    let gatewayAnswered = 0;
    let gatewaySent = 0;
    let failures = 0;
    let commits = { decisions: 0, commits: 0 };
    const count = (t: Target, r: Run) => {
      failures += r.failed;
      if (t.name === "gateway") {
        gatewayAnswered += r.ok;
        gatewaySent += r.ok + r.failed;
      }
    };
    for (let round = 1; round <= ROUNDS; round++) {
      const rotate = <T>(xs: readonly T[]) => xs.map((_, i) => xs[(i + round - 1) % xs.length]);
      for (const [rate, label] of [
        [RATE, String(round)],
        [LIGHT_RATE, `${round} @${LIGHT_RATE}/s`],
      ] as const) {
        const runs: Partial<Record<TargetName, Run>> = {};
        const loads: Partial<Record<TargetName, string>> = {};
        for (const t of rotate(pacedTargets)) {
          loads[t.name] = load();
          runs[t.name] = await paced(t, rate, SECONDS);
          count(t, runs[t.name]!);
        }
        for (const t of pacedTargets) {
          const r = runs[t.name]!;
          pacedRows.push([
            label,
            t.name,
            loads[t.name]!,
            (r.ok / r.seconds).toFixed(0),
            ms(percentile(r.latencies, 50)),
            ms(percentile(r.latencies, 99)),
            ms(percentile(r.latencies, 99.9)),
            String(r.failed),
          ]);
        }
        const at = (name: TargetName, p: number) => percentile(runs[name]!.latencies, p);
        if (rate === RATE) {
          added.p50.push(at("gateway", 50) - at("direct", 50));
          added.p99.push(at("gateway", 99) - at("direct", 99));
          added.p99Floor.push(at("gateway", 99) - at("floor", 99));
        } else {
          added.light50.push(at("gateway", 50) - at("direct", 50));
          added.light99.push(at("gateway", 99) - at("direct", 99));
        }
      }
      for (const t of rotate(saturatedTargets)) {
        const health = t.name === "gateway" ? await gatekeeperSpool(rig) : undefined;
        const before = cpuSample(t, gatekeeperPid);
        const runLoad = load();
        const run = await saturate(t, SECONDS);
        const cpu = perRequest(before, cpuSample(t, gatekeeperPid), run.ok + run.failed);
        if (health) {
          const after = await gatekeeperSpool(rig);
          commits = {
            decisions: commits.decisions + after.decisions - health.decisions,
            commits: commits.commits + after.commits - health.commits,
          };
        }
        count(t, run);
        sat[t.name].push({ run, cpu, load: runLoad });
      }
    }
    const profileLines = PROFILE_DIR ? await profile({ floor, gateway }, pprofPorts!) : [];
    const endLoad = load();
    const rows = (await auditCount(rig)) - rowsBefore;

    // ---- report ----------------------------------------------------------------------------------
    const rate = (s: Saturation) => s.run.ok / s.run.seconds;
    const medianOf = (name: TargetName, f: (s: Saturation) => number) => median(sat[name].map(f));
    const satShare = sat.gateway.map((g, i) => rate(g) / rate(sat.floor[i]));
    const cpuRatio = sat.gateway.map((g, i) => serverCpu(g.cpu) / serverCpu(sat.floor[i].cpu));
    const cpuRatioBare = sat.gateway.map((g, i) => serverCpu(g.cpu) / serverCpu(sat.bare[i].cpu));
    const out = (text: string) => process.stdout.write(`${text}\n`);
    out(
      `Gateway cost: Traefik ${TRAEFIK_VERSION} (built from the module proxy, ${traefikBinaryPath()}) with the plan's files, forwardAuth over HTTP/2 + TLS to the bundled gatekeeper (spool fsync, audit rows to PostgreSQL), against Traefik alone and the llama.cpp stand-in directly; POST ${PATH}.`,
    );
    out(
      `Node ${process.version}, ${cpus().length} cores (${cpus()[0]?.model ?? "unknown"}) shared by the client, both Traefiks, the gatekeeper, PostgreSQL, nginx and the stand-in, and whatever else runs on the machine. 1-min load average ${startLoad} at start, ${endLoad} at the end.\n`,
    );
    out(
      `Paced, open loop, ${SECONDS} s per run, at ${RATE} req/s and at ${LIGHT_RATE} req/s (the load column: 1-min load average when the run began):\n${table(["round", "target", "load", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "failed"], pacedRows)}\n`,
    );
    out(
      `Saturation, ${CONNECTIONS} autocannon connections, ${SECONDS} s per run, and CPU per request (µs, user + system, all threads) by process:\n${table(
        [
          "round",
          "target",
          "load",
          "req/s",
          "p50 ms",
          "p99 ms",
          "Traefik",
          "gatekeeper loop",
          "gatekeeper other",
          "PostgreSQL",
          "server total",
          "client + stand-in",
          "failed",
        ],
        (Object.keys(sat) as TargetName[]).flatMap((name) =>
          sat[name].map((s, i) => [
            String(i + 1),
            name,
            s.load,
            rate(s).toFixed(0),
            ms(percentile(s.run.latencies, 50)),
            ms(percentile(s.run.latencies, 99)),
            us(s.cpu.traefik),
            us(s.cpu.gatekeeperLoop),
            us(s.cpu.gatekeeperOther),
            us(s.cpu.postgres),
            us(serverCpu(s.cpu)),
            us(s.cpu.client),
            String(s.run.failed),
          ]),
        ),
      )}`,
    );
    out(
      `(gatekeeper loop: its event loop's thread, HTTP/2, TLS and the decision; other: libuv's pool, where the spool's O_DSYNC writes run, and V8's helper threads. Decisions per group commit at saturation: ${commits.commits ? (commits.decisions / commits.commits).toFixed(1) : "n/a"}.)\n`,
    );
    const verdict = (ok: boolean) => (ok ? "yes" : "NO");
    const p99 = median(added.p99);
    out(
      table(
        ["figure", "value (median of rounds; each round)", "target", "met"],
        [
          [
            `added latency at ${RATE} req/s, p99, gateway − direct`,
            `${ms(p99)} ms (${added.p99.map(ms).join(", ")})`,
            `< ${TARGETS.p99AddedMs} ms`,
            verdict(p99 < TARGETS.p99AddedMs),
          ],
          [
            `added latency at ${RATE} req/s, p50, gateway − direct`,
            `${ms(median(added.p50))} ms (${added.p50.map(ms).join(", ")})`,
            "",
            "",
          ],
          [
            `added latency at ${RATE} req/s, p99, gateway − floor`,
            `${ms(median(added.p99Floor))} ms (${added.p99Floor.map(ms).join(", ")})`,
            "",
            "",
          ],
          [
            `added latency at ${LIGHT_RATE} req/s, p50 / p99, gateway − direct`,
            `${ms(median(added.light50))} / ${ms(median(added.light99))} ms`,
            "",
            "",
          ],
          [
            "CPU per request, gateway (Traefik + gatekeeper + PostgreSQL) / floor (Traefik)",
            `${median(cpuRatio).toFixed(2)} × (${cpuRatio.map((r) => r.toFixed(2)).join(", ")})`,
            `≤ ${TARGETS.cpuRatio} ×`,
            verdict(median(cpuRatio) <= TARGETS.cpuRatio),
          ],
          [
            "CPU per request, gateway / bare Traefik (no access log, no metrics)",
            `${median(cpuRatioBare).toFixed(2)} × (${cpuRatioBare.map((r) => r.toFixed(2)).join(", ")})`,
            "",
            "",
          ],
          [
            "CPU per request, gateway − floor",
            `${us(medianOf("gateway", (s) => serverCpu(s.cpu)) - medianOf("floor", (s) => serverCpu(s.cpu)))} µs`,
            "",
            "",
          ],
          [
            "throughput at saturation, gateway / floor",
            `${(median(satShare) * 100).toFixed(0)} % (${satShare.map((r) => `${(r * 100).toFixed(0)} %`).join(", ")})`,
            `≥ ${TARGETS.saturationShare * 100} %`,
            verdict(median(satShare) >= TARGETS.saturationShare),
          ],
          [
            "throughput at saturation, floor / direct",
            `${((medianOf("floor", rate) / medianOf("direct", rate)) * 100).toFixed(0)} %`,
            "",
            "",
          ],
          ["failed requests", String(failures), "0", verdict(failures === 0)],
          [
            "audit rows for the gateway's requests",
            `${rows} for ${gatewaySent} sent (${gatewayAnswered} answered)`,
            "≥ answered",
            verdict(rows >= gatewayAnswered),
          ],
        ],
      ),
    );
    for (const line of profileLines) out(line);
    out(
      `\np99 added latency at ${RATE} req/s: ${ms(p99)} ms; CPU ${median(cpuRatio).toFixed(2)} × Traefik alone; saturation ${(median(satShare) * 100).toFixed(0)} % of Traefik alone (load ${startLoad} → ${endLoad})`,
    );
    if (failures > 0 || rows < gatewayAnswered) process.exitCode = 1;
  } finally {
    await rig.stop();
  }
}

/** One more saturation run of the floor and of the gateway with pprof recording; the gatekeeper's profile is written when it stops. */
async function profile(
  targets: { floor: Target; gateway: Target },
  ports: { floor: number; gateway: number },
): Promise<string[]> {
  const lines = [`\nProfiles in ${PROFILE_DIR}:`];
  for (const name of ["floor", "gateway"] as const) {
    const file = path.join(PROFILE_DIR!, `traefik-${name}.pprof`);
    const seconds = Math.max(2, SECONDS - 1);
    const [, body] = await Promise.all([
      saturate(targets[name], SECONDS),
      fetch(`http://127.0.0.1:${ports[name]}/debug/pprof/profile?seconds=${seconds}`).then((r) => r.arrayBuffer()),
    ]);
    writeFileSync(file, Buffer.from(body));
    lines.push(`  ${file}`);
    const top = spawnSync("go", ["tool", "pprof", "-top", "-nodecount=25", traefikBinaryPath(), file], {
      encoding: "utf8",
    });
    if (top.status === 0)
      lines.push(
        ...top.stdout
          .split("\n")
          .slice(4, 32)
          .map((l) => `    ${l}`),
      );
  }
  lines.push(
    `  ${path.join(PROFILE_DIR!, "gatekeeper.cpuprofile")} (written when the gatekeeper stops; open it in Chrome's DevTools or speedscope)`,
  );
  return lines;
}

async function gatekeeperSpool(rig: GatewayRig): Promise<{ decisions: number; commits: number }> {
  const health = (await (await fetch(`http://127.0.0.1:${rig.gatekeeperPort}/healthz`)).json()) as {
    spool: { decisions: number; commits: number };
  };
  return health.spool;
}

async function auditCount(rig: GatewayRig): Promise<number> {
  await rig.auditShipped(120_000);
  const client = new Client({ connectionString: rig.databaseUrl });
  client.on("error", () => undefined);
  await client.connect();
  try {
    const r = await client.query<{ n: string }>(
      "SELECT count(*)::text AS n FROM gatekeeper.decisions WHERE key_id = $1",
      [rig.keys.bench.id],
    );
    return Number(r.rows[0].n);
  } finally {
    await client.end();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`bench gateway failed: ${(error as Error).stack ?? String(error)}\n`);
  process.exitCode = 1;
});
