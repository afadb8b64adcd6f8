import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { alertRules, insideWindowsExpr, utcOffsetMinutes } from "../services/monitoring";
import { parseWindows } from "../stacks/windows";
import { mustLoad } from "./helpers/load";
import { PROMTOOL_BINARY, runToolAsync } from "./helpers/prometheus-tools";

/**
 * The alert rules under `promtool test rules` (the real promtool at the pinned Prometheus
 * version): each alert fires on series that should make it fire and stays quiet on look-alikes
 * that should not. Annotations are left out of the unit tests (promtool compares them verbatim);
 * `promtool check rules` in test/monitoring.test.ts checks their templates.
 */

const work = mkdtempSync(path.join(tmpdir(), "hub-rules-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

// Thursday 1970-01-01 00:00 UTC is promtool's time 0; Berlin is UTC+1 in winter.
const WINDOWS = ["thu 09:00-17:00 Europe/Berlin"];
const WINTER = new Date("2026-12-02T12:00:00Z");
// With the sandbox on, so its rules are tested too.
const hub = mustLoad({ tier: "hybrid", gpuWindows: WINDOWS, sandbox: "on" });

function rulesWithoutAnnotations(): string {
  const doc = alertRules(hub, WINTER);
  for (const g of doc.groups) for (const r of g.rules) (r as { annotations?: unknown }).annotations = undefined;
  return stringify(JSON.parse(JSON.stringify(doc)), { lineWidth: 0 });
}

interface AlertCase {
  readonly at: string;
  readonly alert: string;
  /** Labels of each firing alert (besides alertname); empty: quiet. */
  readonly firing: readonly Record<string, string>[];
}

interface Scenario {
  readonly name: string;
  readonly interval?: string;
  readonly series: Readonly<Record<string, string>>;
  readonly cases: readonly AlertCase[];
}

const VLLM = 'job="vllm",model="coder",replica="gpu-0",node="gpu-0",instance="10.0.0.2:8000"';
const GK = 'job="gatekeeper",instance="gatekeeper:8080"';
const SANDBOX_NODE = { job: "node", node: "sandbox", instance: "10.0.0.9:9100" };
const CPU_NODE = { job: "node", node: "cpu", instance: "10.0.0.1:9100" };
const GPU_NODE = { job: "node", node: "gpu-0", instance: "10.0.0.2:9100" };
const API_UNIT = "inference-hub-sandbox.service";
/** A series selector from a metric name and labels. */
const series = (name: string, labels: Record<string, string>): string =>
  `${name}{${Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .join(",")}}`;
const disk = (node: Record<string, string>, mountpoint: string, fstype = "ext4") => ({
  ...node,
  device: mountpoint === "/" ? "/dev/vda1" : "/dev/sda",
  fstype,
  mountpoint,
});
const sandboxRouter = (code: string) =>
  `traefik_router_requests_total{job="traefik",router="sandbox@file",service="sandbox@file",code="${code}",method="POST",protocol="http"}`;
const coderRouter = (code: string) =>
  `traefik_router_requests_total{job="traefik",router="coder@file",service="coder@file",code="${code}",method="POST",protocol="http"}`;

const SCENARIOS: Scenario[] = [
  {
    name: "5xx above 5% of steady traffic fires; 503 (gpu_off) and a trickle do not",
    series: {
      'traefik_entrypoint_requests_total{entrypoint="websecure",code="200"}': "0+600x40",
      'traefik_entrypoint_requests_total{entrypoint="websecure",code="502"}': "0+60x40",
    },
    cases: [
      { at: "8m", alert: "HubHighErrorRate", firing: [] },
      { at: "25m", alert: "HubHighErrorRate", firing: [{ severity: "warning" }] },
    ],
  },
  {
    name: "503 only",
    series: {
      'traefik_entrypoint_requests_total{entrypoint="web",code="200"}': "0+600x40",
      'traefik_entrypoint_requests_total{entrypoint="web",code="503"}': "0+600x40",
    },
    cases: [{ at: "30m", alert: "HubHighErrorRate", firing: [] }],
  },
  {
    name: "a trickle of requests, half of them 500",
    series: {
      'traefik_entrypoint_requests_total{entrypoint="legacy",code="200"}': "0+1x40",
      'traefik_entrypoint_requests_total{entrypoint="legacy",code="500"}': "0+1x40",
    },
    cases: [{ at: "30m", alert: "HubHighErrorRate", firing: [] }],
  },
  {
    name: "5xx on the VPC metrics entry point are not client errors",
    series: {
      'traefik_entrypoint_requests_total{entrypoint="metrics",code="200"}': "0+60x40",
      'traefik_entrypoint_requests_total{entrypoint="metrics",code="500"}': "0+60x40",
    },
    cases: [{ at: "30m", alert: "HubHighErrorRate", firing: [] }],
  },
  {
    name: "audit spool ageing while shipping fails",
    series: {
      [`hub_gatekeeper_spool_oldest_pending_age_seconds{${GK}}`]: "0+60x30",
      [`hub_gatekeeper_ship_failures_total{${GK}}`]: "0+1x30",
    },
    cases: [
      { at: "12m", alert: "HubAuditSpoolGrowing", firing: [] },
      {
        at: "20m",
        alert: "HubAuditSpoolGrowing",
        firing: [{ severity: "critical", job: "gatekeeper", instance: "gatekeeper:8080" }],
      },
    ],
  },
  {
    name: "old spool records with no shipping failure (no database configured)",
    series: {
      [`hub_gatekeeper_spool_oldest_pending_age_seconds{${GK}}`]: "0+60x30",
      [`hub_gatekeeper_ship_failures_total{${GK}}`]: "0x30",
    },
    cases: [{ at: "25m", alert: "HubAuditSpoolGrowing", firing: [] }],
  },
  {
    name: "audit disk full",
    series: { [`hub_gatekeeper_disk_full{${GK}}`]: "0 0 1x10" },
    cases: [
      { at: "2m", alert: "HubAuditDiskFull", firing: [] },
      {
        at: "5m",
        alert: "HubAuditDiskFull",
        firing: [{ severity: "critical", job: "gatekeeper", instance: "gatekeeper:8080" }],
      },
    ],
  },
  {
    // time() is 0 at the start: a certificate ending 10 days after it, another 40 days after.
    name: "certificate 10 days from expiry fires, 40 days does not",
    series: {
      'traefik_tls_certs_not_after{cn="hub.example.com",serial="1",sans="hub.example.com",job="traefik"}': "864000x180",
      'traefik_tls_certs_not_after{cn="old.example.com",serial="2",sans="old.example.com",job="traefik"}':
        "3456000x180",
    },
    cases: [
      { at: "30m", alert: "HubCertificateExpiresSoon", firing: [] },
      {
        at: "2h",
        alert: "HubCertificateExpiresSoon",
        firing: [{ severity: "warning", cn: "hub.example.com", serial: "1", sans: "hub.example.com", job: "traefik" }],
      },
    ],
  },
  {
    name: "a node down for 5 minutes fires; a node back after 3 does not",
    series: {
      'up{job="node",node="gpu-0",instance="10.0.0.2:9100"}': "1 1 0x12",
      'up{job="node",node="cpu",instance="10.0.0.1:9100"}': "0 0 0 1x11",
    },
    cases: [
      { at: "4m", alert: "HubNodeDown", firing: [] },
      {
        at: "10m",
        alert: "HubNodeDown",
        firing: [{ severity: "critical", job: "node", node: "gpu-0", instance: "10.0.0.2:9100" }],
      },
    ],
  },
  {
    // The sandbox's boot disk and the CPU cache volume under 10% for 10 minutes; a full model cache (by design) and a tmpfs do not count.
    name: "a boot disk or the CPU cache volume almost full",
    series: {
      [series("node_filesystem_avail_bytes", disk(SANDBOX_NODE, "/"))]: "5x30",
      [series("node_filesystem_size_bytes", disk(SANDBOX_NODE, "/"))]: "100x30",
      [series("node_filesystem_avail_bytes", disk(CPU_NODE, "/mnt/cpu-cache"))]: "8x30",
      [series("node_filesystem_size_bytes", disk(CPU_NODE, "/mnt/cpu-cache"))]: "100x30",
      [series("node_filesystem_avail_bytes", disk(CPU_NODE, "/"))]: "50x30",
      [series("node_filesystem_size_bytes", disk(CPU_NODE, "/"))]: "100x30",
      [series("node_filesystem_avail_bytes", disk(GPU_NODE, "/mnt/model-cache"))]: "2x30",
      [series("node_filesystem_size_bytes", disk(GPU_NODE, "/mnt/model-cache"))]: "100x30",
      [series("node_filesystem_avail_bytes", disk(SANDBOX_NODE, "/run/inference-hub-sandbox/s1/work", "tmpfs"))]:
        "0x30",
      [series("node_filesystem_size_bytes", disk(SANDBOX_NODE, "/run/inference-hub-sandbox/s1/work", "tmpfs"))]:
        "100x30",
    },
    cases: [
      { at: "8m", alert: "HubNodeDiskAlmostFull", firing: [] },
      {
        at: "15m",
        alert: "HubNodeDiskAlmostFull",
        firing: [
          { severity: "warning", ...disk(SANDBOX_NODE, "/") },
          { severity: "warning", ...disk(CPU_NODE, "/mnt/cpu-cache") },
        ],
      },
    ],
  },
  {
    name: "memory under 10% for 10 minutes fires; a 5-minute dip does not",
    series: {
      [series("node_memory_MemAvailable_bytes", GPU_NODE)]: "5x30",
      [series("node_memory_MemTotal_bytes", GPU_NODE)]: "100x30",
      [series("node_memory_MemAvailable_bytes", SANDBOX_NODE)]: "50 50 5 5 5 5 5 50x25",
      [series("node_memory_MemTotal_bytes", SANDBOX_NODE)]: "100x30",
    },
    cases: [
      { at: "8m", alert: "HubNodeMemoryLow", firing: [] },
      { at: "15m", alert: "HubNodeMemoryLow", firing: [{ severity: "warning", ...GPU_NODE }] },
    ],
  },
  {
    name: "the sandbox API stopped for 5 minutes",
    series: {
      [series("node_systemd_unit_state", { ...SANDBOX_NODE, name: API_UNIT, state: "active", type: "simple" })]:
        "1 1 1 0x20",
      [series("node_systemd_unit_state", { ...SANDBOX_NODE, name: API_UNIT, state: "failed", type: "simple" })]:
        "0 0 0 1x20",
      [series("node_scrape_collector_success", { ...SANDBOX_NODE, collector: "systemd" })]: "1x23",
    },
    cases: [
      { at: "6m", alert: "HubSandboxApiDown", firing: [] },
      {
        at: "10m",
        alert: "HubSandboxApiDown",
        firing: [{ severity: "critical", ...SANDBOX_NODE, name: API_UNIT, state: "active", type: "simple" }],
      },
    ],
  },
  {
    name: "node_exporter cannot read systemd on the sandbox node",
    series: { [series("node_scrape_collector_success", { ...SANDBOX_NODE, collector: "systemd" })]: "0x10" },
    cases: [
      {
        at: "8m",
        alert: "HubSandboxApiDown",
        firing: [{ severity: "critical", ...SANDBOX_NODE, collector: "systemd" }],
      },
    ],
  },
  {
    name: "the sandbox API active on another node's unit of the same name is not the sandbox's",
    series: {
      [series("node_systemd_unit_state", { ...CPU_NODE, name: API_UNIT, state: "active", type: "simple" })]: "0x10",
    },
    cases: [{ at: "8m", alert: "HubSandboxApiDown", firing: [] }],
  },
  {
    name: "the sandbox API restarting in a loop",
    series: {
      [series("node_systemd_service_restart_total", { ...SANDBOX_NODE, name: API_UNIT })]: "0 0 1 2 3 4 5 5x20",
      // The setup unit's restarts are not the API's.
      [series("node_systemd_service_restart_total", {
        ...SANDBOX_NODE,
        name: "inference-hub-sandbox-setup.service",
      })]: "0+1x27",
    },
    cases: [
      { at: "2m", alert: "HubSandboxApiRestarting", firing: [] },
      {
        at: "8m",
        alert: "HubSandboxApiRestarting",
        firing: [{ severity: "warning", ...SANDBOX_NODE, name: API_UNIT }],
      },
    ],
  },
  {
    name: "two restarts in an hour are not a loop",
    series: { [series("node_systemd_service_restart_total", { ...SANDBOX_NODE, name: API_UNIT })]: "0x10 1x20 2x30" },
    cases: [{ at: "55m", alert: "HubSandboxApiRestarting", firing: [] }],
  },
  {
    name: "the sandbox turning executions away for 10 minutes",
    series: { [sandboxRouter("503")]: "0+10x30", [coderRouter("503")]: "0+10x30" },
    cases: [
      { at: "8m", alert: "HubSandboxBusy", firing: [] },
      { at: "15m", alert: "HubSandboxBusy", firing: [{ severity: "warning" }] },
    ],
  },
  {
    name: "a 5-minute burst of 503 is not busy; 503 elsewhere is not the sandbox's",
    series: { [sandboxRouter("503")]: "0+10x5 50x25", [coderRouter("503")]: "0+10x30" },
    cases: [{ at: "20m", alert: "HubSandboxBusy", firing: [] }],
  },
  {
    name: "sandbox requests failing (502 sandbox_unreachable)",
    series: { [sandboxRouter("200")]: "0+100x30", [sandboxRouter("502")]: "0+10x30" },
    cases: [
      { at: "3m", alert: "HubSandboxFailing", firing: [] },
      { at: "15m", alert: "HubSandboxFailing", firing: [{ severity: "warning" }] },
    ],
  },
  {
    name: "two failures are not failing; nor 503s, nor another route's 502s",
    series: {
      [sandboxRouter("200")]: "0+1x30",
      [sandboxRouter("502")]: "0 1 2x28",
      [sandboxRouter("503")]: "0+10x30",
      [coderRouter("502")]: "0+10x30",
    },
    cases: [
      { at: "9m", alert: "HubSandboxFailing", firing: [] },
      { at: "25m", alert: "HubSandboxFailing", firing: [] },
    ],
  },
  {
    name: "the gatekeeper's metrics unreachable",
    series: { [`up{${GK}}`]: "0x10", 'up{job="traefik",instance="gateway:8082"}': "1x10" },
    cases: [
      {
        at: "8m",
        alert: "HubScrapeTargetDown",
        firing: [{ severity: "warning", job: "gatekeeper", instance: "gatekeeper:8080" }],
      },
    ],
  },
  {
    name: "GPU spend past 80% of its budget",
    series: {
      'hub_autoscaler_month_spend_usd{job="autoscaler"}': "250 260 270 285x10",
      'hub_autoscaler_gpu_budget_usd{job="autoscaler"}': "350x13",
    },
    cases: [
      { at: "4m", alert: "HubBudgetNearlySpent", firing: [] },
      { at: "10m", alert: "HubBudgetNearlySpent", firing: [{ severity: "warning", job: "autoscaler" }] },
    ],
  },
  {
    name: "spend under 80% of the GPU budget",
    series: {
      'hub_autoscaler_month_spend_usd{job="autoscaler"}': "270x10",
      'hub_autoscaler_gpu_budget_usd{job="autoscaler"}': "350x10",
    },
    cases: [{ at: "10m", alert: "HubBudgetNearlySpent", firing: [] }],
  },
  {
    name: "a replica that served nothing for an hour is idle",
    interval: "15s",
    series: {
      [`vllm:e2e_request_latency_seconds_count{${VLLM}}`]: "0x400",
      [`vllm:num_requests_running{${VLLM}}`]: "0x400",
      [`up{${VLLM}}`]: "1x400",
    },
    cases: [
      { at: "50m", alert: "HubGpuIdle", firing: [] },
      { at: "70m", alert: "HubGpuIdle", firing: [{ severity: "warning", replica: "gpu-0" }] },
    ],
  },
  {
    name: "a request 40 minutes ago keeps it busy",
    interval: "15s",
    // One request finished at 30 min (sample 120).
    series: {
      [`vllm:e2e_request_latency_seconds_count{${VLLM}}`]: "0x119 1x280",
      [`vllm:num_requests_running{${VLLM}}`]: "0x400",
      [`up{${VLLM}}`]: "1x400",
    },
    cases: [{ at: "70m", alert: "HubGpuIdle", firing: [] }],
  },
  {
    name: "a replica up for 30 minutes is not yet idle",
    interval: "15s",
    series: {
      [`vllm:e2e_request_latency_seconds_count{${VLLM}}`]: "_x160 0x240",
      [`vllm:num_requests_running{${VLLM}}`]: "_x160 0x240",
      [`up{${VLLM}}`]: "_x160 1x240",
    },
    cases: [{ at: "70m", alert: "HubGpuIdle", firing: [] }],
  },
  {
    name: "a long request running the whole hour is not idle",
    interval: "15s",
    series: {
      [`vllm:e2e_request_latency_seconds_count{${VLLM}}`]: "0x400",
      [`vllm:num_requests_running{${VLLM}}`]: "1x400",
      [`up{${VLLM}}`]: "1x400",
    },
    cases: [{ at: "70m", alert: "HubGpuIdle", firing: [] }],
  },
  {
    // thu 09:00-17:00 Berlin = 08:00-16:00 UTC in winter; the GPU is up all day.
    name: "GPU up outside its windows",
    interval: "5m",
    series: { [`up{${VLLM}}`]: "1x288" },
    cases: [
      { at: "7h", alert: "HubGpuOutsideWindows", firing: [{ severity: "warning" }] },
      { at: "8h20m", alert: "HubGpuOutsideWindows", firing: [] },
      { at: "15h55m", alert: "HubGpuOutsideWindows", firing: [] },
      // 16:00 UTC closes the window; 30 minutes later it fires.
      { at: "16h15m", alert: "HubGpuOutsideWindows", firing: [] },
      { at: "16h35m", alert: "HubGpuOutsideWindows", firing: [{ severity: "warning" }] },
    ],
  },
  {
    name: "GPU off outside its windows",
    interval: "5m",
    series: { [`up{${VLLM}}`]: "_x84 1x100" },
    cases: [{ at: "6h", alert: "HubGpuOutsideWindows", firing: [] }],
  },
];

function testFile(): string {
  return stringify(
    {
      rule_files: ["rules.yml"],
      evaluation_interval: "1m",
      tests: SCENARIOS.map((s) => ({
        name: s.name,
        interval: s.interval ?? "1m",
        input_series: Object.entries(s.series).map(([series, values]) => ({ series, values })),
        alert_rule_test: s.cases.map((c) => ({
          eval_time: c.at,
          alertname: c.alert,
          exp_alerts: c.firing.map((labels) => ({ exp_labels: labels })),
        })),
      })),
    },
    { lineWidth: 0 },
  );
}

describe("alert rules", () => {
  it("cover every alert the issue asks for (hybrid with windows)", async () => {
    const names = alertRules(hub, WINTER).groups.flatMap((g) => g.rules.map((r) => r.alert));
    for (const name of [
      "HubGpuOutsideWindows",
      "HubGpuIdle",
      "HubBudgetNearlySpent",
      "HubHighErrorRate",
      "HubAuditSpoolGrowing",
      "HubCertificateExpiresSoon",
      "HubNodeDown",
      "HubNodeDiskAlmostFull",
      "HubNodeMemoryLow",
      "HubSandboxApiDown",
      "HubSandboxApiRestarting",
      "HubSandboxBusy",
      "HubSandboxFailing",
    ])
      expect(names).toContain(name);
    // Every scenario's alert exists, so no case passes by naming an alert that is not there.
    for (const s of SCENARIOS) for (const c of s.cases) expect(names, s.name).toContain(c.alert);
  });

  it("leave out what a tier cannot have: no GPU alerts in the cpu tier, no node alert in the local tier", async () => {
    const cpu = alertRules(mustLoad({ tier: "cpu" })).groups.flatMap((g) => g.rules.map((r) => r.alert));
    expect(cpu).not.toContain("HubGpuIdle");
    expect(cpu).not.toContain("HubBudgetNearlySpent");
    expect(cpu).toContain("HubNodeDown");
    expect(cpu).toContain("HubNodeDiskAlmostFull");
    // No sandbox, no sandbox alert.
    expect(cpu.filter((a) => a.startsWith("HubSandbox"))).toEqual([]);
    const local = alertRules(mustLoad({ tier: "local" })).groups.flatMap((g) => g.rules.map((r) => r.alert));
    expect(local).not.toContain("HubNodeDown");
    expect(local).not.toContain("HubNodeDiskAlmostFull");
    expect(local).not.toContain("HubNodeMemoryLow");
    // Without windows there is no "outside the windows".
    expect(alertRules(mustLoad({ tier: "hybrid" })).groups.flatMap((g) => g.rules.map((r) => r.alert))).not.toContain(
      "HubGpuOutsideWindows",
    );
  });

  it("shift windows by the zone's offset on the plan's date (Berlin: +60 in winter, +120 in summer)", async () => {
    expect(utcOffsetMinutes("Europe/Berlin", WINTER)).toBe(60);
    expect(utcOffsetMinutes("Europe/Berlin", new Date("2026-07-01T12:00:00Z"))).toBe(120);
    expect(utcOffsetMinutes("America/Toronto", WINTER)).toBe(-300);
    expect(utcOffsetMinutes("UTC", WINTER)).toBe(0);
    // Thursday (4) 09:00 local is minute 4*1440+540 of the local week.
    expect(insideWindowsExpr(parseWindows(WINDOWS).windows, WINTER)).toContain(
      `>= ${4 * 1440 + 540} < ${4 * 1440 + 1020}`,
    );
  });

  it.runIf(Boolean(PROMTOOL_BINARY) || process.env.CI === "true")(
    "fire and stay quiet as they should under promtool test rules",
    async () => {
      writeFileSync(path.join(work, "rules.yml"), rulesWithoutAnnotations());
      writeFileSync(path.join(work, "rules.test.yml"), testFile());
      const result = await runToolAsync(PROMTOOL_BINARY!, ["test", "rules", "rules.test.yml"], work);
      expect(result.output).toContain("SUCCESS");
      expect(result.status, result.output).toBe(0);
    },
  );

  it.runIf(Boolean(PROMTOOL_BINARY) || process.env.CI === "true")(
    "the unit tests can fail: a wrong expectation is reported",
    async () => {
      // Guards against a harness that passes whatever the rules do.
      writeFileSync(path.join(work, "rules.yml"), rulesWithoutAnnotations());
      const wrong = testFile().replace(
        "alertname: HubAuditDiskFull\n        exp_alerts: []",
        "alertname: HubAuditDiskFull\n        exp_alerts:\n          - exp_labels: { severity: critical }",
      );
      expect(wrong).not.toBe(testFile());
      writeFileSync(path.join(work, "wrong.test.yml"), wrong);
      const result = await runToolAsync(PROMTOOL_BINARY!, ["test", "rules", "wrong.test.yml"], work);
      expect(result.status).not.toBe(0);
      expect(result.output).toContain("HubAuditDiskFull");
    },
  );
});

describe("alert rules over time", () => {
  it("render the same file on every day with the same UTC offsets (a new file restarts Prometheus)", async () => {
    const render = (at: string) => stringify(alertRules(hub, new Date(at)));
    expect(render("2026-12-02T12:00:00Z")).toBe(render("2026-12-03T08:00:00Z"));
    // Summer time moves the window by an hour, so the file changes then, and only then.
    expect(render("2026-12-02T12:00:00Z")).not.toBe(render("2026-07-01T12:00:00Z"));
  });
});
