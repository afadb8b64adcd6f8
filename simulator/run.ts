import { existsSync, readdirSync, readFileSync } from "node:fs";
import { servingImage } from "../services/gpu-image";
import * as path from "node:path";
import { LEARNING_DEFAULTS, LearningTuning } from "../programs/autoscaler/learning";
import { policyConfig, ServingModel, servingModel, ServingOverrides } from "../programs/autoscaler/serving-model";
import type { PolicyConfig } from "../programs/autoscaler/types";
import { FORWARDING_TIMEOUTS } from "../services/gateway";
import { formatProblem, HubConfig, loadHubConfig, PROJECT, readStackFile } from "../stacks";
import { oracle } from "./oracle";
import {
  alwaysOn,
  decisionController,
  reactiveConfig,
  scheduled,
  SEED_MONTHLY_SCHEDULE,
  seedMonthly,
} from "./policies";
import { PolicyRun, replay, ReplayModel } from "./replay";
import { readTrace, sliceDays, Trace, TraceFormat } from "./traces";
import { kubernetesPolicies, kubernetesReplay } from "./kubernetes";

export const PROJECT_ROOT = path.resolve(__dirname, "..");
export const TICK_SECONDS = 15;
export const WIND_DOWN_SECONDS = 6 * 3600;
/** Idle times the sweep tries for the reactive policy, minutes. */
export const SWEEP_MINUTES = [1, 2, 3, 5, 7, 10, 15, 20, 30, 45, 60, 90, 120];

/** Bad input to the simulator (not the trace's lines): one message per problem. */
export class SimulateInputError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(problems.join("\n"));
    this.name = "SimulateInputError";
  }
}

export interface SimulateOptions {
  readonly tracePath: string;
  readonly format?: TraceFormat;
  readonly stack: string;
  readonly configFile?: string;
  /** Setting overrides, `key=value` as `pulumi config set` takes them. */
  readonly sets?: Readonly<Record<string, string>>;
  readonly seed?: number;
  readonly startMs?: number;
  readonly rateScale?: number;
  /** Replay only days from..to (inclusive). */
  readonly days?: { readonly from: number; readonly to: number };
  readonly serving?: ServingOverrides;
  readonly sweep?: boolean;
  readonly tuning?: LearningTuning;
  /** Holding: the share of requests that ask to wait for a waking GPU, and for how long (default: the stack's gpuHoldMaxSeconds). */
  readonly hold?: { readonly share: number; readonly seconds?: number };
}

export interface Simulation {
  readonly stack: string;
  readonly hub: HubConfig;
  readonly trace: Trace;
  readonly tracePath: string;
  readonly model: ServingModel;
  readonly replayModel: ReplayModel;
  readonly policy: PolicyConfig;
  readonly policies: readonly PolicyRun[];
  readonly sweep: readonly { readonly idleMinutes: number; readonly costUsd: number; readonly gpuShare: number }[];
  /** Wall time of the policies' replay, and of the idle sweep: the simulator's own speed. */
  readonly replaySeconds: number;
  readonly sweepSeconds: number;
}

/** "900s" → 900. */
const seconds = (duration: string): number => Number(/^(\d+)s$/.exec(duration)?.[1] ?? NaN);

export function loadStack(
  stack: string,
  configFile: string | undefined,
  sets: Readonly<Record<string, string>>,
): HubConfig {
  const file = configFile ?? path.join(PROJECT_ROOT, `Pulumi.${stack}.yaml`);
  if (!existsSync(file))
    throw new SimulateInputError([
      `--stack ${stack}: ${file} does not exist; stacks here: ${availableStacks().join(", ")}`,
    ]);
  const read = readStackFile(readFileSync(file, "utf8"), file);
  if (!read.ok) throw new SimulateInputError(read.problems.map((p) => `${file}: ${formatProblem(p)}`));
  const config: Record<string, string> = { ...read.file.config };
  for (const [k, v] of Object.entries(sets)) config[`${PROJECT}:${k}`] = v;
  const loaded = loadHubConfig(config, read.file.secretKeys);
  if (!loaded.ok)
    throw new SimulateInputError(
      loaded.problems.map((p) => `stack ${stack}${Object.keys(sets).length ? " with --set" : ""}: ${formatProblem(p)}`),
    );
  return loaded.config;
}

function availableStacks(): string[] {
  return readdirSync(PROJECT_ROOT)
    .map((f) => /^Pulumi\.(.+)\.yaml$/.exec(f)?.[1])
    .filter((s): s is string => s !== undefined)
    .sort();
}

export function replayModelFor(
  hub: HubConfig,
  model: ServingModel,
  policy: PolicyConfig,
  hold?: SimulateOptions["hold"],
  seed = 1,
): ReplayModel {
  const s = hub.settings;
  return {
    ...(hold && hold.share > 0
      ? {
          hold: {
            share: hold.share,
            seconds: Math.min(hold.seconds ?? s.gpuHoldMaxSeconds, s.gpuHoldMaxSeconds),
            maxRequests: s.gpuHoldMaxRequests,
            seed,
          },
        }
      : {}),
    tickSeconds: TICK_SECONDS,
    pipelineSeconds: model.coldStart.pipelineSeconds,
    coldStartSeconds: model.coldStart.totalSeconds,
    changeSeconds: model.coldStart.changeSeconds,
    destroySeconds: model.coldStart.destroySeconds,
    replicaTokensPerSecond: model.replica.tokensPerSecond,
    replicaCapacity: model.replica.concurrentSequences,
    waitLimitSeconds: seconds(FORWARDING_TIMEOUTS.responseHeaderTimeout),
    nodeHourlyUsd: model.nodeHourlyUsd,
    fallback: hub.fallbackCoder !== undefined,
    maxNodes: Math.max(1, policy.maxNodes),
    windDownSeconds: WIND_DOWN_SECONDS,
  };
}

/** Every policy over one trace, in the order the report prints them. */
export function runPolicies(
  trace: Trace,
  policy: PolicyConfig,
  replayModel: ReplayModel,
  tuning: LearningTuning = LEARNING_DEFAULTS,
): PolicyRun[] {
  const runs: PolicyRun[] = [];
  runs.push(replay("always-on", trace, replayModel, alwaysOn(Math.max(1, policy.minNodes))));
  runs.push(replay("40h-month", trace, replayModel, seedMonthly()));
  if (policy.windows.length > 0) runs.push(replay("windows", trace, replayModel, scheduled(policy.windows)));
  runs.push(replay("reactive", trace, replayModel, decisionController(reactiveConfig(policy))));
  runs.push(replay("autoscaler", trace, replayModel, decisionController(policy, tuning)));
  runs.push(oracle(trace, replayModel));
  return runs;
}

export function idleSweep(
  trace: Trace,
  policy: PolicyConfig,
  replayModel: ReplayModel,
): { idleMinutes: number; costUsd: number; gpuShare: number }[] {
  return SWEEP_MINUTES.map((idleMinutes) => {
    const run = replay(
      `reactive-${idleMinutes}`,
      trace,
      replayModel,
      decisionController(reactiveConfig(policy, idleMinutes * 60)),
    );
    return { idleMinutes, costUsd: run.costUsd, gpuShare: run.servedByGpu / run.requests };
  });
}

export function simulate(options: SimulateOptions): Simulation {
  const hub = loadStack(options.stack, options.configFile, options.sets ?? {});
  const built = servingModel(hub, { ...options.serving, image: options.serving?.image ?? servingImage(hub) });
  if (!built.ok) throw new SimulateInputError([`--stack ${options.stack}: ${built.reason}`]);
  const model = built.model;
  const policy = policyConfig(hub, model);
  if (!existsSync(options.tracePath)) throw new SimulateInputError([`--trace ${options.tracePath}: no such file`]);
  const text = readFileSync(options.tracePath, "utf8");
  const whole = readTrace(text, options.tracePath, options.format, {
    seed: options.seed ?? 1,
    startMs: options.startMs,
    typicalInputTokens: model.replica.typicalInputTokens,
    typicalOutputTokens: model.replica.typicalOutputTokens,
    rateScale: options.rateScale,
  });
  const trace = options.days ? sliceDays(whole, options.days.from, options.days.to) : whole;
  if (!trace)
    throw new SimulateInputError([
      `--days ${options.days!.from}-${options.days!.to}: the trace has no request on those days`,
    ]);
  if (options.hold && options.hold.share > 0 && hub.settings.gpuHoldMaxSeconds === 0)
    throw new SimulateInputError([
      `--hold-share ${options.hold.share}: the stack holds nothing (gpuHoldMaxSeconds is 0); --set gpuHoldMaxSeconds=600 to try it`,
    ]);
  // The k8s tier scales with KEDA on DOKS nodes (./kubernetes.ts); the droplet tiers with the controller's pipeline.
  const droplets = replayModelFor(hub, model, policy, options.hold, options.seed ?? 1);
  const k8s = hub.tier === "k8s" ? kubernetesReplay(hub, model, droplets) : undefined;
  const replayModel = k8s?.replayModel ?? droplets;
  const began = process.hrtime.bigint();
  const policies = k8s
    ? kubernetesPolicies(trace, policy, replayModel, k8s.rule)
    : runPolicies(trace, policy, replayModel, options.tuning);
  const replayed = process.hrtime.bigint();
  const sweep = options.sweep === false || k8s ? [] : idleSweep(trace, policy, replayModel);
  const replaySeconds = Number(replayed - began) / 1e9;
  const sweepSeconds = Number(process.hrtime.bigint() - replayed) / 1e9;
  return {
    stack: options.stack,
    hub,
    trace,
    tracePath: options.tracePath,
    model,
    replayModel,
    policy,
    policies,
    sweep,
    replaySeconds,
    sweepSeconds,
  };
}

export { SEED_MONTHLY_SCHEDULE };
