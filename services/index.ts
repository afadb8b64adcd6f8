import type { HubConfig } from "../stacks/hub-config";
import { gatekeeperSpec } from "./auth";
import { coderSpecs } from "./coder";
import { documentSpecs } from "./documents";
import { errorsSpec, gatewaySpec } from "./gateway";
import { monitoringSpecs } from "./monitoring";
import type { ServiceSpec } from "./spec";
import { grafanaSpec } from "./grafana";
import { sttSpec, ttsSpec } from "./speech";
import { autoscalerSpec } from "./autoscaler";
import { sandboxFrontSpec } from "./sandbox";
import { embeddingsSpecs } from "./embeddings";

/** Every container of the hub, on every node that exists now. */
export function hubServiceSpecs(hub: HubConfig): ServiceSpec[] {
  const autoscaler = autoscalerSpec(hub);
  const sandboxFront = sandboxFrontSpec(hub);
  return [
    gatewaySpec(hub),
    gatekeeperSpec(hub),
    errorsSpec(hub),
    ...(autoscaler ? [autoscaler] : []),
    ...(sandboxFront ? [sandboxFront] : []),
    sttSpec(hub),
    ttsSpec(hub),
    ...coderSpecs(hub),
    ...documentSpecs(hub),
    ...embeddingsSpecs(hub),
    ...monitoringSpecs(hub),
    ...(hub.grafana ? [grafanaSpec(hub)] : []),
  ];
}
