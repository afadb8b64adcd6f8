import { describe, expect, it } from "vitest";
import { hoursPerMonth, isInsideWindows, parseWindows, WEEKS_PER_MONTH } from "../stacks/windows";
import { loadSettings } from "./helpers/load";

describe("GPU windows", () => {
  it("parses days, times and zones, and refuses what it cannot read", () => {
    const ok = parseWindows(["mon-fri 08:00-18:00 Europe/Berlin", "sat,sun 10:00-12:00 UTC"]);
    expect(ok.problems).toEqual([]);
    expect([...ok.windows[0].days].sort()).toEqual([1, 2, 3, 4, 5]);
    expect([...ok.windows[1].days].sort()).toEqual([0, 6]);
    const bad = parseWindows(["weekdays 8-18 Berlin", "mon 18:00-08:00 UTC", "mon 08:00-18:00 Mars/Olympus"]);
    expect(bad.windows).toEqual([]);
    expect(bad.problems.map((p) => p.keys)).toEqual([["gpuWindows"], ["gpuWindows"], ["gpuWindows"]]);
    expect(bad.problems[1].message).toContain("crosses midnight");
  });

  it("turns windows into hours a month: 40 h a week x 4.348 weeks = 174 h", () => {
    expect(WEEKS_PER_MONTH).toBeCloseTo(4.348, 3);
    expect(hoursPerMonth(parseWindows(["mon-fri 09:00-17:00 UTC"]).windows)).toBe(174);
    // Overlapping windows in one zone count once: 09-17 and 12-18 is 09-18, 45 h a week -> 196 h.
    expect(hoursPerMonth(parseWindows(["mon-fri 09:00-17:00 UTC", "mon-fri 12:00-18:00 UTC"]).windows)).toBe(196);
  });

  it("decides inside/outside in the window's own time zone", () => {
    const [berlin] = parseWindows(["mon-fri 08:00-18:00 Europe/Berlin"]).windows;
    // Wednesday 2026-11-25: 07:30 UTC is 08:30 in Berlin (UTC+1 in winter) -> inside.
    expect(isInsideWindows([berlin], new Date("2026-11-25T07:30:00Z"))).toBe(true);
    expect(isInsideWindows([berlin], new Date("2026-11-25T06:30:00Z"))).toBe(false);
    // Summer time: 2026-07-01 06:30 UTC is 08:30 in Berlin (UTC+2).
    expect(isInsideWindows([berlin], new Date("2026-07-01T06:30:00Z"))).toBe(true);
    // Saturday.
    expect(isInsideWindows([berlin], new Date("2026-11-28T10:00:00Z"))).toBe(false);
  });

  it("sets the hybrid tier's expected hours and cost; refused elsewhere or with explicit hours", () => {
    const r = loadSettings({ tier: "hybrid", gpuWindows: ["mon-fri 09:00-17:00 UTC"], budgetUsd: 1000 });
    expect(r.ok && r.config.gpu?.hoursPerMonth).toBe(174);
    // 84 + 3.39 x 174 (589.86) + 12.50 = 686.36
    expect(r.ok && r.config.cost.monthlyUsd).toBe(686.36);
    expect(loadSettings({ tier: "gpu", gpuWindows: ["mon-fri 09:00-17:00 UTC"] }).ok).toBe(false);
    const both = loadSettings({ tier: "hybrid", gpuWindows: ["mon-fri 09:00-17:00 UTC"], gpuHoursPerMonth: 40 });
    expect(!both.ok && both.problems.flatMap((p) => p.keys)).toContain("gpuHoursPerMonth");
  });
});
