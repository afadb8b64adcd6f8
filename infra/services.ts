import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { GATEKEEPER_CONTAINER, GATEKEEPER_FILES } from "../services/auth";
import { bundleGatekeeper } from "../programs/gatekeeper/bundle";
import { bundleController } from "../programs/autoscaler/controller/bundle";
import { bundleSandboxFront } from "../programs/sandbox/bundle";
import { SANDBOX_FRONT_CONTAINER, SANDBOX_FRONT_FILES, sandboxNodeUrl } from "../services/sandbox";
import { bundleEmbeddingsFront } from "../programs/embeddings/bundle";
import { EMBEDDINGS_CONTAINER, EMBEDDINGS_FILES } from "../services/embeddings";
import { AUTOSCALER_CONTAINER, AUTOSCALER_FILES, autoscalerConfig, autoscalerRuns } from "../services/autoscaler";
import {
  backendsDrainScript,
  backendsReadyScript,
  GATEKEEPER_CA_FILE,
  GATEWAY_DIRS,
  GPU_DRAIN_TIMEOUT_SECONDS,
  GPU_READY_TIMEOUT_SECONDS,
  errorsNginxConf,
  gpuBackendAddresses,
  renderYaml,
  traefikDynamicConfig,
  traefikStaticConfig,
} from "../services/gateway";
import { GRAFANA_CONTAINER } from "../services/grafana";
import { grafanaFiles } from "../services/grafana-provisioning";
import { hubServiceSpecs } from "../services/index";
import { GATEWAY_METRICS_PORT, PUBLIC_PORTS } from "../services/ports";
import { routeTable, type Route } from "../services/routes";
import type { SecretName, ServiceSpec } from "../services/spec";
import type { HubConfig } from "../stacks/hub-config";
import { recordArtifact } from "./artifacts";
import { monitoringFiles, type MonitoringSecrets } from "./monitoring";
import { ContainerHost, type DropletTarget, LocalTarget, PublishedPort } from "./containers";

export const GATEWAY_FILES = {
  static: `${GATEWAY_DIRS.static}/traefik.yml`,
  dynamic: `${GATEWAY_DIRS.dynamic}/routes.yml`,
  errors: `${GATEWAY_DIRS.errors}/default.conf`,
};

/** Containers a spec list runs on each node, with the rendered files each one needs. */
export function deployServices(
  hub: HubConfig,
  cpu: DropletTarget | LocalTarget,
  gpuNodes: ReadonlyMap<string, DropletTarget>,
  secrets: Readonly<Record<SecretName, pulumi.Output<string>>>,
  apiKeys: pulumi.Output<string>,
  alertSecrets: Omit<MonitoringSecrets, "hubApiKey"> = {},
  sandbox?: { readonly privateIp: pulumi.Input<string>; readonly exporterReady?: pulumi.Resource },
): Map<string, ContainerHost> {
  const specs = hubServiceSpecs(hub);
  const onNode = (node: string) => specs.filter((s) => s.node === node);
  for (const spec of specs) recordContainerArtifacts(spec);

  const routes = routeTable(hub);
  const privateIps = pulumi.all(
    Object.fromEntries([...gpuNodes].map(([name, node]) => [name, pulumi.output(node.privateIp)])) as Record<
      string,
      pulumi.Output<string>
    >,
  );
  const staticConfig = renderYaml(traefikStaticConfig(hub));
  const nginxConf = errorsNginxConf(hub, routes);
  recordArtifact({ kind: "traefik-static", node: "cpu", path: "cpu/traefik/traefik.yml", content: staticConfig });
  recordArtifact({ kind: "errors-nginx", node: "cpu", path: "cpu/errors/default.conf", content: nginxConf });
  const grafana = hub.grafana ? grafanaFiles(hub) : [];
  for (const file of grafana)
    recordArtifact({
      kind: "grafana",
      node: "cpu",
      path: `cpu/grafana/${file.path.split("/grafana/")[1]}`,
      content: file.content,
    });

  const hosts = new Map<string, ContainerHost>();
  for (const [name, node] of gpuNodes) {
    hosts.set(name, new ContainerHost(`${name}-containers`, { target: node, services: onNode(name), secrets }));
  }
  // The routes file names a GPU replica only once it answers (see services/gateway.ts).
  const waits =
    cpu.kind === "droplet"
      ? [...gpuNodes.keys()].map((name) => gpuServingWait(name, cpu, routes, privateIps, hosts.get(name)!))
      : [];
  const dynamicConfig = privateIps.apply((ips) => renderYaml(traefikDynamicConfig(hub, routes, ips)));
  recordArtifact({
    kind: "traefik-dynamic",
    node: "cpu",
    path: "cpu/traefik/dynamic/routes.yml",
    content: dynamicConfig,
  });
  // The controller re-reads its file every tick: written as soon as the nodes' addresses are known (not after the serving wait), so a loading replica counts as starting.
  const billingCrossCheck = new pulumi.Config().getSecret("autoscalerBillingToken") !== undefined;
  const autoscalerFile = autoscalerRuns(hub)
    ? privateIps.apply(
        (ips) =>
          `${JSON.stringify(autoscalerConfig(hub, routes, { stack: pulumi.getStack(), organization: pulumi.getOrganization(), privateIps: ips, billingCrossCheck }), null, 2)}\n`,
      )
    : undefined;
  if (autoscalerFile)
    recordArtifact({
      kind: "autoscaler-config",
      node: "cpu",
      path: "cpu/autoscaler/autoscaler.json",
      content: autoscalerFile,
    });

  hosts.set(
    "cpu",
    new ContainerHost("cpu-containers", {
      target: cpu,
      services: onNode("cpu"),
      files: [
        // Traefik reads its static config only at start; the dynamic file is watched and reloads live.
        { path: GATEWAY_FILES.static, content: staticConfig, restarts: ["gateway"] },
        // Read when Traefik builds its forwardAuth middlewares: a renewed certificate needs a restart.
        { path: GATEKEEPER_CA_FILE.host, content: secrets.gatekeeperTlsCert, restarts: ["gateway"] },
        // Written after every GPU replica it names answers; on the way out, rewritten before they are drained and deleted.
        { path: GATEWAY_FILES.dynamic, content: dynamicConfig, after: waits },
        { path: GATEWAY_FILES.errors, content: nginxConf, restarts: ["errors"] },
        // The gatekeeper runs from one bundled file; the keys file is watched and reloads live.
        { path: GATEKEEPER_FILES.bundle, content: gatekeeperBundle(), restarts: [GATEKEEPER_CONTAINER] },
        { path: GATEKEEPER_FILES.keys, content: apiKeys },
        ...(autoscalerFile
          ? [
              { path: AUTOSCALER_FILES.bundle, content: controllerBundle(), restarts: [AUTOSCALER_CONTAINER] },
              { path: AUTOSCALER_FILES.config, content: autoscalerFile },
            ]
          : []),
        // The front's address of the sandbox node: known once the droplet exists. Not after its API is up
        // (a first boot builds gVisor for minutes): the gateway's containers must not wait for that;
        // the route answers 502/503 until the API answers.
        ...(sandbox
          ? [
              { path: SANDBOX_FRONT_FILES.bundle, content: sandboxFrontBundle(), restarts: [SANDBOX_FRONT_CONTAINER] },
              {
                path: SANDBOX_FRONT_FILES.nodeUrl,
                content: pulumi.output(sandbox.privateIp).apply((ip) => `${sandboxNodeUrl(ip)}\n`),
                restarts: [SANDBOX_FRONT_CONTAINER],
              },
            ]
          : []),
        ...(hub.embeddings
          ? [{ path: EMBEDDINGS_FILES.bundle, content: embeddingsBundle(), restarts: [EMBEDDINGS_CONTAINER] }]
          : []),
        ...monitoringFiles(
          hub,
          specs,
          routes,
          privateIps,
          cpu.kind === "droplet" ? cpu.privateIp : undefined,
          { ...alertSecrets, hubApiKey: secrets.hubApiKey },
          waits,
          sandbox?.exporterReady ? { privateIp: sandbox.privateIp, exporterReady: sandbox.exporterReady } : undefined,
        ),
        // Provisioning is read at start; dashboards are polled by Grafana, so only those restart it.
        ...grafana.map((f) => ({
          path: f.path,
          content: f.content,
          ...(f.restartsGrafana ? { restarts: [GRAFANA_CONTAINER] } : {}),
        })),
      ],
      ports: gatewayPorts(cpu.kind),
      secrets,
    }),
  );
  return hosts;
}

/**
 * On the gateway node: waits until the GPU node's replicas answer their health checks over the
 * VPC (create), and drains them once the routes file no longer names them (delete). A new
 * private IP (a replaced droplet) replaces the wait: the new replica is awaited before the file
 * moves to it, the old one drained before its droplet goes.
 */
function gpuServingWait(
  node: string,
  gateway: DropletTarget,
  routes: readonly Route[],
  privateIps: pulumi.Output<Record<string, string>>,
  containers: ContainerHost,
): command.remote.Command {
  const backends = privateIps.apply((ips) => gpuBackendAddresses(routes, ips).filter((b) => b.node === node));
  return new command.remote.Command(
    `${node}-serving`,
    {
      // The same login as the gateway node's other commands (infra/containers.ts).
      connection: { ...gateway.ssh.connection, dialErrorLimit: 10 },
      create: backends.apply((b) => backendsReadyScript(b)),
      delete: pulumi.all([backends, gateway.privateIp]).apply(([b, ip]) =>
        backendsDrainScript(b, {
          routesFile: GATEWAY_FILES.dynamic,
          metricsUrl: `http://${ip}:${GATEWAY_METRICS_PORT}/metrics`,
        }),
      ),
      triggers: [backends.apply((b) => b.map((x) => x.url).join(" "))],
    },
    {
      // The replicas must exist before they can answer; on delete, drain before they go.
      dependsOn: [containers, gateway.ready],
      // A little beyond the scripts' own deadlines, so their message, not a Pulumi timeout, explains a failure.
      customTimeouts: {
        create: `${GPU_READY_TIMEOUT_SECONDS / 60 + 5}m`,
        delete: `${GPU_DRAIN_TIMEOUT_SECONDS / 60 + 5}m`,
      },
    },
  );
}

let bundled: string | undefined;
/** Bundled once per process: every stack ships the same gatekeeper. */
function gatekeeperBundle(): string {
  bundled ??= bundleGatekeeper();
  return bundled;
}

let frontBundled: string | undefined;
function sandboxFrontBundle(): string {
  frontBundled ??= bundleSandboxFront();
  return frontBundled;
}

let controllerBundled: string | undefined;
function controllerBundle(): string {
  controllerBundled ??= bundleController();
  return controllerBundled;
}

let embeddingsBundled: string | undefined;
function embeddingsBundle(): string {
  embeddingsBundled ??= bundleEmbeddingsFront();
  return embeddingsBundled;
}

/** The gateway's published ports: 80/443/8100 to the world on a droplet; only 8100 on a laptop. */
export function gatewayPorts(kind: "droplet" | "local"): PublishedPort[] {
  if (kind === "local") return [{ container: "gateway", port: PUBLIC_PORTS.legacy }];
  return [
    ...Object.values(PUBLIC_PORTS).map((port) => ({ container: "gateway", port, onAllInterfaces: true })),
    { container: "gateway", port: GATEWAY_METRICS_PORT },
  ];
}

function recordContainerArtifacts(spec: ServiceSpec): void {
  // The spec as shipped, with secret names (never values).
  recordArtifact({
    kind: "container-spec",
    node: spec.node,
    path: `${spec.node}/containers/${spec.name}.json`,
    content: JSON.stringify(spec, null, 2),
  });
  if (spec.program === "vllm") {
    recordArtifact({
      kind: "vllm-args",
      node: spec.node,
      path: `${spec.node}/containers/${spec.name}.vllm-args.json`,
      content: JSON.stringify(spec.command),
    });
  }
}
