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

function parseDays(text: string): Set<number> | undefined {
  const days = new Set<number>();
  for (const part of text.toLowerCase().split(",")) {
    const [from, to] = part.split("-");
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

function validTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

export function parseWindows(texts: readonly string[]): { windows: GpuWindow[]; problems: Problem[] } {
  const windows: GpuWindow[] = [];
  const problems: Problem[] = [];
  const example = "Write windows like \"mon-fri 08:00-18:00 Europe/Berlin\" (days, local start-end, IANA time zone).";
  for (const text of texts) {
    const parts = text.trim().split(/\s+/);
    if (parts.length !== 3) {
      problems.push(problem("gpuWindows", text, "is not `<days> <start>-<end> <time zone>`.", example));
      continue;
    }
    const [dayText, range, timeZone] = parts;
    const days = parseDays(dayText);
    const [startText, endText] = range.split("-");
    const start = parseTime(startText ?? "");
    const end = parseTime(endText ?? "");
    const why: string[] = [];
    if (!days) why.push(`days "${dayText}" are not like mon-fri or sat,sun`);
    if (start === undefined || end === undefined) why.push(`"${range}" is not HH:MM-HH:MM`);
    else if (end <= start) why.push(`the window ends (${endText}) before it starts (${startText}); split a window that crosses midnight in two`);
    if (!validTimeZone(timeZone)) why.push(`"${timeZone}" is not an IANA time zone`);
    if (why.length || !days || start === undefined || end === undefined) {
      problems.push(problem("gpuWindows", text, `${why.join("; ")}.`, example));
      continue;
    }
    windows.push({ days, start, end, timeZone, text });
  }
  return { windows, problems };
}

/** Expected GPU hours a month: the weekly hours of all windows (overlaps counted once per zone). */
export function hoursPerMonth(windows: readonly GpuWindow[]): number {
  const weekly = new Map<string, Set<number>>();
  for (const w of windows) {
    const minutes = weekly.get(w.timeZone) ?? new Set<number>();
    for (const day of w.days) for (let m = w.start; m < w.end; m++) minutes.add(day * 1440 + m);
    weekly.set(w.timeZone, minutes);
  }
  const weeklyMinutes = [...weekly.values()].reduce((sum, set) => sum + set.size, 0);
  return Math.round((weeklyMinutes / 60) * WEEKS_PER_MONTH);
}

/** Weekday (0 = Sunday) and minutes after midnight of `instant` in `timeZone`. */
function localTime(instant: Date, timeZone: string): { day: number; minutes: number } {
  const parts = new Intl.DateTimeFormat("en-US", { timeZone, weekday: "short", hour: "2-digit", minute: "2-digit", hourCycle: "h23" }).formatToParts(instant);
  const get = (type: string) => parts.find((p) => p.type === type)?.value ?? "";
  return { day: DAYS.indexOf(get("weekday").toLowerCase().slice(0, 3)), minutes: Number(get("hour")) * 60 + Number(get("minute")) };
}

export function isInsideWindows(windows: readonly GpuWindow[], instant: Date): boolean {
  return windows.some((w) => {
    const local = localTime(instant, w.timeZone);
    return w.days.has(local.day) && local.minutes >= w.start && local.minutes < w.end;
  });
}
