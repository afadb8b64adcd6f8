import { execFile } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { promisify } from "node:util";
import * as path from "node:path";
import { MemoryVectorStore } from "@langchain/classic/vectorstores/memory";
import { ChatOpenAI, OpenAIEmbeddings } from "@langchain/openai";
import { RecursiveCharacterTextSplitter } from "@langchain/textsplitters";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EMBEDDINGS_BODY_BYTES } from "../services/routes";
import { GatewayRig, RIG_BACKEND_KEY, rigMissing, type RigResponse } from "./helpers/gateway-rig";
import { ROOT } from "./helpers/load";
import { waitFor } from "./helpers/processes";
import { standInVector } from "./helpers/stand-ins";

/**
 * /v1/embeddings through the real gateway (Traefik built at the image's version with the plan's
 * files, the bundled gatekeeper with PostgreSQL, the bundled embeddings front), with labelled
 * stand-ins where llama-server, docling-serve and the coder would run (test/helpers/stand-ins.ts).
 * Clients: the official `openai` package, and LangChain's own JavaScript packages running a
 * document pipeline as a user would write it.
 */

const missing = rigMissing();
if (missing) console.warn(`embeddings gateway tests skipped: ${missing}`);
it.runIf(Boolean(missing) && process.env.CI === "true")(
  "Traefik, nginx and PostgreSQL are installed (required in CI)",
  () => {
    expect.fail(missing);
  },
);

const MODEL = "qwen3-embedding-0.6b";
const EOT = "<|endoftext|>";
const KEYS = {
  indexer: { scopes: ["embeddings"], ratePerMinute: 100_000, burst: 1000 },
  chatOnly: { scopes: ["llm"], ratePerMinute: 100_000, burst: 1000 },
  // Three embedding requests, then one a minute: a 429 is deterministic however slow the machine.
  limited: { scopes: ["embeddings", "llm"], ratePerMinute: 1, burst: 3 },
  audited: { scopes: ["embeddings"], ratePerMinute: 100_000, burst: 1000 },
  pipeline: { scopes: ["ocr", "embeddings", "llm"], ratePerMinute: 100_000, burst: 1000 },
} as const;

/** The document the pipeline reads: a small operations guide, uploaded as Markdown. */
const GUIDE = `# Inference hub operations guide

## Turning the GPU on for a day
Pin the GPU node with npm run hub -- gpu on --for 8h; the autoscaler leaves the pin alone until it ends and then decides again.

## Rotating an API key
To rotate an API key, create a new key for the same owner with npm run hub -- keys create, hand it over, then revoke the old key with npm run hub -- keys revoke. Revoked keys are refused at once.

## Backing up the audit log
The gatekeeper ships every decision from its spool to PostgreSQL; back up that database with pg_dump once a day.
`;

describe.skipIf(Boolean(missing))(
  "/v1/embeddings through the real gateway (stand-in llama-server, docling-serve and coder)",
  () => {
    let rig: GatewayRig;
    const sdk = (name: keyof typeof KEYS) =>
      new OpenAI({ apiKey: rig.keys[name].key, baseURL: `${rig.baseUrl}/v1`, maxRetries: 0, timeout: 60_000 });
    const post = (name: keyof typeof KEYS | undefined, body: unknown, p = "/v1/embeddings"): Promise<RigResponse> =>
      rig.request({
        path: p,
        body: JSON.stringify(body),
        headers: {
          "content-type": "application/json",
          ...(name ? { authorization: `Bearer ${rig.keys[name].key}` } : {}),
        },
      });
    const received = () => rig.standIns.embedder!.received;

    beforeAll(async () => {
      rig = await GatewayRig.start({ keys: KEYS });
    }, 120_000);

    afterAll(async () => {
      await rig?.stop();
    });

    it("answers the OpenAI SDK's embeddings.create shapes: string, array, token arrays, base64, dimensions", async () => {
      const client = sdk("indexer");
      const one = await client.embeddings.create({ model: MODEL, input: "hello gateway", encoding_format: "float" });
      expect(one.model).toBe(MODEL);
      // llama-server is asked for base64 (float32) by the front.
      expect(one.data[0].embedding).toEqual(standInVector(`hello gateway${EOT}`, 1024).map(Math.fround));
      // The embedder got the backends' key the gatekeeper swapped in, never the client's.
      expect(received().at(-1)!.headers.authorization).toBe(`Bearer ${RIG_BACKEND_KEY}`);
      expect(JSON.stringify(received().at(-1)!.headers)).not.toContain(rig.keys.indexer.key);

      const many = await client.embeddings.create({
        model: MODEL,
        input: ["alpha", "beta", "gamma"],
        encoding_format: "float",
      });
      expect(many.data.map((d) => d.embedding)).toEqual(
        ["alpha", "beta", "gamma"].map((t) => standInVector(`${t}${EOT}`, 1024).map(Math.fround)),
      );
      const tokens = await client.embeddings.create({ model: MODEL, input: [[1, 2, 3]], encoding_format: "float" });
      expect(tokens.data).toHaveLength(1);
      expect(received().at(-1)!.json!.input).toEqual([[1, 2, 3, 151643]]);

      // The SDK's default asks for base64 and decodes it: the same floats, as float32.
      const byDefault = await client.embeddings.create({ model: MODEL, input: "hello gateway" });
      expect(byDefault.data[0].embedding).toEqual(one.data[0].embedding.map((x) => Math.fround(x)));
      const raw = await post("indexer", { model: MODEL, input: "hello gateway", encoding_format: "base64" });
      expect(Buffer.from(raw.json.data[0].embedding, "base64").length).toBe(1024 * 4);

      const short = await client.embeddings.create({
        model: MODEL,
        input: "hello gateway",
        dimensions: 128,
        encoding_format: "float",
      });
      expect(short.data[0].embedding).toHaveLength(128);
      const head = one.data[0].embedding.slice(0, 128);
      const n = Math.hypot(...head);
      expect(n).toBeGreaterThan(0);
      short.data[0].embedding.forEach((x, i) => expect(x).toBeCloseTo(head[i] / n, 6));
    });

    it("answers an empty input, an unknown model and bad dimensions in OpenAI's JSON, untouched by the gateway", async () => {
      const before = received().length;
      const empty = await post("indexer", { model: MODEL, input: "" });
      expect(empty.status).toBe(400);
      expect(empty.headers["content-type"]).toMatch(/^application\/json/);
      expect(empty.json.error).toMatchObject({ type: "invalid_request_error", param: "input", code: "empty_input" });
      const unknown = await sdk("indexer")
        .embeddings.create({ model: "text-embedding-3-small", input: "x" })
        .catch((e: unknown) => e);
      expect(unknown).toBeInstanceOf(OpenAI.NotFoundError);
      expect((unknown as InstanceType<typeof OpenAI.NotFoundError>).code).toBe("model_not_found");
      const dims = await post("indexer", { model: MODEL, input: "x", dimensions: 4096 });
      expect(dims.json.error.code).toBe("invalid_dimensions");
      expect(received().length).toBe(before);
      // OpenAI's retrieve-model path for the served name.
      expect(await sdk("indexer").models.retrieve(MODEL)).toMatchObject({ id: MODEL, object: "model" });
    });

    it("needs the embeddings scope, and a key with it cannot chat", async () => {
      const noKey = await post(undefined, { model: MODEL, input: "x" });
      expect(noKey.status).toBe(401);
      expect(noKey.json.error.code).toBe("missing_api_key");
      const chatOnly = await post("chatOnly", { model: MODEL, input: "x" });
      expect(chatOnly.status).toBe(403);
      expect(chatOnly.json.error).toMatchObject({
        code: "insufficient_scope",
        message: "This API key may not use the embeddings service.",
      });
      const indexerChats = await post(
        "indexer",
        { model: "coder", messages: [{ role: "user", content: "hi" }] },
        "/v1/chat/completions",
      );
      expect(indexerChats.status).toBe(403);
      expect(indexerChats.json.error.message).toContain("llm service");
    });

    it("limits a key's embedding requests apart from its chat, and bounds the body", async () => {
      const statuses: number[] = [];
      for (let i = 0; i < 4; i++)
        statuses.push((await post("limited", { model: MODEL, input: `request ${i}` })).status);
      expect(statuses).toEqual([200, 200, 200, 429]);
      const limited = await post("limited", { model: MODEL, input: "again" });
      expect(limited.json.error.code).toBe("rate_limit_exceeded");
      expect(limited.json.error.message).toContain("on the embeddings service");
      expect(Number(limited.headers["retry-after"])).toBeGreaterThan(0);
      // The same key's chat budget is untouched.
      const chat = await post(
        "limited",
        { model: "coder", messages: [{ role: "user", content: "hi" }] },
        "/v1/chat/completions",
      );
      expect(chat.status).toBe(200);

      const big = await post("indexer", { model: MODEL, input: "x".repeat(EMBEDDINGS_BODY_BYTES) });
      expect(big.status).toBe(413);
      expect(big.json.error.code).toBe("request_too_large");
    });

    it("writes one audit row per request, with no input text in the log", async () => {
      const marker = "zanzibar-marmalade-quokka";
      const bodies = [
        { model: MODEL, input: `${marker} one` },
        { model: MODEL, input: [`${marker} two`, `${marker} three`] },
        { model: MODEL, input: "" },
        { model: "nope", input: marker },
      ];
      const statuses = [];
      for (const body of bodies) statuses.push((await post("audited", body)).status);
      expect(statuses).toEqual([200, 200, 400, 404]);
      const rows = (await rig.auditRows()).filter((r) => r.key_id === rig.keys.audited.id);
      expect(rows).toHaveLength(bodies.length);
      for (const row of rows)
        expect(row).toMatchObject({
          scope: "embeddings",
          method: "POST",
          path: "/v1/embeddings",
          allowed: true,
          reason: "allowed",
          status: 200,
        });
      expect(new Set(rows.map((r) => r.request_id)).size).toBe(bodies.length);
      expect(JSON.stringify(rows)).not.toContain(marker);
      // Nor in the spool the rows were shipped from, nor in any log line of the programs involved.
      const spool = path.join(rig.dir, "spool");
      for (const f of readdirSync(spool))
        expect(readFileSync(path.join(spool, f)).toString("latin1")).not.toContain(marker);
      for (const p of [rig.gatekeeper, rig.embeddings!, rig.traefik]) expect(p.text()).not.toContain(marker);
    });

    it("never counts an embedding request as coder demand (the autoscaler reads the coder router's counters)", async () => {
      const counters = async () => {
        const text = (await rig.request({ path: "/metrics", port: rig.entry.metrics })).text;
        const sum = (router: string) =>
          [
            ...text.matchAll(
              new RegExp(`^traefik_router_requests_total\\{[^}]*router="${router}@file"[^}]*\\} (\\d+)`, "gm"),
            ),
          ].reduce((a, m) => a + Number(m[1]), 0);
        return { coder: sum("coder"), embeddings: sum("embeddings") };
      };
      const before = await counters();
      for (let i = 0; i < 5; i++)
        expect((await post("indexer", { model: MODEL, input: `demand ${i}` })).status).toBe(200);
      let after = before;
      await waitFor(
        "Traefik to count the embedding requests",
        async () => {
          after = await counters();
          return after.embeddings >= before.embeddings + 5;
        },
        10_000,
        { intervalMs: 100 },
      );
      expect(after.embeddings - before.embeddings).toBe(5);
      expect(after.coder).toBe(before.coder);
    });

    it("runs a LangChain document pipeline: docling's async OCR, split, embed, retrieve, answer by the coder with the chunks cited", async () => {
      const key = rig.keys.pipeline.key;
      const baseURL = `${rig.baseUrl}/v1`;
      const docling = rig.standIns.docling!;
      const coder = rig.standIns.fallback!;
      const seen = { docling: docling.received.length, embedder: received().length, coder: coder.received.length };

      // 1. OCR: docling-serve's async API through the gateway (LangChain has no JS docling loader; a user would fetch).
      const form = new FormData();
      form.append("files", new Blob([GUIDE], { type: "text/markdown" }), "guide.md");
      const headers = { "X-Api-Key": key };
      const submitted = (await (
        await fetch(`${baseURL}/ocr/convert/file/async`, { method: "POST", body: form, headers })
      ).json()) as { task_id: string };
      await waitFor(
        "docling to convert the guide",
        async () =>
          (
            (await (await fetch(`${baseURL}/ocr/status/poll/${submitted.task_id}`, { headers })).json()) as {
              task_status: string;
            }
          ).task_status === "success",
        10_000,
        { intervalMs: 100 },
      );
      const converted = (await (await fetch(`${baseURL}/ocr/result/${submitted.task_id}`, { headers })).json()) as {
        document: { md_content: string };
      };
      const markdown = converted.document.md_content;
      expect(markdown).toContain("## Rotating an API key");
      const toDocling = docling.received.slice(seen.docling);
      expect(toDocling[0]).toMatchObject({ method: "POST", url: "/v1/convert/file/async" });
      expect(toDocling.at(-1)!.url).toBe(`/v1/result/${submitted.task_id}`);
      for (const r of toDocling) expect(r.headers["x-api-key"]).toBe(RIG_BACKEND_KEY);

      // 2. Split with LangChain's Markdown-aware splitter.
      const splitter = RecursiveCharacterTextSplitter.fromLanguage("markdown", { chunkSize: 300, chunkOverlap: 0 });
      const chunks = await splitter.createDocuments([markdown], [{ source: "guide.md" }]);
      expect(chunks.length).toBeGreaterThanOrEqual(3);
      for (const c of chunks) expect(c.pageContent.length).toBeLessThanOrEqual(300);

      // 3. Embed through /v1/embeddings with LangChain's OpenAI client, into its in-memory store.
      const embeddings = new OpenAIEmbeddings({
        model: MODEL,
        apiKey: key,
        dimensions: 512,
        configuration: { baseURL },
      });
      const store = await MemoryVectorStore.fromDocuments(chunks, embeddings);
      const indexed = received().slice(seen.embedder);
      expect(indexed).toHaveLength(1);
      expect(indexed[0].json!.model).toBe(MODEL);
      // LangChain's OpenAIEmbeddings replaces newlines with spaces before sending (stripNewLines, on by default).
      expect(indexed[0].json!.input).toEqual(chunks.map((c) => `${c.pageContent.replace(/\n/g, " ")}${EOT}`));
      expect(store.memoryVectors).toHaveLength(chunks.length);
      for (const v of store.memoryVectors) {
        expect(v.embedding).toHaveLength(512);
        expect(Math.hypot(...v.embedding)).toBeCloseTo(1, 5);
      }

      // 4. Retrieve for a question: the question goes through /v1/embeddings too.
      const question = "How do I rotate an API key?";
      const hits = await store.similaritySearch(question, 2);
      expect(received().at(-1)!.json!.input).toEqual([`${question}${EOT}`]);
      expect(hits[0].pageContent).toContain("To rotate an API key");

      // 5. Answer with the coder, the retrieved chunks numbered so the answer can cite them.
      const context = hits.map((h, i) => `[${i + 1}] (${String(h.metadata.source)}) ${h.pageContent}`).join("\n\n");
      const chat = new ChatOpenAI({ model: "coder", apiKey: key, temperature: 0, configuration: { baseURL } });
      const answer = await chat.invoke([
        ["system", "Answer from the numbered sources only, and cite them like [1]."],
        ["user", `Sources:\n${context}\n\nQuestion: ${question}`],
      ]);
      expect(answer.content).toBe("answer from llama.cpp");
      const asked = coder.received.slice(seen.coder);
      expect(asked).toHaveLength(1);
      expect(asked[0].url).toBe("/v1/chat/completions");
      expect(asked[0].headers.authorization).toBe(`Bearer ${RIG_BACKEND_KEY}`);
      const messages = asked[0].json!.messages as { role: string; content: string }[];
      expect(asked[0].json!.model).toBe("coder");
      expect(messages[1].content).toContain(`[1] (guide.md) ${hits[0].pageContent}`);
      expect(messages[1].content).toContain(question);

      // Each stage left its audit rows under its own scope.
      const rows = (await rig.auditRows()).filter((r) => r.key_id === rig.keys.pipeline.id);
      const byScope = (scope: string) => rows.filter((r) => r.scope === scope).length;
      expect(byScope("ocr")).toBe(toDocling.length);
      expect(byScope("embeddings")).toBe(2);
      expect(byScope("llm")).toBe(1);
    });

    it("runs the documentation's JavaScript example (docs/examples/documents-to-answers.mjs) as a user would", async () => {
      const dir = mkdtempSync(path.join(tmpdir(), "hub-example-"));
      try {
        const guide = path.join(dir, "guide.md");
        writeFileSync(guide, GUIDE);
        const seen = { embedder: received().length, coder: rig.standIns.fallback!.received.length };
        const { stdout } = await promisify(execFile)(
          process.execPath,
          [path.join(ROOT, "docs/examples/documents-to-answers.mjs"), guide, "How do I rotate an API key?"],
          {
            env: { PATH: process.env.PATH ?? "", HUB_URL: `${rig.baseUrl}/v1`, HUB_API_KEY: rig.keys.pipeline.key },
            cwd: ROOT,
          },
        );
        expect(stdout).toContain("answer from llama.cpp");
        // The example's 1000-character chunks hold this short guide whole: one source.
        expect(stdout).toMatch(
          /^Sources:\n\[1\] guide\.md: # converted by docling-serve # Inference hub operations guide/m,
        );
        expect(
          received()
            .slice(seen.embedder)
            .map((r) => r.json!.model),
        ).toEqual([MODEL, MODEL]);
        const asked = rig.standIns.fallback!.received.slice(seen.coder);
        expect(asked).toHaveLength(1);
        const prompt = JSON.stringify(asked[0].json!.messages);
        expect(prompt).toContain("[1] (guide.md) # converted by docling-serve");
        expect(prompt).toContain("To rotate an API key, create a new key");
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  },
);
