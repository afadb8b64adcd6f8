import { DOKS_STORAGE } from "../../stacks/catalogue/kubernetes";
import type { HubConfig, KubernetesPlan } from "../../stacks/hub-config";
import { KubeObject, labelsFor, NAMESPACE } from "./model";
import { CPU_CACHE_CLAIM, GPU_WORKLOAD, stateClaimName } from "./workloads";

/**
 * The stack's volumes on Kubernetes. The model caches and the CPU cache are the same DigitalOcean
 * volumes every tier declares (infra/storage.ts HubStorage: protected, kept on destroy), so a move
 * from hybrid to k8s keeps the weights it downloaded: each is bound to its claim by id with a
 * static PersistentVolume, as the CSI driver's own example does (FACTS.md "DOKS": DigitalOcean's
 * how-to says volumes made outside Kubernetes cannot be used, so this is flagged ⚠ in the plan).
 * The driver is told never to format them (`noformat`): a volume that cannot be bound leaves its
 * pod Pending and its data untouched, never an empty disk in its place. The StatefulSet finds
 * the claims by the names it would give them (model-cache-coder-<i>).
 */

/** The StatefulSet's claim name for replica `i` (`<template>-<statefulset>-<ordinal>`). */
export const modelCacheClaim = (i: number): string => `${GPU_WORKLOAD.claim}-${GPU_WORKLOAD.statefulSet}-${i}`;
/** PersistentVolumes are cluster-wide: prefixed with the namespace. */
export const modelCacheVolume = (i: number): string => `${NAMESPACE}-${GPU_WORKLOAD.claim}-${i}`;
export const CPU_CACHE_VOLUME = `${NAMESPACE}-${CPU_CACHE_CLAIM}`;

/** The DigitalOcean volume ids (known at deploy time; any stand-in in tests). */
export interface VolumeIds<Id> {
  readonly modelCaches: readonly Id[];
  readonly cpuCache: Id;
  /** By state claim (plan.statePvcs): Prometheus, Alertmanager, Grafana, the controller, ACME. */
  readonly state: Readonly<Record<string, Id>>;
}

function staticPair(
  pvName: string,
  claimName: string,
  sizeGiB: number,
  volumeId: unknown,
  component: string,
): KubeObject[] {
  const storage = `${sizeGiB}Gi`;
  return [
    {
      apiVersion: "v1",
      kind: "PersistentVolume",
      metadata: { name: pvName, labels: labelsFor(pvName, component) },
      spec: {
        capacity: { storage },
        accessModes: ["ReadWriteOnce"],
        // Kept when its claim goes: the volume (and its data) belong to the stack, not the cluster.
        persistentVolumeReclaimPolicy: "Retain",
        storageClassName: DOKS_STORAGE.retainClass,
        // Reserved for its one claim, so no other claim of the class can take it.
        claimRef: { namespace: NAMESPACE, name: claimName },
        csi: {
          driver: DOKS_STORAGE.csiDriver,
          volumeHandle: volumeId,
          fsType: "ext4",
          volumeAttributes: { [DOKS_STORAGE.noFormatAttribute]: "true" },
        },
      },
    },
    {
      apiVersion: "v1",
      kind: "PersistentVolumeClaim",
      metadata: { name: claimName, namespace: NAMESPACE, labels: labelsFor(claimName, component) },
      spec: {
        accessModes: ["ReadWriteOnce"],
        storageClassName: DOKS_STORAGE.retainClass,
        volumeName: pvName,
        resources: { requests: { storage } },
      },
    },
  ];
}

export function storageObjects<Id>(hub: HubConfig, plan: KubernetesPlan, ids: VolumeIds<Id>): KubeObject[] {
  if (ids.modelCaches.length !== hub.modelCache.volumes)
    throw new Error(`k8s: ${ids.modelCaches.length} model-cache volume ids for ${hub.modelCache.volumes} volumes`);
  if (hub.modelCache.volumes < plan.gpuPool.maxNodes)
    throw new Error(
      `k8s: ${hub.modelCache.volumes} model-cache volumes for up to ${plan.gpuPool.maxNodes} GPU replicas`,
    );
  const objects: KubeObject[] = [];
  ids.modelCaches.forEach((id, i) =>
    objects.push(...staticPair(modelCacheVolume(i), modelCacheClaim(i), hub.modelCache.sizeGiB, id, "model-cache")),
  );
  objects.push(...staticPair(CPU_CACHE_VOLUME, CPU_CACHE_CLAIM, hub.cpuNode.cacheGiB, ids.cpuCache, "cpu-cache"));
  // State the droplet tiers kept on the CPU cache volume, now a volume of the stack each (a
  // ReadWriteOnce volume serves one node at a time), bound the same way: `hub down` keeps and
  // lists them, the next `pulumi up` finds the same data (the month's GPU spend included).
  for (const pvc of plan.statePvcs) {
    const id = ids.state[pvc.name];
    if (id === undefined) throw new Error(`k8s: no volume id for the ${pvc.name} state claim`);
    objects.push(
      ...staticPair(`${NAMESPACE}-${stateClaimName(pvc.name)}`, stateClaimName(pvc.name), pvc.sizeGiB, id, "state"),
    );
  }
  return objects;
}
