import { describe, expect, it } from "vitest";
import { vllmArgLists } from "../cli/plan/document";
import { coderServeArgs } from "../services/vllm";
import { TIERS } from "../stacks/settings";
import { mustLoad } from "./helpers/load";
import { coderMatrix, VLLM_REFERENCE, vllmArgProblems } from "./helpers/vllm-reference";

describe("the validator itself", () => {
  it("rejects what vLLM rejects", () => {
    expect(vllmArgProblems(["--model", "x"])).not.toEqual([]);
    expect(vllmArgProblems(["m", "--max_model_len", "4096"])).not.toEqual([]);
    expect(vllmArgProblems(["m", "--quantization", "int8"])).not.toEqual([]);
    expect(vllmArgProblems(["m", "--enable-prefix-caching", "true"])).not.toEqual([]);
    expect(vllmArgProblems(["m", "--swap-space", "4"])).not.toEqual([]);
    expect(vllmArgProblems(["m", "--max-model-len"])).not.toEqual([]);
    expect(vllmArgProblems(["m", "-tp", "2", "--quantization", "fp8"])).toEqual([]);
  });
});

describe("every vLLM command line the stack renders is accepted by vLLM 0.24.0", () => {
  it("for every tier preset", () => {
    for (const tier of TIERS) {
      const hub = mustLoad({ tier });
      for (const { node, service, args } of vllmArgLists(hub))
        expect(vllmArgProblems(args), `${tier} ${node} ${service}: ${args.join(" ")}`).toEqual([]);
    }
  });

  it("for every model x quantization x GPU size that passes the checks", () => {
    let checked = 0;
    const flagsSeen = new Set<string>();
    for (const { label, result: r } of coderMatrix()) {
      if (!r.ok || r.config.coder.backend !== "vllm") continue;
      const args = coderServeArgs(r.config.coder);
      expect(vllmArgProblems(args), `${label}: ${args.join(" ")}`).toEqual([]);
      args.filter((a) => a.startsWith("--")).forEach((a) => flagsSeen.add(a));
      checked++;
    }
    // The matrix exercised the formats (the pre-quantized FP8 checkpoint's compressed-tensors among them), expert parallelism and the loader.
    expect(checked).toBeGreaterThan(30);
    expect([...flagsSeen]).toEqual(
      expect.arrayContaining([
        "--quantization",
        "--enable-expert-parallel",
        "--tensor-parallel-size",
        "--safetensors-load-strategy",
      ]),
    );
    const hybrid = coderServeArgs(mustLoad({ tier: "hybrid" }).coder as Parameters<typeof coderServeArgs>[0]);
    expect(hybrid.join(" ")).toContain("--quantization compressed-tensors");
    expect(hybrid.join(" ")).toContain("--safetensors-load-strategy prefetch");
  });

  it("serves on vLLM's own default port and health path", () => {
    const hub = mustLoad({ tier: "gpu" });
    const coder = vllmArgLists(hub).find((v) => v.service === "coder")!;
    expect(coder.args[coder.args.indexOf("--port") + 1]).toBe(String(VLLM_REFERENCE.server.default_port));
  });

  it("gives DeepSeek-OCR the recipe's flags and a port of its own", () => {
    const hub = mustLoad({ tier: "gpu" });
    const ocr = vllmArgLists(hub).find((v) => v.service === "ocr")!.args;
    expect(ocr[0]).toBe("deepseek-ai/DeepSeek-OCR");
    expect(ocr).toEqual(
      expect.arrayContaining(["--no-enable-prefix-caching", "--logits-processors", "--mm-processor-cache-gb"]),
    );
    expect(ocr[ocr.indexOf("--mm-processor-cache-gb") + 1]).toBe("0");
    const coder = vllmArgLists(hub).find((v) => v.service === "coder")!.args;
    expect(ocr[ocr.indexOf("--port") + 1]).not.toBe(coder[coder.indexOf("--port") + 1]);
  });
});
