import {
  bakedImageConfigured,
  servingModel,
  ServingModel,
  ServingOverrides,
  STAGE_NAMES,
} from "../programs/autoscaler/serving-model";
import type { HubConfig } from "../stacks/hub-config";
import type { PolicyRun } from "./replay";
import { SimulateInputError, type Simulation } from "./run";

/** The issue's target: the autoscaler at most 1.2x the oracle's cost, at least 90% of all coder requests on the GPU. */
export const TARGET = { costRatio: 1.2, gpuShare: 0.9 } as const;

/** The fields of each `policies` entry in `--json`, exactly. */
export const POLICY_FIELDS = [
  "name",
  "gpuHours",
  "costUsd",
  "requests",
  "servedByGpu",
  "servedByGpuAfterHold",
  "servedByFallback",
  "heldThenFallback",
  "holdCapRefused",
  "refused",
  "gpuShareOutsideColdStarts",
  "waitP50s",
  "waitP95s",
  "holdP50s",
  "holdP95s",
  "scaleEvents",
] as const;

const r = (n: number, digits: number) => Math.round(n * 10 ** digits) / 10 ** digits;

function policyEntry(p: PolicyRun): Record<(typeof POLICY_FIELDS)[number], string | number> {
  return {
    name: p.name,
    gpuHours: r(p.gpuHours, 3),
    costUsd: r(p.costUsd, 2),
    requests: p.requests,
    servedByGpu: p.servedByGpu,
    servedByGpuAfterHold: p.servedByGpuAfterHold,
    servedByFallback: p.servedByFallback,
    heldThenFallback: p.heldThenFallback,
    holdCapRefused: p.holdCapRefused,
    refused: p.refused,
    gpuShareOutsideColdStarts: r(p.gpuShareOutsideColdStarts, 4),
    waitP50s: r(p.waitP50s, 2),
    waitP95s: r(p.waitP95s, 2),
    holdP50s: r(p.holdP50s, 1),
    holdP95s: r(p.holdP95s, 1),
    scaleEvents: p.scaleEvents,
  };
}

export function bestIdle(sim: Simulation): { idleMinutes: number; costUsd: number; gpuShare: number } | undefined {
  return sim.sweep.reduce<Simulation["sweep"][number] | undefined>(
    (best, s) => (best === undefined || s.costUsd < best.costUsd ? s : best),
    undefined,
  );
}

/** The cheapest reactive idle time that still serves the target share on the GPU, if any does. */
export function cheapestIdleAtTarget(
  sim: Simulation,
): { idleMinutes: number; costUsd: number; gpuShare: number } | undefined {
  return sim.sweep
    .filter((s) => s.gpuShare >= TARGET.gpuShare)
    .reduce<Simulation["sweep"][number] | undefined>(
      (best, s) => (best === undefined || s.costUsd < best.costUsd ? s : best),
      undefined,
    );
}

export function targetCheck(sim: Simulation): { costRatio: number; gpuShare: number; met: boolean } | undefined {
  const auto = sim.policies.find((p) => p.name === "autoscaler");
  const best = sim.policies.find((p) => p.name === "oracle");
  if (!auto || !best) return undefined;
  const costRatio = best.costUsd > 0 ? auto.costUsd / best.costUsd : Infinity;
  const gpuShare = auto.servedByGpu / auto.requests;
  return {
    costRatio: r(costRatio, 3),
    gpuShare: r(gpuShare, 4),
    met: costRatio <= TARGET.costRatio && gpuShare >= TARGET.gpuShare,
  };
}

/** What the stack bills whatever the GPU does: CPU node(s), volumes, and in k8s the load balancer. */
export const fixedMonthlyUsd = (sim: Simulation): number =>
  r(
    sim.hub.cost.lines.filter((l) => l.item !== "GPU nodes").reduce((sum, l) => sum + l.monthlyUsd, 0),
    2,
  );
const spanDays = (sim: Simulation): number => (sim.trace.endSeconds - sim.trace.beginSeconds) / 86400;

export function jsonDocument(sim: Simulation): unknown {
  const t = sim.trace;
  return {
    trace: {
      file: sim.tracePath,
      format: t.format,
      requests: t.arrivals.length,
      spanDays: r((t.endSeconds - t.beginSeconds) / 86400, 3),
      startsAt: new Date(t.startMs + t.beginSeconds * 1000).toISOString(),
      lengthsGiven: t.lengthsGiven,
      notes: t.notes,
    },
    stack: sim.stack,
    tier: sim.hub.tier,
    fixedMonthlyUsd: fixedMonthlyUsd(sim),
    gpuSize: sim.model.gpuSize,
    nodeHourlyUsd: sim.model.nodeHourlyUsd,
    coldStart: {
      image: sim.model.coldStart.image,
      actuator: sim.model.coldStart.actuator,
      totalSeconds: r(sim.model.coldStart.totalSeconds, 1),
      billedSeconds: r(sim.model.coldStart.billedSeconds, 1),
      stages: sim.model.coldStart.stages.map((s) => ({
        name: s.name,
        seconds: r(s.seconds, 1),
        how: s.how,
        unverified: s.unverified,
      })),
    },
    replica: sim.model.replica,
    settings: {
      gpuMinNodes: sim.policy.minNodes,
      gpuMaxNodes: sim.policy.maxNodes,
      gpuIdleMinutes: sim.policy.idleSeconds / 60,
      gpuTargetLoadPercent: Math.round(sim.policy.targetLoad * 100),
      gpuPredictiveWake: sim.policy.predictive,
      fallback: sim.replayModel.fallback,
    },
    hold: sim.replayModel.hold
      ? {
          share: sim.replayModel.hold.share,
          seconds: sim.replayModel.hold.seconds,
          maxRequests: sim.replayModel.hold.maxRequests,
        }
      : null,
    policies: sim.policies.map(policyEntry),
    idleSweep: sim.sweep.map((s) => ({
      idleMinutes: s.idleMinutes,
      costUsd: r(s.costUsd, 2),
      gpuShare: r(s.gpuShare, 4),
    })),
    cheapestIdleMinutes: bestIdle(sim)?.idleMinutes ?? null,
    cheapestIdleMinutesAtTargetShare: cheapestIdleAtTarget(sim)?.idleMinutes ?? null,
    target: targetCheck(sim) ?? null,
    replaySeconds: r(sim.replaySeconds, 3),
    sweepSeconds: r(sim.sweepSeconds, 3),
  };
}

const pct = (n: number) => `${(n * 100).toFixed(1)}%`;
const usd = (n: number) => `$${n.toFixed(2)}`;
const secs = (n: number) => (n >= 100 ? `${n.toFixed(0)} s` : `${n.toFixed(1)} s`);

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ");
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n");
}

export function humanReport(sim: Simulation): string {
  const t = sim.trace;
  const m = sim.model;
  const out: string[] = [];
  out.push(
    `Trace ${sim.tracePath} (${t.format}): ${t.arrivals.length.toLocaleString("en-US")} coder requests over ${((t.endSeconds - t.beginSeconds) / 86400).toFixed(2)} days from ${new Date(t.startMs + t.beginSeconds * 1000).toISOString()}`,
  );
  for (const note of t.notes) out.push(`  - ${note}`);
  out.push(
    `Stack ${sim.stack}: ${m.gpuSize} at $${m.nodeHourlyUsd}/h, gpuMinNodes ${sim.policy.minNodes}, gpuMaxNodes ${sim.policy.maxNodes}, gpuIdleMinutes ${sim.policy.idleSeconds / 60}, target load ${Math.round(sim.policy.targetLoad * 100)}%, predictive wake ${sim.policy.predictive ? "on" : "off"}, ${sim.replayModel.fallback ? "CPU fallback coder" : "no fallback (503 while the GPU is off)"}`,
  );
  out.push("");
  out.push(
    `Cold start: ${secs(m.coldStart.totalSeconds)} from the wake request to traffic, ${secs(m.coldStart.billedSeconds)} of it billed; ${m.coldStart.image === "baked" ? "the baked GPU image" : "the GPU base image"}, woken through ${m.coldStart.actuator} (⚠ = no source gave the figure for this setup; override with --stages FILE, --cold-start-s, --pipeline-s)`,
  );
  for (const s of m.coldStart.stages)
    out.push(`  ${s.name.padEnd(20)} ${secs(s.seconds).padStart(7)}${s.unverified ? " ⚠" : "  "}  ${s.how}`);
  if (sim.hub.tier === "k8s")
    out.push(
      `On DOKS the replay uses ${secs(sim.replayModel.coldStartSeconds)}: the same stages without the pipeline and cloud-init (KEDA acts in the cluster, the node image has its runtime); an emptied node bills ${secs(sim.replayModel.destroySeconds)} more (the cluster autoscaler's unneeded time, then the teardown).`,
    );
  out.push(
    `Replica: ${m.replica.concurrentSequences} sequences at once (${m.replica.kvTokens.toLocaleString("en-US")} KV tokens / ${m.replica.typicalInputTokens + m.replica.typicalOutputTokens}-token requests, max-num-seqs ${m.replica.maxNumSeqs}); ${m.replica.tokensPerSecond.toFixed(0)} tokens/s${m.replica.tokensPerSecondUnverified ? " ⚠" : ""} (${m.replica.tokensPerSecondHow}); a wait over ${sim.replayModel.waitLimitSeconds} s is the gateway's 504`,
  );
  out.push("");
  const hold = sim.replayModel.hold;
  if (hold)
    out.push(
      `Holding: ${pct(hold.share)} of requests ask to wait up to ${hold.seconds} s for a waking GPU, at most ${hold.maxRequests} held at once (gpuHoldMaxRequests)`,
    );
  const rows = sim.policies.map((p) => [
    p.name,
    p.gpuHours.toFixed(2),
    usd(p.costUsd),
    String(p.requests),
    pct(p.servedByGpu / p.requests),
    ...(hold
      ? [pct((p.servedByGpu - p.servedByGpuAfterHold) / p.requests), pct(p.servedByGpuAfterHold / p.requests)]
      : []),
    String(p.servedByFallback),
    String(p.refused),
    pct(p.gpuShareOutsideColdStarts),
    secs(p.waitP50s),
    secs(p.waitP95s),
    ...(hold
      ? [`${secs(p.holdP50s)} / ${secs(p.holdP95s)}`, String(p.heldThenFallback), String(p.holdCapRefused)]
      : []),
    String(p.scaleEvents),
  ]);
  out.push(
    table(
      [
        "policy",
        "GPU h",
        "cost",
        "requests",
        "on GPU",
        ...(hold ? ["directly", "after hold"] : []),
        "fallback",
        "refused",
        "GPU outside cold starts",
        "wait p50",
        "wait p95",
        ...(hold ? ["hold p50 / p95", "held, then fallback", "over hold cap"] : []),
        "scale events",
      ],
      rows,
    ),
  );
  const best = bestIdle(sim);
  if (best) {
    out.push("");
    out.push(
      `Reactive idle-time sweep (cost / share on GPU): ${sim.sweep.map((s) => `${s.idleMinutes} min ${usd(s.costUsd)} ${pct(s.gpuShare)}`).join(", ")}`,
    );
    out.push(
      `Cheapest idle time for this trace: ${best.idleMinutes} min (${usd(best.costUsd)}, ${pct(best.gpuShare)} on the GPU)`,
    );
    const atTarget = cheapestIdleAtTarget(sim);
    out.push(
      atTarget
        ? `Cheapest idle time keeping ${pct(TARGET.gpuShare)} on the GPU: ${atTarget.idleMinutes} min (${usd(atTarget.costUsd)}, ${pct(atTarget.gpuShare)})`
        : `No idle time in the sweep keeps ${pct(TARGET.gpuShare)} of requests on the GPU: what arrives during cold starts binds, not the idle time`,
    );
  }
  const target = targetCheck(sim);
  if (target)
    out.push(
      `Target (cost <= ${TARGET.costRatio} x oracle, >= ${pct(TARGET.gpuShare)} on GPU): autoscaler ${target.costRatio.toFixed(3)} x oracle, ${pct(target.gpuShare)} on GPU: ${target.met ? "met" : "not met"}`,
    );
  const fixed = fixedMonthlyUsd(sim);
  out.push(
    `Always-on costs of the stack, the same under every policy: ${usd(fixed)} a month (${sim.hub.cost.lines
      .filter((l) => l.item !== "GPU nodes")
      .map((l) => `${l.item} ${usd(l.monthlyUsd)}`)
      .join(", ")}), ${usd((fixed * spanDays(sim)) / (730 / 24))} over the trace's ${spanDays(sim).toFixed(2)} days.`,
  );
  out.push(
    `(costs are GPU droplets only; the CPU node and volumes bill the same under every policy. Replayed ${sim.policies.length} policies in ${sim.replaySeconds.toFixed(2)} s${sim.sweep.length ? `, the ${sim.sweep.length}-point sweep in ${sim.sweepSeconds.toFixed(2)} s` : ""}.)`,
  );
  return out.join("\n");
}

/** The wake variants the stage comparison puts side by side, in order. */
export const WAKE_VARIANTS: readonly { readonly label: string; readonly overrides: ServingOverrides }[] = [
  {
    label: "before (BF16 + online FP8, base image, old workflow)",
    overrides: { image: "base", actuator: "github-before", bf16OnlineWeights: true },
  },
  { label: "base image", overrides: { image: "base", actuator: "github" } },
  { label: "baked image (GitHub)", overrides: { image: "baked", actuator: "github" } },
  { label: "baked image (Pulumi Deployments)", overrides: { image: "baked", actuator: "pulumi-deployments" } },
];

/** The modelled wake, stage by stage, for each variant (and a measured one when given). */
export function stageComparison(
  hub: HubConfig,
  measured?: ServingOverrides["measured"],
): { header: string[]; rows: string[][]; notes: string[] } {
  const variants = [
    ...WAKE_VARIANTS,
    ...(measured
      ? [
          {
            label: "measured (--stages)",
            overrides: { image: bakedImageConfigured(hub) ? "baked" : "base", measured } as ServingOverrides,
          },
        ]
      : []),
  ];
  const models = variants.map((v) => {
    const built = servingModel(hub, v.overrides);
    if (!built.ok) throw new SimulateInputError([built.reason]);
    return built.model;
  });
  const cell = (m: ServingModel, name: string) => {
    const stage = m.coldStart.stages.find((st) => st.name === name || st.name.split(" + ").includes(name));
    if (!stage) return "-";
    if (stage.name !== name) return stage.name.startsWith(name) ? `${secs(stage.seconds)} (with the next)` : "↑";
    return `${secs(stage.seconds)}${stage.unverified ? " ⚠" : ""}`;
  };
  const rows = STAGE_NAMES.map((name) => [name, ...models.map((m) => cell(m, name))]);
  rows.push(
    ["total", ...models.map((m) => secs(m.coldStart.totalSeconds))],
    ["of it billed", ...models.map((m) => secs(m.coldStart.billedSeconds))],
  );
  const notes = models[models.length - 1 - (measured ? 1 : 0)].coldStart.stages.map((st) => `${st.name}: ${st.how}`);
  return { header: ["stage", ...variants.map((v) => v.label)], rows, notes };
}

export function stageComparisonText(hub: HubConfig, stack: string, measured?: ServingOverrides["measured"]): string {
  const c = stageComparison(hub, measured);
  return [
    `Modelled GPU wake of stack ${stack} (${hub.gpu?.size.slug}), wake request to traffic (⚠ = no source gave the figure for this setup):`,
    "",
    table(c.header, c.rows),
    "",
    "How the last modelled column is made up:",
    ...c.notes.map((n) => `  - ${n}`),
  ].join("\n");
}
