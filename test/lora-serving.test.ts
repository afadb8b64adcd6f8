import { spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { loraGuardSource } from "../services/backend-header";
import { hubServiceSpecs } from "../services";
import { routeTable } from "../services/routes";
import { coderServeArgs } from "../services/vllm";
import { LORA_MODEL_SHAPES } from "../stacks/catalogue/lora";
import { MODELS } from "../stacks/catalogue/models";
import { loraSlotBytesPerGpu, parseAdapterEntry, vllmMaxLoraRank } from "../stacks/lora";
import { loadSettings, mustLoad } from "./helpers/load";
import { coderMatrix, VLLM_REFERENCE, vllmArgProblems } from "./helpers/vllm-reference";

const qwen32 = MODELS.find((m) => m.id === "qwen2.5-coder-32b")!;
const gqa = (id: string) => {
  const a = MODELS.find((m) => m.id === id)!.attention;
  if (a.kind !== "gqa") throw new Error(id);
  return a;
};
const ADAPTERS = ["myteam=volume:adapters/myteam@16", "sql=hf:jeeejeee/llama32-3b-text2sql-spider@8"];
const problemsOf = (settings: Record<string, unknown>) => {
  const r = loadSettings(settings);
  return r.ok ? [] : r.problems;
};

describe("adapter entries", () => {
  it("read name, source and rank", () => {
    const r = parseAdapterEntry("myteam=volume:adapters/myteam@16", "coder");
    expect(r).toEqual({
      ok: true,
      adapter: {
        name: "myteam",
        servedName: "coder-myteam",
        source: { kind: "volume", path: "adapters/myteam" },
        rank: 16,
      },
    });
    expect(parseAdapterEntry("sql=hf:owner/repo@8", "coder")).toMatchObject({
      ok: true,
      adapter: { source: { kind: "hf", repo: "owner/repo" } },
    });
  });
  it("refuse what vLLM or the volume could not take, saying why", () => {
    const bad = [
      "Team=volume:adapters/team@16",
      "x=s3:bucket/key@8",
      "x=volume:/etc/passwd@8",
      "x=volume:adapters/../x@8",
      "x=hf:not-a-repo@8",
      "x=hf:a/b@",
      "x=hf:a/b@0",
      "x=hf:a/b",
    ];
    for (const entry of bad) expect(parseAdapterEntry(entry, "coder"), entry).toMatchObject({ ok: false });
  });
  it("round the rank up to a --max-lora-rank vLLM 0.24 accepts, and refuse above 512", () => {
    const allowed = VLLM_REFERENCE.other_choices["--max-lora-rank"].values.map(Number);
    expect(vllmMaxLoraRank(16)).toBe(16);
    expect(vllmMaxLoraRank(17)).toBe(32);
    expect(vllmMaxLoraRank(300)).toBe(320);
    expect(vllmMaxLoraRank(513)).toBeUndefined();
    // Every rank the stack can pick is one the pinned argument list allows.
    for (let r = 1; r <= 512; r++) expect(allowed).toContain(vllmMaxLoraRank(r));
  });
});

describe("the LoRA slots' GPU memory, worked by hand", () => {
  it("Qwen2.5-32B: 16 MiB per rank per slot with all seven projections (FACTS.md)", () => {
    // Per layer and rank: qkv 3*5120 + (5120+1024+1024) = 22,528; o 5120 + 5120 = 10,240;
    // gate_up 2*5120 + 2*27648 = 65,536; down 27648 + 5120 = 32,768. Sum 131,072 x 2 bytes x 64 layers.
    const perRankPerSlot = 131_072 * 2 * 64;
    expect(perRankPerSlot).toBe(16 * 2 ** 20);
    expect(loraSlotBytesPerGpu(LORA_MODEL_SHAPES["qwen2.5-coder-32b"], gqa("qwen2.5-coder-32b"), 1, 16, 1)).toBe(
      256 * 2 ** 20,
    );
    expect(loraSlotBytesPerGpu(LORA_MODEL_SHAPES["qwen2.5-coder-32b"], gqa("qwen2.5-coder-32b"), 4, 64, 1)).toBe(
      4 * 2 ** 30,
    );
  });
  it("tensor parallelism splits lora_b of column-parallel layers and lora_a of row-parallel ones", () => {
    // At tp 2: qkv 15360 + 3584, o 2560 + 5120, gate_up 10240 + 27648, down 13824 + 5120 = 83,456.
    expect(loraSlotBytesPerGpu(LORA_MODEL_SHAPES["qwen2.5-coder-32b"], gqa("qwen2.5-coder-32b"), 1, 1, 2)).toBe(
      83_456 * 2 * 64,
    );
  });
  it("CodeLlama also keeps a slot on lm_head (hidden + vocabulary per rank)", () => {
    // 48 layers x (3*8192 + 8192+1024+1024 + 8192+8192 + 2*8192+2*22016 + 22016+8192) + (8192 + 32000).
    const perRank = 48 * (24_576 + 10_240 + 16_384 + 60_416 + 30_208) + 40_192;
    expect(loraSlotBytesPerGpu(LORA_MODEL_SHAPES["codellama-34b"], gqa("codellama-34b"), 1, 8, 1)).toBe(
      perRank * 8 * 2,
    );
  });
});

describe("adapters through the plan: fit, quantization, tier", () => {
  it("the fit counts the slots, and an over-full GPU names them with the fix", () => {
    const hub = mustLoad({ tier: "gpu", llmLoraAdapters: ADAPTERS, llmMaxLoras: 2 });
    if (hub.coder.backend !== "vllm") throw new Error("vllm expected");
    // Two adapters, ranks 16 and 8: two slots at --max-lora-rank 16 = 512 MiB.
    expect(hub.coder.lora).toMatchObject({ maxLoras: 2, maxRank: 16, maxCpuLoras: 2 });
    expect(hub.coder.fit.loraGB).toBeCloseTo((2 * 16 * 2 ** 20 * 16) / 1e9, 6);
    const without = mustLoad({ tier: "gpu" });
    if (without.coder.backend !== "vllm") throw new Error("vllm expected");
    expect(hub.coder.fit.neededPerGpuGB - without.coder.fit.neededPerGpuGB).toBeCloseTo(hub.coder.fit.loraGB, 9);
    expect(hub.coder.fit.fullContextSequences).toBeLessThanOrEqual(without.coder.fit.fullContextSequences);

    // 16 slots at rank 512: 16 x 512 x 16 MiB = 128 GiB of slots; no H100 holds that.
    const big = Array.from({ length: 16 }, (_, i) => `a${i}=hf:owner/adapter-${i}@512`);
    const problems = problemsOf({ tier: "gpu", llmLoraAdapters: big, llmMaxLoras: 16 });
    const fit = problems.find((p) => p.message.includes("LoRA slots"));
    expect(fit, JSON.stringify(problems)).toBeDefined();
    expect(fit!.keys).toContain("llmLoraAdapters");
    expect(fit!.fix).toMatch(/llmMaxLoras/);
  });

  it("refuses a model, tier or rank vLLM cannot serve with LoRA, with the reason", () => {
    const deepseek = problemsOf({ tier: "multigpu", llmLoraAdapters: ["x=hf:owner/repo@8"] });
    expect(deepseek.some((p) => p.keys.includes("llmLoraAdapters") && /fused-MoE|DeepSeek-V3/.test(p.message))).toBe(
      true,
    );
    const cpu = problemsOf({ tier: "cpu", llmLoraAdapters: ["x=hf:owner/repo@8"] });
    expect(cpu.some((p) => p.keys.includes("llmLoraAdapters") && /llama\.cpp/.test(p.message))).toBe(true);
    const rank = problemsOf({ tier: "gpu", llmLoraAdapters: ["x=hf:owner/repo@600"] });
    expect(rank.some((p) => /up to 512/.test(p.message))).toBe(true);
    const twice = problemsOf({ tier: "gpu", llmLoraAdapters: ["x=hf:owner/repo@8", "x=hf:owner/other@8"] });
    expect(twice.some((p) => /twice/.test(p.message))).toBe(true);
    // Several problems at once, each named.
    const many = problemsOf({ tier: "gpu", llmLoraAdapters: ["Bad=hf:a/b@8", "y=hf:a/b@9999"] });
    expect(many.filter((p) => p.keys.includes("llmLoraAdapters")).length).toBe(2);
  });

  it("warns where vLLM has no test for the combination, and accepts the tested ones", () => {
    const fp8 = loadSettings({ tier: "gpu", llmLoraAdapters: ADAPTERS });
    expect(fp8.ok && fp8.config.warnings.some((w) => w.keys.includes("llmLoraAdapters") && /FP8/.test(w.message))).toBe(
      true,
    );
    const awq = loadSettings({ tier: "gpu", llmQuantization: "4bit", llmLoraAdapters: ADAPTERS });
    expect(awq.ok && awq.config.warnings.some((w) => w.keys.includes("llmLoraAdapters"))).toBe(false);
    const amd = loadSettings({
      tier: "gpu",
      region: "atl1",
      gpuSize: "gpu-mi300x1-192gb",
      llmQuantization: "4bit",
      ocrEngine: "docling",
      cpuSize: "c-8",
      llmLoraAdapters: ADAPTERS,
      budgetUsd: 5000,
    });
    expect(amd.ok && amd.config.warnings.some((w) => /ROCm/.test(w.message))).toBe(true);
  });
});

describe("the vLLM command line with adapters", () => {
  it("is accepted by vLLM 0.24.0's argument list for every model x quantization x size that plans", () => {
    let checked = 0;
    for (const { label, result: r } of coderMatrix({ llmLoraAdapters: ADAPTERS, llmMaxLoras: 2 })) {
      if (!r.ok) {
        // Refused only with a reason that names a setting.
        expect(r.problems.every((p) => p.keys.length > 0 && p.message.length > 0)).toBe(true);
        continue;
      }
      if (r.config.coder.backend !== "vllm") continue;
      const args = coderServeArgs(r.config.coder);
      expect(vllmArgProblems(args), `${label}: ${args.join(" ")}`).toEqual([]);
      checked++;
    }
    expect(checked).toBeGreaterThan(20);
  });

  it("names every adapter coder-<name> with coder as its parent, in one --lora-modules", () => {
    const hub = mustLoad({ tier: "gpu", llmLoraAdapters: ADAPTERS });
    if (hub.coder.backend !== "vllm") throw new Error("vllm expected");
    const args = coderServeArgs(hub.coder);
    for (const flag of ["--enable-lora", "--max-loras", "--max-lora-rank", "--max-cpu-loras", "--lora-modules"])
      expect(VLLM_REFERENCE.flags).toContain(flag);
    expect(args.filter((a) => a === "--lora-modules")).toHaveLength(1);
    const start = args.indexOf("--lora-modules") + 1;
    const modules = args.slice(start, start + 2).map((a) => JSON.parse(a));
    expect(modules).toEqual([
      { name: "coder-myteam", path: "/adapters/myteam", base_model_name: "coder" },
      { name: "coder-sql", path: "jeeejeee/llama32-3b-text2sql-spider", base_model_name: "coder" },
    ]);
    expect(args).not.toContain("--lora-extra-vocab-size"); // removed in 0.24.0
  });

  it("mounts the volume's adapters read-only and guards the start, only when a volume adapter is listed", () => {
    const withVolume = hubServiceSpecs(mustLoad({ tier: "gpu", llmLoraAdapters: ADAPTERS })).find(
      (s) => s.name === "coder" && s.program === "vllm",
    )!;
    expect(withVolume.mounts).toContainEqual({
      hostPath: "/mnt/model-cache/adapters",
      containerPath: "/adapters",
      readOnly: true,
    });
    expect(withVolume.entrypoint?.join("\n")).toContain("hub_lora_guard.py");
    const hfOnly = hubServiceSpecs(mustLoad({ tier: "gpu", llmLoraAdapters: ["sql=hf:owner/repo@8"] })).find(
      (s) => s.name === "coder" && s.program === "vllm",
    )!;
    expect(hfOnly.mounts.some((m) => m.containerPath === "/adapters")).toBe(false);
    expect(hfOnly.entrypoint?.join("\n")).toContain('exec vllm serve "$@"');
  });

  it("the models list the gateway routes to shows coder-<adapter>", () => {
    const coder = routeTable(
      mustLoad({ tier: "hybrid", gpuEnabled: true, llmLoraAdapters: ADAPTERS, budgetUsd: 1000 }),
    ).find((r) => r.name === "coder")!;
    expect(coder.paths).toContain("/v1/models");
    expect(coder.models).toEqual(["coder", "coder-myteam", "coder-sql"]);
    expect(routeTable(mustLoad({ tier: "gpu" })).find((r) => r.name === "coder")!.models).toBeUndefined();
  });
});

describe("the start guard (services/launchers/hub_lora_guard.py) run by python3 against a stand-in vllm", () => {
  it("drops a volume adapter the volume lacks, keeps the present one and every Hugging Face one", () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "lora-guard-"));
    const bin = path.join(dir, "bin");
    mkdirSync(bin);
    // Stand-in for the vllm executable: records the arguments it was started with.
    writeFileSync(
      path.join(bin, "vllm"),
      `#!/usr/bin/env python3\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n`,
    );
    chmodSync(path.join(bin, "vllm"), 0o755);
    const present = path.join(dir, "adapters", "present");
    mkdirSync(present, { recursive: true });
    writeFileSync(path.join(present, "adapter_config.json"), "{}");
    writeFileSync(path.join(dir, "guard.py"), loraGuardSource());
    const module = (name: string, p: string) => JSON.stringify({ name, path: p, base_model_name: "coder" });
    const args = [
      "Qwen/Qwen2.5-Coder-32B-Instruct",
      "--enable-lora",
      "--lora-modules",
      module("coder-present", present),
      module("coder-missing", path.join(dir, "adapters", "missing")),
      module("coder-hf", "owner/repo"),
      "--middleware",
      "x.Y",
    ];
    const run = spawnSync("python3", [path.join(dir, "guard.py"), ...args], {
      encoding: "utf8",
      env: { ...process.env, PATH: `${bin}:${process.env.PATH}` },
    });
    expect(run.status, run.stderr).toBe(0);
    const started = JSON.parse(run.stdout) as string[];
    expect(started.slice(0, 2)).toEqual(["serve", "Qwen/Qwen2.5-Coder-32B-Instruct"]);
    expect(started.join(" ")).toContain("coder-present");
    expect(started.join(" ")).toContain("coder-hf");
    expect(started.join(" ")).not.toContain("coder-missing");
    expect(started.slice(-2)).toEqual(["--middleware", "x.Y"]);
    expect(run.stderr).toMatch(/coder-missing is not on this node's model-cache volume/);

    // With every listed adapter missing, --lora-modules goes too (vLLM would refuse it empty).
    const none = spawnSync(
      "python3",
      [path.join(dir, "guard.py"), "m", "--lora-modules", module("coder-missing", path.join(dir, "nope"))],
      { encoding: "utf8", env: { ...process.env, PATH: `${bin}:${process.env.PATH}` } },
    );
    expect(JSON.parse(none.stdout)).toEqual(["serve", "m"]);
  });
});

describe("the plan for the default coder with adapters", () => {
  it("fits qwen2.5-coder-32b at FP8 on one H100 with 4 slots at rank 64 (4 GiB of slots)", () => {
    const adapters = ["a=hf:o/a@64", "b=hf:o/b@64", "c=hf:o/c@64", "d=hf:o/d@64"];
    const hub = mustLoad({ tier: "gpu", llmLoraAdapters: adapters, llmMaxLoras: 4 });
    if (hub.coder.backend !== "vllm") throw new Error("vllm expected");
    expect(hub.coder.model).toBe(qwen32);
    expect(hub.coder.fit.loraGB).toBeCloseTo((4 * 2 ** 30) / 1e9, 9);
  });
});
