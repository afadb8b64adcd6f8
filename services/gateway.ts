import { stringify } from "yaml";
import type { HubConfig } from "../stacks/hub-config";
import { CPU_NODE_NAME } from "../stacks/hub-config";
import { GATEKEEPER_CONTAINER, GATEKEEPER_PORT } from "./auth";
import { AUTH_PATH, AUTH_RESPONSE_HEADERS, HEALTH_PATH } from "../programs/gatekeeper/protocol";
import { CPU_CACHE_MOUNT } from "./node-setup";
import { GATEWAY_METRICS_PORT, PUBLIC_PORTS } from "./ports";
import type { Scope } from "../programs/gatekeeper/protocol";
import type { Backend, Route } from "./routes";
import { GPU_OFF_SERVICE, SERVICE_PORTS } from "./routes";
import { ERRORS_IMAGE, TRAEFIK_IMAGE } from "./images";
import type { ServiceSpec } from "./spec";

export { ERRORS_IMAGE, TRAEFIK_IMAGE };

/**
 * The hub's one front door: Traefik v3 on the CPU node, configured by two rendered files, and a
 * tiny nginx that answers "the GPU tier is off" in OpenAI's error format. Everything here is plain
 * data; infra/ writes the files to GATEWAY_DIRS and starts the two containers.
 *
 * Facts this file relies on (looked up 2026-11-26):
 * - Entry point respondingTimeouts defaults: readTimeout 60s (since v2.11.2, traefik/traefik#10602),
 *   idleTimeout 180s, writeTimeout 0 = none (pkg/config/static/static_config.go, RespondingTimeouts.SetDefaults).
 * - serversTransport.forwardingTimeouts defaults: dialTimeout 30s, idleConnTimeout 90s,
 *   responseHeaderTimeout 0 = none (same file, ForwardingTimeouts.SetDefaults).
 * - The buffering middleware buffers the whole response as well as the request, which stalls
 *   server-sent events (docs reference/routing-configuration/http/middlewares/buffering.md "Streaming";
 *   traefik/traefik#12869). Its `disableResponseBuffer` escape hatch is newer than the SchemaStore
 *   schema we validate against, so streaming routes simply get no buffering middleware.
 * - failover relies on the main service's health check; the failover service itself needs none
 *   (docs reference/routing-configuration/http/load-balancing/service.md "Failover").
 * - In-memory rateLimit buckets are per router, not per middleware (traefik/traefik#13706, open):
 *   each route gets its own per-key budget.
 */



const GATEWAY_ROOT = `${CPU_CACHE_MOUNT}/traefik`;

/** Host directories on the CPU node's cache volume: certificates survive a node rebuild. */
export const GATEWAY_DIRS = {
  /** traefik.yml, read once at start. */
  static: `${GATEWAY_ROOT}/static`,
  /** The routes file, watched: route changes reload without a restart. */
  dynamic: `${GATEWAY_ROOT}/dynamic`,
  /** Let's Encrypt account and certificates (acme.json). */
  acme: `${GATEWAY_ROOT}/acme`,
  /** The errors responder's nginx server block. */
  errors: `${GATEWAY_ROOT}/errors`,
} as const;

/**
 * Where those directories appear inside the containers. Directories, not single files, are
 * mounted: a bind-mounted file goes stale when the host replaces it, a directory does not.
 * No mount sits inside another, so Docker never has to create a mount point on a read-only mount.
 */
const IN_CONTAINER = {
  /** Traefik's default search path, so `traefik healthcheck` finds the same file. */
  static: "/etc/traefik",
  dynamic: "/var/lib/traefik/dynamic",
  acme: "/var/lib/traefik/acme",
  nginxConfD: "/etc/nginx/conf.d",
} as const;

export const GATEWAY_CONTAINER = "gateway";
export const ERRORS_CONTAINER = "errors";
const STATIC_FILE = "traefik.yml";

export const ENTRY_POINTS = { web: "web", websecure: "websecure", legacy: "legacy", metrics: "metrics" } as const;
export const CERT_RESOLVER = "letsencrypt";
export const RATE_LIMIT_MIDDLEWARE = "rate-limit";
export const AUTH_HEADER = "Authorization";

/**
 * Client-side timeouts on the public entry points.
 * - readTimeout covers reading the whole request, body included (default 60s since v2.11.2).
 *   50 MB (DOCUMENT_BODY_BYTES) over a 1 Mbit/s uplink takes ~7 min: 10 min leaves margin.
 *   Go's server clears the read deadline once the body is read, so it does not cut long responses.
 * - writeTimeout 0 (the default, stated explicitly): a streamed generation may run for many minutes.
 * - idleTimeout: keep-alive between requests, Traefik's default.
 */
export const RESPONDING_TIMEOUTS = { readTimeout: "600s", writeTimeout: "0s", idleTimeout: "180s" } as const;

/**
 * Backend-side timeouts, for every service (static serversTransport: the file-provider schema we
 * validate against has no `serversTransports`, and loadBalancer has no per-service timeouts).
 * - dialTimeout 5s (default 30s): backends are on the Docker network or the VPC; a dead GPU node
 *   should fail fast so failover answers.
 * - responseHeaderTimeout 15 min (default: none): a non-streaming completion sends its headers only
 *   when done; 32k tokens at ~40 tokens/s is ~14 min. Bounded so a hung backend cannot hold a
 *   connection forever.
 */
export const FORWARDING_TIMEOUTS = { dialTimeout: "5s", responseHeaderTimeout: "900s", idleConnTimeout: "90s" } as const;

/** Active health checks on every backend: the failover switches within about one interval. */
const HEALTH_CHECK = { interval: "10s", timeout: "3s" } as const;

/** OpenAI's error shape, so SDKs surface the message instead of a parse error. */
export const GPU_OFF_ERROR: { readonly error: { readonly message: string; readonly type: string; readonly code: string } } = {
  error: {
    message: "The GPU tier of this inference hub is switched off, so this model is not being served right now. Try again once the operator turns the GPU on.",
    type: "server_error",
    code: "gpu_off",
  },
};

// ---------------------------------------------------------------------------------------------
// Traefik static configuration (traefik.yml)

export function traefikStaticConfig(hub: HubConfig): Record<string, unknown> {
  const { domain, acmeEmail } = hub.gateway;
  if (domain && !acmeEmail) throw new Error(`gateway.domain ${domain} needs acmeEmail: Let's Encrypt requires a contact address. Set acmeEmail, or unset domain for plain HTTP.`);
  const tls = domainTls(hub);
  const publicEntryPoint = (port: number, http?: Record<string, unknown>) => ({
    address: `:${port}`,
    transport: { respondingTimeouts: { ...RESPONDING_TIMEOUTS } },
    ...(http ? { http } : {}),
  });
  return {
    // No version checks or usage reports from a production gateway.
    global: { checkNewVersion: false, sendAnonymousUsage: false },
    log: { level: "INFO", format: "json" },
    accessLog: {
      format: "json",
      fields: {
        defaultMode: "keep",
        headers: {
          // Drop every header unless listed; the API key is kept as a redacted marker so a log
          // still shows whether a key was sent.
          defaultMode: "drop",
          names: { [AUTH_HEADER]: "redact", "User-Agent": "keep", "X-Request-Id": "keep", "Content-Type": "keep", "Content-Length": "keep" },
        },
      },
    },
    entryPoints: {
      // With a domain, port 80 only redirects (and answers the ACME HTTP challenge, whose router outranks the redirect).
      [ENTRY_POINTS.web]: publicEntryPoint(PUBLIC_PORTS.http, tls ? { redirections: { entryPoint: { to: ENTRY_POINTS.websecure, scheme: "https", permanent: true } } } : undefined),
      // Without a domain 443 still listens (the firewall opens it either way) but carries no routers.
      [ENTRY_POINTS.websecure]: publicEntryPoint(PUBLIC_PORTS.https, tls ? { tls } : undefined),
      // The existing hub's clients: TLS with the domain's certificate when there is one, plain HTTP otherwise.
      [ENTRY_POINTS.legacy]: publicEntryPoint(PUBLIC_PORTS.legacy, tls ? { tls } : undefined),
      // Prometheus and /ping; the firewall keeps it inside the VPC.
      [ENTRY_POINTS.metrics]: { address: `:${GATEWAY_METRICS_PORT}` },
    },
    providers: { file: { directory: IN_CONTAINER.dynamic, watch: true } },
    ping: { entryPoint: ENTRY_POINTS.metrics },
    // manualRouting: the routes file decides who reads the metrics (the VPC freely, admins with a key).
    metrics: { prometheus: { entryPoint: ENTRY_POINTS.metrics, manualRouting: true, addEntryPointsLabels: true, addRoutersLabels: true, addServicesLabels: true } },
    serversTransport: { forwardingTimeouts: { ...FORWARDING_TIMEOUTS } },
    ...(domain
      ? {
          certificatesResolvers: {
            [CERT_RESOLVER]: { acme: { email: acmeEmail, storage: `${IN_CONTAINER.acme}/acme.json`, httpChallenge: { entryPoint: ENTRY_POINTS.web } } },
          },
        }
      : {}),
  };
}

/**
 * TLS for the routers and entry points when a domain is set. The certificate is requested for the
 * domain named here rather than from a Host() rule: routers match paths only, so a client that
 * still calls the IP on 8100 is routed (its TLS check fails until it switches to the domain).
 */
function domainTls(hub: HubConfig): { readonly certResolver: string; readonly domains: readonly { readonly main: string }[] } | undefined {
  return hub.gateway.domain ? { certResolver: CERT_RESOLVER, domains: [{ main: hub.gateway.domain }] } : undefined;
}

// ---------------------------------------------------------------------------------------------
// Traefik dynamic configuration (the watched routes file)

const ERRORS_URL = `http://${ERRORS_CONTAINER}:${SERVICE_PORTS.errors}`;
const ERRORS_HEALTH_PATH = "/health";

export function traefikDynamicConfig(hub: HubConfig, routes: readonly Route[], privateIps: Readonly<Record<string, string>>): Record<string, unknown> {
  const tls = domainTls(hub);
  // With a domain, plain HTTP only redirects; without one, 443 has no certificate to offer.
  const entryPoints = tls ? [ENTRY_POINTS.websecure, ENTRY_POINTS.legacy] : [ENTRY_POINTS.web, ENTRY_POINTS.legacy];
  const routers: Record<string, unknown> = {};
  const services = new ServiceTable();
  const middlewares: Record<string, unknown> = {
    // Per client address, before any key is checked: a flood of made-up keys never reaches the
    // gatekeeper (and its audit log) faster than this.
    [IP_RATE_LIMIT_MIDDLEWARE]: {
      rateLimit: { average: hub.settings.rateLimitPerMinute * IP_RATE_FACTOR, period: "1m", burst: hub.settings.rateLimitBurst * IP_RATE_FACTOR, sourceCriterion: { ipStrategy: { depth: 0 } } },
    },
    [RATE_LIMIT_MIDDLEWARE]: {
      rateLimit: {
        // rateLimitPerMinute per API key; requests without a key share one bucket (the backends refuse them anyway).
        average: hub.settings.rateLimitPerMinute,
        period: "1m",
        burst: hub.settings.rateLimitBurst,
        sourceCriterion: { requestHeaderName: AUTH_HEADER },
      },
    },
  };

  for (const route of routes) {
    // Rate limit first, so a client over its budget is refused before its upload is buffered;
    // then the gatekeeper, which fails closed: no answer from it, no request through.
    const chain = [IP_RATE_LIMIT_MIDDLEWARE, RATE_LIMIT_MIDDLEWARE, authMiddleware(route.scope, middlewares)];
    if (!route.streaming) {
      const name = `${route.name}-body-limit`;
      // Buffering holds the whole response too, so only non-streaming routes may have it.
      middlewares[name] = { buffering: { maxRequestBodyBytes: route.maxBodyBytes } };
      chain.push(name);
    }
    if (route.rewritePrefix) {
      const name = `${route.name}-rewrite`;
      middlewares[name] = { replacePathRegex: { regex: `^${escapeRegex(route.rewritePrefix)}(.*)`, replacement: "/v1/$1" } };
      chain.push(name);
    }
    routers[route.name] = {
      entryPoints: [...entryPoints],
      rule: routeRule(route),
      service: routeService(route, services, privateIps),
      middlewares: chain,
      ...(tls ? { tls: { certResolver: tls.certResolver, domains: tls.domains.map((d) => ({ ...d })) } } : {}),
    };
  }
  // Prometheus metrics: freely inside the VPC on :8082/metrics, and through the public entry
  // points at /admin/metrics for keys with the admin scope.
  routers[METRICS_VPC_ROUTER] = { entryPoints: [ENTRY_POINTS.metrics], rule: "Path(`/metrics`)", service: PROMETHEUS_SERVICE };
  middlewares[METRICS_ADMIN_REWRITE] = { replacePath: { path: "/metrics" } };
  routers[METRICS_ADMIN_ROUTER] = {
    entryPoints: [...entryPoints],
    rule: `Path(\`${ADMIN_METRICS_PATH}\`)`,
    service: PROMETHEUS_SERVICE,
    middlewares: [IP_RATE_LIMIT_MIDDLEWARE, RATE_LIMIT_MIDDLEWARE, authMiddleware("admin", middlewares), METRICS_ADMIN_REWRITE],
    ...(tls ? { tls: { certResolver: tls.certResolver, domains: tls.domains.map((d) => ({ ...d })) } } : {}),
  };

  // The gatekeeper's health, checked by Traefik itself (traefik_service_server_up in its metrics)
  // and readable inside the VPC at :8082/gatekeeper/healthz. forwardAuth does not use this service.
  routers[GATEKEEPER_HEALTH_ROUTER] = {
    entryPoints: [ENTRY_POINTS.metrics],
    rule: "Path(`/gatekeeper/healthz`)",
    service: services.add(GATEKEEPER_CONTAINER, { loadBalancer: { servers: [{ url: `http://${GATEKEEPER_CONTAINER}:${GATEKEEPER_PORT}` }], healthCheck: { path: HEALTH_PATH, ...HEALTH_CHECK } } }),
    middlewares: [GATEKEEPER_HEALTH_REWRITE],
  };
  middlewares[GATEKEEPER_HEALTH_REWRITE] = { replacePath: { path: HEALTH_PATH } };
  return { http: { routers, services: services.entries, middlewares } };
}

export const IP_RATE_LIMIT_MIDDLEWARE = "rate-limit-ip";
export const GATEKEEPER_HEALTH_ROUTER = "gatekeeper-health";
export const METRICS_VPC_ROUTER = "metrics-vpc";
export const METRICS_ADMIN_ROUTER = "metrics-admin";
export const ADMIN_METRICS_PATH = "/admin/metrics";
const METRICS_ADMIN_REWRITE = "metrics-admin-path";
/** Traefik's built-in Prometheus handler, routable because of manualRouting. */
export const PROMETHEUS_SERVICE = "prometheus@internal";
const GATEKEEPER_HEALTH_REWRITE = "gatekeeper-health-path";
/** One address may carry several keys (an office behind NAT): ten keys' worth. */
export const IP_RATE_FACTOR = 10;

export { AUTH_RESPONSE_HEADERS };
/** Only what the gatekeeper needs to decide: no cookies, no bodies. */
export const AUTH_REQUEST_HEADERS = ["Authorization", "X-Api-Key", "X-Request-Id", "User-Agent"] as const;

function authMiddleware(scope: Scope, middlewares: Record<string, unknown>): string {
  const name = `auth-${scope}`;
  middlewares[name] = {
    forwardAuth: {
      address: `http://${GATEKEEPER_CONTAINER}:${GATEKEEPER_PORT}${AUTH_PATH}?scope=${scope}`,
      authResponseHeaders: [...AUTH_RESPONSE_HEADERS],
      authRequestHeaders: [...AUTH_REQUEST_HEADERS],
      // Traefik sets X-Forwarded-For from the connection; a client cannot forge its address.
      trustForwardHeader: false,
    },
  };
  return name;
}

/** Service names are shared between routes (two routes may fall back to gpu-off); a name means one definition. */
class ServiceTable {
  readonly entries: Record<string, unknown> = {};
  add(name: string, definition: Record<string, unknown>): string {
    const existing = this.entries[name];
    if (existing !== undefined && JSON.stringify(existing) !== JSON.stringify(definition)) {
      throw new Error(`Traefik service ${name} is defined twice with different backends; give the routes' backends distinct service names.`);
    }
    this.entries[name] = definition;
    return name;
  }
}

/** The service a route's router points at: the primaries, a failover to the fallback, or the fallback alone. */
function routeService(route: Route, services: ServiceTable, privateIps: Readonly<Record<string, string>>): string {
  const fallback = route.fallback === undefined ? undefined : route.fallback === GPU_OFF_SERVICE ? gpuOffService(services) : backendService(route.fallback.service, [route.fallback], services, privateIps);
  if (route.primary.length === 0) {
    if (!fallback) throw new Error(`Route ${route.name} has no backend: no primary replica and no fallback. Give it a fallback (a CPU stand-in or "${GPU_OFF_SERVICE}").`);
    // GPU off: no failover to health-check, the fallback answers directly.
    return fallback;
  }
  if (!fallback) return backendService(route.name, route.primary, services, privateIps);
  const main = backendService(`${route.name}-primary`, route.primary, services, privateIps);
  // Failover switches on the main service's health check (present on every loadBalancer here).
  return services.add(route.name, { failover: { service: main, fallback } });
}

function backendService(name: string, backends: readonly Backend[], services: ServiceTable, privateIps: Readonly<Record<string, string>>): string {
  // A lone container with nowhere to fail over to gains nothing from a probe (Docker restarts it),
  // and some answer /health only with the API key, which must not be written into this file.
  if (backends.length === 1 && backends[0].address.kind === "container") {
    return services.add(name, { loadBalancer: { servers: [{ url: backendUrl(backends[0], privateIps) }] } });
  }
  const paths = new Set(backends.map((b) => b.healthPath));
  if (paths.size !== 1) throw new Error(`Traefik service ${name}: its replicas answer health checks on different paths (${[...paths].join(", ")}); one loadBalancer has one health check path.`);
  return services.add(name, {
    loadBalancer: {
      servers: backends.map((b) => ({ url: backendUrl(b, privateIps) })),
      healthCheck: { path: backends[0].healthPath, ...HEALTH_CHECK },
    },
  });
}

function gpuOffService(services: ServiceTable): string {
  return services.add(GPU_OFF_SERVICE, { loadBalancer: { servers: [{ url: ERRORS_URL }], healthCheck: { path: ERRORS_HEALTH_PATH, ...HEALTH_CHECK } } });
}

function backendUrl(backend: Backend, privateIps: Readonly<Record<string, string>>): string {
  if (backend.address.kind === "container") return `http://${backend.address.container}:${backend.port}`;
  const ip = privateIps[backend.address.node];
  if (!ip) {
    const known = Object.keys(privateIps);
    throw new Error(`Backend ${backend.service} runs on node ${backend.address.node}, whose private IP was not given (given: ${known.length ? known.join(", ") : "none"}). Pass the VPC address of every active GPU node.`);
  }
  return `http://${ip}:${backend.port}`;
}

function routeRule(route: Route): string {
  const matcher = route.prefix ? "PathPrefix" : "Path";
  for (const p of route.paths) {
    // A backtick would end Traefik's rule literal early.
    if (!p.startsWith("/") || p.includes("`")) throw new Error(`Route ${route.name}: path ${JSON.stringify(p)} must start with "/" and contain no backtick.`);
  }
  return route.paths.map((p) => `${matcher}(\`${p}\`)`).join(" || ");
}

const escapeRegex = (text: string) => text.replace(/[\\.+*?()|[\]{}^$]/g, "\\$&");

/**
 * YAML for Traefik: long rules stay on one line, shared objects are written out rather than
 * aliased, and string values are double-quoted so no YAML 1.1 reader takes ":80", "0s" or a
 * bare word for anything but a string.
 */
export function renderYaml(doc: unknown): string {
  return stringify(doc, { lineWidth: 0, aliasDuplicateObjects: false, defaultStringType: "QUOTE_DOUBLE", defaultKeyType: "PLAIN" });
}

// ---------------------------------------------------------------------------------------------
// Containers

export function gatewaySpec(hub: HubConfig): ServiceSpec {
  return {
    name: GATEWAY_CONTAINER,
    role: "gateway",
    program: "traefik",
    node: CPU_NODE_NAME,
    image: TRAEFIK_IMAGE,
    // The image's entrypoint prepends `traefik` to arguments that start with "-".
    command: [`--configFile=${IN_CONTAINER.static}/${STATIC_FILE}`],
    env: {},
    // The gateway checks no keys itself (vLLM and the CPU services do), so it holds no secret.
    secretEnv: {},
    port: PUBLIC_PORTS.http,
    mounts: [
      { hostPath: GATEWAY_DIRS.static, containerPath: IN_CONTAINER.static, readOnly: true },
      { hostPath: GATEWAY_DIRS.dynamic, containerPath: IN_CONTAINER.dynamic, readOnly: true },
      // Traefik writes acme.json (mode 600) itself; only needed when a certificate is requested.
      ...(hub.gateway.domain ? [{ hostPath: GATEWAY_DIRS.acme, containerPath: IN_CONTAINER.acme }] : []),
    ],
    memoryLimitMiB: 256,
    health: {
      path: "/ping",
      // The traefik binary calls /ping on the entry point named in traefik.yml (metrics, 8082).
      test: ["CMD", "traefik", "healthcheck", "--ping"],
      intervalSeconds: 10,
      timeoutSeconds: 5,
      startPeriodSeconds: 20,
      retries: 3,
    },
  };
}

export function errorsSpec(_hub: HubConfig): ServiceSpec {
  return {
    name: ERRORS_CONTAINER,
    role: "errors",
    program: "nginx",
    node: CPU_NODE_NAME,
    image: ERRORS_IMAGE,
    // The image's own CMD, stated so the spec does not depend on Docker's empty-command handling.
    command: ["nginx", "-g", "daemon off;"],
    env: {},
    secretEnv: {},
    port: SERVICE_PORTS.errors,
    // Replaces the stock conf.d (and its port-80 default server) with ours.
    mounts: [{ hostPath: GATEWAY_DIRS.errors, containerPath: IN_CONTAINER.nginxConfD, readOnly: true }],
    memoryLimitMiB: 64,
    health: {
      path: ERRORS_HEALTH_PATH,
      // busybox wget is in nginx:alpine; curl is not guaranteed in every variant.
      test: ["CMD", "wget", "-q", "-O", "/dev/null", `http://127.0.0.1:${SERVICE_PORTS.errors}${ERRORS_HEALTH_PATH}`],
      intervalSeconds: 10,
      timeoutSeconds: 3,
      startPeriodSeconds: 5,
      retries: 3,
    },
  };
}

// ---------------------------------------------------------------------------------------------
// nginx configuration, from a structured object

/** A simple directive: name and arguments (`["return", 503, "..."]`). */
export type NginxDirective = readonly [string, ...(string | number)[]];
/** A block: `name args { body }`. */
export interface NginxBlock {
  readonly block: string;
  readonly args?: readonly string[];
  readonly body: readonly NginxNode[];
}
export type NginxNode = NginxDirective | NginxBlock;

/** The gpu-off responder: one server, every path a 503 in OpenAI's error format, plus a health path. */
export const ERRORS_NGINX: readonly NginxNode[] = [
  {
    block: "server",
    body: [
      ["listen", SERVICE_PORTS.errors],
      ["server_tokens", "off"],
      // `return` with a text body uses default_type as the Content-Type.
      ["default_type", "application/json"],
      { block: "location", args: ["=", ERRORS_HEALTH_PATH], body: [["return", 200, JSON.stringify({ status: "ok" })]] },
      { block: "location", args: ["/"], body: [["return", 503, JSON.stringify(GPU_OFF_ERROR)]] },
    ],
  },
];

export function errorsNginxConf(): string {
  return renderNginxConf(ERRORS_NGINX);
}

/** nginx configuration text for a list of directives and blocks. */
export function renderNginxConf(nodes: readonly NginxNode[]): string {
  return `${renderNginx(nodes, 0)}\n`;
}

function renderNginx(nodes: readonly NginxNode[], depth: number): string {
  const pad = "    ".repeat(depth);
  return nodes
    .map((node) => {
      if (isDirective(node)) return `${pad}${node.map(nginxToken).join(" ")};`;
      const head = [node.block, ...(node.args ?? []).map(nginxToken)].join(" ");
      return `${pad}${head} {\n${renderNginx(node.body, depth + 1)}\n${pad}}`;
    })
    .join("\n");
}

const isDirective = (node: NginxNode): node is NginxDirective => Array.isArray(node);

/**
 * One nginx token. Plain words stay bare; anything else is single-quoted, where nginx turns `\'`
 * into `'` and `\\` into `\` (ngx_conf_file.c). `$` is refused: nginx would expand it as a variable
 * in `return` text and has no escape for it.
 */
function nginxToken(value: string | number): string {
  const text = String(value);
  if (text.includes("$")) throw new Error(`nginx value ${JSON.stringify(text)} contains "$", which nginx would expand as a variable.`);
  if (/^[A-Za-z0-9_./:=@*+-]+$/.test(text)) return text;
  return `'${text.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
}
