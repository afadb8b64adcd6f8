import { watch, type FSWatcher } from "node:fs";
import { readFile } from "node:fs/promises";
import * as path from "node:path";
import { KeyStore, KeysFileError, type KeysFile, parseKeysFile } from "./keys";
import type { Logger } from "./log";
import { errorText } from "./log";

/**
 * The keys file, kept loaded: a change on disk builds a new KeyStore and swaps one reference, so
 * requests in flight finish with the store they started with and none is dropped. A file that
 * does not parse (or a half-written one) leaves the previous keys in force and logs why.
 */

export type ReloadOutcome = "loaded" | "unchanged" | "invalid";

export interface KeySourceStatus {
  readonly loaded: boolean;
  readonly count: number;
  readonly loadedAt: string | null;
  /** Why the file on disk is not the one in force; null when it is. */
  readonly error: string | null;
}

export class KeyFileSource {
  private store: KeyStore | undefined;
  private activeFile: KeysFile | undefined;
  private activeText: string | undefined;
  private rejectedText: string | undefined;
  private loadedAt: string | null = null;
  private error: string | null = null;
  private queue: Promise<ReloadOutcome> = Promise.resolve("unchanged");
  private watcher: FSWatcher | undefined;
  private poll: NodeJS.Timeout | undefined;
  private debounce: NodeJS.Timeout | undefined;

  constructor(
    readonly file: string,
    private readonly log: Logger,
    private readonly onLoaded: (store: KeyStore, file: KeysFile) => void = () => {},
  ) {}

  /** The keys in force, undefined until a valid file was read once. */
  get current(): KeyStore | undefined {
    return this.store;
  }

  /** The file in force, parsed. */
  get parsed(): KeysFile | undefined {
    return this.activeFile;
  }

  status(): KeySourceStatus {
    return {
      loaded: this.store !== undefined,
      count: this.store?.size ?? 0,
      loadedAt: this.loadedAt,
      error: this.error,
    };
  }

  /** Reads the file again; reloads run one at a time, in order. */
  reload(): Promise<ReloadOutcome> {
    this.queue = this.queue.then(
      () => this.reloadNow(),
      () => this.reloadNow(),
    );
    return this.queue;
  }

  private async reloadNow(): Promise<ReloadOutcome> {
    let text: string;
    try {
      text = await readFile(this.file, "utf8");
    } catch (error) {
      return this.reject(`cannot read ${this.file}: ${errorText(error)}`, `\0read-error:${errorText(error)}`);
    }
    if (text === this.activeText) {
      this.error = null;
      this.rejectedText = undefined;
      return "unchanged";
    }
    let store: KeyStore;
    let file: KeysFile;
    try {
      file = parseKeysFile(text);
      store = new KeyStore(file);
    } catch (error) {
      const message = error instanceof KeysFileError ? error.message : errorText(error);
      return this.reject(message, text);
    }
    this.store = store;
    this.activeFile = file;
    this.activeText = text;
    this.rejectedText = undefined;
    this.error = null;
    this.loadedAt = new Date().toISOString();
    this.onLoaded(store, file);
    this.log.info("keys loaded", { file: this.file, keys: store.size });
    return "loaded";
  }

  private reject(message: string, fingerprint: string): ReloadOutcome {
    this.error = message;
    // Logged once per bad version of the file, not on every poll.
    if (fingerprint !== this.rejectedText) {
      this.rejectedText = fingerprint;
      this.log.error(
        this.store
          ? "keys file rejected; the previous keys stay in force"
          : "keys file rejected; no keys are loaded, every request is refused",
        { file: this.file, error: message },
      );
    }
    return "invalid";
  }

  /**
   * Watches the file's directory (an editor or `mv` replaces the file, which a watch on the file
   * itself would miss) and polls as a fallback where inotify events do not arrive (some bind
   * mounts, network filesystems). Both only trigger a read; unchanged content is a no-op.
   */
  watch(pollMs = 1000): void {
    const schedule = () => {
      clearTimeout(this.debounce);
      this.debounce = setTimeout(() => void this.reload(), 25);
    };
    try {
      const name = path.basename(this.file);
      this.watcher = watch(path.dirname(this.file), (_event, changed) => {
        if (!changed || changed === name) schedule();
      });
      this.watcher.on("error", (error) =>
        this.log.warn("keys directory watch failed; polling only", { error: errorText(error) }),
      );
    } catch (error) {
      this.log.warn("keys directory cannot be watched; polling only", { error: errorText(error) });
    }
    this.poll = setInterval(schedule, pollMs);
    this.poll.unref();
  }

  close(): void {
    this.watcher?.close();
    clearInterval(this.poll);
    clearTimeout(this.debounce);
  }
}
