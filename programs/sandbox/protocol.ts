import { z } from "zod";

/**
 * The sandbox's contract: the public API (what agents send and get back), the hop from the front
 * on the gateway node to the API on the sandbox node, and the execution report the front gives the
 * gatekeeper's audit log. services/ and infra/ import this file, never the servers.
 *
 * Shape: Piston's and Judge0's fields, which code-running clients know
 * ({language, files, stdin, args, limits} → {stdout, stderr, exit_code, signal, ...}).
 */

/** The API key scope executions need (programs/gatekeeper/protocol.ts SCOPES). */
export const SANDBOX_SCOPE = "sandbox";

export const SANDBOX_PATHS = {
  executions: "/v1/sandbox/executions",
  languages: "/v1/sandbox/languages",
  sessions: "/v1/sandbox/sessions",
} as const;
export const SANDBOX_PATH_PREFIX = "/v1/sandbox/";
export const SANDBOX_HEALTH_PATH = "/healthz";

/** The API on the sandbox node's private address (the firewall admits only the gateway node). */
export const SANDBOX_NODE_PORT = 8090;
/** The front, a container on the gateway node's Docker network (never published). */
export const SANDBOX_FRONT_PORT = 8080;

/** Set by the gatekeeper on allowed requests (forwardAuth authResponseHeaders); the front passes them on. */
export const KEY_ID_HEADER = "x-hub-key-id";
export const REQUEST_ID_HEADER = "x-request-id";

/**
 * The key's own sandbox ceiling (the keys file's `sandboxLimits`), as compact JSON: the gatekeeper
 * sets it on allowed sandbox requests, Traefik copies it (forwardAuth authResponseHeaders, which
 * also removes a client's own), the front passes it on, the node applies it under its own ceiling.
 */
export const KEY_LIMITS_HEADER = "x-hub-sandbox-limits";

/** Largest request body, bytes: files, stdin and arguments together. */
export const MAX_REQUEST_BYTES = 2 * 1024 * 1024;

export const LIMIT_NAMES = ["wall_ms", "cpu_ms", "memory_bytes", "processes", "output_bytes", "scratch_bytes"] as const;
export type LimitName = (typeof LIMIT_NAMES)[number];
export type Limits = { readonly [K in LimitName]: number };

/** What stopped a run early: each is a limit of the same name (processes: the run was at its process limit when stopped). */
export const LIMITS_HIT = ["wall", "cpu", "memory", "output", "processes"] as const;
export type LimitHit = (typeof LIMITS_HIT)[number];

const FILE_NAME = /^(?!.*(^|\/)\.\.?(\/|$))[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/;

export const sourceFileSchema = z
  .object({
    name: z
      .string()
      .max(128)
      .regex(FILE_NAME, "must be a relative path of letters, digits, '.', '_', '-' and '/' (no '..')")
      .optional(),
    content: z.string(),
    encoding: z.enum(["utf8", "base64"]).optional(),
  })
  .strict();

const limitValue = z.number().int().positive();
/** Some or all of the limits, each a positive whole number (a request's, or a key's ceiling). */
export const partialLimitsSchema = z.strictObject(
  Object.fromEntries(LIMIT_NAMES.map((n) => [n, limitValue.optional()])) as Record<
    LimitName,
    z.ZodOptional<typeof limitValue>
  >,
);
export type PartialLimits = z.infer<typeof partialLimitsSchema>;

export const executionRequestSchema = z
  .object({
    language: z.string().min(1).max(32),
    /** "*" or the version GET /v1/sandbox/languages lists; anything else is refused. */
    version: z.string().max(64).optional(),
    /** The first file is the one run. */
    files: z.array(sourceFileSchema).min(1).max(64),
    stdin: z.string().optional(),
    args: z.array(z.string().max(4096)).max(128).optional(),
    limits: partialLimitsSchema.optional(),
    /** Run inside a session's sandbox (its files stay between executions). */
    session_id: z.string().max(64).optional(),
  })
  .strict();
export type ExecutionRequest = z.infer<typeof executionRequestSchema>;

export const sessionRequestSchema = z
  .object({
    /** Idle seconds before the session and its files are removed. */
    ttl_seconds: z.number().int().positive().optional(),
    limits: z.object({ memory_bytes: limitValue.optional(), scratch_bytes: limitValue.optional() }).strict().optional(),
  })
  .strict();
export type SessionRequest = z.infer<typeof sessionRequestSchema>;

export interface ExecutionResult {
  readonly id: string;
  readonly language: string;
  readonly version: string;
  readonly stdout: string;
  readonly stderr: string;
  /** The program's exit status; null when a signal (or the sandbox's end) stopped it. */
  readonly exit_code: number | null;
  /** "SIGKILL" and the like, when a signal ended the program. */
  readonly signal: string | null;
  /** The wall-clock limit stopped it. */
  readonly timed_out: boolean;
  /** Either stream was cut at limits.output_bytes. */
  readonly truncated: boolean;
  readonly stdout_truncated: boolean;
  readonly stderr_truncated: boolean;
  /** Every limit that stopped the run; empty when it ended by itself. */
  readonly limits_hit: readonly LimitHit[];
  readonly wall_ms: number;
  /** CPU time of the sandbox during the run (the program and gVisor's own work for it). */
  readonly cpu_ms: number;
  /** Peak memory of the sandbox (the program and gVisor's own, about 20-30 MB of it). */
  readonly memory_bytes: number;
  readonly limits: Limits;
  readonly session_id?: string;
}

export interface Language {
  readonly language: string;
  readonly version: string;
  readonly aliases: readonly string[];
  /** The Debian package it comes from, and that package's version in the node's root file system. */
  readonly package: string;
  readonly package_version: string;
  /** The file name used when a file has none. */
  readonly default_file: string;
}

/**
 * One execution as the audit log keeps it (gatekeeper.sandbox_executions): never the code, its
 * files, stdin, arguments or output. The front sends it to the gatekeeper after each execution.
 */
export const executionReportSchema = z
  .object({
    request_id: z.string().min(1).max(128),
    key_id: z.string().max(64).nullable(),
    language: z.string().max(32),
    version: z.string().max(64).nullable(),
    session: z.boolean(),
    /** completed: the program ran (whatever its exit); refused: the API said no; failed: the sandbox or the node failed. */
    outcome: z.enum(["completed", "refused", "failed"]),
    status: z.number().int().min(100).max(599),
    exit_code: z.number().int().nullable(),
    signal: z.string().max(16).nullable(),
    limits_hit: z.array(z.enum(LIMITS_HIT)).max(LIMITS_HIT.length),
    wall_ms: z.number().int().min(0).nullable(),
    cpu_ms: z.number().int().min(0).nullable(),
    memory_bytes: z.number().int().min(0).nullable(),
    output_bytes: z.number().int().min(0).nullable(),
    /** The front's own time for the whole request, queueing included. */
    duration_ms: z.number().int().min(0),
  })
  .strict();
export type ExecutionReport = z.infer<typeof executionReportSchema>;

/** OpenAI's error shape, as every other hub error. */
export const apiError = (
  message: string,
  type: string,
  code: string,
): { error: { message: string; type: string; code: string } } => ({ error: { message, type, code } });
