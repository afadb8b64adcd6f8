import { parseArgs } from "node:util";
import { STAGE_NAMES } from "../../programs/autoscaler/serving-model";
import { table } from "../plan/view";
import { renderStagesFile } from "../../simulator/stages";

/**
 * `npm run smoke -- --wake`: measures a real GPU wake from off, as a client sees it, stage by stage
 * against the model, and writes the stages in the form `npm run simulate -- --stages FILE` reads.
 * It sends one coder request that asks to wait (X-Hub-Wait), which wakes the GPU (this costs the
 * GPU's time until it goes idle again), and follows the controller's view through the gateway's
 * /admin/autoscaler (an admin-scope key): the deploy naming the node (the droplet exists, so the
 * pipeline and the droplet's creation are behind), the replica answering, the request answered.
 */

type Stage = (typeof STAGE_NAMES)[number];

export interface WakeOptions {
  readonly baseUrl: string;
  readonly apiKey: string;
  readonly adminKey: string;
  /** How long the request waits for the GPU (X-Hub-Wait). */
  readonly waitSeconds: number;
  readonly pollMs: number;
  readonly timeoutMs: number;
  readonly stagesOut?: string;
  /** The model's seconds per stage, when the stack is known (printed beside the measurement). */
  readonly model?: Readonly<Record<string, number>>;
}

export interface WakeDeps {
  readonly fetch: typeof fetch;
  readonly now: () => number;
  readonly sleep: (ms: number) => Promise<void>;
}

export interface WakeReport {
  readonly ok: boolean;
  readonly problem?: string;
  readonly answeredBy?: string;
  readonly stages: readonly {
    readonly covers: readonly Stage[];
    readonly seconds: number;
    readonly modelSeconds?: number;
  }[];
}

export const WAKE_GROUPS: readonly (readonly Stage[])[] = [
  ["pipeline", "droplet create"],
  ["cloud-init", "image pull", "weights from volume", "engine start"],
  ["first health check"],
];

export const WAKE_USAGE = [
  "usage: npm run smoke -- --wake --url URL --key KEY --admin-key KEY [--wait S] [--stack NAME] [--stages-out FILE]",
  "  Wakes the GPU from off with one waiting coder request and times each stage (the GPU bills until it goes idle).",
  "  --admin-key (or HUB_ADMIN_KEY): an admin-scope key, to read /admin/autoscaler; --wait: X-Hub-Wait, default 840",
  "  --stack: the stack file the model's figures come from; --stages-out: write the stages for npm run simulate -- --stages",
].join("\n");

interface AutoscalerStatus {
  readonly deployedNodes?: number;
  readonly nodes?: { readonly ready?: number };
}

export async function measureWake(options: WakeOptions, deps: WakeDeps): Promise<WakeReport> {
  const origin = new URL(options.baseUrl).origin;
  const status = async (): Promise<AutoscalerStatus | string> => {
    const res = await deps.fetch(`${origin}/admin/autoscaler`, {
      headers: { authorization: `Bearer ${options.adminKey}` },
      signal: AbortSignal.timeout(15_000),
    });
    if (res.status === 401 || res.status === 403)
      return `GET /admin/autoscaler answered ${res.status}: --admin-key must be a key with the admin scope`;
    if (res.status !== 200) return `GET /admin/autoscaler answered ${res.status}: is the stack's autoscaler running?`;
    return (await res.json()) as AutoscalerStatus;
  };
  const before = await status();
  if (typeof before === "string") return { ok: false, problem: before, stages: [] };
  if ((before.deployedNodes ?? 0) > 0 || (before.nodes?.ready ?? 0) > 0)
    return {
      ok: false,
      problem: `the GPU runs already (${before.deployedNodes ?? 0} node(s) deployed): --wake measures a wake from off; run it once the GPU has gone idle (npm run hub -- gpu status)`,
      stages: [],
    };

  const chat = (wait: number) =>
    deps.fetch(`${options.baseUrl}/chat/completions`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${options.apiKey}`,
        "content-type": "application/json",
        "x-hub-wait": String(wait),
      },
      body: JSON.stringify({
        model: "coder",
        messages: [{ role: "user", content: "Say OK." }],
        max_tokens: 4,
        temperature: 0,
      }),
      signal: AbortSignal.timeout(wait * 1000 + 300_000),
    });
  const started = deps.now();
  let answeredMs: number | undefined;
  let answeredBy: string | undefined;
  const onGpu = (res: Response) => /^gpu-\d+$/.test(res.headers.get("x-hub-backend") ?? "");
  const first = chat(options.waitSeconds).then(
    (res) => {
      if (res.ok && onGpu(res)) {
        answeredMs = deps.now();
        answeredBy = res.headers.get("x-hub-backend") ?? undefined;
      }
    },
    () => undefined,
  );

  let namedMs: number | undefined;
  let readyMs: number | undefined;
  while (readyMs === undefined) {
    if (deps.now() - started > options.timeoutMs)
      return {
        ok: false,
        problem: `no GPU replica was ready ${Math.round(options.timeoutMs / 60_000)} min after the request (deployed: ${namedMs === undefined ? "not yet" : "yes"})`,
        stages: [],
      };
    await deps.sleep(options.pollMs);
    const s = await status().catch(() => undefined);
    if (!s || typeof s === "string") continue;
    if (namedMs === undefined && (s.deployedNodes ?? 0) > 0) namedMs = deps.now();
    if ((s.nodes?.ready ?? 0) > 0) readyMs = deps.now();
  }
  namedMs ??= readyMs;
  // The waiting request comes back from the GPU (with holding), or, without it, the next one does.
  while (answeredMs === undefined) {
    await Promise.race([first, deps.sleep(options.pollMs)]);
    if (answeredMs !== undefined) break;
    if (deps.now() - started > options.timeoutMs)
      return { ok: false, problem: "the replica was ready, but no coder request was answered by the GPU", stages: [] };
    const res = await chat(0).catch(() => undefined);
    if (res?.ok && onGpu(res)) {
      answeredMs = deps.now();
      answeredBy = res.headers.get("x-hub-backend") ?? undefined;
    }
  }
  const marks = [started, namedMs, readyMs, answeredMs];
  const stages = WAKE_GROUPS.map((covers, i) => {
    const model = options.model ? covers.reduce((sum, name) => sum + (options.model![name] ?? 0), 0) : undefined;
    return {
      covers,
      seconds: Math.max(0, (marks[i + 1] - marks[i]) / 1000),
      ...(model !== undefined ? { modelSeconds: model } : {}),
    };
  });
  return { ok: true, answeredBy, stages };
}

export function renderWake(report: WakeReport): string {
  const secs = (n: number | undefined) => (n === undefined ? "-" : `${n.toFixed(0)} s`);
  const rows = report.stages.map((s) => [s.covers.join(" + "), secs(s.seconds), secs(s.modelSeconds)]);
  const total = report.stages.reduce((sum, s) => sum + s.seconds, 0);
  const model = report.stages.every((s) => s.modelSeconds !== undefined)
    ? report.stages.reduce((sum, s) => sum + (s.modelSeconds ?? 0), 0)
    : undefined;
  rows.push(["total", secs(total), secs(model)]);
  return table(["stage", "measured", "model"], rows);
}

export function wakeStagesFile(report: WakeReport, at: Date, stack?: string): string {
  return renderStagesFile("npm run smoke -- --wake", at, report.stages, stack);
}

export interface WakeCommand {
  readonly options: WakeOptions;
  readonly stack?: string;
  readonly json: boolean;
}

export class WakeUsageError extends Error {}

export function parseWakeArgs(argv: readonly string[], env: NodeJS.ProcessEnv): WakeCommand {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv.filter((a) => a !== "--wake"),
      strict: true,
      allowPositionals: false,
      options: {
        url: { type: "string" },
        key: { type: "string" },
        "admin-key": { type: "string" },
        wait: { type: "string", default: "840" },
        stack: { type: "string" },
        "stages-out": { type: "string" },
        "timeout-min": { type: "string", default: "90" },
        json: { type: "boolean", default: false },
      },
    }));
  } catch (error) {
    throw new WakeUsageError((error as Error).message.split(". ")[0]);
  }
  const problems: string[] = [];
  if (!values.url) problems.push("missing --url (the hub's base URL, e.g. https://hub.example.com/v1)");
  const apiKey = (values.key ?? env.HUB_API_KEY ?? "").trim();
  if (!apiKey) problems.push("missing --key (or HUB_API_KEY): a key with the llm scope");
  const adminKey = (values["admin-key"] ?? env.HUB_ADMIN_KEY ?? "").trim();
  if (!adminKey)
    problems.push("missing --admin-key (or HUB_ADMIN_KEY): a key with the admin scope, to read /admin/autoscaler");
  const wait = Number(values.wait);
  if (!/^\d+$/.test(values.wait) || wait > 840)
    problems.push(`--wait ${JSON.stringify(values.wait)} is not a whole number of seconds from 0 to 840`);
  const timeoutMin = Number(values["timeout-min"]);
  if (!/^\d+$/.test(values["timeout-min"]) || timeoutMin <= 0)
    problems.push(`--timeout-min ${JSON.stringify(values["timeout-min"])} is not a positive whole number`);
  let baseUrl = "";
  if (values.url) {
    try {
      const url = new URL(values.url);
      baseUrl = `${url.origin}${url.pathname.replace(/\/+$/, "")}`;
    } catch {
      problems.push(`--url ${JSON.stringify(values.url)} is not a URL`);
    }
  }
  if (problems.length) throw new WakeUsageError(problems.join("; "));
  return {
    options: {
      baseUrl,
      apiKey,
      adminKey,
      waitSeconds: wait,
      pollMs: 5000,
      timeoutMs: timeoutMin * 60_000,
      stagesOut: values["stages-out"],
    },
    stack: values.stack,
    json: values.json,
  };
}
