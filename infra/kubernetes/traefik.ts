import type { HubConfig } from "../../stacks/hub-config";
import { GATEKEEPER_CA_FILE, traefikDynamicConfig, traefikStaticConfig, ENTRY_POINTS } from "../../services/gateway";
import type { Route } from "../../services/routes";
import { GATEKEEPER_TLS_SECRET, labelsFor, KubeObject, NAMESPACE } from "./model";

/**
 * The gateway on Kubernetes: the same Traefik, the same route table. The droplet tiers hand
 * Traefik one file (services/gateway.ts traefikDynamicConfig); here that same configuration is
 * rendered as Traefik's Kubernetes CRDs: every router an IngressRoute, every middleware a
 * Middleware, every plain backend a Kubernetes Service reference. What the CRDs cannot say stays
 * in a small file-provider file beside them: services with active health checks (the GPU
 * replicas and their failover to the CPU stand-in), which Traefik's CRDs offer for ExternalName
 * services only (kubernetes-crd-definition-v1.yml, TraefikService "healthCheck").
 */

export const TRAEFIK_CRD_GROUP = "traefik.io/v1alpha1";
/** Traefik's provider names, as its API and metrics label routers, services and middlewares. */
export const PROVIDERS = { crd: "kubernetescrd", file: "file", internal: "internal" } as const;

/**
 * The load balancer speaks PROXY protocol to Traefik so the per-address limit sees the client,
 * not the load balancer (DigitalOcean's `do-loadbalancer-enable-proxy-protocol`); Traefik takes
 * the header only from the cluster's private ranges.
 */
export const PROXY_PROTOCOL_TRUSTED = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"] as const;
export const LOAD_BALANCER_ANNOTATIONS = {
  "service.beta.kubernetes.io/do-loadbalancer-enable-proxy-protocol": "true",
} as const;

/** traefik.yml for the cluster: the droplet tiers' static configuration with the CRD provider beside the file provider. */
export function kubernetesTraefikStatic(hub: HubConfig): Record<string, unknown> {
  const base = traefikStaticConfig(hub) as {
    entryPoints: Record<string, Record<string, unknown>>;
    providers: { file: Record<string, unknown> };
  };
  const entryPoints = { ...base.entryPoints };
  for (const name of [ENTRY_POINTS.web, ENTRY_POINTS.websecure])
    entryPoints[name] = { ...entryPoints[name], proxyProtocol: { trustedIPs: [...PROXY_PROTOCOL_TRUSTED] } };
  return {
    ...base,
    entryPoints,
    providers: {
      ...base.providers,
      // Only this namespace, and no reference into another: the hub's objects are all there.
      kubernetesCRD: {
        namespaces: [NAMESPACE],
        allowCrossNamespace: false,
        allowExternalNameServices: false,
        allowEmptyServices: true,
      },
    },
  };
}

interface LoadBalancer {
  readonly servers: readonly { readonly url: string }[];
  readonly healthCheck?: unknown;
}
interface FileService {
  readonly loadBalancer?: LoadBalancer;
  readonly failover?: { readonly service: string; readonly fallback: string };
}
interface FileRouter {
  readonly entryPoints: readonly string[];
  readonly rule: string;
  readonly service: string;
  readonly middlewares?: readonly string[];
  readonly priority?: number;
  readonly tls?: { readonly certResolver: string; readonly domains: readonly { readonly main: string }[] };
}
interface DynamicConfig {
  readonly http: {
    readonly routers: Record<string, FileRouter>;
    readonly services: Record<string, FileService>;
    readonly middlewares: Record<string, Record<string, unknown>>;
  };
}

/** A Kubernetes Service reference from a file-provider URL (`http://<service>:<port>`), or undefined for anything else. */
function serviceRef(url: string): { name: string; port: number } | undefined {
  const m = /^http:\/\/([a-z0-9]([-a-z0-9]*[a-z0-9])?):(\d+)\/?$/.exec(url);
  return m ? { name: m[1], port: Number(m[3]) } : undefined;
}

/** A plain service: one server, no health check: the CRDs say it as a Service reference. */
function plainRef(service: FileService | undefined): { name: string; port: number } | undefined {
  const lb = service?.loadBalancer;
  if (!lb || lb.healthCheck !== undefined || lb.servers.length !== 1 || service?.failover) return undefined;
  return serviceRef(lb.servers[0].url);
}

export interface TraefikKubernetesRendering {
  readonly ingressRoutes: KubeObject[];
  readonly middlewares: KubeObject[];
  /** The file-provider remainder: services the CRDs cannot hold, and what they name. */
  readonly fileConfig: { readonly http: { readonly services: Record<string, FileService> } };
}

/**
 * The route table as Traefik's CRDs. `gpuService` is the Kubernetes Service the GPU replicas sit
 * behind (their "private address" in the droplet rendering).
 */
export function traefikKubernetesRendering(
  hub: HubConfig,
  routes: readonly Route[],
  gpuAddresses: Readonly<Record<string, string>>,
): TraefikKubernetesRendering {
  const dynamic = traefikDynamicConfig(hub, routes, gpuAddresses) as unknown as DynamicConfig;
  const { routers, services, middlewares } = dynamic.http;

  // Services the file provider keeps: every one that is not plain, and everything they name.
  const kept = new Set<string>();
  const keep = (name: string) => {
    if (kept.has(name) || name.includes("@")) return;
    kept.add(name);
    const failover = services[name]?.failover;
    if (failover) for (const n of [failover.service, failover.fallback]) keep(n);
  };
  for (const [name, service] of Object.entries(services)) if (!plainRef(service)) keep(name);

  const serviceFor = (name: string): Record<string, unknown> => {
    if (name.includes("@")) return { name, kind: "TraefikService" };
    if (kept.has(name)) return { name: `${name}@${PROVIDERS.file}`, kind: "TraefikService" };
    const ref = plainRef(services[name]);
    if (!ref) throw new Error(`Traefik service ${name} is neither plain nor kept in the file provider`);
    return { name: ref.name, port: ref.port };
  };

  const meta = (name: string, component: string) => ({
    name,
    namespace: NAMESPACE,
    labels: labelsFor(name, component),
  });
  const middlewareObjects: KubeObject[] = Object.entries(middlewares).map(([name, definition]) => ({
    apiVersion: TRAEFIK_CRD_GROUP,
    kind: "Middleware",
    metadata: meta(name, "gateway-middleware"),
    spec: crdMiddleware(name, definition, serviceFor),
  }));
  const ingressRoutes: KubeObject[] = Object.entries(routers).map(([name, router]) => ({
    apiVersion: TRAEFIK_CRD_GROUP,
    kind: "IngressRoute",
    metadata: meta(name, "gateway-route"),
    spec: {
      entryPoints: [...router.entryPoints],
      routes: [
        {
          match: router.rule,
          kind: "Rule",
          ...(router.priority !== undefined ? { priority: router.priority } : {}),
          ...(router.middlewares?.length ? { middlewares: router.middlewares.map((m) => ({ name: m })) } : {}),
          services: [serviceFor(router.service)],
        },
      ],
      ...(router.tls
        ? { tls: { certResolver: router.tls.certResolver, domains: router.tls.domains.map((d) => ({ main: d.main })) } }
        : {}),
    },
  }));
  const fileServices = Object.fromEntries([...kept].sort().map((name) => [name, services[name]]));
  return { ingressRoutes, middlewares: middlewareObjects, fileConfig: { http: { services: fileServices } } };
}

/**
 * A file-provider middleware as a Middleware spec: the same fields, except that `errors` names a
 * Kubernetes Service and forwardAuth's pinned certificate is a Secret (the CRD has no file path:
 * `tls.caSecret`, model.ts GATEKEEPER_TLS_SECRET).
 */
function crdMiddleware(
  name: string,
  definition: Record<string, unknown>,
  serviceFor: (name: string) => Record<string, unknown>,
): Record<string, unknown> {
  const [type, ...more] = Object.keys(definition);
  if (!type || more.length)
    throw new Error(
      `middleware ${name} must have exactly one type, has ${Object.keys(definition).join(", ") || "none"}`,
    );
  if (type === "forwardAuth")
    return { forwardAuth: crdForwardAuth(name, definition.forwardAuth as Record<string, unknown>) };
  if (type !== "errors") return definition;
  const errors = definition.errors as { service: string } & Record<string, unknown>;
  const service = serviceFor(errors.service);
  if (service.kind === "TraefikService")
    throw new Error(`middleware ${name}: the errors service ${errors.service} must be a plain Kubernetes Service`);
  return { errors: { ...errors, service } };
}

function crdForwardAuth(name: string, forwardAuth: Record<string, unknown>): Record<string, unknown> {
  const { tls, ...rest } = forwardAuth as { tls?: Record<string, unknown> };
  if (tls === undefined) return forwardAuth;
  const { ca, ...otherTls } = tls;
  if (ca !== GATEKEEPER_CA_FILE.container || Object.keys(otherTls).length) {
    throw new Error(
      `middleware ${name}: forwardAuth tls ${JSON.stringify(tls)} has no Kubernetes form here; only the gatekeeper's pinned certificate (${GATEKEEPER_CA_FILE.container}) does`,
    );
  }
  return { ...rest, tls: { caSecret: GATEKEEPER_TLS_SECRET.name } };
}
