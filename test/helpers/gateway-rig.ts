import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import * as http from "node:http";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { Client } from "pg";
import { parse } from "yaml";
import { bundleGatekeeper } from "../../programs/gatekeeper/bundle";
import { bundleController } from "../../programs/autoscaler/controller/bundle";
import { CONTROLLER_PORT, HOLDER_HEALTH_PATH, OFF_ANSWER_PORT } from "../../programs/autoscaler/controller/contract";
import { newApiKey, type Scope } from "../../programs/gatekeeper/keys";
import { errorsNginx, GATEKEEPER_CA_FILE, renderNginxConf, renderYaml } from "../../services/gateway";
import { GATEKEEPER_CONTAINER, GATEKEEPER_TLS_PORT } from "../../services/auth";
import { GPU_SERVICE_PORTS } from "../../services/ports";
import { routeTable, SERVICE_PORTS } from "../../services/routes";
import { TRAEFIK_MISSING_REASON, traefikBinaryPath, builtTraefikVersion, TRAEFIK_VERSION } from "../../tools/traefik";
import { planFromText } from "../../cli/plan/runner";
import type { PlanArtifact } from "../../cli/plan/document";
import { loadText } from "./load";
import { remapForLoopback, type LoopbackMap } from "./loopback";
import { freeLoopbackPort, PostgresCluster, findPostgres, POSTGRES_MISSING_REASON } from "./postgres";
import { ManagedProcess, waitFor } from "./processes";
import { startStandIn, type StandIn, type StandInOptions } from "./stand-ins";
import { startGrafanaStandIn, type GrafanaStandIn } from "./grafana-stand-in";
import { OPENSSL_BINARY, OPENSSL_MISSING_REASON, selfSignedPair } from "./tls";
import { GRAFANA_CONTAINER, GRAFANA_PORT } from "../../services/grafana";
import { bundleSandboxFront } from "../../programs/sandbox/bundle";
import { SANDBOX_FRONT_CONTAINER } from "../../services/sandbox";
import { SANDBOX_FRONT_PORT } from "../../programs/sandbox/protocol";
import { bundleEmbeddingsFront } from "../../programs/embeddings/bundle";
import { EMBEDDINGS_PORT, ENV as EMBEDDINGS_ENV } from "../../programs/embeddings/contract";
import { EMBEDDER_CONTAINER, EMBEDDINGS_CONTAINER } from "../../services/embeddings";

/**
 * The gateway as deployed, on loopback: the real Traefik (built at the image's version) with the
 * exact files the offline plan renders, the real gatekeeper (its esbuild bundle, as shipped),
 * Debian's nginx with the rendered errors server, a throwaway PostgreSQL for the audit log, and
 * labelled stand-ins (./stand-ins.ts) where vLLM, llama.cpp, speaches, Coqui and docling-serve
 * would run. Only addresses, ports and directories differ from production, changed by
 * remapForLoopback (./loopback.ts) on the parsed configuration.
 *
 * nginx here is Debian 12's 1.22; production runs nginx:1.30.5-alpine. The errors server uses
 * only `listen`, `server_tokens`, `access_log`, `default_type`, `location`, `add_header ... always`
 * and `return`, unchanged between the two.
 */

/** The stack the rig plans: hybrid with the CPU fallback coder and docling, so every kind of route exists. */
export const RIG_STACK_SETTINGS: Readonly<Record<string, string | number | boolean>> = {
  tier: "hybrid",
  fallbackModel: "qwen2.5-coder-1.5b",
  ocrCpuFallback: true,
  cpuSize: "s-8vcpu-16gb",
};

export const NGINX_BINARY = ["/usr/sbin/nginx", "/usr/bin/nginx"].find((p) => existsSync(p));

/** Why the rig cannot run here, or undefined. */
export function rigMissing(): string | undefined {
  const missing: string[] = [];
  if (builtTraefikVersion() !== TRAEFIK_VERSION) missing.push(TRAEFIK_MISSING_REASON);
  if (!NGINX_BINARY) missing.push('no nginx (Debian package "nginx"; .ci/run installs it)');
  if (!OPENSSL_BINARY) missing.push(OPENSSL_MISSING_REASON);
  if (!findPostgres()) missing.push(POSTGRES_MISSING_REASON);
  return missing.length ? missing.join("; ") : undefined;
}

export interface RigKey {
  readonly id: string;
  readonly key: string;
}

export type RoutesVariant = "gpu-off" | "gpu-on";

interface Rendered {
  readonly staticDoc: Record<string, unknown>;
  readonly dynamicDoc: Record<string, unknown>;
  readonly nginxText: string;
  readonly gatekeeperEnv: Record<string, string>;
  readonly gatewayCommand: readonly string[];
  readonly gatewayEnv: Record<string, string>;
  readonly gpuPrivateIp?: string;
  /** The autoscaling controller's rendered config file and environment, when the stack runs it. */
  readonly autoscalerConfig?: Record<string, unknown>;
  readonly autoscalerEnv?: Record<string, string>;
  /** The sandbox front's environment, when the stack runs the sandbox. */
  readonly sandboxFrontEnv?: Record<string, string>;
  /** The embeddings front's container environment, when the stack serves /v1/embeddings. */
  readonly embeddingsEnv?: Record<string, string>;
  /** The embedder's llama-server arguments (its --ctx-size bounds the stand-in's batch). */
  readonly embedderCommand?: readonly string[];
}

function stackText(settings: Readonly<Record<string, string | number | boolean>>): string {
  return `config:\n${Object.entries(settings)
    .map(([k, v]) => `  inference-hub:${k}: ${JSON.stringify(v)}`)
    .join("\n")}\n`;
}

const artifact = (artifacts: readonly PlanArtifact[], kind: string, p?: string): string => {
  const found = artifacts.find((a) => a.kind === kind && (p === undefined || a.path === p));
  if (!found) throw new Error(`the plan rendered no ${kind} artifact${p ? ` at ${p}` : ""}`);
  return found.content;
};

/** The files the offline plan renders for these settings, parsed. */
export async function renderPlan(settings: Readonly<Record<string, string | number | boolean>>): Promise<Rendered> {
  const text = stackText(settings);
  const result = await planFromText("rig", "Pulumi.rig.yaml", text);
  if (!result.ok) throw new Error(`the rig's stack was refused: ${JSON.stringify(result.document.problems)}`);
  const { artifacts, document } = result;
  const nodeAddresses = (document.outputs.nodeAddresses ?? {}) as Record<string, { private: string }>;
  const spec = (name: string) =>
    JSON.parse(artifact(artifacts, "container-spec", `cpu/containers/${name}.json`)) as {
      env: Record<string, string>;
      command: string[];
    };
  return {
    staticDoc: parse(artifact(artifacts, "traefik-static")) as Record<string, unknown>,
    dynamicDoc: parse(artifact(artifacts, "traefik-dynamic")) as Record<string, unknown>,
    nginxText: artifact(artifacts, "errors-nginx"),
    gatekeeperEnv: spec("gatekeeper").env,
    gatewayCommand: spec("gateway").command,
    gatewayEnv: spec("gateway").env,
    gpuPrivateIp: nodeAddresses["gpu-0"]?.private,
    autoscalerConfig: artifacts.some((a) => a.kind === "autoscaler-config")
      ? (JSON.parse(artifact(artifacts, "autoscaler-config")) as Record<string, unknown>)
      : undefined,
    autoscalerEnv: artifacts.some((a) => a.path === "cpu/containers/autoscaler.json")
      ? spec("autoscaler").env
      : undefined,
    sandboxFrontEnv: artifacts.some((a) => a.path === `cpu/containers/${SANDBOX_FRONT_CONTAINER}.json`)
      ? spec(SANDBOX_FRONT_CONTAINER).env
      : undefined,
    embeddingsEnv: artifacts.some((a) => a.path === `cpu/containers/${EMBEDDINGS_CONTAINER}.json`)
      ? spec(EMBEDDINGS_CONTAINER).env
      : undefined,
    embedderCommand: artifacts.some((a) => a.path === `cpu/containers/${EMBEDDER_CONTAINER}.json`)
      ? spec(EMBEDDER_CONTAINER).command
      : undefined,
  };
}

export interface RigOptions {
  /** Extra stack settings (e.g. higher rate limits for the benchmark). */
  readonly settings?: Readonly<Record<string, string | number | boolean>>;
  /** Keys to create: name → scopes (and optional limits). */
  readonly keys?: Readonly<
    Record<
      string,
      {
        readonly scopes: readonly Scope[];
        readonly revoked?: boolean;
        readonly ratePerMinute?: number;
        readonly burst?: number;
        readonly sandboxLimits?: Readonly<Record<string, number>>;
        readonly waitSeconds?: number;
        readonly maxWaitSeconds?: number;
      }
    >
  >;
  /**
   * Traefik's stdout (its log and access log) goes to a file in the rig's directory instead of
   * being parsed here: for benchmarks, whose client shares the CPU. accessLog() is then empty.
   * @default false
   */
  readonly logToFile?: boolean;
  /**
   * The bundled autoscaling controller with its rendered config, as deployed whenever the stack
   * runs it (its off port holds coder requests in front of the CPU stand-in). `githubApi`: the
   * recording stand-in of GitHub's API it dispatches to; no token: advice mode. `false`: not
   * started, as with a controller that is down (its routes answer 502).
   * @default - started in advice mode when the stack runs it
   */
  readonly autoscaler?: { readonly githubApi: string; readonly dispatchToken?: string } | false;
  /**
   * Run the bundled sandbox front with its rendered environment (the stack must set `sandbox: on`),
   * pointed at `nodeUrl` (the sandbox API on loopback) with the sandbox `token`.
   * @default - not started: the sandbox route answers 502
   */
  readonly sandbox?: { readonly nodeUrl: string; readonly token: string };
  /**
   * Give the gatekeeper the audit PostgreSQL (DATABASE_URL), where it also keeps runtime keys.
   * Without it the spool alone is the audit log and runtime keys live in its state directory.
   * @default true
   */
  readonly database?: boolean;
  /**
   * Benchmark only: changes Traefik's static file after the loopback remap (pprof through
   * `api.debug`, for one). Tests never set it: they run the plan's file as it is.
   * @default - the plan's static file unchanged
   */
  readonly traefikStatic?: (doc: Record<string, unknown>) => Record<string, unknown>;
  /** Benchmark only: Node options for the gatekeeper (`--cpu-prof`). @default - none */
  readonly gatekeeperNodeArgs?: readonly string[];
}

export const RIG_BACKEND_KEY = "rig-internal-backend-key-0123456789abcdef";

export class GatewayRig {
  readonly keys: Record<string, RigKey> = {};
  readonly standIns: Record<
    "fallback" | "stt" | "tts" | "docling" | "gpuCoder" | "gpuOcr" | "embedder",
    StandIn | undefined
  > = {
    fallback: undefined,
    stt: undefined,
    tts: undefined,
    docling: undefined,
    gpuCoder: undefined,
    gpuOcr: undefined,
    embedder: undefined,
  };
  /** Where the grafana container would be (the stack runs Grafana unless `grafana: false`). */
  grafana?: GrafanaStandIn;
  traefik!: ManagedProcess;
  nginx!: ManagedProcess;
  gatekeeper!: ManagedProcess;
  postgres!: PostgresCluster;
  databaseUrl!: string;
  /** Loopback ports of Traefik's entry points. */
  readonly entry: Record<"web" | "websecure" | "legacy" | "metrics", number> = {
    web: 0,
    websecure: 0,
    legacy: 0,
    metrics: 0,
  };
  gatekeeperPort = 0;
  /** The gatekeeper's forwardAuth port (HTTP/2 over TLS). */
  gatekeeperTlsPort = 0;
  autoscaler?: ManagedProcess;
  sandboxFront?: ManagedProcess;
  sandboxFrontPort = 0;
  /** The bundled embeddings front (programs/embeddings/), when the stack serves /v1/embeddings. */
  embeddings?: ManagedProcess;
  embeddingsPort = 0;
  readonly autoscalerPorts = { control: 0, off: 0 };
  gpuPorts = { coder: 0, ocr: 0 };
  readonly dir = mkdtempSync(path.join(tmpdir(), "hub-rig-"));
  private loopback!: LoopbackMap;
  private variants!: Record<RoutesVariant, Rendered>;
  private settings!: Readonly<Record<string, string | number | boolean>>;
  private startGatekeeperProcess!: () => ManagedProcess;
  /** The gatekeeper's environment as started (after remapping), for a second replica. */
  gatekeeperEnv: NodeJS.ProcessEnv = {};
  private gatekeeperBundle = "";
  private readonly accessLines: Record<string, unknown>[] = [];
  private readonly extraProcesses: ManagedProcess[] = [];

  private constructor() {}

  static async start(options: RigOptions = {}): Promise<GatewayRig> {
    // Ports are picked free and then bound by other processes: another program on the machine
    // can take one in between. That race (and only it) gets one more try with fresh ports.
    for (let attempt = 1; ; attempt++) {
      const rig = new GatewayRig();
      try {
        await rig.boot(options);
        return rig;
      } catch (error) {
        await rig.stop();
        if (attempt >= 2 || !/address already in use/.test(String((error as Error).message))) throw error;
      }
    }
  }

  private async boot(options: RigOptions): Promise<void> {
    const missing = rigMissing();
    if (missing) throw new Error(missing);
    this.settings = { ...RIG_STACK_SETTINGS, ...options.settings };
    // The same stack with the GPU off and on: what `pulumi up` would write before and after `gpu on`.
    this.variants = {
      "gpu-off": await renderPlan({ ...this.settings, gpuEnabled: false }),
      "gpu-on": await renderPlan({ ...this.settings, gpuEnabled: true }),
    };
    const dirs = {
      static: path.join(this.dir, "static"),
      dynamic: path.join(this.dir, "dynamic"),
      errors: path.join(this.dir, "nginx"),
      keys: path.join(this.dir, "keys"),
      spool: path.join(this.dir, "spool"),
      app: path.join(this.dir, "app"),
      state: path.join(this.dir, "gatekeeper-state"),
    };
    for (const d of Object.values(dirs)) mkdirSync(d, { recursive: true });

    const [
      web,
      websecure,
      legacy,
      metrics,
      nginxPort,
      gatekeeperPort,
      gatekeeperTlsPort,
      gpuCoder,
      gpuOcr,
      autoscalerControl,
      autoscalerOff,
      sandboxFront,
      embeddingsPort,
    ] = await Promise.all(Array.from({ length: 13 }, () => freeLoopbackPort()));
    this.sandboxFrontPort = sandboxFront;
    this.embeddingsPort = embeddingsPort;
    Object.assign(this.autoscalerPorts, { control: autoscalerControl, off: autoscalerOff });
    Object.assign(this.entry, { web, websecure, legacy, metrics });
    this.gatekeeperPort = gatekeeperPort;
    this.gatekeeperTlsPort = gatekeeperTlsPort;
    this.gpuPorts = { coder: gpuCoder, ocr: gpuOcr };

    this.standIns.fallback = await startStandIn({ program: "llama.cpp" });
    this.standIns.stt = await startStandIn({ program: "speaches" });
    this.standIns.tts = await startStandIn({ program: "coqui-tts" });
    this.standIns.docling = await startStandIn({ program: "docling-serve" });
    this.grafana = await startGrafanaStandIn();
    const embedderArgs = this.variants["gpu-off"].embedderCommand;
    if (embedderArgs) {
      const ctx = Number(embedderArgs[embedderArgs.indexOf("--ubatch-size") + 1]);
      this.standIns.embedder = await startStandIn({
        program: "llama.cpp",
        model: embedderArgs[embedderArgs.indexOf("--alias") + 1],
        embeddings: { dimensions: 1024, ubatch: ctx },
      });
    }

    const gpuIp = this.variants["gpu-on"].gpuPrivateIp;
    if (!gpuIp) throw new Error("the GPU-on plan has no gpu-0 private address");
    const ports = new Map<string, number>([
      [":80", web],
      [":443", websecure],
      [":8100", legacy],
      [":8082", metrics],
      [`errors:${SERVICE_PORTS.errors}`, nginxPort],
      // nginx's own `listen` in the errors server (no other config here listens on :8080).
      [`:${SERVICE_PORTS.errors}`, nginxPort],
      [`gatekeeper:8080`, gatekeeperPort],
      [`${GATEKEEPER_CONTAINER}:${GATEKEEPER_TLS_PORT}`, gatekeeperTlsPort],
      [`coder-fallback:${SERVICE_PORTS.llamaCpp}`, this.standIns.fallback.port],
      [`stt:${SERVICE_PORTS.stt}`, this.standIns.stt.port],
      [`tts:${SERVICE_PORTS.tts}`, this.standIns.tts.port],
      [`ocr-fallback:${SERVICE_PORTS.docling}`, this.standIns.docling.port],
      [`${GRAFANA_CONTAINER}:${GRAFANA_PORT}`, this.grafana.port],
      [`${EMBEDDINGS_CONTAINER}:${EMBEDDINGS_PORT}`, embeddingsPort],
      ...(this.standIns.embedder
        ? [[`${EMBEDDER_CONTAINER}:${SERVICE_PORTS.llamaCpp}`, this.standIns.embedder.port] as [string, number]]
        : []),
      [`${gpuIp}:${GPU_SERVICE_PORTS.coder}`, gpuCoder],
      [`${gpuIp}:${GPU_SERVICE_PORTS.ocr}`, gpuOcr],
      [`autoscaler:${CONTROLLER_PORT}`, autoscalerControl],
      [`autoscaler:${OFF_ANSWER_PORT}`, autoscalerOff],
      // Traefik's metrics entry point by container name (Prometheus's target).
      [`gateway:8082`, metrics],
      [`${SANDBOX_FRONT_CONTAINER}:${SANDBOX_FRONT_PORT}`, sandboxFront],
    ]);
    const paths = new Map<string, string>([
      ["/etc/traefik", dirs.static],
      ["/var/lib/traefik/dynamic", dirs.dynamic],
      ["/keys", dirs.keys],
      ["/spool", dirs.spool],
      ["/gatekeeper-state", dirs.state],
      ["/config", path.join(this.dir, "autoscaler-config")],
      ["/state", path.join(this.dir, "autoscaler-state")],
    ]);
    this.loopback = { ports, paths };

    // nginx: the rendered server block, from the same structure the plan rendered (checked equal).
    const hub = loadText(stackText({ ...this.settings, gpuEnabled: false }));
    if (!hub.ok) throw new Error("rig stack refused");
    const tree = errorsNginx(hub.config, routeTable(hub.config));
    if (renderNginxConf(tree) !== this.variants["gpu-off"].nginxText)
      throw new Error("the errors config rendered here differs from the plan's artifact");
    writeFileSync(path.join(dirs.errors, "default.conf"), renderNginxConf(remapForLoopback(tree, this.loopback)));
    const nginxMain = path.join(this.dir, "nginx.conf");
    const temp = (name: string) => `${name} ${path.join(this.dir, `nginx-${name}`)};`;
    writeFileSync(
      nginxMain,
      [
        "daemon off;",
        "worker_processes 1;",
        `pid ${path.join(this.dir, "nginx.pid")};`,
        "error_log stderr warn;",
        "events { worker_connections 1024; }",
        "http {",
        ...["client_body_temp_path", "proxy_temp_path", "fastcgi_temp_path", "uwsgi_temp_path", "scgi_temp_path"].map(
          temp,
        ),
        `  include ${dirs.errors}/*.conf;`,
        "}",
        "",
      ].join("\n"),
    );
    this.nginx = ManagedProcess.start("nginx", NGINX_BINARY!, ["-e", "stderr", "-p", this.dir, "-c", nginxMain]);

    // PostgreSQL and the gatekeeper, configured from its container spec's environment.
    this.postgres = await PostgresCluster.create();
    this.databaseUrl = await this.postgres.createDatabase("audit");
    const withDatabase = options.database ?? true;
    const entries = Object.entries(options.keys ?? {}).map(([name, k]) => {
      const fresh = newApiKey();
      this.keys[name] = { id: fresh.id, key: fresh.key };
      return {
        id: fresh.id,
        name,
        sha256: fresh.sha256,
        scopes: [...k.scopes],
        created: new Date().toISOString(),
        ...(k.revoked ? { revoked: true } : {}),
        ...(k.ratePerMinute ? { ratePerMinute: k.ratePerMinute } : {}),
        ...(k.burst ? { burst: k.burst } : {}),
        ...(k.sandboxLimits ? { sandboxLimits: { ...k.sandboxLimits } } : {}),
        ...(k.waitSeconds !== undefined ? { waitSeconds: k.waitSeconds } : {}),
        ...(k.maxWaitSeconds !== undefined ? { maxWaitSeconds: k.maxWaitSeconds } : {}),
      };
    });
    const env = remapForLoopback(this.variants["gpu-off"].gatekeeperEnv, this.loopback);
    // What infra/program.ts makes with @pulumi/tls (the offline plan has only a stand-in): a
    // self-signed pair for the container's name and, on loopback, 127.0.0.1; Traefik pins the certificate.
    const tlsPair = selfSignedPair(path.join(this.dir, "tls"), GATEKEEPER_CONTAINER);
    writeFileSync(remapForLoopback(GATEKEEPER_CA_FILE.container, this.loopback), tlsPair.cert);
    // The status context is JSON in one variable: its backends' addresses are remapped inside it.
    if (env.GATEKEEPER_STATUS_CONTEXT)
      env.GATEKEEPER_STATUS_CONTEXT = JSON.stringify(
        remapForLoopback(JSON.parse(env.GATEKEEPER_STATUS_CONTEXT) as unknown, this.loopback),
      );
    writeFileSync(env.GATEKEEPER_KEYS_FILE, JSON.stringify({ version: 1, keys: entries }, null, 2));
    const bundle = path.join(dirs.app, "gatekeeper.js");
    writeFileSync(bundle, bundleGatekeeper());
    const gatekeeperEnv: NodeJS.ProcessEnv = {
      PATH: process.env.PATH ?? "",
      ...env,
      // The container's network namespace, on loopback: the port Traefik's service URL names.
      GATEKEEPER_HOST: "127.0.0.1",
      GATEKEEPER_PORT: String(gatekeeperPort),
      GATEKEEPER_TLS_PORT: String(gatekeeperTlsPort),
      // Secrets, as the container gets them from Pulumi.
      GATEKEEPER_BACKEND_KEY: RIG_BACKEND_KEY,
      ...(withDatabase ? { DATABASE_URL: this.databaseUrl } : {}),
      GATEKEEPER_TLS_CERT: tlsPair.cert,
      GATEKEEPER_TLS_KEY: tlsPair.key,
    };
    this.gatekeeperEnv = gatekeeperEnv;
    this.gatekeeperBundle = bundle;
    this.startGatekeeperProcess = () =>
      ManagedProcess.start("gatekeeper", process.execPath, [...(options.gatekeeperNodeArgs ?? []), bundle], {
        env: gatekeeperEnv,
      });
    this.gatekeeper = this.startGatekeeperProcess();

    // Traefik: the rendered static file and the gateway container's own command.
    const staticOff = this.variants["gpu-off"].staticDoc;
    if (JSON.stringify(staticOff) !== JSON.stringify(this.variants["gpu-on"].staticDoc))
      throw new Error("the static config differs between GPU off and on; a GPU switch would restart Traefik");
    writeFileSync(
      path.join(dirs.static, "traefik.yml"),
      renderYaml((options.traefikStatic ?? ((doc) => doc))(remapForLoopback(staticOff, this.loopback))),
    );
    this.writeRoutes("gpu-off");
    const args = remapForLoopback([...this.variants["gpu-off"].gatewayCommand], this.loopback);
    // The container's environment (Go's collector settings), as Docker would give it.
    const traefikEnv = { PATH: process.env.PATH ?? "", ...this.variants["gpu-off"].gatewayEnv };
    this.traefik = ManagedProcess.start("traefik", traefikBinaryPath(), args, {
      env: traefikEnv,
      ...(options.logToFile ? { stdoutFile: path.join(this.dir, "traefik.log") } : {}),
    });
    // Parsed as they arrive: re-parsing the whole log on every poll would block the test's event loop.
    this.traefik.onLine((line) => {
      if (line.startsWith("{") && line.includes('"DownstreamStatus"'))
        this.accessLines.push(JSON.parse(line) as Record<string, unknown>);
    });

    // Advice mode (no token) dispatches nothing; the address only has to be a URL.
    if (options.autoscaler !== false && this.variants["gpu-off"].autoscalerConfig)
      this.startAutoscaler(options.autoscaler ?? { githubApi: "http://127.0.0.1:9" });
    if (options.sandbox) this.startSandboxFront(options.sandbox);
    if (this.variants["gpu-off"].embeddingsEnv) this.startEmbeddings(dirs.app);

    const context = () =>
      `--- traefik\n${this.traefik.tail()}\n--- gatekeeper\n${this.gatekeeper.tail()}\n--- nginx\n${this.nginx.tail()}`;
    await waitFor(
      "nginx, the gatekeeper and Traefik to answer",
      async () => {
        for (const p of [
          this.nginx,
          this.gatekeeper,
          this.traefik,
          ...(this.embeddings ? [this.embeddings] : []),
          ...(this.autoscaler ? [this.autoscaler] : []),
        ])
          if (!p.running) throw new Error(`${p.name} exited`);
        const [ping, health, gk, embeddings, holder] = await Promise.all([
          rawGet(metrics, "/ping"),
          rawGet(nginxPort, "/health"),
          rawGet(gatekeeperPort, "/healthz"),
          this.embeddings ? rawGet(embeddingsPort, "/health") : Promise.resolve(200),
          this.autoscaler ? rawGet(autoscalerOff, HOLDER_HEALTH_PATH).catch(() => 0) : Promise.resolve(200),
        ]);
        return ping === 200 && health === 200 && gk === 200 && embeddings === 200 && holder === 200;
      },
      30_000,
      { context },
    );
    // The routes file loaded: a keyless request is refused by the gatekeeper through both hops.
    await waitFor(
      "the routes file to load",
      async () => (await this.request({ path: "/v1/models" })).status === 401,
      15_000,
      { context },
    );
  }

  /** The bundled embeddings front with its container's environment (the model table's upstream remapped to the stand-in). */
  private startEmbeddings(appDir: string): void {
    const env = this.variants["gpu-off"].embeddingsEnv!;
    const models = remapForLoopback(JSON.parse(env[EMBEDDINGS_ENV.models]) as unknown, this.loopback);
    const bundle = path.join(appDir, "embeddings.js");
    writeFileSync(bundle, bundleEmbeddingsFront());
    this.embeddings = ManagedProcess.start("embeddings", process.execPath, [bundle], {
      env: {
        PATH: process.env.PATH ?? "",
        ...env,
        [EMBEDDINGS_ENV.models]: JSON.stringify(models),
        [EMBEDDINGS_ENV.host]: "127.0.0.1",
        [EMBEDDINGS_ENV.port]: String(this.embeddingsPort),
      },
    });
  }

  /** The bundled controller with the gpu-off variant's config and its container's environment, on loopback. */
  private startAutoscaler(options: Exclude<NonNullable<RigOptions["autoscaler"]>, false>): void {
    const rendered = this.variants["gpu-off"];
    if (!rendered.autoscalerConfig || !rendered.autoscalerEnv)
      throw new Error("the rig's stack runs no autoscaler (set autoscaler true on a GPU tier)");
    for (const dir of ["autoscaler-config", "autoscaler-state", "autoscaler-app"])
      mkdirSync(path.join(this.dir, dir), { recursive: true });
    this.writeAutoscalerConfig("gpu-off");
    const bundle = path.join(this.dir, "autoscaler-app", "autoscaler.js");
    writeFileSync(bundle, bundleController());
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH ?? "",
      ...remapForLoopback(rendered.autoscalerEnv, this.loopback),
      AUTOSCALER_HOST: "127.0.0.1",
      AUTOSCALER_PORT: String(this.autoscalerPorts.control),
      AUTOSCALER_OFF_PORT: String(this.autoscalerPorts.off),
      AUTOSCALER_GITHUB_API: options.githubApi,
      ...(options.dispatchToken ? { AUTOSCALER_DISPATCH_TOKEN: options.dispatchToken } : {}),
    };
    this.autoscaler = ManagedProcess.start("autoscaler", process.execPath, [bundle], { env });
  }

  /**
   * Waits for a controller tick that read its signals. A first tick can come before Traefik's
   * metrics answer (then it holds, as it should): tests start from a controller that sees the gateway.
   */
  async controllerSeesGateway(timeoutMs = 45_000): Promise<void> {
    await waitFor(
      "the controller's first tick with its signals read",
      async () => {
        const status = await rigRequest(this.autoscalerPorts.control, { path: "/status" });
        return status.status === 200 && (status.json as { signalsUp?: boolean }).signalsUp === true;
      },
      timeoutMs,
      { context: () => this.autoscaler?.tail() ?? "no controller" },
    );
  }

  /** The bundled sandbox front with its container's environment, on loopback; the node's address is the test's API. */
  private startSandboxFront(options: NonNullable<RigOptions["sandbox"]>): void {
    const rendered = this.variants["gpu-off"].sandboxFrontEnv;
    if (!rendered) throw new Error("the rig's stack runs no sandbox (set sandbox: on)");
    mkdirSync(path.join(this.dir, "sandbox-front"), { recursive: true });
    const bundle = path.join(this.dir, "sandbox-front", "sandbox-front.js");
    writeFileSync(bundle, bundleSandboxFront());
    // The deploy writes the node's address into a file; here the address is the test's API on loopback.
    const { SANDBOX_NODE_URL_FILE: _file, ...env } = rendered;
    this.sandboxFront = ManagedProcess.start("sandbox-front", process.execPath, [bundle], {
      env: {
        PATH: process.env.PATH ?? "",
        ...remapForLoopback(env, this.loopback),
        SANDBOX_FRONT_HOST: "127.0.0.1",
        SANDBOX_FRONT_PORT: String(this.sandboxFrontPort),
        SANDBOX_NODE_URL: options.nodeUrl,
        SANDBOX_NODE_TOKEN: options.token,
      },
    });
  }

  /** Writes the controller's config file of a variant (as the deploy rewrites it), temp file then rename. */
  writeAutoscalerConfig(variant: RoutesVariant): void {
    const doc = this.variants[variant].autoscalerConfig;
    if (!doc) return;
    const file = path.join(this.dir, "autoscaler-config", "autoscaler.json");
    writeFileSync(`${file}.tmp`, JSON.stringify(remapForLoopback(doc, this.loopback), null, 2));
    renameSync(`${file}.tmp`, file);
  }

  /**
   * Benchmark only: a second Traefik, the same binary and environment, proxying every path to the
   * CPU coder stand-in with no middleware at all (the gateway's floor). "observed" runs the plan's
   * own static file (entry points, JSON access log, Prometheus metrics), "bare" a minimal one (an
   * entry point and the routes file). Its web port, and pprof's when `pprofPort` is given.
   */
  async startTraefikAlone(
    kind: "observed" | "bare",
    pprofPort?: number,
  ): Promise<{ readonly process: ManagedProcess; readonly port: number }> {
    const dir = path.join(this.dir, `traefik-alone-${kind}`);
    const dirs = { static: path.join(dir, "static"), dynamic: path.join(dir, "dynamic") };
    for (const d of Object.values(dirs)) mkdirSync(d, { recursive: true });
    const [web, websecure, legacy, metrics] = await Promise.all(Array.from({ length: 4 }, () => freeLoopbackPort()));
    const map: LoopbackMap = {
      ports: new Map([
        ...this.loopback.ports,
        [":80", web],
        [":443", websecure],
        [":8100", legacy],
        [":8082", metrics],
      ]),
      paths: new Map([
        ["/etc/traefik", dirs.static],
        ["/var/lib/traefik/dynamic", dirs.dynamic],
      ]),
    };
    const observed = remapForLoopback(this.variants["gpu-off"].staticDoc, map);
    const bare = {
      global: observed.global,
      log: observed.log,
      entryPoints: { web: (observed.entryPoints as Record<string, unknown>).web },
      providers: observed.providers,
    };
    const doc: Record<string, unknown> = kind === "observed" ? observed : bare;
    const debug = pprofPort
      ? {
          api: { debug: true, insecure: true },
          entryPoints: { ...(doc.entryPoints as object), traefik: { address: `127.0.0.1:${pprofPort}` } },
        }
      : {};
    writeFileSync(path.join(dirs.static, "traefik.yml"), renderYaml({ ...doc, ...debug }));
    const backend = `http://127.0.0.1:${this.standIns.fallback!.port}`;
    writeFileSync(
      path.join(dirs.dynamic, "routes.yml"),
      renderYaml({
        http: {
          routers: { coder: { entryPoints: ["web"], rule: "PathPrefix(`/`)", service: "coder" } },
          services: { coder: { loadBalancer: { servers: [{ url: backend }] } } },
        },
      }),
    );
    const env = { PATH: process.env.PATH ?? "", ...this.variants["gpu-off"].gatewayEnv };
    const alone = ManagedProcess.start(
      `traefik-alone-${kind}`,
      traefikBinaryPath(),
      [`--configFile=${path.join(dirs.static, "traefik.yml")}`],
      { env, stdoutFile: path.join(dir, "traefik.log") },
    );
    this.extraProcesses.push(alone);
    await waitFor(
      `Traefik alone (${kind}) to proxy`,
      async () =>
        (await rigRequest(web, { path: "/v1/models", headers: { authorization: `Bearer ${RIG_BACKEND_KEY}` } }).then(
          (r) => r.status,
          () => 0,
        )) === 200,
      15_000,
      { context: () => alone.tail() },
    );
    return { process: alone, port: web };
  }

  /** Stops the gatekeeper (SIGTERM: it flushes its spool first). */
  async stopGatekeeper(): Promise<void> {
    await this.gatekeeper.stop();
  }

  /** Starts the gatekeeper again with the same environment, and waits until it is healthy. */
  async startGatekeeper(): Promise<void> {
    this.gatekeeper = this.startGatekeeperProcess();
    await waitFor(
      "the gatekeeper to be healthy again",
      async () => (await rawGet(this.gatekeeperPort, "/healthz")) === 200,
      15_000,
      { context: () => this.gatekeeper.tail() },
    );
  }

  /**
   * A second gatekeeper replica with the same environment (the same database and declared keys),
   * its own port, spool and state directory; not behind Traefik. Stopped with the rig.
   */
  async startReplica(): Promise<{ process: ManagedProcess; port: number }> {
    const [port, tlsPort] = await Promise.all([freeLoopbackPort(), freeLoopbackPort()]);
    const dir = mkdtempSync(path.join(this.dir, "replica-"));
    const process_ = ManagedProcess.start("gatekeeper-2", process.execPath, [this.gatekeeperBundle], {
      env: {
        ...this.gatekeeperEnv,
        GATEKEEPER_PORT: String(port),
        GATEKEEPER_TLS_PORT: String(tlsPort),
        GATEKEEPER_SPOOL_DIR: path.join(dir, "spool"),
        GATEKEEPER_STATE_DIR: path.join(dir, "state"),
      },
    });
    this.replicas.push(process_);
    await waitFor(
      "the second gatekeeper to be healthy",
      async () => (await rawGet(port, "/healthz").catch(() => 0)) === 200,
      15_000,
      { context: () => process_.tail() },
    );
    return { process: process_, port };
  }

  private readonly replicas: ManagedProcess[] = [];

  /** Stops a CPU stand-in, runs `during`, and starts it again on the same port. */
  async withStandInDown<T>(name: "fallback" | "stt" | "tts" | "docling", during: () => Promise<T>): Promise<T> {
    const current = this.standIns[name]!;
    await current.close();
    try {
      return await during();
    } finally {
      this.standIns[name] = await startStandIn({ program: current.program, port: current.port });
    }
  }

  /** Rows the gatekeeper shipped to PostgreSQL, after waiting until its spool is fully shipped. */
  auditRows(): Promise<Record<string, unknown>[]> {
    return this.shippedRows("SELECT * FROM gatekeeper.decisions ORDER BY decided_at");
  }

  /** Rows of gatekeeper.sandbox_executions, once the spool is shipped. */
  executionRows(): Promise<Record<string, unknown>[]> {
    return this.shippedRows("SELECT * FROM gatekeeper.sandbox_executions ORDER BY reported_at");
  }

  private async shippedRows(sql: string): Promise<Record<string, unknown>[]> {
    await this.auditShipped();
    const client = new Client({ connectionString: this.databaseUrl });
    client.on("error", () => undefined);
    await client.connect();
    try {
      return (await client.query(sql)).rows as Record<string, unknown>[];
    } finally {
      await client.end();
    }
  }

  /** Waits until the gatekeeper's spool is fully shipped to PostgreSQL. */
  async auditShipped(timeoutMs = 20_000): Promise<void> {
    await waitFor(
      "the audit spool to be shipped",
      async () => {
        const health = await rigRequest(this.gatekeeperPort, { path: "/healthz" });
        return health.json?.spool?.unshippedBytes === 0;
      },
      timeoutMs,
      { context: () => this.gatekeeper.tail() },
    );
  }

  /** Writes the routes file of a variant the way infra/containers.ts does: a temp file, then a rename. */
  writeRoutes(variant: RoutesVariant): void {
    const dir = this.loopback.paths!.get("/var/lib/traefik/dynamic")!;
    const file = path.join(dir, "routes.yml");
    writeFileSync(`${file}.tmp`, renderYaml(remapForLoopback(this.variants[variant].dynamicDoc, this.loopback)));
    renameSync(`${file}.tmp`, file);
  }

  /** Where the drain script reads that Traefik applied the routes file, on this machine. */
  get reload(): { routesFile: string; metricsUrl: string } {
    return {
      routesFile: path.join(this.loopback.paths!.get("/var/lib/traefik/dynamic")!, "routes.yml"),
      metricsUrl: `http://127.0.0.1:${this.entry.metrics}/metrics`,
    };
  }

  /** The parsed routes file a variant renders (before remapping). */
  routes(variant: RoutesVariant): Record<string, unknown> {
    return this.variants[variant].dynamicDoc;
  }

  /** The loopback URL of a GPU replica's port, as the gateway node's scripts would reach it. */
  gpuUrl(service: "coder" | "ocr"): string {
    return `http://127.0.0.1:${this.gpuPorts[service]}`;
  }

  /** Starts (or restarts) the GPU vLLM stand-ins on their fixed ports. */
  async startGpu(options: Partial<StandInOptions> = {}): Promise<void> {
    this.standIns.gpuCoder = await startStandIn({ program: "vllm", ...options, port: this.gpuPorts.coder });
    this.standIns.gpuOcr = await startStandIn({
      program: "vllm",
      model: "deepseek-ocr",
      ...options,
      port: this.gpuPorts.ocr,
    });
  }

  async stopGpu(): Promise<void> {
    await this.standIns.gpuCoder?.close();
    await this.standIns.gpuOcr?.close();
    this.standIns.gpuCoder = undefined;
    this.standIns.gpuOcr = undefined;
  }

  get baseUrl(): string {
    return `http://127.0.0.1:${this.entry.web}`;
  }

  /** Traefik's JSON access-log lines so far. */
  accessLog(): readonly Record<string, unknown>[] {
    return this.accessLines;
  }

  /** A request through the gateway's public entry point (or `port`). */
  request(options: {
    method?: string;
    path: string;
    headers?: Record<string, string>;
    body?: string | Buffer;
    localAddress?: string;
    port?: number;
  }): Promise<RigResponse> {
    return rigRequest(options.port ?? this.entry.web, options);
  }

  async stop(): Promise<void> {
    await Promise.all([
      ...this.replicas.map((r) => r.stop()),
      this.traefik?.stop(),
      this.gatekeeper?.stop(),
      this.nginx?.stop(),
      this.autoscaler?.stop(),
      this.sandboxFront?.stop(),
      this.embeddings?.stop(),
      ...this.extraProcesses.map((p) => p.stop()),
    ]);
    await Promise.all([...Object.values(this.standIns), this.grafana].map((s) => s?.close()));
    await this.postgres?.destroy();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface RigResponse {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly text: string;
  /** The body parsed as JSON, or undefined. */
  readonly json: any;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

export function rigRequest(
  port: number,
  options: {
    method?: string;
    path: string;
    headers?: Record<string, string>;
    body?: string | Buffer;
    localAddress?: string;
  },
): Promise<RigResponse> {
  return new Promise((resolve, reject) => {
    const body =
      options.body === undefined ? undefined : Buffer.isBuffer(options.body) ? options.body : Buffer.from(options.body);
    const req = http.request(
      {
        host: "127.0.0.1",
        port,
        method: options.method ?? (body ? "POST" : "GET"),
        path: options.path,
        headers: { ...(body ? { "Content-Length": String(body.length) } : {}), ...options.headers },
        // A distinct source address per test keeps the per-address limit of one test off another's.
        ...(options.localAddress ? { localAddress: options.localAddress, agent: false } : { agent }),
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on("data", (c: Buffer) => parts.push(c));
        res.on("end", () => {
          const text = Buffer.concat(parts).toString("utf8");
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
        });
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

function rawGet(port: number, p: string): Promise<number> {
  return rigRequest(port, { path: p }).then((r) => r.status);
}
