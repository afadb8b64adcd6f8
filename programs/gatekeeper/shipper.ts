import { promises as fsp } from "node:fs";
import * as path from "node:path";
import type { Pool } from "pg";
import type { Logger } from "./log";
import { errorText } from "./log";
import { applyMigrations, DECISIONS_TABLE, EXECUTIONS_TABLE } from "./migrations";
import type { Spool, SpoolBatch, SpoolPosition } from "./spool";

/**
 * Ships the spool to PostgreSQL: reads committed decisions from the checkpoint on, inserts them in
 * batches with ON CONFLICT (decision_id) DO NOTHING, then moves the durable checkpoint. A crash
 * between the insert and the checkpoint replays the batch, which the primary key turns into a
 * no-op: every decision lands exactly once. While the database is away the rows wait in the
 * spool; requests never wait for the database.
 */

export interface ShipperOptions {
  readonly spool: Spool;
  readonly pool: Pool;
  readonly log: Logger;
  /** Most rows per INSERT (a backlog after an outage goes in batches this big). @default 500 */
  readonly batchRows?: number;
  /**
   * New decisions that wake an idle shipper before maxDelayMs. A read then takes everything
   * committed (up to batchRows), so batches grow by themselves with the database's round-trip
   * time, while a nearby database gets small INSERTs whose CPU bursts do not stall the
   * gatekeeper on a small node. @default 100
   */
  readonly wakeRows?: number;
  /** Longest a committed decision waits before it is shipped. @default 200 */
  readonly maxDelayMs?: number;
  /** Retry delay after a database error, doubled up to retryMaxMs. @default 250 */
  readonly retryMinMs?: number;
  /** @default 5000 */
  readonly retryMaxMs?: number;
  /** When idle this long, a `SELECT 1` keeps the reported connectivity fresh. @default 10000 */
  readonly heartbeatMs?: number;
  /** Least time between two checkpoint saves while shipping. @default 1000 */
  readonly checkpointEveryMs?: number;
  /** Called on every failed database attempt (hub_gatekeeper_ship_failures_total). @default - nothing */
  readonly onFailure?: () => void;
}

export interface ShipperStatus {
  /** Whether the last database operation succeeded; null before the first one. */
  readonly connected: boolean | null;
  readonly migrated: boolean;
  readonly shippedRows: number;
  readonly quarantinedRows: number;
  readonly lastSuccessAt: string | null;
  readonly lastError: string | null;
  readonly lastErrorAt: string | null;
}

/**
 * The batch goes over as one JSON array of the spool's own lines and PostgreSQL parses it: the
 * gatekeeper's event loop, which answers Traefik, never parses or re-encodes a row. The spool's
 * field names are the column names; PostgreSQL checks every value against the column types.
 */
const DECISION_COLUMNS =
  "decision_id, decided_at, request_id, key_id, scope, method, path, client_addr, allowed, reason, status";
const EXECUTION_COLUMNS =
  "execution_id, reported_at, request_id, key_id, language, version, session, outcome, status, exit_code, signal, limits_hit, wall_ms, cpu_ms, memory_bytes, output_bytes, duration_ms";
/** One statement for both kinds of line: each table takes the lines that carry its key (the other's fields are ignored). */
const INSERT_SQL = `WITH decisions AS (
  INSERT INTO ${DECISIONS_TABLE} (${DECISION_COLUMNS})
  SELECT ${DECISION_COLUMNS} FROM json_populate_recordset(NULL::${DECISIONS_TABLE}, $1::json) WHERE decision_id IS NOT NULL
  ON CONFLICT (decision_id) DO NOTHING
)
INSERT INTO ${EXECUTIONS_TABLE} (${EXECUTION_COLUMNS})
SELECT ${EXECUTION_COLUMNS} FROM json_populate_recordset(NULL::${EXECUTIONS_TABLE}, $1::json) WHERE execution_id IS NOT NULL
ON CONFLICT (execution_id) DO NOTHING`;

const QUARANTINE_FILE = "rejected.ndjson";

const jsonArray = (lines: readonly string[]): string => `[${lines.join(",")}]`;

/** SQLSTATE classes 22 (data exception) and 23 (integrity): the row, not the database, is the problem. */
const isRowError = (error: unknown): boolean => /^2[23]/.test(String((error as { code?: unknown }).code ?? ""));

/** undefined_table, invalid_schema_name. */
const isMissingSchema = (error: unknown): boolean =>
  ["42P01", "3F000"].includes(String((error as { code?: unknown }).code ?? ""));

/** decided_at of a spool line, ms (the line is the spool's own JSON). */
function decidedAtMs(line: string): number | undefined {
  try {
    const record = JSON.parse(line) as { decided_at?: string; reported_at?: string };
    const at = Date.parse(record.decided_at ?? record.reported_at ?? "");
    return Number.isNaN(at) ? undefined : at;
  } catch {
    return undefined;
  }
}

const samePosition = (a: SpoolPosition, b: SpoolPosition): boolean => a.segment === b.segment && a.offset === b.offset;

export class AuditShipper {
  private readonly batchRows: number;
  private readonly wakeRows: number;
  private readonly maxDelayMs: number;
  private readonly retryMinMs: number;
  private readonly retryMaxMs: number;
  private readonly heartbeatMs: number;
  private readonly checkpointEveryMs: number;
  /** Everything before this is in the database; the durable checkpoint may lag behind it. */
  private position: SpoolPosition | undefined;
  private saved: SpoolPosition | undefined;
  private savedAtMs = 0;
  private checkpointFailing = false;
  private connected: boolean | null = null;
  private migrated = false;
  private shippedRows = 0;
  private quarantinedRows = 0;
  private lastSuccessAt: string | null = null;
  private lastError: string | null = null;
  private lastErrorAt: string | null = null;
  /** Decisions found in the spool past the checkpoint at start (an earlier process's backlog). */
  private backlogAtStart = 0;
  /** spool.committedRecords when that count was taken. */
  private committedAtStart = 0;
  /** decided_at of the oldest decision known not to be in the database, ms; undefined when none. */
  private oldestPendingMs: number | undefined;
  /** When the first decision committed after the last spool read was committed, ms. */
  private firstCommitAfterReadMs: number | undefined;
  private running: Promise<void> | undefined;
  private stopRequested = false;
  private drainUntilMs = 0;
  private wake: (() => void) | undefined;
  private waitingSince: number | undefined;
  private delayTimer: NodeJS.Timeout | undefined;

  constructor(private readonly options: ShipperOptions) {
    this.batchRows = options.batchRows ?? 500;
    this.wakeRows = Math.min(this.batchRows, options.wakeRows ?? 100);
    this.maxDelayMs = options.maxDelayMs ?? 200;
    this.retryMinMs = options.retryMinMs ?? 250;
    this.retryMaxMs = options.retryMaxMs ?? 5000;
    this.heartbeatMs = options.heartbeatMs ?? 10_000;
    this.checkpointEveryMs = options.checkpointEveryMs ?? 1000;
    options.spool.onCommit(() => this.onCommit());
  }

  start(): void {
    this.running ??= this.run().catch((error: unknown) =>
      this.options.log.error("audit shipper stopped unexpectedly", { error: errorText(error) }),
    );
  }

  /** How far the database has the spool (undefined until the shipper has looked). */
  get shippedUpTo(): SpoolPosition | undefined {
    return this.position;
  }

  status(): ShipperStatus {
    return {
      connected: this.connected,
      migrated: this.migrated,
      shippedRows: this.shippedRows,
      quarantinedRows: this.quarantinedRows,
      lastSuccessAt: this.lastSuccessAt,
      lastError: this.lastError,
      lastErrorAt: this.lastErrorAt,
    };
  }

  /** Ships what it can within drainMs (giving up at the first database error), then stops. */
  async stop(drainMs = 2000): Promise<void> {
    this.stopRequested = true;
    this.drainUntilMs = Date.now() + drainMs;
    this.wakeUp();
    await this.running;
  }

  /** Decisions in the spool not yet in the database (exact, but for a commit racing the count at start). */
  pendingRecords(): number {
    return Math.max(
      0,
      this.backlogAtStart +
        (this.options.spool.committedRecords - this.committedAtStart) -
        (this.shippedRows + this.quarantinedRows),
    );
  }

  /** Seconds since the oldest decision not yet in the database was decided; 0 when there is none. */
  oldestPendingAgeSeconds(nowMs: number): number {
    const oldest = this.oldestPendingMs ?? this.firstCommitAfterReadMs;
    return oldest === undefined || this.pendingRecords() === 0 ? 0 : Math.max(0, (nowMs - oldest) / 1000);
  }

  private onCommit(): void {
    this.firstCommitAfterReadMs ??= Date.now();
    if (this.waitingSince === undefined) return;
    if (this.options.spool.committedRecords - this.waitingSince >= this.wakeRows) this.wakeUp();
    // The first commit after a quiet spell starts the batching delay.
    else this.delayTimer ??= setTimeout(() => this.wakeUp(), this.maxDelayMs);
  }

  private wakeUp(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  /** Until wakeRows more decisions are committed, or maxDelayMs after the first one, or the heartbeat is due. */
  private async waitForWork(seenCommits: number): Promise<"work" | "idle"> {
    if (this.stopRequested) return "work";
    let heartbeat: NodeJS.Timeout | undefined;
    let reason: "work" | "idle" = "work";
    await new Promise<void>((resolve) => {
      this.wake = resolve;
      this.waitingSince = seenCommits;
      heartbeat = setTimeout(() => {
        reason = "idle";
        this.wakeUp();
      }, this.heartbeatMs);
      heartbeat.unref();
      const pending = this.options.spool.committedRecords - seenCommits;
      if (pending >= this.wakeRows) this.wakeUp();
      else if (pending > 0) this.delayTimer = setTimeout(() => this.wakeUp(), this.maxDelayMs);
    });
    clearTimeout(heartbeat);
    clearTimeout(this.delayTimer);
    this.delayTimer = undefined;
    this.waitingSince = undefined;
    return reason;
  }

  private async pause(ms: number): Promise<void> {
    if (this.stopRequested) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => this.wakeUp(), ms);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  private succeeded(): void {
    this.connected = true;
    this.lastSuccessAt = new Date().toISOString();
  }

  private failed(what: string, error: unknown): void {
    const text = errorText(error);
    // One log line per outage, not one per retry.
    if (this.connected !== false || this.lastError !== text)
      this.options.log.warn(`audit database: ${what} failed; decisions stay in the spool and are retried`, {
        error: text,
      });
    this.connected = false;
    this.lastError = text;
    this.lastErrorAt = new Date().toISOString();
    this.options.onFailure?.();
  }

  /**
   * Saves the in-memory position as the durable checkpoint, at most every checkpointEveryMs unless
   * forced: a checkpoint costs two fsyncs, and one that lags only means a longer, idempotent replay.
   */
  private async checkpoint(force: boolean): Promise<void> {
    const position = this.position;
    if (!position || (this.saved && samePosition(position, this.saved))) return;
    if (!force && Date.now() - this.savedAtMs < this.checkpointEveryMs) return;
    try {
      await this.options.spool.saveCheckpoint(position);
      this.saved = position;
      this.savedAtMs = Date.now();
      if (this.checkpointFailing)
        this.options.log.info("audit spool checkpoint saved again", { segment: position.segment });
      this.checkpointFailing = false;
    } catch (error) {
      // Tried again no sooner than checkpointEveryMs; logged once per failing spell (a full disk).
      this.savedAtMs = Date.now();
      if (!this.checkpointFailing)
        this.options.log.error(
          "audit spool checkpoint could not be saved; the rows since the last one will be re-sent after a restart, which the primary key absorbs",
          { error: errorText(error) },
        );
      this.checkpointFailing = true;
    }
  }

  private async run(): Promise<void> {
    const { spool, pool, log } = this.options;
    this.position = await spool.shippingStart();
    this.saved = this.position;
    await this.countBacklog(this.position);
    let retryMs = this.retryMinMs;
    const retry = async (): Promise<boolean> => {
      if (this.stopRequested) return false;
      await this.pause(retryMs);
      retryMs = Math.min(this.retryMaxMs, retryMs * 2);
      return true;
    };
    try {
      for (;;) {
        if (this.stopRequested && Date.now() > this.drainUntilMs) return;
        if (!this.migrated) {
          try {
            await this.migrate();
          } catch (error) {
            this.failed("applying migrations", error);
            if (await retry()) continue;
            return;
          }
        }
        const seenCommits = spool.committedRecords;
        let batch: SpoolBatch;
        try {
          this.firstCommitAfterReadMs = undefined;
          batch = await spool.readBatch(this.position, this.batchRows);
          this.oldestPendingMs = batch.lines.length ? decidedAtMs(batch.lines[0]) : undefined;
        } catch (error) {
          log.error("audit spool could not be read; retrying", { error: errorText(error) });
          if (await retry()) continue;
          return;
        }
        if (batch.lines.length > 0) {
          try {
            await this.insert(batch.lines);
          } catch (error) {
            this.failed("insert", error);
            // The schema is gone (a restored or replaced database): apply the migrations again.
            if (isMissingSchema(error)) this.migrated = false;
            if (await retry()) continue;
            return;
          }
        }
        retryMs = this.retryMinMs;
        // A full batch leaves older lines unread: the last shipped one bounds their age until the next read.
        this.oldestPendingMs =
          batch.lines.length === this.batchRows ? decidedAtMs(batch.lines[batch.lines.length - 1]) : undefined;
        this.position = batch.next;
        await this.checkpoint(false);
        if (batch.lines.length === this.batchRows) continue;
        if (this.stopRequested) return;
        if ((await this.waitForWork(seenCommits)) === "idle") {
          await this.checkpoint(true);
          await pool.query("SELECT 1").then(
            () => this.succeeded(),
            (error: unknown) => this.failed("heartbeat", error),
          );
        }
      }
    } finally {
      await this.checkpoint(true);
    }
  }

  /** Counts the decisions past the checkpoint once at start, so pendingRecords() includes a backlog. */
  private async countBacklog(from: SpoolPosition): Promise<void> {
    let position = from;
    let count = 0;
    try {
      for (;;) {
        const batch = await this.options.spool.readBatch(position, 5000);
        if (batch.lines.length === 0) break;
        if (count === 0) this.oldestPendingMs = decidedAtMs(batch.lines[0]);
        count += batch.lines.length;
        position = batch.next;
      }
    } catch (error) {
      this.options.log.warn("audit spool backlog could not be counted; the pending-records metric leaves it out", {
        error: errorText(error),
      });
    }
    this.backlogAtStart = count;
    this.committedAtStart = this.options.spool.committedRecords;
  }

  private async migrate(): Promise<void> {
    const client = await this.options.pool.connect();
    try {
      const result = await applyMigrations(client);
      if (result.applied.length) this.options.log.info("audit database migrated", { applied: result.applied });
      if (result.changedSinceApplied.length)
        this.options.log.warn("audit migrations changed after they were applied; add a new migration instead", {
          versions: result.changedSinceApplied,
        });
    } finally {
      client.release();
    }
    this.migrated = true;
    this.succeeded();
  }

  private async insert(lines: readonly string[]): Promise<void> {
    try {
      await this.options.pool.query(INSERT_SQL, [jsonArray(lines)]);
      this.shippedRows += lines.length;
      this.succeeded();
    } catch (error) {
      if (!isRowError(error)) throw error;
      // One bad line must not hold back every later one: insert one by one, set the bad ones aside.
      this.options.log.error("audit database refused a batch; inserting row by row", {
        error: errorText(error),
        rows: lines.length,
      });
      for (const line of lines) {
        try {
          await this.options.pool.query(INSERT_SQL, [jsonArray([line])]);
          this.shippedRows += 1;
        } catch (rowError) {
          if (!isRowError(rowError)) throw rowError;
          await this.quarantine(line, rowError);
        }
      }
      this.succeeded();
    }
  }

  /** Keeps a row the database refuses in rejected.ndjson next to the spool, durably, for a human to look at. */
  private async quarantine(line: string, error: unknown): Promise<void> {
    const handle = await fsp.open(path.join(this.options.spool.dir, QUARANTINE_FILE), "a", 0o600);
    try {
      await handle.write(`${JSON.stringify({ line, error: errorText(error), at: new Date().toISOString() })}\n`);
      await handle.sync();
    } finally {
      await handle.close();
    }
    this.quarantinedRows += 1;
    this.options.log.error("audit row refused by the database and set aside", {
      file: QUARANTINE_FILE,
      line: line.slice(0, 300),
      error: errorText(error),
    });
  }
}
