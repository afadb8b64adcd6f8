/** One JSON object per line on stdout/stderr: what Docker's log driver and Loki expect. */
export type LogFields = Readonly<Record<string, unknown>>;

export interface Logger {
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
}

const write = (stream: NodeJS.WriteStream, level: string, message: string, fields?: LogFields) =>
  stream.write(`${JSON.stringify({ time: new Date().toISOString(), level, msg: message, ...fields })}\n`);

export const jsonLogger: Logger = {
  info: (m, f) => write(process.stdout, "info", m, f),
  warn: (m, f) => write(process.stderr, "warn", m, f),
  error: (m, f) => write(process.stderr, "error", m, f),
};

/** Keeps lines in memory: tests read what the controller logged. */
export class MemoryLogger implements Logger {
  readonly lines: { level: string; msg: string; fields: LogFields }[] = [];
  info(msg: string, fields: LogFields = {}): void {
    this.lines.push({ level: "info", msg, fields });
  }
  warn(msg: string, fields: LogFields = {}): void {
    this.lines.push({ level: "warn", msg, fields });
  }
  error(msg: string, fields: LogFields = {}): void {
    this.lines.push({ level: "error", msg, fields });
  }
}

export const errorText = (error: unknown): string =>
  error instanceof Error ? error.message || error.name : String(error);
