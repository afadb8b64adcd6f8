import * as fs from "node:fs";
import { servingImage } from "../../services/gpu-image";
import * as os from "node:os";
import * as path from "node:path";
import { decide, initialState } from "../../programs/autoscaler/decision";
import { pinFromHub } from "../../programs/autoscaler/controller/contract";
import type { ControllerStatus } from "../../programs/autoscaler/controller/controller";
import { CounterDeltas, type Fetcher } from "../../programs/autoscaler/controller/signals";
import { policyConfig, servingModel } from "../../programs/autoscaler/serving-model";
import type { AutoscalerState, Decision as ScalingDecision } from "../../programs/autoscaler/types";
import type { Io } from "./commands";
import { scaleCommand } from "./commands";
import { resolveConfig } from "./decisions";
import { HubCommandError, type StackOps } from "./ops";

/**
 * `npm run hub -- autoscale [--watch]`: the controller's decision, run where the credentials live
 * (an operator's machine, a CI runner), acting through the hub's safe path (set config, preview,
 * refuse any volume delete or replace, up). Its signals are what an operator can reach: the
 * gateway's /admin/autoscaler with an admin key (the controller's view: the demand counters it read
 * from the gatekeeper, vLLM's readings and the ledger). Without it it holds, as the controller does.
 */

export interface OperatorReading {
  /** The demand counters (allowed `llm` requests, programs/autoscaler/demand.ts); undefined when unread. */
  readonly counters?: ReadonlyMap<string, number>;
  /** The controller's view; undefined when /admin/autoscaler could not be read. */
  readonly status?: ControllerStatus;
}

export interface OperatorSignals {
  read(): Promise<OperatorReading>;
}

/** The gateway's admin routes, with a key that has the admin scope. */
export function gatewaySignals(baseUrl: string, adminKey: string, fetcher: Fetcher): OperatorSignals {
  const origin = baseUrl.replace(/\/v1\/?$/, "");
  const get = async (p: string) => {
    try {
      const res = await fetcher(`${origin}${p}`, {
        headers: { authorization: `Bearer ${adminKey}` },
        timeoutMs: 10_000,
      });
      return res.status === 200 ? res.text : undefined;
    } catch {
      return undefined;
    }
  };
  return {
    read: async () => {
      const status = await get("/admin/autoscaler");
      let parsed: ControllerStatus | undefined;
      try {
        parsed = status ? (JSON.parse(status) as ControllerStatus) : undefined;
      } catch {
        parsed = undefined;
      }
      const counters = parsed?.demandCounters;
      return {
        counters: counters
          ? new Map(Object.entries(counters).filter(([, v]) => typeof v === "number" && Number.isFinite(v)))
          : undefined,
        status: parsed,
      };
    },
  };
}

/** The operator's own decision state (learned traffic, counter baseline) for a stack, in ~/.inference-hub/autoscale/. */
export interface AutoscaleMemory {
  load(): { state: AutoscalerState; counters?: Record<string, number> } | undefined;
  save(value: { state: AutoscalerState; counters?: Record<string, number> }): void;
}

export function fileMemory(
  stack: string,
  dir = path.join(os.homedir(), ".inference-hub", "autoscale"),
): AutoscaleMemory {
  const file = path.join(dir, `${stack}.json`);
  return {
    load: () => {
      try {
        return JSON.parse(fs.readFileSync(file, "utf8")) as {
          state: AutoscalerState;
          counters?: Record<string, number>;
        };
      } catch {
        return undefined;
      }
    },
    save: (value) => {
      fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
      fs.writeFileSync(`${file}.tmp`, JSON.stringify(value));
      fs.renameSync(`${file}.tmp`, file);
    },
  };
}

export interface AutoscaleDeps {
  readonly ops: StackOps;
  readonly signals: OperatorSignals;
  readonly memory: AutoscaleMemory;
  readonly io: Io;
  /** Act even though the controller on the node acts itself. @default false */
  readonly force?: boolean;
}

export interface AutoscaleOutcome {
  readonly decision: ScalingDecision;
  readonly deployedNodes: number;
  readonly applied: boolean;
}

/** One tick, where the credentials are: read, decide, and apply the wanted count through preview + up. */
export async function autoscaleOnce(deps: AutoscaleDeps): Promise<AutoscaleOutcome> {
  const { ops, io } = deps;
  const config = await ops.getConfig();
  const resolved = resolveConfig(config);
  if (!resolved.ok) throw new HubCommandError(`the stack's config is refused:\n  ${resolved.reason}`);
  const hub = resolved.hub;
  const model = servingModel(hub, { image: servingImage(hub) });
  if (!model.ok) throw new HubCommandError(model.reason);
  const policy = policyConfig(hub, model.model);

  const outputs = await ops.outputs();
  const addresses = outputs.nodeAddresses?.value;
  const deployed =
    typeof addresses === "object" && addresses !== null
      ? Object.keys(addresses).filter((n) => n.startsWith("gpu-")).length
      : 0;

  const reading = await deps.signals.read();
  const memory = deps.memory.load();
  const deltas = new CounterDeltas(memory?.counters ? new Map(Object.entries(memory.counters)) : undefined);
  const coderRequests = reading.counters ? deltas.next(reading.counters) : undefined;
  const status = reading.status;
  const ready = status ? status.replicas.filter((r) => r.healthy) : [];
  const readings = status && ready.every((r) => r.reading) ? ready.map((r) => r.reading!) : undefined;
  const now = io.now();
  // No controller view: no vLLM queue and no ledger, so nothing can be decided safely.
  const input = {
    nowMs: now,
    nodes: {
      ready: ready.length,
      starting: Math.max(0, deployed - ready.length),
      draining: status?.nodes.draining ?? 0,
    },
    coderRequests: status ? coderRequests : undefined,
    replicas: readings,
    monthToDateUsd: status?.ledger.monthToDateUsd ?? 0,
    pin: pinFromHub(hub),
  };
  const previous = memory?.state ?? { ...initialState(deployed), lastRequestMs: now };
  const decision = decide(policy, input, previous);
  deps.memory.save({ state: decision.state, counters: deltas.snapshot() });
  io.out(`${ops.stackName}: ${decision.reason}: ${decision.message}`);
  if (!status) io.out("  (the controller's view at /admin/autoscaler could not be read: holding)");

  if (decision.reason === "hold-metrics-missing" || decision.wantedNodes === deployed)
    return { decision, deployedNodes: deployed, applied: false };
  if (status?.mode === "act" && !deps.force) {
    io.out(
      `  the controller on the node acts itself (dispatch to the pipeline); not applying ${decision.wantedNodes} here. --force to act anyway.`,
    );
    return { decision, deployedNodes: deployed, applied: false };
  }
  io.out(`  scaling ${deployed} → ${decision.wantedNodes} GPU node(s)`);
  // The same path the autoscale workflow runs (gpu scale): range, pin and volume checks included.
  await scaleCommand(ops, { nodes: decision.wantedNodes, reason: decision.reason }, io, new Date(now));
  return { decision, deployedNodes: deployed, applied: true };
}

/** `--watch`: a tick every `seconds` until stopped; a failed tick is reported and the next one tried. */
export async function autoscaleWatch(
  deps: AutoscaleDeps,
  seconds: number,
  shouldStop: () => boolean = () => false,
): Promise<void> {
  while (!shouldStop()) {
    try {
      await autoscaleOnce(deps);
    } catch (err) {
      deps.io.out(`${deps.ops.stackName}: tick failed: ${(err as Error).message}`);
    }
    await new Promise((r) => setTimeout(r, seconds * 1000));
  }
}
