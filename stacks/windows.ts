import { problem, Problem } from "./problems";

/**
 * Working-hours windows for the on-demand GPU, written like `mon-fri 08:00-18:00 Europe/Berlin`.
 * The scheduled pipeline asks `isInsideWindows` every few minutes and turns the GPU on or off to
 * match; the plan turns the windows into expected hours a month for the cost.
 */
export interface GpuWindow {
  /** 0 = Sunday ... 6 = Saturday. */
  readonly days: ReadonlySet<number>;
  /** Minutes after local midnight. */
  readonly start: number;
  readonly end: number;
  readonly timeZone: string;
  readonly text: string;
}

const DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
/** 365.25 / 7 / 12 weeks in a month. */
export const WEEKS_PER_MONTH = 365.25 / 7 / 12;
/** More windows than a week has hours of would only be a way to make the plan slow. */
export const MAX_WINDOWS = 64;

function parseDays(text: string): Set<number> | undefined {
  const days = new Set<number>();
  for (const part of text.toLowerCase().split(",")) {
    const ends = part.split("-");
    if (ends.length > 2) return undefined;
    const [from, to] = ends;
    const a = DAYS.indexOf(from);
    const b = to === undefined ? a : DAYS.indexOf(to);
    if (a < 0 || b < 0) return undefined;
    for (let d = a; ; d = (d + 1) % 7) {
      days.add(d);
      if (d === b) break;
    }
  }
  return days;
}

function parseTime(text: string): number | undefined {
  const m = /^(\d{2}):(\d{2})$/.exec(text);
  if (!m) return undefined;
  const minutes = Number(m[1]) * 60 + Number(m[2]);
  return Number(m[1]) <= 24 && Number(m[2]) < 60 && minutes <= 24 * 60 ? minutes : undefined;
}

/** One formatter per zone: building an Intl.DateTimeFormat costs far more than using one. */
const formatters = new Map<string, Intl.DateTimeFormat>();
function formatter(timeZone: string): Intl.DateTimeFormat | undefined {
  let f = formatters.get(timeZone);
  if (!f) {
    try {
      f = new Intl.DateTimeFormat("en-US", {
        timeZone,
        hourCycle: "h23",
        weekday: "short",
        year: "numeric",
        month: "numeric",
        day: "numeric",
        hour: "numeric",
        minute: "numeric",
      });
    } catch {
      return undefined;
    }
    if (formatters.size < 1024) formatters.set(timeZone, f);
  }
  return f;
}

export function parseWindows(texts: readonly string[]): { windows: GpuWindow[]; problems: Problem[] } {
  const windows: GpuWindow[] = [];
  const problems: Problem[] = [];
  const example = 'Write windows like "mon-fri 08:00-18:00 Europe/Berlin" (days, local start-end, IANA time zone).';
  if (texts.length > MAX_WINDOWS) {
    return {
      windows,
      problems: [
        problem(
          "gpuWindows",
          `${texts.length} windows`,
          `holds ${texts.length} windows; at most ${MAX_WINDOWS} are read.`,
          'Merge windows that share days, e.g. "mon-fri 08:00-18:00 UTC".',
        ),
      ],
    };
  }
  for (const text of texts) {
    const parts = text.trim().split(/\s+/);
    if (parts.length !== 3) {
      problems.push(problem("gpuWindows", text, "is not `<days> <start>-<end> <time zone>`.", example));
      continue;
    }
    const [dayText, range, timeZone] = parts;
    const days = parseDays(dayText);
    const [startText, endText, extra] = range.split("-");
    const start = extra === undefined ? parseTime(startText ?? "") : undefined;
    const end = extra === undefined ? parseTime(endText ?? "") : undefined;
    const why: string[] = [];
    if (!days) why.push("the days are not like mon-fri or sat,sun");
    if (start === undefined || end === undefined) why.push("the times are not HH:MM-HH:MM");
    else if (end <= start)
      why.push(
        `the window ends (${endText}) before it starts (${startText}); split a window that crosses midnight in two`,
      );
    if (!formatter(timeZone)) why.push("the time zone is not an IANA time zone such as Europe/Berlin or UTC");
    if (why.length || !days || start === undefined || end === undefined) {
      problems.push(problem("gpuWindows", text, `${why.join("; ")}.`, example));
      continue;
    }
    windows.push({ days, start, end, timeZone, text });
  }
  return { windows, problems };
}

const MINUTE_MS = 60_000;
const DAY_MS = 86_400_000;
/**
 * The year the windows are laid out on: 2026 has 365 days, so a window that never closes comes to
 * exactly HOURS_PER_MONTH (8,760 h / 12 = 730 h), the figure the always-on tiers are billed at.
 */
const YEAR = 2026;
const YEAR_START = Date.UTC(YEAR, 0, 1);
const YEAR_END = Date.UTC(YEAR + 1, 0, 1);

/** The wall clock of `instant` in a zone, read back as if it were UTC: their difference is the zone's offset. */
function wallClockAsUtc(f: Intl.DateTimeFormat, instant: number): number {
  const parts: Record<string, number> = {};
  for (const p of f.formatToParts(instant))
    if (p.type !== "literal" && p.type !== "weekday") parts[p.type] = Number(p.value);
  return Date.UTC(parts.year, parts.month - 1, parts.day, parts.hour, parts.minute);
}

/** The instant at which a zone's clock shows `minutes` after midnight of the given local date. */
function localToInstant(f: Intl.DateTimeFormat, utcMidnightOfDate: number, minutes: number): number {
  const wall = utcMidnightOfDate + minutes * MINUTE_MS;
  // Two rounds settle the offset, DST changes included (a time inside a spring-forward gap lands just after it).
  let instant = wall - (wallClockAsUtc(f, wall) - wall);
  instant = wall - (wallClockAsUtc(f, instant) - instant);
  return instant;
}

/** First local date laid out: one day before the year, so zones up to 14 h from UTC are covered. */
const FIRST_DATE = YEAR_START - DAY_MS;
const DATES = (YEAR_END - FIRST_DATE) / DAY_MS + 1;

/** Each zone's UTC offset at noon of every date laid out, computed once per zone and process. */
const noonOffsets = new Map<string, Float64Array>();
function offsetsAtNoon(timeZone: string, f: Intl.DateTimeFormat): Float64Array {
  let table = noonOffsets.get(timeZone);
  if (!table) {
    table = new Float64Array(DATES);
    for (let i = 0; i < DATES; i++) {
      const noon = FIRST_DATE + i * DAY_MS + DAY_MS / 2;
      table[i] = wallClockAsUtc(f, noon) - noon;
    }
    if (noonOffsets.size < 1024) noonOffsets.set(timeZone, table);
  }
  return table;
}

/**
 * Expected GPU hours a month: every window laid out on the calendar of one year in its own time
 * zone, DST included, then merged as time intervals, so windows that overlap (in one zone, or in
 * several, or in one zone spelled `UTC`, `utc` and `Etc/UTC`) count once. Clipped to the year, so
 * never above 730.
 */
export function hoursPerMonth(windows: readonly GpuWindow[]): number {
  const intervals: [number, number][] = [];
  for (const w of windows) {
    const f = formatter(w.timeZone);
    if (!f) continue;
    const offsets = offsetsAtNoon(w.timeZone, f);
    for (let i = 0; i < DATES; i++) {
      const date = FIRST_DATE + i * DAY_MS;
      if (!w.days.has(new Date(date).getUTCDay())) continue;
      // Away from a DST change the noon offset holds all day; around one, ask the zone itself.
      const steady = offsets[i] === offsets[Math.max(0, i - 1)] && offsets[i] === offsets[Math.min(DATES - 1, i + 1)];
      const at = (minutes: number) =>
        steady ? date + minutes * MINUTE_MS - offsets[i] : localToInstant(f, date, minutes);
      const start = Math.max(YEAR_START, at(w.start));
      const end = Math.min(YEAR_END, at(w.end));
      if (end > start) intervals.push([start, end]);
    }
  }
  intervals.sort((a, b) => a[0] - b[0]);
  let total = 0;
  let [openStart, openEnd] = [0, 0];
  for (const [start, end] of intervals) {
    if (start > openEnd) {
      total += openEnd - openStart;
      [openStart, openEnd] = [start, end];
    } else if (end > openEnd) {
      openEnd = end;
    }
  }
  total += openEnd - openStart;
  return Math.round(total / 3_600_000 / 12);
}

/** Weekday (0 = Sunday) and minutes after midnight of `instant` in `timeZone`. */
function localTime(instant: Date, timeZone: string): { day: number; minutes: number } {
  const parts = new Intl.DateTimeFormat("en-US", {
    timeZone,
    weekday: "short",
    hour: "2-digit",
    minute: "2-digit",
    hourCycle: "h23",
  }).formatToParts(instant);
  const get = (type: string) => parts.find((p) => p.type === type)?.value ?? "";
  return {
    day: DAYS.indexOf(get("weekday").toLowerCase().slice(0, 3)),
    minutes: Number(get("hour")) * 60 + Number(get("minute")),
  };
}

export function isInsideWindows(windows: readonly GpuWindow[], instant: Date): boolean {
  return windows.some((w) => {
    const local = localTime(instant, w.timeZone);
    return w.days.has(local.day) && local.minutes >= w.start && local.minutes < w.end;
  });
}
