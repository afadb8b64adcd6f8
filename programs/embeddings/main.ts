import { ENV, modelTableSchema } from "./contract";
import { jsonLogger as log, startEmbeddingsFront, type EmbeddingsConfig } from "./server";

/** Entry point of the bundled front (`node /app/embeddings.js`), configured by environment (contract.ts ENV). */

/** Every problem with the environment at once, or the config. */
export function readEmbeddingsConfig(
  env: NodeJS.ProcessEnv = process.env,
): { ok: true; config: EmbeddingsConfig } | { ok: false; problems: string[] } {
  const problems: string[] = [];
  const whole = (name: string, fallback?: number): number => {
    const text = env[name];
    if (text === undefined && fallback !== undefined) return fallback;
    const n = Number(text);
    if (!Number.isInteger(n) || n <= 0)
      problems.push(`${name} must be a positive whole number (got ${JSON.stringify(text)})`);
    return n;
  };
  const port = whole(ENV.port);
  const maxBodyBytes = whole(ENV.maxBodyBytes);
  const upstreamTimeoutSeconds = whole(ENV.upstreamTimeoutSeconds, 900);
  let models: EmbeddingsConfig["models"] = [];
  try {
    const parsed = modelTableSchema.safeParse(JSON.parse(env[ENV.models] ?? ""));
    if (parsed.success) models = parsed.data;
    else problems.push(...parsed.error.issues.map((i) => `${ENV.models}[${i.path.join(".")}]: ${i.message}`));
  } catch {
    problems.push(`${ENV.models} must be the JSON model table services/embeddings.ts renders`);
  }
  if (problems.length) return { ok: false, problems };
  return {
    ok: true,
    config: {
      host: env[ENV.host] ?? "0.0.0.0",
      port,
      models,
      maxBodyBytes,
      upstreamTimeoutMs: upstreamTimeoutSeconds * 1000,
    },
  };
}

async function main(): Promise<void> {
  const read = readEmbeddingsConfig();
  if (!read.ok) {
    log.warn("the embeddings front's environment is incomplete", { problems: read.problems });
    process.exit(2);
  }
  const front = startEmbeddingsFront(read.config, log);
  const port = await front.listen();
  log.info("embeddings front listening", { port, models: read.config.models.map((m) => m.name) });
  const stop = (signal: string) => {
    log.info("embeddings front stopping", { signal });
    setTimeout(() => process.exit(0), 10_000).unref();
    void front.close().then(() => process.exit(0));
  };
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
}

if (require.main === module) void main();
