import { parse as parseYaml } from "yaml";
import type { PictureContainer, PictureRoute, PictureScrape } from "./diagram";
import type { PlanArtifact } from "./document";

/**
 * What links the containers of a picture, read from the configuration files the plan rendered:
 * Traefik's routes (who serves which public path) and Prometheus's scrape targets.
 */

interface TraefikDynamic {
  http?: {
    routers?: Record<string, { entryPoints?: string[]; rule?: string; service?: string; middlewares?: string[] }>;
    services?: Record<
      string,
      {
        loadBalancer?: { servers?: { url: string }[] };
        failover?: { service: string; fallback?: string };
        weighted?: { services?: { name: string }[] };
      }
    >;
    middlewares?: Record<string, { forwardAuth?: { address: string } }>;
  };
}
interface TraefikStatic {
  entryPoints?: Record<string, { address?: string }>;
}

const portOf = (address: string | undefined) => Number(/:(\d+)$/.exec(address ?? "")?.[1]);

/**
 * The routes Traefik serves on its published entry points, from the files the plan rendered:
 * each router's paths to the containers its service's servers name (failover fallbacks apart),
 * and each forwardAuth middleware to the container that answers it.
 */
export function gatewayRoutes(
  artifacts: readonly PlanArtifact[],
  containers: readonly PictureContainer[],
  hostOfPrivateIp: (ip: string) => string | undefined,
): PictureRoute[] {
  const dynamicFile = artifacts.find((a) => a.kind === "traefik-dynamic");
  const staticFile = artifacts.find((a) => a.kind === "traefik-static" && a.node === dynamicFile?.node);
  if (!dynamicFile || !staticFile) return [];
  const dynamic = parseYaml(dynamicFile.content) as TraefikDynamic;
  const entryPoints = (parseYaml(staticFile.content) as TraefikStatic).entryPoints ?? {};
  const traefik = containers.find((c) => c.image.startsWith("traefik:"));
  if (!traefik) return [];
  const published = new Set(traefik.published.filter((p) => p.on !== "private").map((p) => p.port));
  const publicEntryPoints = new Set(
    Object.entries(entryPoints)
      .filter(([, ep]) => published.has(portOf(ep.address)))
      .map(([name]) => name),
  );
  const routers = dynamic.http?.routers ?? {};
  const services = dynamic.http?.services ?? {};

  // A server URL names a container by its network alias on the gateway's node, or a GPU node's VPC address and published port.
  const containerAt = (url: string): PictureContainer | undefined => {
    const u = new URL(url);
    const port = Number(u.port || 80);
    const onHost = hostOfPrivateIp(u.hostname);
    if (onHost) return containers.find((c) => c.host === onHost && c.published.some((p) => p.port === port));
    return containers.find((c) => c.host === traefik.host && c.name === u.hostname);
  };
  const serversOf = (
    name: string | undefined,
    seen = new Set<string>(),
  ): { primary: PictureContainer[]; fallback: PictureContainer[] } => {
    const none = { primary: [], fallback: [] };
    if (!name || name.includes("@") || seen.has(name)) return none;
    seen.add(name);
    const s = services[name];
    if (!s) return none;
    if (s.loadBalancer)
      return {
        primary: (s.loadBalancer.servers ?? [])
          .map((x) => containerAt(x.url))
          .filter((c): c is PictureContainer => c !== undefined),
        fallback: [],
      };
    if (s.failover) {
      const main = serversOf(s.failover.service, seen);
      const fb = serversOf(s.failover.fallback, seen);
      return { primary: main.primary, fallback: [...main.fallback, ...fb.primary, ...fb.fallback] };
    }
    const parts = (s.weighted?.services ?? []).map((w) => serversOf(w.name, seen));
    return { primary: parts.flatMap((p) => p.primary), fallback: parts.flatMap((p) => p.fallback) };
  };
  // forwardAuth to Traefik's own entry point (a loopback hop) resolves through the router there.
  const authTargets = (address: string): { targets: PictureContainer[]; scope?: string } => {
    const u = new URL(address);
    const scope = u.searchParams.get("scope") ?? undefined;
    const hop = Object.entries(entryPoints).find(
      ([, ep]) => portOf(ep.address) === Number(u.port) && ["127.0.0.1", "localhost"].includes(u.hostname),
    );
    if (!hop) {
      const direct = containerAt(address);
      return { targets: direct ? [direct] : [], scope };
    }
    const router = Object.values(routers).find(
      (r) => (r.entryPoints ?? []).includes(hop[0]) && pathsOf(r.rule).some((p) => p === u.pathname),
    );
    return { targets: serversOf(router?.service).primary, scope };
  };

  const edges = new Map<string, { from: string; to: string; kind: PictureRoute["kind"]; labels: string[] }>();
  const add = (to: PictureContainer, kind: PictureRoute["kind"], labels: readonly string[]) => {
    const key = `${kind}:${to.id}`;
    const edge = edges.get(key) ?? { from: traefik.id, to: to.id, kind, labels: [] };
    for (const l of labels) if (!edge.labels.includes(l)) edge.labels.push(l);
    edges.set(key, edge);
  };
  for (const router of Object.values(routers)) {
    if (!(router.entryPoints ?? []).some((e) => publicEntryPoints.has(e))) continue;
    const paths = pathsOf(router.rule);
    const { primary, fallback } = serversOf(router.service);
    for (const c of primary) add(c, "route", paths);
    for (const c of fallback) add(c, "fallback", paths);
    for (const m of router.middlewares ?? []) {
      const address = dynamic.http?.middlewares?.[m]?.forwardAuth?.address;
      if (!address) continue;
      const { targets, scope } = authTargets(address);
      for (const c of targets) add(c, "auth", scope ? [scope] : []);
    }
  }
  return [...edges.values()];
}

/** Paths a router rule matches: Path(`x`) as x, PathPrefix(`x`) as x*. */
function pathsOf(rule: string | undefined): string[] {
  return [...(rule ?? "").matchAll(/(PathPrefix|Path)\(`([^`]*)`\)/g)].map((m) =>
    m[1] === "PathPrefix" ? `${m[2]}*` : m[2],
  );
}

interface PrometheusConfig {
  scrape_configs?: {
    job_name: string;
    static_configs?: { targets?: string[] }[];
    file_sd_configs?: { files?: string[] }[];
  }[];
}

/**
 * What Prometheus scrapes, from the files the plan rendered: each job's static targets and the
 * targets in its file_sd files (by file name), resolved to the container with that network alias
 * on Prometheus's node, or the container publishing that port on the node with that address.
 */
export function prometheusScrapes(
  artifacts: readonly PlanArtifact[],
  containers: readonly PictureContainer[],
  hostOfIp: (ip: string) => string | undefined,
): PictureScrape[] {
  const configFile = artifacts.find((a) => a.kind === "prometheus-config");
  const prometheus = containers.find((c) => /(^|\/)prometheus:/.test(c.image));
  if (!configFile || !prometheus) return [];
  const config = parseYaml(configFile.content) as PrometheusConfig;
  const targetFiles = new Map(
    artifacts.filter((a) => a.kind === "prometheus-targets").map((a) => [a.path.split("/").pop(), a.content]),
  );
  // A node's address and port: the container publishing the port, else its one container on the node's network, else the node.
  const onNode = (host: string, port: number): string => {
    const publishing = containers.find((c) => c.host === host && c.published.some((p) => p.port === port));
    const onHostNetwork = containers.filter((c) => c.host === host && c.hostNetwork);
    return publishing?.id ?? (onHostNetwork.length === 1 ? onHostNetwork[0].id : host);
  };
  const edges = new Map<string, { from: string; to: string; jobs: string[] }>();
  for (const job of config.scrape_configs ?? []) {
    const fromFiles = (job.file_sd_configs ?? [])
      .flatMap((f) => f.files ?? [])
      .flatMap((file) => {
        const content = targetFiles.get(file.split("/").pop());
        return content ? (JSON.parse(content) as { targets?: string[] }[]).flatMap((g) => g.targets ?? []) : [];
      });
    for (const target of [...(job.static_configs ?? []).flatMap((g) => g.targets ?? []), ...fromFiles]) {
      const [hostname, portText] = target.split(":");
      const port = Number(portText);
      if (hostname === "localhost" || hostname === "127.0.0.1") continue; // Prometheus itself
      const host = hostOfIp(hostname);
      const to = host
        ? onNode(host, port)
        : containers.find((c) => c.host === prometheus.host && c.name === hostname)?.id;
      if (!to) continue;
      const edge = edges.get(to) ?? { from: prometheus.id, to, jobs: [] };
      if (!edge.jobs.includes(job.job_name)) edge.jobs.push(job.job_name);
      edges.set(to, edge);
    }
  }
  return [...edges.values()];
}
