import { lookup } from "node:dns/promises";
import type { ControllerFile } from "./contract";

/**
 * The k8s tier: the config file names a replica slot per StatefulSet ordinal (coder-<i> behind the
 * headless Service, which publishes pods that are not ready yet). A slot counts as deployed, for
 * the ledger and the decision, only while its pod's name resolves: the pod has a node. The GPU
 * node itself existed a little before (the ledger's createSeconds) and lingers a little after
 * (destroySeconds covers the cluster autoscaler's unneeded time).
 */

/** Whether a replica's host has an address now. */
export type HostResolver = (host: string) => Promise<boolean>;

export const dnsResolver: HostResolver = async (host) => {
  try {
    await lookup(host);
    return true;
  } catch {
    return false;
  }
};

/** The file with only the replicas whose pods exist, when the file says replicas are slots; else as it is. */
export async function withPresentReplicas(
  file: ControllerFile,
  resolve: HostResolver = dnsResolver,
): Promise<ControllerFile> {
  if (!file.kubernetes?.replicaSlots) return file;
  const present = await Promise.all(
    file.replicas.map(async (r) => ((await resolve(new URL(r.healthUrl).hostname)) ? r : undefined)),
  );
  return { ...file, replicas: present.filter((r): r is ControllerFile["replicas"][number] => r !== undefined) };
}
