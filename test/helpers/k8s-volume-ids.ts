import type { VolumeIds } from "../../infra/kubernetes/storage";
import type { HubConfig } from "../../stacks/hub-config";

/** Made-up DigitalOcean volume ids (UUID-shaped) for every volume a k8s stack binds: what a deploy knows once they exist. */
export function standInVolumeIds(hub: HubConfig): VolumeIds<string> {
  const id = (n: number) => `${String(n).padStart(8, "0")}-aaaa-bbbb-cccc-000000000000`;
  return {
    modelCaches: Array.from({ length: hub.modelCache.volumes }, (_, i) => id(10 + i)),
    cpuCache: id(1),
    state: Object.fromEntries((hub.kubernetes?.statePvcs ?? []).map((p, i) => [p.name, id(100 + i)])),
  };
}
