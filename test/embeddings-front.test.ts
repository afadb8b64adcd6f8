import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ServedModel } from "../programs/embeddings/contract";
import { fromBase64, truncateAndNormalise } from "../programs/embeddings/openai";
import { startEmbeddingsFront, type EmbeddingsFront, type Logger } from "../programs/embeddings/server";
import { servedModels } from "../services/embeddings";
import { mustLoad } from "./helpers/load";
import { startStandIn, standInVector, type StandIn } from "./helpers/stand-ins";

/**
 * The embeddings front (programs/embeddings/) over HTTP, in front of a labelled stand-in of
 * llama-server's /v1/embeddings (test/helpers/stand-ins.ts, shaped as b10573 answers), called
 * with the OpenAI SDK as a client would. The model table is the one the hybrid preset renders.
 */

const hub = mustLoad({ tier: "hybrid" });
const [served] = servedModels(hub.embeddings!);
const BACKEND_KEY = "backend-key-for-this-test";
const EOT = "<|endoftext|>";
const norm = (v: readonly number[]) => Math.sqrt(v.reduce((a, x) => a + x * x, 0));
/** The stand-in's vector as the front passes it on: llama-server is asked for base64, i.e. float32. */
const expected = (text: string) => standInVector(text, 1024).map(Math.fround);

let embedder: StandIn;
let front: EmbeddingsFront;
let client: OpenAI;
let base: string;
const logged: string[] = [];
const log: Logger = {
  info: (m, f) => logged.push(JSON.stringify({ m, ...f })),
  warn: (m, f) => logged.push(JSON.stringify({ m, ...f })),
};
/** A second, plain model: no Matryoshka training, no end-of-text token of its own. */
let plain: ServedModel;

beforeAll(async () => {
  embedder = await startStandIn({
    program: "llama.cpp",
    model: served.upstreamModel,
    embeddings: { dimensions: served.dimensions, ubatch: served.maxInputTokens },
  });
  const upstream = `http://127.0.0.1:${embedder.port}`;
  plain = { ...served, name: "plain-embedder", matryoshkaMin: undefined, endOfText: undefined, upstream };
  front = startEmbeddingsFront(
    {
      host: "127.0.0.1",
      port: 0,
      models: [{ ...served, upstream }, plain],
      maxBodyBytes: 64 * 1024,
      upstreamTimeoutMs: 10_000,
    },
    log,
  );
  base = `http://127.0.0.1:${await front.listen()}`;
  client = new OpenAI({ baseURL: `${base}/v1`, apiKey: BACKEND_KEY, maxRetries: 0 });
});

afterAll(async () => {
  await front?.close();
  await embedder?.close();
});

const lastReceived = () => embedder.received.at(-1)!;
const post = async (body: unknown) => {
  const r = await fetch(`${base}/v1/embeddings`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${BACKEND_KEY}` },
    body: JSON.stringify(body),
  });
  return { status: r.status, json: (await r.json()) as any };
};

describe("the embeddings front, as the OpenAI SDK calls it", () => {
  it("embeds one string, with the model's end-of-text token appended and the caller's credential forwarded", async () => {
    const r = await client.embeddings.create({
      model: served.name,
      input: "Traefik routes requests",
      encoding_format: "float",
    });
    expect(r.object).toBe("list");
    expect(r.model).toBe(served.name);
    expect(r.data).toHaveLength(1);
    expect(r.data[0].embedding).toHaveLength(1024);
    expect(norm(r.data[0].embedding)).toBeCloseTo(1, 5);
    expect(r.data[0].embedding).toEqual(expected(`Traefik routes requests${EOT}`));
    // One token more than the words: the appended end-of-text token was evaluated too.
    expect(r.usage).toEqual({ prompt_tokens: 4, total_tokens: 4 });
    const sent = lastReceived();
    expect(sent.json).toEqual({
      model: served.upstreamModel,
      input: [`Traefik routes requests${EOT}`],
      encoding_format: "base64",
    });
    expect(sent.headers.authorization).toBe(`Bearer ${BACKEND_KEY}`);
  });

  it("embeds an array of strings in order, and token arrays with the end-of-text id appended", async () => {
    const texts = ["first chunk about docling", "second chunk about vllm", "third"];
    const r = await client.embeddings.create({ model: served.name, input: texts, encoding_format: "float" });
    expect(r.data.map((d) => d.index)).toEqual([0, 1, 2]);
    r.data.forEach((d, i) => expect(d.embedding).toEqual(expected(`${texts[i]}${EOT}`)));

    const tokens = await client.embeddings.create({
      model: served.name,
      input: [
        [9707, 1879],
        [40, 1079, 264],
      ],
      encoding_format: "float",
    });
    expect(tokens.data).toHaveLength(2);
    expect(lastReceived().json!.input).toEqual([
      [9707, 1879, 151643],
      [40, 1079, 264, 151643],
    ]);
    const single = await client.embeddings.create({
      model: served.name,
      input: [9707, 1879],
      encoding_format: "float",
    });
    expect(single.data).toHaveLength(1);
    expect(lastReceived().json!.input).toEqual([[9707, 1879, 151643]]);
  });

  it("answers base64 as little-endian float32, which the SDK's default decodes to the same floats", async () => {
    const text = "base64 is the SDK's default";
    const floats = (await client.embeddings.create({ model: served.name, input: text, encoding_format: "float" }))
      .data[0].embedding;
    const raw = await post({ model: served.name, input: text, encoding_format: "base64" });
    expect(typeof raw.json.data[0].embedding).toBe("string");
    const bytes = Buffer.from(raw.json.data[0].embedding, "base64");
    expect(bytes.length).toBe(1024 * 4);
    expect(Array.from({ length: 1024 }, (_, i) => bytes.readFloatLE(i * 4))).toEqual(floats.map((x) => Math.fround(x)));
    // No encoding_format: the SDK asks for base64 and decodes it itself.
    const byDefault = await client.embeddings.create({ model: served.name, input: text });
    expect(lastReceived().json!.encoding_format).toBe("base64");
    expect(byDefault.data[0].embedding).toEqual(floats.map((x) => Math.fround(x)));
  });

  it("shortens Matryoshka vectors to `dimensions`: the leading components, back at unit length", async () => {
    const text = "matryoshka prefixes keep most of the meaning";
    const full = (await client.embeddings.create({ model: served.name, input: text, encoding_format: "float" })).data[0]
      .embedding;
    const short = await client.embeddings.create({
      model: served.name,
      input: text,
      dimensions: 256,
      encoding_format: "float",
    });
    const v = short.data[0].embedding;
    expect(v).toHaveLength(256);
    expect(norm(v)).toBeCloseTo(1, 6);
    const head = full.slice(0, 256);
    const scale = norm(head);
    // float32 arithmetic: six places.
    v.forEach((x, i) => expect(x).toBeCloseTo(head[i] / scale, 6));
    const b64 = await post({ model: served.name, input: text, dimensions: 64, encoding_format: "base64" });
    expect(fromBase64(b64.json.data[0].embedding)).toHaveLength(64);
    expect(
      await client.embeddings
        .create({ model: served.name, input: text, dimensions: 1024, encoding_format: "float" })
        .then((r) => r.data[0].embedding),
    ).toEqual(full);
  });

  it("refuses `dimensions` outside the model's Matryoshka range, and on a model without it, in OpenAI's error shape", async () => {
    for (const dimensions of [16, 1025, 100.5]) {
      const r = await post({ model: served.name, input: "x", dimensions });
      expect(r.status).toBe(400);
      expect(r.json.error).toMatchObject({
        type: "invalid_request_error",
        param: "dimensions",
        code: "invalid_dimensions",
      });
      expect(r.json.error.message).toContain("from 32 to 1024");
    }
    const before = embedder.received.length;
    const sdk = await client.embeddings
      .create({ model: plain.name, input: "x", dimensions: 256 })
      .catch((e: unknown) => e);
    expect(sdk).toBeInstanceOf(OpenAI.BadRequestError);
    expect((sdk as InstanceType<typeof OpenAI.BadRequestError>).code).toBe("dimensions_not_supported");
    expect((sdk as InstanceType<typeof OpenAI.BadRequestError>).param).toBe("dimensions");
    expect(embedder.received.length).toBe(before);
    // The plain model embeds as it is: nothing appended.
    await client.embeddings.create({ model: plain.name, input: "as is", encoding_format: "float" });
    expect(lastReceived().json!.input).toEqual(["as is"]);
  });

  it("refuses an empty input, an unknown model and malformed inputs before the embedder sees them", async () => {
    const before = embedder.received.length;
    const cases: [unknown, number, string, string | null][] = [
      [{ model: served.name, input: "" }, 400, "empty_input", "input"],
      [{ model: served.name, input: [] }, 400, "empty_input", "input"],
      [{ model: served.name, input: ["ok", ""] }, 400, "empty_input", "input"],
      [{ model: served.name, input: [[]] }, 400, "empty_input", "input"],
      [{ model: served.name }, 400, "missing_input", "input"],
      [{ model: served.name, input: ["text", [1, 2]] }, 400, "invalid_input", "input"],
      [{ model: served.name, input: [[1, -2]] }, 400, "invalid_token", "input"],
      [{ model: served.name, input: [[151669]] }, 400, "invalid_token", "input"],
      [
        { model: served.name, input: Array.from({ length: served.maxInputTokens }, () => 1) },
        400,
        "context_length_exceeded",
        "input",
      ],
      [{ model: served.name, input: Array.from({ length: 2049 }, () => "a") }, 400, "too_many_inputs", "input"],
      [{ model: served.name, input: "x", encoding_format: "int8" }, 400, "invalid_encoding_format", "encoding_format"],
      [{ input: "x" }, 400, "missing_model", "model"],
      [{ model: "text-embedding-3-small", input: "x" }, 404, "model_not_found", "model"],
    ];
    for (const [body, status, code, param] of cases) {
      const r = await post(body);
      expect({ body, status: r.status, code: r.json.error?.code, param: r.json.error?.param }).toEqual({
        body,
        status,
        code,
        param,
      });
      expect(typeof r.json.error.message).toBe("string");
      expect(r.json.error.type).toBe("invalid_request_error");
    }
    expect(embedder.received.length).toBe(before);
    const sdk = await client.embeddings
      .create({ model: "text-embedding-3-small", input: "x" })
      .catch((e: unknown) => e);
    expect(sdk).toBeInstanceOf(OpenAI.NotFoundError);
    expect((sdk as InstanceType<typeof OpenAI.NotFoundError>).message).toContain(
      `Embedding models here: ${served.name}, plain-embedder`,
    );
  });

  it("turns llama-server's 500 for an over-long text into a 400 that says the limit", async () => {
    const long = Array.from({ length: served.maxInputTokens }, (_, i) => `w${i}`).join(" ");
    const r = await post({ model: served.name, input: long });
    expect(embedder.received.at(-1)!.json!.input).toEqual([`${long}${EOT}`]);
    expect(r.status).toBe(400);
    expect(r.json.error).toMatchObject({
      type: "invalid_request_error",
      param: "input",
      code: "context_length_exceeded",
    });
    expect(r.json.error.message).toContain(`${served.maxInputTokens + 1} tokens`);
    expect(r.json.error.message).toContain(`at most ${served.maxInputTokens} tokens per input`);
  });

  it("answers bad JSON, an oversized body and other methods in OpenAI's shape", async () => {
    const bad = await fetch(`${base}/v1/embeddings`, { method: "POST", body: "{not json" });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as any).error.code).toBe("invalid_json");
    const big = await post({ model: served.name, input: "x".repeat(70 * 1024) });
    expect(big.status).toBe(413);
    expect(big.json.error.code).toBe("request_too_large");
    const get = await fetch(`${base}/v1/embeddings`);
    expect(get.status).toBe(405);
  });

  it("retrieves its models by name, as OpenAI's GET /v1/models/{model}", async () => {
    const model = await client.models.retrieve(served.name);
    expect(model).toMatchObject({ id: served.name, object: "model", owned_by: "inference-hub" });
    await expect(client.models.retrieve("coder")).rejects.toBeInstanceOf(OpenAI.NotFoundError);
  });

  it("says the embedder is unreachable with a 502 the gateway turns into its own page", async () => {
    const down = startEmbeddingsFront(
      {
        host: "127.0.0.1",
        port: 0,
        models: [{ ...served, upstream: "http://127.0.0.1:9" }],
        maxBodyBytes: 1024,
        upstreamTimeoutMs: 5000,
      },
      log,
    );
    const port = await down.listen();
    try {
      const r = await fetch(`http://127.0.0.1:${port}/v1/embeddings`, {
        method: "POST",
        body: JSON.stringify({ model: served.name, input: "x" }),
      });
      expect(r.status).toBe(502);
      expect(((await r.json()) as any).error.code).toBe("backend_unavailable");
    } finally {
      await down.close();
    }
  });

  it("logs counts and outcomes, never an input, a vector or a key", () => {
    const text = logged.join("\n");
    expect(logged.length).toBeGreaterThan(10);
    for (const secret of [
      "Traefik routes requests",
      "first chunk about docling",
      "matryoshka prefixes",
      "9707",
      BACKEND_KEY,
      "w17 w18",
    ])
      expect(text).not.toContain(secret);
    expect(text).toContain('"inputs":3');
  });
});

describe("Matryoshka and base64 arithmetic", () => {
  it("encodes float32 little-endian and back", () => {
    expect(Array.from(fromBase64(Buffer.from([0, 0, 128, 63, 0, 0, 0, 192]).toString("base64")))).toEqual([1, -2]);
  });
  it("keeps the direction of the prefix and unit length", () => {
    const [a, b] = truncateAndNormalise([3, 4, 12], 2);
    expect(a).toBeCloseTo(0.6, 7);
    expect(b).toBeCloseTo(0.8, 7);
    expect(Array.from(truncateAndNormalise([0, 0, 1], 2))).toEqual([0, 0]);
  });
});
