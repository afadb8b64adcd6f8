import type { PolicyConfig } from "../../programs/autoscaler/types";
import type { ReplayModel } from "../../simulator/replay";
import { readMooncake, Trace } from "../../simulator/traces";

/**
 * The simulator tests' hand-workable model: $3.60/h, so a billed second costs $0.001; a request of
 * 1000 tokens takes 1 s; a wake is created 60 s and ready 300 s after the tick that asks for it.
 */
export const MODEL: ReplayModel = {
  tickSeconds: 15,
  pipelineSeconds: 60,
  coldStartSeconds: 300, // billed part: 240 s
  changeSeconds: 200,
  destroySeconds: 60,
  replicaTokensPerSecond: 1000,
  replicaCapacity: 4,
  waitLimitSeconds: 900,
  nodeHourlyUsd: 3.6,
  fallback: true,
  maxNodes: 1,
  windDownSeconds: 6 * 3600,
};

export const POLICY: PolicyConfig = {
  minNodes: 0,
  maxNodes: 1,
  idleSeconds: 600,
  targetLoad: 0.8,
  predictive: false,
  windows: [],
  replicaCapacity: 4,
  coldStartSeconds: 300,
  restartCostSeconds: 300,
  nodeHourlyUsd: 3.6,
  gpuBudgetUsd: 1e9,
};

/** Requests as Mooncake JSONL: [seconds, prompt tokens, generated tokens]. */
export const trace = (requests: readonly [number, number, number][]): Trace =>
  readMooncake(
    requests.map(([t, i, o]) => JSON.stringify({ timestamp: t * 1000, input_length: i, output_length: o })).join("\n"),
    "test.jsonl",
    { seed: 1, typicalInputTokens: 1, typicalOutputTokens: 1 },
  );
