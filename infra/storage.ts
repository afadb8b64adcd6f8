import * as digitalocean from "@pulumi/digitalocean";
import * as pulumi from "@pulumi/pulumi";

export interface HubStorageArgs {
  readonly region: string;
  readonly cloudName: string;
  readonly stackTag: pulumi.Input<string>;
  /** One model-cache volume per GPU node slot. */
  readonly modelCacheVolumes: number;
  readonly modelCacheGiB: number;
  readonly cpuCacheGiB: number;
  /**
   * State volumes by name (the k8s tier's claims for Prometheus, the controller's ledger, ...):
   * the droplet tiers keep that state on the CPU cache volume, which on Kubernetes serves one node.
   * @default none
   */
  readonly stateVolumes?: readonly { readonly name: string; readonly sizeGiB: number }[];
}

export interface CacheVolume {
  readonly volume: digitalocean.Volume;
  /** The DigitalOcean volume name: the node's mount unit finds it by /dev/disk/by-id/scsi-0DO_Volume_<name>. */
  readonly cloudName: string;
}

/** Stable names: renaming a volume replaces it, so these never depend on tier or size. */
export const modelCacheCloudName = (cloudName: string, index: number) => `${cloudName}-model-cache-${index}`;
export const cpuCacheCloudName = (cloudName: string) => `${cloudName}-cpu-cache`;
export const stateCloudName = (cloudName: string, state: string) => `${cloudName}-state-${state}`;

/**
 * The stack's persistent volumes: model caches that outlive GPU droplets, and the CPU node's
 * cache (CPU model files, TLS certificates). They exist in every tier and with the GPU off, so no
 * tier switch or GPU toggle ever deletes one; they are billed while detached ($0.10/GiB-month).
 */
export class HubStorage extends pulumi.ComponentResource {
  public readonly modelCaches: readonly CacheVolume[];
  public readonly cpuCache: CacheVolume;
  public readonly stateVolumes: Readonly<Record<string, CacheVolume>>;

  constructor(name: string, args: HubStorageArgs, opts: pulumi.ComponentResourceOptions = {}) {
    super("inference-hub:storage:HubStorage", name, {}, opts);
    const volume = (role: string, cloudName: string, sizeGiB: number, description: string): CacheVolume => ({
      cloudName,
      volume: new digitalocean.Volume(
        `${name}-${role}`,
        {
          name: cloudName,
          region: args.region,
          size: sizeGiB,
          // Formatted once, at creation; a mount never reformats it.
          initialFilesystemType: "ext4",
          description,
          tags: [args.stackTag],
        },
        {
          parent: this,
          // Weights take hours to download; a config change or tier switch must never replace or delete them.
          protect: true,
          // `pulumi destroy` leaves the volume (and its bill) in place; delete it in the control panel when done.
          retainOnDelete: true,
        },
      ),
    });
    this.modelCaches = Array.from({ length: args.modelCacheVolumes }, (_, i) =>
      volume(
        `model-cache-${i}`,
        modelCacheCloudName(args.cloudName, i),
        args.modelCacheGiB,
        "inference hub model cache (weights, vLLM compile cache)",
      ),
    );
    this.cpuCache = volume(
      "cpu-cache",
      cpuCacheCloudName(args.cloudName),
      args.cpuCacheGiB,
      "inference hub CPU node cache (CPU models, TLS state)",
    );
    this.stateVolumes = Object.fromEntries(
      (args.stateVolumes ?? []).map((v) => [
        v.name,
        volume(`state-${v.name}`, stateCloudName(args.cloudName, v.name), v.sizeGiB, `inference hub ${v.name} state`),
      ]),
    );
    this.registerOutputs({
      modelCacheIds: this.modelCaches.map((c) => c.volume.id),
      cpuCacheId: this.cpuCache.volume.id,
    });
  }
}
