import { VOLUME_PRICE_PER_GIB_MONTH } from "../../stacks/catalogue/storage";
import type { Io } from "./commands";
import { HubCommandError } from "./ops";

/**
 * `hub down`: tears a stack down with exactly the operations the real Pulumi engine was seen to
 * perform on this project (docs/real-engine.md, "Tearing a stack down"):
 * - keep the volumes: `pulumi destroy --exclude-protected`. Everything else goes; the volumes
 *   (protected, retainOnDelete) stay, with what they depend on (their tag, their components).
 *   `pulumi up` later brings the stack back on the same volumes.
 * - `--delete-volumes`, after the operator types the stack name: `pulumi state unprotect` on each
 *   volume and `pulumi destroy`, which takes them out of the stack but, retainOnDelete, leaves
 *   them in the account; then the cloud's own API deletes them by id (DigitalOcean's
 *   DELETE /v2/volumes/<id>, what `doctl compute volume delete` does). No state is edited by hand.
 * Nothing left to do is a no-op: no engine call at all.
 */

/** A resource as the stack's state records it (`pulumi stack export`). */
export interface StateResource {
  readonly urn: string;
  readonly type: string;
  readonly id?: string;
  readonly protect?: boolean;
  readonly retainOnDelete?: boolean;
  readonly parent?: string;
  readonly dependencies?: readonly string[];
  readonly inputs?: Readonly<Record<string, unknown>>;
}

/** The Pulumi operations `hub down` uses; the real one drives the CLI, tests record. */
export interface TeardownOps {
  readonly stackName: string;
  resources(): Promise<readonly StateResource[]>;
  destroy(options: { readonly excludeProtected: boolean }, onOutput: (line: string) => void): Promise<void>;
  unprotect(urn: string): Promise<void>;
}

/** Deletes a volume that has left the stack (retained), by id; "gone" when it no longer exists. */
export interface VolumeDeleter {
  readonly where: string;
  delete(id: string): Promise<"deleted" | "gone">;
}

/** Volume ids taken out of the stack but not yet deleted, kept across runs (a failed delete is retried by the next `hub down --delete-volumes`). */
export interface PendingVolumes {
  load(): readonly KeptVolume[];
  save(volumes: readonly KeptVolume[]): void;
}

export interface KeptVolume {
  readonly name: string;
  readonly id: string;
  readonly sizeGiB: number;
}

export const VOLUME_TYPE = "digitalocean:index/volume:Volume";
const ENGINE_TYPES = /^pulumi:(pulumi:Stack|providers:)/;

export const volumeMonthlyUsd = (sizeGiB: number): number =>
  Math.round(sizeGiB * VOLUME_PRICE_PER_GIB_MONTH * 100) / 100;

export function keptVolumes(resources: readonly StateResource[]): KeptVolume[] {
  return resources
    .filter((r) => r.type === VOLUME_TYPE)
    .map((r) => ({
      name: String(r.inputs?.name ?? r.urn.split("::").pop()),
      id: r.id ?? "",
      sizeGiB: Number(r.inputs?.size ?? 0),
    }));
}

/**
 * Whether anything but the protected resources (and what they need to stay: their dependencies,
 * their parents, the providers and the stack itself) is left: what `--exclude-protected` would destroy.
 */
export function leftToDestroy(resources: readonly StateResource[]): StateResource[] {
  const byUrn = new Map(resources.map((r) => [r.urn, r]));
  const kept = new Set<string>();
  const keep = (urn: string | undefined) => {
    if (!urn || kept.has(urn)) return;
    kept.add(urn);
    const r = byUrn.get(urn);
    keep(r?.parent);
    for (const d of r?.dependencies ?? []) keep(d);
  };
  for (const r of resources) if (r.protect) keep(r.urn);
  return resources.filter((r) => !kept.has(r.urn) && !ENGINE_TYPES.test(r.type));
}

export interface DownOptions {
  readonly deleteVolumes: boolean;
  /** What the operator typed (or --confirm gave) for `--delete-volumes`. */
  readonly typedStackName?: string;
}

function describeKept(volumes: readonly KeptVolume[], io: Io): void {
  if (volumes.length === 0) return;
  const total = volumes.reduce((s, v) => s + v.sizeGiB, 0);
  io.out(
    `kept: ${volumes.length} volume(s), ${total} GiB, $${volumeMonthlyUsd(total).toFixed(2)}/month while they exist ($${VOLUME_PRICE_PER_GIB_MONTH.toFixed(2)}/GiB-month, billed detached):`,
  );
  for (const v of volumes)
    io.out(`  ${v.name} (${v.id || "id unknown"}): ${v.sizeGiB} GiB, $${volumeMonthlyUsd(v.sizeGiB).toFixed(2)}/month`);
  io.out(`bring the stack back on them with: pulumi up; delete them with: npm run hub -- down --delete-volumes`);
}

export async function hubDown(
  ops: TeardownOps,
  io: Io,
  options: DownOptions,
  cloud?: { volumes: VolumeDeleter; pending: PendingVolumes },
): Promise<{ ran: string[] }> {
  const ran: string[] = [];
  const out = (line: string) => io.out(`  | ${line.trimEnd()}`);
  if (options.deleteVolumes && options.typedStackName !== ops.stackName) {
    throw new HubCommandError(
      `--delete-volumes deletes the model cache and every volume of stack ${ops.stackName} for good; type the stack name to confirm (or pass --confirm ${ops.stackName}). ${options.typedStackName === undefined ? "Nothing was typed" : `"${options.typedStackName}" is not ${ops.stackName}`}: nothing was changed.`,
    );
  }
  let resources = await ops.resources();
  const pending = cloud?.pending.load() ?? [];
  if (resources.length === 0 && pending.length === 0) {
    io.out(`${ops.stackName}: nothing is deployed; nothing to do.`);
    return { ran };
  }
  const rest = leftToDestroy(resources);
  if (rest.length > 0) {
    io.out(`${ops.stackName}: destroying everything but the volumes (pulumi destroy --exclude-protected)`);
    await ops.destroy({ excludeProtected: true }, out);
    ran.push("destroy --exclude-protected");
    resources = await ops.resources();
  } else if (!options.deleteVolumes) {
    io.out(`${ops.stackName}: already down; only the volumes remain.`);
  }
  const volumes = keptVolumes(resources);
  if (!options.deleteVolumes) {
    describeKept(volumes, io);
    return { ran };
  }
  if (volumes.length > 0 && !cloud)
    throw new HubCommandError(
      "this stack's volumes can only be deleted through the cloud's API, which this command was not given",
    );
  // Remembered before they leave the stack: a failed delete below is retried by the next run.
  const toDelete = [...pending.filter((p) => !volumes.some((v) => v.id === p.id)), ...volumes];
  cloud?.pending.save(toDelete);
  for (const v of resources.filter((r) => r.type === VOLUME_TYPE)) {
    await ops.unprotect(v.urn);
    ran.push(`state unprotect ${v.urn}`);
  }
  if (resources.some((r) => !ENGINE_TYPES.test(r.type))) {
    io.out(`${ops.stackName}: removing the volumes and what remains from the stack (pulumi destroy)`);
    await ops.destroy({ excludeProtected: false }, out);
    ran.push("destroy");
  }
  const left: KeptVolume[] = [];
  for (const v of toDelete) {
    try {
      const outcome = await cloud!.volumes.delete(v.id);
      ran.push(`delete volume ${v.id}`);
      io.out(`  ${v.name} (${v.id}, ${v.sizeGiB} GiB): ${outcome === "deleted" ? "deleted" : "already gone"}`);
    } catch (error) {
      left.push(v);
      io.out(`  ${v.name} (${v.id}): NOT deleted: ${(error as Error).message}`);
    }
  }
  cloud?.pending.save(left);
  if (left.length)
    throw new HubCommandError(
      `${left.length} volume(s) left the stack but could not be deleted in ${cloud!.volumes.where}; run the same command again to retry, or delete them in the control panel (ids ${left.map((v) => v.id).join(", ")})`,
    );
  io.out(`${ops.stackName}: everything is deleted, volumes included; nothing of it is billed any more.`);
  return { ran };
}
