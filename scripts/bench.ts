import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { table } from "./lib/plan-view";
import { availableStacks, PROJECT_ROOT, stackFilePath } from "./lib/plan-runner";

/**
 * Times the offline plan (a fresh process each run, as a user or CI runs it) for every shipped
 * stack and for synthetic stacks with 1, 8, 32 and 64 GPU nodes. Prints wall time (median of
 * --runs) and peak memory. Targets: every shipped stack under 1.5 s; time linear in node count.
 */
// `npm run bench -- gatekeeper [its options]`: the gatekeeper's own load test, which parses its own options.
if (process.argv[2] === "gatekeeper") {
  const child = spawnSync(path.join(PROJECT_ROOT, "node_modules/.bin/tsx"), [path.join(PROJECT_ROOT, "scripts/bench-gatekeeper.ts"), ...process.argv.slice(3)], { stdio: "inherit" });
  process.exit(child.status ?? 1);
}
const { values, positionals } = parseArgs({ options: { runs: { type: "string", default: "3" } }, strict: true, allowPositionals: true });
if (positionals.length > 0) {
  process.stderr.write(`bench: unknown benchmark "${positionals[0]}"; use no argument (the plan) or "gatekeeper"\n`);
  process.exit(1);
}
const runs = Math.max(1, Number(values.runs));
const TSX = path.join(PROJECT_ROOT, "node_modules/.bin/tsx");

interface Sample { wallMs: number; maxRssMb: number; resources: number }

function planOnce(configFile: string): Sample {
  const started = process.hrtime.bigint();
  const child = spawnSync(TSX, [path.join(PROJECT_ROOT, "scripts/plan.ts"), "--config-file", configFile, "--json"], { encoding: "utf8", env: { ...process.env, PLAN_BENCH_REPORT: "1" }, maxBuffer: 256 * 1024 * 1024 });
  const wallMs = Number(process.hrtime.bigint() - started) / 1e6;
  if (child.status !== 0) throw new Error(`plan of ${configFile} failed: ${child.stdout.slice(0, 500)} ${child.stderr.slice(0, 500)}`);
  const report = /bench: maxrss_kb=(\d+) resources=(\d+)/.exec(child.stderr);
  return { wallMs, maxRssMb: report ? Number(report[1]) / 1024 : NaN, resources: report ? Number(report[2]) : NaN };
}

function measure(configFile: string): Sample {
  const samples = Array.from({ length: runs }, () => planOnce(configFile)).sort((a, b) => a.wallMs - b.wallMs);
  const median = samples[Math.floor(samples.length / 2)];
  return { wallMs: median.wallMs, maxRssMb: Math.max(...samples.map((s) => s.maxRssMb)), resources: median.resources };
}

const dir = mkdtempSync(path.join(tmpdir(), "hub-bench-"));
const rows: string[][] = [];
const perNode: { nodes: number; wallMs: number }[] = [];
for (const stack of availableStacks()) {
  const s = measure(stackFilePath(stack));
  rows.push([`Pulumi.${stack}.yaml`, String(s.resources), s.wallMs.toFixed(0), s.maxRssMb.toFixed(0), s.wallMs < 1500 ? "yes" : "NO"]);
}
for (const gpuCount of [1, 8, 32, 64]) {
  const file = path.join(dir, `Pulumi.synthetic-${gpuCount}.yaml`);
  writeFileSync(file, `config:\n  inference-hub:tier: gpu\n  inference-hub:gpuCount: ${gpuCount}\n  inference-hub:budgetUsd: 1000000\n`);
  const s = measure(file);
  perNode.push({ nodes: gpuCount, wallMs: s.wallMs });
  rows.push([`synthetic, ${gpuCount} GPU nodes`, String(s.resources), s.wallMs.toFixed(0), s.maxRssMb.toFixed(0), ""]);
}
process.stdout.write(`Offline plan, median of ${runs} fresh processes each (Node ${process.version}, ${cpus().length} cores)\n\n`);
process.stdout.write(`${table(["stack", "resources", "wall ms", "peak RSS MB", "< 1.5 s"], rows)}\n\n`);
// Linear growth: the marginal cost per node between 8 and 64 nodes should not exceed that of 1 → 8 by much.
const slope = (a: { nodes: number; wallMs: number }, b: { nodes: number; wallMs: number }) => (b.wallMs - a.wallMs) / (b.nodes - a.nodes);
const [n1, n8, n32, n64] = perNode;
process.stdout.write(`marginal ms per GPU node: 1→8 ${slope(n1, n8).toFixed(1)}, 8→32 ${slope(n8, n32).toFixed(1)}, 32→64 ${slope(n32, n64).toFixed(1)}\n`);
