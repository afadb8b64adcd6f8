import { readFileSync } from "node:fs";
import { decide, initialState } from "../programs/autoscaler/decision";
import { LEARNING_DEFAULTS } from "../programs/autoscaler/learning";
import { policyConfig, servingModel } from "../programs/autoscaler/serving-model";
import { replay } from "./lib/simulate/replay";
import { loadStack, replayModelFor } from "./lib/simulate/run";
import { readTrace } from "./lib/simulate/traces";
const [file, scaleText, fromDay, toDay] = process.argv.slice(2);
const hub = loadStack("hybrid", undefined, {});
const sm = servingModel(hub); if (!sm.ok) throw 0;
const policy = policyConfig(hub, sm.model);
const rm = replayModelFor(hub, sm.model, policy);
const t = readTrace(readFileSync(file, "utf8"), file, "servegen", { seed: 1, typicalInputTokens: 1966, typicalOutputTokens: 131, rateScale: Number(scaleText) });
let state = initialState();
let reqAcc = 0;
const run = replay("auto", t, rm, (v) => {
  const d = decide(policy, { nowMs: v.nowMs, nodes: { ready: v.ready, starting: v.starting, draining: v.draining }, coderRequests: v.coderRequests, replicas: v.replicas, monthToDateUsd: v.monthToDateUsd }, state, LEARNING_DEFAULTS);
  const day = Math.floor(v.t / 86400);
  reqAcc += v.coderRequests;
  if (day >= Number(fromDay) && day <= Number(toDay) && (d.wantedNodes !== v.ready + v.starting || (v.coderRequests > 0 && v.ready === 0))) {
    console.log(`d${day} ${new Date(v.nowMs).toISOString().slice(11, 19)} ready=${v.ready} start=${v.starting} drain=${v.draining} req=${v.coderRequests} -> ${d.wantedNodes} ${d.reason} ${d.message.slice(0, 90)} p=${d.numbers.slotStartChance ?? ""}`);
  }
  state = d.state;
  return d.wantedNodes;
});
console.log(run.servedByGpu / run.requests, run.costUsd);
console.log("startBySlot>0.2:", state.learned.startBySlot.map((x, i) => [i, x]).filter(([, x]) => x > 0.2).map(([i, x]) => `${(i / 4).toFixed(2)}h:${x.toFixed(2)}`).join(" "));
