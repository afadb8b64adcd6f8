import type { ServedModel } from "./contract";

/**
 * The OpenAI embeddings API as the hub serves it, as pure functions: what a request may hold,
 * what llama-server is sent, and what the client gets back. llama-server alone would accept any
 * `model`, ignore `dimensions` and answer an over-long input with a 500 (tools/server at b10573:
 * handle_embeddings_impl, format_embeddings_response_oaicompat), so those are decided here.
 */

export interface OpenAiError {
  readonly status: number;
  readonly body: {
    readonly error: {
      readonly message: string;
      readonly type: string;
      readonly param: string | null;
      readonly code: string | null;
    };
  };
  readonly retryAfterSeconds?: number;
}

export const openAiError = (
  status: number,
  message: string,
  type: string,
  param: string | null,
  code: string | null,
  retryAfterSeconds?: number,
): OpenAiError => ({ status, body: { error: { message, type, param, code } }, retryAfterSeconds });
const invalid = (message: string, param: string | null, code: string | null): OpenAiError =>
  openAiError(400, message, "invalid_request_error", param, code);

export type EmbeddingInput = string | readonly number[];

export interface EmbeddingsRequest {
  readonly model: ServedModel;
  readonly inputs: readonly EmbeddingInput[];
  readonly encoding: "float" | "base64";
  /** Asked-for length; undefined: the model's own. */
  readonly dimensions?: number;
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const isTokenArray = (v: unknown): v is number[] => Array.isArray(v) && v.every((t) => typeof t === "number");

/** The request, checked as OpenAI checks it (and against this model's limits), or the first thing wrong with it. */
export function parseEmbeddingsRequest(
  body: unknown,
  models: readonly ServedModel[],
): { ok: true; request: EmbeddingsRequest } | { ok: false; error: OpenAiError } {
  const fail = (error: OpenAiError) => ({ ok: false as const, error });
  if (!isRecord(body))
    return fail(invalid("The request body must be a JSON object with `model` and `input`.", null, "invalid_json"));
  const served = models.map((m) => m.name).join(", ");
  if (typeof body.model !== "string" || body.model === "")
    return fail(
      invalid(`You must provide a model parameter. Embedding models here: ${served}.`, "model", "missing_model"),
    );
  const model = models.find((m) => m.name === body.model);
  if (!model) {
    return fail(
      openAiError(
        404,
        `The model \`${body.model.slice(0, 100)}\` does not exist or you do not have access to it. Embedding models here: ${served}.`,
        "invalid_request_error",
        "model",
        "model_not_found",
      ),
    );
  }

  let inputs: EmbeddingInput[];
  const input = body.input;
  if (typeof input === "string") inputs = [input];
  else if (isTokenArray(input) && input.length > 0) inputs = [input];
  else if (
    Array.isArray(input) &&
    input.length > 0 &&
    (input.every((i) => typeof i === "string") || input.every(isTokenArray))
  )
    inputs = input as EmbeddingInput[];
  else if (Array.isArray(input) && input.length === 0)
    return fail(
      invalid(
        "`input` must not be an empty array: send a string, an array of strings, or an array of token arrays.",
        "input",
        "empty_input",
      ),
    );
  else if (input === undefined)
    return fail(
      invalid(
        "You must provide `input`: a string, an array of strings, or an array of token arrays.",
        "input",
        "missing_input",
      ),
    );
  else
    return fail(
      invalid(
        "`input` must be a string, an array of strings, an array of token ids, or an array of token-id arrays (not a mix).",
        "input",
        "invalid_input",
      ),
    );

  if (inputs.length > model.maxInputs)
    return fail(
      invalid(
        `\`input\` has ${inputs.length} entries; at most ${model.maxInputs} are accepted per request. Send them in batches.`,
        "input",
        "too_many_inputs",
      ),
    );
  for (const [i, item] of inputs.entries()) {
    const where = inputs.length === 1 ? "`input`" : `\`input[${i}]\``;
    if (item.length === 0)
      return fail(
        invalid(`${where} is empty; every input must contain at least one character or token.`, "input", "empty_input"),
      );
    if (typeof item === "string") continue;
    const bad = item.findIndex((t) => !Number.isInteger(t) || t < 0 || t >= model.vocabSize);
    if (bad >= 0)
      return fail(
        invalid(
          `${where} holds ${String(item[bad])} at position ${bad}, which is not a token id of ${model.name} (0 to ${model.vocabSize - 1}).`,
          "input",
          "invalid_token",
        ),
      );
    // The appended end-of-text token counts toward the limit.
    const limit = model.maxInputTokens - (model.endOfText ? 1 : 0);
    if (item.length > limit) return fail(tooLong(model, item.length, where));
  }

  const format = body.encoding_format ?? "float";
  if (format !== "float" && format !== "base64")
    return fail(
      invalid(
        `\`encoding_format\` must be float or base64 (got ${JSON.stringify(format).slice(0, 40)}).`,
        "encoding_format",
        "invalid_encoding_format",
      ),
    );

  let dimensions: number | undefined;
  if (body.dimensions !== undefined && body.dimensions !== null) {
    if (model.matryoshkaMin === undefined)
      return fail(
        invalid(
          `This model does not support specifying dimensions: ${model.name}'s ${model.dimensions}-dimensional vectors must be used whole.`,
          "dimensions",
          "dimensions_not_supported",
        ),
      );
    const d = body.dimensions;
    if (typeof d !== "number" || !Number.isInteger(d) || d < model.matryoshkaMin || d > model.dimensions) {
      return fail(
        invalid(
          `\`dimensions\` must be a whole number from ${model.matryoshkaMin} to ${model.dimensions} for ${model.name} (got ${JSON.stringify(d).slice(0, 40)}).`,
          "dimensions",
          "invalid_dimensions",
        ),
      );
    }
    dimensions = d;
  }
  return { ok: true, request: { model, inputs, encoding: format, dimensions } };
}

export const tooLong = (model: ServedModel, tokens: number | undefined, where = "An input"): OpenAiError =>
  invalid(
    `${where} is too long${tokens === undefined ? "" : ` (${tokens} tokens)`}: ${model.name} embeds at most ${model.maxInputTokens} tokens per input here${model.endOfText ? ", its end-of-text token included" : ""}. Split long texts into chunks (a text splitter with chunkSize of about ${model.maxInputTokens * 3} characters).`,
    "input",
    "context_length_exceeded",
  );

/**
 * The body llama-server gets: the model's end-of-text appended to every input, and base64 asked
 * back (float32, a quarter of the JSON's size: a request of 2048 inputs stays tens of MiB smaller).
 */
export function upstreamBody(request: EmbeddingsRequest): {
  model: string;
  input: EmbeddingInput[];
  encoding_format: "base64";
} {
  const eot = request.model.endOfText;
  const input = request.inputs.map((i) =>
    eot === undefined ? i : typeof i === "string" ? `${i}${eot.text}` : [...i, eot.tokenId],
  );
  return { model: request.model.upstreamModel, input, encoding_format: "base64" };
}

/** A Matryoshka prefix: the first `dimensions` components, scaled back to unit length. */
export function truncateAndNormalise(vector: ArrayLike<number>, dimensions: number): Float32Array {
  const head = Float32Array.from({ length: Math.min(dimensions, vector.length) }, (_, i) => vector[i]);
  let sum = 0;
  for (const x of head) sum += x * x;
  const norm = Math.sqrt(sum);
  return norm > 0 ? head.map((x) => x / norm) : head;
}

/** OpenAI's base64 encoding: the float32 values, little-endian, one after the other. */
export function toBase64(vector: ArrayLike<number>): string {
  const buffer = Buffer.alloc(vector.length * 4);
  for (let i = 0; i < vector.length; i++) buffer.writeFloatLE(vector[i], i * 4);
  return buffer.toString("base64");
}

export function fromBase64(text: string): Float32Array {
  const buffer = Buffer.from(text, "base64");
  const out = new Float32Array(Math.floor(buffer.length / 4));
  for (let i = 0; i < out.length; i++) out[i] = buffer.readFloatLE(i * 4);
  return out;
}

export interface EmbeddingsResponse {
  readonly object: "list";
  readonly data: { readonly object: "embedding"; readonly index: number; readonly embedding: number[] | string }[];
  readonly model: string;
  readonly usage: { readonly prompt_tokens: number; readonly total_tokens: number };
}

/** The client's answer from llama-server's, or undefined when llama-server's does not have the shape it documents. */
export function clientResponse(request: EmbeddingsRequest, upstream: unknown): EmbeddingsResponse | undefined {
  if (!isRecord(upstream) || !Array.isArray(upstream.data) || upstream.data.length !== request.inputs.length)
    return undefined;
  const vectors: Float32Array[] = [];
  for (const [i, item] of upstream.data.entries()) {
    if (!isRecord(item) || (typeof item.index === "number" && item.index !== i)) return undefined;
    // base64 as asked; floats too, from a server that ignores encoding_format.
    if (typeof item.embedding === "string") vectors.push(fromBase64(item.embedding));
    else if (isTokenArray(item.embedding)) vectors.push(Float32Array.from(item.embedding));
    else return undefined;
  }
  const usage =
    isRecord(upstream.usage) && typeof upstream.usage.prompt_tokens === "number" ? upstream.usage.prompt_tokens : 0;
  return {
    object: "list",
    data: vectors.map((v, index) => {
      const shaped =
        request.dimensions !== undefined && request.dimensions < v.length
          ? truncateAndNormalise(v, request.dimensions)
          : v;
      return {
        object: "embedding",
        index,
        embedding: request.encoding === "base64" ? toBase64(shaped) : Array.from(shaped),
      };
    }),
    model: request.model.name,
    usage: { prompt_tokens: usage, total_tokens: usage },
  };
}

/**
 * llama-server's error answers (format_error_response: {error: {code, message, type}}) in
 * OpenAI's shape. Its "input (N tokens) is too large to process" is a 500 there, but the
 * client's input is what is wrong: a 400.
 */
export function upstreamError(request: EmbeddingsRequest, status: number, body: unknown): OpenAiError {
  const message =
    isRecord(body) && isRecord(body.error) && typeof body.error.message === "string" ? body.error.message : undefined;
  const tooLarge = message ? /^input \((\d+) tokens\) is too large to process/.exec(message) : null;
  if (tooLarge) return tooLong(request.model, Number(tooLarge[1]));
  if (status === 503)
    return openAiError(
      503,
      `${request.model.name} is still loading; retry in a few seconds.`,
      "server_error",
      null,
      "model_loading",
      10,
    );
  if (status >= 400 && status < 500 && message)
    return openAiError(status, message, "invalid_request_error", null, null);
  // 500, not 502: the gateway replaces a 502 with its own "did not answer" page, and this one did.
  return openAiError(
    500,
    `The embedding server answered ${status}${message ? `: ${message.slice(0, 200)}` : ""}.`,
    "server_error",
    null,
    "backend_error",
  );
}
