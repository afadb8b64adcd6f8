import { COLD_START } from "../stacks/catalogue/serving";
import { servingImage } from "./gpu-image";
import type { HubConfig } from "../stacks/hub-config";
import { CPU_NODE_NAME } from "../stacks/hub-config";
import { PROJECT } from "../stacks/settings";
import { fixedMonthlyUsd, policyConfig, servingModel } from "../programs/autoscaler/serving-model";
import { METRICS_PATH } from "../programs/gatekeeper/protocol";
import { GATEKEEPER_CONTAINER, GATEKEEPER_PORT } from "./auth";
import {
  CONTAINER_PATHS,
  CONTROLLER_PORT,
  ControllerFile,
  DISPATCH_WORKFLOW,
  ENV,
  filePolicy,
  HEALTH_PATH,
  OFF_ANSWER_PORT,
  pinFromHub,
} from "../programs/autoscaler/controller/contract";
import { NODE_IMAGE } from "./images";
import { CPU_CACHE_MOUNT } from "./node-setup";
import { AUTOSCALER_CONTAINER, autoscalerRuns, holdingRuns, SERVICE_PORTS, type Route } from "./routes";

export { AUTOSCALER_CONTAINER, autoscalerAnswersOff, autoscalerRuns } from "./routes";
import type { ServiceSpec } from "./spec";

/**
 * The autoscaling controller (programs/autoscaler/controller/) on the CPU node: it counts the coder
 * requests the gatekeeper allowed (programs/autoscaler/demand.ts) and the GPU replicas' queues over the VPC, and asks the deploy
 * pipeline for the wanted node count. Deployed wherever a GPU coder runs (gpu, hybrid, multigpu)
 * unless `autoscaler` is false; in multigpu, where gpuMinNodes = gpuMaxNodes = 1 by default, it
 * holds the node and still keeps the ledger, the spend metrics and the off-state answer.
 */
const ROOT = `${CPU_CACHE_MOUNT}/autoscaler`;
/** Host paths: the bundle, the rendered config (rewritten by every deploy, re-read every tick), and the learned state and ledger. */
export const AUTOSCALER_DIRS = { app: `${ROOT}/app`, config: `${ROOT}/config`, state: `${ROOT}/state` } as const;
export const AUTOSCALER_FILES = {
  bundle: `${AUTOSCALER_DIRS.app}/autoscaler.js`,
  config: `${AUTOSCALER_DIRS.config}/autoscaler.json`,
} as const;

export function autoscalerSpec(hub: HubConfig): ServiceSpec | undefined {
  if (!autoscalerRuns(hub)) return undefined;
  return {
    name: AUTOSCALER_CONTAINER,
    role: "autoscaler",
    program: "autoscaler",
    node: CPU_NODE_NAME,
    image: NODE_IMAGE,
    command: ["node", CONTAINER_PATHS.bundle],
    env: {
      NODE_ENV: "production",
      [ENV.configFile]: CONTAINER_PATHS.configFile,
      [ENV.stateDir]: CONTAINER_PATHS.stateDir,
      [ENV.port]: String(CONTROLLER_PORT),
      [ENV.offPort]: String(OFF_ANSWER_PORT),
    },
    // The only credentials on the node for scaling: a token that can start one workflow (or create a deployment of this one stack), and an optional read-only billing token.
    secretEnv:
      hub.settings.autoscalerActuator === "pulumi-deployments"
        ? { [ENV.pulumiToken]: "autoscalerPulumiToken", [ENV.billingToken]: "autoscalerBillingToken" }
        : { [ENV.dispatchToken]: "autoscalerDispatchToken", [ENV.billingToken]: "autoscalerBillingToken" },
    port: CONTROLLER_PORT,
    mounts: [
      { hostPath: AUTOSCALER_DIRS.app, containerPath: CONTAINER_PATHS.app, readOnly: true },
      { hostPath: AUTOSCALER_DIRS.config, containerPath: CONTAINER_PATHS.configDir, readOnly: true },
      { hostPath: AUTOSCALER_DIRS.state, containerPath: CONTAINER_PATHS.stateDir },
    ],
    memoryLimitMiB: 128,
    health: {
      path: HEALTH_PATH,
      // node:alpine has no curl; Node 22's fetch does the probe.
      test: [
        "CMD",
        "node",
        "-e",
        `fetch('http://127.0.0.1:${CONTROLLER_PORT}${HEALTH_PATH}').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))`,
      ],
      intervalSeconds: 15,
      timeoutSeconds: 5,
      startPeriodSeconds: 20,
      retries: 3,
    },
  };
}

export interface AutoscalerFileInputs {
  readonly stack: string;
  /** The Pulumi organization the stack lives in (pulumi.getOrganization()), for the pulumi-deployments actuator. */
  readonly organization: string;
  /** Private addresses of the GPU nodes this deploy runs, by node name. */
  readonly privateIps: Readonly<Record<string, string>>;
  readonly billingCrossCheck: boolean;
}

/** The controller's config file, from HubConfig, the route table and the deploy's addresses. */
export function autoscalerConfig(
  hub: HubConfig,
  routes: readonly Route[],
  inputs: AutoscalerFileInputs,
): ControllerFile {
  const model = servingModel(hub, { image: servingImage(hub) });
  if (!model.ok) throw new Error(`autoscaler: ${model.reason}`);
  const coder = routes.find((r) => r.name === "coder");
  if (!coder) throw new Error("autoscaler: the route table has no coder route");
  const replicas = coder.primary.map((b) => {
    if (b.address.kind !== "vpc")
      throw new Error(`autoscaler: coder replica ${b.service} on ${b.node} is not a GPU node`);
    const ip = inputs.privateIps[b.address.node];
    if (!ip)
      throw new Error(
        `autoscaler: no private IP for ${b.address.node} (given: ${Object.keys(inputs.privateIps).join(", ") || "none"})`,
      );
    return {
      node: b.address.node,
      metricsUrl: `http://${ip}:${b.port}/metrics`,
      healthUrl: `http://${ip}:${b.port}${b.healthPath}`,
    };
  });
  const s = hub.settings;
  const pin = pinFromHub(hub);
  return {
    version: 1,
    stack: inputs.stack,
    tier: hub.tier as ControllerFile["tier"],
    tickSeconds: 15,
    policy: filePolicy(policyConfig(hub, model.model), s.gpuWindows),
    timing: {
      pipelineSeconds: model.model.coldStart.pipelineSeconds,
      createSeconds: COLD_START.dropletCreate.value,
      destroySeconds: model.model.coldStart.destroySeconds,
    },
    // The gatekeeper on the same Docker network, by container name: its /metrics answers callers there only.
    demand: { metricsUrl: `http://${GATEKEEPER_CONTAINER}:${GATEKEEPER_PORT}${METRICS_PATH}` },
    replicas,
    fallback: hub.fallbackCoder !== undefined,
    ...(holdingRuns(hub)
      ? {
          holding: {
            maxSeconds: s.gpuHoldMaxSeconds,
            maxRequests: s.gpuHoldMaxRequests,
            maxPerKey: s.gpuHoldMaxPerKey,
            fallbackUrl: hub.fallbackCoder ? `http://coder-fallback:${SERVICE_PORTS.llamaCpp}` : null,
          },
        }
      : {}),
    pin: pin ? { nodes: pin.nodes, untilMs: pin.untilMs } : null,
    dispatch:
      s.autoscalerActuator === "pulumi-deployments"
        ? { kind: "pulumi-deployments", organization: inputs.organization, project: PROJECT, stack: inputs.stack }
        : s.autoscalerDispatchRepo
          ? { repo: s.autoscalerDispatchRepo, ref: s.autoscalerDispatchRef, workflow: DISPATCH_WORKFLOW }
          : null,
    billingCrossCheck: inputs.billingCrossCheck,
    fixedMonthlyUsd: fixedMonthlyUsd(hub),
  };
}
