import { stringify } from "yaml";
import type { HubConfig } from "../stacks/hub-config";
import { CPU_NODE_NAME } from "../stacks/hub-config";
import { GATEKEEPER_CONTAINER, GATEKEEPER_PORT, GATEKEEPER_TLS_PORT, ipRateLimit } from "./auth";
import {
  ADMIN_KEYS_PATH,
  ADMIN_STATUS_PATH,
  AUTH_PATH,
  AUTH_RESPONSE_HEADERS,
  HEALTH_PATH,
} from "../programs/gatekeeper/protocol";
import { CPU_CACHE_MOUNT } from "./node-setup";
import { GATEWAY_METRICS_PORT, PUBLIC_PORTS } from "./ports";
import type { Scope } from "../programs/gatekeeper/protocol";
import type { Backend, Route } from "./routes";
import {
  AUTOSCALER_CONTAINER,
  autoscalerRuns,
  DOCUMENTS_ASYNC_HINT,
  DOCUMENTS_ROUTE,
  GPU_OFF_SERVICE,
  SERVICE_PORTS,
} from "./routes";
import { CONTROLLER_PORT, STATUS_PATH } from "../programs/autoscaler/controller/contract";
import { ERRORS_IMAGE, TRAEFIK_IMAGE } from "./images";
import type { ServiceSpec } from "./spec";
import { BACKEND_HEADER, GPU_OFF_BACKEND_NAME } from "./backend-header";

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
 *   the per-address limit of the API routes is the gatekeeper's (one budget across them all);
 *   only the two routers that never ask it (unknown paths, gRPC) carry Traefik's rateLimit.
 * - forwardAuth's client is Go's default transport (pkg/middlewares/auth/forward.go): at most two
 *   idle HTTP/1.1 connections per address, so under load a connection per request; over TLS it
 *   speaks HTTP/2 on one kept-alive connection. A call that fails (refused, reset, timed out)
 *   becomes Traefik's empty 500; a non-2xx answer goes to the client as the gatekeeper sent it.
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

/**
 * The gatekeeper's certificate (public), which Traefik pins for forwardAuth: beside traefik.yml,
 * read when the middlewares are built, so a renewed certificate restarts Traefik (infra/services.ts).
 */
export const GATEKEEPER_CA_FILE = {
  host: `${GATEWAY_DIRS.static}/gatekeeper-ca.pem`,
  container: `${IN_CONTAINER.static}/gatekeeper-ca.pem`,
} as const;

export const GATEWAY_CONTAINER = "gateway";
export const ERRORS_CONTAINER = "errors";
const STATIC_FILE = "traefik.yml";

export const ENTRY_POINTS = { web: "web", websecure: "websecure", legacy: "legacy", metrics: "metrics" } as const;
export const CERT_RESOLVER = "letsencrypt";
export const AUTH_HEADER = "Authorization";

/**
 * Client-side timeouts on the public entry points.
 * - readTimeout covers reading the whole request, body included (default 60s since v2.11.2).
 *   50 MB (DOCUMENT_BODY_BYTES) over a 1 Mbit/s uplink takes ~7 min: 10 min leaves margin.
 *   Once the body is read it does not cut a long response (checked against the built binary: an
 *   11 s stream passed a 5 s readTimeout).
 * - writeTimeout bounds each response from the end of its request headers (Go's net/http sets it
 *   per request): a 5 s writeTimeout cut an 11 s stream. 30 min = the 15 min a non-streaming
 *   completion may take to start (FORWARDING_TIMEOUTS) plus as long again, so a stream outlives
 *   any real generation yet a stuck one cannot hold a connection forever.
 * - idleTimeout: keep-alive between requests, Traefik's default.
 */
export const RESPONDING_TIMEOUTS = { readTimeout: "600s", writeTimeout: "1800s", idleTimeout: "180s" } as const;

/**
 * Backend-side timeouts, for every service (static serversTransport: the file-provider schema we
 * validate against has no `serversTransports`, and loadBalancer has no per-service timeouts).
 * - dialTimeout 5s (default 30s): backends are on the Docker network or the VPC; a dead GPU node
 *   should fail fast so failover answers.
 * - responseHeaderTimeout 15 min (default: none): a non-streaming completion sends its headers only
 *   when done; 32k tokens at ~40 tokens/s is ~14 min. Bounded so a hung backend cannot hold a
 *   connection forever.
 */
export const FORWARDING_TIMEOUTS = {
  dialTimeout: "5s",
  responseHeaderTimeout: "900s",
  idleConnTimeout: "90s",
} as const;

/**
 * What the access log keeps: a positive list, so no text a client chose can reach it. Dropped
 * with everything else: the path and query (a key pasted into a URL), the Host and the method
 * (any token a client sends), ClientUsername (a Basic credential's user part) and every header
 * but the two the gatekeeper sets. Request headers are logged as they are when the request ends
 * (accesslog/logger.go keeps the live header map): X-Request-Id and X-Hub-Key-Id are then the
 * gatekeeper's (clients' own are stripped), so a line joins its audit row, which has the method
 * and the path with key-like segments redacted, and adds the router, status and durations the
 * gatekeeper cannot see. Traefik matches field names in lower case (AccessLogFields.Keep).
 */
export const ACCESS_LOG_FIELDS = {
  defaultMode: "drop",
  names: Object.fromEntries(
    [
      "StartUTC",
      "Duration",
      "OriginDuration",
      "Overhead",
      "RouterName",
      "ServiceName",
      "entryPointName",
      "RequestProtocol",
      "RequestScheme",
      "RequestContentSize",
      "OriginStatus",
      "OriginContentSize",
      "DownstreamStatus",
      "DownstreamContentSize",
      "RetryAttempts",
      "ClientHost",
      "TLSVersion",
    ].map((f) => [f, "keep"]),
  ),
  headers: { defaultMode: "drop", names: { "X-Request-Id": "keep", "X-Hub-Key-Id": "keep" } },
} as const;

/** Active health checks on every backend: the failover switches within about one interval. */
const HEALTH_CHECK = { interval: "10s", timeout: "3s" } as const;

/** OpenAI's error shape, so SDKs surface the message instead of a parse error. */
export const GPU_OFF_ERROR: {
  readonly error: { readonly message: string; readonly type: string; readonly code: string };
} = {
  error: {
    message:
      "The GPU tier of this inference hub is switched off, so this model is not being served right now. Try again once the operator turns the GPU on.",
    type: "server_error",
    code: "gpu_off",
  },
};

// ---------------------------------------------------------------------------------------------
// Traefik static configuration (traefik.yml)

export function traefikStaticConfig(hub: HubConfig): Record<string, unknown> {
  const { domain, acmeEmail } = hub.gateway;
  if (domain && !acmeEmail)
    throw new Error(
      `gateway.domain ${domain} needs acmeEmail: Let's Encrypt requires a contact address. Set acmeEmail, or unset domain for plain HTTP.`,
    );
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
    accessLog: { format: "json", fields: ACCESS_LOG_FIELDS },
    entryPoints: {
      // With a domain, port 80 only redirects (and answers the ACME HTTP challenge, whose router outranks the redirect).
      [ENTRY_POINTS.web]: publicEntryPoint(
        PUBLIC_PORTS.http,
        tls
          ? { redirections: { entryPoint: { to: ENTRY_POINTS.websecure, scheme: "https", permanent: true } } }
          : undefined,
      ),
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
    metrics: {
      prometheus: {
        entryPoint: ENTRY_POINTS.metrics,
        manualRouting: true,
        addEntryPointsLabels: true,
        addRoutersLabels: true,
        addServicesLabels: true,
      },
    },
    serversTransport: { forwardingTimeouts: { ...FORWARDING_TIMEOUTS } },
    ...(domain
      ? {
          certificatesResolvers: {
            [CERT_RESOLVER]: {
              acme: {
                email: acmeEmail,
                storage: `${IN_CONTAINER.acme}/acme.json`,
                httpChallenge: { entryPoint: ENTRY_POINTS.web },
              },
            },
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
function domainTls(
  hub: HubConfig,
): { readonly certResolver: string; readonly domains: readonly { readonly main: string }[] } | undefined {
  return hub.gateway.domain ? { certResolver: CERT_RESOLVER, domains: [{ main: hub.gateway.domain }] } : undefined;
}

// ---------------------------------------------------------------------------------------------
// Traefik dynamic configuration (the watched routes file)
//
// Every error the gateway itself makes is OpenAI-style JSON, while a backend's own error bodies
// (vLLM, llama.cpp, the gatekeeper's 401/403/429/503) pass untouched. Traefik's `errors` middleware
// (pkg/middlewares/customerrors) replaces every response of a caught status from everything
// after it in the chain, and drops that response's headers, telling sources apart by status alone.
// So each catcher catches only statuses its source alone makes, or the page it serves tells the
// sources apart by a request header:
//   client ─► router: strip-client-ids ─► <route>-door ─► auth-<scope> ─► <route>-errors ─► [body limit] ─► [rewrite] ─► backend
// - auth-<scope>: forwardAuth straight to the gatekeeper (HTTP/2 over TLS, one kept-alive
//   connection). The gatekeeper checks the address limit, then the key; its refusals (401, 403,
//   429, 503: never 500) reach the client as it sent them.
// - <route>-door catches 500: Traefik's own answer when the gatekeeper cannot be asked. A backend's
//   own 500 passes it too; the page tells them apart by X-Hub-Key-Id, which only an allowed request
//   carries (the gatekeeper set it; strip-client-ids removed the client's), and says which
//   service failed. That backend's own 500 body is the one thing lost: it stays in its log.
// - <route>-errors catches the route's 413, 502, 504, which only Traefik makes there.
// Three exchanges in Traefik per request: the client's, one stream to the gatekeeper, the backend.

const ERRORS_URL = `http://${ERRORS_CONTAINER}:${SERVICE_PORTS.errors}`;
const ERRORS_HEALTH_PATH = "/health";
/** The gatekeeper's forwardAuth port; its certificate names the container (infra/program.ts). */
const GATEKEEPER_AUTH_URL = `https://${GATEKEEPER_CONTAINER}:${GATEKEEPER_TLS_PORT}${AUTH_PATH}`;
/** The path prefix of the error pages nginx serves: /errors/<source>/<status>. */
const ERROR_PAGES = "/errors";
/** Traefik's forwardAuth answers a failed call to its auth server with an empty 500 (forward.go). */
export const DOOR_FAILURE_STATUS = 500;

export function traefikDynamicConfig(
  hub: HubConfig,
  routes: readonly Route[],
  privateIps: Readonly<Record<string, string>>,
): Record<string, unknown> {
  const tls = domainTls(hub);
  // With a domain, plain HTTP only redirects; without one, 443 has no certificate to offer.
  const entryPoints = tls ? [ENTRY_POINTS.websecure, ENTRY_POINTS.legacy] : [ENTRY_POINTS.web, ENTRY_POINTS.legacy];
  const routerTls = () =>
    tls ? { tls: { certResolver: tls.certResolver, domains: tls.domains.map((d) => ({ ...d })) } } : {};
  const routers: Record<string, unknown> = {};
  const services = new ServiceTable();
  services.add(ERRORS_SERVICE, { loadBalancer: { servers: [{ url: ERRORS_URL }] } });
  const ipLimit = ipRateLimit(hub);
  const middlewares: Record<string, unknown> = {
    // Per client address on the two routers that never ask the gatekeeper (unknown paths, gRPC),
    // whose pages nginx serves; on every API route the gatekeeper applies the same limit.
    [IP_RATE_LIMIT_MIDDLEWARE]: { rateLimit: { average: ipLimit.perMinute, period: "1m", burst: ipLimit.burst } },
    // Its 429 as JSON: nothing else behind it answers 429 (nginx's pages are 404 and 415).
    [IP_LIMIT_ERRORS]: {
      errors: { status: ["429"], service: ERRORS_SERVICE, query: `${ERROR_PAGES}/${IP_LIMIT_SOURCE}/{status}` },
    },
    // A client's own X-Request-Id or X-Hub-Key-Id never reaches a backend, the gatekeeper, the
    // door's page or the access log (it could carry anything, a key included); the gatekeeper sets both.
    // Expect too: an errors middleware copies it onto its page request, nginx answers it with
    // "100 Continue" and Traefik relays that, so a refused client uploads into a closing connection
    // (a reset, not the 413). Go's server has already seen it: reading a body still sends the 100.
    [STRIP_CLIENT_IDS]: {
      headers: {
        customRequestHeaders: Object.fromEntries([...AUTH_ASSIGNED_HEADERS, EXPECT_HEADER].map((h) => [h, ""])),
      },
    },
  };

  for (const route of routes) {
    // Client-set ids go first (the access log records the request's headers as they end up);
    // then the gatekeeper (the address limit, then the key), before any upload is buffered; it
    // fails closed: no answer from it, no request through, and the door's page says so.
    const chain = [STRIP_CLIENT_IDS, doorMiddleware(route.name, middlewares), authMiddleware(route.scope, middlewares)];
    const errorsName = `${route.name}-errors`;
    middlewares[errorsName] = {
      errors: {
        status: routeErrorStatuses(route).map(String),
        service: ERRORS_SERVICE,
        query: `${ERROR_PAGES}/${route.name}/{status}`,
      },
    };
    chain.push(errorsName);
    if (!route.streaming) {
      const name = `${route.name}-body-limit`;
      // Buffering holds the whole response too, so only non-streaming routes may have it.
      middlewares[name] = { buffering: { maxRequestBodyBytes: route.maxBodyBytes } };
      chain.push(name);
    }
    if (route.rewritePrefix) {
      const name = `${route.name}-rewrite`;
      middlewares[name] = {
        replacePathRegex: { regex: `^${escapeRegex(route.rewritePrefix)}(.*)`, replacement: "/v1/$1" },
      };
      chain.push(name);
    }
    if (route.dropCredentials) {
      // After the gatekeeper swapped in the backends' key: this backend gets neither that nor the client's.
      const name = `${route.name}-drop-credentials`;
      middlewares[name] = { headers: { customRequestHeaders: { Authorization: "", "X-Api-Key": "" } } };
      chain.push(name);
    }
    routers[route.name] = {
      entryPoints: [...entryPoints],
      rule: routeRule(route),
      service: routeService(route, services, privateIps),
      middlewares: chain,
      ...routerTls(),
    };
  }
  // Prometheus metrics: freely inside the VPC on :8082/metrics, and through the public entry
  // points at /admin/metrics for keys with the admin scope.
  routers[METRICS_VPC_ROUTER] = {
    entryPoints: [ENTRY_POINTS.metrics],
    rule: "Path(`/metrics`)",
    service: PROMETHEUS_SERVICE,
  };
  middlewares[METRICS_ADMIN_REWRITE] = { replacePath: { path: "/metrics" } };
  routers[METRICS_ADMIN_ROUTER] = {
    entryPoints: [...entryPoints],
    rule: `Path(\`${ADMIN_METRICS_PATH}\`)`,
    service: PROMETHEUS_SERVICE,
    middlewares: [
      STRIP_CLIENT_IDS,
      doorMiddleware(ADMIN_SOURCE, middlewares),
      authMiddleware("admin", middlewares),
      METRICS_ADMIN_REWRITE,
    ],
    ...routerTls(),
  };
  // The gatekeeper's admin API (keys at runtime, the status report): forwardAuth with the admin
  // scope limits and audits the call, and passes the caller's own key on, which the gatekeeper
  // checks again itself; its 502/504 are the gatekeeper's pages.
  middlewares[ADMIN_API_AUTH] = { forwardAuth: forwardAuthTo("admin", ADMIN_API_AUTH_RESPONSE_HEADERS) };
  middlewares[ADMIN_API_ERRORS] = {
    errors: {
      status: ADMIN_API_ERROR_STATUSES.map(String),
      service: ERRORS_SERVICE,
      query: `${ERROR_PAGES}/${ADMIN_API_SOURCE}/{status}`,
    },
  };
  routers[ADMIN_API_ROUTER] = {
    entryPoints: [...entryPoints],
    rule: `Path(\`${ADMIN_STATUS_PATH}\`) || Path(\`${ADMIN_KEYS_PATH}\`) || PathPrefix(\`${ADMIN_KEYS_PATH}/\`)`,
    service: services.add(GATEKEEPER_CONTAINER, GATEKEEPER_SERVICE),
    middlewares: [STRIP_CLIENT_IDS, doorMiddleware(ADMIN_SOURCE, middlewares), ADMIN_API_AUTH, ADMIN_API_ERRORS],
    ...routerTls(),
  };
  // The autoscaler's view (decision, vLLM readings, ledger) for keys with the admin scope: what `npm run hub -- autoscale` reads.
  if (autoscalerRuns(hub)) {
    middlewares[AUTOSCALER_STATUS_REWRITE] = { replacePath: { path: STATUS_PATH } };
    routers[AUTOSCALER_STATUS_ROUTER] = {
      entryPoints: [...entryPoints],
      rule: `Path(\`${ADMIN_AUTOSCALER_PATH}\`)`,
      service: services.add(AUTOSCALER_CONTAINER, {
        loadBalancer: { servers: [{ url: `http://${AUTOSCALER_CONTAINER}:${CONTROLLER_PORT}` }] },
      }),
      middlewares: [
        STRIP_CLIENT_IDS,
        doorMiddleware(ADMIN_SOURCE, middlewares),
        authMiddleware("admin", middlewares),
        AUTOSCALER_STATUS_REWRITE,
      ],
      ...routerTls(),
    };
  }
  // gRPC and gRPC-Web, which the hub does not serve: an OpenAI-shaped 415 from a router of its own,
  // ahead of every route (the highest priority but Traefik's ACME challenge), so such a request
  // never reaches the gatekeeper, a coder route or its counters. Traefik's own test is a prefix of
  // the first Content-Type (pkg/middlewares/metrics isGRPCRequest); this one is wider: any
  // Content-Type value, any case, leading blanks.
  middlewares[GRPC_REFUSED_PAGE] = { replacePath: { path: `${ERROR_PAGES}/${GATEWAY_SOURCE}/415` } };
  routers[GRPC_REFUSED_ROUTER] = {
    entryPoints: [...entryPoints],
    rule: GRPC_RULE,
    priority: GRPC_REFUSED_PRIORITY,
    service: ERRORS_SERVICE,
    middlewares: [STRIP_CLIENT_IDS, IP_LIMIT_ERRORS, IP_RATE_LIMIT_MIDDLEWARE, GRPC_REFUSED_PAGE],
    ...routerTls(),
  };
  // Any other path: a JSON 404 (Traefik's own is plain text), still behind the address limit.
  middlewares[NOT_FOUND_PAGE] = { replacePath: { path: `${ERROR_PAGES}/${GATEWAY_SOURCE}/404` } };
  routers[NOT_FOUND_ROUTER] = {
    entryPoints: [...entryPoints],
    rule: "PathPrefix(`/`)",
    priority: 1,
    service: ERRORS_SERVICE,
    middlewares: [STRIP_CLIENT_IDS, IP_LIMIT_ERRORS, IP_RATE_LIMIT_MIDDLEWARE, NOT_FOUND_PAGE],
    ...routerTls(),
  };

  // The gatekeeper's health, checked by Traefik itself (traefik_service_server_up in its metrics)
  // and readable inside the VPC at :8082/gatekeeper/healthz. forwardAuth does not use this service.
  routers[GATEKEEPER_HEALTH_ROUTER] = {
    entryPoints: [ENTRY_POINTS.metrics],
    rule: "Path(`/gatekeeper/healthz`)",
    service: services.add(GATEKEEPER_CONTAINER, GATEKEEPER_SERVICE),
    middlewares: [GATEKEEPER_HEALTH_REWRITE],
  };
  middlewares[GATEKEEPER_HEALTH_REWRITE] = { replacePath: { path: HEALTH_PATH } };
  return { http: { routers, services: services.entries, middlewares } };
}

/**
 * Statuses only Traefik makes on a route: 413 from its body limit, 502 (backend unreachable) and
 * 504 (no answer in time) from its proxy. A backend's 4xx/500/503 bodies (vLLM, llama.cpp's
 * "Loading model") pass untouched; a backend's own 413/502/504 would be rewritten too, to the
 * same meaning.
 */
export function routeErrorStatuses(route: Route): number[] {
  return [...(route.streaming ? [] : [413]), 502, 504];
}

export const IP_RATE_LIMIT_MIDDLEWARE = "rate-limit-ip";
export const STRIP_CLIENT_IDS = "strip-client-ids";
export const IP_LIMIT_ERRORS = "ip-limit-errors";
export const ERRORS_SERVICE = "gateway-errors";
export const NOT_FOUND_ROUTER = "not-found";
export const GRPC_REFUSED_ROUTER = "grpc-refused";
const GRPC_REFUSED_PAGE = "grpc-refused-page";
/** Content types of gRPC (application/grpc, +proto, ...) and gRPC-Web (application/grpc-web, -text, ...). */
export const GRPC_RULE = "HeaderRegexp(`Content-Type`, `(?i)^\\s*application/grpc`)";
/** Above every route's rule length (Traefik's default priority); its ACME router is MaxInt. */
const GRPC_REFUSED_PRIORITY = 100_000;
const NOT_FOUND_PAGE = "not-found-page";
/** Error-page sources besides the routes' names. */
const IP_LIMIT_SOURCE = "ip-limit";
const GATEWAY_SOURCE = "gateway";
/** The door of the admin routes (Traefik's metrics, the autoscaler's status). */
const ADMIN_SOURCE = "admin";
/** The door's page, and the page it serves instead when the request had been allowed (a backend's own 500). */
const doorPagePath = (source: string) => `${ERROR_PAGES}/${source}/door`;
const backendFailedPagePath = (source: string) => `${ERROR_PAGES}/${source}/backend-500`;
/** The header only an allowed request carries when the door catches a 500 (see above). */
const ALLOWED_MARK_HEADER = "X-Hub-Key-Id";
/** Headers only the gatekeeper may set on a forwarded request. */
export const AUTH_ASSIGNED_HEADERS = ["X-Request-Id", "X-Hub-Key-Id"] as const;
/** Removed on entry (strip-client-ids) so no error page answers it with "100 Continue". */
export const EXPECT_HEADER = "Expect";
export const GATEKEEPER_HEALTH_ROUTER = "gatekeeper-health";
export const METRICS_VPC_ROUTER = "metrics-vpc";
export const ADMIN_API_ROUTER = "admin-api";
const ADMIN_API_AUTH = "auth-admin-api";
const ADMIN_API_ERRORS = "admin-api-errors";
/** Error-page source of the admin API: its 502/504 are Traefik's (the gatekeeper's own answers pass). */
const ADMIN_API_SOURCE = "admin-api";
export const ADMIN_API_ERROR_STATUSES = [502, 504] as const;
/** The admin API's forwardAuth keeps the caller's Authorization and X-Api-Key (the gatekeeper checks them itself). */
export const ADMIN_API_AUTH_RESPONSE_HEADERS = ["X-Hub-Key-Id", "X-Request-Id"] as const;
/** The gatekeeper as a backend (its health route, its admin API), health-checked by Traefik. */
const GATEKEEPER_SERVICE = {
  loadBalancer: {
    servers: [{ url: `http://${GATEKEEPER_CONTAINER}:${GATEKEEPER_PORT}` }],
    healthCheck: { path: HEALTH_PATH, ...HEALTH_CHECK },
  },
};
export const METRICS_ADMIN_ROUTER = "metrics-admin";
export const ADMIN_METRICS_PATH = "/admin/metrics";
export const ADMIN_AUTOSCALER_PATH = "/admin/autoscaler";
export const AUTOSCALER_STATUS_ROUTER = "autoscaler-status";
const AUTOSCALER_STATUS_REWRITE = "autoscaler-status-path";
const METRICS_ADMIN_REWRITE = "metrics-admin-path";
/** Traefik's built-in Prometheus handler, routable because of manualRouting. */
export const PROMETHEUS_SERVICE = "prometheus@internal";
const GATEKEEPER_HEALTH_REWRITE = "gatekeeper-health-path";

export { AUTH_RESPONSE_HEADERS };
/** Only what the gatekeeper needs to decide: no cookies, no bodies. */
export const AUTH_REQUEST_HEADERS = ["Authorization", "X-Api-Key", "User-Agent"] as const;

/** The gatekeeper's answers are a few hundred bytes; anything larger is refused (forwardAuth's 401). */
const AUTH_RESPONSE_MAX_BYTES = 64 * 1024;

function authMiddleware(scope: Scope, middlewares: Record<string, unknown>): string {
  const name = `auth-${scope}`;
  middlewares[name] = { forwardAuth: forwardAuthTo(scope, AUTH_RESPONSE_HEADERS) };
  return name;
}

/** forwardAuth straight to the gatekeeper's TLS port for one scope, copying these of its headers onto the request. */
function forwardAuthTo(scope: Scope, responseHeaders: readonly string[]): Record<string, unknown> {
  return {
    address: `${GATEKEEPER_AUTH_URL}?scope=${scope}`,
    // Pinned: only the gatekeeper's own certificate is accepted, and HTTP/2 keeps one connection.
    tls: { ca: GATEKEEPER_CA_FILE.container },
    authResponseHeaders: [...responseHeaders],
    authRequestHeaders: [...AUTH_REQUEST_HEADERS],
    // Traefik sets X-Forwarded-For from the connection; a client cannot forge its address.
    trustForwardHeader: false,
    maxResponseBodySize: AUTH_RESPONSE_MAX_BYTES,
  };
}

/** The door of a route (or the admin routers): its page when Traefik answers 500 (see above). */
function doorMiddleware(source: string, middlewares: Record<string, unknown>): string {
  const name = `${source}-door`;
  middlewares[name] = {
    errors: { status: [String(DOOR_FAILURE_STATUS)], service: ERRORS_SERVICE, query: doorPagePath(source) },
  };
  return name;
}

/** Service names are shared between routes (two routes may fall back to gpu-off); a name means one definition. */
class ServiceTable {
  readonly entries: Record<string, unknown> = {};
  add(name: string, definition: Record<string, unknown>): string {
    const existing = this.entries[name];
    if (existing !== undefined && JSON.stringify(existing) !== JSON.stringify(definition)) {
      throw new Error(
        `Traefik service ${name} is defined twice with different backends; give the routes' backends distinct service names.`,
      );
    }
    this.entries[name] = definition;
    return name;
  }
}

/** The service a route's router points at: the primaries, a failover to the fallback, or the fallback alone. */
function routeService(route: Route, services: ServiceTable, privateIps: Readonly<Record<string, string>>): string {
  let fallback =
    route.fallback === undefined
      ? undefined
      : route.fallback === GPU_OFF_SERVICE
        ? gpuOffService(services)
        : backendService(route.fallback.service, [route.fallback], services, privateIps);
  if (route.holder) {
    // The holder first, health-checked so the fallback answers while it is down.
    const holder = services.add(route.holder.service, {
      loadBalancer: {
        servers: [{ url: backendUrl(route.holder, privateIps) }],
        healthCheck: { path: route.holder.healthPath, ...HEALTH_CHECK },
      },
    });
    fallback = fallback
      ? services.add(`${route.name}-hold-or-fallback`, { failover: { service: holder, fallback } })
      : holder;
  }
  if (route.primary.length === 0) {
    if (!fallback)
      throw new Error(
        `Route ${route.name} has no backend: no primary replica and no fallback. Give it a fallback (a CPU stand-in or "${GPU_OFF_SERVICE}").`,
      );
    // GPU off: no failover to health-check, the fallback answers directly.
    return fallback;
  }
  if (!fallback) return backendService(route.name, route.primary, services, privateIps);
  const main = backendService(`${route.name}-primary`, route.primary, services, privateIps);
  // Failover switches on the main service's health check (present on every loadBalancer here).
  return services.add(route.name, { failover: { service: main, fallback } });
}

function backendService(
  name: string,
  backends: readonly Backend[],
  services: ServiceTable,
  privateIps: Readonly<Record<string, string>>,
): string {
  // A lone container with nowhere to fail over to gains nothing from a probe (Docker restarts it),
  // and some answer /health only with the API key, which must not be written into this file.
  if (backends.length === 1 && backends[0].address.kind === "container") {
    return services.add(name, { loadBalancer: { servers: [{ url: backendUrl(backends[0], privateIps) }] } });
  }
  const paths = new Set(backends.map((b) => b.healthPath));
  if (paths.size !== 1)
    throw new Error(
      `Traefik service ${name}: its replicas answer health checks on different paths (${[...paths].join(", ")}); one loadBalancer has one health check path.`,
    );
  return services.add(name, {
    loadBalancer: {
      servers: backends.map((b) => ({ url: backendUrl(b, privateIps) })),
      healthCheck: { path: backends[0].healthPath, ...HEALTH_CHECK },
    },
  });
}

function gpuOffService(services: ServiceTable): string {
  return services.add(GPU_OFF_SERVICE, {
    loadBalancer: { servers: [{ url: ERRORS_URL }], healthCheck: { path: ERRORS_HEALTH_PATH, ...HEALTH_CHECK } },
  });
}

function backendUrl(backend: Backend, privateIps: Readonly<Record<string, string>>): string {
  if (backend.address.kind === "container") return `http://${backend.address.container}:${backend.port}`;
  const ip = privateIps[backend.address.node];
  if (!ip) {
    const known = Object.keys(privateIps);
    throw new Error(
      `Backend ${backend.service} runs on node ${backend.address.node}, whose private IP was not given (given: ${known.length ? known.join(", ") : "none"}). Pass the VPC address of every active GPU node.`,
    );
  }
  return `http://${ip}:${backend.port}`;
}

function routeRule(route: Route): string {
  const matcher = route.prefix ? "PathPrefix" : "Path";
  for (const p of route.paths) {
    // A backtick would end Traefik's rule literal early.
    if (!p.startsWith("/") || p.includes("`"))
      throw new Error(`Route ${route.name}: path ${JSON.stringify(p)} must start with "/" and contain no backtick.`);
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
  return stringify(doc, {
    lineWidth: 0,
    aliasDuplicateObjects: false,
    defaultStringType: "QUOTE_DOUBLE",
    defaultKeyType: "PLAIN",
  });
}

// ---------------------------------------------------------------------------------------------
// Containers

/**
 * Go's collector, for a proxy whose heap is small and short-lived: collecting at 4× the live heap
 * instead of 2× cut Traefik's CPU per request by about a seventh in the gateway benchmark (garbage
 * collection was about a sixth of its profile); the soft limit keeps it under the container's 256 MiB.
 */
export const TRAEFIK_GC = { GOGC: "400", GOMEMLIMIT: "192MiB" } as const;

export function gatewaySpec(hub: HubConfig): ServiceSpec {
  return {
    name: GATEWAY_CONTAINER,
    role: "gateway",
    program: "traefik",
    node: CPU_NODE_NAME,
    image: TRAEFIK_IMAGE,
    // The image's entrypoint prepends `traefik` to arguments that start with "-".
    command: [`--configFile=${IN_CONTAINER.static}/${STATIC_FILE}`],
    env: { ...TRAEFIK_GC },
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
/** A block: `name args { body }`, or `if ($variable) { body }`. */
export interface NginxBlock {
  readonly block: string;
  readonly args?: readonly string[];
  /** An `if` block's condition: true when the variable is set and not "0" (nginx's rule). */
  readonly condition?: { readonly variable: string };
  readonly body: readonly NginxNode[];
}

/** nginx's variable for a request header: `$http_` and the name in lower case, dashes as underscores. */
const headerVariable = (header: string): string => `http_${header.toLowerCase().replace(/-/g, "_")}`;
export type NginxNode = NginxDirective | NginxBlock;

type OpenAiErrorBody = { readonly error: { readonly message: string; readonly type: string; readonly code: string } };
const openAiError = (message: string, type: string, code: string): OpenAiErrorBody => ({
  error: { message, type, code },
});

/** One error page: the status nginx answers with, its body, and Retry-After where waiting helps. */
interface ErrorPage {
  readonly path: string;
  readonly status: number;
  readonly body: OpenAiErrorBody;
  readonly retryAfterSeconds?: number;
  /** The page to serve instead when the request carries ALLOWED_MARK_HEADER (the door's pages). */
  readonly whenAllowed?: string;
}

/**
 * While no GPU serves and there is no stand-in: a wake-up (the autoscaler's, on the first request)
 * takes minutes, so a client that polls once a minute sees the GPU soon after it is ready without
 * hammering the gateway meanwhile.
 */
export const GPU_OFF_RETRY_AFTER_SECONDS = 60;
/** How long a client should wait before retrying a backend that did not answer (a container restart). */
const BACKEND_RETRY_AFTER_SECONDS = 10;
/** The gatekeeper restarts in a few seconds (Docker's restart policy). */
const AUTH_RETRY_AFTER_SECONDS = 5;
const MB = 1024 * 1024;

/**
 * Every error page the gateway serves, at /errors/<source>/<status> (the errors middlewares'
 * queries). Messages name the service and what would work; none repeats anything from the request.
 */
export function errorPages(hub: HubConfig, routes: readonly Route[]): ErrorPage[] {
  const ip = ipRateLimit(hub);
  const page = (source: string, status: number, body: OpenAiErrorBody, retryAfterSeconds?: number): ErrorPage => ({
    path: `${ERROR_PAGES}/${source}/${status}`,
    status,
    body,
    retryAfterSeconds,
  });
  const pages: ErrorPage[] = [
    page(
      IP_LIMIT_SOURCE,
      429,
      openAiError(
        `Too many requests from this client address: the gateway allows ${ip.perMinute} per minute per address (bursts of ${ip.burst}), across all keys. Slow down and retry after the Retry-After interval.`,
        "requests",
        "rate_limit_exceeded",
      ),
      ip.retryAfterSeconds,
    ),
  ];
  // The door's two pages per source: the gatekeeper could not be asked, or (X-Hub-Key-Id set) the
  // request was let through and its backend answered 500. Both keep Traefik's 500.
  const door = (source: string, service: string) => {
    const backendFailed = {
      path: backendFailedPagePath(source),
      status: DOOR_FAILURE_STATUS,
      body: openAiError(
        `The ${service} failed with an internal error (500). Its own message is in its container's log; retry, and tell the hub's operator if this persists.`,
        "server_error",
        "backend_error",
      ),
    };
    const unreachable = page(
      source,
      DOOR_FAILURE_STATUS,
      openAiError(
        "The gateway could not reach its API-key service, so the request was refused before reaching any model. Retry shortly; tell the hub's operator if this persists.",
        "server_error",
        "auth_unavailable",
      ),
      AUTH_RETRY_AFTER_SECONDS,
    );
    pages.push({ ...unreachable, path: doorPagePath(source), whenAllowed: backendFailed.path }, backendFailed);
  };
  for (const route of routes) door(route.name, route.description);
  door(ADMIN_SOURCE, "service behind this admin path");
  pages.push(
    page(
      ADMIN_API_SOURCE,
      502,
      openAiError(
        "The gatekeeper's admin API did not answer; it may be restarting. Retry after the Retry-After interval.",
        "server_error",
        "backend_unavailable",
      ),
      AUTH_RETRY_AFTER_SECONDS,
    ),
    page(
      ADMIN_API_SOURCE,
      504,
      openAiError(
        `The gatekeeper's admin API did not start answering within ${seconds(FORWARDING_TIMEOUTS.responseHeaderTimeout)} s. Retry; tell the hub's operator if this persists.`,
        "server_error",
        "backend_timeout",
      ),
    ),
  );
  const paths = routes.flatMap((r) => r.paths.map((p) => (r.prefix ? `${p}...` : p)));
  pages.push(
    page(
      GATEWAY_SOURCE,
      404,
      openAiError(
        `This path is not part of the hub's API. Endpoints: ${[...paths, ADMIN_METRICS_PATH].join(", ")}.`,
        "invalid_request_error",
        "not_found",
      ),
    ),
  );
  pages.push(
    page(
      GATEWAY_SOURCE,
      415,
      openAiError(
        "The hub's API speaks JSON over HTTP (OpenAI's REST API), not gRPC or gRPC-Web. Send Content-Type: application/json (or multipart/form-data for files).",
        "invalid_request_error",
        "unsupported_media_type",
      ),
    ),
  );
  for (const route of routes) {
    for (const status of routeErrorStatuses(route)) {
      if (status === 413) {
        pages.push(
          page(
            route.name,
            413,
            openAiError(
              `The request body is larger than the ${+(route.maxBodyBytes / MB).toFixed(1)} MiB (${route.maxBodyBytes} bytes) that ${route.paths.join(", ")} accepts.`,
              "invalid_request_error",
              "request_too_large",
            ),
          ),
        );
      } else if (status === 502) {
        pages.push(
          page(
            route.name,
            502,
            openAiError(
              `The ${route.description} did not answer; it may be restarting. Retry after the Retry-After interval.`,
              "server_error",
              "backend_unavailable",
            ),
            BACKEND_RETRY_AFTER_SECONDS,
          ),
        );
      } else {
        const wait = `${seconds(FORWARDING_TIMEOUTS.responseHeaderTimeout)} s`;
        const hint = route.timeoutHint
          ? ` ${route.timeoutHint}`
          : route.name === DOCUMENTS_ROUTE
            ? ` Convert long documents asynchronously: POST ${DOCUMENTS_ASYNC_HINT}.`
            : " Ask for less (max_tokens), or stream the response.";
        pages.push(
          page(
            route.name,
            504,
            openAiError(
              `The ${route.description} did not start answering within ${wait}.${hint}`,
              "server_error",
              "backend_timeout",
            ),
          ),
        );
      }
    }
  }
  return pages;
}

const seconds = (duration: string): number => Number(/^(\d+)s$/.exec(duration)?.[1] ?? NaN);

/**
 * The errors responder: the gpu-off answer on every path, the gateway's error pages, a health path.
 * No access log: error-page requests carry the original request's headers (customerrors copies
 * them), the backends' key among them.
 */
export function errorsNginx(hub: HubConfig, routes: readonly Route[]): NginxNode[] {
  const locations: NginxNode[] = errorPages(hub, routes).map((p) => ({
    block: "location",
    args: ["=", p.path],
    body: [
      // `rewrite ... last` is one of the two things nginx documents as safe inside `if`.
      ...(p.whenAllowed
        ? [
            {
              block: "if",
              condition: { variable: headerVariable(ALLOWED_MARK_HEADER) },
              body: [["rewrite", "^", p.whenAllowed, "last"] as NginxDirective],
            },
          ]
        : []),
      ...(p.retryAfterSeconds !== undefined
        ? [["add_header", "Retry-After", p.retryAfterSeconds, "always"] as NginxDirective]
        : []),
      ["return", p.status, JSON.stringify(p.body)] as NginxDirective,
    ],
  }));
  return [
    {
      block: "server",
      body: [
        ["listen", SERVICE_PORTS.errors],
        ["server_tokens", "off"],
        ["access_log", "off"],
        // `return` with a text body uses default_type as the Content-Type.
        ["default_type", "application/json"],
        {
          block: "location",
          args: ["=", ERRORS_HEALTH_PATH],
          body: [["return", 200, JSON.stringify({ status: "ok" })]],
        },
        ...locations,
        {
          block: "location",
          args: ["/"],
          body: [
            ["add_header", BACKEND_HEADER, GPU_OFF_BACKEND_NAME, "always"],
            ["add_header", "Retry-After", GPU_OFF_RETRY_AFTER_SECONDS, "always"],
            ["return", 503, JSON.stringify(GPU_OFF_ERROR)],
          ],
        },
      ],
    },
  ];
}

export function errorsNginxConf(hub: HubConfig, routes: readonly Route[]): string {
  return renderNginxConf(errorsNginx(hub, routes));
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
      const head = [
        node.block,
        ...(node.args ?? []).map(nginxToken),
        ...(node.condition ? [nginxCondition(node.condition.variable)] : []),
      ].join(" ");
      return `${pad}${head} {\n${renderNginx(node.body, depth + 1)}\n${pad}}`;
    })
    .join("\n");
}

const isDirective = (node: NginxNode): node is NginxDirective => Array.isArray(node);

/** `($name)`: a variable is the one place a `$` is written, and only a plain name. */
function nginxCondition(variable: string): string {
  if (!/^[a-z_][a-z0-9_]*$/.test(variable))
    throw new Error(`nginx variable ${JSON.stringify(variable)} must be a plain lower-case name.`);
  return `($${variable})`;
}

/**
 * One nginx token. Plain words stay bare; anything else is single-quoted, where nginx turns `\'`
 * into `'` and `\\` into `\` (ngx_conf_file.c). `$` is refused: nginx would expand it as a variable
 * in `return` text and has no escape for it.
 */
function nginxToken(value: string | number): string {
  const text = String(value);
  if (text.includes("$"))
    throw new Error(`nginx value ${JSON.stringify(text)} contains "$", which nginx would expand as a variable.`);
  if (/^[A-Za-z0-9_./:=@*+-]+$/.test(text)) return text;
  return `'${text.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
}

// ---------------------------------------------------------------------------------------------
// Route changes against GPU readiness
//
// After a reload Traefik counts a health-checked server as up until its first probe, one
// interval later: a routes file naming a vLLM that is still loading sends it requests that fail.
// So a GPU replica enters the routes file only once it answers, and leaves it (and is drained)
// before its droplet goes. infra/services.ts runs these scripts on the gateway node.

/** A GPU backend the routes file names, as the gateway node reaches it over the VPC. */
export interface GpuBackendAddress {
  readonly node: string;
  readonly url: string;
  readonly healthPath: string;
}

/** Every GPU replica the routes name, once per node and port. */
export function gpuBackendAddresses(
  routes: readonly Route[],
  privateIps: Readonly<Record<string, string>>,
): GpuBackendAddress[] {
  const seen = new Map<string, GpuBackendAddress>();
  for (const backend of routes.flatMap((r) => r.primary)) {
    if (backend.address.kind !== "vpc") continue;
    const url = backendUrl(backend, privateIps);
    seen.set(url, { node: backend.node, url, healthPath: backend.healthPath });
  }
  return [...seen.values()];
}

/**
 * A first start pulls a ~10 GB image and downloads the weights (65 GB for the 32B coder) before
 * vLLM answers /health: 90 min bounds it.
 */
export const GPU_READY_TIMEOUT_SECONDS = 90 * 60;
/** In-flight requests get this long to finish after the replica left the routes file. */
export const GPU_DRAIN_TIMEOUT_SECONDS = 15 * 60;

const shellQuote = (text: string) => `'${text.replace(/'/g, `'\\''`)}'`;

/** Waits until every given backend answers its health check (exit 0), or fails naming the ones that did not. */
export function backendsReadyScript(
  backends: readonly GpuBackendAddress[],
  timeoutSeconds = GPU_READY_TIMEOUT_SECONDS,
  pollSeconds = 5,
): string {
  const urls = backends.map((b) => shellQuote(`${b.url}${b.healthPath}`)).join(" ");
  return [
    "set -u",
    `deadline=$(( $(date +%s) + ${timeoutSeconds} ))`,
    `for url in ${urls}; do`,
    `  until curl -fsS -o /dev/null --max-time 5 "$url"; do`,
    `    if [ "$(date +%s)" -ge "$deadline" ]; then echo "GPU backend $url did not answer within ${timeoutSeconds} s; the gateway keeps routing around it. Check the GPU node's containers (docker logs)." >&2; exit 1; fi`,
    `    sleep ${pollSeconds}`,
    "  done",
    `  echo "answering: $url"`,
    "done",
  ].join("\n");
}

/** Where the drain reads that Traefik applied the new routes file. */
export interface RoutesReload {
  /** The routes file on the gateway node. */
  readonly routesFile: string;
  /** Traefik's Prometheus endpoint as the gateway node reaches it (the VPC-only metrics entry point). */
  readonly metricsUrl: string;
}

/** How long the drain waits for Traefik to apply the routes file before it drains regardless. */
const ROUTES_RELOAD_TIMEOUT_SECONDS = 60;

/**
 * Runs once the routes file without these backends is written (Pulumi deletes after it updates):
 * waits until Traefik has applied that file (its traefik_config_last_reload_success timestamp,
 * pkg/observability/metrics/prometheus.go, is not older than the file), then until vLLM reports no
 * running or waiting request (vllm:num_requests_running / vllm:num_requests_waiting, FACTS.md).
 * A backend that no longer answers has nothing to drain. Never fails: a stuck request must not
 * block turning the GPU off.
 */
export function backendsDrainScript(
  backends: readonly GpuBackendAddress[],
  reload: RoutesReload,
  timeoutSeconds = GPU_DRAIN_TIMEOUT_SECONDS,
): string {
  const urls = backends.map((b) => shellQuote(`${b.url}/metrics`)).join(" ");
  return [
    "set -u",
    // Whole seconds on both sides: Traefik reports the reload time as whole Unix seconds.
    `changed=$(stat -c %Y ${shellQuote(reload.routesFile)} 2>/dev/null || echo 0)`,
    `deadline=$(( $(date +%s) + ${ROUTES_RELOAD_TIMEOUT_SECONDS} ))`,
    `until curl -fsS --max-time 5 ${shellQuote(reload.metricsUrl)} 2>/dev/null | awk -v t="$changed" '/^traefik_config_last_reload_success / { if ($2 + 0 >= t + 0) ok = 1 } END { exit !ok }'; do`,
    `  if [ "$(date +%s)" -ge "$deadline" ]; then echo "Traefik did not report applying the routes file within ${ROUTES_RELOAD_TIMEOUT_SECONDS} s; draining anyway" >&2; break; fi`,
    "  sleep 1",
    "done",
    // A reload earlier in the same second would also pass: give Traefik its 2 s throttle (providersThrottleDuration) more.
    "sleep 2",
    `deadline=$(( $(date +%s) + ${timeoutSeconds} ))`,
    `for url in ${urls}; do`,
    "  while :; do",
    `    busy=$(curl -fsS --max-time 5 "$url" 2>/dev/null | awk '/^vllm:num_requests_(running|waiting)[{ ]/ { n += $NF } END { if (NR == 0) print "gone"; else print n + 0 }')`,
    '    if [ "$busy" = "gone" ] || [ "$busy" = "0" ]; then echo "drained: $url"; break; fi',
    `    if [ "$(date +%s)" -ge "$deadline" ]; then echo "still $busy requests in flight at $url after ${timeoutSeconds} s; stopping it anyway" >&2; break; fi`,
    "    sleep 2",
    "  done",
    "done",
  ].join("\n");
}
