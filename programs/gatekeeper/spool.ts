import { promises as fsp } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import * as path from "node:path";
import type { DecisionRecord } from "./decision";
import { isDecisionRecord } from "./decision";
import type { Logger } from "./log";
import { errorText } from "./log";

/**
 * The append-only audit spool on the node's persistent volume: numbered NDJSON segments
 * (decisions-000000000001.ndjson, ...), one decision per line, plus `shipped.json`, the durable
 * "shipped up to segment S, byte offset N" checkpoint of the database shipper.
 *
 * Durability: `append` resolves only once the line is written and fdatasync'ed. Appends that
 * arrive while one write+fsync is in flight are grouped into the next one (group commit), so
 * the fsync cost is shared and a decision is answered only after it is on disk.
 */

export interface SpoolOptions {
  readonly dir: string;
  /** A segment is closed and a new one started once it reaches this size. */
  readonly segmentBytes: number;
  /** Segments kept on disk (the current one included); older ones are deleted when allowed. */
  readonly keepSegments: number;
  /** With a database, a segment is deleted only once it has been shipped, whatever keepSegments says. */
  readonly retainUnshipped: boolean;
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
const CHECKPOINT_FILE = "shipped.json";
const READ_CHUNK_BYTES = 256 * 1024;
const NEWLINE = 0x0a;
const CLOSING_BRACE = 0x7d;
/** server.ts builds each record with decision_id first, and JSON.stringify keeps that order. */
const LINE_PREFIX = Buffer.from('{"decision_id":"');

/** A cheap plausibility check on raw bytes: the full check is the database's JSON parser and types. */
function looksLikeDecisionLine(buffer: Buffer, start: number, end: number): boolean {
  return end - start > LINE_PREFIX.length && buffer[end - 1] === CLOSING_BRACE && buffer.compare(LINE_PREFIX, 0, LINE_PREFIX.length, start, start + LINE_PREFIX.length) === 0;
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
  private handle: FileHandle | undefined;
  private currentSegmentNumber = 0;
  /** Bytes of the current segment that are written and fsync'ed. */
  private committedOffset = 0;
  private committedCount = 0;
  private pendingLines: string[] = [];
  private pendingWaiters: Waiter[] = [];
  private flushing: Promise<void> | undefined;
  private lastWriteFailed = false;
  private closed = false;
  private checkpoint: SpoolPosition | undefined;
  private readonly commitListeners: (() => void)[] = [];

  private constructor(private readonly options: SpoolOptions) {}

  /** Opens the spool: always in a fresh segment, so a torn tail from a crash is never appended to. */
  static async open(options: SpoolOptions): Promise<Spool> {
    await fsp.mkdir(options.dir, { recursive: true, mode: 0o700 });
    const spool = new Spool(options);
    const segments = await spool.listSegments();
    spool.currentSegmentNumber = segments.length ? segments[segments.length - 1] : 0;
    spool.checkpoint = await spool.readCheckpointFile();
    await spool.openNextSegment();
    await spool.applyRetention();
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

  /** False after a failed write, until a write succeeds again. */
  get writable(): boolean {
    return !this.closed && !this.lastWriteFailed;
  }

  onCommit(listener: () => void): void {
    this.commitListeners.push(listener);
  }

  /** Resolves once the decision is on disk (written and fdatasync'ed); rejects if it could not be. */
  append(record: DecisionRecord): Promise<void> {
    if (this.closed) return Promise.reject(new Error("the audit spool is closed"));
    return new Promise<void>((resolve, reject) => {
      this.pendingLines.push(`${JSON.stringify(record)}\n`);
      this.pendingWaiters.push({ resolve, reject });
      this.flushing ??= this.flushLoop();
    });
  }

  private async flushLoop(): Promise<void> {
    try {
      while (this.pendingLines.length > 0) {
        const lines = this.pendingLines;
        const waiters = this.pendingWaiters;
        this.pendingLines = [];
        this.pendingWaiters = [];
        try {
          await this.writeDurably(Buffer.from(lines.join(""), "utf8"));
        } catch (error) {
          this.lastWriteFailed = true;
          this.options.log.error("audit spool write failed; decisions are refused until it works again", { error: errorText(error), segment: this.currentSegmentNumber });
          for (const waiter of waiters) waiter.reject(error);
          await this.abandonSegment();
          continue;
        }
        this.lastWriteFailed = false;
        this.committedCount += lines.length;
        for (const waiter of waiters) waiter.resolve();
        for (const listener of this.commitListeners) listener();
        if (this.committedOffset >= this.options.segmentBytes) {
          await this.rotate().catch((error: unknown) => this.options.log.error("audit spool rotation failed; will retry", { error: errorText(error) }));
        }
      }
    } finally {
      this.flushing = undefined;
    }
  }

  private async writeDurably(data: Buffer): Promise<void> {
    if (!this.handle) await this.openNextSegment();
    const handle = this.handle as FileHandle;
    let written = 0;
    while (written < data.length) {
      const { bytesWritten } = await handle.write(data, written, data.length - written, null);
      written += bytesWritten;
    }
    await handle.datasync();
    this.committedOffset += data.length;
  }

  /**
   * After a failed write or fsync the segment's tail is unknown (and Linux may have dropped the
   * dirty pages): cut it back to the last commit and continue in a new segment.
   */
  private async abandonSegment(): Promise<void> {
    const handle = this.handle;
    this.handle = undefined;
    if (!handle) return;
    await handle.truncate(this.committedOffset).catch(() => undefined);
    await handle.close().catch(() => undefined);
  }

  private async openNextSegment(): Promise<void> {
    const segment = this.currentSegmentNumber + 1;
    // "ax": never reuse a file that exists; O_APPEND keeps every write at the end.
    const handle = await fsp.open(path.join(this.options.dir, segmentFileName(segment)), "ax", 0o600);
    try {
      await fsyncDirectory(this.options.dir);
    } catch (error) {
      await handle.close();
      throw error;
    }
    this.handle = handle;
    this.currentSegmentNumber = segment;
    this.committedOffset = 0;
  }

  private async rotate(): Promise<void> {
    const previous = this.handle;
    await this.openNextSegment();
    await previous?.close();
    await this.applyRetention();
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
      await fsp.rm(path.join(this.options.dir, segmentFileName(segment)), { force: true });
      remaining -= 1;
      this.options.log.info("audit spool segment deleted by retention", { segment });
    }
  }

  // ---- reading and the shipping checkpoint ----------------------------------------------------

  private async readCheckpointFile(): Promise<SpoolPosition | undefined> {
    let text: string;
    try {
      text = await fsp.readFile(path.join(this.options.dir, CHECKPOINT_FILE), "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw error;
    }
    const parsed = JSON.parse(text) as Partial<SpoolPosition>;
    if (!Number.isSafeInteger(parsed.segment) || !Number.isSafeInteger(parsed.offset)) throw new Error(`${CHECKPOINT_FILE} in ${this.options.dir} is not {segment, offset}: ${text.slice(0, 200)}`);
    return { segment: parsed.segment as number, offset: parsed.offset as number };
  }

  /** Where shipping resumes: the saved checkpoint, else the start of the oldest segment. */
  async shippingStart(): Promise<SpoolPosition> {
    const segments = await this.listSegments();
    const oldest = { segment: segments[0] ?? this.currentSegmentNumber, offset: 0 };
    const saved = this.checkpoint;
    // A checkpoint ahead of the spool means the directory was replaced: ship what is there.
    if (!saved || saved.segment > this.currentSegmentNumber) return oldest;
    return saved.segment < oldest.segment ? oldest : saved;
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
    try {
      return (await fsp.stat(path.join(this.options.dir, segmentFileName(segment)))).size;
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
    while (lines.length < maxLines) {
      const end = await this.readableEnd(position.segment);
      if (end === undefined || position.offset >= end) {
        // A closed segment is finished; the current one may still grow.
        if (position.segment >= this.currentSegmentNumber) break;
        const later = (await this.listSegments()).find((s) => s > position.segment);
        if (later === undefined) break;
        position = { segment: later, offset: 0 };
        continue;
      }
      const length = Math.min(READ_CHUNK_BYTES, end - position.offset);
      const chunk = Buffer.alloc(length);
      const handle = await fsp.open(path.join(this.options.dir, segmentFileName(position.segment)), "r");
      let bytesRead: number;
      try {
        ({ bytesRead } = await handle.read(chunk, 0, length, position.offset));
      } finally {
        await handle.close();
      }
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
        const skipTo = position.offset + bytesRead >= end ? end : position.offset + bytesRead;
        this.options.log.warn("audit spool: skipped bytes that are not a complete decision line", { segment: position.segment, offset: position.offset, bytes: skipTo - position.offset });
        position = { segment: position.segment, offset: skipTo };
        continue;
      }
      position = { segment: position.segment, offset: position.offset + lineStart };
    }
    if (skippedLines > 0) this.options.log.warn("audit spool: lines skipped while reading", { skippedLines, segment: position.segment });
    return { lines, next: position, skippedLines };
  }

  /** Waits for pending appends, then closes the current segment. */
  async close(): Promise<void> {
    while (this.flushing) await this.flushing;
    this.closed = true;
    const handle = this.handle;
    this.handle = undefined;
    await handle?.close();
  }
}
