import { createPrivateKey, X509Certificate } from "node:crypto";
import { LIMIT_MAXIMUMS } from "./protocol";
import { DEFAULT_COMMITS_IN_FLIGHT } from "./spool";
import { type StatusContext, statusContextSchema } from "./status";
import type { TlsSettings } from "./tls-listener";

/** Each commit in flight holds one of libuv's threads for its fdatasync (main.ts sizes the pool). */
export const MAX_COMMITS_IN_FLIGHT = 16;

/**
 * The gatekeeper's settings, all from the environment (the deployment sets them). Every problem
 * is reported at once, naming the variable and what would be valid.
 */

export interface GatekeeperConfig {
  /** GATEKEEPER_PORT. @default 8080 */
  readonly port: number;
  /** GATEKEEPER_HOST. @default "0.0.0.0" (the container's network; the port is not published) */
  readonly host: string;
  /** GATEKEEPER_KEYS_FILE: the keys JSON, watched and reloaded on change. */
  readonly keysFile: string;
  /** GATEKEEPER_SPOOL_DIR: the audit spool, on the node's persistent volume. */
  readonly spoolDir: string;
  /**
   * GATEKEEPER_STATE_DIR: runtime keys and their usage when there is no database (and the
   * database's cache when there is one), on the node's persistent volume; no deploy writes it.
   * @default - none: without a database either, keys can only be declared (apiKeys)
   */
  readonly stateDir?: string;
  /** GATEKEEPER_GATEWAY_METRICS_URL: Traefik's metrics, for /admin/status. @default - the status reports the gateway as unread */
  readonly gatewayMetricsUrl?: string;
  /** GATEKEEPER_CONTROLLER_URL: the autoscaling controller's status, for /admin/status. @default - the stack runs no controller */
  readonly controllerUrl?: string;
  /** GATEKEEPER_STATUS_CONTEXT: what the deploy knows (tier, budget, GPU nodes; status.ts). @default - none */
  readonly statusContext?: StatusContext;
  /** DATABASE_URL: PostgreSQL for the audit table. @default - none: the spool alone is the log */
  readonly databaseUrl?: string;
  /** GATEKEEPER_BACKEND_KEY: the internal key the backends expect, sent to Traefik on allowed requests. */
  readonly backendKey: string;
  /** GATEKEEPER_DEFAULT_RATE_PER_MINUTE, for keys without their own. @default 120 (the hub's rateLimitPerMinute preset) */
  readonly defaultRatePerMinute: number;
  /** GATEKEEPER_DEFAULT_BURST. @default 30 (the hub's rateLimitBurst preset) */
  readonly defaultBurst: number;
  /** GATEKEEPER_ADDRESS_RATE_PER_MINUTE: per client address, across all keys (address-limit.ts). @default 1200 (ten keys' worth of the preset) */
  readonly addressRatePerMinute: number;
  /** GATEKEEPER_ADDRESS_BURST. @default 300 */
  readonly addressBurst: number;
  /** GATEKEEPER_FORWARDED_HOPS: loopback proxies between Traefik's forwardAuth and the gatekeeper, each appending its peer to X-Forwarded-For. @default 0 */
  readonly forwardedHops: number;
  /** GATEKEEPER_ADDRESS_TABLE_SIZE: most client addresses tracked at once; the least recently seen is evicted beyond it. @default 65536 */
  readonly addressTableSize: number;
  /** GATEKEEPER_SPOOL_SEGMENT_BYTES: a spool segment is closed at this size. @default 64 MiB */
  readonly spoolSegmentBytes: number;
  /** GATEKEEPER_SPOOL_KEEP_SEGMENTS: segments kept (unshipped ones are always kept when a database is set). @default 16 */
  readonly spoolKeepSegments: number;
  /** GATEKEEPER_SPOOL_COMMITS_IN_FLIGHT: group commits (write + fdatasync) running at once. @default 4 */
  readonly spoolCommitsInFlight: number;
  /** GATEKEEPER_AUDIT_BATCH_ROWS. @default 500 */
  readonly auditBatchRows: number;
  /** GATEKEEPER_AUDIT_BATCH_DELAY_MS. @default 200 */
  readonly auditBatchDelayMs: number;
  /**
   * GATEKEEPER_TLS_CERT and GATEKEEPER_TLS_KEY (PEM), GATEKEEPER_TLS_PORT: the HTTP/2-over-TLS
   * listener Traefik's forwardAuth uses (tls-listener.ts).
   * @default - none: the plain port alone
   */
  readonly tls?: TlsSettings;
}

export class GatekeeperConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`The gatekeeper's environment is incomplete:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.name = "GatekeeperConfigError";
  }
}

type Env = Readonly<Record<string, string | undefined>>;

export function readGatekeeperConfig(env: Env = process.env): GatekeeperConfig {
  const problems: string[] = [];
  const text = (name: string): string | undefined => {
    const value = env[name]?.trim();
    return value ? value : undefined;
  };
  const required = (name: string, what: string): string => {
    const value = text(name);
    if (value === undefined) problems.push(`${name} is not set: ${what}`);
    return value ?? "";
  };
  const integer = (name: string, fallback: number, min: number, max: number): number => {
    const raw = text(name);
    if (raw === undefined) return fallback;
    const value = Number(raw);
    if (!Number.isInteger(value) || value < min || value > max)
      problems.push(`${name}=${raw} is not valid; use a whole number from ${min} to ${max}`);
    return value;
  };
  const rate = (name: string, fallback: number, max: number): number => {
    const raw = text(name);
    if (raw === undefined) return fallback;
    const value = Number(raw);
    if (!Number.isFinite(value) || value <= 0 || value > max)
      problems.push(`${name}=${raw} is not valid; use a positive number of requests per minute, at most ${max}`);
    return value;
  };

  const databaseUrl = text("DATABASE_URL");
  if (databaseUrl !== undefined && !/^postgres(ql)?:\/\//.test(databaseUrl))
    problems.push(
      "DATABASE_URL must be a postgres:// or postgresql:// URL (or unset, to keep the audit log in the spool only)",
    );
  const backendKey = required(
    "GATEKEEPER_BACKEND_KEY",
    "the internal API key the backends expect (the hub's hubApiKey secret)",
  );
  if (/[\r\n]/.test(backendKey))
    problems.push("GATEKEEPER_BACKEND_KEY contains a line break, which cannot go into a header");

  const url = (name: string): string | undefined => {
    const value = text(name);
    if (value !== undefined && !/^https?:\/\/[^\s]+$/.test(value))
      problems.push(`${name}=${value} is not an http:// or https:// URL`);
    return value;
  };
  let statusContext: StatusContext | undefined;
  const contextText = text("GATEKEEPER_STATUS_CONTEXT");
  if (contextText !== undefined) {
    let parsedContext: ReturnType<typeof statusContextSchema.safeParse> | undefined;
    try {
      parsedContext = statusContextSchema.safeParse(JSON.parse(contextText));
    } catch {
      problems.push("GATEKEEPER_STATUS_CONTEXT is not JSON");
    }
    if (parsedContext?.success) statusContext = parsedContext.data;
    else if (parsedContext)
      problems.push(
        `GATEKEEPER_STATUS_CONTEXT: ${parsedContext.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`,
      );
  }

  const config: GatekeeperConfig = {
    port: integer("GATEKEEPER_PORT", 8080, 1, 65535),
    host: text("GATEKEEPER_HOST") ?? "0.0.0.0",
    keysFile: required("GATEKEEPER_KEYS_FILE", "the path of the keys JSON file (see programs/gatekeeper/README.md)"),
    spoolDir: required("GATEKEEPER_SPOOL_DIR", "a directory on the node's persistent volume for the audit spool"),
    stateDir: text("GATEKEEPER_STATE_DIR"),
    gatewayMetricsUrl: url("GATEKEEPER_GATEWAY_METRICS_URL"),
    controllerUrl: url("GATEKEEPER_CONTROLLER_URL"),
    statusContext,
    databaseUrl,
    backendKey,
    defaultRatePerMinute: rate("GATEKEEPER_DEFAULT_RATE_PER_MINUTE", 120, LIMIT_MAXIMUMS.keyRatePerMinute),
    defaultBurst: integer("GATEKEEPER_DEFAULT_BURST", 30, 1, LIMIT_MAXIMUMS.keyBurst),
    addressRatePerMinute: rate("GATEKEEPER_ADDRESS_RATE_PER_MINUTE", 1200, LIMIT_MAXIMUMS.addressRatePerMinute),
    addressBurst: integer("GATEKEEPER_ADDRESS_BURST", 300, 1, LIMIT_MAXIMUMS.addressBurst),
    forwardedHops: integer("GATEKEEPER_FORWARDED_HOPS", 0, 0, 8),
    // About 150 bytes a bucket: 64 Ki addresses are about 10 MB of the container's 256 MiB.
    addressTableSize: integer("GATEKEEPER_ADDRESS_TABLE_SIZE", 65_536, 1, 1_048_576),
    spoolSegmentBytes: integer("GATEKEEPER_SPOOL_SEGMENT_BYTES", 64 * 1024 * 1024, 4096, 2 ** 40),
    spoolKeepSegments: integer("GATEKEEPER_SPOOL_KEEP_SEGMENTS", 16, 1, 1_000_000),
    spoolCommitsInFlight: integer(
      "GATEKEEPER_SPOOL_COMMITS_IN_FLIGHT",
      DEFAULT_COMMITS_IN_FLIGHT,
      1,
      MAX_COMMITS_IN_FLIGHT,
    ),
    auditBatchRows: integer("GATEKEEPER_AUDIT_BATCH_ROWS", 500, 1, 5000),
    auditBatchDelayMs: integer("GATEKEEPER_AUDIT_BATCH_DELAY_MS", 200, 0, 60_000),
  };
  const tls = tlsSettings(
    text("GATEKEEPER_TLS_CERT"),
    text("GATEKEEPER_TLS_KEY"),
    integer("GATEKEEPER_TLS_PORT", DEFAULT_TLS_PORT, 1, 65535),
    problems,
  );
  if (problems.length) throw new GatekeeperConfigError(problems);
  return tls ? { ...config, tls } : config;
}

export const DEFAULT_TLS_PORT = 8443;

/** The TLS listener's settings: both PEMs or neither, a key that is the certificate's, a certificate in date. Never quotes the key. */
function tlsSettings(
  cert: string | undefined,
  key: string | undefined,
  port: number,
  problems: string[],
): TlsSettings | undefined {
  if (cert === undefined && key === undefined) return undefined;
  if (cert === undefined || key === undefined) {
    problems.push(
      `${cert === undefined ? "GATEKEEPER_TLS_CERT" : "GATEKEEPER_TLS_KEY"} is not set, but ${cert === undefined ? "GATEKEEPER_TLS_KEY" : "GATEKEEPER_TLS_CERT"} is: set both (PEM) for the forwardAuth port, or neither`,
    );
    return undefined;
  }
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(cert);
  } catch (error) {
    problems.push(`GATEKEEPER_TLS_CERT is not a PEM certificate (${(error as Error).message})`);
    return undefined;
  }
  try {
    if (!certificate.checkPrivateKey(createPrivateKey(key)))
      problems.push("GATEKEEPER_TLS_KEY is not the private key of GATEKEEPER_TLS_CERT: deploy the pair together");
  } catch {
    problems.push("GATEKEEPER_TLS_KEY is not a PEM private key");
  }
  const validTo = Date.parse(certificate.validTo);
  if (validTo < Date.now())
    problems.push(
      `GATEKEEPER_TLS_CERT expired on ${certificate.validTo}: Traefik would refuse it; \`pulumi up\` renews it`,
    );
  return { cert, key, port };
}
