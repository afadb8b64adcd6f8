import { spawnSync } from "node:child_process";
import * as path from "node:path";
import Ajv, { type ValidateFunction } from "ajv";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import {
  CERT_RESOLVER,
  ERRORS_IMAGE,
  errorsNginxConf,
  errorsSpec,
  GATEWAY_DIRS,
  gatewaySpec,
  GPU_OFF_ERROR,
  IP_RATE_LIMIT_MIDDLEWARE,
  IP_LIMIT_ERRORS,
  DOOR_FAILURE_STATUS,
  GATEKEEPER_CA_FILE,
  TRAEFIK_GC,
  STRIP_CLIENT_IDS,
  NOT_FOUND_ROUTER,
  GRPC_REFUSED_ROUTER,
  ERRORS_SERVICE,
  RESPONDING_TIMEOUTS,
  FORWARDING_TIMEOUTS,
  errorPages,
  gpuBackendAddresses,
  backendsReadyScript,
  backendsDrainScript,
  GATEKEEPER_HEALTH_ROUTER,
  METRICS_ADMIN_ROUTER,
  ADMIN_API_ROUTER,
  AUTOSCALER_STATUS_ROUTER,
  METRICS_VPC_ROUTER,
  renderNginxConf,
  renderYaml,
  TRAEFIK_IMAGE,
  traefikDynamicConfig,
  traefikStaticConfig,
} from "../services/gateway";
import { CPU_CACHE_MOUNT } from "../services/node-setup";
import { GATEWAY_METRICS_PORT, PUBLIC_PORTS } from "../services/ports";
import { CODER_HOLD_SERVICE, CODER_OFF_SERVICE, GPU_OFF_SERVICE, routeTable } from "../services/routes";
import { HOLDER_HEALTH_PATH } from "../programs/autoscaler/controller/contract";
import type { HubConfig } from "../stacks/hub-config";
import { planFromText } from "../cli/plan/runner";
import { mustLoad, readJson, REFERENCE } from "./helpers/load";

// ---- validators -----------------------------------------------------------------------------

interface JsonSchema {
  readonly properties: Record<string, unknown>;
}
const STATIC_SCHEMA = readJson<JsonSchema>(path.join(REFERENCE, "traefik/traefik-v3.json"));
const DYNAMIC_SCHEMA = readJson<JsonSchema>(path.join(REFERENCE, "traefik/traefik-v3-file-provider.json"));

// The reference README: ajv v8's default class (draft-07) compiles both with strict: true.
const ajv = new Ajv({ strict: true, allErrors: true });
const validateStatic: ValidateFunction = ajv.compile(STATIC_SCHEMA);
const validateDynamic: ValidateFunction = ajv.compile(DYNAMIC_SCHEMA);

function schemaErrors(validate: ValidateFunction, doc: unknown): string[] {
  return validate(doc)
    ? []
    : (validate.errors ?? []).map((e) => `${e.instancePath || "/"} ${e.message} ${JSON.stringify(e.params)}`);
}

/** The static schema's root accepts unknown keys (README caveat): check them against its properties. */
function staticProblems(doc: Record<string, unknown>): string[] {
  const known = new Set(Object.keys(STATIC_SCHEMA.properties));
  return [
    ...schemaErrors(validateStatic, doc),
    ...Object.keys(doc)
      .filter((k) => !known.has(k))
      .map((k) => `unknown top-level key ${k}`),
  ];
}

type Obj = Record<string, any>;

/** What the schemas cannot see: every name a router or failover uses exists, and every URL is http://host:port. */
function referenceProblems(staticDoc: Obj, dynamicDoc: Obj): string[] {
  const problems: string[] = [];
  const entryPoints = new Set(Object.keys(staticDoc.entryPoints ?? {}));
  const http = dynamicDoc.http ?? {};
  const services: Obj = http.services ?? {};
  const middlewares: Obj = http.middlewares ?? {};
  const resolvers = new Set(Object.keys(staticDoc.certificatesResolvers ?? {}));
  for (const [name, router] of Object.entries<Obj>(http.routers ?? {})) {
    // Traefik's built-in handlers (prometheus@internal, ...) are not defined in the file.
    if (!(router.service in services) && !String(router.service).endsWith("@internal"))
      problems.push(`router ${name}: service ${router.service} does not exist`);
    for (const m of router.middlewares ?? [])
      if (!(m in middlewares)) problems.push(`router ${name}: middleware ${m} does not exist`);
    for (const ep of router.entryPoints ?? [])
      if (!entryPoints.has(ep)) problems.push(`router ${name}: entry point ${ep} is not in the static config`);
    if (!router.entryPoints?.length)
      problems.push(`router ${name}: no entry points (it would listen on every one, metrics included)`);
    if (router.tls?.certResolver && !resolvers.has(router.tls.certResolver))
      problems.push(`router ${name}: certResolver ${router.tls.certResolver} is not in the static config`);
  }
  for (const [name, service] of Object.entries<Obj>(services)) {
    if (service.failover) {
      for (const ref of [service.failover.service, service.failover.fallback])
        if (!(ref in services)) problems.push(`failover ${name}: ${ref} does not exist`);
      // Failover only notices the main service going down through its health check.
      if (!services[service.failover.service]?.loadBalancer?.healthCheck)
        problems.push(`failover ${name}: main service ${service.failover.service} has no health check`);
    }
    for (const server of service.loadBalancer?.servers ?? []) {
      if (!/^http:\/\/[a-z0-9.-]+:\d{1,5}$/.test(server.url))
        problems.push(`service ${name}: url ${server.url} is not http://host:port`);
    }
  }
  for (const [name, mw] of Object.entries<Obj>(middlewares)) {
    if (mw.chain) problems.push(`middleware ${name}: chains are not expected here`);
    // The client's key crosses the Docker network to the auth server: only over TLS, to a pinned certificate.
    if (
      mw.forwardAuth &&
      !(
        String(mw.forwardAuth.address).startsWith("https://") &&
        mw.forwardAuth.tls?.ca &&
        !mw.forwardAuth.tls.insecureSkipVerify
      )
    )
      problems.push(`forwardAuth ${name}: not HTTPS to a pinned certificate`);
    if (mw.errors && !(mw.errors.service in services))
      problems.push(`errors middleware ${name}: service ${mw.errors.service} does not exist`);
  }
  return problems;
}

// ---- the configurations under test ----------------------------------------------------------

const DOMAIN = { domain: "hub.example.com", acmeEmail: "ops@example.com" };
const PRESETS: readonly Record<string, unknown>[] = [
  { tier: "cpu" },
  { tier: "gpu" },
  { tier: "hybrid", gpuEnabled: false },
  { tier: "hybrid", gpuEnabled: true },
  { tier: "multigpu" },
];
const CASES = PRESETS.flatMap((p) => [p, { ...p, ...DOMAIN }]);

/** A 10.x VPC address per GPU node, distinct per node so the test sees which one is used. */
const privateIpsFor = (hub: HubConfig): Record<string, string> =>
  Object.fromEntries(hub.nodes.filter((n) => n.kind === "gpu").map((n, i) => [n.name, `10.118.0.${10 + i}`]));

/** Rendered and parsed back, as Traefik will read them. */
function render(settings: Record<string, unknown>) {
  const hub = mustLoad(settings);
  const routes = routeTable(hub);
  const ips = privateIpsFor(hub);
  const staticDoc = parse(renderYaml(traefikStaticConfig(hub))) as Obj;
  const dynamicDoc = parse(renderYaml(traefikDynamicConfig(hub, routes, ips))) as Obj;
  // The public API's routers; the gatekeeper's health router lives on the VPC-only metrics port.
  const publicRouters: Record<string, Obj> = Object.fromEntries(
    Object.entries<Obj>(dynamicDoc.http.routers).filter(
      ([name]) => ![GATEKEEPER_HEALTH_ROUTER, METRICS_VPC_ROUTER].includes(name),
    ),
  );
  return { hub, routes, ips, staticDoc, dynamicDoc, publicRouters };
}

const label = (s: Record<string, unknown>) =>
  Object.entries(s)
    .map(([k, v]) => `${k}=${v}`)
    .join(" ");

// ---- tests ----------------------------------------------------------------------------------

describe("the validators bite", () => {
  const good = render({ tier: "hybrid", gpuEnabled: true });

  it("accept the rendered documents", () => {
    expect(staticProblems(good.staticDoc)).toEqual([]);
    expect(schemaErrors(validateDynamic, good.dynamicDoc)).toEqual([]);
    expect(referenceProblems(good.staticDoc, good.dynamicDoc)).toEqual([]);
  });

  it("reject a router with `entrypoints` (lower case)", () => {
    const doc = structuredClone(good.dynamicDoc);
    const router = doc.http.routers.coder;
    router.entrypoints = router.entryPoints;
    delete router.entryPoints;
    expect(schemaErrors(validateDynamic, doc)).not.toEqual([]);
  });

  it("reject a server with `address` instead of `url`", () => {
    const doc = structuredClone(good.dynamicDoc);
    doc.http.services.stt.loadBalancer.servers = [{ address: "stt:8000" }];
    expect(schemaErrors(validateDynamic, doc)).not.toEqual([]);
  });

  it("reject a misspelled top-level static key the schema alone lets through", () => {
    const doc = { ...good.staticDoc, entrypoints: good.staticDoc.entryPoints };
    expect(schemaErrors(validateStatic, doc)).toEqual([]);
    expect(staticProblems(doc)).toContain("unknown top-level key entrypoints");
  });

  it("reject dangling references and bad URLs", () => {
    const doc = structuredClone(good.dynamicDoc);
    doc.http.routers.stt.service = "nope";
    doc.http.routers.tts.middlewares = ["missing"];
    doc.http.routers.tts.entryPoints = ["web", "https"];
    doc.http.services.coder.failover.fallback = "gone";
    doc.http.services["coder-primary"].loadBalancer.servers = [{ url: "http://10.118.0.10:8000/v1" }];
    const problems = referenceProblems(good.staticDoc, doc).join("\n");
    for (const expected of [
      "service nope",
      "middleware missing",
      "entry point https",
      "gone does not exist",
      "is not http://host:port",
    ])
      expect(problems).toContain(expected);
  });
});

describe.each(CASES)("Traefik configuration for %o", (settings) => {
  const { staticDoc, dynamicDoc, routes, publicRouters } = render(settings);
  const withDomain = "domain" in settings;

  it("validates against the Traefik v3 schemas", () => {
    expect(staticProblems(staticDoc), label(settings)).toEqual([]);
    expect(schemaErrors(validateDynamic, dynamicDoc), label(settings)).toEqual([]);
  });

  it("references only things that exist", () => {
    expect(referenceProblems(staticDoc, dynamicDoc)).toEqual([]);
  });

  it("listens on 80, 443 and 8100, with metrics and ping on 8082", () => {
    const address = (ep: string) => staticDoc.entryPoints[ep]?.address;
    expect([address("web"), address("websecure"), address("legacy")]).toEqual([
      `:${PUBLIC_PORTS.http}`,
      `:${PUBLIC_PORTS.https}`,
      `:${PUBLIC_PORTS.legacy}`,
    ]);
    expect(address("metrics")).toBe(`:${GATEWAY_METRICS_PORT}`);
    expect(staticDoc.metrics.prometheus.entryPoint).toBe("metrics");
    expect(staticDoc.ping.entryPoint).toBe("metrics");
    // No API router may listen on the metrics entry point.
    for (const router of Object.values<Obj>(publicRouters)) expect(router.entryPoints).not.toContain("metrics");
    expect(dynamicDoc.http.routers[GATEKEEPER_HEALTH_ROUTER].entryPoints).toEqual(["metrics"]);
    expect(dynamicDoc.http.routers[METRICS_VPC_ROUTER].entryPoints).toEqual(["metrics"]);
  });

  it("reads routes from a watched directory, not from Docker", () => {
    expect(staticDoc.providers.file).toEqual({ directory: expect.stringMatching(/^\//), watch: true });
    expect(staticDoc.providers.docker).toBeUndefined();
  });

  it("keeps long generations and big uploads alive", () => {
    for (const ep of ["web", "websecure", "legacy"]) {
      const t = staticDoc.entryPoints[ep].transport.respondingTimeouts;
      expect(seconds(t.readTimeout)).toBeGreaterThanOrEqual(400); // 50 MB at 1 Mbit/s
    }
    expect(seconds(staticDoc.serversTransport.forwardingTimeouts.responseHeaderTimeout)).toBeGreaterThanOrEqual(600);
    expect(seconds(staticDoc.serversTransport.forwardingTimeouts.dialTimeout)).toBeLessThanOrEqual(10);
  });

  it("bounds every response, after the slowest backend may take to start it", () => {
    // writeTimeout is a per-response deadline in Go's net/http (a 5 s one cut an 11 s stream
    // through the built Traefik): it must leave a full non-streaming completion time to be written.
    for (const ep of ["web", "websecure", "legacy"]) {
      const write = seconds(staticDoc.entryPoints[ep].transport.respondingTimeouts.writeTimeout);
      expect(write).toBeGreaterThan(seconds(staticDoc.serversTransport.forwardingTimeouts.responseHeaderTimeout));
      // traefik#13820: streams were reported cut at 60 s.
      expect(write).toBeGreaterThan(60);
    }
    expect(RESPONDING_TIMEOUTS.writeTimeout).not.toBe("0s");
    expect(seconds(FORWARDING_TIMEOUTS.responseHeaderTimeout)).toBeLessThan(seconds(RESPONDING_TIMEOUTS.writeTimeout));
  });

  it("logs JSON access logs that keep only a positive list: nothing a client wrote, no path, no query", () => {
    expect(staticDoc.accessLog.format).toBe("json");
    const fields = staticDoc.accessLog.fields;
    expect(fields.defaultMode).toBe("drop");
    expect(fields.headers).toEqual({ defaultMode: "drop", names: { "X-Request-Id": "keep", "X-Hub-Key-Id": "keep" } });
    const kept = Object.keys(fields.names).filter((n) => fields.names[n] === "keep");
    for (const clientText of [
      "RequestPath",
      "RequestHost",
      "RequestAddr",
      "RequestMethod",
      "ClientUsername",
      "request_User-Agent",
      "request_Referer",
    ])
      expect(kept).not.toContain(clientText);
    for (const needed of ["RouterName", "DownstreamStatus", "Duration", "OriginDuration"])
      expect(kept).toContain(needed);
    expect(staticDoc.log.level).toBe("INFO");
  });

  it("uses ACME and TLS only with a domain", () => {
    const routers = Object.values<Obj>(publicRouters);
    if (withDomain) {
      const acme = staticDoc.certificatesResolvers[CERT_RESOLVER].acme;
      expect(acme).toMatchObject({ email: DOMAIN.acmeEmail, httpChallenge: { entryPoint: "web" } });
      expect(acme.storage).toMatch(/acme\.json$/);
      expect(staticDoc.entryPoints.web.http.redirections.entryPoint).toMatchObject({
        to: "websecure",
        scheme: "https",
      });
      for (const ep of ["websecure", "legacy"])
        expect(staticDoc.entryPoints[ep].http.tls.certResolver).toBe(CERT_RESOLVER);
      for (const router of routers) {
        expect(router.entryPoints).toEqual(["websecure", "legacy"]);
        expect(router.tls).toEqual({ certResolver: CERT_RESOLVER, domains: [{ main: DOMAIN.domain }] });
      }
    } else {
      expect(staticDoc.certificatesResolvers).toBeUndefined();
      expect(JSON.stringify(staticDoc)).not.toContain("acme");
      for (const router of routers) {
        expect(router.entryPoints).toEqual(["web", "legacy"]);
        expect(router.tls).toBeUndefined();
      }
    }
  });

  it("limits every client address: the gatekeeper on the API routes, Traefik on the two routers that never ask it; Traefik keeps no per-key limit", () => {
    const ip = dynamicDoc.http.middlewares[IP_RATE_LIMIT_MIDDLEWARE].rateLimit;
    // Ten keys' worth of the per-key preset (120/min, burst 30), per client connection's address.
    expect(ip).toEqual({ average: 1200, period: "1m", burst: 300 });
    // traefik#10307: a limiter keyed on a header lumps every request without it into one bucket.
    for (const mw of Object.values<Obj>(dynamicDoc.http.middlewares))
      expect(mw.rateLimit?.sourceCriterion).toBeUndefined();
    expect(Object.values<Obj>(dynamicDoc.http.middlewares).filter((m) => m.rateLimit)).toHaveLength(1);
    // Its 429 becomes JSON; nothing else behind it answers 429.
    expect(dynamicDoc.http.middlewares[IP_LIMIT_ERRORS].errors.status).toEqual(["429"]);
    for (const [name, router] of Object.entries<Obj>(publicRouters)) {
      if (name === NOT_FOUND_ROUTER || name === GRPC_REFUSED_ROUTER) {
        expect(router.middlewares.slice(0, 3)).toEqual([STRIP_CLIENT_IDS, IP_LIMIT_ERRORS, IP_RATE_LIMIT_MIDDLEWARE]);
        continue;
      }
      const admin = name === METRICS_ADMIN_ROUTER || name === AUTOSCALER_STATUS_ROUTER || name === ADMIN_API_ROUTER;
      const scope =
        name === ADMIN_API_ROUTER ? "admin-api" : admin ? "admin" : routes.find((r) => r.name === name)!.scope;
      // Client-set ids go before anything can answer (the access log keeps the final headers); the
      // door's catcher wraps the gatekeeper's call; the gatekeeper checks the address, then the key.
      expect(router.middlewares.slice(0, 3), name).toEqual([
        STRIP_CLIENT_IDS,
        `${admin ? "admin" : name}-door`,
        `auth-${scope}`,
      ]);
      expect(router.middlewares).not.toContain(IP_RATE_LIMIT_MIDDLEWARE);
    }
    // No loopback hop: the three exchanges per request are the client's, the gatekeeper's and the backend's.
    expect(Object.keys(staticDoc.entryPoints).sort()).toEqual(["legacy", "metrics", "web", "websecure"]);
  });

  it("serves metrics freely inside the VPC and publicly only to keys with the admin scope", () => {
    expect(staticDoc.metrics.prometheus.manualRouting).toBe(true);
    expect(dynamicDoc.http.routers[METRICS_VPC_ROUTER]).toMatchObject({
      entryPoints: ["metrics"],
      service: "prometheus@internal",
    });
    const admin = dynamicDoc.http.routers[METRICS_ADMIN_ROUTER];
    expect(admin.service).toBe("prometheus@internal");
    expect(admin.entryPoints).not.toContain("metrics");
    expect(admin.middlewares).toContain("auth-admin");
    expect(dynamicDoc.http.middlewares["auth-admin"].forwardAuth.address).toBe(
      "https://gatekeeper:8443/auth?scope=admin",
    );
  });

  it("has Traefik health-check the gatekeeper, visible only inside the VPC", () => {
    const health = dynamicDoc.http.routers[GATEKEEPER_HEALTH_ROUTER];
    expect(dynamicDoc.http.services[health.service].loadBalancer).toMatchObject({
      servers: [{ url: "http://gatekeeper:8080" }],
      healthCheck: { path: "/healthz" },
    });
  });

  it("sends every route straight to the gatekeeper over TLS, fail closed, with the route's scope", () => {
    const staticMount = gatewaySpec(mustLoad(settings)).mounts.find((m) => m.containerPath === "/etc/traefik")!;
    for (const route of routes) {
      const auth = dynamicDoc.http.middlewares[`auth-${route.scope}`].forwardAuth;
      // HTTPS to the container's name (its certificate's), so Go speaks HTTP/2 on one kept-alive connection.
      expect(auth.address).toBe(`https://gatekeeper:8443/auth?scope=${route.scope}`);
      // Pinned: the certificate infra writes beside traefik.yml, inside the static mount.
      expect(auth.tls).toEqual({ ca: GATEKEEPER_CA_FILE.container });
      expect(GATEKEEPER_CA_FILE.container.startsWith(`${staticMount.containerPath}/`)).toBe(true);
      expect(GATEKEEPER_CA_FILE.host).toBe(
        `${staticMount.hostPath}${GATEKEEPER_CA_FILE.container.slice(staticMount.containerPath.length)}`,
      );
      // The backends' key replaces the client's on the forwarded request; the client never sees it.
      expect(auth.authResponseHeaders).toEqual(expect.arrayContaining(["Authorization", "X-Api-Key", "X-Hub-Key-Id"]));
      expect(auth.trustForwardHeader).toBe(false);
      expect(auth.maxResponseBodySize).toBeGreaterThan(0);
    }
    const scopes = Object.fromEntries(routes.map((r) => [r.name, r.scope]));
    expect(scopes.coder).toBe("llm");
    if (scopes.stt) expect(scopes.stt).toBe("stt");
    if (scopes.tts) expect(scopes.tts).toBe("tts");
    // The admin API asks for the admin scope the same way, but keeps the caller's key for the gatekeeper's own check.
    const adminApi = dynamicDoc.http.middlewares["auth-admin-api"].forwardAuth;
    expect(adminApi).toMatchObject({
      address: "https://gatekeeper:8443/auth?scope=admin",
      tls: { ca: GATEKEEPER_CA_FILE.container },
      authResponseHeaders: ["X-Hub-Key-Id", "X-Request-Id"],
      trustForwardHeader: false,
    });
    // Behind it only Traefik's own 502/504 on the way to the admin API are rewritten; the gatekeeper's answers pass.
    expect(dynamicDoc.http.middlewares["admin-api-errors"].errors.status).toEqual(["502", "504"]);
    expect(dynamicDoc.http.routers[ADMIN_API_ROUTER].middlewares).toEqual([
      STRIP_CLIENT_IDS,
      "admin-door",
      "auth-admin-api",
      "admin-api-errors",
    ]);
  });

  it("strips client-sent X-Request-Id, X-Hub-Key-Id and Expect before anything reads them", () => {
    expect(dynamicDoc.http.middlewares[STRIP_CLIENT_IDS].headers.customRequestHeaders).toEqual({
      "X-Request-Id": "",
      "X-Hub-Key-Id": "",
      Expect: "",
    });
    for (const route of routes)
      expect(dynamicDoc.http.middlewares[`auth-${route.scope}`].forwardAuth.authRequestHeaders).not.toContain(
        "X-Request-Id",
      );
  });

  it("rewrites only the statuses Traefik itself makes on a route, each to an error page nginx serves", () => {
    const conf = errorsNginxConf(mustLoad(settings), routes);
    for (const route of routes) {
      const chain: string[] = dynamicDoc.http.routers[route.name].middlewares;
      const errors = dynamicDoc.http.middlewares[`${route.name}-errors`].errors;
      expect(chain.indexOf(`${route.name}-errors`)).toBe(3);
      // A backend's own 4xx, 500 and 503 bodies (vLLM, llama.cpp's "Loading model") pass untouched.
      expect(errors.status, route.name).toEqual(route.streaming ? ["502", "504"] : ["413", "502", "504"]);
      // The door's catcher, outside the gatekeeper's call: Traefik's own 500 (and a backend's, told apart by its page).
      const door = dynamicDoc.http.middlewares[`${route.name}-door`].errors;
      expect(chain.indexOf(`${route.name}-door`)).toBe(1);
      expect(door).toEqual({
        status: [String(DOOR_FAILURE_STATUS)],
        service: ERRORS_SERVICE,
        query: `/errors/${route.name}/door`,
      });
      expect(conf).toMatch(
        new RegExp(
          `location = /errors/${route.name}/door \\{\\s+if \\(\\$http_x_hub_key_id\\) \\{\\s+rewrite '\\^' /errors/${route.name}/backend-500 last;`,
        ),
      );
      expect(conf).toContain(`location = /errors/${route.name}/backend-500 {`);
      // Before the body limit, so its 413 is caught.
      if (!route.streaming)
        expect(chain.indexOf(`${route.name}-errors`)).toBeLessThan(chain.indexOf(`${route.name}-body-limit`));
      expect(errors.service).toBe(ERRORS_SERVICE);
      for (const status of errors.status)
        expect(conf).toContain(`location = ${errors.query.replace("{status}", status)} {`);
    }
    for (const mw of [IP_LIMIT_ERRORS]) {
      const errors = dynamicDoc.http.middlewares[mw].errors;
      for (const status of errors.status.filter((s: string) => !s.includes("-")))
        expect(conf).toContain(`location = ${errors.query.replace("{status}", status)} {`);
    }
    expect(dynamicDoc.http.routers[NOT_FOUND_ROUTER]).toMatchObject({
      rule: "PathPrefix(`/`)",
      priority: 1,
      service: ERRORS_SERVICE,
    });
  });

  it("refuses gRPC and gRPC-Web with a 415 page ahead of every route, without asking the gatekeeper", () => {
    const router = dynamicDoc.http.routers[GRPC_REFUSED_ROUTER];
    expect(router.service).toBe(ERRORS_SERVICE);
    expect(router.middlewares).toEqual([
      STRIP_CLIENT_IDS,
      IP_LIMIT_ERRORS,
      IP_RATE_LIMIT_MIDDLEWARE,
      "grpc-refused-page",
    ]);
    for (const other of Object.values<Obj>(publicRouters))
      if (other !== router) expect(router.priority).toBeGreaterThan(other.priority ?? other.rule.length);
    const page = errorPages(mustLoad(settings), routes).find((p) => p.status === 415)!;
    expect(dynamicDoc.http.middlewares["grpc-refused-page"].replacePath.path).toBe(page.path);
    expect(page.body.error).toMatchObject({ type: "invalid_request_error", code: "unsupported_media_type" });
  });

  it("uses no middleware or challenge the Traefik build left out (basic/digest auth, ACME DNS providers)", () => {
    for (const mw of Object.values<Obj>(dynamicDoc.http.middlewares)) {
      expect(mw.basicAuth).toBeUndefined();
      expect(mw.digestAuth).toBeUndefined();
    }
    for (const resolver of Object.values<Obj>(staticDoc.certificatesResolvers ?? {}))
      expect(resolver.acme.dnsChallenge).toBeUndefined();
  });

  it("never buffers a streaming route, and caps upload bodies", () => {
    const middlewares = dynamicDoc.http.middlewares;
    for (const route of routes) {
      const used = (dynamicDoc.http.routers[route.name].middlewares as string[]).map((m) => middlewares[m]);
      const buffering = used.filter((m) => m.buffering);
      if (route.streaming) expect(buffering, route.name).toEqual([]);
      else
        expect(
          buffering.map((m) => m.buffering),
          route.name,
        ).toEqual([{ maxRequestBodyBytes: route.maxBodyBytes }]);
    }
    const upload = routes.filter((r) => r.name === "stt" || r.name === "documents");
    expect(upload.length).toBeGreaterThan(0);
    for (const route of upload) {
      const limit = (dynamicDoc.http.routers[route.name].middlewares as string[])
        .map((m) => middlewares[m].buffering?.maxRequestBodyBytes)
        .find((v) => v !== undefined);
      expect(limit, route.name).toBeGreaterThanOrEqual(25 * 1024 * 1024);
    }
  });

  it("rewrites /v1/ocr/... to /v1/... before forwarding", () => {
    for (const route of routes.filter((r) => r.rewritePrefix)) {
      const rewrite = (dynamicDoc.http.routers[route.name].middlewares as string[])
        .map((m) => dynamicDoc.http.middlewares[m].replacePathRegex)
        .find(Boolean);
      expect(rewrite, route.name).toBeDefined();
      // Go's regexp and JavaScript's agree on this pattern; $1 is Go's Expand syntax.
      const target = route.paths[0].replace(new RegExp(rewrite.regex), rewrite.replacement);
      expect(target).toBe(route.paths[0].replace("/v1/ocr/", "/v1/"));
    }
  });

  it("matches exactly the route table's paths", () => {
    for (const route of routes) {
      const fn = route.prefix ? "PathPrefix" : "Path";
      expect(dynamicDoc.http.routers[route.name].rule).toBe(route.paths.map((p) => `${fn}(\`${p}\`)`).join(" || "));
    }
  });
});

describe("failover and the GPU-off answer", () => {
  it("hybrid with the GPU on: coder fails over from the GPU node to the holder, and from the holder to coder-fallback", () => {
    const { dynamicDoc, ips } = render({ tier: "hybrid", gpuEnabled: true });
    const { routers, services } = dynamicDoc.http;
    expect(routers.coder.service).toBe("coder");
    expect(services.coder.failover).toEqual({ service: "coder-primary", fallback: "coder-hold-or-fallback" });
    expect(services["coder-primary"].loadBalancer.servers).toEqual([{ url: `http://${ips["gpu-0"]}:8000` }]);
    expect(services["coder-primary"].loadBalancer.healthCheck).toMatchObject({ path: "/health" });
    // The holder (the controller's off port) is health-checked: with the controller down the CPU stand-in answers.
    expect(services["coder-hold-or-fallback"].failover).toEqual({
      service: CODER_HOLD_SERVICE,
      fallback: "coder-fallback",
    });
    expect(services[CODER_HOLD_SERVICE].loadBalancer).toEqual({
      servers: [{ url: "http://autoscaler:9101" }],
      healthCheck: { path: HOLDER_HEALTH_PATH, interval: "10s", timeout: "3s" },
    });
    expect(services["coder-fallback"].loadBalancer.servers).toEqual([{ url: "http://coder-fallback:8080" }]);
    // OCR has no CPU stand-in in this preset: it fails over to the 503 responder.
    expect(services.ocr.failover).toEqual({ service: "ocr-primary", fallback: GPU_OFF_SERVICE });
    expect(services["ocr-primary"].loadBalancer.servers).toEqual([{ url: `http://${ips["gpu-0"]}:8001` }]);
  });

  it("hybrid with the GPU off: coder goes to the holder (then coder-fallback), OCR to gpu-off; with holding off, straight to coder-fallback", () => {
    const { dynamicDoc } = render({ tier: "hybrid", gpuEnabled: false });
    const { routers, services } = dynamicDoc.http;
    expect(routers.coder.service).toBe("coder-hold-or-fallback");
    expect(routers.ocr.service).toBe(GPU_OFF_SERVICE);
    expect(Object.values<Obj>(services).filter((s) => s.failover)).toEqual([
      { failover: { service: CODER_HOLD_SERVICE, fallback: "coder-fallback" } },
    ]);
    expect(JSON.stringify(services)).not.toMatch(/10\.118\./);
    const noHold = render({ tier: "hybrid", gpuEnabled: false, gpuHoldMaxSeconds: 0 }).dynamicDoc.http;
    expect(noHold.routers.coder.service).toBe("coder-fallback");
    expect(Object.values<Obj>(noHold.services).filter((s) => s.failover)).toEqual([]);
  });

  it("hybrid without a fallback model: coder answers with the controller's 503 (nginx's gpu-off without the controller)", () => {
    const off = render({ tier: "hybrid", fallbackModel: "none" }).dynamicDoc.http;
    expect(off.routers.coder.service).toBe(CODER_OFF_SERVICE);
    // The controller's off port, no health check: a controller that is down is Traefik's 502, rewritten to JSON.
    expect(off.services[CODER_OFF_SERVICE]).toEqual({ loadBalancer: { servers: [{ url: "http://autoscaler:9101" }] } });
    const on = render({ tier: "hybrid", fallbackModel: "none", gpuEnabled: true }).dynamicDoc.http;
    expect(on.services.coder.failover).toEqual({ service: "coder-primary", fallback: CODER_OFF_SERVICE });
    const plain = render({ tier: "hybrid", fallbackModel: "none", autoscaler: false }).dynamicDoc.http;
    expect(plain.routers.coder.service).toBe(GPU_OFF_SERVICE);
    expect(plain.services[GPU_OFF_SERVICE].loadBalancer.servers).toEqual([{ url: "http://errors:8080" }]);
    // OCR keeps nginx's gpu-off page either way: the controller scales the coder.
    expect(off.routers.ocr.service).toBe(GPU_OFF_SERVICE);
  });

  it("GPU backends use the private IPs given, and a missing one is an error naming the node", () => {
    const hub = mustLoad({ tier: "gpu" });
    const doc = traefikDynamicConfig(hub, routeTable(hub), { "gpu-0": "10.9.8.7" }) as Obj;
    expect(doc.http.services["coder-primary"].loadBalancer.servers).toEqual([{ url: "http://10.9.8.7:8000" }]);
    expect(() => traefikDynamicConfig(hub, routeTable(hub), {})).toThrow(/gpu-0/);
  });

  it("a route with neither replicas nor fallback is refused", () => {
    const hub = mustLoad({ tier: "cpu" });
    const [coder] = routeTable(hub);
    expect(() => traefikDynamicConfig(hub, [{ ...coder, primary: [], fallback: undefined }], {})).toThrow(/no backend/);
  });
});

describe("the errors nginx responder", () => {
  const hub = mustLoad({ tier: "hybrid", fallbackModel: "none", ocrCpuFallback: true, cpuSize: "s-8vcpu-16gb" });
  const routes = routeTable(hub);
  const conf = errorsNginxConf(hub, routes);
  const pages = errorPages(hub, routes);

  it("answers gpu-off on every other path with 503 and the OpenAI error body, /health with 200, and logs nothing", () => {
    expect(conf).toContain("listen 8080;");
    expect(conf).toContain("default_type application/json;");
    expect(conf).toContain("access_log off;");
    expect(conf).toMatch(/location = \/health \{\s+return 200 /);
    expect(conf).toMatch(
      /location \/ \{\s+add_header X-Hub-Backend gpu-off always;\s+add_header Retry-After 60 always;\s+return 503 /,
    );
    // Outside quoted strings the braces balance: the serializer closed every block.
    const bare = conf.replace(QUOTED, "''");
    expect(bare.split("{").length).toBe(bare.split("}").length);
    // One block per page, plus the door pages' `if`.
    expect(bare.split("{").length - 1).toBe(3 + pages.length + pages.filter((p) => p.whenAllowed).length);
  });

  it("quotes the JSON so nginx reads back exactly GPU_OFF_ERROR", () => {
    const body = conf.match(/location \/ \{[^{}]*?return 503 ('(?:[^'\\]|\\.)*');/)?.[1];
    expect(body).toBeDefined();
    expect(JSON.parse(nginxUnquote(body!))).toEqual(GPU_OFF_ERROR);
    expect(JSON.parse(nginxUnquote(conf.match(/return 200 ('(?:[^'\\]|\\.)*');/)![1]))).toEqual({ status: "ok" });
  });

  it("serves one OpenAI-format page per gateway error, with Retry-After where waiting helps", () => {
    for (const page of pages) {
      const start = conf.indexOf(`location = ${page.path} {`);
      expect(start, page.path).toBeGreaterThan(0);
      const block = conf.slice(start, conf.indexOf("\n    }", start));
      const body = JSON.parse(nginxUnquote(/return (\d{3}) ('(?:[^'\\]|\\.)*');/.exec(block)![2]));
      expect(Object.keys(body.error).sort(), page.path).toEqual(["code", "message", "type"]);
      expect(block).toContain(`return ${page.status} `);
      const retry = /add_header Retry-After (\d+) always;/.exec(block)?.[1];
      // Waiting helps for a limit, a restart, an unreachable backend or gatekeeper; not for a body
      // too large, an unknown path, a generation that took too long or a backend's internal error.
      const waitHelps =
        page.status === 429 || page.status === 502 || page.status === 503 || page.path.endsWith("/door");
      expect(retry !== undefined, page.path).toBe(waitHelps);
    }
    const ip = pages.find((p) => p.path === "/errors/ip-limit/429")!;
    // 1200/min is 20 tokens/s: Traefik's own Retry-After would be ceil(0.05 s) = 1.
    expect(ip.retryAfterSeconds).toBe(1);
    const docs504 = pages.find((p) => p.path === "/errors/documents/504")!;
    expect(docs504.body.error.message).toContain("/v1/ocr/convert/file/async");
    const stt413 = pages.find((p) => p.path === "/errors/stt/413")!;
    expect(stt413.body.error.message).toContain(String(25 * 1024 * 1024));
    // The door: the gatekeeper unreachable, or (the request allowed) the backend's own 500, named.
    const door = pages.find((p) => p.path === "/errors/stt/door")!;
    expect([door.status, door.body.error.code, door.whenAllowed]).toEqual([
      DOOR_FAILURE_STATUS,
      "auth_unavailable",
      "/errors/stt/backend-500",
    ]);
    const failed = pages.find((p) => p.path === door.whenAllowed)!;
    expect([failed.status, failed.body.error.code]).toEqual([DOOR_FAILURE_STATUS, "backend_error"]);
    expect(failed.body.error.message).toContain(routes.find((r) => r.name === "stt")!.description);
  });

  it("escapes quotes and backslashes the way nginx unescapes them, and refuses $", () => {
    const tricky = { error: { message: `it's a "test" \\ with a\nnewline` } };
    const text = renderNginxConf([{ block: "location", args: ["/"], body: [["return", 503, JSON.stringify(tricky)]] }]);
    const token = text.match(/return 503 ('(?:[^'\\]|\\.)*');/)?.[1];
    expect(token).toBeDefined();
    expect(JSON.parse(nginxUnquote(token!))).toEqual(tricky);
    expect(renderNginxConf([["listen", 8080]])).toBe("listen 8080;\n");
    expect(() => renderNginxConf([["return", 200, "costs $5"]])).toThrow(/\$/);
    // A variable only as an `if` condition, and only a plain name.
    expect(renderNginxConf([{ block: "if", condition: { variable: "http_x_a" }, body: [["return", 500]] }])).toBe(
      "if ($http_x_a) {\n    return 500;\n}\n",
    );
    expect(() =>
      renderNginxConf([{ block: "if", condition: { variable: "x) { return 200; } if ($y" }, body: [] }]),
    ).toThrow(/plain/);
  });
});

describe("GPU replicas and the routes file", () => {
  const hub = mustLoad({ tier: "gpu" });
  const routes = routeTable(hub);

  it("names every GPU replica the routes use, once per port", () => {
    expect(gpuBackendAddresses(routes, { "gpu-0": "10.1.2.3" })).toEqual([
      { node: "gpu-0", url: "http://10.1.2.3:8000", healthPath: "/health" },
      { node: "gpu-0", url: "http://10.1.2.3:8001", healthPath: "/health" },
    ]);
    expect(gpuBackendAddresses(routeTable(mustLoad({ tier: "cpu" })), {})).toEqual([]);
  });

  it("renders wait and drain scripts that bash accepts", () => {
    const backends = gpuBackendAddresses(routes, { "gpu-0": "10.1.2.3" });
    const reload = {
      routesFile: "/mnt/cpu-cache/traefik/dynamic/routes.yml",
      metricsUrl: "http://10.1.2.2:8082/metrics",
    };
    for (const script of [backendsReadyScript(backends), backendsDrainScript(backends, reload)]) {
      const check = spawnSync("bash", ["-n"], { input: script, encoding: "utf8" });
      expect(check.stderr).toBe("");
      expect(check.status).toBe(0);
    }
    expect(backendsReadyScript(backends)).toContain("'http://10.1.2.3:8001/health'");
    expect(backendsDrainScript(backends, reload)).toContain("'http://10.1.2.3:8000/metrics'");
  });
});

describe("container specs", () => {
  const hub = mustLoad({ tier: "hybrid" });
  const hubWithDomain = mustLoad({ tier: "hybrid", ...DOMAIN });

  it("pins images by tag, never latest", () => {
    for (const image of [TRAEFIK_IMAGE, ERRORS_IMAGE]) {
      expect(image.tag).not.toMatch(/latest/);
      expect(image.source.length).toBeGreaterThan(10);
    }
    expect(TRAEFIK_IMAGE.tag).toMatch(/^v3\.\d+\.\d+$/);
    expect(ERRORS_IMAGE.tag).toMatch(/^1\.\d+\.\d+-alpine$/);
  });

  it("Traefik: health via its own binary, 256 MiB, config from the cache volume, no secrets", () => {
    const spec = gatewaySpec(hub);
    expect(spec.name).toBe("gateway");
    expect(spec.health.test).toEqual(["CMD", "traefik", "healthcheck", "--ping"]);
    expect(spec.memoryLimitMiB).toBe(256);
    expect(spec.secretEnv).toEqual({});
    // Only Go's collector settings, within the memory limit.
    expect(spec.env).toEqual(TRAEFIK_GC);
    expect(Number(/^(\d+)MiB$/.exec(spec.env.GOMEMLIMIT)![1])).toBeLessThan(spec.memoryLimitMiB!);
    for (const m of spec.mounts) expect(m.hostPath.startsWith(`${CPU_CACHE_MOUNT}/traefik/`)).toBe(true);
    expect(spec.mounts.find((m) => m.hostPath === GATEWAY_DIRS.static)).toMatchObject({
      containerPath: "/etc/traefik",
      readOnly: true,
    });
    // The file provider reads the directory the dynamic config is mounted at.
    const dynamicMount = spec.mounts.find((m) => m.hostPath === GATEWAY_DIRS.dynamic)!;
    expect(dynamicMount.readOnly).toBe(true);
    expect((traefikStaticConfig(hub) as Obj).providers.file.directory).toBe(dynamicMount.containerPath);
    expect(spec.command.join(" ")).toContain("/etc/traefik/traefik.yml");
    // ACME storage is writable and mounted only when a certificate is requested.
    expect(spec.mounts.some((m) => m.hostPath === GATEWAY_DIRS.acme)).toBe(false);
    const acme = gatewaySpec(hubWithDomain).mounts.find((m) => m.hostPath === GATEWAY_DIRS.acme)!;
    expect(acme.readOnly).toBeFalsy();
    expect(
      (traefikStaticConfig(hubWithDomain) as Obj).certificatesResolvers[CERT_RESOLVER].acme.storage.startsWith(
        `${acme.containerPath}/`,
      ),
    ).toBe(true);
  });

  it("nginx: wget health check on /health, 64 MiB, conf mounted read-only", () => {
    const spec = errorsSpec(hub);
    expect(spec.name).toBe("errors");
    expect(spec.port).toBe(8080);
    expect(spec.health.test).toEqual(["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/health"]);
    expect(spec.memoryLimitMiB).toBe(64);
    expect(spec.secretEnv).toEqual({});
    expect(spec.mounts).toEqual([
      { hostPath: GATEWAY_DIRS.errors, containerPath: "/etc/nginx/conf.d", readOnly: true },
    ]);
  });

  it("keeps secrets out of the rendered files", () => {
    const text = [
      renderYaml(traefikStaticConfig(hubWithDomain)),
      renderYaml(traefikDynamicConfig(hubWithDomain, routeTable(hubWithDomain), {})),
      errorsNginxConf(hubWithDomain, routeTable(hubWithDomain)),
    ].join("\n");
    // Header names (Authorization, X-Api-Key) may appear; credential values may not.
    expect(text).not.toMatch(/Bearer\s+\S|ihk_[A-Za-z0-9]|password\s*[:=]|secret\s*[:=]/i);
  });
});

// ---- helpers --------------------------------------------------------------------------------

/** Traefik duration strings used here: "<n>s". */
function seconds(duration: string): number {
  const m = /^(\d+)s$/.exec(duration);
  if (!m) throw new Error(`unexpected duration ${duration}`);
  return Number(m[1]);
}

/** nginx's reading of a quoted token (ngx_conf_read_token): \" \' \\ lose the backslash; \t \r \n become control characters. */
function nginxUnquote(token: string): string {
  const inner = token.slice(1, -1);
  return inner.replace(/\\(.)/g, (all, c: string) =>
    c === '"' || c === "'" || c === "\\" ? c : c === "t" ? "\t" : c === "r" ? "\r" : c === "n" ? "\n" : all,
  );
}

const QUOTED = /'(?:[^'\\]|\\.)*'/g;

describe("the deploy orders route changes against GPU readiness (the plan under Pulumi's mocks)", () => {
  const plan = async (text: string) => {
    const result = await planFromText("order", "Pulumi.order.yaml", text);
    if (!result.ok) throw new Error(JSON.stringify(result.document.problems));
    return result.resources;
  };

  it("writes the routes file only after each GPU replica's wait, which follows that node's containers and drains on delete", async () => {
    const resources = await plan("config:\n  inference-hub:tier: gpu\n");
    const routes = resources.find((r) => r.name === "cpu-containers-file-dynamic-routes.yml")!;
    const wait = resources.find((r) => r.name === "gpu-0-serving")!;
    expect(routes.options.dependsOn).toContain(wait.urn);
    expect(wait.options.dependsOn).toEqual(
      expect.arrayContaining([expect.stringMatching(/ContainerHost::gpu-0-containers$/)]),
    );
    const create = String(wait.inputs.create);
    const remove = String(wait.inputs.delete);
    // The wait and the drain name the replica's private address, the one the routes file names.
    const url = /'(http:\/\/[\d.]+:8000)\/health'/.exec(create)?.[1];
    expect(url).toBeDefined();
    expect(remove).toContain(`'${url}/metrics'`);
    expect(remove).toContain("traefik_config_last_reload_success");
    expect(remove).toContain("/mnt/cpu-cache/traefik/dynamic/routes.yml");
  });

  it("has no wait when no GPU node exists", async () => {
    const resources = await plan("config:\n  inference-hub:tier: hybrid\n");
    expect(resources.filter((r) => r.name.endsWith("-serving"))).toEqual([]);
    expect(
      resources
        .find((r) => r.name === "cpu-containers-file-dynamic-routes.yml")!
        .options.dependsOn.filter((d) => d.includes("serving")),
    ).toEqual([]);
  });
});
