import { spawnSync } from "node:child_process";
import { chmodSync, cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { planFromText } from "../cli/plan/runner";
import { renderPlan } from "../cli/plan/view";
import { renderYaml } from "../services/gateway";
import { metricNamesIn } from "../services/grafana-provisioning";
import { alertRules } from "../services/monitoring";
import { SANDBOX_NODE_PATHS, sandboxCloudInitDocument } from "../services/sandbox";
import {
  nodeExporterEnv,
  nodeExporterVersionIs,
  SANDBOX_NODE_EXPORTER_PATHS,
  SANDBOX_NODE_EXPORTER_SERVICE,
} from "../services/sandbox-node-exporter";
import { jobExporting } from "../stacks/catalogue/metrics";
import { builtToolVersion, toolBinaryPath } from "../tools/prometheus-tools";
import { NODE_EXPORTER, PROMETHEUS_SERVER } from "../tools/prometheus-servers";
import { mustLoad } from "./helpers/load";
import { freePort } from "./helpers/loopback";
import { runProgram, T, type ProgramRun } from "./helpers/mock-run";
import { ManagedProcess, waitFor } from "./helpers/processes";

/**
 * The sandbox node under the hub's monitoring (docs/sandbox.md, docs/monitoring.md): node_exporter
 * as a systemd service there (no Docker on that node), admitted from the gateway node alone, its
 * target written once it answers, and the rules that watch it. The rules themselves are unit-tested
 * with promtool in test/monitoring-rules.test.ts, the rendered prometheus.yml in test/monitoring.test.ts.
 */

const work = mkdtempSync(path.join(tmpdir(), "hub-sandbox-monitoring-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

// The node_exporter the local images carry: built at the image's version from the Go module proxy (.ci/run builds it).
const NODE_EXPORTER_BINARY =
  builtToolVersion(NODE_EXPORTER) === NODE_EXPORTER.version ? toolBinaryPath(NODE_EXPORTER) : undefined;
const PROMETHEUS_BINARY =
  builtToolVersion(PROMETHEUS_SERVER) === PROMETHEUS_SERVER.version ? toolBinaryPath(PROMETHEUS_SERVER) : undefined;
const SYSTEMD_ANALYZE = spawnSync("systemd-analyze", ["--version"]).status === 0 || Boolean(process.env.CI);
if (!NODE_EXPORTER_BINARY || !PROMETHEUS_BINARY)
  console.warn(
    `sandbox node_exporter tests skipped: no node_exporter ${NODE_EXPORTER.version} or Prometheus ${PROMETHEUS_SERVER.version} (npx tsx tools/prometheus-servers.ts build)`,
  );

const cloudInitFile = (filePath: string): string => {
  const doc = sandboxCloudInitDocument() as { write_files: { path: string; content: string }[] };
  const found = doc.write_files.find((f) => f.path === filePath);
  if (!found) throw new Error(`the sandbox cloud-init writes no ${filePath}`);
  return found.content;
};
const unitText = () => cloudInitFile(SANDBOX_NODE_EXPORTER_PATHS.unit);

/** The unit's ExecStart as systemd would run it, with its EnvironmentFile's variables filled in. */
function execStart(unit: string, env: string): string[] {
  const vars = new Map(
    env
      .split("\n")
      .filter((l) => /^[A-Z_]+=/.test(l))
      .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)] as const),
  );
  const line = unit.split("\n").find((l) => l.startsWith("ExecStart="))!;
  return line
    .slice("ExecStart=".length)
    .split(" ")
    .map((word) => word.replace(/\$\{(\w+)\}/g, (_, name: string) => vars.get(name) ?? ""));
}

describe("node_exporter on the sandbox node", () => {
  it.runIf(SYSTEMD_ANALYZE)("its unit, the API's and the setup's pass systemd-analyze verify", () => {
    const doc = sandboxCloudInitDocument() as { write_files: { path: string; content: string; permissions: string }[] };
    const units = doc.write_files.filter((f) => f.path.endsWith(".service"));
    expect(units.map((u) => path.basename(u.path)).sort()).toEqual([
      "inference-hub-node-exporter.service",
      "inference-hub-sandbox-setup.service",
      "inference-hub-sandbox.service",
    ]);
    const root = mkdtempSync(path.join(work, "systemd-root-"));
    // Only the system's own units and ours: verify resolves dependencies inside --root.
    cpSync("/lib/systemd/system", path.join(root, "lib/systemd/system"), { recursive: true, verbatimSymlinks: true });
    for (const f of doc.write_files) {
      mkdirSync(path.join(root, path.dirname(f.path)), { recursive: true });
      writeFileSync(path.join(root, f.path), f.content);
      chmodSync(path.join(root, f.path), Number.parseInt(f.permissions, 8));
    }
    // What the units start (the node builds or receives them): executables at the same paths.
    for (const exe of [SANDBOX_NODE_EXPORTER_PATHS.binary, "/usr/bin/node"]) {
      mkdirSync(path.join(root, path.dirname(exe)), { recursive: true });
      writeFileSync(path.join(root, exe), "#!/bin/sh\n", { mode: 0o755 });
    }
    const r = spawnSync("systemd-analyze", ["verify", `--root=${root}`, ...units.map((u) => u.path)], {
      encoding: "utf8",
    });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
  });

  it("starts only once the deployment wrote its address, listens there, and runs unprivileged", () => {
    const unit = unitText();
    expect(unit).toContain(`ConditionPathExists=${SANDBOX_NODE_EXPORTER_PATHS.env}`);
    expect(unit).toContain(`EnvironmentFile=${SANDBOX_NODE_EXPORTER_PATHS.env}`);
    expect(unit).toMatch(/^DynamicUser=yes$/m);
    const args = execStart(unit, nodeExporterEnv("10.110.0.7", 9100));
    expect(args).toContain("--web.listen-address=10.110.0.7:9100");
    // No container flags: natively the host's paths are the defaults.
    expect(args.some((a) => a.startsWith("--path."))).toBe(false);
    expect(() => nodeExporterEnv("0.0.0.0; curl evil", 9100)).toThrow(/not an IPv4 address/);
    const doc = sandboxCloudInitDocument() as { runcmd: string[][]; packages: string[] };
    expect(doc.runcmd).toContainEqual(["systemctl", "enable", SANDBOX_NODE_EXPORTER_SERVICE]);
    expect(doc.packages).toContain("dbus");
  });

  it.runIf(Boolean(NODE_EXPORTER_BINARY) || process.env.CI === "true")(
    "the setup's and the readiness check's version test accepts the real node_exporter at the pin, and refuses another or none",
    () => {
      const check = (binary: string) => spawnSync("bash", ["-c", nodeExporterVersionIs(binary)]).status;
      expect(check(NODE_EXPORTER_BINARY!)).toBe(0);
      const other = path.join(work, "node_exporter-other");
      writeFileSync(
        other,
        `#!/bin/sh\necho "node_exporter, version ${NODE_EXPORTER.version}0 (branch: HEAD, revision: x)"\n`,
        { mode: 0o755 },
      );
      expect(check(other)).not.toBe(0);
      expect(check(path.join(work, "missing"))).not.toBe(0);
    },
  );

  it("the setup builds node_exporter from the Go module proxy beside runsc, before the build cache is removed", () => {
    const setup = cloudInitFile(SANDBOX_NODE_PATHS.setup);
    const lines = setup.split("\n");
    const build = lines.findIndex(
      (l) => l.includes("go install") && l.includes("github.com/prometheus/node_exporter@"),
    );
    const cleanup = lines.findIndex((l) => l.startsWith("rm -rf") && l.includes("go-build"));
    expect(build).toBeGreaterThan(0);
    expect(cleanup).toBeGreaterThan(build);
    expect(lines[build]).toContain("-X github.com/prometheus/common/version.Version=1.12.1");
    expect(spawnSync("bash", ["-n"], { input: setup }).status).toBe(0);
  });
});

describe.runIf(Boolean(NODE_EXPORTER_BINARY && PROMETHEUS_BINARY) || process.env.CI === "true")(
  "the real node_exporter with the unit's flags, scraped by the real Prometheus with the hub's rules",
  () => {
    const hub = mustLoad({ tier: "hybrid", sandbox: "on", gpuWindows: ["mon 09:00-17:00 UTC"] });
    const rules = alertRules(hub).groups.flatMap((g) => g.rules);
    let exporter: ManagedProcess;
    let prometheus: ManagedProcess;
    let exporterPort = 0;
    let prometheusPort = 0;
    const api = async (query: string) =>
      (await (await fetch(`http://127.0.0.1:${prometheusPort}/api/v1/${query}`)).json()) as {
        status: string;
        data: unknown;
      };
    const instant = async (expr: string) =>
      (await api(`query?query=${encodeURIComponent(expr)}`)).data as {
        result: { metric: Record<string, string>; value: [number, string] }[];
      };

    beforeAll(async () => {
      exporterPort = await freePort();
      const args = execStart(unitText(), nodeExporterEnv("127.0.0.1", exporterPort));
      expect(args[0]).toBe(SANDBOX_NODE_EXPORTER_PATHS.binary);
      exporter = ManagedProcess.start("node_exporter", NODE_EXPORTER_BINARY!, args.slice(1));
      // The sandbox node as Prometheus' node job labels it (services/monitoring.ts scrapeTargets), every second.
      const dir = mkdtempSync(path.join(work, "prometheus-"));
      writeFileSync(path.join(dir, "rules.yml"), renderYaml(alertRules(hub)));
      writeFileSync(
        path.join(dir, "prometheus.yml"),
        renderYaml({
          global: { scrape_interval: "1s", evaluation_interval: "1s" },
          rule_files: [path.join(dir, "rules.yml")],
          scrape_configs: [
            {
              job_name: "node",
              static_configs: [{ targets: [`127.0.0.1:${exporterPort}`], labels: { node: "sandbox" } }],
            },
          ],
        }),
      );
      prometheusPort = await freePort();
      prometheus = ManagedProcess.start("prometheus", PROMETHEUS_BINARY!, [
        `--config.file=${path.join(dir, "prometheus.yml")}`,
        `--storage.tsdb.path=${path.join(dir, "data")}`,
        `--web.listen-address=127.0.0.1:${prometheusPort}`,
      ]);
      await waitFor(
        "Prometheus to scrape node_exporter",
        async () => (await instant('up{job="node"} == 1')).result.length === 1,
        60_000,
        { intervalMs: 500, context: () => `${prometheus.tail()}\n${exporter.tail()}` },
      );
    }, 90_000);

    afterAll(async () => {
      await prometheus?.stop();
      await exporter?.stop();
    });

    it("node_exporter serves what the alerts read, its systemd collector included", async () => {
      const text = await (await fetch(`http://127.0.0.1:${exporterPort}/metrics`)).text();
      expect(exporter.running, exporter.tail()).toBe(true);
      // It reports 0 where no system bus answers, as here.
      expect(text).toMatch(/^node_scrape_collector_success\{collector="systemd"\} [01]$/m);
      expect(text).toMatch(/^node_filesystem_avail_bytes\{[^}]*mountpoint="\/"[^}]*\} \d/m);
      expect(text).toMatch(/^node_memory_MemAvailable_bytes \d/m);
      // A flag the program does not know stops it: the flags above were checked by the program itself.
      const args = execStart(unitText(), nodeExporterEnv("127.0.0.1", exporterPort)).slice(1);
      const wrong = spawnSync(NODE_EXPORTER_BINARY!, [...args, "--collector.systemd.unit-includes=x"], {
        encoding: "utf8",
        timeout: 20_000,
      });
      expect(wrong.status).not.toBe(0);
      expect(wrong.stderr).toContain("unknown long flag");
    });

    it("every rule evaluates without error over the real series", async () => {
      type Rule = { name: string; health: string; lastError?: string; lastEvaluation: string };
      let seen: Rule[] = [];
      // Evaluated after Prometheus had the exporter's samples (beforeAll waited for them).
      const since = Date.now();
      await waitFor(
        "every rule to be evaluated over the scraped series",
        async () => {
          const data = (await api("rules")).data as { groups: { rules: Rule[] }[] };
          seen = data.groups.flatMap((g) => g.rules);
          return seen.length === rules.length && seen.every((r) => Date.parse(r.lastEvaluation) > since);
        },
        30_000,
        { intervalMs: 500, context: () => prometheus.tail() },
      );
      expect(seen.map((r) => r.name).sort()).toEqual(rules.map((r) => r.alert).sort());
      expect(seen.filter((r) => r.health !== "ok").map((r) => `${r.name}: ${r.lastError}`)).toEqual([]);
    });

    it("the disk and memory alerts' ratios find the node's boot disk and RAM (thresholds left out)", async () => {
      const ratio = (alert: string) => rules.find((r) => r.alert === alert)!.expr.replace(/ < [\d.]+$/, "");
      const disks = (await instant(ratio("HubNodeDiskAlmostFull"))).result;
      const root = disks.find((d) => d.metric.mountpoint === "/");
      expect(root?.metric).toMatchObject({ node: "sandbox", job: "node" });
      expect(Number(root!.value[1])).toBeGreaterThan(0);
      expect(Number(root!.value[1])).toBeLessThan(1);
      const memory = (await instant(ratio("HubNodeMemoryLow"))).result;
      expect(memory.map((m) => m.metric.node)).toEqual(["sandbox"]);
      // HubSandboxApiDown's second arm reads the systemd collector's own success, labelled as the node's.
      const collector = (await instant('node_scrape_collector_success{node="sandbox",collector="systemd"}')).result;
      expect(collector).toHaveLength(1);
    });
  },
);

describe("the sandbox node in the hub's monitoring (mock engine)", () => {
  let on: ProgramRun;
  let off: ProgramRun;
  beforeAll(async () => {
    on = await runProgram({ tier: "cpu", sandbox: "on", adminCidrs: ["203.0.113.7/32"] });
    off = await runProgram({ tier: "cpu", sandbox: "on", monitoring: false, adminCidrs: ["203.0.113.7/32"] });
  }, 120_000);

  const sandboxFirewallRules = (run: ProgramRun) =>
    run.byType(T.firewall).find((f) => String(f.inputs.name).endsWith("-sandbox"))!.inputs.inboundRules as {
      protocol: string;
      portRange?: string;
      sourceTags?: string[];
      sourceAddresses?: string[];
    }[];

  it("the sandbox firewall admits node_exporter's port from the gateway node alone, and only with monitoring on", () => {
    const exporterRules = sandboxFirewallRules(on).filter((r) => r.portRange === "9100");
    expect(exporterRules).toEqual([{ protocol: "tcp", portRange: "9100", sourceTags: ["ih-cpu-gateway"] }]);
    // Nothing new reaches the node from an address range: the internet sees only SSH from adminCidrs.
    expect(
      sandboxFirewallRules(on)
        .filter((r) => r.sourceAddresses)
        .map((r) => r.portRange),
    ).toEqual(["22"]);
    expect(sandboxFirewallRules(off).some((r) => r.portRange === "9100")).toBe(false);
    expect(off.byType(T.command).some((c) => c.name.startsWith("sandbox-node-exporter"))).toBe(false);
    expect(off.artifacts.some((a) => a.path.endsWith("node-sandbox.json"))).toBe(false);
  });

  it("the exporter starts on the private address after the node is ready; its target is written after it answers", () => {
    const privateIp = (on.outputs.nodeAddresses as Record<string, { private: string }>).sandbox.private;
    const env = on.one(T.command, "sandbox-node-exporter-env");
    expect(env.inputs.stdin).toBe(nodeExporterEnv(privateIp, 9100));
    expect(env.options.dependsOn).toContain(on.one(T.command, "sandbox-ready").urn);
    const restart = on.one(T.command, "sandbox-node-exporter-restart");
    expect(restart.options.dependsOn).toContain(env.urn);
    expect(String(restart.inputs.create)).toContain(`curl -fsS --max-time 3 'http://${privateIp}:9100/metrics'`);
    expect(String(env.inputs.delete)).toContain(`systemctl stop ${SANDBOX_NODE_EXPORTER_SERVICE}`);

    const target = on.artifacts.find((a) => a.path === "cpu/prometheus/targets/node-sandbox.json")!;
    expect(JSON.parse(target.content)).toEqual([{ targets: [`${privateIp}:9100`], labels: { node: "sandbox" } }]);
    const write = on
      .byType(T.command)
      .find((c) => c.name.startsWith("cpu-containers-file") && c.name.endsWith("node-sandbox.json"))!;
    expect(write.options.dependsOn).toContain(restart.urn);
    // The CPU and GPU nodes' file does not wait for the sandbox's ten-minute first boot.
    const nodeFile = on
      .byType(T.command)
      .find((c) => c.name.startsWith("cpu-containers-file") && c.name.endsWith("targets-node.json"))!;
    expect(nodeFile.options.dependsOn).not.toContain(restart.urn);
  });

  it("every metric name the rules use comes from the catalogue (read in the programs' sources)", () => {
    const hub = mustLoad({ tier: "hybrid", sandbox: "on", gpuWindows: ["mon 09:00-17:00 UTC"] });
    const names = alertRules(hub).groups.flatMap((g) => g.rules.flatMap((r) => metricNamesIn(r.expr)));
    expect(names).toEqual(expect.arrayContaining(["node_systemd_unit_state", "node_systemd_service_restart_total"]));
    expect(names.filter((n) => jobExporting(n) === undefined)).toEqual([]);
  });

  it("the plan of a sandbox stack shows the exporter, its firewall rule and its target", async () => {
    const plan = await planFromText(
      "sbmon",
      "Pulumi.sbmon.yaml",
      'config:\n  inference-hub:tier: cpu\n  inference-hub:sandbox: "on"\n  inference-hub:adminCidrs:\n    - 203.0.113.0/24\n',
    );
    if (!plan.ok) throw new Error(JSON.stringify(plan.document.problems));
    const view = renderPlan(plan.document);
    expect(view).toContain("sandbox-node-exporter-restart");
    expect(view).toMatch(/ih-sbmon-sandbox .*tcp\/9100<-\["ih-sbmon-gateway"\]/);
    expect(plan.document.artifacts.map((a) => a.path)).toContain("cpu/prometheus/targets/node-sandbox.json");
    const prometheus = parse(plan.artifacts.find((a) => a.kind === "prometheus-config")!.content) as {
      scrape_configs: { job_name: string; file_sd_configs?: { files: string[] }[] }[];
    };
    expect(prometheus.scrape_configs.find((j) => j.job_name === "node")!.file_sd_configs![0].files).toEqual([
      "/etc/prometheus/targets/node.json",
      "/etc/prometheus/targets/node-sandbox.json",
    ]);
  }, 120_000);
});
