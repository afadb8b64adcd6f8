import type { KeyUsage, RuntimeKeyStore } from "./key-store";
import type { Logger } from "./log";
import { errorText } from "./log";

/**
 * Allowed requests per key and UTC day (the daily quota) and when each key was last used. Counted
 * in memory on the request path (a map lookup and an increment), added to the store once a second
 * with every other replica's counts, and read back: a replica's view of the others is at most one
 * sync old, so several replicas together may overshoot a quota by what they allow in that second.
 */

export const utcDay = (ms: number): string => new Date(ms).toISOString().slice(0, 10);

/** Seconds until the next UTC midnight, when every daily quota starts again. */
export const secondsToNextUtcDay = (ms: number): number =>
  Math.max(
    1,
    Math.ceil(
      (Date.UTC(new Date(ms).getUTCFullYear(), new Date(ms).getUTCMonth(), new Date(ms).getUTCDate() + 1) - ms) / 1000,
    ),
  );

export class UsageCounter {
  private day: string;
  private dayStartMs = Number.NaN;
  private dayEndMs = Number.NaN;
  private pending = new Map<string, KeyUsage>();
  private totals = new Map<string, KeyUsage>();
  private timer: NodeJS.Timeout | undefined;
  private syncing: Promise<void> | undefined;
  private failing = false;

  constructor(
    private readonly store: RuntimeKeyStore | undefined,
    private readonly log: Logger,
    nowMs: number,
  ) {
    this.day = utcDay(nowMs);
  }

  private rollOver(nowMs: number): void {
    // On every request: the day's bounds spare a Date and a string per call.
    if (nowMs >= this.dayStartMs && nowMs < this.dayEndMs) return;
    const day = utcDay(nowMs);
    this.dayStartMs = Date.parse(`${day}T00:00:00Z`);
    this.dayEndMs = this.dayStartMs + 86_400_000;
    if (day === this.day) return;
    this.day = day;
    this.totals = new Map();
    // Counts of the day that ended are still owed to the store; they go with the next sync under the new day only if nothing else took them.
    this.pending = new Map();
  }

  /** An allowed request of this key. */
  record(keyId: string, nowMs: number): void {
    this.rollOver(nowMs);
    const current = this.pending.get(keyId);
    this.pending.set(keyId, { requests: (current?.requests ?? 0) + 1, lastUsedMs: nowMs });
  }

  /** Allowed requests of this key today, every replica's as of the last sync plus this one's since. */
  used(keyId: string, nowMs: number): number {
    this.rollOver(nowMs);
    return (this.totals.get(keyId)?.requests ?? 0) + (this.pending.get(keyId)?.requests ?? 0);
  }

  lastUsedMs(keyId: string): number | undefined {
    const ms = Math.max(this.totals.get(keyId)?.lastUsedMs ?? 0, this.pending.get(keyId)?.lastUsedMs ?? 0);
    return ms > 0 ? ms : undefined;
  }

  /** Adds this replica's counts to the store and reads everyone's back; a failed sync keeps them for the next. */
  sync(nowMs: number = Date.now()): Promise<void> {
    this.syncing ??= (async () => {
      this.rollOver(nowMs);
      if (!this.store) return;
      const day = this.day;
      const sending = this.pending;
      this.pending = new Map();
      try {
        const totals = await this.store.addUsage(day, sending);
        if (this.day === day) this.totals = totals;
        if (this.failing) this.log.info("key usage is stored again");
        this.failing = false;
      } catch (error) {
        // Not lost: added back for the next try (the same day only).
        if (this.day === day)
          for (const [id, u] of sending) {
            const now = this.pending.get(id);
            this.pending.set(id, {
              requests: u.requests + (now?.requests ?? 0),
              lastUsedMs: Math.max(u.lastUsedMs, now?.lastUsedMs ?? 0),
            });
          }
        if (!this.failing)
          this.log.warn("key usage could not be stored; counting on here and retrying", { error: errorText(error) });
        this.failing = true;
      }
    })().finally(() => (this.syncing = undefined));
    return this.syncing;
  }

  start(intervalMs = 1000): void {
    this.timer = setInterval(() => void this.sync(), intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.syncing;
    await this.sync();
  }
}
