import { mkdtempSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { GitHubPipeline } from "../programs/autoscaler/controller/actuator";
import { DigitalOceanBilling } from "../programs/autoscaler/controller/billing";
import type { ControllerFile } from "../programs/autoscaler/controller/contract";
import { Controller, LEDGER_FILE } from "../programs/autoscaler/controller/controller";
import { MemoryLogger } from "../programs/autoscaler/controller/log";
import { httpFetcher, parseSeries } from "../programs/autoscaler/controller/signals";
import { JsonStore } from "../programs/autoscaler/controller/store";
import { controllerFile, demandText, GitHubStandIn, MetricsStandIn, vllmText } from "./helpers/autoscaler";

/**
 * The ledger never forgets money, and the spend guard holds under faults (issue 18): the
 * controller's real loop against the RECORDING STAND-IN of GitHub's dispatch API (the pipeline),
 * STAND-INS of the gatekeeper's and vLLM's /metrics and of DigitalOcean's balance endpoint, with a
 * fake system clock that the tests step back a day, a month and a year, and a fake monotonic clock
 * that, as on a real machine, only time moves. $3.60/h: a node-second is $0.001.
 */

const T0 = Date.parse("2026-12-10T10:00:00Z");
const HOURLY = 3.6;
const HOURS_INTO_DECEMBER = (T0 - Date.parse("2026-12-01T00:00:00Z")) / 3_600_000; // 226 h
let github: GitHubStandIn;
let gatekeeper: MetricsStandIn;
let vllm: MetricsStandIn;
let billing: http.Server;
let billingUsd = "250.00";
let dir: string;
let now: number;
let monotonic: number;
let log: MemoryLogger;

beforeAll(async () => {
  github = await GitHubStandIn.start();
  gatekeeper = await MetricsStandIn.start();
  vllm = await MetricsStandIn.start();
  // A STAND-IN of DigitalOcean's GET /v2/customers/my/balance (the field the controller reads).
  billing = http.createServer((_req, res) => {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(
      JSON.stringify({
        month_to_date_balance: billingUsd,
        account_balance: "0.00",
        month_to_date_usage: billingUsd,
        generated_at: "2026-12-10T09:59:00Z",
      }),
    );
  });
  await new Promise<void>((r) => billing.listen(0, "127.0.0.1", () => r()));
});
afterAll(async () => {
  billing.closeAllConnections();
  await Promise.all([
    github.close(),
    gatekeeper.close(),
    vllm.close(),
    new Promise<void>((r) => billing.close(() => r())),
  ]);
});
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), "money-ledger-"));
  now = T0;
  monotonic = 0;
  log = new MemoryLogger();
  github.calls.length = 0;
  github.script = [];
  gatekeeper.text = demandText({ allowed: 0 });
  gatekeeper.down = false;
  vllm.text = vllmText([{ running: 0, waiting: 0 }]);
  vllm.down = false;
  vllm.healthy = true;
  billingUsd = "250.00";
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const configPath = () => path.join(dir, "autoscaler.json");
const stateDir = () => path.join(dir, "state");
function writeFile(overrides: Partial<ControllerFile> & { replicaUrls?: readonly string[] } = {}): void {
  writeFileSync(configPath(), JSON.stringify(controllerFile({ demandUrl: gatekeeper.url, ...overrides })));
}
const billingReader = () =>
  new DigitalOceanBilling(
    `http://127.0.0.1:${(billing.address() as AddressInfo).port}`,
    "dop_v1_readonly_standin",
    httpFetcher,
  );
function start(options: { billing?: boolean } = {}): Promise<Controller> {
  const pipeline = new GitHubPipeline(
    {
      api: github.url,
      token: "github_pat_standin",
      repo: "acme/inference-hub",
      ref: "main",
      workflow: "autoscale.yml",
    },
    httpFetcher,
  );
  return Controller.start({
    configFile: configPath(),
    store: new JsonStore(stateDir()),
    fetcher: httpFetcher,
    clock: () => now,
    monotonic: () => monotonic,
    log,
    pipeline,
    billing: options.billing ? billingReader() : undefined,
    random: () => 0,
    backoff: { baseMs: 5_000, maxMs: 600_000 },
  });
}
const tick = async (c: Controller, advanceSeconds = 15) => {
  const status = (await c.requestTick())!;
  now += advanceSeconds * 1000;
  monotonic += advanceSeconds * 1000;
  return status;
};
async function metric(c: Controller, name: string): Promise<number | undefined> {
  return parseSeries(await c.metrics.text()).get(name)?.[0]?.value;
}
const dispatchedNodes = () => github.calls.map((c) => (c.body as { inputs: { nodes: string } }).inputs.nodes);

/** A GPU node up since T0, ticked for `hours` (in 5-minute steps): $3.60 an hour. */
async function runGpu(c: Controller, hours: number): Promise<number> {
  let spend = 0;
  for (let i = 0; i < hours * 12; i++) spend = (await tick(c, 300)).ledger.monthToDateUsd;
  return spend;
}

describe("a lost ledger never forgets money", () => {
  it("a deleted ledger (and its copy) restarts from the worst case, and says so in its log and metrics", async () => {
    writeFile({ replicaUrls: [vllm.url] });
    const first = await start();
    const spent = await runGpu(first, 2);
    expect(spent).toBeGreaterThan(7);
    unlinkSync(path.join(stateDir(), LEDGER_FILE));
    unlinkSync(path.join(stateDir(), `${LEDGER_FILE}.prev`));
    const second = await start();
    const s = await tick(second);
    // Every node slot (gpuMaxNodes 1) since the 1st: 228 h at $3.60.
    expect(s.ledger.monthToDateUsd).toBeCloseTo((HOURS_INTO_DECEMBER + 2) * HOURLY, 0);
    expect(s.ledger.floorReason).toMatch(/ledger was lost/);
    expect(s.decision).toMatchObject({ reason: "budget-spent", wantedNodes: 0 });
    expect(
      log.lines.some((l) => l.level === "error" && /ledger/.test(l.msg) && /missing/.test(JSON.stringify(l.fields))),
    ).toBe(true);
    expect(await metric(second, "hub_autoscaler_ledger_floor_usd")).toBeCloseTo(s.ledger.monthToDateUsd, 6);
  });

  it("with the billing token, a deleted ledger restarts from DigitalOcean's month-to-date figure", async () => {
    writeFile({ replicaUrls: [vllm.url] });
    const first = await start();
    await runGpu(first, 1);
    unlinkSync(path.join(stateDir(), LEDGER_FILE));
    unlinkSync(path.join(stateDir(), `${LEDGER_FILE}.prev`));
    const s = await tick(await start({ billing: true }));
    expect(s.ledger.monthToDateUsd).toBeGreaterThanOrEqual(250);
    expect(s.ledger.floorReason).toMatch(/DigitalOcean/);
  });

  it("a billing figure above the ledger raises the ledger, less the always-on costs accrued this month", async () => {
    writeFile({ replicaUrls: [vllm.url], fixedMonthlyUsd: 93 } as Partial<ControllerFile>);
    const c = await start({ billing: true });
    const s = await tick(c);
    // $93 a month of always-on costs (31 days): $28.25 of it accrued by 10 Dec 10:00; the rest of the $250 is taken as GPU.
    expect(s.ledger.monthToDateUsd).toBeCloseTo(250 - (93 * HOURS_INTO_DECEMBER) / (31 * 24), 2);
    expect(s.ledger.floorReason).toMatch(/DigitalOcean/);
    // A figure below the ledger changes nothing.
    billingUsd = "1.00";
    now += 11 * 60_000;
    expect((await tick(c)).ledger.monthToDateUsd).toBeGreaterThan(221);
  });
});

describe("time that goes backwards never lowers spend", () => {
  for (const [name, backMs] of [
    ["a day", 86_400_000],
    ["into the previous month", 31 * 86_400_000],
    ["a year", 365 * 86_400_000],
  ] as const) {
    it(`a clock step back ${name}, for one tick or for good, keeps the month's spend and keeps counting`, async () => {
      writeFile({ replicaUrls: [vllm.url] });
      const c = await start();
      const before = await runGpu(c, 1);
      // One tick in the past, then back: 5 minutes of the node, counted as 5 minutes, neither lost nor a day too many.
      now -= backMs;
      const stepped = await tick(c);
      expect(stepped.ledger.monthToDateUsd).toBeCloseTo(before + 0.3, 6);
      expect(stepped.ledger.month).toBe("2026-12");
      now += backMs;
      const back = await tick(c, 3600);
      expect(back.ledger.monthToDateUsd).toBeCloseTo(before + 0.315, 6);
      const hourLater = (await tick(c)).ledger.monthToDateUsd;
      expect(hourLater - back.ledger.monthToDateUsd).toBeCloseTo(3.6, 6);
      // Back for good, with a restart: the month's spend stays, and the node's time keeps counting.
      now -= backMs;
      const restarted = await start();
      const a = (await tick(restarted, 3600)).ledger.monthToDateUsd;
      const b = (await tick(restarted)).ledger.monthToDateUsd;
      expect(a).toBeGreaterThanOrEqual(hourLater);
      expect(b - a).toBeCloseTo(3.6, 6);
    });
  }
});

describe("the guard holds while metrics cannot be read", () => {
  it("with the gatekeeper's counts missing for days, the GPU goes off within a tick of the budget", async () => {
    // A $7.20 GPU budget: two hours of the node.
    const policy = { ...controllerFile({ demandUrl: gatekeeper.url }).policy, gpuBudgetUsd: 7.2 };
    writeFile({ replicaUrls: [vllm.url], policy });
    const c = await start();
    await tick(c);
    gatekeeper.down = true;
    let spend = 0;
    let status = await tick(c, 300);
    // Coarse ticks up to ten minutes short of the budget, then the controller's own 15 s ticks.
    while (status.ledger.monthToDateUsd < 6.6) status = await tick(c, 300);
    while (status.decision?.reason !== "budget-spent" && status.ledger.monthToDateUsd < 8) {
      spend = status.ledger.monthToDateUsd;
      status = await tick(c, 15);
    }
    expect(status.decision).toMatchObject({ reason: "budget-spent", wantedNodes: 0 });
    // Past the budget by at most one tick's worth: 15 s x 1 node x $3.60/h.
    expect(status.ledger.monthToDateUsd - 7.2).toBeLessThanOrEqual(0.015 + 1e-9);
    expect(spend).toBeLessThan(7.2);
    expect(dispatchedNodes()).toEqual(["0"]);
    // The deploy removes the node; days later, still blind, the GPU stays off and nothing else is asked for.
    writeFile({ replicaUrls: [], policy });
    vllm.healthy = false;
    for (let i = 0; i < 8; i++) expect((await tick(c, 6 * 3600)).decision?.wantedNodes).toBe(0);
    expect(dispatchedNodes()).toEqual(["0"]);
  });
});
