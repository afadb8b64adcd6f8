import parsePrometheusTextFormat from "parse-prometheus-text-format";

/**
 * The controller's inputs, read from Prometheus text: the gatekeeper's allowed `llm` decisions
 * (the demand signal, ../demand.ts) and each ready replica's queue (vLLM). Parsing is
 * parse-prometheus-text-format's; this file only picks series and turns counters into per-tick deltas.
 *
 * vLLM (v1 engine), as read 2026-12-02: `vllm:num_requests_running`, `vllm:num_requests_waiting`,
 * `vllm:kv_cache_usage_perc`, one series per engine, labels model_name and engine
 * (vllm/v1/metrics/loggers.py, PrometheusStatLogger; FACTS.md for v0.24.0).
 */

export const VLLM_RUNNING = "vllm:num_requests_running";
export const VLLM_WAITING = "vllm:num_requests_waiting";
export const VLLM_KV_CACHE = "vllm:kv_cache_usage_perc";

export interface Series {
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** Every sample of a family, by name (counters and gauges; histograms are not read here). */
export function parseSeries(text: string): Map<string, Series[]> {
  const out = new Map<string, Series[]>();
  for (const family of parsePrometheusTextFormat(text)) {
    const series: Series[] = [];
    for (const m of family.metrics) {
      if (m.value === undefined) continue;
      const value = Number(m.value);
      if (Number.isFinite(value)) series.push({ labels: m.labels ?? {}, value });
    }
    out.set(family.name, series);
  }
  return out;
}

/**
 * Turns successive counter readings into increases. A series that went down was reset (the gatekeeper
 * restarted): its whole new value is the increase. A series first seen after the first reading
 * is new since then (the gatekeeper creates a series at a key's first allowed request). The first reading only sets
 * the baseline and reports 0; the controller's own count of its 503 answers covers that tick.
 */
export class CounterDeltas {
  private previous: Map<string, number> | undefined;

  constructor(previous?: ReadonlyMap<string, number>) {
    this.previous = previous ? new Map(previous) : undefined;
  }

  next(current: ReadonlyMap<string, number>): number {
    const before = this.previous;
    this.previous = new Map(current);
    if (!before) return 0;
    let increase = 0;
    for (const [key, value] of current) {
      const old = before.get(key);
      increase += old === undefined ? value : value >= old ? value - old : value;
    }
    return increase;
  }

  /** For persistence: the baseline a restart resumes from. */
  snapshot(): Record<string, number> | undefined {
    return this.previous ? Object.fromEntries(this.previous) : undefined;
  }
}

export interface ReplicaReading {
  readonly running: number;
  readonly waiting: number;
  /** 0..1, the fullest engine's. */
  readonly kvCacheUsage: number;
}

/** A replica's queue from its /metrics: running and waiting summed over its engines. Undefined when the families are absent (not vLLM, or not started). */
export function replicaReading(families: ReadonlyMap<string, readonly Series[]>): ReplicaReading | undefined {
  const running = families.get(VLLM_RUNNING);
  const waiting = families.get(VLLM_WAITING);
  if (!running || !waiting || running.length === 0 || waiting.length === 0) return undefined;
  const sum = (xs: readonly Series[]) => xs.reduce((n, s) => n + s.value, 0);
  const kv = families.get(VLLM_KV_CACHE) ?? [];
  return { running: sum(running), waiting: sum(waiting), kvCacheUsage: kv.reduce((m, s) => Math.max(m, s.value), 0) };
}

/** An HTTP GET as the controller needs it; injectable so tests can point it anywhere. */
export type Fetcher = (
  url: string,
  init?: {
    readonly headers?: Record<string, string>;
    readonly method?: string;
    readonly body?: string;
    readonly timeoutMs?: number;
  },
) => Promise<{
  readonly status: number;
  readonly text: string;
  readonly headers: { get(name: string): string | null };
}>;

export const httpFetcher: Fetcher = async (url, init = {}) => {
  const res = await fetch(url, {
    method: init.method ?? "GET",
    headers: init.headers,
    body: init.body,
    signal: AbortSignal.timeout(init.timeoutMs ?? 5000),
  });
  return { status: res.status, text: await res.text(), headers: res.headers };
};

/** Reads one Prometheus endpoint; undefined when it cannot be read (down, timeout, not 200, unparsable). */
export async function scrape(
  fetcher: Fetcher,
  url: string,
  timeoutMs = 5000,
): Promise<Map<string, Series[]> | undefined> {
  try {
    const res = await fetcher(url, { timeoutMs });
    if (res.status !== 200) return undefined;
    return parseSeries(res.text);
  } catch {
    return undefined;
  }
}

/** Whether a replica answers its health check (vLLM's /health: 200 once the engine serves). */
export async function healthy(fetcher: Fetcher, url: string, timeoutMs = 3000): Promise<boolean> {
  try {
    return (await fetcher(url, { timeoutMs })).status === 200;
  } catch {
    return false;
  }
}
