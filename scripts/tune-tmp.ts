// scratch tuning harness (not committed)
import { readFileSync } from "node:fs";
import { LEARNING_DEFAULTS, LearningTuning } from "../programs/autoscaler/learning";
import { policyConfig, servingModel } from "../programs/autoscaler/serving-model";
import { oracle } from "./lib/simulate/oracle";
import { decisionController, reactiveConfig } from "./lib/simulate/policies";
import { replay } from "./lib/simulate/replay";
import { loadStack, replayModelFor } from "./lib/simulate/run";
import { readTrace } from "./lib/simulate/traces";

const spec = JSON.parse(process.argv[2] ?? "{}");
const hub = loadStack("hybrid", undefined, spec.sets ?? {});
const sm = servingModel(hub, spec.serving ?? {}); if (!sm.ok) throw 0;
const policy = { ...policyConfig(hub, sm.model), ...spec.policy };
const rm = replayModelFor(hub, sm.model, policy);
const tuning: LearningTuning = { ...LEARNING_DEFAULTS, ...spec.tuning };
const files: string[] = spec.files;
const mu = rm.replicaTokensPerSecond / (1966 + 131);
let n = 0, met = 0, metR = 0, sumA = 0, sumO = 0, sumR = 0, shA = 0, shR = 0;
const lines: string[] = [];
for (const file of files) {
  const text = readFileSync(file, "utf8");
  const rps = text.split("\n").filter(Boolean).map((l) => Number(l.split(",")[1])).filter((x) => x > 0).sort((a, b) => a - b);
  const p95 = rps[Math.floor(rps.length * 0.95)] ?? 1;
  const scale = spec.scale ?? Math.min(1, (0.5 * mu) / p95);
  const t = readTrace(text, file, "servegen", { seed: spec.seed ?? 1, typicalInputTokens: 1966, typicalOutputTokens: 131, rateScale: scale });
  const o = oracle(t, rm);
  const a = replay("autoscaler", t, rm, decisionController(policy, tuning));
  const r = spec.noReactive ? a : replay("reactive", t, rm, decisionController(reactiveConfig(policy)));
  const sh = (p: { servedByGpu: number; requests: number }) => p.servedByGpu / p.requests;
  const ra = a.costUsd / o.costUsd, rr = r.costUsd / o.costUsd;
  n++; if (ra <= 1.2 && sh(a) >= 0.9) met++; if (rr <= 1.2 && sh(r) >= 0.9) metR++;
  sumA += a.costUsd; sumO += o.costUsd; sumR += r.costUsd; shA += sh(a); shR += sh(r);
  lines.push(`${file.split("/").pop()!.padEnd(36)} x${scale.toFixed(3)} n=${String(t.arrivals.length).padStart(7)} oracle $${o.costUsd.toFixed(0).padStart(4)} ${(sh(o) * 100).toFixed(1)}% | reactive ${rr.toFixed(2)} ${(sh(r) * 100).toFixed(1)}% | auto ${ra.toFixed(2)} ${(sh(a) * 100).toFixed(1)}%`);
}
if (spec.verbose) console.log(lines.join("\n"));
console.log(`${JSON.stringify(spec.tuning ?? {})} traces ${n}: auto met ${met} cost ${(sumA / sumO).toFixed(3)} mean share ${(shA / n * 100).toFixed(1)}% | reactive met ${metR} cost ${(sumR / sumO).toFixed(3)} share ${(shR / n * 100).toFixed(1)}%`);
