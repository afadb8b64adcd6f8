import * as pulumi from "@pulumi/pulumi";
import { GATEKEEPER_CONTAINER, GATEKEEPER_FILES } from "../services/auth";
import { bundleGatekeeper } from "../programs/gatekeeper/bundle";
import { GATEWAY_DIRS, errorsNginxConf, renderYaml, traefikDynamicConfig, traefikStaticConfig } from "../services/gateway";
import { hubServiceSpecs } from "../services/index";
import { GATEWAY_METRICS_PORT, PUBLIC_PORTS } from "../services/ports";
import { routeTable } from "../services/routes";
import type { SecretName, ServiceSpec } from "../services/spec";
import type { HubConfig } from "../stacks/hub-config";
import { recordArtifact } from "./artifacts";
import { ContainerHost, DropletTarget, LocalTarget, PublishedPort } from "./containers";

export const GATEWAY_FILES = {
  static: `${GATEWAY_DIRS.static}/traefik.yml`,
  dynamic: `${GATEWAY_DIRS.dynamic}/routes.yml`,
  errors: `${GATEWAY_DIRS.errors}/default.conf`,
};

/** Containers a spec list runs on each node, with the rendered files each one needs. */
export function deployServices(hub: HubConfig, cpu: DropletTarget | LocalTarget, gpuNodes: ReadonlyMap<string, DropletTarget>, secrets: Readonly<Record<SecretName, pulumi.Output<string>>>, apiKeys: pulumi.Output<string>): Map<string, ContainerHost> {
  const specs = hubServiceSpecs(hub);
  const onNode = (node: string) => specs.filter((s) => s.node === node);
  for (const spec of specs) recordContainerArtifacts(spec);

  const routes = routeTable(hub);
  const privateIps = pulumi.all(Object.fromEntries([...gpuNodes].map(([name, node]) => [name, pulumi.output(node.privateIp)])) as Record<string, pulumi.Output<string>>);
  const staticConfig = renderYaml(traefikStaticConfig(hub));
  const dynamicConfig = privateIps.apply((ips) => renderYaml(traefikDynamicConfig(hub, routes, ips)));
  const nginxConf = errorsNginxConf();
  recordArtifact({ kind: "traefik-static", node: "cpu", path: "cpu/traefik/traefik.yml", content: staticConfig });
  recordArtifact({ kind: "traefik-dynamic", node: "cpu", path: "cpu/traefik/dynamic/routes.yml", content: dynamicConfig });
  recordArtifact({ kind: "errors-nginx", node: "cpu", path: "cpu/errors/default.conf", content: nginxConf });

  const hosts = new Map<string, ContainerHost>();
  hosts.set(
    "cpu",
    new ContainerHost("cpu-containers", {
      target: cpu,
      services: onNode("cpu"),
      files: [
        // Traefik reads its static config only at start; the dynamic file is watched and reloads live.
        { path: GATEWAY_FILES.static, content: staticConfig, restarts: ["gateway"] },
        { path: GATEWAY_FILES.dynamic, content: dynamicConfig },
        { path: GATEWAY_FILES.errors, content: nginxConf, restarts: ["errors"] },
        // The gatekeeper runs from one bundled file; the keys file is watched and reloads live.
        { path: GATEKEEPER_FILES.bundle, content: gatekeeperBundle(), restarts: [GATEKEEPER_CONTAINER] },
        { path: GATEKEEPER_FILES.keys, content: apiKeys },
      ],
      ports: gatewayPorts(cpu.kind),
      secrets,
    }),
  );
  for (const [name, node] of gpuNodes) {
    hosts.set(name, new ContainerHost(`${name}-containers`, { target: node, services: onNode(name), secrets }));
  }
  return hosts;
}

let bundled: string | undefined;
/** Bundled once per process: every stack ships the same gatekeeper. */
function gatekeeperBundle(): string {
  bundled ??= bundleGatekeeper();
  return bundled;
}

/** The gateway's published ports: 80/443/8100 to the world on a droplet; only 8100 on a laptop. */
export function gatewayPorts(kind: "droplet" | "local"): PublishedPort[] {
  if (kind === "local") return [{ container: "gateway", port: PUBLIC_PORTS.legacy }];
  return [...Object.values(PUBLIC_PORTS).map((port) => ({ container: "gateway", port, onAllInterfaces: true })), { container: "gateway", port: GATEWAY_METRICS_PORT }];
}

function recordContainerArtifacts(spec: ServiceSpec): void {
  // The spec as shipped, with secret names (never values).
  recordArtifact({ kind: "container-spec", node: spec.node, path: `${spec.node}/containers/${spec.name}.json`, content: JSON.stringify(spec, null, 2) });
  if (spec.program === "vllm") {
    recordArtifact({ kind: "vllm-args", node: spec.node, path: `${spec.node}/containers/${spec.name}.vllm-args.json`, content: JSON.stringify(spec.command) });
  }
}
