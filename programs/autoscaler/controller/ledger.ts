import { DROPLET_MIN_BILLED_SECONDS } from "../../../stacks/catalogue/droplets";

/**
 * The spend guard's ledger: GPU node-seconds this calendar month (UTC), billed the way
 * DigitalOcean bills droplets since 2026-01-01: per second, at least 60 s per droplet, and a
 * droplet bills from creation to destruction whether it serves or not (FACTS.md "Billing").
 * Pure functions over plain JSON; the controller persists the result every tick.
 *
 * Where the controller cannot see a droplet's exact life, the ledger errs on the side of
 * counting more, never less:
 * - a droplet is counted from the moment its wake was accepted by the pipeline (before DigitalOcean
 *   created it), or, when no wake of ours explains it (a manual `gpu on`), from
 *   `createSeconds` before the deploy first named it;
 * - a droplet the deploy no longer names is counted while its replica still answers (draining),
 *   then `destroySeconds` more (the teardown);
 * - a controller restart counts every droplet that was open as alive throughout the downtime.
 *
 * Time never runs backwards here. The ledger runs on its own clock (`nowMs` below): the controller
 * advances it by the time that really passed, read from a monotonic clock while it runs (a step of
 * the system clock, back or forth, moves it not at all) and from the system clock across a restart
 * (downtime counts; a step back during it counts as none). Every function here also refuses a time
 * before the ledger's last update. So a clock stepped back (a day, a month, a year) neither lowers
 * spend nor reopens an earlier month, and a month closes only when the ledger's clock enters the
 * next. The month's spend is kept as a high-water mark too, and a floor from outside (a lost
 * ledger's worst case, DigitalOcean's month-to-date figure) only ever raises it.
 */

export interface OpenDroplet {
  /** Whence this month's share is counted (the month's start for a droplet older than the month). */
  readonly sinceMs: number;
  /** Whence its whole life is counted, for the 60 s minimum. */
  readonly lifeStartMs: number;
  readonly healthUrl: string;
  /** The deploy no longer names it; it is counted until its replica stops answering. */
  readonly leaving: boolean;
}

export interface LedgerState {
  readonly version: 1;
  /** "YYYY-MM", UTC. */
  readonly month: string;
  /** Node-seconds of droplets already gone this month, each with its 60 s minimum applied. */
  readonly closedNodeSeconds: number;
  readonly open: Readonly<Record<string, OpenDroplet>>;
  /**
   * A lower bound on this month's GPU spend from outside the ledger: the worst case assumed when
   * the ledger was lost, or DigitalOcean's own month-to-date usage then. 0 normally.
   */
  readonly floorUsd: number;
  /** Why the floor is set, for the log and /status. */
  readonly floorReason?: string;
  /** The ledger's clock at its last update (never earlier than any before it). */
  readonly updatedMs: number;
  /** The system clock's reading at that update: after a restart, the ledger's clock moves on by what this has. @default updatedMs */
  readonly wallMs?: number;
  /** The most node-seconds this month was ever reported at. */
  readonly highWaterNodeSeconds?: number;
}

export const monthOf = (ms: number): string => new Date(ms).toISOString().slice(0, 7);
export const monthStartMs = (ms: number): number => {
  const d = new Date(ms);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
};

export function emptyLedger(nowMs: number): LedgerState {
  return {
    version: 1,
    month: monthOf(nowMs),
    closedNodeSeconds: 0,
    open: {},
    floorUsd: 0,
    updatedMs: nowMs,
    wallMs: nowMs,
  };
}

/** The ledger's clock after a restart, at a reading of the system clock: its last update plus the downtime, never less. */
export const ledgerTimeAfterRestart = (ledger: LedgerState, wallMs: number): number =>
  ledger.updatedMs + Math.max(0, wallMs - (ledger.wallMs ?? ledger.updatedMs));

/** A time on the ledger's clock, never before its last update. */
const clamp = (ledger: LedgerState, nowMs: number): number => Math.max(nowMs, ledger.updatedMs);

/** Billed seconds of one droplet within the month: its time since `sinceMs`, topped up to the 60 s minimum of its whole life. */
export function billedSeconds(d: Pick<OpenDroplet, "sinceMs" | "lifeStartMs">, untilMs: number): number {
  const inMonth = Math.max(0, (untilMs - d.sinceMs) / 1000);
  const life = Math.max(0, (untilMs - d.lifeStartMs) / 1000);
  return inMonth + Math.max(0, DROPLET_MIN_BILLED_SECONDS - life);
}

/** A new month: what the old one billed is history; droplets still alive carry on from the month's first instant. `nowMs` is the ledger's clock. */
export function rollMonth(ledger: LedgerState, nowMs: number): LedgerState {
  // Only forwards: an earlier month is never reopened.
  if (monthOf(nowMs) <= ledger.month) return ledger;
  const start = monthStartMs(nowMs);
  // A droplet older than the 60 s minimum has paid it; a younger one pays the rest in the new month.
  const open = Object.fromEntries(
    Object.entries(ledger.open).map(([node, d]) => [node, { ...d, sinceMs: Math.max(start, d.sinceMs) }]),
  );
  return {
    version: 1,
    month: monthOf(nowMs),
    closedNodeSeconds: 0,
    open,
    floorUsd: 0,
    updatedMs: nowMs,
    wallMs: ledger.wallMs,
    highWaterNodeSeconds: 0,
  };
}

export interface LedgerObservation {
  /** The ledger's clock. */
  readonly nowMs: number;
  /** The system clock's reading now. @default nowMs */
  readonly wallMs?: number;
  /** Nodes the deploy names now (the controller's config file), with their health URLs. */
  readonly deployed: readonly { readonly node: string; readonly healthUrl: string }[];
  /** Leaving nodes whose replica still answered this tick. */
  readonly stillAnswering: ReadonlySet<string>;
  /** When the pipeline accepted the wake that created the nodes now appearing, if one did (system clock). */
  readonly wakeAcceptedMs?: number;
  readonly createSeconds: number;
  readonly destroySeconds: number;
}

/** One tick: open what appeared, mark what the deploy dropped as leaving, close what stopped answering. */
export function observeDroplets(previous: LedgerState, observed: LedgerObservation): LedgerState {
  const now = clamp(previous, observed.nowMs);
  const wall = observed.wallMs ?? observed.nowMs;
  // The wake's acceptance was stamped by the system clock: moved onto the ledger's.
  const wakeAcceptedMs = observed.wakeAcceptedMs === undefined ? undefined : observed.wakeAcceptedMs + (now - wall);
  const o = { ...observed, nowMs: now, wakeAcceptedMs };
  const ledger = rollMonth(previous, o.nowMs);
  const start = monthStartMs(o.nowMs);
  const open: Record<string, OpenDroplet> = {};
  let closed = ledger.closedNodeSeconds;
  const named = new Map(o.deployed.map((d) => [d.node, d.healthUrl]));
  for (const [node, d] of Object.entries(ledger.open)) {
    const url = named.get(node);
    if (url !== undefined) {
      // Named again (a leaving node the deploy brought back is the same droplet only if it never stopped answering).
      open[node] = { ...d, healthUrl: url, leaving: false };
    } else if (!d.leaving || o.stillAnswering.has(node)) {
      open[node] = { ...d, leaving: true };
    } else {
      // Gone: it stopped answering since the last tick; the teardown bills a little longer.
      closed += billedSeconds(d, o.nowMs + o.destroySeconds * 1000);
    }
  }
  for (const [node, healthUrl] of named) {
    if (open[node]) continue;
    const born =
      o.wakeAcceptedMs !== undefined && o.wakeAcceptedMs <= o.nowMs
        ? o.wakeAcceptedMs
        : o.nowMs - o.createSeconds * 1000;
    open[node] = { sinceMs: Math.max(start, born), lifeStartMs: born, healthUrl, leaving: false };
  }
  const next: LedgerState = { ...ledger, closedNodeSeconds: closed, open, updatedMs: now, wallMs: wall };
  return { ...next, highWaterNodeSeconds: monthNodeSeconds(next, now) };
}

/** Node-seconds behind the spend (for /status and the log), never below the month's high-water mark. */
export function monthNodeSeconds(ledger: LedgerState, nowMs: number): number {
  const now = clamp(ledger, nowMs);
  const current = rollMonth(ledger, now);
  const counted =
    current.closedNodeSeconds + Object.values(current.open).reduce((s, d) => s + billedSeconds(d, now), 0);
  return Math.max(counted, current.highWaterNodeSeconds ?? 0);
}

/**
 * The month's GPU spend so far: closed droplets, open ones to now (each at least its 60 s), plus
 * `externalUsd` (fine-tuning jobs' droplets, contract.ts EXTERNAL_SPEND_FILE), never below the
 * floor or the high-water mark.
 */
export function monthToDateUsd(ledger: LedgerState, nowMs: number, nodeHourlyUsd: number, externalUsd = 0): number {
  const current = rollMonth(ledger, clamp(ledger, nowMs));
  return Math.max(current.floorUsd, (monthNodeSeconds(ledger, nowMs) * nodeHourlyUsd) / 3600 + externalUsd);
}

/**
 * Raises this month's floor to an outside figure (DigitalOcean's month-to-date usage, less the
 * always-on costs accrued): a ledger that counts less than was billed is raised, never lowered.
 */
export function raiseFloor(ledger: LedgerState, nowMs: number, usd: number, why: string): LedgerState {
  const current = rollMonth(ledger, clamp(ledger, nowMs));
  if (!(usd > current.floorUsd)) return current;
  return { ...current, floorUsd: usd, floorReason: why };
}

/**
 * A ledger that could not be read: start again, but never below what may have been spent. With
 * DigitalOcean's month-to-date usage (the whole account: at least the GPU's share), that; without
 * it, the worst case: every node slot the stack may run, since the month began.
 */
export function recoveredLedger(
  nowMs: number,
  why: string,
  bound: { readonly accountMonthToDateUsd?: number; readonly maxNodes: number; readonly nodeHourlyUsd: number },
): LedgerState {
  // The account's figure includes the always-on costs: at least the GPU's share, so it is not reduced here.
  const hours = (nowMs - monthStartMs(nowMs)) / 3_600_000;
  const worst = bound.maxNodes * hours * bound.nodeHourlyUsd;
  const floorUsd = bound.accountMonthToDateUsd !== undefined ? bound.accountMonthToDateUsd : worst;
  const source =
    bound.accountMonthToDateUsd !== undefined
      ? "DigitalOcean's month-to-date usage for the whole account"
      : `the worst case (${bound.maxNodes} node(s) since the month began)`;
  return {
    ...emptyLedger(nowMs),
    floorUsd,
    floorReason: `the ledger was lost (${why}); this month's GPU spend is taken as at least $${floorUsd.toFixed(2)}, ${source}`,
  };
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const num = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);

/** Checks a persisted ledger's shape; undefined when it is not one. */
export function asLedger(v: unknown): LedgerState | undefined {
  if (!isRecord(v) || v.version !== 1 || typeof v.month !== "string" || !/^\d{4}-\d{2}$/.test(v.month))
    return undefined;
  if (
    !num(v.closedNodeSeconds) ||
    v.closedNodeSeconds < 0 ||
    !num(v.floorUsd) ||
    v.floorUsd < 0 ||
    !num(v.updatedMs) ||
    !isRecord(v.open)
  )
    return undefined;
  if (
    (v.wallMs !== undefined && !num(v.wallMs)) ||
    (v.highWaterNodeSeconds !== undefined && (!num(v.highWaterNodeSeconds) || v.highWaterNodeSeconds < 0))
  )
    return undefined;
  // A month that is not its clock's: written by hand or by another program.
  if (monthOf(v.updatedMs) !== v.month) return undefined;
  for (const d of Object.values(v.open)) {
    if (
      !isRecord(d) ||
      !num(d.sinceMs) ||
      !num(d.lifeStartMs) ||
      typeof d.healthUrl !== "string" ||
      typeof d.leaving !== "boolean"
    )
      return undefined;
  }
  return v as unknown as LedgerState;
}
