import { createHash } from "node:crypto";
import { stringify } from "yaml";
import type { HubConfig } from "../stacks/hub-config";
import { hubServiceSpecs } from "./index";
import {
  AUTO_UPGRADES,
  AUTO_UPGRADES_PATH,
  cloudInitFile,
  DOCKER_DAEMON_CONFIG,
  DOCKER_DAEMON_JSON_PATH,
  NVIDIA_HOLD,
  NVIDIA_HOLD_PATH,
  SSHD_DROP_IN,
  SSHD_DROP_IN_PATH,
} from "./node-setup";
import { imageName } from "./spec";

/**
 * The baked GPU image: DigitalOcean's recommended set-up (install on a GPU droplet, snapshot it,
 * create GPU droplets from the snapshot; shared/FACTS.md "GPU cold start"). What every GPU node
 * would otherwise do at each wake goes into the snapshot: Docker with log rotation, the NVIDIA
 * runtime registered, the unattended-upgrade rules, the sshd drop-in, and every image a GPU node
 * runs, pulled. What must differ per node stays in its cloud-init (node-setup.ts with `baked`):
 * the SSH host key, the volume's unit and mount.
 *
 * The snapshot is named by what defines it (the base image, the size it was built on, the pinned
 * images, the set-up's text), so a pin change means a new name, and the plan can tell a stale
 * snapshot from the stack's settings alone. `npm run hub -- gpu image build` builds it.
 */

export interface GpuImageInputs {
  /** DigitalOcean's GPU base image the snapshot starts from. */
  readonly baseImage: string;
  /** The droplet size it is built on: a snapshot needs a disk at least as large as the one it was taken from. */
  readonly size: string;
  readonly vendor: "nvidia" | "amd";
  /** Every image a GPU node runs, pinned, sorted. */
  readonly images: readonly string[];
  /** sha256 of the build's cloud-config, first 12 hex digits: any change to the set-up changes it. */
  readonly setup: string;
}

/** Marker the build writes last: the build droplet powers itself off only when it exists. */
export const BAKED_MARKER = "/var/lib/inference-hub/baked";
/** DigitalOcean tag on build droplets, so one left behind can be found. */
export const IMAGE_BUILD_TAG = "inference-hub-image-build";

/** The images the GPU nodes of this stack run, whether the GPU is on now or not. */
export function gpuNodeImages(hub: HubConfig): string[] {
  if (!hub.gpu) return [];
  const on: HubConfig = {
    ...hub,
    gpu: { ...hub.gpu, on: true },
    nodes: hub.nodes.map((n) => (n.kind === "gpu" ? { ...n, active: true } : n)),
  };
  const images = hubServiceSpecs(on)
    .filter((s) => s.node !== "cpu")
    .map((s) => imageName(s.image));
  return [...new Set(images)].sort();
}

/** The cloud-config the build droplet runs: the shared set-up, the pulls, the marker; cloud-init then powers it off. */
export function bakeCloudConfig(vendor: "nvidia" | "amd", images: readonly string[]): Record<string, unknown> {
  const file = (path: string, content: string, defer = false) => cloudInitFile(path, content, "0644", defer);
  return {
    package_update: true,
    packages: ["docker.io", "unattended-upgrades"],
    ssh_pwauth: false,
    write_files: [
      file(DOCKER_DAEMON_JSON_PATH, `${JSON.stringify(DOCKER_DAEMON_CONFIG, null, 2)}\n`),
      file(SSHD_DROP_IN_PATH, SSHD_DROP_IN),
      file(AUTO_UPGRADES_PATH, AUTO_UPGRADES, true),
      ...(vendor === "nvidia" ? [file(NVIDIA_HOLD_PATH, NVIDIA_HOLD)] : []),
    ],
    runcmd: [
      ["systemctl", "enable", "--now", "docker"],
      ...(vendor === "nvidia"
        ? [
            ["nvidia-ctk", "runtime", "configure", "--runtime=docker"],
            ["systemctl", "restart", "docker"],
          ]
        : []),
      // Each pull is retried: a registry hiccup must not cost a rebuild.
      ...images.map((image) => [
        "sh",
        "-c",
        `for i in 1 2 3; do docker pull '${image}' && exit 0; sleep 10; done; exit 1`,
      ]),
      // A droplet made from the snapshot gets its own machine id at first boot; cloud-init reruns its per-instance modules for the new instance id.
      [
        "sh",
        "-c",
        `truncate -s 0 /etc/machine-id && mkdir -p ${BAKED_MARKER.replace(/\/[^/]+$/, "")} && date -u +%FT%TZ > ${BAKED_MARKER}`,
      ],
    ],
    // Only a complete set-up powers off; a failed one stays on and the build gives up on it (and destroys it).
    power_state: {
      mode: "poweroff",
      message: "inference-hub: GPU image ready for its snapshot",
      timeout: 60,
      condition: `test -f ${BAKED_MARKER}`,
    },
  };
}

/** Rendered set-ups by vendor and images: a plan names the snapshot several times (program, warning, document). */
const renderedBakeConfigs = new Map<string, string>();

export function renderBakeCloudConfig(vendor: "nvidia" | "amd", images: readonly string[]): string {
  const key = JSON.stringify([vendor, images]);
  let text = renderedBakeConfigs.get(key);
  if (text === undefined) {
    text = `#cloud-config\n${stringify(bakeCloudConfig(vendor, images), { version: "1.1", lineWidth: 0 })}`;
    // A long-lived process (the test suite) plans many stacks: keep the last few only.
    if (renderedBakeConfigs.size >= 16) renderedBakeConfigs.delete(renderedBakeConfigs.keys().next().value!);
    renderedBakeConfigs.set(key, text);
  }
  return text;
}

export function gpuImageInputs(hub: HubConfig): GpuImageInputs | undefined {
  if (!hub.gpu) return undefined;
  const size = hub.gpu.size;
  const images = gpuNodeImages(hub);
  const setup = createHash("sha256").update(renderBakeCloudConfig(size.vendor, images)).digest("hex").slice(0, 12);
  return { baseImage: size.image, size: size.slug, vendor: size.vendor, images, setup };
}

/** `ih-gpu-<size>-<12 hex of the inputs>`: equal inputs, equal name (two stacks may share one snapshot). */
export function gpuImageName(inputs: GpuImageInputs): string {
  const digest = createHash("sha256").update(JSON.stringify(inputs)).digest("hex").slice(0, 12);
  return `ih-gpu-${inputs.size.replace(/^gpu-/, "")}-${digest}`;
}

export type GpuBootImage =
  | { readonly kind: "base"; readonly image: string; readonly expectedName?: string; readonly why: string }
  | { readonly kind: "baked"; readonly image: string; readonly name: string }
  | {
      readonly kind: "stale";
      readonly image: string;
      readonly name: string;
      readonly expectedName: string;
      readonly why: string;
    };

/** Which image a GPU node of this stack boots: the configured snapshot when it is current, else the base image (a stale snapshot is reported, not used). */
export function gpuBootImage(hub: HubConfig): GpuBootImage | undefined {
  const inputs = gpuImageInputs(hub);
  if (!inputs || !hub.gpu) return undefined;
  const expectedName = gpuImageName(inputs);
  const { gpuSnapshotId: id, gpuSnapshotName: name } = hub.settings;
  if (id === undefined || name === undefined)
    return {
      kind: "base",
      image: inputs.baseImage,
      expectedName,
      why: `no baked GPU image: cloud-init installs Docker and each wake pulls the images (build one with \`npm run hub -- gpu image build --stack <name>\`, ${expectedName})`,
    };
  if (name === expectedName) return { kind: "baked", image: id, name };
  return {
    kind: "stale",
    image: inputs.baseImage,
    name,
    expectedName,
    why: `the baked GPU image ${name} was built for other pins or set-up than this stack's now (${expectedName}): GPU nodes boot the base image ${inputs.baseImage} until \`npm run hub -- gpu image build\` builds the current one`,
  };
}

/** The serving model's boot image for this stack: baked only when the configured snapshot is current. */
export const servingImage = (hub: HubConfig): "base" | "baked" =>
  gpuBootImage(hub)?.kind === "baked" ? "baked" : "base";
