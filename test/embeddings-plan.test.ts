import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { SCOPES } from "../programs/gatekeeper/protocol";
import { readEmbeddingsConfig } from "../programs/embeddings/main";
import { coderSpecs } from "../services/coder";
import { embedderArgs, embeddingsSpecs } from "../services/embeddings";
import { errorPages } from "../services/gateway";
import { LLAMA_CPP_SERVER_IMAGE, NODE_IMAGE } from "../services/images";
import { EMBEDDINGS_ROUTE, routeTable } from "../services/routes";
import { EMBEDDING_MODELS } from "../stacks/catalogue/embeddings";
import { CPU_SERVICE_RAM } from "../stacks/catalogue/models";
import { TIERS } from "../stacks/settings";
import { loadSettings as load, mustLoad, ROOT } from "./helpers/load";
import { LLAMA_REFERENCE_FILE, llamaServerArgProblems } from "./helpers/llama-reference";

const HUBS = TIERS.map((tier) => ({ tier, hub: mustLoad({ tier }) }));
const argAfter = (args: readonly string[], flag: string) => args[args.indexOf(flag) + 1];
const GIB = 2 ** 30;

describe("the embedder in the plan", () => {
  it.each(HUBS)("$tier: serves /v1/embeddings and still fits the CPU node's RAM", ({ hub }) => {
    expect(hub.embeddings?.model.id).toBe("qwen3-embedding-0.6b");
    const cpu = hub.nodes.find((n) => n.kind === "cpu")!;
    const roles = cpu.workloads.map((w) => w.role);
    expect(roles).toEqual(expect.arrayContaining(["embeddings", "embedder"]));
    const sum = CPU_SERVICE_RAM.system.ramGiB + cpu.workloads.reduce((a, w) => a + (w.ramGiB ?? 0), 0);
    expect(cpu.ramNeededGiB).toBeCloseTo(sum, 9);
    expect(sum).toBeLessThanOrEqual(cpu.ramGiB!);
  });

  it("counts the embedder as the GGUF, one slot's f16 KV cache and the compute buffers", () => {
    const { embeddings } = mustLoad({ tier: "gpu" });
    // Q8_0 file 0.639 GB; Qwen3-0.6B: 28 layers x 8 KV heads x 128 x (K and V) x 2 bytes per token, 2048 tokens; 0.25 GiB buffers.
    const expected = 0.639e9 / GIB + (28 * 8 * 128 * 2 * 2 * 2048) / GIB + 0.25;
    expect(embeddings!.ramGiB).toBeCloseTo(expected, 9);
    expect(embeddings!.ramGiB).toBeCloseTo(1.064, 3);
  });

  it("sizes the cpu and hybrid CPU nodes up for it, and says what turning it off saves", () => {
    expect(mustLoad({ tier: "cpu" }).cpuNode.size.slug).toBe("c-16");
    expect(mustLoad({ tier: "hybrid" }).cpuNode.size.slug).toBe("s-8vcpu-16gb");
    // Without the embedder the old sizes fit again.
    for (const [tier, cpuSize] of [
      ["cpu", "c-8"],
      ["hybrid", "c-4"],
    ] as const) {
      const hub = mustLoad({ tier, cpuSize, embeddingModel: "none", ...(tier === "cpu" ? { budgetUsd: 250 } : {}) });
      expect(hub.embeddings).toBeUndefined();
      expect(routeTable(hub).some((r) => r.name === EMBEDDINGS_ROUTE)).toBe(false);
      expect(embeddingsSpecs(hub)).toEqual([]);
    }
    const refused = load({ tier: "hybrid", cpuSize: "c-4" });
    expect(refused.ok).toBe(false);
    if (!refused.ok) {
      const p = refused.problems.find((x) => x.keys.includes("cpuSize"))!;
      expect(p.message).toContain("embedder (llama.cpp) 1.06");
      expect(p.fix).toContain("set embeddingModel to none");
    }
  });

  it("refuses an unknown embedding model, naming the catalogue", () => {
    const r = load({ tier: "gpu", embeddingModel: "qwen3-embeding-0.6b" });
    expect(r.ok).toBe(false);
    if (!r.ok) {
      const p = r.problems.find((x) => x.keys.includes("embeddingModel"))!;
      expect(p.message).toContain("is not an embedding model in the catalogue");
      expect(p.fix).toContain("qwen3-embedding-0.6b");
    }
  });

  it("keeps every catalogue figure with its source", () => {
    for (const m of EMBEDDING_MODELS) {
      for (const s of [
        m.gguf.source,
        m.sources.shape,
        m.sources.quality,
        ...(m.matryoshka ? [m.matryoshka.source] : []),
        ...(m.endOfText ? [m.endOfText.source] : []),
      ]) {
        expect(s.source.length).toBeGreaterThan(10);
        expect(s.read).toMatch(/^\d{4}-\d{2}-\d{2}$/);
      }
    }
  });
});

describe("the embedder's containers", () => {
  const hub = mustLoad({ tier: "hybrid" });
  const [front, embedder] = embeddingsSpecs(hub);

  it("give llama-server only flags its own b10573 option table has", () => {
    expect(embedder.image).toBe(LLAMA_CPP_SERVER_IMAGE);
    expect(llamaServerArgProblems(embedder.command)).toEqual([]);
    // The coder's and the fallback's too (the same image).
    for (const tier of TIERS)
      for (const s of coderSpecs(mustLoad({ tier })).filter((x) => x.image === LLAMA_CPP_SERVER_IMAGE))
        expect(llamaServerArgProblems(s.command), `${tier} ${s.name}`).toEqual([]);
    // The check has teeth: a misspelt flag, a switch given a value, a bad choice.
    expect(llamaServerArgProblems(["--embedding-mode", "--metrics", "yes", "--pooling", "max"])).toEqual([
      "--embedding-mode is not an option of llama-server b10573",
      '--metrics takes no value but is followed by "yes"',
      "--pooling max is not one of none, mean, cls, last, rank",
    ]);
  });

  it("run the model in embedding mode with last-token pooling, one slot and batch of the served context", () => {
    const plan = hub.embeddings!;
    const args = embedder.command;
    expect(argAfter(args, "-hf")).toBe("Qwen/Qwen3-Embedding-0.6B-GGUF:Q8_0");
    expect(argAfter(args, "--alias")).toBe("qwen3-embedding-0.6b");
    expect(args).toContain("--embeddings");
    expect(argAfter(args, "--pooling")).toBe("last");
    for (const flag of ["--ctx-size", "--batch-size", "--ubatch-size"]) expect(argAfter(args, flag)).toBe("2048");
    expect(argAfter(args, "--parallel")).toBe("1");
    expect(argAfter(args, "--override-kv")).toBe("tokenizer.ggml.add_eos_token=bool:false");
    expect(Number(argAfter(args, "--port"))).toBe(embedder.port);
    // Hybrid runs a CPU fallback coder: the embedder keeps to the two reserved cores.
    expect(argAfter(args, "--threads")).toBe("2");
    expect(argAfter(embedderArgs(mustLoad({ tier: "gpu" }).embeddings!, 2), "--threads")).toBe("2");
    expect(argAfter(embeddingsSpecs(mustLoad({ tier: "gpu" }))[1].command, "--threads")).toBe(String(4 - 2));
    expect(embedder.secretEnv).toEqual({ LLAMA_API_KEY: "hubApiKey" });
    expect(embedder.memoryLimitMiB).toBeGreaterThanOrEqual(Math.floor(plan.ramGiB * 1024));
  });

  it("configure the front with the catalogue's model, which its own config reader accepts", () => {
    expect(front.image).toBe(NODE_IMAGE);
    expect(front.secretEnv).toEqual({});
    const read = readEmbeddingsConfig(front.env);
    expect(read.ok).toBe(true);
    if (!read.ok) return;
    expect(read.config.models).toEqual([
      expect.objectContaining({
        name: "qwen3-embedding-0.6b",
        upstream: `http://embedder:${embedder.port}`,
        upstreamModel: "qwen3-embedding-0.6b",
        dimensions: 1024,
        matryoshkaMin: 32,
        maxInputTokens: 2048,
        vocabSize: 151669,
        endOfText: { text: "<|endoftext|>", tokenId: 151643 },
        maxInputs: 2048,
      }),
    ]);
    expect(read.config.port).toBe(front.port);
    expect(readEmbeddingsConfig({}).ok).toBe(false);
  });

  it("route /v1/embeddings under its own scope, buffered, to the front", () => {
    const route = routeTable(hub).find((r) => r.name === EMBEDDINGS_ROUTE)!;
    expect(SCOPES).toContain("embeddings");
    expect(route.scope).toBe("embeddings");
    expect(route.paths).toEqual(["/v1/embeddings", "/v1/models/qwen3-embedding-0.6b"]);
    expect(route.streaming).toBe(false);
    expect(route.primary.map((b) => [b.node, b.address, b.port])).toEqual([
      ["cpu", { kind: "container", container: front.name }, front.port],
    ]);
    const timeout = errorPages(hub, [route]).find((p) => p.path === `/errors/${EMBEDDINGS_ROUTE}/504`)!;
    expect(timeout.body.error.message).toContain("Send fewer or shorter inputs per request.");
  });
});

describe("llama-server's option table", () => {
  it("is the file its README records", () => {
    const readme = readFileSync(path.join(ROOT, "test/fixtures/llama-cpp/README.md"), "utf8");
    const recorded = /\| server-args-b10573\.json \| ([0-9a-f]{64}) \|/.exec(readme)?.[1];
    expect(createHash("sha256").update(readFileSync(LLAMA_REFERENCE_FILE)).digest("hex")).toBe(recorded);
  });
});
