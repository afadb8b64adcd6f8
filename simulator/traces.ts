import { gamma, gammaShapeForCv, seeded, weibull, weibullShapeForCv } from "./random";

/**
 * Request traces the simulator replays, in three public formats:
 * - azure: Azure/AzurePublicDataset LLM inference traces, CSV `TIMESTAMP,ContextTokens,GeneratedTokens`
 *   (timestamps like `2023-11-16 18:15:46.6805900`, read as UTC);
 * - mooncake: kvcache-ai/Mooncake JSONL, one `{"timestamp": ms, "input_length", "output_length", ...}` a line;
 * - servegen: alibaba/ServeGen 10-minute rate series `window_start_s,rps[,cv,arrival_pattern[,shape,scale]]`
 *   (the shared files have a header; upstream chunk-*-trace.csv files have none and list empty windows with rps 0).
 *   Arrivals are drawn as ServeGen's own generator does (servegen/construct.py `_sample_iats`): ceil(rps x 600)
 *   inter-arrival gaps from the fitted Gamma or Weibull of that coefficient of variation, scaled to fill the window;
 *   here the first request lands at the window's start, so every window keeps its request count.
 */
export const TRACE_FORMATS = ["azure", "mooncake", "servegen"] as const;
export type TraceFormat = (typeof TRACE_FORMATS)[number];

export const SERVEGEN_WINDOW_SECONDS = 600;

export interface Trace {
  readonly format: TraceFormat;
  /** Wall-clock instant of t = 0 (ms since the epoch): day, weekday and time of day for windows and learning. */
  readonly startMs: number;
  /** The observed span ends here (seconds from t = 0): the last request, or the end of the last rate window. */
  readonly endSeconds: number;
  /** The observed span starts here: 0 for a rate series (midnight of its day 0), the first request otherwise. */
  readonly beginSeconds: number;
  /** Arrival times, seconds from t = 0, ascending. */
  readonly arrivals: Float64Array;
  readonly inputTokens: Float64Array;
  readonly outputTokens: Float64Array;
  /** False when the format has no lengths and the model's typical ones were used. */
  readonly lengthsGiven: boolean;
  readonly notes: readonly string[];
}

export interface TraceProblem {
  readonly line: number;
  readonly message: string;
}

/** Bad input: every problem found, each naming its line. */
export class TraceError extends Error {
  constructor(
    readonly file: string,
    readonly problems: readonly TraceProblem[],
  ) {
    const shown = problems.slice(0, 20).map((p) => `  line ${p.line}: ${p.message}`);
    const more = problems.length > 20 ? [`  ... and ${problems.length - 20} more`] : [];
    super(
      `${file}: ${problems.length} problem${problems.length === 1 ? "" : "s"} in the trace:\n${[...shown, ...more].join("\n")}`,
    );
    this.name = "TraceError";
  }
}

export interface ReadOptions {
  /** The wall-clock instant of t = 0 for formats without absolute time (mooncake, servegen), and to shift azure's. */
  readonly startMs?: number;
  readonly seed: number;
  /** Used when the trace has no token lengths. */
  readonly typicalInputTokens: number;
  readonly typicalOutputTokens: number;
  /** Multiplies a rate series' rps (shape kept, volume scaled). */
  readonly rateScale?: number;
}

/**
 * What a replay can take. It ticks every 15 s from the first request (or day 0 of a rate series)
 * to the last, so a span is time spent: a year replays in well under a minute per policy, a
 * century would not finish. Token counts are bounded far above any context window (the catalogue's
 * longest is 163,840), so a count that no request has is refused rather than priced at $Infinity;
 * a rate series' drawn requests are bounded by memory (three numbers each).
 */
export const MAX_SPAN_DAYS = 366;
export const MAX_TOKENS_PER_REQUEST = 10_000_000;
export const MAX_DRAWN_REQUESTS = 20_000_000;
const MAX_SPAN_SECONDS = MAX_SPAN_DAYS * 86400;

/** A token count's problem, if it is beyond any request. */
const tokenProblem = (name: string, value: number): string | undefined =>
  value > MAX_TOKENS_PER_REQUEST
    ? `${name} ${value} is more than ${MAX_TOKENS_PER_REQUEST} tokens, beyond any request a model takes`
    : undefined;

/**
 * The span's problem, naming the line of the later end: `times` in seconds, each with its line.
 * `from` is where a replay starts when it is not the first request (day 0 of a rate series).
 */
function spanProblems(
  times: readonly number[],
  lineOf: readonly number[],
  describe: (i: number) => string,
  from?: number,
): TraceProblem[] {
  if (times.length === 0) return [];
  let lo = 0;
  let hi = 0;
  for (let i = 1; i < times.length; i++) {
    if (times[i] < times[lo]) lo = i;
    if (times[i] > times[hi]) hi = i;
  }
  const start = from === undefined ? times[lo] : Math.min(from, times[lo]);
  const span = times[hi] - start;
  if (span <= MAX_SPAN_SECONDS) return [];
  const since = from === undefined ? ` after ${describe(lo)} (line ${lineOf[lo]})` : " after day 0 of the series";
  return [
    {
      line: lineOf[hi],
      message: `${describe(hi)} comes ${Math.round(span / 86400).toLocaleString("en-US")} days${since}: a replay covers at most ${MAX_SPAN_DAYS} days (it ticks through every 15 s). Split the trace into parts of at most ${MAX_SPAN_DAYS} days.`,
    },
  ];
}

/** Monday 2026-01-05 00:00 UTC: day 0 of a trace that carries no date. */
export const DEFAULT_START_MS = Date.UTC(2026, 0, 5);

/** Picks the format from the file name and its first line. */
export function detectFormat(file: string, firstLine: string): TraceFormat {
  if (/\.jsonl?$/i.test(file) || firstLine.trimStart().startsWith("{")) return "mooncake";
  if (/^\s*TIMESTAMP\s*,/i.test(firstLine)) return "azure";
  return "servegen";
}

const lines = (text: string): string[] => text.split(/\r?\n/);
const isNumber = (s: string | undefined): boolean => s !== undefined && s.trim() !== "" && Number.isFinite(Number(s));

function sortTogether(
  times: number[],
  ins: number[],
  outs: number[],
): { arrivals: Float64Array; inputTokens: Float64Array; outputTokens: Float64Array } {
  const order = times.map((_, i) => i);
  let sorted = true;
  for (let i = 1; i < times.length; i++)
    if (times[i] < times[i - 1]) {
      sorted = false;
      break;
    }
  if (!sorted) order.sort((a, b) => times[a] - times[b]);
  return {
    arrivals: Float64Array.from(order, (i) => times[i]),
    inputTokens: Float64Array.from(order, (i) => ins[i]),
    outputTokens: Float64Array.from(order, (i) => outs[i]),
  };
}

const AZURE_TIME = /^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(\.\d+)?Z?$/;

export function readAzure(text: string, file: string, options: ReadOptions): Trace {
  const rows = lines(text);
  const problems: TraceProblem[] = [];
  const header = rows[0]?.split(",").map((h) => h.trim()) ?? [];
  const col = (name: string) => header.findIndex((h) => h.toLowerCase() === name.toLowerCase());
  const [iTime, iIn, iOut] = [col("TIMESTAMP"), col("ContextTokens"), col("GeneratedTokens")];
  if (iTime < 0 || iIn < 0 || iOut < 0)
    throw new TraceError(file, [
      {
        line: 1,
        message: `the header is "${rows[0] ?? ""}"; an Azure LLM inference trace starts with TIMESTAMP,ContextTokens,GeneratedTokens`,
      },
    ]);
  const times: number[] = [],
    ins: number[] = [],
    outs: number[] = [],
    lineOf: number[] = [],
    stamps: string[] = [];
  for (let n = 1; n < rows.length; n++) {
    const row = rows[n];
    if (row.trim() === "") continue;
    const f = row.split(",");
    const m = AZURE_TIME.exec((f[iTime] ?? "").trim());
    const why: string[] = [];
    let ms = NaN;
    if (!m) why.push(`TIMESTAMP "${f[iTime] ?? ""}" is not like 2023-11-16 18:15:46.6805900`);
    else {
      // setUTCFullYear, not Date.UTC: Date.UTC reads years 0-99 as 1900-1999.
      const d = new Date(0);
      d.setUTCFullYear(+m[1], +m[2] - 1, +m[3]);
      d.setUTCHours(+m[4], +m[5], +m[6]);
      ms = d.getTime() + (m[7] ? Number(m[7]) * 1000 : 0);
    }
    if (!isNumber(f[iIn]) || Number(f[iIn]) < 0) why.push(`ContextTokens "${f[iIn] ?? ""}" is not a token count`);
    else why.push(tokenProblem("ContextTokens", Number(f[iIn])) ?? "");
    if (!isNumber(f[iOut]) || Number(f[iOut]) < 0) why.push(`GeneratedTokens "${f[iOut] ?? ""}" is not a token count`);
    else why.push(tokenProblem("GeneratedTokens", Number(f[iOut])) ?? "");
    if (why.some(Boolean)) {
      problems.push({ line: n + 1, message: why.filter(Boolean).join("; ") });
      continue;
    }
    times.push(ms);
    ins.push(Number(f[iIn]));
    outs.push(Number(f[iOut]));
    lineOf.push(n + 1);
    stamps.push((f[iTime] ?? "").trim());
  }
  problems.push(
    ...spanProblems(
      times.map((t) => t / 1000),
      lineOf,
      (i) => `TIMESTAMP ${stamps[i]}`,
    ),
  );
  if (problems.length) throw new TraceError(file, problems);
  if (times.length === 0) throw new TraceError(file, [{ line: 2, message: "the trace has no requests" }]);
  let t0 = Infinity;
  for (const t of times) if (t < t0) t0 = t;
  const startMs = options.startMs ?? t0;
  const sorted = sortTogether(
    times.map((t) => (t - t0) / 1000),
    ins,
    outs,
  );
  return {
    format: "azure",
    startMs,
    beginSeconds: 0,
    endSeconds: sorted.arrivals[sorted.arrivals.length - 1],
    ...sorted,
    lengthsGiven: true,
    notes: [
      options.startMs === undefined
        ? "timestamps read as UTC"
        : `shifted so the first request is at ${new Date(startMs).toISOString()}`,
    ],
  };
}

export function readMooncake(text: string, file: string, options: ReadOptions): Trace {
  const rows = lines(text);
  const problems: TraceProblem[] = [];
  const times: number[] = [],
    ins: number[] = [],
    outs: number[] = [],
    lineOf: number[] = [];
  for (let n = 0; n < rows.length; n++) {
    const row = rows[n].trim();
    if (row === "") continue;
    let obj: unknown;
    try {
      obj = JSON.parse(row);
    } catch (err) {
      problems.push({ line: n + 1, message: `is not JSON (${(err as Error).message.split("\n")[0]})` });
      continue;
    }
    if (typeof obj !== "object" || obj === null || Array.isArray(obj)) {
      problems.push({
        line: n + 1,
        message: 'is not a JSON object like {"timestamp": 0, "input_length": 100, "output_length": 10}',
      });
      continue;
    }
    const o = obj as Record<string, unknown>;
    const why: string[] = [];
    for (const k of ["timestamp", "input_length", "output_length"]) {
      const v = o[k];
      if (typeof v !== "number" || !Number.isFinite(v) || v < 0)
        why.push(v === undefined ? `has no "${k}"` : `"${k}" is ${JSON.stringify(v)}, not a number >= 0`);
      else if (k !== "timestamp") why.push(tokenProblem(`"${k}"`, v) ?? "");
    }
    if (why.some(Boolean)) {
      problems.push({ line: n + 1, message: why.filter(Boolean).join("; ") });
      continue;
    }
    times.push((o.timestamp as number) / 1000);
    ins.push(o.input_length as number);
    outs.push(o.output_length as number);
    lineOf.push(n + 1);
  }
  problems.push(...spanProblems(times, lineOf, (i) => `timestamp ${times[i] * 1000}`));
  if (problems.length) throw new TraceError(file, problems);
  if (times.length === 0) throw new TraceError(file, [{ line: 1, message: "the trace has no requests" }]);
  const sorted = sortTogether(times, ins, outs);
  return {
    format: "mooncake",
    startMs: options.startMs ?? DEFAULT_START_MS,
    beginSeconds: sorted.arrivals[0],
    endSeconds: sorted.arrivals[sorted.arrivals.length - 1],
    ...sorted,
    lengthsGiven: true,
    notes: [
      `timestamps are ms from the trace's start, placed at ${new Date(options.startMs ?? DEFAULT_START_MS).toISOString()}`,
    ],
  };
}

interface RateWindow {
  readonly start: number;
  readonly rps: number;
  readonly cv: number;
  readonly pattern: "Gamma" | "Weibull";
  readonly shape?: number;
}

export function readServegen(text: string, file: string, options: ReadOptions): Trace {
  const rows = lines(text);
  const problems: TraceProblem[] = [];
  const first = (rows[0] ?? "").split(",").map((h) => h.trim());
  const hasHeader = !isNumber(first[0]);
  let cols = { start: 0, rps: 1, cv: 2, pattern: 3, shape: 4 };
  if (hasHeader) {
    const at = (name: string) => first.findIndex((h) => h.toLowerCase() === name);
    cols = { start: at("window_start_s"), rps: at("rps"), cv: at("cv"), pattern: at("arrival_pattern"), shape: -1 };
    if (cols.start < 0 || cols.rps < 0)
      throw new TraceError(file, [
        {
          line: 1,
          message: `the header is "${rows[0]}"; a rate series needs window_start_s and rps columns (cv and arrival_pattern are optional)`,
        },
      ]);
  }
  const windows: RateWindow[] = [];
  const seen = new Map<number, number>();
  const windowLines: number[] = [];
  let withoutCv = 0;
  let drawn = 0;
  for (let n = hasHeader ? 1 : 0; n < rows.length; n++) {
    const row = rows[n];
    if (row.trim() === "") continue;
    const f = row.split(",").map((x) => x.trim());
    const why: string[] = [];
    const start = Number(f[cols.start]);
    const rps = Number(f[cols.rps]);
    if (!isNumber(f[cols.start]) || start < 0) why.push(`window_start_s "${f[cols.start] ?? ""}" is not seconds >= 0`);
    else if (start % SERVEGEN_WINDOW_SECONDS !== 0)
      why.push(`window_start_s ${start} is not a multiple of ${SERVEGEN_WINDOW_SECONDS} (10-minute windows)`);
    if (!isNumber(f[cols.rps]) || rps < 0) why.push(`rps "${f[cols.rps] ?? ""}" is not a rate >= 0`);
    const cvText = cols.cv >= 0 ? f[cols.cv] : undefined;
    const patternText = cols.pattern >= 0 ? (f[cols.pattern] ?? "") : "";
    let cv = 1;
    if (rps > 0) {
      if (cvText === undefined || cvText === "") withoutCv++;
      else if (!isNumber(cvText) || Number(cvText) <= 0)
        why.push(`cv "${cvText}" is not a coefficient of variation > 0`);
      else cv = Number(cvText);
      if (patternText !== "" && patternText !== "Gamma" && patternText !== "Weibull")
        why.push(`arrival_pattern "${patternText}" is not Gamma or Weibull`);
    }
    if (isNumber(f[cols.start]) && seen.has(start))
      why.push(`window ${start} is listed twice (also on line ${seen.get(start)})`);
    if (why.length) {
      problems.push({ line: n + 1, message: why.join("; ") });
      continue;
    }
    seen.set(start, n + 1);
    if (rps === 0) continue;
    const shapeText = cols.shape >= 0 ? f[cols.shape] : undefined;
    const scaled = rps * (options.rateScale ?? 1);
    drawn += Math.ceil(scaled * SERVEGEN_WINDOW_SECONDS);
    if (drawn > MAX_DRAWN_REQUESTS) {
      problems.push({
        line: n + 1,
        message: `rps ${scaled} brings the series to ${drawn} requests, more than the ${MAX_DRAWN_REQUESTS} a replay holds in memory. Lower --rate-scale, or split the series.`,
      });
      drawn = -Infinity;
      continue;
    }
    windows.push({
      start,
      rps: scaled,
      cv,
      pattern: patternText === "Weibull" ? "Weibull" : "Gamma",
      shape: isNumber(shapeText) && Number(shapeText) > 0 ? Number(shapeText) : undefined,
    });
    windowLines.push(n + 1);
  }
  problems.push(
    ...spanProblems(
      windows.map((w) => w.start + SERVEGEN_WINDOW_SECONDS),
      windowLines,
      (i) => `window_start_s ${windows[i].start}`,
      0,
    ),
  );
  if (problems.length) throw new TraceError(file, problems);
  if (windows.length === 0)
    throw new TraceError(file, [{ line: hasHeader ? 2 : 1, message: "no window has traffic (every rps is 0)" }]);
  windows.sort((a, b) => a.start - b.start);

  const rng = seeded(options.seed);
  const times: number[] = [];
  for (const w of windows) {
    const count = Math.ceil(w.rps * SERVEGEN_WINDOW_SECONDS);
    const shape = w.shape ?? (w.pattern === "Gamma" ? gammaShapeForCv(w.cv) : weibullShapeForCv(w.cv));
    const gaps = new Float64Array(count);
    let sum = 0;
    for (let i = 0; i < count; i++) {
      gaps[i] = w.pattern === "Gamma" ? gamma(rng, shape) : weibull(rng, shape);
      sum += gaps[i];
    }
    // Scaled so the gaps fill the window, as ServeGen does; a degenerate draw spreads them evenly.
    const scale = sum > 0 && Number.isFinite(sum) ? SERVEGEN_WINDOW_SECONDS / sum : 0;
    let t = w.start;
    for (let i = 0; i < count; i++) {
      times.push(Math.min(t, w.start + SERVEGEN_WINDOW_SECONDS - 1e-6));
      t += scale > 0 ? gaps[i] * scale : SERVEGEN_WINDOW_SECONDS / count;
    }
  }
  const arrivals = Float64Array.from(times);
  const notes = [
    `arrivals drawn with seed ${options.seed} (Gamma or Weibull gaps of each window's cv, ServeGen's method)`,
    `no token lengths in a rate series: every request is ${options.typicalInputTokens} prompt + ${options.typicalOutputTokens} generated tokens (the model's typical lengths)`,
    `day 0 00:00 placed at ${new Date(options.startMs ?? DEFAULT_START_MS).toISOString()}`,
  ];
  if (withoutCv) notes.push(`${withoutCv} window(s) without cv: Poisson arrivals (cv 1)`);
  if (options.rateScale !== undefined && options.rateScale !== 1) notes.push(`rates scaled by ${options.rateScale}`);
  return {
    format: "servegen",
    startMs: options.startMs ?? DEFAULT_START_MS,
    beginSeconds: 0,
    endSeconds: windows[windows.length - 1].start + SERVEGEN_WINDOW_SECONDS,
    arrivals,
    inputTokens: new Float64Array(arrivals.length).fill(options.typicalInputTokens),
    outputTokens: new Float64Array(arrivals.length).fill(options.typicalOutputTokens),
    lengthsGiven: false,
    notes,
  };
}

/**
 * Days `from`..`to` (inclusive, counted from t = 0 for a rate series, from the first request
 * otherwise): for replaying part of a trace, e.g. a held-out week.
 */
export function sliceDays(trace: Trace, from: number, to: number): Trace | undefined {
  const origin = trace.format === "servegen" ? 0 : trace.arrivals[0];
  const lo = origin + from * 86400;
  const hi = origin + (to + 1) * 86400;
  let a = 0;
  while (a < trace.arrivals.length && trace.arrivals[a] < lo) a++;
  let b = a;
  while (b < trace.arrivals.length && trace.arrivals[b] < hi) b++;
  if (b === a) return undefined;
  return {
    ...trace,
    beginSeconds: trace.format === "servegen" ? lo : trace.arrivals[a],
    endSeconds: Math.min(trace.endSeconds, hi),
    arrivals: trace.arrivals.slice(a, b),
    inputTokens: trace.inputTokens.slice(a, b),
    outputTokens: trace.outputTokens.slice(a, b),
    notes: [...trace.notes, `days ${from}-${to} only`],
  };
}

export function readTrace(text: string, file: string, format: TraceFormat | undefined, options: ReadOptions): Trace {
  const chosen = format ?? detectFormat(file, text.slice(0, text.indexOf("\n") >= 0 ? text.indexOf("\n") : undefined));
  if (chosen === "azure") return readAzure(text, file, options);
  if (chosen === "mooncake") return readMooncake(text, file, options);
  return readServegen(text, file, options);
}
