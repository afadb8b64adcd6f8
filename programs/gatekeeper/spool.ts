import { constants as fsConstants, promises as fsp } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import * as path from "node:path";
import type { AuditRecord, DecisionRecord } from "./decision";
import { isDecisionRecord } from "./decision";
import type { Logger } from "./log";
import { errorText } from "./log";

/**
 * The append-only audit spool on the node's persistent volume: numbered NDJSON segments
 * (decisions-000000000001.ndjson, ...), one decision per line, plus `shipped.json`, the durable
 * "shipped up to segment S, byte offset N" checkpoint of the database shipper.
 *
 * Durability: `append` resolves only once the line is on disk (an O_DSYNC write, as durable as
 * write + fdatasync). Appends that arrive while the commits in flight run are grouped into the
 * next one (group commit), so the cost of a sync is shared and a decision is answered only after
 * it is on disk.
 *
 * A failed write (disk full, I/O error) is cut off the segment, and the spool goes into an outage:
 * every append is refused at once, without touching the disk, while a probe retries in the
 * background (50 ms, doubling to 1 s). One log line when it starts, one a minute while it lasts,
 * one when it ends; no new file per failure, so recovery costs nothing extra.
 */

export interface SpoolOptions {
  readonly dir: string;
  /** A segment is closed and a new one started once it reaches this size. */
  readonly segmentBytes: number;
  /** Segments kept on disk (the current one included); older ones are deleted when allowed. */
  readonly keepSegments: number;
  /** With a database, a segment is deleted only once it has been shipped, whatever keepSegments says. */
  readonly retainUnshipped: boolean;
  /** Group commits (synchronous writes) running at once. @default DEFAULT_COMMITS_IN_FLIGHT */
  readonly commitsInFlight?: number;
  readonly log: Logger;
}

/** A place in the spool: everything before `offset` in `segment`, and all earlier segments. */
export interface SpoolPosition {
  readonly segment: number;
  readonly offset: number;
}

export interface SpoolBatch {
  /** Decision lines, JSON text as written (not parsed here: the database parses them). */
  readonly lines: readonly string[];
  /** Where the next read starts; the checkpoint to save once `lines` are shipped. */
  readonly next: SpoolPosition;
  /** Lines that were not decisions (a torn tail after a crash, corruption); skipped and logged. */
  readonly skippedLines: number;
}

const SEGMENT_PATTERN = /^decisions-(\d{12})\.ndjson$/;
export const CHECKPOINT_FILE = "shipped.json";
/** Written, fsync'ed and deleted by the outage probe; big enough to stand for a group commit. */
const PROBE_FILE = "write-probe.tmp";
const PROBE_BYTES = 64 * 1024;
const OUTAGE_RETRY_MIN_MS = 50;
const OUTAGE_RETRY_MAX_MS = 1000;
const OUTAGE_REPORT_EVERY_MS = 60_000;
const ROTATE_RETRY_MS = 1000;
/** Group commits in flight at once (measured in bench/bench-gatekeeper.ts against 1). */
export const DEFAULT_COMMITS_IN_FLIGHT = 4;
/**
 * Another commit starts beside a running one only once that one has taken this long (or twice
 * the usual time, if longer, up to STALLED_COMMIT_MAX_MS): a quick sync gathers everything that
 * arrives meanwhile into the next commit, one sync for many decisions; a slow one (the disk's
 * tail) does not hold back the decisions behind it.
 */
const STALLED_COMMIT_MIN_MS = 1;
const STALLED_COMMIT_MAX_MS = 5;
const READ_CHUNK_BYTES = 256 * 1024;
const NEWLINE = 0x0a;
const CLOSING_BRACE = 0x7d;
/** server.ts builds each record with its id first (decision_id, or execution_id for a sandbox execution), and JSON.stringify keeps that order. */
const LINE_PREFIXES = [Buffer.from('{"decision_id":"'), Buffer.from('{"execution_id":"')];

/** A cheap plausibility check on raw bytes: the full check is the database's JSON parser and types. */
function looksLikeDecisionLine(buffer: Buffer, start: number, end: number): boolean {
  return (
    buffer[end - 1] === CLOSING_BRACE &&
    LINE_PREFIXES.some(
      (prefix) =>
        end - start > prefix.length && buffer.compare(prefix, 0, prefix.length, start, start + prefix.length) === 0,
    )
  );
}

/** A spool line as a record, or undefined when it is not one. */
export function parseDecisionLine(line: string): DecisionRecord | undefined {
  try {
    const value: unknown = JSON.parse(line);
    return isDecisionRecord(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

export const segmentFileName = (segment: number): string => `decisions-${String(segment).padStart(12, "0")}.ndjson`;

interface Waiter {
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
}

/** One group commit: decisions written together at [start, end) of the current segment. */
interface Batch {
  readonly start: number;
  readonly end: number;
  readonly lines: number;
  readonly waiters: Waiter[];
  /** Its write returned: on disk (O_DSYNC). */
  durable: boolean;
}

/** Every write returns once its data is on disk (synchronized I/O data integrity, as fdatasync). */
const LANE_FLAGS = fsConstants.O_WRONLY | fsConstants.O_DSYNC;

/** The spool cannot write: appends are refused until the probe succeeds. */
interface Outage {
  readonly sinceMs: number;
  readonly error: Error;
  refused: number;
  retryMs: number;
  reportedAtMs: number;
  timer?: NodeJS.Timeout;
}

/** What append rejects with during an outage: says why, without a stack per refused request. */
export class SpoolUnavailableError extends Error {
  constructor(cause: unknown) {
    super(`the audit spool cannot be written: ${errorText(cause)}`, { cause });
    this.name = "SpoolUnavailableError";
  }
}

/** Why a checkpoint file cannot be used, or undefined when it can. */
export function checkpointProblem(text: string): string | undefined {
  if (text.trim() === "") return "it is empty";
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    return `it is not JSON (${errorText(error)})`;
  }
  const position = parsed as Partial<Record<keyof SpoolPosition, unknown>> | null;
  if (typeof position !== "object" || position === null || Array.isArray(position))
    return "it is not a {segment, offset} object";
  if (!Number.isSafeInteger(position.segment) || (position.segment as number) < 1)
    return `segment ${JSON.stringify(position.segment)} is not a segment number (1 or more)`;
  if (!Number.isSafeInteger(position.offset) || (position.offset as number) < 0)
    return `offset ${JSON.stringify(position.offset)} is not a byte offset (0 or more)`;
  return undefined;
}

/** A short, printable sample of a file that may hold anything. */
const preview = (text: string): string => JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}…` : text);

async function fsyncDirectory(dir: string): Promise<void> {
  // Makes a created or renamed file's directory entry survive a power loss.
  const handle = await fsp.open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export class Spool {
  /** Handles on the current segment, one per commit in flight (each its own open file: see commitBatch). */
  private lanes: FileHandle[] = [];
  private idleLanes: FileHandle[] = [];
  private currentSegmentNumber = 0;
  /** Bytes of the current segment that are on disk and answered: the end of the last resolved batch. */
  private committedOffset = 0;
  /** Where the next batch is written: committedOffset plus the batches in flight. */
  private nextOffset = 0;
  private committedCount = 0;
  private commitCount = 0;
  private pendingLines: string[] = [];
  private pendingWaiters: Waiter[] = [];
  /** Batches dispatched and not yet resolved, in file order. */
  private inFlight: Batch[] = [];
  /** Commits still running (a failed batch's siblings finish before the tail is cut). */
  private running = 0;
  /** Set from a failed write until the failed tail is cut off and the lanes reopened. */
  private failure: unknown;
  private recovery: Promise<void> | undefined;
  private rotation: Promise<void> | undefined;
  private readonly idleListeners: (() => void)[] = [];
  private outage: Outage | undefined;
  /** When an outage ended: one starting soon after keeps the longer retry delay (a flapping disk). */
  private outageEndedAtMs = 0;
  private lastRetryMs = OUTAGE_RETRY_MIN_MS;
  private rotateRetryAtMs = 0;
  private rotateFailing = false;
  /** Closed segments whose failed tail could not be cut off: readers stop at their last commit. */
  private readonly abandonedEnds = new Map<number, number>();
  private closing = false;
  private closed = false;
  private checkpoint: SpoolPosition | undefined;
  private readonly commitListeners: (() => void)[] = [];
  private readonly commitsInFlight: number;
  /** When the most recently started commit began (performance.now()). */
  private lastDispatchMs = 0;
  /** Moving average of how long a commit takes, ms. */
  private typicalCommitMs = STALLED_COMMIT_MIN_MS / 2;
  private stallTimer: NodeJS.Timeout | undefined;
  private pumpScheduled = false;
  private reader: { readonly segment: number; readonly handle: FileHandle } | undefined;

  private constructor(private readonly options: SpoolOptions) {
    this.commitsInFlight = Math.max(1, options.commitsInFlight ?? DEFAULT_COMMITS_IN_FLIGHT);
  }

  /**
   * Opens the spool: always in a fresh segment, so a torn tail from a crash is never appended to.
   * A full or failing disk does not stop the start: the spool opens in an outage (every decision
   * refused, the probe retrying), so the gatekeeper answers, reports unhealthy and recovers alone.
   */
  static async open(options: SpoolOptions): Promise<Spool> {
    await fsp.mkdir(options.dir, { recursive: true, mode: 0o700 });
    const spool = new Spool(options);
    const segments = await spool.listSegments();
    spool.currentSegmentNumber = segments.length ? segments[segments.length - 1] : 0;
    spool.checkpoint = await spool.readCheckpointFile();
    try {
      await spool.openNextSegment();
    } catch (error) {
      spool.startOutage(error);
    }
    await spool
      .applyRetention()
      .catch((error: unknown) =>
        options.log.warn("audit spool retention failed; will retry at the next rotation", { error: errorText(error) }),
      );
    return spool;
  }

  get dir(): string {
    return this.options.dir;
  }

  get currentSegment(): number {
    return this.currentSegmentNumber;
  }

  /** End of the durable data: what a reader may ship. */
  get committed(): SpoolPosition {
    return { segment: this.currentSegmentNumber, offset: this.committedOffset };
  }

  /** Decisions committed since this process opened the spool. */
  get committedRecords(): number {
    return this.committedCount;
  }

  /** Commits (synchronous writes) made since this process opened the spool: decisions ÷ commits is the batching. */
  get commits(): number {
    return this.commitCount;
  }

  /** False from a failed write until the probe can write again. */
  get writable(): boolean {
    return !this.closed && this.outage === undefined;
  }

  /** Decisions refused since the current outage began; undefined when there is none. */
  get outageRefused(): number | undefined {
    return this.outage?.refused;
  }

  onCommit(listener: () => void): void {
    this.commitListeners.push(listener);
  }

  /** Resolves once the record (a decision, or a sandbox execution's report) is on disk; rejects if it could not be. */
  append(record: AuditRecord): Promise<void> {
    if (this.closing) return Promise.reject(new Error("the audit spool is closed"));
    if (this.outage) {
      // Refused without touching the disk; the probe finds out when writing works again.
      this.outage.refused += 1;
      return Promise.reject(this.outage.error);
    }
    return new Promise<void>((resolve, reject) => {
      this.pendingLines.push(`${JSON.stringify(record)}\n`);
      this.pendingWaiters.push({ resolve, reject });
      this.schedulePump();
    });
  }

  /**
   * Pumps once the event loop has handled the I/O of this turn: every request parsed in the same
   * turn then goes into one commit, instead of the first going alone and the rest waiting a sync.
   */
  private schedulePump(): void {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    setImmediate(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  /** Starts a commit for what is pending if a lane is free; rotates once a full segment is quiet. */
  private pump(): void {
    if (this.failure !== undefined || this.rotation) return;
    const segmentFull = this.nextOffset >= this.options.segmentBytes;
    if (segmentFull && Date.now() >= this.rotateRetryAtMs) {
      // A segment is closed only when nothing is in flight on it; meanwhile appends wait here.
      if (this.running === 0 && this.lanes.length > 0) {
        this.rotation = this.rotate().finally(() => {
          this.rotation = undefined;
          this.notifyIdle();
          this.pump();
        });
      }
      return;
    }
    while (this.pendingLines.length > 0 && this.idleLanes.length > 0) {
      if (this.running > 0) {
        // Beside a running commit only once it looks stalled; until then the decisions gather.
        const stalledAfterMs = Math.min(
          STALLED_COMMIT_MAX_MS,
          Math.max(STALLED_COMMIT_MIN_MS, 2 * this.typicalCommitMs),
        );
        const waitMs = this.lastDispatchMs + stalledAfterMs - performance.now();
        if (waitMs > 0) {
          this.stallTimer ??= setTimeout(() => {
            this.stallTimer = undefined;
            this.pump();
          }, Math.ceil(waitMs));
          break;
        }
      }
      const lane = this.idleLanes.pop() as FileHandle;
      const data = Buffer.from(this.pendingLines.join(""), "utf8");
      const batch: Batch = {
        start: this.nextOffset,
        end: this.nextOffset + data.length,
        lines: this.pendingLines.length,
        waiters: this.pendingWaiters,
        durable: false,
      };
      this.pendingLines = [];
      this.pendingWaiters = [];
      this.nextOffset = batch.end;
      this.inFlight.push(batch);
      this.lastDispatchMs = performance.now();
      void this.commitBatch(batch, data, lane);
    }
    if (this.pendingLines.length > 0 && this.lanes.length === 0 && !this.outage) {
      // No segment open (a failed tail could not be cut): the next write needs one.
      this.fail(new Error("no spool segment is open"));
    }
  }

  /**
   * Group commit, several at a time: while commits are running, new decisions wait and go
   * together in the next one, which starts when a commit ends, or beside the running ones once
   * they look stalled (up to `commitsInFlight` at once). Each commit is one positional write on a file opened
   * with O_DSYNC, which returns once the data (and the size, when it grew) is on disk: one trip to
   * libuv's thread pool instead of a write and an fdatasync, and concurrent commits share the
   * disk's flushes (on ext4 one journal commit serves them all). Each batch has its own offset,
   * fixed when it is dispatched, and each commit its own open file: Linux reports a writeback error
   * to every open file once, so one commit cannot swallow the error another needs to see.
   * Batches are answered in file order, so what is answered is always a whole prefix of the file.
   */
  private async commitBatch(batch: Batch, data: Buffer, lane: FileHandle): Promise<void> {
    this.running += 1;
    const startedMs = performance.now();
    try {
      let written = 0;
      while (written < data.length) {
        const { bytesWritten } = await lane.write(data, written, data.length - written, batch.start + written);
        written += bytesWritten;
      }
      batch.durable = true;
      this.commitCount += 1;
      this.typicalCommitMs += (performance.now() - startedMs - this.typicalCommitMs) / 16;
      if (this.failure === undefined) this.resolveDurablePrefix();
    } catch (error) {
      this.fail(error);
    } finally {
      this.running -= 1;
      if (this.lanes.includes(lane)) this.idleLanes.push(lane);
      if (this.running === 0) this.becameIdle();
      this.schedulePump();
    }
  }

  /** Answers the batches that are durable and have only durable batches before them, in file order. */
  private resolveDurablePrefix(): void {
    let resolved = false;
    while (this.inFlight.length > 0 && this.inFlight[0].durable) {
      const batch = this.inFlight.shift() as Batch;
      this.committedOffset = batch.end;
      this.committedCount += batch.lines;
      for (const waiter of batch.waiters) waiter.resolve();
      resolved = true;
    }
    if (resolved) {
      this.lastRetryMs = OUTAGE_RETRY_MIN_MS;
      for (const listener of this.commitListeners) listener();
    }
  }

  /**
   * A commit failed: nothing past the last resolved batch can be trusted. Everything in
   * flight or waiting is refused, the outage starts, and once the other commits have finished the
   * failed tail is cut off (recover()).
   */
  private fail(error: unknown): void {
    if (this.failure !== undefined) return;
    this.failure = error;
    const refused = [...this.inFlight.flatMap((b) => b.waiters), ...this.pendingWaiters];
    this.inFlight = [];
    this.pendingLines = [];
    this.pendingWaiters = [];
    const outage = this.startOutage(error);
    outage.refused += refused.length;
    for (const waiter of refused) waiter.reject(outage.error);
    if (this.running === 0) this.becameIdle();
  }

  private becameIdle(): void {
    if (this.failure !== undefined && !this.recovery) {
      this.recovery = this.recover().finally(() => {
        this.recovery = undefined;
        this.notifyIdle();
      });
    }
    this.notifyIdle();
  }

  private notifyIdle(): void {
    for (const listener of this.idleListeners.splice(0)) listener();
  }

  /** Resolves when no commit, recovery or rotation is running. */
  private whenIdle(): Promise<void> {
    if (this.running === 0 && !this.recovery && !this.rotation) return Promise.resolve();
    return new Promise<void>((resolve) => this.idleListeners.push(resolve)).then(() => this.whenIdle());
  }

  /**
   * After a failed synchronous write the bytes past the last commit are unknown (and Linux may have
   * dropped the dirty pages): cut them off, make the cut durable and check it. The committed part
   * was on disk before, so the segment then continues at its last commit, on freshly opened files
   * (an error already reported to one must not surface again later). If the cut cannot be made, the
   * segment is closed, readers stop at its last commit, and the next write opens a new one.
   */
  private async recover(): Promise<void> {
    const lanes = this.lanes;
    this.lanes = [];
    this.idleLanes = [];
    const file = this.segmentPath(this.currentSegmentNumber);
    try {
      if (lanes.length === 0) throw new Error("no segment was open");
      const cut = lanes[0];
      await cut.truncate(this.committedOffset);
      await cut.datasync();
      const { size } = await cut.stat();
      if (size !== this.committedOffset)
        throw new Error(`the segment is ${size} bytes after truncating to ${this.committedOffset}`);
      const reopened = await this.openLanes(file, LANE_FLAGS);
      this.lanes = reopened;
      this.idleLanes = [...reopened];
    } catch (error) {
      // Without lanes there was no segment of this process's to cut (the start found the disk full).
      if (lanes.length > 0) {
        this.options.log.error(
          "audit spool: the failed write could not be cut off its segment; that segment ends at its last commit and writing continues in a new one",
          { segment: this.currentSegmentNumber, committedBytes: this.committedOffset, error: errorText(error) },
        );
        this.abandonedEnds.set(this.currentSegmentNumber, this.committedOffset);
        // Nothing was committed to it: do not leave an empty file behind.
        if (this.committedOffset === 0) await fsp.rm(file, { force: true }).catch(() => undefined);
      }
    } finally {
      await Promise.all(lanes.map((lane) => lane.close().catch(() => undefined)));
      this.nextOffset = this.committedOffset;
      this.failure = undefined;
    }
  }

  private startOutage(error: unknown): Outage {
    if (this.outage) return this.outage;
    const nowMs = Date.now();
    // A disk that fails again soon after recovering keeps the longer delay instead of being hammered.
    const retryMs = nowMs - this.outageEndedAtMs < 5000 ? this.lastRetryMs : OUTAGE_RETRY_MIN_MS;
    const outage: Outage = {
      sinceMs: nowMs,
      error: new SpoolUnavailableError(error),
      refused: 0,
      retryMs,
      reportedAtMs: nowMs,
    };
    this.outage = outage;
    this.options.log.error(
      "audit spool cannot write; every decision is refused (503) until it can, retrying in the background",
      { error: errorText(error), segment: this.currentSegmentNumber, dir: this.options.dir },
    );
    this.scheduleProbe(outage);
    return outage;
  }

  private scheduleProbe(outage: Outage): void {
    if (this.closing) return;
    outage.timer = setTimeout(() => void this.probe(outage), outage.retryMs);
    // The probe alone must not keep a stopping process alive.
    outage.timer.unref();
  }

  /** Writes and fsyncs a scratch file (and opens a segment if there is none); success ends the outage. */
  private async probe(outage: Outage): Promise<void> {
    if (this.closing || this.outage !== outage) return;
    const file = path.join(this.options.dir, PROBE_FILE);
    try {
      await this.whenIdle();
      const handle = await fsp.open(file, "w", 0o600);
      try {
        await handle.write(Buffer.alloc(PROBE_BYTES, 0x20));
        await handle.datasync();
      } finally {
        await handle.close();
        await fsp.rm(file, { force: true });
      }
      if (this.lanes.length === 0) await this.openNextSegment();
    } catch (error) {
      const nowMs = Date.now();
      if (nowMs - outage.reportedAtMs >= OUTAGE_REPORT_EVERY_MS) {
        outage.reportedAtMs = nowMs;
        this.options.log.warn("audit spool still cannot write; decisions are still refused", {
          error: errorText(error),
          sinceMs: nowMs - outage.sinceMs,
          refused: outage.refused,
        });
      }
      outage.retryMs = Math.min(OUTAGE_RETRY_MAX_MS, outage.retryMs * 2);
      this.scheduleProbe(outage);
      return;
    }
    this.outage = undefined;
    this.outageEndedAtMs = Date.now();
    this.lastRetryMs = outage.retryMs;
    this.options.log.info("audit spool writable again; decisions are recorded and answered", {
      downMs: this.outageEndedAtMs - outage.sinceMs,
      refused: outage.refused,
      segment: this.currentSegmentNumber,
    });
  }

  private segmentPath(segment: number): string {
    return path.join(this.options.dir, segmentFileName(segment));
  }

  /** The first lane with `firstFlags` (creating the file), the others on the same file. */
  private async openLanes(file: string, firstFlags: number): Promise<FileHandle[]> {
    const lanes: FileHandle[] = [];
    try {
      lanes.push(await fsp.open(file, firstFlags, 0o600));
      while (lanes.length < this.commitsInFlight) lanes.push(await fsp.open(file, LANE_FLAGS));
      return lanes;
    } catch (error) {
      await Promise.all(lanes.map((lane) => lane.close().catch(() => undefined)));
      throw error;
    }
  }

  private async openNextSegment(): Promise<void> {
    const segment = this.currentSegmentNumber + 1;
    const file = this.segmentPath(segment);
    // O_EXCL: never reuse a file that exists. Writes are positional: each batch knows its offset.
    const lanes = await this.openLanes(file, LANE_FLAGS | fsConstants.O_CREAT | fsConstants.O_EXCL);
    try {
      await fsyncDirectory(this.options.dir);
    } catch (error) {
      // Not left behind: the next attempt creates the same name again.
      await Promise.all(lanes.map((lane) => lane.close().catch(() => undefined)));
      await fsp.rm(file, { force: true }).catch(() => undefined);
      throw error;
    }
    const previous = this.lanes;
    this.lanes = lanes;
    this.idleLanes = [...lanes];
    this.currentSegmentNumber = segment;
    this.committedOffset = 0;
    this.nextOffset = 0;
    await Promise.all(previous.map((lane) => lane.close().catch(() => undefined)));
  }

  /** Starts the next segment; on failure keeps writing to the current one and tries again a second later. */
  private async rotate(): Promise<void> {
    try {
      await this.openNextSegment();
    } catch (error) {
      this.rotateRetryAtMs = Date.now() + ROTATE_RETRY_MS;
      if (!this.rotateFailing)
        this.options.log.error(
          "audit spool rotation failed; writing on in the current segment and retrying every second",
          { error: errorText(error), segment: this.currentSegmentNumber },
        );
      this.rotateFailing = true;
      return;
    }
    if (this.rotateFailing)
      this.options.log.info("audit spool rotation works again", { segment: this.currentSegmentNumber });
    this.rotateFailing = false;
    await this.applyRetention().catch((error: unknown) =>
      this.options.log.warn("audit spool retention failed; will retry at the next rotation", {
        error: errorText(error),
      }),
    );
  }

  /** Segment numbers on disk, oldest first. */
  async listSegments(): Promise<number[]> {
    const names = await fsp.readdir(this.options.dir);
    return names
      .map((name) => SEGMENT_PATTERN.exec(name)?.[1])
      .filter((n): n is string => n !== undefined)
      .map(Number)
      .sort((a, b) => a - b);
  }

  /** Deletes the oldest segments beyond keepSegments, never the current one nor (with a database) an unshipped one. */
  private async applyRetention(): Promise<void> {
    const segments = await this.listSegments();
    const shippedBefore = this.options.retainUnshipped ? (this.checkpoint?.segment ?? 0) : Number.POSITIVE_INFINITY;
    let remaining = segments.length;
    for (const segment of segments) {
      if (remaining <= this.options.keepSegments) break;
      if (segment === this.currentSegmentNumber || segment >= shippedBefore) break;
      await fsp.rm(this.segmentPath(segment), { force: true });
      remaining -= 1;
      this.options.log.info("audit spool segment deleted by retention", { segment });
    }
  }

  // ---- reading and the shipping checkpoint ----------------------------------------------------

  /**
   * The saved checkpoint, or undefined when there is none or it cannot be trusted. Losing it only
   * costs a replay from the oldest segment, which the database's primary key absorbs; refusing
   * to start would refuse every request. So a bad one is logged and ignored, never fatal.
   */
  private async readCheckpointFile(): Promise<SpoolPosition | undefined> {
    const file = path.join(this.options.dir, CHECKPOINT_FILE);
    let text: string;
    try {
      text = await fsp.readFile(file, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      this.checkpointUnusable(`it cannot be read (${errorText(error)})`);
      return undefined;
    }
    const problem = checkpointProblem(text);
    if (problem !== undefined) {
      this.checkpointUnusable(problem, text);
      return undefined;
    }
    const { segment, offset } = JSON.parse(text) as SpoolPosition;
    return { segment, offset };
  }

  private checkpointUnusable(problem: string, text?: string): void {
    this.options.log.error(
      `audit spool checkpoint ${CHECKPOINT_FILE} is unusable: ${problem}; shipping replays from the oldest segment (rows already in the database are skipped by their primary key)`,
      {
        file: path.join(this.options.dir, CHECKPOINT_FILE),
        ...(text === undefined ? {} : { bytes: Buffer.byteLength(text), sample: preview(text) }),
      },
    );
  }

  /** Where shipping resumes: the saved checkpoint, else the start of the oldest segment. */
  async shippingStart(): Promise<SpoolPosition> {
    const segments = await this.listSegments();
    const oldest = { segment: segments[0] ?? this.currentSegmentNumber, offset: 0 };
    const saved = this.checkpoint;
    if (!saved) return oldest;
    // A checkpoint ahead of the spool means the directory was replaced: ship what is there.
    if (saved.segment > this.currentSegmentNumber) {
      this.checkpointUnusable(
        `it points at segment ${saved.segment}, after the newest one (${this.currentSegmentNumber})`,
      );
      return oldest;
    }
    if (saved.segment < oldest.segment) return oldest;
    // Resuming anywhere but at the start of a line would skip a decision.
    const boundaryProblem = await this.lineBoundaryProblem(saved);
    if (boundaryProblem !== undefined) {
      this.checkpointUnusable(boundaryProblem);
      return oldest;
    }
    return saved;
  }

  /** Why `position` is not the start of a line in its segment, or undefined when it is. */
  private async lineBoundaryProblem(position: SpoolPosition): Promise<string | undefined> {
    if (position.offset === 0) return undefined;
    const end = await this.readableEnd(position.segment);
    // A deleted segment (retention) is simply behind us: reading moves on to the next one.
    if (end === undefined) return undefined;
    if (position.offset > end)
      return `offset ${position.offset} is past the end of segment ${position.segment} (${end} bytes)`;
    const byte = Buffer.alloc(1);
    const handle = await fsp.open(this.segmentPath(position.segment), "r");
    try {
      await handle.read(byte, 0, 1, position.offset - 1);
    } finally {
      await handle.close();
    }
    return byte[0] === NEWLINE
      ? undefined
      : `offset ${position.offset} in segment ${position.segment} is inside a line`;
  }

  /** Records that everything before `position` is in the database (atomic replace, fsync'ed). */
  async saveCheckpoint(position: SpoolPosition): Promise<void> {
    const file = path.join(this.options.dir, CHECKPOINT_FILE);
    const temporary = `${file}.tmp`;
    const handle = await fsp.open(temporary, "w", 0o600);
    try {
      await handle.writeFile(JSON.stringify(position));
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fsp.rename(temporary, file);
    await fsyncDirectory(this.options.dir);
    const segmentChanged = this.checkpoint?.segment !== position.segment;
    this.checkpoint = position;
    if (segmentChanged) await this.applyRetention();
  }

  /** Bytes committed after `from` (for /healthz: what the database does not have yet). */
  async bytesAfter(from: SpoolPosition): Promise<number> {
    let total = 0;
    for (const segment of await this.listSegments()) {
      if (segment < from.segment) continue;
      const end = await this.readableEnd(segment);
      total += Math.max(0, (end ?? 0) - (segment === from.segment ? from.offset : 0));
    }
    return total;
  }

  /** How far a reader may read in a segment: the commit point of the current one, the size of a closed one. */
  private async readableEnd(segment: number): Promise<number | undefined> {
    if (segment === this.currentSegmentNumber) return this.committedOffset;
    const abandonedEnd = this.abandonedEnds.get(segment);
    if (abandonedEnd !== undefined) return abandonedEnd;
    try {
      return (await fsp.stat(this.segmentPath(segment))).size;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw error;
    }
  }

  /** Up to `maxLines` committed decision lines from `from` on, crossing into later segments as needed. */
  async readBatch(from: SpoolPosition, maxLines: number): Promise<SpoolBatch> {
    const lines: string[] = [];
    let skippedLines = 0;
    let position = from;
    // Listed once per batch, not once per finished segment: many small or empty segments stay cheap.
    let later: number[] | undefined;
    while (lines.length < maxLines) {
      const end = await this.readableEnd(position.segment);
      if (end === undefined || position.offset >= end) {
        // A closed segment is finished; the current one may still grow.
        if (position.segment >= this.currentSegmentNumber) break;
        const after = position.segment;
        later ??= (await this.listSegments()).filter((s) => s > after);
        while (later.length > 0 && later[0] <= after) later.shift();
        const next = later.shift();
        if (next === undefined) break;
        position = { segment: next, offset: 0 };
        continue;
      }
      const length = Math.min(READ_CHUNK_BYTES, end - position.offset);
      const chunk = Buffer.allocUnsafe(length);
      const { bytesRead } = await (await this.readerFor(position.segment)).read(chunk, 0, length, position.offset);
      let lineStart = 0;
      while (lines.length < maxLines) {
        const newline = chunk.indexOf(NEWLINE, lineStart);
        if (newline < 0 || newline >= bytesRead) break;
        if (looksLikeDecisionLine(chunk, lineStart, newline)) lines.push(chunk.toString("utf8", lineStart, newline));
        else skippedLines += 1;
        lineStart = newline + 1;
      }
      if (lineStart === 0) {
        // No complete line in the chunk: a torn tail of a closed segment (crash mid-write), or a
        // line longer than a chunk (corruption). Neither was ever acknowledged; skip past it.
        skippedLines += 1;
        const skipTo = Math.min(position.offset + bytesRead, end);
        this.options.log.warn("audit spool: skipped bytes that are not a complete decision line", {
          segment: position.segment,
          offset: position.offset,
          bytes: skipTo - position.offset,
        });
        position = { segment: position.segment, offset: skipTo };
        continue;
      }
      position = { segment: position.segment, offset: position.offset + lineStart };
    }
    if (skippedLines > 0)
      this.options.log.warn("audit spool: lines skipped while reading", { skippedLines, segment: position.segment });
    return { lines, next: position, skippedLines };
  }

  /**
   * The reader's handle on `segment`, kept open between batches (the shipper reads the current
   * segment many times a second); the previous segment's is closed when reading moves on.
   */
  private async readerFor(segment: number): Promise<FileHandle> {
    if (this.reader?.segment === segment) return this.reader.handle;
    const previous = this.reader;
    this.reader = undefined;
    await previous?.handle.close().catch(() => undefined);
    const handle = await fsp.open(this.segmentPath(segment), "r");
    this.reader = { segment, handle };
    return handle;
  }

  /** Waits for pending appends, then closes the current segment. */
  async close(): Promise<void> {
    this.closing = true;
    clearTimeout(this.outage?.timer);
    clearTimeout(this.stallTimer);
    this.stallTimer = undefined;
    while (
      this.pendingLines.length > 0 ||
      this.inFlight.length > 0 ||
      this.running > 0 ||
      this.recovery ||
      this.rotation
    ) {
      this.pump();
      await this.whenIdle();
      if (
        this.pendingLines.length > 0 &&
        this.idleLanes.length === 0 &&
        this.running === 0 &&
        !this.recovery &&
        !this.rotation
      ) {
        // Nowhere to write them (the segment could not be reopened): refuse rather than wait forever.
        const refused = this.pendingWaiters;
        this.pendingLines = [];
        this.pendingWaiters = [];
        for (const waiter of refused) waiter.reject(new Error("the audit spool is closed"));
      }
    }
    this.closed = true;
    await this.reader?.handle.close().catch(() => undefined);
    this.reader = undefined;
    const lanes = this.lanes;
    this.lanes = [];
    this.idleLanes = [];
    await Promise.all(lanes.map((lane) => lane.close()));
  }
}
