import { benchArgs } from "./args";
import { mkdtempSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import * as path from "node:path";
import type { ControllerFile } from "../programs/autoscaler/controller/contract";
import { Controller, LEDGER_FILE } from "../programs/autoscaler/controller/controller";
import { MemoryLogger } from "../programs/autoscaler/controller/log";
import type { Fetcher } from "../programs/autoscaler/controller/signals";
import { JsonStore } from "../programs/autoscaler/controller/store";
import { DEMAND_METRIC } from "../programs/autoscaler/demand";
import { table } from "../cli/plan/view";
import { controllerFile } from "../test/helpers/autoscaler";

/**
 * The spend guard under each fault: the bundled logic of the controller (its real loop, ledger
 * and JSON store on disk; a fake clock) drives one GPU node towards the month's GPU budget while
 * a fault is applied, and reports what the node had truly cost when the guard first wanted it gone,
 * against the budget: the overshoot, in dollars and in ticks' worth (one tick = 15 s of the node).
 * Target: at most one tick's worth under every fault. The gatekeeper and vLLM are in-memory
 * STAND-INS serving the series the controller reads; no pipeline (advice mode: the decision is
 * what is measured, not the dispatch).
 */

const TICK_S = 15;
const HOURLY = 3.39;
const BUDGET = 20;
const START = Date.parse("2026-12-10T10:00:00Z");
const DAY = 86_400_000;

interface Fault {
  readonly name: string;
  /** Applied once the node has run for a while, before the final approach to the budget. */
  readonly apply?: (world: World) => void | Promise<void>;
  /** Applied before every tick of the approach. */
  readonly everyTick?: (world: World, tick: number) => void | Promise<void>;
}

interface World {
  /** The system clock, which faults step; the monotonic clock moves with time only. */
  now: number;
  monotonic: number;
  trueStartMs: number;
  gatekeeperUp: boolean;
  vllmUp: boolean;
  controller: Controller;
  readonly dir: string;
  restart(): Promise<void>;
  writeFile(extra?: Partial<ControllerFile>): void;
}

const FAULTS: readonly Fault[] = [
  { name: "none" },
  { name: "gatekeeper's counts unreadable", apply: (w) => void (w.gatekeeperUp = false) },
  { name: "vLLM's /metrics unreadable", apply: (w) => void (w.vllmUp = false) },
  { name: "both unreadable", apply: (w) => void Object.assign(w, { gatekeeperUp: false, vllmUp: false }) },
  {
    name: "ledger and its copy deleted, restart",
    apply: async (w) => (
      unlinkSync(path.join(w.dir, "state", LEDGER_FILE)),
      unlinkSync(path.join(w.dir, "state", `${LEDGER_FILE}.prev`)),
      await w.restart()
    ),
  },
  {
    name: "ledger corrupt, restart",
    apply: async (w) => (
      writeFileSync(path.join(w.dir, "state", LEDGER_FILE), "{"),
      writeFileSync(path.join(w.dir, "state", `${LEDGER_FILE}.prev`), "{"),
      await w.restart()
    ),
  },
  {
    name: "clock back a day for one tick",
    everyTick: (w, i) => void (i === 3 ? (w.now -= DAY) : i === 4 ? (w.now += DAY) : undefined),
  },
  {
    name: "clock back a month for one tick",
    everyTick: (w, i) => void (i === 3 ? (w.now -= 31 * DAY) : i === 4 ? (w.now += 31 * DAY) : undefined),
  },
  {
    name: "clock back a year for one tick",
    everyTick: (w, i) => void (i === 3 ? (w.now -= 365 * DAY) : i === 4 ? (w.now += 365 * DAY) : undefined),
  },
  { name: "clock back a day for good", apply: (w) => void ((w.now -= DAY), (w.trueStartMs -= DAY)) },
  { name: "restart every tick", everyTick: (w) => w.restart() },
  { name: "pinned on for 8 h", apply: (w) => w.writeFile({ pin: { nodes: 1, untilMs: w.now + 8 * 3_600_000 } }) },
  {
    name: "gatekeeper unreadable and pinned on",
    apply: (w) => (w.writeFile({ pin: { nodes: 1, untilMs: w.now + 8 * 3_600_000 } }), void (w.gatekeeperUp = false)),
  },
];

interface Outcome {
  readonly fault: string;
  /** What the node had truly cost when the guard first wanted the minimum. */
  readonly trueSpendUsd: number;
  readonly ledgerUsd: number;
  readonly reason: string;
  readonly spendWentDown: boolean;
}

async function run(fault: Fault): Promise<Outcome> {
  const dir = mkdtempSync(path.join(tmpdir(), "bench-money-"));
  const configFile = path.join(dir, "autoscaler.json");
  // The tests' hybrid controller file (test/helpers/autoscaler.ts), with the benchmark's prices, tick and no dispatch.
  const base = (extra: Partial<ControllerFile> = {}): ControllerFile => {
    const file = controllerFile({ demandUrl: "http://gatekeeper.bench", replicaUrls: ["http://gpu-0.bench"] });
    return {
      ...file,
      stack: "bench",
      tickSeconds: TICK_S,
      policy: { ...file.policy, nodeHourlyUsd: HOURLY, gpuBudgetUsd: BUDGET },
      timing: { pipelineSeconds: 120, createSeconds: 0, destroySeconds: 0 },
      dispatch: null,
      ...extra,
    };
  };
  const ok = (text: string) => ({ status: 200, text, headers: { get: () => null } });
  const world: World = {
    now: START,
    monotonic: 0,
    trueStartMs: START,
    gatekeeperUp: true,
    vllmUp: true,
    controller: undefined as unknown as Controller,
    dir,
    restart: async () => void (world.controller = await start()),
    writeFile: (extra) => writeFileSync(configFile, JSON.stringify(base(extra))),
  };
  // A steady trickle of allowed requests keeps the node from going idle: only the budget may stop it.
  let allowed = 0;
  const fetcher: Fetcher = async (url) => {
    if (url.startsWith("http://gatekeeper.bench")) {
      if (!world.gatekeeperUp) throw new Error("connection refused");
      allowed += 1;
      return ok(
        `# TYPE ${DEMAND_METRIC} counter\n${DEMAND_METRIC}{scope="llm",key_id="k_bench001",outcome="allowed"} ${allowed}\n`,
      );
    }
    if (url.endsWith("/health")) return ok("");
    if (!world.vllmUp) throw new Error("connection refused");
    return ok("vllm:num_requests_running 1\nvllm:num_requests_waiting 0\n");
  };
  const start = () =>
    Controller.start({
      configFile,
      store: new JsonStore(path.join(dir, "state")),
      fetcher,
      clock: () => world.now,
      monotonic: () => world.monotonic,
      log: new MemoryLogger(),
    });
  try {
    world.writeFile();
    world.controller = await start();
    const highest = new Map<string, number>();
    let wentDown = false;
    const tick = async () => {
      const s = (await world.controller.requestTick())!;
      const before = highest.get(s.ledger.month) ?? 0;
      if (s.ledger.monthToDateUsd < before - 1e-9) wentDown = true;
      highest.set(s.ledger.month, Math.max(before, s.ledger.monthToDateUsd));
      return s;
    };
    // Five-minute steps to about ten minutes short of the budget, the fault, then the controller's own 15 s ticks.
    const approachUsd = BUDGET - (HOURLY * 10) / 60;
    while (((world.now - world.trueStartMs) / 3_600_000) * HOURLY < approachUsd - (HOURLY * 5) / 60) {
      await tick();
      world.now += 300_000;
      world.monotonic += 300_000;
    }
    await fault.apply?.(world);
    for (let i = 0; i < 10_000; i++) {
      await fault.everyTick?.(world, i);
      const s = await tick();
      if (s.decision && s.decision.wantedNodes === 0) {
        return {
          fault: fault.name,
          trueSpendUsd: ((world.now - world.trueStartMs) / 3_600_000) * HOURLY,
          ledgerUsd: s.ledger.monthToDateUsd,
          reason: s.decision.reason,
          spendWentDown: wentDown,
        };
      }
      world.now += TICK_S * 1000;
      world.monotonic += TICK_S * 1000;
    }
    return { fault: fault.name, trueSpendUsd: Infinity, ledgerUsd: NaN, reason: "never", spendWentDown: wentDown };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  benchArgs("bench money", "usage: npm run bench -- money", {});
  const load = loadavg()[0];
  const tickUsd = (TICK_S / 3600) * HOURLY;
  const outcomes: Outcome[] = [];
  for (const f of FAULTS) outcomes.push(await run(f));
  const rows = outcomes.map((o) => {
    const past = o.trueSpendUsd - BUDGET;
    return [
      o.fault,
      `$${o.trueSpendUsd.toFixed(3)}`,
      past > 0 ? `$${past.toFixed(3)}` : `$0 (${(-past).toFixed(2)} early)`,
      (Math.max(0, past) / tickUsd).toFixed(2),
      `$${o.ledgerUsd.toFixed(2)}`,
      o.reason,
      o.spendWentDown ? "yes" : "no",
    ];
  });
  process.stdout.write(
    `${table(["fault", "true GPU spend when the guard acted", "past the $20 budget", "ticks' worth", "ledger then", "decision", "ledger ever went down"], rows)}\n`,
  );
  const worst = Math.max(...outcomes.map((o) => o.trueSpendUsd - BUDGET));
  const met = worst <= tickUsd + 1e-9 && outcomes.every((o) => !o.spendWentDown);
  process.stdout.write(
    `Target (at most one tick's worth, $${tickUsd.toFixed(4)}, past the budget under every fault; spend never lowered): worst $${Math.max(0, worst).toFixed(4)}, ${met ? "met" : "NOT met"}. One node at $${HOURLY}/h, ticks of ${TICK_S} s; load average ${load.toFixed(1)} at the start.\n`,
  );
  process.exitCode = met ? 0 : 1;
}

main().catch((err: unknown) => {
  process.stderr.write(`bench money: ${(err as Error).message}\n`);
  process.exit(1);
});
