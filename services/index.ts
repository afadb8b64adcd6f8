import type { HubConfig } from "../stacks/hub-config";
import { gatekeeperSpec } from "./auth";
import { coderSpecs } from "./coder";
import { doclingSpec } from "./documents";
import { errorsSpec, gatewaySpec } from "./gateway";
import type { ServiceSpec } from "./spec";
import { sttSpec, ttsSpec } from "./speech";

/** Every container of the hub, on every node that exists now. */
export function hubServiceSpecs(hub: HubConfig): ServiceSpec[] {
  const specs: ServiceSpec[] = [gatewaySpec(hub), gatekeeperSpec(hub), errorsSpec(hub), sttSpec(hub), ttsSpec(hub), ...coderSpecs(hub)];
  if (hub.ocr.engine === "docling") specs.push(doclingSpec(hub, "ocr"));
  else if (hub.ocrCpuFallback) specs.push(doclingSpec(hub, "ocr-fallback"));
  return specs;
}
