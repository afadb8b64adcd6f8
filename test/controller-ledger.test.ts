import { describe, expect, it } from "vitest";
import {
  asLedger,
  emptyLedger,
  LedgerObservation,
  LedgerState,
  monthNodeSeconds,
  monthToDateUsd,
  observeDroplets,
  recoveredLedger,
} from "../programs/autoscaler/controller/ledger";

/** The spend guard's arithmetic, on hand-worked cases: DigitalOcean bills per second, 60 s minimum per droplet. */

const HOURLY = 3.6; // $0.001 per second: seconds and dollars read off each other
const at = (iso: string) => Date.parse(iso);
const node = (name: string) => ({ node: name, healthUrl: `http://10.0.0.1/${name}/health` });

function step(
  ledger: LedgerState,
  nowMs: number,
  deployed: string[],
  answering: string[] = [],
  extra: Partial<LedgerObservation> = {},
): LedgerState {
  return observeDroplets(ledger, {
    nowMs,
    deployed: deployed.map(node),
    stillAnswering: new Set(answering),
    createSeconds: 0,
    destroySeconds: 0,
    ...extra,
  });
}

describe("the ledger", () => {
  it("bills a droplet that lived 30 s for the 60 s minimum", () => {
    const t0 = at("2026-12-10T10:00:00Z");
    let l = step(emptyLedger(t0), t0, ["gpu-0"]);
    l = step(l, t0 + 15_000, []); // the deploy dropped it: leaving, still counted
    l = step(l, t0 + 30_000, []); // no longer answers: closed at 30 s of life
    expect(l.open).toEqual({});
    expect(l.closedNodeSeconds).toBe(60);
    expect(monthToDateUsd(l, t0 + 3_600_000, HOURLY)).toBeCloseTo(0.06, 10);
  });

  it("counts an open droplet as at least 60 s from its first tick, and by the second after that", () => {
    const t0 = at("2026-12-10T10:00:00Z");
    const l = step(emptyLedger(t0), t0, ["gpu-0"]);
    expect(monthNodeSeconds(l, t0 + 10_000)).toBe(60);
    expect(monthNodeSeconds(l, t0 + 2 * 3_600_000)).toBe(7200);
    expect(monthToDateUsd(l, t0 + 2 * 3_600_000, HOURLY)).toBeCloseTo(7.2, 10);
  });

  it("keeps counting a node that left the routes while it still answers (draining), then the teardown", () => {
    const t0 = at("2026-12-10T10:00:00Z");
    let l = step(emptyLedger(t0), t0, ["gpu-0"]);
    l = step(l, t0 + 600_000, []);
    l = step(l, t0 + 900_000, [], ["gpu-0"]); // draining for 5 more minutes
    expect(l.open["gpu-0"]?.leaving).toBe(true);
    l = observeDroplets(l, {
      nowMs: t0 + 960_000,
      deployed: [],
      stillAnswering: new Set(),
      createSeconds: 0,
      destroySeconds: 60,
    });
    expect(l.closedNodeSeconds).toBe(960 + 60);
  });

  it("counts from the accepted wake (before DigitalOcean created the droplet), or createSeconds back when no wake explains it", () => {
    const t0 = at("2026-12-10T10:00:00Z");
    const woken = step(emptyLedger(t0), t0 + 300_000, ["gpu-0"], [], { wakeAcceptedMs: t0 });
    expect(monthNodeSeconds(woken, t0 + 300_000)).toBe(300);
    const manual = step(emptyLedger(t0), t0 + 300_000, ["gpu-0"], [], { createSeconds: 120 });
    expect(monthNodeSeconds(manual, t0 + 300_000)).toBe(120);
  });

  it("starts every calendar month (UTC) at zero, carrying on the droplets still alive from the month's first second", () => {
    const open = step(emptyLedger(at("2026-11-30T23:00:00Z")), at("2026-11-30T23:00:00Z"), ["gpu-0"]);
    expect(monthNodeSeconds(open, at("2026-11-30T23:30:00Z"))).toBe(1800);
    const december = step(open, at("2026-12-01T01:00:00Z"), ["gpu-0"]);
    expect(december.month).toBe("2026-12");
    expect(monthNodeSeconds(december, at("2026-12-01T01:00:00Z"))).toBe(3600);
    expect(monthToDateUsd(open, at("2026-12-01T01:00:00Z"), HOURLY)).toBeCloseTo(3.6, 10);
  });

  it("bills a 40 s droplet across midnight of a month change 60 s in all: 30 s in the old month, 10 s + the 20 s top-up in the new", () => {
    const born = at("2026-11-30T23:59:30Z");
    const l = step(emptyLedger(born), born, ["gpu-0"]);
    const inNovember = monthNodeSeconds(l, at("2026-11-30T23:59:59.999Z")) - 30; // less the top-up still owed
    let next = step(l, at("2026-12-01T00:00:05Z"), []);
    next = step(next, at("2026-12-01T00:00:10Z"), []);
    expect(next.closedNodeSeconds).toBe(30);
    expect(Math.round(inNovember + next.closedNodeSeconds)).toBe(60);
  });

  it("a lost ledger restarts above what may have been spent: DigitalOcean's account usage, else every node slot since the 1st", () => {
    const now = at("2026-12-11T00:00:00Z"); // 240 h into the month
    const worst = recoveredLedger(now, "ledger.json is not JSON", { maxNodes: 2, nodeHourlyUsd: HOURLY });
    expect(monthToDateUsd(worst, now, HOURLY)).toBeCloseTo(2 * 240 * 3.6, 6);
    expect(worst.floorReason).toMatch(/worst case \(2 node/);
    const bounded = recoveredLedger(now, "ledger.json is not JSON", {
      accountMonthToDateUsd: 123.45,
      maxNodes: 2,
      nodeHourlyUsd: HOURLY,
    });
    expect(monthToDateUsd(bounded, now, HOURLY)).toBe(123.45);
    // The floor lasts the month only.
    expect(monthToDateUsd(bounded, at("2027-01-01T00:00:01Z"), HOURLY)).toBe(0);
  });

  it("reads back only a ledger of the right shape", () => {
    const l = step(emptyLedger(at("2026-12-10T10:00:00Z")), at("2026-12-10T10:00:00Z"), ["gpu-0"]);
    expect(asLedger(JSON.parse(JSON.stringify(l)))).toEqual(l);
    expect(asLedger({ ...l, closedNodeSeconds: -1 })).toBeUndefined();
    expect(asLedger({ ...l, month: "December" })).toBeUndefined();
    expect(asLedger({ ...l, open: { "gpu-0": { sinceMs: "soon" } } })).toBeUndefined();
  });
});
