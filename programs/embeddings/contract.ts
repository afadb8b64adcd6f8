import { z } from "zod";

/**
 * The contract between services/embeddings.ts (which renders the container) and the embeddings
 * front (server.ts): environment names, the model table's schema, the paths. One definition.
 */
export const ENV = {
  host: "EMBEDDINGS_HOST",
  port: "EMBEDDINGS_PORT",
  /** JSON: the served models (modelTableSchema). */
  models: "EMBEDDINGS_MODELS",
  maxBodyBytes: "EMBEDDINGS_MAX_BODY_BYTES",
  /** How long one upstream call may take, seconds: the gateway's own limit is the real one. */
  upstreamTimeoutSeconds: "EMBEDDINGS_UPSTREAM_TIMEOUT_SECONDS",
} as const;

export const EMBEDDINGS_PATH = "/v1/embeddings";
/** OpenAI's "retrieve model": GET /v1/models/<name>. */
export const MODELS_PATH_PREFIX = "/v1/models/";
export const HEALTH_PATH = "/health";
export const EMBEDDINGS_PORT = 8080;

export const CONTAINER_PATHS = { app: "/app", bundle: "/app/embeddings.js" } as const;

const modelSchema = z.strictObject({
  /** What clients send as `model`. */
  name: z.string().regex(/^[A-Za-z0-9._:-]{1,64}$/),
  /** llama-server's base URL, e.g. http://embedder:8080. */
  upstream: z.url(),
  /** The name llama-server answers to (--alias). */
  upstreamModel: z.string().min(1),
  dimensions: z.number().int().positive(),
  /** Matryoshka: smallest `dimensions` a request may ask for. Absent: `dimensions` is refused. */
  matryoshkaMin: z.number().int().positive().optional(),
  /** Longest input, tokens, the appended end-of-text token included. */
  maxInputTokens: z.number().int().min(2),
  vocabSize: z.number().int().positive(),
  /** Appended to every input (text, or token id for token arrays): what last-token pooling reads. */
  endOfText: z.strictObject({ text: z.string().min(1), tokenId: z.number().int().nonnegative() }).optional(),
  maxInputs: z.number().int().positive(),
  owner: z.string().min(1),
});
export const modelTableSchema = z.array(modelSchema).min(1);
export type ServedModel = z.infer<typeof modelSchema>;
