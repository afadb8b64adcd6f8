import type { HubConfig } from "../../stacks/hub-config";
import { PROJECT } from "../../stacks/settings";
import {
  gpuBootImage,
  gpuImageInputs,
  gpuImageName,
  IMAGE_BUILD_TAG,
  renderBakeCloudConfig,
} from "../../services/gpu-image";
import { SNAPSHOT_PRICE_PER_GIB_MONTH, gbToGiB } from "../../stacks/catalogue/storage";
import type { Io } from "./commands";
import { resolveConfig, StackConfig } from "./decisions";
import { HubCommandError, StackOps } from "./ops";

/**
 * `npm run hub -- gpu image build|status`: the baked GPU image (services/gpu-image.ts). The build
 * creates a short-lived GPU droplet from DigitalOcean's base image with the set-up's cloud-config,
 * waits until it has powered itself off (it does so only once everything is installed and pulled),
 * snapshots it, and destroys the droplet whatever happened. The stack then names the snapshot
 * (gpuSnapshotId, gpuSnapshotName); an existing snapshot of the same name is reused.
 */

export interface SnapshotInfo {
  readonly id: string;
  readonly name: string;
  readonly regions: readonly string[];
  readonly sizeGB: number;
}

export type DropletState = "new" | "active" | "off" | "archive" | "gone";

/** The DigitalOcean operations the build needs; the REST implementation below, or a recording one in tests. */
export interface ImageOps {
  findSnapshot(name: string): Promise<SnapshotInfo | undefined>;
  createDroplet(spec: {
    readonly name: string;
    readonly region: string;
    readonly size: string;
    readonly image: string;
    readonly userData: string;
    readonly tags: readonly string[];
    readonly sshKeys: readonly string[];
  }): Promise<number>;
  dropletState(id: number): Promise<DropletState>;
  /** Starts a snapshot action; resolves with its action id. */
  snapshot(dropletId: number, name: string): Promise<number>;
  actionState(actionId: number): Promise<"in-progress" | "completed" | "errored">;
  destroyDroplet(id: number): Promise<void>;
  sleep(ms: number): Promise<void>;
}

export interface BuildLimits {
  /** Until the droplet has installed, pulled and powered off. */
  readonly setupMs: number;
  readonly snapshotMs: number;
  readonly pollMs: number;
}
export const BUILD_LIMITS: BuildLimits = { setupMs: 45 * 60_000, snapshotMs: 90 * 60_000, pollMs: 15_000 };

const SNAPSHOT_ID = `${PROJECT}:gpuSnapshotId`;
const SNAPSHOT_NAME = `${PROJECT}:gpuSnapshotName`;

function hubOf(config: StackConfig, nowMs: number): HubConfig {
  const resolved = resolveConfig(config, {}, nowMs);
  if (!resolved.ok) throw new HubCommandError(`the stack's config is refused:\n  ${resolved.reason}`);
  if (!resolved.hub.gpu)
    throw new HubCommandError(`the ${resolved.hub.tier} tier runs no GPU node: there is no GPU image to build`);
  return resolved.hub;
}

const monthly = (gb: number) => `$${(gbToGiB(gb) * SNAPSHOT_PRICE_PER_GIB_MONTH).toFixed(2)}/month`;

export async function gpuImageStatus(stack: StackOps, ops: ImageOps, io: Io): Promise<void> {
  const hub = hubOf(await stack.getConfig(), io.now());
  const boot = gpuBootImage(hub)!;
  const name = gpuImageName(gpuImageInputs(hub)!);
  const found = await ops.findSnapshot(name);
  io.out(
    `${stack.stackName}: GPU nodes boot ${boot.kind === "baked" ? `the baked image ${boot.name} (snapshot ${boot.image})` : `the base image ${boot.image}`}`,
  );
  if (boot.kind !== "baked") io.out(`  ${boot.why}`);
  io.out(
    found
      ? `  ${name} exists (snapshot ${found.id}, ${found.sizeGB} GB, ${monthly(found.sizeGB)}, regions ${found.regions.join(", ")})`
      : `  ${name} has not been built`,
  );
}

/** Polls `state` until it returns a value `done` accepts, or the deadline passes (then undefined). */
async function pollUntil<T>(
  ops: ImageOps,
  io: Io,
  limitMs: number,
  pollMs: number,
  state: () => Promise<T>,
  done: (value: T) => boolean,
): Promise<T | undefined> {
  const until = io.now() + limitMs;
  for (;;) {
    const value = await state();
    if (done(value)) return value;
    if (io.now() >= until) return undefined;
    await ops.sleep(pollMs);
  }
}

export async function buildGpuImage(
  stack: StackOps,
  ops: ImageOps,
  io: Io,
  options: { readonly keepOnFailure?: boolean; readonly limits?: BuildLimits } = {},
): Promise<SnapshotInfo> {
  const limits = options.limits ?? BUILD_LIMITS;
  const config = await stack.getConfig();
  const hub = hubOf(config, io.now());
  const inputs = gpuImageInputs(hub)!;
  const name = gpuImageName(inputs);
  const current = config[SNAPSHOT_NAME]?.value;

  let snapshot = await ops.findSnapshot(name);
  if (snapshot && !snapshot.regions.includes(hub.region))
    throw new HubCommandError(
      `snapshot ${name} (${snapshot.id}) exists, but in ${snapshot.regions.join(", ")}, not ${hub.region}: transfer it (doctl compute image-action transfer ${snapshot.id} --region ${hub.region}) or delete it and build again`,
    );
  if (snapshot) {
    io.out(
      `${stack.stackName}: ${name} exists already (snapshot ${snapshot.id}, ${snapshot.sizeGB} GB); reusing it, nothing is built`,
    );
  } else {
    io.out(
      `${stack.stackName}: building ${name} in ${hub.region} on a ${inputs.size} droplet from ${inputs.baseImage}: ${inputs.images.join(", ")}`,
    );
    const droplet = await ops.createDroplet({
      name: `${name}-build`,
      region: hub.region,
      size: inputs.size,
      image: inputs.baseImage,
      userData: renderBakeCloudConfig(inputs.vendor, inputs.images),
      tags: [IMAGE_BUILD_TAG],
      sshKeys: hub.settings.sshKeyFingerprints,
    });
    io.out(
      `  build droplet ${droplet} created; it installs, pulls, then powers itself off (billed per second while it runs)`,
    );
    let failed = true;
    try {
      const state = await pollUntil(
        ops,
        io,
        limits.setupMs,
        limits.pollMs,
        () => ops.dropletState(droplet),
        (s) => s === "off" || s === "gone" || s === "archive",
      );
      if (state !== "off") {
        throw new HubCommandError(
          state === undefined
            ? `the build droplet ${droplet} did not finish its set-up within ${limits.setupMs / 60_000} min (it powers off only when everything is installed and pulled): a package or an image pull failed, or the registry was slow. Run again with --keep-on-failure and read /var/log/cloud-init-output.log on it over SSH`
            : `the build droplet ${droplet} went away (${state}) during its set-up`,
        );
      }
      io.out("  set-up finished; taking the snapshot");
      const action = await ops.snapshot(droplet, name);
      const done = await pollUntil(
        ops,
        io,
        limits.snapshotMs,
        limits.pollMs,
        () => ops.actionState(action),
        (s) => s !== "in-progress",
      );
      if (done !== "completed")
        throw new HubCommandError(
          done === undefined
            ? `the snapshot of droplet ${droplet} did not complete within ${limits.snapshotMs / 60_000} min (action ${action})`
            : `DigitalOcean reported the snapshot action ${action} ${done}`,
        );
      snapshot = await ops.findSnapshot(name);
      if (!snapshot)
        throw new HubCommandError(`the snapshot action ${action} completed, but no snapshot named ${name} is listed`);
      failed = false;
    } finally {
      if (failed && options.keepOnFailure) {
        io.out(
          `  --keep-on-failure: build droplet ${droplet} is left running for inspection (tag ${IMAGE_BUILD_TAG}); destroy it yourself: doctl compute droplet delete ${droplet}`,
        );
      } else {
        await destroyWithRetries(ops, droplet, io);
      }
    }
    io.out(`  snapshot ${snapshot.id}: ${snapshot.sizeGB} GB, ${monthly(snapshot.sizeGB)} while it is kept`);
  }

  if (config[SNAPSHOT_ID]?.value === snapshot.id && current === name) {
    io.out(`${stack.stackName}: already boots ${name}; nothing to change`);
    return snapshot;
  }
  await stack.setConfig(SNAPSHOT_ID, snapshot.id, false);
  await stack.setConfig(SNAPSHOT_NAME, name, false);
  io.out(
    `${stack.stackName}: config gpuSnapshotId = ${snapshot.id}, gpuSnapshotName = ${name}; GPU nodes created from now on boot it (a running one is replaced at the next pulumi up; its model cache stays)`,
  );
  if (current && current !== name)
    io.out(
      `  the previous image ${current} is no longer used by this stack; it bills until deleted (doctl compute snapshot delete <id>) unless another stack boots it`,
    );
  return snapshot;
}

/** The build droplet bills by the second: its deletion is retried, and a failure names it so it can be deleted by hand. */
async function destroyWithRetries(ops: ImageOps, droplet: number, io: Io): Promise<void> {
  let last: unknown;
  for (let attempt = 1; attempt <= 3; attempt++) {
    try {
      await ops.destroyDroplet(droplet);
      io.out(`  build droplet ${droplet} destroyed`);
      return;
    } catch (err) {
      last = err;
      await ops.sleep(5_000 * attempt);
    }
  }
  io.out(
    `  COULD NOT DESTROY the build droplet ${droplet} (${(last as Error).message}); it bills until deleted: doctl compute droplet delete ${droplet}`,
  );
}

/** ImageOps over DigitalOcean's REST API v2 with the deploy's token (DIGITALOCEAN_TOKEN). */
export function digitalOceanImageOps(
  token: string,
  api = "https://api.digitalocean.com",
  fetcher: typeof fetch = fetch,
): ImageOps {
  const call = async (method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> => {
    const res = await fetcher(`${api}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(30_000),
    });
    const text = await res.text();
    let json: any;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    if (res.status >= 400 && res.status !== 404)
      throw new Error(
        `DigitalOcean ${method} ${path}: HTTP ${res.status}${json?.message ? `: ${String(json.message).slice(0, 200)}` : ""}`,
      );
    return { status: res.status, json };
  };
  return {
    async findSnapshot(name) {
      for (let page = 1; page <= 50; page++) {
        const { json } = await call("GET", `/v2/snapshots?resource_type=droplet&per_page=200&page=${page}`);
        const list = (json?.snapshots ?? []) as {
          id: string | number;
          name: string;
          regions: string[];
          size_gigabytes: number;
        }[];
        const found = list.find((s) => s.name === name);
        if (found)
          return { id: String(found.id), name: found.name, regions: found.regions, sizeGB: found.size_gigabytes };
        if (!json?.links?.pages?.next) return undefined;
      }
      return undefined;
    },
    async createDroplet(spec) {
      const { json } = await call("POST", "/v2/droplets", {
        name: spec.name,
        region: spec.region,
        size: spec.size,
        image: spec.image,
        user_data: spec.userData,
        tags: spec.tags,
        ssh_keys: spec.sshKeys,
        monitoring: false,
      });
      return Number(json.droplet.id);
    },
    async dropletState(id) {
      const { status, json } = await call("GET", `/v2/droplets/${id}`);
      return status === 404 ? "gone" : (json.droplet.status as DropletState);
    },
    async snapshot(dropletId, name) {
      const { json } = await call("POST", `/v2/droplets/${dropletId}/actions`, { type: "snapshot", name });
      return Number(json.action.id);
    },
    async actionState(actionId) {
      const { json } = await call("GET", `/v2/actions/${actionId}`);
      return json.action.status;
    },
    async destroyDroplet(id) {
      await call("DELETE", `/v2/droplets/${id}`);
    },
    sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
  };
}
