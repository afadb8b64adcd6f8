import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { gamma, gammaShapeForCv, logGamma, seeded, weibull, weibullShapeForCv } from "../simulator/random";
import { POLICY_FIELDS } from "../simulator/report";
import { readAzure, readMooncake, readServegen, SERVEGEN_WINDOW_SECONDS, TraceError } from "../simulator/traces";
import { ROOT } from "./helpers/load";

const OPTIONS = { seed: 7, typicalInputTokens: 1966, typicalOutputTokens: 131 };
const dir = mkdtempSync(path.join(tmpdir(), "simulate-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function problemsOf(read: () => unknown): TraceError {
  try {
    read();
  } catch (err) {
    if (err instanceof TraceError) return err;
    throw err;
  }
  throw new Error("the reader accepted the trace");
}

describe("trace readers", () => {
  it("reads Azure's CSV (timestamps as UTC, unsorted rows sorted)", () => {
    const t = readAzure(
      "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:50.5000000,100,10\n2023-11-16 18:15:46.0000000,2000,20\n",
      "a.csv",
      OPTIONS,
    );
    expect(Array.from(t.arrivals)).toEqual([0, 4.5]);
    expect(Array.from(t.inputTokens)).toEqual([2000, 100]);
    expect(new Date(t.startMs).toISOString()).toBe("2023-11-16T18:15:46.000Z");
  });

  it("names every bad Azure line, not just the first", () => {
    const e = problemsOf(() =>
      readAzure(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,100,10\nyesterday,100,10\n2023-11-16 18:15:47,-5,x\n",
        "a.csv",
        OPTIONS,
      ),
    );
    expect(e.problems.map((p) => p.line)).toEqual([3, 4]);
    expect(e.problems[0].message).toMatch(/TIMESTAMP "yesterday"/);
    expect(e.problems[1].message).toMatch(/ContextTokens "-5".*GeneratedTokens "x"/);
    expect(problemsOf(() => readAzure("time,in,out\n", "a.csv", OPTIONS)).problems[0].message).toMatch(
      /TIMESTAMP,ContextTokens,GeneratedTokens/,
    );
  });

  it("reads Mooncake JSONL and names bad lines", () => {
    const ok = readMooncake(
      '{"timestamp": 0, "input_length": 10, "output_length": 5, "hash_ids": [1]}\n\n{"timestamp": 1500, "input_length": 20, "output_length": 1}\n',
      "m.jsonl",
      OPTIONS,
    );
    expect(Array.from(ok.arrivals)).toEqual([0, 1.5]);
    const e = problemsOf(() =>
      readMooncake(
        '{"timestamp": 0, "input_length": 10, "output_length": 5}\n{"timestamp": 1,\n[1,2]\n{"timestamp": "soon", "input_length": 1}\n',
        "m.jsonl",
        OPTIONS,
      ),
    );
    expect(e.problems.map((p) => p.line)).toEqual([2, 3, 4]);
    expect(e.problems[2].message).toMatch(/"timestamp" is "soon".*no "output_length"/);
  });

  it("reads a ServeGen rate series: ceil(rps x 600) requests a window, inside it, the same for the same seed", () => {
    const text = "window_start_s,rps,cv,arrival_pattern\n0,0.5,2,Gamma\n1200,0.0167,1.5,Weibull\n";
    const a = readServegen(text, "s.csv", OPTIONS);
    const b = readServegen(text, "s.csv", OPTIONS);
    expect(Array.from(a.arrivals)).toEqual(Array.from(b.arrivals));
    const first = Array.from(a.arrivals).filter((t) => t < SERVEGEN_WINDOW_SECONDS);
    const second = Array.from(a.arrivals).filter((t) => t >= 1200 && t < 1800);
    expect(first.length).toBe(300);
    expect(second.length).toBe(Math.ceil(0.0167 * 600));
    expect(first.length + second.length).toBe(a.arrivals.length);
    expect(a.endSeconds).toBe(1800);
    expect(a.lengthsGiven).toBe(false);
    expect(a.inputTokens[0]).toBe(1966);
    // A different seed draws different arrivals.
    expect(Array.from(readServegen(text, "s.csv", { ...OPTIONS, seed: 8 }).arrivals)).not.toEqual(
      Array.from(a.arrivals),
    );
  });

  it("reads the upstream ServeGen chunk format (no header, empty windows as rps 0, fitted shape and scale)", () => {
    const t = readServegen(
      "0,0.1,1.2,Gamma,0.69,14.3\n600,0,0,,0,0\n1200,0.05,0.8,Weibull,1.2,22\n",
      "chunk-1-trace.csv",
      OPTIONS,
    );
    expect(t.arrivals.length).toBe(60 + 30);
  });

  it("names every bad ServeGen line: bad numbers, unknown patterns, repeated windows", () => {
    const e = problemsOf(() =>
      readServegen(
        "window_start_s,rps,cv,arrival_pattern\n0,1,1,Gamma\n650,1,1,Gamma\n1200,fast,1,Gamma\n1800,1,-2,Poisson\n0,2,1,Gamma\n",
        "s.csv",
        OPTIONS,
      ),
    );
    expect(e.problems.map((p) => p.line)).toEqual([3, 4, 5, 6]);
    expect(e.problems[0].message).toMatch(/not a multiple of 600/);
    expect(e.problems[1].message).toMatch(/rps "fast"/);
    expect(e.problems[2].message).toMatch(/cv "-2".*arrival_pattern "Poisson" is not Gamma or Weibull/);
    expect(e.problems[3].message).toMatch(/listed twice \(also on line 2\)/);
    expect(problemsOf(() => readServegen("window_start_s,rps\n0,0\n", "s.csv", OPTIONS)).problems[0].message).toMatch(
      /no window has traffic/,
    );
  });
});

describe("traces beyond what a replay can take", () => {
  it("refuses a span past a year, naming the line that makes it (a replay ticks through every 15 s of it)", () => {
    const servegen = problemsOf(() => readServegen("0,0.01\n600000000000,0.01\n", "s.csv", OPTIONS));
    expect(servegen.problems).toEqual([
      { line: 2, message: expect.stringMatching(/window_start_s 600000000000 .*366 days/) },
    ]);
    const mooncake = problemsOf(() =>
      readMooncake(
        '{"timestamp": 0, "input_length": 10, "output_length": 5}\n{"timestamp": 1e15, "input_length": 10, "output_length": 5}\n',
        "m.jsonl",
        OPTIONS,
      ),
    );
    expect(mooncake.problems).toEqual([{ line: 2, message: expect.stringMatching(/366 days/) }]);
    const azure = problemsOf(() =>
      readAzure(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n0001-01-01 00:00:00,10,5\n9999-12-31 23:59:59,10,5\n",
        "a.csv",
        OPTIONS,
      ),
    );
    expect(azure.problems.map((p) => p.line)).toEqual([3]);
    expect(azure.problems[0].message).toMatch(/9999-12-31.*0001-01-01.*366 days/);
    // A single request far from day 0 of a rate series is as long a replay.
    expect(
      problemsOf(() => readServegen("window_start_s,rps\n31622400000,1\n", "s.csv", OPTIONS)).problems[0].line,
    ).toBe(2);
    // A year is fine.
    expect(readServegen("0,0.01\n31536000,0.01\n", "s.csv", OPTIONS).endSeconds).toBe(31536600);
  });

  it("refuses token counts no request has, naming the line, instead of printing $Infinity", () => {
    const azure = problemsOf(() =>
      readAzure(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,1e308,10\n2023-11-16 18:15:47,10,1e308\n",
        "a.csv",
        OPTIONS,
      ),
    );
    expect(azure.problems.map((p) => p.line)).toEqual([2, 3]);
    expect(azure.problems[0].message).toMatch(/ContextTokens 1e\+308 is more than 10000000/);
    const mooncake = problemsOf(() =>
      readMooncake('{"timestamp": 0, "input_length": 1e308, "output_length": 5}\n', "m.jsonl", OPTIONS),
    );
    expect(mooncake.problems[0]).toMatchObject({ line: 1, message: expect.stringMatching(/input_length/) });
  });

  it("refuses a rate series that would draw more requests than a replay can hold, naming the window", () => {
    const e = problemsOf(() => readServegen("window_start_s,rps\n0,1\n600,100000\n", "s.csv", OPTIONS));
    expect(e.problems).toEqual([
      { line: 3, message: expect.stringMatching(/to 60000600 requests, more than the 20000000/) },
    ]);
  });
});

describe("arrival distributions", () => {
  it("shapes for a coefficient of variation: cv 1 is exponential for both families", () => {
    expect(gammaShapeForCv(1)).toBe(1);
    expect(weibullShapeForCv(1)).toBeCloseTo(1, 6);
    // Γ(5) = 24, Γ(0.5) = √π.
    expect(logGamma(5)).toBeCloseTo(Math.log(24), 10);
    expect(logGamma(0.5)).toBeCloseTo(0.5 * Math.log(Math.PI), 10);
  });

  it("draws Gamma and Weibull gaps with the asked-for cv (seeded, 200k draws)", () => {
    for (const [draw, shape] of [
      [gamma, gammaShapeForCv(2.5)],
      [weibull, weibullShapeForCv(2.5)],
    ] as const) {
      const rng = seeded(42);
      let sum = 0,
        sq = 0;
      const n = 200_000;
      for (let i = 0; i < n; i++) {
        const x = draw(rng, shape);
        sum += x;
        sq += x * x;
      }
      const mean = sum / n;
      const cv = Math.sqrt(sq / n - mean * mean) / mean;
      expect(cv).toBeGreaterThan(2.3);
      expect(cv).toBeLessThan(2.7);
    }
  });
});

describe("npm run simulate", () => {
  const tsx = path.join(ROOT, "node_modules/.bin/tsx");
  const simulate = (...args: string[]) =>
    spawnSync(tsx, [path.join(ROOT, "cli/simulate.ts"), ...args], {
      cwd: ROOT,
      encoding: "utf8",
      timeout: 120_000,
      env: { ...process.env, PULUMI_STACK: "hybrid" },
    });

  it("refuses a malformed trace naming its lines, exit 1, no stack trace", () => {
    const bad = path.join(dir, "bad.csv");
    writeFileSync(bad, "window_start_s,rps,cv,arrival_pattern\n0,1,1,Gamma\n600,-1,1,Gamma\n1200,1,1,Pareto\n");
    const r = simulate("--trace", bad);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/2 problems in the trace/);
    expect(r.stderr).toMatch(/line 3: rps "-1"/);
    expect(r.stderr).toMatch(/line 4: arrival_pattern "Pareto"/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it("refuses bad options all at once, exit 1", () => {
    const r = simulate("--format", "xml", "--set", "gpuMaxNodes", "--rate-scale", "0", "--days", "9-3");
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/--trace FILE is required/);
    expect(r.stderr).toMatch(/--format "xml" is not one of azure, mooncake, servegen/);
    expect(r.stderr).toMatch(/--set "gpuMaxNodes" is not KEY=VALUE/);
    expect(r.stderr).toMatch(/--rate-scale "0" is not a number above 0/);
    expect(r.stderr).toMatch(/--days "9-3"/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it("refuses settings the stack would refuse, with the stack's own message", () => {
    const ok = path.join(dir, "ok.csv");
    writeFileSync(ok, "window_start_s,rps\n0,0.01\n");
    const r = simulate("--trace", ok, "--set", "gpuMinNodes=2", "--set", "gpuMaxNodes=1");
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/gpuMinNodes, gpuMaxNodes = "2 > 1": the floor is above the ceiling/);
  });

  it("--json prints one document whose policies carry exactly the issue's fields", () => {
    const t = path.join(dir, "day.csv");
    writeFileSync(t, "window_start_s,rps,cv,arrival_pattern\n32400,0.05,1.5,Gamma\n36000,0.02,1,Gamma\n");
    const r = simulate(
      "--trace",
      t,
      "--json",
      "--no-sweep",
      "--set",
      'gpuWindows=["mon 09:00-10:00 UTC"]',
      "--set",
      "budgetUsd=2000",
    );
    expect(r.status, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout) as { policies: Record<string, unknown>[]; target: unknown };
    expect(doc.policies.map((p) => p.name)).toEqual([
      "always-on",
      "40h-month",
      "windows",
      "reactive",
      "autoscaler",
      "oracle",
    ]);
    for (const p of doc.policies) expect(Object.keys(p).sort()).toEqual([...POLICY_FIELDS].sort());
    const oracleRun = doc.policies.find((p) => p.name === "oracle")!;
    expect(oracleRun.servedByGpu).toBe(oracleRun.requests);
  });
});
