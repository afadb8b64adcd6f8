import {
  EMBEDDER_RUNTIME_GIB,
  EMBEDDING_MODELS,
  EMBEDDINGS_ROUTER_RAM_GIB,
  findEmbeddingModel,
  SERVED_INPUT_TOKENS,
} from "./catalogue/embeddings";
import { gbToGiB } from "./catalogue/storage";
import { llamaCppRamGiB } from "./fit";
import { CPU_NODE_NAME, type EmbeddingsPlan, type Workload } from "./hub-config";
import { didYouMean } from "./load";
import { problem, type Problem } from "./problems";

/** The embedder the `embeddingModel` setting asks for, or the problem with it; undefined for none. */
export function resolveEmbeddings(id: string, problems: Problem[]): EmbeddingsPlan | undefined {
  if (id === "none") return undefined;
  const model = findEmbeddingModel(id);
  if (!model) {
    const ids = EMBEDDING_MODELS.map((m) => m.id);
    problems.push(
      problem(
        "embeddingModel",
        id,
        "is not an embedding model in the catalogue.",
        `${didYouMean(id, ids)} Embedding models: ${ids.join(", ")}; or none to serve no /v1/embeddings.`.trim(),
      ),
    );
    return undefined;
  }
  const inputTokens = Math.min(SERVED_INPUT_TOKENS, model.maxContext);
  // One slot of inputTokens: the GGUF, its f16 KV cache, and the compute buffers.
  const ram = llamaCppRamGiB(model.gguf.sizeGB, model.attention, inputTokens, EMBEDDER_RUNTIME_GIB);
  return { model, hfArg: `${model.gguf.repo}:${model.gguf.quant}`, inputTokens, ramGiB: ram.totalGiB };
}

/** The two containers /v1/embeddings needs on the CPU node: the OpenAI-shaped front and llama.cpp. */
export function embeddingsWorkloads(plan: EmbeddingsPlan | undefined): Workload[] {
  if (!plan) return [];
  return [
    {
      role: "embeddings",
      node: CPU_NODE_NAME,
      program: "embeddings",
      model: plan.model.id,
      ramGiB: EMBEDDINGS_ROUTER_RAM_GIB,
    },
    { role: "embedder", node: CPU_NODE_NAME, program: "llama.cpp", model: plan.hfArg, ramGiB: plan.ramGiB },
  ];
}

/** The GGUF on the CPU node's cache volume, GiB. */
export const embeddingsFilesGiB = (plan: EmbeddingsPlan | undefined): number =>
  plan ? gbToGiB(plan.model.gguf.sizeGB) : 0;
