import { benchArgs } from "./args";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { cpus, loadavg, tmpdir } from "node:os";
import * as path from "node:path";
import { table } from "../cli/plan/view";
import { availableStacks, PROJECT_ROOT, stackFilePath } from "../cli/plan/runner";

/**
 * Times the offline plan as users and CI run it (`npm run plan`: a fresh process through
 * cli/run.cjs, compiled) against a floor: `node -e` requiring the five Pulumi packages the
 * program uses. Runs alternate floor, plan, floor, plan, ... so a shared machine's load hits both
 * alike; each figure is the median of --runs. Target: every shipped stack's plan at most 1.6 x its
 * floor. Also the synthetic 64-node stack (--nodes 1,8,32,64 for the slope per node).
 */
const RUNNER = path.join(PROJECT_ROOT, "cli/run.cjs");
/** Sub-benchmarks, each its own script (compiled like the others): `npm run bench -- <name> [options]`. */
const SUB_BENCHMARKS: Readonly<Record<string, string>> = {
  // The gatekeeper's own load test (decisions/s, p50/p99, no audit row lost).
  gatekeeper: "bench-gatekeeper",
  // What the real Traefik + gatekeeper + audit add to a request (req/s, p50/p99 added latency).
  gateway: "bench-gateway",
  // What the holder adds to a coder request it passes to the CPU stand-in (req/s ratio, p99).
  holder: "bench-holder",
  // The spend guard under each fault: how far past the GPU budget before it acts.
  money: "bench-money",
  // The sandbox: a trivial execution plain, cold and warm, and executions per second (as root).
  sandbox: "bench-sandbox",
  // Keys at runtime: create → first accepted, revoke → first refused, through the rig.
  keys: "bench-keys",
};
// Dispatched before this script's own options are parsed: a sub-benchmark has options of its own.
const first = process.argv[2];
const sub = first !== undefined && !first.startsWith("-") ? SUB_BENCHMARKS[first] : undefined;
if (sub) {
  const child = spawnSync(process.execPath, [RUNNER, sub, ...process.argv.slice(3)], { stdio: "inherit" });
  process.exit(child.status ?? 1);
}
const parsed = benchArgs(
  "bench",
  `usage: npm run bench -- [--runs 5] [--nodes 64|1,8,32,64] [--compare-tsx]   (the offline plan against its floor)
       npm run bench -- <${Object.keys(SUB_BENCHMARKS).join("|")}> [its options; --help for them]`,
  {
    runs: { type: "string", default: "5" },
    nodes: { type: "string", default: "64" },
    "compare-tsx": { type: "boolean", default: false },
  },
  true,
);
const { values, positionals } = parsed;
if (positionals.length > 0) {
  process.stderr.write(
    `bench: unknown benchmark "${positionals[0]}"; use no argument (the plan) or one of: ${Object.keys(SUB_BENCHMARKS).join(", ")}\n`,
  );
  process.exit(1);
}

const runs = Math.max(1, Math.floor(Number(values.runs)) || 5);
const nodeCounts = values.nodes
  .split(",")
  .map(Number)
  .filter((n) => Number.isInteger(n) && n > 0);
const TARGET_RATIO = 1.6;
const FLOOR_PACKAGES = [
  "@pulumi/pulumi",
  "@pulumi/digitalocean",
  "@pulumi/docker",
  "@pulumi/command",
  "@pulumi/random",
];
// The floor reports its CPU time the way the runner does for the plan (PLAN_BENCH_REPORT).
const FLOOR_SCRIPT = `${FLOOR_PACKAGES.map((p) => `require(${JSON.stringify(p)});`).join("")}process.on("exit",()=>{const c=process.cpuUsage();process.stderr.write("bench: cpu_ms="+((c.user+c.system)/1000)+"\\n")});`;

interface Sample {
  wallMs: number;
  cpuMs: number;
  maxRssMb: number;
  resources: number;
}

function timed(args: readonly string[], what: string): Sample {
  const started = process.hrtime.bigint();
  const child = spawnSync(process.execPath, args, {
    cwd: PROJECT_ROOT,
    encoding: "utf8",
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, PLAN_BENCH_REPORT: "1" },
  });
  const wallMs = Number(process.hrtime.bigint() - started) / 1e6;
  if (child.status !== 0) throw new Error(`${what} failed (exit ${child.status}): ${child.stderr.slice(0, 800)}`);
  const field = (name: string) => Number(new RegExp(`bench: .*?${name}=([\\d.]+)`).exec(child.stderr)?.[1] ?? NaN);
  return { wallMs, cpuMs: field("cpu_ms"), maxRssMb: field("maxrss_kb") / 1024, resources: field("resources") };
}

const median = (xs: readonly number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

interface Measured {
  plan: Sample;
  floor: Sample;
  ratio: number;
  cpuRatio: number;
  load: number;
}

/** Alternates floor and plan runs; medians of each. */
function measure(planArgs: readonly string[], what: string): Measured {
  const plans: Sample[] = [];
  const floors: Sample[] = [];
  for (let i = 0; i < runs; i++) {
    floors.push(timed(["-e", FLOOR_SCRIPT], "the floor"));
    plans.push(timed(planArgs, what));
  }
  const pick = (xs: Sample[]): Sample => ({
    wallMs: median(xs.map((s) => s.wallMs)),
    cpuMs: median(xs.map((s) => s.cpuMs)),
    maxRssMb: Math.max(...xs.map((s) => s.maxRssMb)),
    resources: xs[0].resources,
  });
  const plan = pick(plans);
  const floor = pick(floors);
  return { plan, floor, ratio: plan.wallMs / floor.wallMs, cpuRatio: plan.cpuMs / floor.cpuMs, load: loadavg()[0] };
}

const planArgs = (configFile: string) => [RUNNER, "plan", "--config-file", configFile, "--json"];

// Freshness check and a full build, measured here so the figures below are of runs that only check.
const requireCjs = createRequire(__filename);
const { checkFreshness } = requireCjs("../tools/build/freshness.cjs") as { checkFreshness(): { fresh: boolean } };
const { ensureBuilt } = requireCjs("../tools/build/compile.cjs") as {
  ensureBuilt(o: { force: boolean }): Promise<unknown>;
};

async function main(): Promise<void> {
  const loadBefore = loadavg();
  const buildStarted = process.hrtime.bigint();
  await ensureBuilt({ force: true });
  const buildMs = Number(process.hrtime.bigint() - buildStarted) / 1e6;
  const checks: number[] = [];
  for (let i = 0; i < 50; i++) {
    const t = process.hrtime.bigint();
    if (!checkFreshness().fresh) throw new Error("the build is stale right after building: are sources changing?");
    checks.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  // Warm the file cache for both commands before timing.
  timed(["-e", FLOOR_SCRIPT], "the floor");
  timed(planArgs(stackFilePath("cpu")), "the cpu plan");

  const rows: string[][] = [];
  const row = (label: string, m: Measured, target: boolean) => [
    label,
    String(m.plan.resources),
    m.plan.wallMs.toFixed(0),
    m.floor.wallMs.toFixed(0),
    m.ratio.toFixed(2),
    Number.isFinite(m.cpuRatio) ? m.cpuRatio.toFixed(2) : "n/a",
    m.plan.maxRssMb.toFixed(0),
    m.load.toFixed(2),
    target ? (m.ratio <= TARGET_RATIO ? "yes" : "NO") : "",
  ];
  const missed: string[] = [];
  const shipped: string[] = [];
  for (const stack of availableStacks()) {
    const m = measure(planArgs(stackFilePath(stack)), `the ${stack} plan`);
    rows.push(row(`Pulumi.${stack}.yaml`, m, true));
    (m.ratio <= TARGET_RATIO ? shipped : missed).push(stack);
  }
  const dir = mkdtempSync(path.join(tmpdir(), "hub-bench-"));
  const perNode: { nodes: number; wallMs: number }[] = [];
  let synthetic64: Measured | undefined;
  try {
    for (const gpuCount of nodeCounts) {
      const file = path.join(dir, `Pulumi.synthetic-${gpuCount}.yaml`);
      writeFileSync(
        file,
        `config:\n  inference-hub:tier: gpu\n  inference-hub:gpuCount: ${gpuCount}\n  inference-hub:budgetUsd: 1000000\n`,
      );
      const m = measure(planArgs(file), `the ${gpuCount}-node plan`);
      perNode.push({ nodes: gpuCount, wallMs: m.plan.wallMs });
      rows.push(row(`synthetic, ${gpuCount} GPU nodes`, m, false));
      if (gpuCount === 64) synthetic64 = m;
    }
    if (values["compare-tsx"]) {
      // Before issue 11: the same plan through tsx.
      const tsx = path.join(PROJECT_ROOT, "node_modules/tsx/dist/cli.mjs");
      const m = measure(
        [tsx, path.join(PROJECT_ROOT, "cli/plan.ts"), "--config-file", stackFilePath("hybrid"), "--json"],
        "the hybrid plan through tsx",
      );
      rows.push(row("Pulumi.hybrid.yaml through tsx", m, false));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  const loadAfter = loadavg();
  const out = process.stdout;
  out.write(
    `Offline plan (npm run plan -- --json) against the floor \`node -e\` requiring ${FLOOR_PACKAGES.join(", ")}.\n`,
  );
  out.write(
    `Alternating floor and plan, median of ${runs} fresh processes each; Node ${process.version}, ${cpus().length} cores.\n\n`,
  );
  out.write(
    `${table(["stack", "resources", "plan ms", "floor ms", "ratio", "CPU ratio", "peak RSS MB", "load (1 min)", `<= ${TARGET_RATIO} x`], rows)}\n\n`,
  );
  out.write(
    `load average (1/5/15 min): ${loadBefore.map((l) => l.toFixed(2)).join(" / ")} before, ${loadAfter.map((l) => l.toFixed(2)).join(" / ")} after\n`,
  );
  out.write(
    `build (every script and every program bundle): ${buildMs.toFixed(0)} ms; freshness check on each run: ${median(checks).toFixed(2)} ms (median of ${checks.length})\n`,
  );
  for (let i = 1; i < perNode.length; i++) {
    const [a, b] = [perNode[i - 1], perNode[i]];
    out.write(
      `marginal ms per GPU node ${a.nodes}→${b.nodes}: ${((b.wallMs - a.wallMs) / (b.nodes - a.nodes)).toFixed(1)}\n`,
    );
  }
  if (synthetic64)
    out.write(
      `synthetic 64-node stack: ${synthetic64.ratio.toFixed(2)} x its floor (${synthetic64.plan.resources} resources; reported, the target covers the shipped stacks)\n`,
    );
  out.write(
    missed.length === 0
      ? `every shipped stack meets the target (plan <= ${TARGET_RATIO} x floor)\n`
      : `target (<= ${TARGET_RATIO} x floor) met by ${shipped.join(", ") || "none"}; NOT met by ${missed.join(", ")}\n`,
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${(err as Error).message}\n`);
  process.exit(1);
});
