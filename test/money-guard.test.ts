import fc from "fast-check";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import type { ControllerFile } from "../programs/autoscaler/controller/contract";
import { Controller } from "../programs/autoscaler/controller/controller";
import { MemoryLogger } from "../programs/autoscaler/controller/log";
import type { Fetcher } from "../programs/autoscaler/controller/signals";
import { JsonStore, type ReadOutcome } from "../programs/autoscaler/controller/store";
import { decide, initialState } from "../programs/autoscaler/decision";
import { loadHubConfig } from "../stacks";
import { engineConfig } from "../stacks/load";
import type { PolicyConfig, TickInput } from "../programs/autoscaler/types";
import { controllerFile, demandText, HAND_POLICY, vllmText } from "./helpers/autoscaler";

/**
 * The spend guard has the last word (issue 18): the pure decision checks spend before missing
 * metrics and pins, a pin reaching further than 31 days is not honoured, and, as a property over
 * any sequence of signals, clock readings and restarts of the real controller, the month's recorded
 * spend never goes down and the wanted node count is the minimum whenever spend has reached the budget.
 */

const CONFIG: PolicyConfig = HAND_POLICY;
const T0 = Date.UTC(2026, 11, 10, 12, 0, 0);
const DAY = 86_400_000;

function input(over: Partial<TickInput> & { ready?: number }): TickInput {
  const { ready = 0, ...rest } = over;
  return {
    nowMs: T0,
    nodes: { ready, starting: 0, draining: 0 },
    coderRequests: 0,
    replicas: Array.from({ length: ready }, () => ({ running: 0, waiting: 0 })),
    monthToDateUsd: 0,
    ...rest,
  };
}

describe("the spend guard comes before every other rule", () => {
  it("with the gateway's counts missing and spend at the budget, the GPU goes to the minimum", () => {
    const d = decide(CONFIG, input({ ready: 1, coderRequests: undefined, monthToDateUsd: 300 }), initialState(1));
    expect(d).toMatchObject({ wantedNodes: 0, reason: "budget-spent" });
    // The floor is gpuMinNodes, as with readable metrics.
    expect(
      decide(
        { ...CONFIG, minNodes: 1 },
        input({ ready: 2, coderRequests: undefined, monthToDateUsd: 301 }),
        initialState(2),
      ).wantedNodes,
    ).toBe(1);
  });

  it("with vLLM's queue missing and spend past the budget, the GPU goes to the minimum", () => {
    const d = decide(CONFIG, input({ ready: 1, replicas: undefined, monthToDateUsd: 300.01 }), initialState(1));
    expect(d).toMatchObject({ wantedNodes: 0, reason: "budget-spent" });
  });

  it("below the budget, missing counts still hold (and never wake)", () => {
    expect(decide(CONFIG, input({ coderRequests: undefined, monthToDateUsd: 10 }), initialState(0))).toMatchObject({
      wantedNodes: 0,
      reason: "hold-metrics-missing",
    });
    expect(
      decide(CONFIG, input({ ready: 1, coderRequests: undefined, monthToDateUsd: 10 }), initialState(1)),
    ).toMatchObject({ wantedNodes: 1, reason: "hold-metrics-missing" });
  });

  it("a pin does not outlive the budget, and applies again once the budget is raised", () => {
    const pin = { nodes: 1, untilMs: T0 + 8 * 3_600_000 };
    expect(decide(CONFIG, input({ ready: 1, pin, monthToDateUsd: 300 }), initialState(1))).toMatchObject({
      wantedNodes: 0,
      reason: "budget-spent",
    });
    expect(
      decide({ ...CONFIG, gpuBudgetUsd: 400 }, input({ ready: 1, pin, monthToDateUsd: 300 }), initialState(1)),
    ).toMatchObject({ wantedNodes: 1, reason: "pinned" });
  });

  it("a pin reaching more than 31 days ahead is not honoured, wherever it came from", () => {
    const forever = { nodes: 1, untilMs: Date.parse("9999-12-31T23:59:59Z") };
    const d = decide(CONFIG, input({ ready: 1, pin: forever, nowMs: T0 + 3_600_000 }), {
      ...initialState(1),
      lastRequestMs: T0,
    });
    expect(d.reason).not.toBe("pinned");
    expect(d.wantedNodes).toBe(0);
    expect(d.message).toMatch(/31 days/);
    // 31 days exactly is what `gpu on --for 31d` writes: honoured.
    expect(decide(CONFIG, input({ ready: 1, pin: { nodes: 1, untilMs: T0 + 31 * DAY } }), initialState(1)).reason).toBe(
      "pinned",
    );
  });
});

describe("a pin in the stack file", () => {
  const load = (until: string) =>
    loadHubConfig(engineConfig({ tier: "hybrid", gpuEnabled: true, gpuPinNodes: 1, gpuPinUntil: until }), [], [], T0);
  it("reaching past 31 days is refused at plan time, naming the setting, as the hub command's --for is", () => {
    const r = load("9999-12-31T23:59:59Z");
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.problems).toHaveLength(1);
    expect(r.problems[0].keys).toEqual(["gpuPinUntil"]);
    expect(r.problems[0].message).toMatch(/31 days/);
    expect(load(new Date(T0 + 31 * DAY + 1000).toISOString().replace(/\.\d+Z$/, "Z")).ok).toBe(false);
    expect(load(new Date(T0 + 31 * DAY).toISOString().replace(/\.\d+Z$/, "Z")).ok).toBe(true);
  });
});

// ---- the property: the real controller over random faults --------------------------------------

/** A JsonStore kept in memory (current and previous copy, as on disk): thousands of ticks without an fsync each. */
class MemoryStore extends JsonStore {
  readonly files = new Map<string, string>();
  constructor() {
    super("/memory");
  }
  override write(name: string, value: unknown): void {
    const current = this.files.get(name);
    if (current !== undefined) this.files.set(`${name}.prev`, current);
    this.files.set(name, JSON.stringify(value));
  }
  override read<T>(name: string, check: (v: unknown) => T | undefined): ReadOutcome<T> {
    const attempt = (key: string) => {
      const text = this.files.get(key);
      if (text === undefined) return { missing: true as const };
      try {
        const value = check(JSON.parse(text));
        return value === undefined ? { problem: `${key} is not in the expected shape` } : { value };
      } catch {
        return { problem: `${key} is not JSON` };
      }
    };
    const current = attempt(name);
    if ("value" in current && current.value !== undefined) return { kind: "ok", value: current.value, from: "current" };
    const previous = attempt(`${name}.prev`);
    if ("value" in previous && previous.value !== undefined)
      return { kind: "ok", value: previous.value, from: "previous", problem: "current unreadable" };
    if ("missing" in current && "missing" in previous) return { kind: "missing" };
    return { kind: "corrupt", problem: "unreadable" };
  }
  override quarantine(name: string): void {
    this.files.delete(name);
    this.files.delete(`${name}.prev`);
  }
}

type Action =
  | { kind: "tick"; seconds: number }
  | { kind: "clock"; ms: number }
  | { kind: "restart" }
  | { kind: "demand"; requests: number }
  | { kind: "gateway"; readable: boolean }
  | { kind: "vllm"; readable: boolean; healthy: boolean }
  | { kind: "deploy"; nodes: 0 | 1 };

const action: fc.Arbitrary<Action> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.constantFrom(15, 15, 60, 300, 3600, 6 * 3600).map((seconds) => ({ kind: "tick" as const, seconds })),
  },
  // Steps of the system clock: NTP-sized, a day, a month, a year back; a day forward.
  {
    weight: 2,
    arbitrary: fc.constantFrom(-15_000, -DAY, -31 * DAY, -365 * DAY, DAY).map((ms) => ({ kind: "clock" as const, ms })),
  },
  { weight: 1, arbitrary: fc.constant({ kind: "restart" as const }) },
  { weight: 2, arbitrary: fc.integer({ min: 0, max: 5 }).map((requests) => ({ kind: "demand" as const, requests })) },
  { weight: 1, arbitrary: fc.boolean().map((readable) => ({ kind: "gateway" as const, readable })) },
  {
    weight: 1,
    arbitrary: fc
      .record({ readable: fc.boolean(), healthy: fc.boolean() })
      .map((r) => ({ kind: "vllm" as const, ...r })),
  },
  { weight: 2, arbitrary: fc.constantFrom<0 | 1>(0, 1).map((nodes) => ({ kind: "deploy" as const, nodes })) },
);

const GATEWAY = "http://gateway.test";
const REPLICA = "http://gpu-0.test";

describe("the spend guard under any sequence of faults (property)", () => {
  it("recorded spend never decreases within a month, and the wanted count is the minimum whenever spend has reached the budget", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "money-property-"));
    const configFile = path.join(dir, "autoscaler.json");
    try {
      await fc.assert(
        fc.asyncProperty(fc.array(action, { minLength: 5, maxLength: 40 }), async (actions) => {
          // $0.001 per node-second, a $2 budget: about half an hour of GPU.
          const policy = { ...controllerFile({ demandUrl: GATEWAY }).policy, nodeHourlyUsd: 3.6, gpuBudgetUsd: 2 };
          const write = (nodes: 0 | 1) =>
            writeFileSync(
              configFile,
              JSON.stringify({
                ...controllerFile({ demandUrl: GATEWAY, replicaUrls: nodes ? [REPLICA] : [] }),
                policy,
              } satisfies ControllerFile),
            );
          write(0);
          // The system clock, which the actions step, and a monotonic one, which only time moves.
          let now = Date.UTC(2026, 11, 10, 10, 0, 0);
          let monotonic = 0;
          let allowed = 0;
          const world = { gateway: true, vllm: true, healthy: true };
          const fetcher: Fetcher = async (url) => {
            const ok = (text: string) => ({ status: 200, text, headers: { get: () => null } });
            if (url.startsWith(GATEWAY)) {
              if (!world.gateway) throw new Error("connection refused");
              return ok(demandText({ allowed, unauthorized: 7 }));
            }
            if (url.endsWith("/health"))
              return { status: world.healthy ? 200 : 503, text: "", headers: { get: () => null } };
            if (!world.vllm) throw new Error("connection refused");
            return ok(vllmText([{ running: 0, waiting: 0 }]));
          };
          const store = new MemoryStore();
          const start = () =>
            Controller.start({
              configFile,
              store,
              fetcher,
              clock: () => now,
              monotonic: () => monotonic,
              log: new MemoryLogger(),
            });
          let controller = await start();
          const highest = new Map<string, number>();
          for (const a of actions) {
            if (a.kind === "clock") now += a.ms;
            else if (a.kind === "restart") controller = await start();
            else if (a.kind === "demand") allowed += a.requests;
            else if (a.kind === "gateway") world.gateway = a.readable;
            else if (a.kind === "vllm") Object.assign(world, { vllm: a.readable, healthy: a.healthy });
            else if (a.kind === "deploy") write(a.nodes);
            else {
              const status = (await controller.requestTick())!;
              const { month, monthToDateUsd: spend, gpuBudgetUsd } = status.ledger;
              const before = highest.get(month) ?? 0;
              if (spend < before - 1e-9) throw new Error(`spend in ${month} went down from ${before} to ${spend}`);
              highest.set(month, Math.max(before, spend));
              if (spend >= gpuBudgetUsd && status.decision!.wantedNodes !== policy.minNodes)
                throw new Error(
                  `spend ${spend} ≥ budget ${gpuBudgetUsd}, yet ${status.decision!.wantedNodes} node(s) wanted (${status.decision!.reason})`,
                );
              now += a.seconds * 1000;
              monotonic += a.seconds * 1000;
            }
          }
        }),
        { seed: 18, numRuns: 60 },
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
