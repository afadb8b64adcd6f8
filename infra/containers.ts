import { createHash } from "node:crypto";
import * as command from "@pulumi/command";
import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import { IMAGE_UIDS } from "../services/images";
import { HUB_CONTAINER_LABEL } from "../services/node-setup";
import { imageName, SecretName, ServiceSpec } from "../services/spec";
import type { NodeSsh } from "./ssh";

/** A file written onto the node before its containers start (gateway config, nginx conf). */
export interface NodeFile {
  readonly path: string;
  readonly content: pulumi.Input<string>;
  /**
   * Containers that must restart when this file changes (they read it only at start).
   * @default - none: the program watches the file (Traefik's dynamic config)
   */
  readonly restarts?: readonly string[];
  /**
   * Resources that must finish before the file is written (and, on delete, that are deleted after it).
   * @default - none beyond the node's readiness check
   */
  readonly after?: readonly pulumi.Resource[];
  /**
   * Owner uid and mode 0600 for a file holding a secret (Alertmanager's SMTP password), so only
   * the container user that reads it can.
   * @default - root, mode 0644
   */
  readonly privateTo?: number;
}

/** A port a service publishes on the node. */
export interface PublishedPort {
  readonly container: string;
  readonly port: number;
  /** @default - the node's private (VPC) address only */
  readonly onAllInterfaces?: boolean;
}

/** A droplet reached over SSH. */
export interface DropletTarget {
  readonly kind: "droplet";
  readonly host: pulumi.Input<string>;
  readonly privateIp: pulumi.Input<string>;
  /** The node's readiness check: nothing connects to Docker before it passes. */
  readonly ready: pulumi.Resource;
  /** The deployer's SSH settings for this node: its pinned host key, the configured key or the agent. */
  readonly ssh: NodeSsh;
}

/** The deployer's own Docker engine (the local tier). */
export interface LocalTarget {
  readonly kind: "local";
  /** Host directory that stands in for the node's volume mount. */
  readonly dataDir: string;
  /** The mount path the specs use (CPU_CACHE_MOUNT), rewritten to dataDir. */
  readonly mountRoot: string;
}

export interface ContainerHostArgs {
  readonly target: DropletTarget | LocalTarget;
  readonly services: readonly ServiceSpec[];
  readonly files?: readonly NodeFile[];
  /** Extra published ports beyond `publishOnPrivateIp` (the gateway's public ports). */
  readonly ports?: readonly PublishedPort[];
  readonly secrets: Readonly<Record<SecretName, pulumi.Output<string>>>;
}

const LOG_OPTS = { "max-size": "50m", "max-file": "5" };
const hash = (text: string) => createHash("sha256").update(text).digest("hex").slice(0, 16);
const seconds = (n: number) => `${n}s`;

/** The Docker container arguments for a spec: plain data, so tests read them without a cloud. */
export function containerArgs(
  spec: ServiceSpec,
  network: pulumi.Input<string>,
  image: pulumi.Input<string>,
  privateIp: pulumi.Input<string>,
  extraPorts: readonly PublishedPort[],
  secrets: Readonly<Record<SecretName, pulumi.Output<string>>>,
  labels: Record<string, pulumi.Input<string>>,
): docker.ContainerArgs {
  const plainEnv = Object.entries(spec.env).map(([k, v]) => `${k}=${v}`);
  const secretEnv = Object.entries(spec.secretEnv).map(([k, name]) =>
    pulumi.secret(pulumi.interpolate`${k}=${secrets[name]}`),
  );
  const ports: docker.types.input.ContainerPort[] = [
    ...(spec.publishOnPrivateIp ? [{ internal: spec.port, external: spec.port, ip: privateIp }] : []),
    ...extraPorts
      .filter((p) => p.container === spec.name)
      .map((p) => ({ internal: p.port, external: p.port, ip: p.onAllInterfaces ? "0.0.0.0" : privateIp })),
  ];
  return {
    name: spec.name,
    image,
    entrypoints: spec.entrypoint ? [...spec.entrypoint] : undefined,
    command: [...spec.command],
    envs: [...plainEnv, ...secretEnv],
    ports,
    volumes: spec.mounts
      .filter((m) => !m.propagation)
      .map((m) => ({ hostPath: m.hostPath, containerPath: m.containerPath, readOnly: m.readOnly ?? false })),
    // Only `mounts` can carry a bind propagation mode.
    mounts: spec.mounts.some((m) => m.propagation)
      ? spec.mounts
          .filter((m) => m.propagation)
          .map((m) => ({
            type: "bind",
            source: m.hostPath,
            target: m.containerPath,
            readOnly: m.readOnly ?? false,
            bindOptions: { propagation: m.propagation },
          }))
      : undefined,
    // A container on the host's network joins no Docker network (Docker refuses both).
    networksAdvanced: spec.hostNamespaces ? undefined : [{ name: network, aliases: [spec.name] }],
    networkMode: spec.hostNamespaces ? "host" : undefined,
    pidMode: spec.hostNamespaces ? "host" : undefined,
    capabilities: spec.capAdd?.length ? { adds: [...spec.capAdd] } : undefined,
    gpus: spec.gpu?.vendor === "nvidia" ? "all" : undefined,
    // ROCm containers reach the GPUs through these devices, as AMD's docs run them.
    devices: spec.gpu?.vendor === "amd" ? [{ hostPath: "/dev/kfd" }, { hostPath: "/dev/dri" }] : undefined,
    groupAdds: spec.gpu?.vendor === "amd" ? ["video"] : undefined,
    ipcMode: spec.ipcHost ? "host" : undefined,
    memory: spec.memoryLimitMiB,
    restart: "unless-stopped",
    healthcheck: {
      tests: [...spec.health.test],
      interval: seconds(spec.health.intervalSeconds),
      timeout: seconds(spec.health.timeoutSeconds),
      startPeriod: seconds(spec.health.startPeriodSeconds),
      retries: spec.health.retries,
    },
    logDriver: "json-file",
    logOpts: LOG_OPTS,
    labels: Object.entries(labels).map(([label, value]) => ({ label, value })),
    // Health is awaited through the gateway: a first vLLM start downloads tens of GB.
    wait: false,
  };
}

/** Shell that creates every writable mount source with the owner its image runs as. */
export function mountDirectoriesScript(services: readonly ServiceSpec[]): string | undefined {
  const lines: string[] = [];
  for (const spec of services) {
    const uid = IMAGE_UIDS[spec.image.repo] ?? 0;
    for (const m of spec.mounts.filter((m) => !m.readOnly))
      lines.push(`install -d -m 0755 -o ${uid} -g ${uid} '${m.hostPath}' && chown ${uid}:${uid} '${m.hostPath}'`);
  }
  return lines.length ? ["set -e", ...lines].join("\n") : undefined;
}

/** On a laptop every "private" port binds to loopback: nothing of the hub is reachable from the LAN. */
const LOOPBACK = "127.0.0.1";

/** The user's own machine: plain directories, writable by whatever uid the image runs as. */
export function localDirectoriesScript(services: readonly ServiceSpec[]): string | undefined {
  const dirs = services.flatMap((s) => s.mounts.filter((m) => !m.readOnly).map((m) => m.hostPath));
  return dirs.length ? ["set -e", ...dirs.map((d) => `mkdir -p '${d}' && chmod 0777 '${d}'`)].join("\n") : undefined;
}

/** Docker on one node: a droplet over SSH, or the local engine: the node's network, images and containers. */
export class ContainerHost extends pulumi.ComponentResource {
  public readonly containers: ReadonlyMap<string, docker.Container>;

  constructor(name: string, args: ContainerHostArgs, opts: pulumi.ComponentResourceOptions = {}) {
    super("inference-hub:containers:ContainerHost", name, {}, opts);
    const target = args.target;
    const provider =
      target.kind === "droplet"
        ? new docker.Provider(
            `${name}-docker`,
            {
              host: pulumi.interpolate`ssh://root@${target.host}`,
              // Exactly the node's own host key, from its known_hosts file; the configured key when there is one.
              sshOpts: target.ssh.dockerSshOpts,
            },
            // Docker is installed by cloud-init, and the SSH rule may just have moved to this machine: the readiness check waits for both.
            { parent: this, dependsOn: [target.ready] },
          )
        : // DOCKER_HOST, or the engine's default socket.
          new docker.Provider(`${name}-docker`, {}, { parent: this });
    const network = new docker.Network(
      `${name}-network`,
      { name: "hub", driver: "bridge" },
      { parent: this, provider },
    );

    // On a laptop the node's volume is a directory of the user's; paths move there.
    const onHost = (path: string) =>
      target.kind === "local" && path.startsWith(target.mountRoot)
        ? `${target.dataDir}${path.slice(target.mountRoot.length)}`
        : path;
    const services = args.services.map((spec) => ({
      ...spec,
      mounts: spec.mounts.map((m) => ({ ...m, hostPath: onHost(m.hostPath) })),
    }));
    // Over SSH only after the readiness check (which waited for the node and its SSH rule).
    const shell = (
      resourceName: string,
      script: string,
      stdin?: pulumi.Input<string>,
      remove?: string,
      after: readonly pulumi.Resource[] = [],
    ): pulumi.Resource =>
      target.kind === "droplet"
        ? new command.remote.Command(
            resourceName,
            {
              connection: { ...target.ssh.connection, dialErrorLimit: 10 },
              create: script,
              update: script,
              stdin,
              delete: remove,
            },
            { parent: this, dependsOn: [target.ready, ...after] },
          )
        : new command.local.Command(
            resourceName,
            { create: script, update: script, stdin, delete: remove },
            { parent: this, dependsOn: [...after] },
          );

    const restartLabels = new Map<string, pulumi.Input<string>[]>();
    const fileCommands: pulumi.Resource[] = [];
    for (const file of args.files ?? []) {
      const path = onHost(file.path);
      const dir = path.slice(0, path.lastIndexOf("/"));
      // Write then rename, so a watching program never reads half a file.
      const write =
        // On a laptop the files are the user's own (and chown would need root): plain mode there.
        file.privateTo === undefined || target.kind === "local"
          ? `install -d -m 0755 '${dir}' && cat > '${path}.tmp' && mv '${path}.tmp' '${path}'`
          : `install -d -m 0755 '${dir}' && (umask 077 && cat > '${path}.tmp') && chown ${file.privateTo} '${path}.tmp' && mv '${path}.tmp' '${path}'`;
      fileCommands.push(
        shell(
          `${name}-file-${file.path.split("/").slice(-2).join("-")}`,
          write,
          file.content,
          `rm -f '${path}'`,
          file.after,
        ),
      );
      for (const container of file.restarts ?? [])
        restartLabels.set(container, [
          ...(restartLabels.get(container) ?? []),
          pulumi.output(file.content).apply(hash),
        ]);
    }

    // Docker creates missing bind-mount sources owned by root; images that run as another user
    // (speaches 1000, docling-serve 1001) could not write their caches. Create them with the right owner.
    const prepare = target.kind === "droplet" ? mountDirectoriesScript(services) : localDirectoriesScript(services);
    if (prepare) fileCommands.push(shell(`${name}-directories`, prepare));
    const privateIp = target.kind === "droplet" ? target.privateIp : LOOPBACK;

    const containers = new Map<string, docker.Container>();
    for (const spec of services) {
      const image = new docker.RemoteImage(
        `${name}-image-${spec.name}`,
        // Keep the image on the node when the container goes: re-pulling vLLM's ~10 GB image is slow.
        { name: imageName(spec.image), keepLocally: true },
        { parent: this, provider },
      );
      // The node's volume unit finds the hub's containers by this label (services/node-setup.ts).
      const labels: Record<string, pulumi.Input<string>> = { [HUB_CONTAINER_LABEL]: spec.role };
      const fileHashes = restartLabels.get(spec.name);
      // A changed start-time config file changes this label, which replaces (restarts) the container.
      if (fileHashes) labels["inference-hub.config-hash"] = pulumi.all(fileHashes).apply((h) => h.join("."));
      containers.set(
        spec.name,
        new docker.Container(
          `${name}-${spec.name}`,
          containerArgs(spec, network.name, image.imageId, privateIp, args.ports ?? [], args.secrets, labels),
          {
            parent: this,
            provider,
            dependsOn: fileCommands,
            // Container names and published ports are unique per host: the old one must go first.
            deleteBeforeReplace: true,
          },
        ),
      );
    }
    this.containers = containers;
    this.registerOutputs({});
  }
}
