import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { autoscaleOnce, fileMemory, gatewaySignals } from "../cli/hub/autoscale";
import type { PreviewStep, StackConfig } from "../cli/hub/decisions";
import type { StackOps } from "../cli/hub/ops";
import { httpFetcher } from "../programs/autoscaler/controller/signals";

/**
 * `npm run hub -- autoscale` against a STAND-IN of the gateway's admin route /admin/autoscaler (a
 * local HTTP server that checks the admin key and serves a controller status with its demand counters) and
 * a recording StackOps (no Pulumi): what it reads, what it decides, what it applies.
 */

const ADMIN_KEY = "ihk_admin_standin";
const cfg = (values: Record<string, string>): Record<string, { value: string; secret: boolean }> =>
  Object.fromEntries(Object.entries(values).map(([k, v]) => [`inference-hub:${k}`, { value: v, secret: false }]));

class RecordingOps implements StackOps {
  readonly calls: string[] = [];
  deployed: Record<string, unknown> = { cpu: {} };
  constructor(
    public config: Record<string, { value: string; secret: boolean }>,
    private readonly previewSteps: PreviewStep[] = [],
    readonly stackName = "hybrid",
  ) {}
  async getConfig(): Promise<StackConfig> {
    return { ...this.config };
  }
  async setConfig(key: string, value: string, secret: boolean) {
    this.calls.push(`set ${key.split(":")[1]}=${value}`);
    this.config[key] = { value, secret };
  }
  async removeConfig(key: string) {
    this.calls.push(`remove ${key.split(":")[1]}`);
    delete this.config[key];
  }
  async preview() {
    this.calls.push("preview");
    return this.previewSteps;
  }
  async up() {
    this.calls.push("up");
    return this.previewSteps;
  }
  async outputs() {
    return {
      baseUrl: { value: `${gateway.url}/v1`, secret: false },
      nodeAddresses: { value: this.deployed, secret: false },
    };
  }
}

/** The stand-in gateway's admin routes. */
const gateway = {
  url: "",
  /** Allowed `llm` requests so far, as the controller read them from the gatekeeper. */
  allowed: 0,
  status: undefined as Record<string, unknown> | undefined,
  seenKeys: [] as string[],
  server: undefined as http.Server | undefined,
};
const status = (mode: "act" | "advice", replicas: unknown[] = []) => ({
  stack: "hybrid",
  mode,
  atMs: 0,
  deployedNodes: replicas.length,
  nodes: { ready: replicas.length, starting: 0, draining: 0 },
  replicas,
  signalsUp: true,
  dispatch: { pending: null, accepted: null },
  ledger: { month: "2026-12", monthToDateUsd: 12.5, nodeSeconds: 12_500, gpuBudgetUsd: 303.5 },
});
const withDemand = (s: Record<string, unknown>) => ({
  ...s,
  demandCounters: { 'key_id="k_dev00001"': gateway.allowed },
});

beforeAll(async () => {
  gateway.server = http.createServer((req, res) => {
    gateway.seenKeys.push(String(req.headers.authorization));
    if (req.headers.authorization !== `Bearer ${ADMIN_KEY}`) {
      res.writeHead(401);
      return res.end();
    }
    const body =
      req.url === "/admin/autoscaler" && gateway.status ? JSON.stringify(withDemand(gateway.status)) : undefined;
    res.writeHead(body === undefined ? 502 : 200);
    res.end(body ?? "");
  });
  await new Promise<void>((r) => gateway.server!.listen(0, "127.0.0.1", () => r()));
  gateway.url = `http://127.0.0.1:${(gateway.server!.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => gateway.server!.close(() => r())));

let dir: string;
let lines: string[];
let t: number;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), "hub-autoscale-"));
  lines = [];
  t = Date.parse("2026-12-10T10:00:00Z");
  gateway.allowed = 0;
  gateway.status = status("advice");
  gateway.seenKeys.length = 0;
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const deps = (ops: RecordingOps, force = false) => ({
  ops,
  signals: gatewaySignals(`${gateway.url}/v1`, ADMIN_KEY, httpFetcher),
  memory: fileMemory(ops.stackName, dir),
  io: { out: (l: string) => void lines.push(l), now: () => (t += 15_000) },
  force,
});

describe("npm run hub -- autoscale", () => {
  it("wakes the GPU on coder demand through set config, preview and up, reading the gateway with the admin key", async () => {
    const ops = new RecordingOps(cfg({ tier: "hybrid" }));
    expect((await autoscaleOnce(deps(ops))).decision.reason).toBe("hold");
    gateway.allowed = 4;
    const out = await autoscaleOnce(deps(ops));
    expect(out.decision).toMatchObject({ reason: "wake-on-demand", wantedNodes: 1 });
    expect(out.applied).toBe(true);
    // gpu scale: the checkout first adopts what the stack runs (off), gpuMaxNodes is written down so
    // the volume count never follows gpuCount, then preview and up.
    expect(ops.calls).toEqual(["set gpuEnabled=false", "set gpuEnabled=true", "set gpuMaxNodes=1", "preview", "up"]);
    expect(new Set(gateway.seenKeys)).toEqual(new Set([`Bearer ${ADMIN_KEY}`]));
  });

  it("holds without the controller's view (no vLLM queue, no ledger), and changes nothing", async () => {
    gateway.status = undefined;
    const ops = new RecordingOps(cfg({ tier: "hybrid" }));
    await autoscaleOnce(deps(ops));
    gateway.allowed = 4;
    const out = await autoscaleOnce(deps(ops));
    expect(out.decision.reason).toBe("hold-metrics-missing");
    expect(ops.calls).toEqual([]);
    expect(lines.join("\n")).toMatch(/could not be read: holding/);
  });

  it("leaves the acting to the controller when it acts itself, unless forced", async () => {
    gateway.status = status("act");
    const ops = new RecordingOps(cfg({ tier: "hybrid" }));
    await autoscaleOnce(deps(ops));
    gateway.allowed = 4;
    expect((await autoscaleOnce(deps(ops))).applied).toBe(false);
    expect(ops.calls).toEqual([]);
    gateway.allowed = 9;
    expect((await autoscaleOnce(deps(ops, true))).applied).toBe(true);
  });

  it("refuses a preview that would replace a volume, and restores the config", async () => {
    const replace: PreviewStep = {
      op: "replace",
      type: "digitalocean:index/volume:Volume",
      urn: "urn:pulumi:hybrid::inference-hub::digitalocean:index/volume:Volume::model-cache-0",
    };
    const ops = new RecordingOps(cfg({ tier: "hybrid" }), [replace]);
    await autoscaleOnce(deps(ops));
    gateway.allowed = 1;
    await expect(autoscaleOnce(deps(ops))).rejects.toThrow(/volume/);
    expect(ops.calls).toEqual([
      "set gpuEnabled=false",
      "set gpuEnabled=true",
      "set gpuMaxNodes=1",
      "preview",
      "set gpuEnabled=false",
      "remove gpuMaxNodes",
    ]);
    // Back to what the stack runs (the checkout adopted "off" first), nothing of the refused change.
    expect(ops.config).toEqual(cfg({ tier: "hybrid", gpuEnabled: "false" }));
  });

  it("lets the GPU go after gpuIdleMinutes of quiet (the reactive rule), through the same safe path", async () => {
    gateway.status = status("advice", [
      { node: "gpu-0", healthy: true, reading: { running: 0, waiting: 0, kvCacheUsage: 0 } },
    ]);
    const ops = new RecordingOps(cfg({ tier: "hybrid", gpuEnabled: "true", gpuPredictiveWake: "false" }));
    ops.deployed = { cpu: {}, "gpu-0": {} };
    await autoscaleOnce(deps(ops));
    t += 11 * 60_000;
    const out = await autoscaleOnce(deps(ops));
    expect(out.decision).toMatchObject({ reason: "idle", wantedNodes: 0 });
    expect(ops.calls).toEqual(["set gpuEnabled=false", "set gpuMaxNodes=1", "preview", "up"]);
  });
});
