import { describe, expect, it } from "vitest";
import {
  decide,
  initialState,
  insideWindowsAt,
  SCALE_DOWN_DELAY_SECONDS,
  SCALE_UP_WINDOW_SECONDS,
} from "../programs/autoscaler/decision";
import { emptyLearned, gapEndsWithin, LEARNING_DEFAULTS, observe } from "../programs/autoscaler/learning";
import type { AutoscalerState, PolicyConfig, TickInput } from "../programs/autoscaler/types";
import { isInsideWindows, parseWindows } from "../stacks/windows";
import { HAND_POLICY } from "./helpers/autoscaler";

const CONFIG: PolicyConfig = HAND_POLICY;

const T0 = Date.UTC(2026, 0, 5, 12, 0, 0); // Monday noon UTC
const TICK = 15_000;

function input(over: Partial<TickInput> & { ready?: number; starting?: number }): TickInput {
  const { ready = 0, starting = 0, ...rest } = over;
  return {
    nowMs: T0,
    nodes: { ready, starting, draining: 0 },
    coderRequests: 0,
    replicas: Array.from({ length: ready }, () => ({ running: 0, waiting: 0 })),
    monthToDateUsd: 0,
    ...rest,
  };
}

/** Runs ticks from `fromMs` for `seconds`, feeding each tick's input; returns the last decision. */
function run(
  config: PolicyConfig,
  state: AutoscalerState,
  fromMs: number,
  seconds: number,
  tick: (nowMs: number) => TickInput,
) {
  let s = state;
  let last = decide(config, tick(fromMs), s);
  s = last.state;
  for (let t = fromMs + TICK; t <= fromMs + seconds * 1000; t += TICK) {
    last = decide(config, tick(t), s);
    s = last.state;
  }
  return last;
}

describe("autoscaler decision: the cases of issue 13", () => {
  it("demand while off wakes one node", () => {
    const d = decide(CONFIG, input({ coderRequests: 3 }), initialState());
    expect(d.wantedNodes).toBe(1);
    expect(d.reason).toBe("wake-on-demand");
    expect(d.message).toMatch(/3 coder request/);
    expect(d.numbers.coderRequests).toBe(3);
  });

  it("no demand while off: stays off", () => {
    const d = decide(CONFIG, input({}), initialState());
    expect(d.wantedNodes).toBe(0);
  });

  it("idle for gpuIdleMinutes with no coder request: to zero, not a tick before", () => {
    const served = decide(CONFIG, input({ ready: 1, coderRequests: 1 }), initialState(1)).state;
    const before = decide(CONFIG, input({ ready: 1, nowMs: T0 + 585_000 }), served);
    expect(before.wantedNodes).toBe(1);
    const at = decide(CONFIG, input({ ready: 1, nowMs: T0 + 600_000 }), before.state);
    expect(at.wantedNodes).toBe(0);
    expect(at.reason).toBe("idle");
    expect(at.numbers.idleSeconds).toBe(600);
  });

  it("idle goes down to the minimum, not to zero, when gpuMinNodes is set", () => {
    const config = { ...CONFIG, minNodes: 1 };
    const served = decide(config, input({ ready: 2, coderRequests: 1 }), initialState(2)).state;
    const d = decide(config, input({ ready: 2, nowMs: T0 + 700_000 }), served);
    expect(d.wantedNodes).toBe(1);
    expect(d.reason).toBe("idle");
  });

  it("an idle node with requests still in flight is not removed", () => {
    const served = decide(CONFIG, input({ ready: 1, coderRequests: 1 }), initialState(1)).state;
    const d = decide(CONFIG, input({ ready: 1, nowMs: T0 + 700_000, replicas: [{ running: 1, waiting: 0 }] }), served);
    expect(d.wantedNodes).toBe(1);
  });

  it("sustained load above the target adds one node after 60 s, not before", () => {
    // 9 of 10 sequences in flight: 90% > 80%.
    const busy = (nowMs: number) =>
      input({ nowMs, ready: 1, coderRequests: 5, replicas: [{ running: 8, waiting: 1 }] });
    const early = run(CONFIG, initialState(1), T0, SCALE_UP_WINDOW_SECONDS - 15, busy);
    expect(early.wantedNodes).toBe(1);
    const later = run(CONFIG, early.state, T0 + SCALE_UP_WINDOW_SECONDS * 1000, 0, busy);
    expect(later.wantedNodes).toBe(2);
    expect(later.reason).toBe("scale-up");
    expect(later.numbers.load).toBe(0.9);
  });

  it("never above gpuMaxNodes, and never another node while one is still starting", () => {
    const full = (nowMs: number) =>
      input({
        nowMs,
        ready: 2,
        coderRequests: 5,
        replicas: [
          { running: 10, waiting: 5 },
          { running: 10, waiting: 5 },
        ],
      });
    expect(run(CONFIG, initialState(2), T0, 600, full).wantedNodes).toBe(2);
    const starting = (nowMs: number) =>
      input({ nowMs, ready: 1, starting: 1, coderRequests: 5, replicas: [{ running: 10, waiting: 5 }] });
    expect(run({ ...CONFIG, maxNodes: 3 }, initialState(2), T0, 600, starting).wantedNodes).toBe(2);
  });

  it("load below the target removes one node after the delay, not before", () => {
    // 2 replicas, 3 in flight of 20: one replica would carry it at 30% < 80%.
    const light = (nowMs: number) =>
      input({
        nowMs,
        ready: 2,
        coderRequests: 2,
        replicas: [
          { running: 2, waiting: 0 },
          { running: 1, waiting: 0 },
        ],
      });
    const early = run(CONFIG, initialState(2), T0, SCALE_DOWN_DELAY_SECONDS - 15, light);
    expect(early.wantedNodes).toBe(2);
    const later = run(CONFIG, early.state, T0 + SCALE_DOWN_DELAY_SECONDS * 1000, 0, light);
    expect(later.wantedNodes).toBe(1);
    expect(later.reason).toBe("scale-down");
    // With traffic flowing, the last node stays.
    const single = (nowMs: number) =>
      input({ nowMs, ready: 1, coderRequests: 1, replicas: [{ running: 0, waiting: 0 }] });
    expect(run(CONFIG, initialState(1), T0, 3600, single).wantedNodes).toBe(1);
  });

  it("load between the bands holds: no flapping between 1 and 2 nodes", () => {
    // 2 replicas, 10 of 20 in flight: 50%, but one replica would be at 100% > 80%.
    const mid = (nowMs: number) =>
      input({
        nowMs,
        ready: 2,
        coderRequests: 3,
        replicas: [
          { running: 5, waiting: 0 },
          { running: 5, waiting: 0 },
        ],
      });
    const d = run(CONFIG, initialState(2), T0, 3600, mid);
    expect(d.wantedNodes).toBe(2);
    expect(d.reason).toBe("hold");
  });

  it("budget spent: down to the minimum, demand or not", () => {
    const d = decide(
      { ...CONFIG, minNodes: 0 },
      input({ ready: 1, coderRequests: 10, monthToDateUsd: 300 }),
      initialState(1),
    );
    expect(d.wantedNodes).toBe(0);
    expect(d.reason).toBe("budget-spent");
    expect(d.message).toMatch(/\$300\.00 of \$300\.00/);
  });

  it("the spend guard refuses a wake or a scale-up whose next hour would pass the budget", () => {
    // $297 spent + one node-hour at $3.39 > $300.
    const wake = decide(CONFIG, input({ coderRequests: 1, monthToDateUsd: 297 }), initialState());
    expect(wake.wantedNodes).toBe(0);
    expect(wake.reason).toBe("budget-refuses-wake");
    // $295 spent: one node fits the next hour ($298.39), two do not ($301.78).
    const busy = (nowMs: number) =>
      input({ nowMs, ready: 1, coderRequests: 5, replicas: [{ running: 10, waiting: 2 }], monthToDateUsd: 295 });
    const up = run(CONFIG, initialState(1), T0, 120, busy);
    expect(up.wantedNodes).toBe(1);
    expect(up.reason).toBe("budget-refuses-scale-up");
  });

  it("a pin (gpu on --for 8h) is left alone until it expires", () => {
    const pin = { nodes: 1, untilMs: T0 + 8 * 3600_000 };
    const idle = decide(CONFIG, input({ ready: 1, nowMs: T0 + 3600_000, pin }), initialState(1));
    expect(idle.wantedNodes).toBe(1);
    expect(idle.reason).toBe("pinned");
    const off = decide(CONFIG, input({ coderRequests: 50, pin: { nodes: 0, untilMs: T0 + 60_000 } }), initialState());
    expect(off.wantedNodes).toBe(0);
    const expired = decide(CONFIG, input({ ready: 1, nowMs: T0 + 9 * 3600_000, pin }), initialState(1));
    expect(expired.reason).not.toBe("pinned");
  });

  it("metrics missing: holds what it wanted and leaves the state untouched", () => {
    const state: AutoscalerState = { ...initialState(1), lastRequestMs: T0 - 3600_000 };
    const noGateway = decide(CONFIG, input({ ready: 1, coderRequests: undefined }), state);
    expect(noGateway.wantedNodes).toBe(1);
    expect(noGateway.reason).toBe("hold-metrics-missing");
    expect(noGateway.state).toBe(state);
    const noVllm = decide(CONFIG, input({ ready: 1, coderRequests: 4, replicas: undefined }), state);
    expect(noVllm.reason).toBe("hold-metrics-missing");
    expect(noVllm.message).toMatch(/vLLM/);
    // An hour of blind ticks never flaps: every one holds.
    let s = state;
    for (let t = 0; t < 240; t++) {
      const d = decide(
        CONFIG,
        input({
          ready: 1,
          nowMs: T0 + t * TICK,
          coderRequests: t % 2 ? undefined : 0,
          replicas: t % 2 ? [{ running: 0, waiting: 0 }] : undefined,
        }),
        s,
      );
      expect(d.wantedNodes).toBe(1);
      s = d.state;
    }
  });

  it("gpuWindows are a floor inside their hours and nothing outside them", () => {
    const config = { ...CONFIG, windows: parseWindows(["mon-fri 09:00-17:00 UTC"]).windows };
    const inside = decide(config, input({ nowMs: Date.UTC(2026, 0, 5, 9, 0) }), initialState());
    expect(inside.wantedNodes).toBe(1);
    expect(inside.reason).toBe("window-floor");
    const outside = decide(config, input({ nowMs: Date.UTC(2026, 0, 5, 17, 0) }), initialState());
    expect(outside.wantedNodes).toBe(0);
    // Inside the window an idle node stays.
    const served = decide(
      config,
      input({ ready: 1, coderRequests: 1, nowMs: Date.UTC(2026, 0, 5, 10, 0) }),
      initialState(1),
    ).state;
    expect(decide(config, input({ ready: 1, nowMs: Date.UTC(2026, 0, 5, 11, 0) }), served).wantedNodes).toBe(1);
  });

  it("the fast window check agrees with stacks/windows.ts isInsideWindows, across DST changes and zones", () => {
    const windows = parseWindows([
      "mon-fri 08:00-18:00 Europe/Berlin",
      "sat 10:30-12:15 America/St_Johns",
      "sun 00:00-01:00 Australia/Lord_Howe",
    ]).windows;
    // Every 29 minutes for 15 days around Europe's and North America's spring change, and Lord Howe's autumn one.
    for (const start of [Date.UTC(2026, 2, 20), Date.UTC(2026, 3, 1)]) {
      for (let t = start; t < start + 15 * 86400_000; t += 29 * 60_000) {
        expect(insideWindowsAt(windows, t), new Date(t).toISOString()).toBe(isInsideWindows(windows, new Date(t)));
      }
    }
  });

  it("every decision says why, with the numbers behind it", () => {
    const cases: [PolicyConfig, TickInput, AutoscalerState][] = [
      [CONFIG, input({ coderRequests: 1 }), initialState()],
      [CONFIG, input({ ready: 1, coderRequests: 1, replicas: [{ running: 3, waiting: 0 }] }), initialState(1)],
      [CONFIG, input({ ready: 1, monthToDateUsd: 400 }), initialState(1)],
    ];
    for (const [c, i, s] of cases) {
      const d = decide(c, i, s);
      expect(d.message.length).toBeGreaterThan(15);
      expect(d.numbers.wantedNodes).toBe(d.wantedNodes);
      expect(d.numbers.currentNodes).toBe(i.nodes.ready + i.nodes.starting);
      expect(typeof d.numbers.monthToDateUsd).toBe("number");
    }
  });
});

describe("autoscaler learning", () => {
  const PREDICTIVE: PolicyConfig = { ...CONFIG, predictive: true };
  /** Ten minutes of traffic at 07:00 UTC every day, one request a tick; the GPU answers as the decision wants, after the cold start. */
  function dailyBursts(days: number) {
    let state = initialState();
    let nodeReadyAt = Infinity;
    let nodes = 0;
    const log: { day: number; at: string; reason: string; wanted: number }[] = [];
    const start = Date.UTC(2026, 0, 5);
    for (let t = start; t < start + days * 86400_000; t += TICK) {
      const sinceSeven = ((t - start) % 86400_000) - 7 * 3600_000;
      const requests = sinceSeven >= 0 && sinceSeven < 600_000 ? 1 : 0;
      const ready = nodes > 0 && t >= nodeReadyAt ? nodes : 0;
      const d = decide(
        PREDICTIVE,
        {
          nowMs: t,
          nodes: { ready, starting: nodes - ready, draining: 0 },
          coderRequests: requests,
          replicas: Array.from({ length: ready }, () => ({ running: 0, waiting: 0 })),
          monthToDateUsd: 0,
        },
        state,
      );
      if (d.wantedNodes > nodes) nodeReadyAt = t + PREDICTIVE.coldStartSeconds * 1000;
      if (d.wantedNodes !== nodes)
        log.push({
          day: Math.floor((t - start) / 86400_000),
          at: new Date(t).toISOString().slice(11, 19),
          reason: d.reason,
          wanted: d.wantedNodes,
        });
      nodes = d.wantedNodes;
      state = d.state;
    }
    return { state, log };
  }

  it("learns a daily burst and wakes ahead of it, so the node is ready when it starts", () => {
    const { log } = dailyBursts(6);
    const firstDay = log.filter((l) => l.day === 0);
    expect(firstDay[0]).toMatchObject({ reason: "wake-on-demand", at: "07:00:00" });
    const predicted = log.filter((l) => l.reason === "wake-predicted");
    expect(predicted.length).toBeGreaterThanOrEqual(3);
    // Woken at least a cold start (15 min) before 07:00, on the days after it learned.
    for (const p of predicted) expect(p.at <= "06:45:00", JSON.stringify(p)).toBe(true);
    expect(log.filter((l) => l.day >= 2 && l.reason === "wake-on-demand")).toEqual([]);
  });

  it("the learned state is plain data: a JSON round trip decides the same", () => {
    const { state } = dailyBursts(3);
    const copy = JSON.parse(JSON.stringify(state)) as AutoscalerState;
    expect(copy).toEqual(state);
    const at = Date.UTC(2026, 0, 8, 6, 40);
    const a = decide(PREDICTIVE, input({ nowMs: at }), state);
    const b = decide(PREDICTIVE, input({ nowMs: at }), copy);
    expect(b.wantedNodes).toBe(a.wantedNodes);
    expect(b.reason).toBe(a.reason);
  });

  it("never lets a node go sooner than gpuIdleMinutes, and never later than the ceiling", () => {
    const served = decide(PREDICTIVE, input({ ready: 1, coderRequests: 1 }), initialState(1)).state;
    expect(decide(PREDICTIVE, input({ ready: 1, nowMs: T0 + 585_000 }), served).wantedNodes).toBe(1);
    const ceiling = PREDICTIVE.idleSeconds * LEARNING_DEFAULTS.idleCeilingFactor;
    // Even a learned belief that traffic returns any moment stops at the ceiling.
    const sure: AutoscalerState = {
      ...served,
      learned: { ...served.learned, gapsSeconds: Array(20).fill(ceiling + 60), burstRequests: 1000, keepHitRate: 1 },
    };
    expect(decide(PREDICTIVE, input({ ready: 1, nowMs: T0 + (ceiling - 15) * 1000 }), sure).wantedNodes).toBe(1);
    expect(decide(PREDICTIVE, input({ ready: 1, nowMs: T0 + ceiling * 1000 }), sure).wantedNodes).toBe(0);
  });

  it("keeps the node through a quiet spell that the gaps seen say ends soon, when bursts are worth it", () => {
    const served = decide(PREDICTIVE, input({ ready: 1, coderRequests: 1 }), initialState(1)).state;
    // Recent gaps all ended at 15 min; after 10 min of quiet, traffic is due within a restart's cost.
    const learned = { ...served.learned, gapsSeconds: Array(10).fill(900), burstRequests: 50 };
    const withHistory = { ...served, learned, nodeSeconds: 1e6 };
    const d = decide(PREDICTIVE, input({ ready: 1, nowMs: T0 + 660_000 }), withHistory);
    expect(d.wantedNodes).toBe(1);
    expect(d.numbers.trafficChance).toBeGreaterThan(0.4);
    // The same quiet spell with no such history: let go at gpuIdleMinutes, as the reactive rule.
    expect(
      decide(PREDICTIVE, input({ ready: 1, nowMs: T0 + 660_000 }), { ...served, nodeSeconds: 1e6 }).wantedNodes,
    ).toBe(0);
  });

  it("stops predicting once its extra GPU time passes its share of recent GPU time", () => {
    const served = decide(PREDICTIVE, input({ ready: 1, coderRequests: 1 }), initialState(1)).state;
    const learned = { ...served.learned, gapsSeconds: Array(10).fill(900), burstRequests: 50 };
    const overspent = { ...served, learned, nodeSeconds: 10_000, speculativeNodeSeconds: 5_000 };
    expect(decide(PREDICTIVE, input({ ready: 1, nowMs: T0 + 660_000 }), overspent).wantedNodes).toBe(0);
  });

  it("records gaps and the requests a burst's first cold start holds", () => {
    let l = emptyLearned();
    l = observe(l, T0, 2, null, 900);
    expect(l.countingUntilMs).toBe(T0 + 900_000);
    l = observe(l, T0 + 60_000, 3, T0, 900);
    expect(l.gapsSeconds).toEqual([60]);
    l = observe(l, T0 + 901_000, 0, T0 + 60_000, 900);
    expect(l.burstRequests).toBe(5);
    expect(l.burstsSeen).toBe(1);
    // Of gaps longer than 100 s (200, 300, 1000), two ended within 250 s more.
    expect(gapEndsWithin([50, 200, 300, 1000], 100, 250, 3)).toBeCloseTo(2 / 3);
    expect(gapEndsWithin([50, 200], 100, 250, 3)).toBeUndefined();
  });
});
