import { createHash } from "node:crypto";
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { bundleSandboxApi } from "../programs/sandbox/bundle";
import {
  renderSandboxCloudInit,
  SANDBOX_NODE_IMAGE,
  SANDBOX_NODE_PATHS,
  sandboxInstallFileScript,
  sandboxNodeEnv,
  sandboxReadinessScript,
  sandboxRestartScript,
} from "../services/sandbox";
import {
  nodeExporterEnv,
  nodeExporterRestartScript,
  nodeExporterStopScript,
  SANDBOX_NODE_EXPORTER_PATHS,
} from "../services/sandbox-node-exporter";
import type { SandboxPlan } from "../stacks/sandbox";
import { recordArtifact, SECRET_PLACEHOLDER } from "./artifacts";
import { HubNode, type HubNodeArgs } from "./node";
import type { NodeSsh } from "./ssh";

export interface SandboxApiArgs {
  /** The sandbox node's readiness check: runsc and the languages' tree are built. */
  readonly ready: pulumi.Resource;
  readonly ssh: NodeSsh;
  readonly privateIp: pulumi.Input<string>;
  /** The sandbox token (a secret); only its SHA-256 goes to the node. */
  readonly token: pulumi.Output<string>;
  readonly slots: number;
  /** A replaced droplet (even one given the same addresses) gets its API started again. */
  readonly dropletId: pulumi.Input<number>;
}

const hash = (text: string) => createHash("sha256").update(text).digest("hex").slice(0, 16);

let bundled: string | undefined;
/** Bundled once per process: every stack ships the same API. */
export function sandboxApiBundle(): string {
  bundled ??= bundleSandboxApi();
  return bundled;
}

/**
 * The sandbox API on its node: the bundle and its environment written over SSH, then the service
 * restarted and awaited on the node's private address. A new bundle or setting restarts it; the
 * droplet itself stays (its runsc and Debian tree took ten minutes to build).
 */
export class SandboxApi extends pulumi.ComponentResource {
  public readonly restart: command.remote.Command;

  constructor(name: string, args: SandboxApiArgs, opts: pulumi.ComponentResourceOptions = {}) {
    super("inference-hub:sandbox:SandboxApi", name, {}, opts);
    const connection = { ...args.ssh.connection, dialErrorLimit: 10 };
    const bundle = sandboxApiBundle();
    // The digest of a secret is derived from it: kept secret too, though it opens nothing.
    const env = pulumi.secret(
      pulumi.all([args.token, args.privateIp]).apply(([token, privateIp]) =>
        sandboxNodeEnv({
          tokenSha256: createHash("sha256").update(token).digest("hex"),
          privateIp,
          slots: args.slots,
        }),
      ),
    );
    const write = (role: string, path: string, content: pulumi.Input<string>, mode: "0600" | "0644") =>
      new command.remote.Command(
        `${name}-${role}`,
        {
          connection,
          create: sandboxInstallFileScript(path, mode),
          update: sandboxInstallFileScript(path, mode),
          stdin: content,
          delete: `rm -f '${path}'`,
        },
        { parent: this, dependsOn: [args.ready] },
      );
    const files = [
      write("bundle", SANDBOX_NODE_PATHS.bundle, bundle, "0644"),
      write("env", SANDBOX_NODE_PATHS.env, env, "0600"),
    ];
    this.restart = new command.remote.Command(
      `${name}-restart`,
      {
        connection,
        create: pulumi.output(args.privateIp).apply(sandboxRestartScript),
        triggers: [hash(bundle), env.apply(hash), args.dropletId],
      },
      { parent: this, dependsOn: files },
    );
    this.registerOutputs({});
  }
}

export interface SandboxNodeExporterArgs {
  /** The sandbox node's readiness check: node_exporter is built. */
  readonly ready: pulumi.Resource;
  readonly ssh: NodeSsh;
  readonly privateIp: pulumi.Input<string>;
  readonly port: number;
  /** A replaced droplet (even one given the same addresses) gets its exporter started again. */
  readonly dropletId: pulumi.Input<number>;
}

/**
 * node_exporter on the sandbox node (services/sandbox-node-exporter.ts): its address written, the
 * service restarted and awaited on the private address. Deleted (monitoring off), it stops, and
 * without its address file it stays stopped across reboots.
 */
export class SandboxNodeExporter extends pulumi.ComponentResource {
  /** Done once the exporter answers on the node's private address: Prometheus' target waits for it. */
  public readonly answering: command.remote.Command;

  constructor(name: string, args: SandboxNodeExporterArgs, opts: pulumi.ComponentResourceOptions = {}) {
    super("inference-hub:sandbox:SandboxNodeExporter", name, {}, opts);
    const connection = { ...args.ssh.connection, dialErrorLimit: 10 };
    const path = SANDBOX_NODE_EXPORTER_PATHS.env;
    const env = pulumi.output(args.privateIp).apply((ip) => nodeExporterEnv(ip, args.port));
    const file = new command.remote.Command(
      `${name}-env`,
      {
        connection,
        create: sandboxInstallFileScript(path, "0644"),
        update: sandboxInstallFileScript(path, "0644"),
        stdin: env,
        delete: nodeExporterStopScript(),
      },
      { parent: this, dependsOn: [args.ready] },
    );
    this.answering = new command.remote.Command(
      `${name}-restart`,
      {
        connection,
        create: pulumi
          .output(args.privateIp)
          .apply((ip) => `set -euo pipefail\n${nodeExporterRestartScript(ip, args.port)}`),
        triggers: [env.apply(hash), args.dropletId],
      },
      { parent: this, dependsOn: [file] },
    );
    this.registerOutputs({});
  }
}

export interface SandboxNodeArgs
  extends Omit<HubNodeArgs, "image" | "cloudInit" | "readinessScript" | "volumeId" | "size" | "longLived"> {
  readonly plan: SandboxPlan;
  readonly token: pulumi.Output<string>;
  /**
   * node_exporter's port, for the hub's Prometheus.
   * @default - no exporter runs (monitoring is off); the node still has it built
   */
  readonly nodeExporterPort?: number;
}

/** The sandbox droplet (Debian 13, no volume, no Docker), its API and node_exporter; its cloud-init is recorded for the plan. */
export function sandboxNode(
  name: string,
  args: SandboxNodeArgs,
): { readonly node: HubNode; readonly api: SandboxApi; readonly exporter?: SandboxNodeExporter } {
  const { plan, token, nodeExporterPort, ...nodeArgs } = args;
  const node = new HubNode(name, {
    ...nodeArgs,
    size: plan.size.slug,
    image: SANDBOX_NODE_IMAGE,
    cloudInit: (hostKey) => renderSandboxCloudInit(hostKey),
    readinessScript: sandboxReadinessScript(),
  });
  recordArtifact({
    kind: "cloud-init",
    node: name,
    path: `${name}/cloud-init.yaml`,
    content: node.hostPublicKey.apply((publicKey) => ({ publicKey })),
    render: ({ publicKey }) => renderSandboxCloudInit({ privateKey: SECRET_PLACEHOLDER, publicKey: String(publicKey) }),
  });
  const api = new SandboxApi(`${name}-api`, {
    ready: node.ready,
    ssh: node.ssh,
    privateIp: node.privateIp,
    token,
    slots: plan.slots,
    dropletId: node.dropletId,
  });
  const exporter =
    nodeExporterPort === undefined
      ? undefined
      : new SandboxNodeExporter(`${name}-node-exporter`, {
          ready: node.ready,
          ssh: node.ssh,
          privateIp: node.privateIp,
          port: nodeExporterPort,
          dropletId: node.dropletId,
        });
  return { node, api, ...(exporter ? { exporter } : {}) };
}
