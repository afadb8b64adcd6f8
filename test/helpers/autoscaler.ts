import * as http from "node:http";
import type { AddressInfo } from "node:net";
import type { ControllerFile } from "../../programs/autoscaler/controller/contract";
import type { PolicyConfig } from "../../programs/autoscaler/types";

/**
 * Stand-ins for the controller's tests, each a real HTTP server on loopback:
 * - GitHubStandIn: a RECORDING STAND-IN of GitHub's REST API (only the workflow-dispatch route);
 *   it answers from a script of statuses and records what it was sent and when;
 * - MetricsStandIn: a STAND-IN serving Prometheus text the way the gatekeeper and vLLM do (only
 *   the series the controller reads), with a switch to stop answering.
 */

export interface RecordedCall {
  readonly atMs: number;
  readonly method: string;
  readonly path: string;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: unknown;
}

const listen = (server: http.Server) =>
  new Promise<number>((resolve) =>
    server.listen(0, "127.0.0.1", () => resolve((server.address() as AddressInfo).port)),
  );

/** A loopback HTTP server: where it listens, and closing it with its open connections. */
abstract class LoopbackServer {
  protected server!: http.Server;
  port = 0;

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

export class GitHubStandIn extends LoopbackServer {
  readonly calls: RecordedCall[] = [];
  /** Statuses to answer with, in order; 204 once the script runs out. */
  script: { status: number; retryAfter?: number; message?: string; body?: unknown }[] = [];

  /** What GitHub answers an accepted workflow_dispatch. */
  protected accepted(): { status: number; body?: unknown } {
    return { status: 204 };
  }

  protected errorBody(status: number, message?: string): unknown {
    return { message: message ?? `stand-in status ${status}`, documentation_url: "https://docs.github.com/rest" };
  }

  static async start<T extends GitHubStandIn>(this: new () => T): Promise<T> {
    const s = new this();
    s.server = http.createServer((req, res) => {
      const parts: Buffer[] = [];
      req.on("data", (c: Buffer) => parts.push(c));
      req.on("end", () => {
        let body: unknown;
        try {
          body = JSON.parse(Buffer.concat(parts).toString("utf8"));
        } catch {
          body = undefined;
        }
        s.calls.push({ atMs: Date.now(), method: req.method ?? "", path: req.url ?? "", headers: req.headers, body });
        const next: GitHubStandIn["script"][number] = s.script.shift() ?? s.accepted();
        const headers: Record<string, string> =
          next.retryAfter !== undefined ? { "retry-after": String(next.retryAfter) } : {};
        if (next.status === 204) {
          res.writeHead(204, headers);
          res.end();
          return;
        }
        res.writeHead(next.status, { ...headers, "content-type": "application/json" });
        res.end(JSON.stringify(next.body ?? s.errorBody(next.status, next.message)));
      });
    });
    s.port = await listen(s.server);
    return s;
  }
}

/**
 * A RECORDING STAND-IN of Pulumi Cloud's REST API (only "Create Deployment"): it records what it
 * was sent and answers from a script; an accepted request gets 202 with the documented
 * CreateDeploymentResponse fields (id, consoleUrl, version), errors Pulumi's {code, message}.
 */
export class PulumiCloudStandIn extends GitHubStandIn {
  private version = 0;

  protected override accepted(): { status: number; body?: unknown } {
    this.version++;
    return {
      status: 202,
      body: {
        id: `stand-in-${this.version}`,
        consoleUrl: `https://app.pulumi.com/stand-in/${this.version}`,
        version: this.version,
      },
    };
  }

  protected override errorBody(status: number, message?: string): unknown {
    return { code: status, message: message ?? `stand-in status ${status}` };
  }
}

export class MetricsStandIn extends LoopbackServer {
  /** Prometheus text served at /metrics; /health answers 200 while `healthy`. */
  text = "";
  healthy = true;
  down = false;
  requests = 0;

  static async start(text = ""): Promise<MetricsStandIn> {
    const s = new MetricsStandIn();
    s.text = text;
    s.server = http.createServer((req, res) => {
      s.requests++;
      if (s.down) {
        req.socket.destroy();
        return;
      }
      if (req.url === "/health") {
        res.writeHead(s.healthy ? 200 : 503);
        res.end();
        return;
      }
      if (req.url === "/metrics") {
        res.writeHead(200, { "content-type": "text/plain; version=0.0.4" });
        res.end(s.text);
        return;
      }
      res.writeHead(404);
      res.end();
    });
    s.port = await listen(s.server);
    return s;
  }
}

/** vLLM's scheduler gauges, one series per engine (labels model_name, engine: vllm/v1/metrics/loggers.py). */
export function vllmText(engines: readonly { running: number; waiting: number; kv?: number }[]): string {
  const lines: string[] = [];
  for (const [name, pick] of [
    ["vllm:num_requests_running", (e: { running: number }) => e.running],
    ["vllm:num_requests_waiting", (e: { waiting: number }) => e.waiting],
    ["vllm:kv_cache_usage_perc", (e: { kv?: number }) => e.kv ?? 0],
  ] as const) {
    lines.push(`# TYPE ${name} gauge`);
    engines.forEach((e, i) =>
      lines.push(`${name}{engine="${i}",model_name="coder"} ${(pick as (x: typeof e) => number)(e)}`),
    );
  }
  return `${lines.join("\n")}\n`;
}

/** A controller file for a hybrid-like stack; tests override what they exercise. */
export function controllerFile(
  overrides: Partial<ControllerFile> & { demandUrl: string; replicaUrls?: readonly string[] },
): ControllerFile {
  const { demandUrl, replicaUrls = [], ...rest } = overrides;
  return {
    version: 1,
    stack: "hybrid",
    tier: "hybrid",
    tickSeconds: 15,
    policy: {
      minNodes: 0,
      maxNodes: 1,
      idleSeconds: 600,
      targetLoad: 0.8,
      predictive: false,
      gpuWindows: [],
      replicaCapacity: 37,
      coldStartSeconds: 870,
      restartCostSeconds: 810,
      nodeHourlyUsd: 3.6,
      gpuBudgetUsd: 300,
    },
    timing: { pipelineSeconds: 120, createSeconds: 120, destroySeconds: 60 },
    demand: { metricsUrl: `${demandUrl}/metrics` },
    replicas: replicaUrls.map((u, i) => ({ node: `gpu-${i}`, metricsUrl: `${u}/metrics`, healthUrl: `${u}/health` })),
    fallback: false,
    pin: null,
    dispatch: { repo: "acme/inference-hub", ref: "main", workflow: "autoscale.yml" },
    billingCrossCheck: false,
    fixedMonthlyUsd: 0,
    ...rest,
  };
}

/**
 * The gatekeeper's decisions counter as its /metrics writes it (programs/gatekeeper/metrics.ts:
 * labels scope, key_id, outcome), for the coder's `llm` scope by outcome, beside another scope's
 * traffic that must not count.
 */
export function demandText(outcomes: Readonly<Record<string, number>>): string {
  const lines = [
    "# HELP hub_gatekeeper_requests_total Authorisation decisions, by route scope, key id and outcome.",
    "# TYPE hub_gatekeeper_requests_total counter",
  ];
  for (const [outcome, n] of Object.entries(outcomes))
    lines.push(
      `hub_gatekeeper_requests_total{scope="llm",key_id="${outcome === "allowed" ? "k_dev00001" : "none"}",outcome="${outcome}"} ${n}`,
    );
  lines.push(`hub_gatekeeper_requests_total{scope="stt",key_id="k_stt00001",outcome="allowed"} 999`);
  return `${lines.join("\n")}\n`;
}

/** A stack's settings as the decision sees them, written out by hand (not derived from the code under test). */
export const HAND_POLICY: PolicyConfig = {
  minNodes: 0,
  maxNodes: 2,
  idleSeconds: 600,
  targetLoad: 0.8,
  predictive: false,
  windows: [],
  replicaCapacity: 10,
  coldStartSeconds: 900,
  restartCostSeconds: 840,
  nodeHourlyUsd: 3.39,
  gpuBudgetUsd: 300,
};
