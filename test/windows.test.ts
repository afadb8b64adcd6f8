import fc from "fast-check";
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
    // s-8vcpu-16gb 96 + 3.39 x 174 (589.86) + 12.50 = 698.36
    expect(r.ok && r.config.cost.monthlyUsd).toBe(698.36);
    expect(loadSettings({ tier: "gpu", gpuWindows: ["mon-fri 09:00-17:00 UTC"] }).ok).toBe(false);
    const both = loadSettings({ tier: "hybrid", gpuWindows: ["mon-fri 09:00-17:00 UTC"], gpuHoursPerMonth: 40 });
    expect(!both.ok && both.problems.flatMap((p) => p.keys)).toContain("gpuHoursPerMonth");
  });
});

describe("GPU windows are merged as time intervals", () => {
  const hours = (...w: string[]) => {
    const parsed = parseWindows(w);
    expect(parsed.problems).toEqual([]);
    return hoursPerMonth(parsed.windows);
  };

  it("never counts an hour twice: two 24/7 windows in different zones, or one zone spelled three ways, are 730 h", () => {
    expect(hours("sun-sat 00:00-24:00 UTC")).toBe(730);
    expect(hours("sun-sat 00:00-24:00 UTC", "sun-sat 00:00-24:00 Europe/Berlin")).toBe(730);
    expect(hours("mon-fri 09:00-17:00 UTC", "mon-fri 09:00-17:00 utc", "mon-fri 09:00-17:00 Etc/UTC")).toBe(
      hours("mon-fri 09:00-17:00 UTC"),
    );
    // 14 h ahead of UTC and 11 h behind: the union is still one year, clipped to it.
    expect(hours("sun-sat 00:00-24:00 Pacific/Kiritimati", "sun-sat 00:00-24:00 Pacific/Pago_Pago")).toBe(730);
  });

  it("merges overlapping windows in different zones by the clock, DST included", () => {
    // London is an hour behind Berlin all year (both switch on the same dates), so 08-18 in each is
    // 11 h a day: 261 weekdays of 2026 x 11 h / 12 = 239.25.
    expect(hours("mon-fri 08:00-18:00 Europe/Berlin", "mon-fri 08:00-18:00 Europe/London")).toBe(239);
    // New York and Berlin switch on different dates: the overlap of 08-18 Berlin and 08-18 New York
    // (6 h apart, 5 h for a few weeks a year) is never counted twice and never lost.
    const apart = hours("mon-fri 08:00-18:00 Europe/Berlin", "mon-fri 08:00-18:00 America/New_York");
    expect(apart).toBeGreaterThan(hours("mon-fri 08:00-18:00 Europe/Berlin"));
    expect(apart).toBeLessThan(2 * hours("mon-fri 08:00-18:00 Europe/Berlin"));
  });

  it("a derived gpuHoursPerMonth passes the setting's own check (at most 744): the stack is accepted and costed at 730 h", () => {
    const r = loadSettings({
      tier: "hybrid",
      gpuWindows: ["sun-sat 00:00-24:00 UTC", "sun-sat 00:00-24:00 Asia/Tokyo"],
      budgetUsd: 5000,
    });
    expect(r.ok && r.config.gpu?.hoursPerMonth).toBe(730);
  });

  it("refuses day ranges it cannot read instead of reading part of them, and more than 64 windows", () => {
    expect(parseWindows(["mon-tue-wed 08:00-09:00 UTC"]).problems).toHaveLength(1);
    expect(parseWindows(["mon 08:00-09:00-10:00 UTC"]).problems).toHaveLength(1);
    expect(parseWindows(Array.from({ length: 65 }, () => "mon 08:00-09:00 UTC")).problems[0].message).toContain(
      "at most 64",
    );
  });

  it("property: the union lies between the larger window and the sum of both, and is symmetric", () => {
    const zones = ["UTC", "Etc/UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"];
    const day = fc.constantFrom("mon", "tue", "sat", "sun", "mon-fri", "sat,sun", "fri-mon", "sun-sat");
    const window = fc
      .tuple(day, fc.integer({ min: 0, max: 47 }), fc.integer({ min: 1, max: 48 }), fc.constantFrom(...zones))
      .filter(([, a, b]) => a < b)
      .map(([d, a, b, z]) => `${d} ${clock(a)}-${clock(b)} ${z}`);
    fc.assert(
      fc.property(window, window, (a, b) => {
        const [ha, hb, both, reversed] = [hours(a), hours(b), hours(a, b), hours(b, a)];
        expect(both).toBe(reversed);
        // Rounding to whole hours a month allows one hour either way.
        expect(both).toBeGreaterThanOrEqual(Math.max(ha, hb) - 1);
        expect(both).toBeLessThanOrEqual(Math.min(730, ha + hb + 1));
        expect(hours(a, a)).toBe(ha);
      }),
      { seed: 20261201, numRuns: 150 },
    );
  });
});

/** Half-hour steps as HH:MM, 24:00 included. */
function clock(halfHours: number): string {
  return `${String(Math.floor(halfHours / 2)).padStart(2, "0")}:${halfHours % 2 ? "30" : "00"}`;
}
