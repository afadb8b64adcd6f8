/** Structured log lines (one JSON object per line), what Docker's log driver and Loki expect. */
export type LogFields = Readonly<Record<string, unknown>>;

export interface Logger {
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
}

function write(stream: NodeJS.WriteStream, level: string, message: string, fields?: LogFields): void {
  stream.write(`${JSON.stringify({ time: new Date().toISOString(), level, msg: message, ...fields })}\n`);
}

export const jsonLogger: Logger = {
  info: (message, fields) => write(process.stdout, "info", message, fields),
  warn: (message, fields) => write(process.stderr, "warn", message, fields),
  error: (message, fields) => write(process.stderr, "error", message, fields),
};

export const silentLogger: Logger = { info: () => {}, warn: () => {}, error: () => {} };

/** An error's message, whatever was thrown. */
export const errorText = (error: unknown): string =>
  error instanceof Error ? error.message || error.name : String(error);
