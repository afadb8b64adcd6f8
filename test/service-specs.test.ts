import { describe, expect, it } from "vitest";
import { coderSpecs } from "../services/coder";
import { documentSpecs, doclingSpec } from "../services/documents";
import { FORWARDING_TIMEOUTS } from "../services/gateway";
import {
  COQUI_TTS_CPU_IMAGE,
  DOCLING_SERVE_CPU_IMAGE,
  GRAFANA_IMAGE,
  IMAGES,
  LLAMA_CPP_SERVER_IMAGE,
  SPEACHES_CPU_IMAGE,
  VLLM_CUDA_IMAGE,
  VLLM_ROCM_IMAGE,
} from "../services/images";
import { grafanaSpec } from "../services/grafana";
import { hubServiceSpecs } from "../services/index";
import { embeddingsSpecs } from "../services/embeddings";
import { CPU_CACHE_MOUNT, MODEL_CACHE_MOUNT } from "../services/node-setup";
import { CODER_OFF_SERVICE, routeTable } from "../services/routes";
import { autoscalerSpec } from "../services/autoscaler";
import type { ImageRef, ServiceSpec } from "../services/spec";
import { imageName } from "../services/spec";
import { sttSpec, ttsSpec } from "../services/speech";
import { VLLM_VERSION } from "../services/vllm";
import { CPU_SERVICE_RAM } from "../stacks/catalogue/models";
import type { HubConfig, Program } from "../stacks/hub-config";
import { CODER_SERVED_NAME } from "../stacks/hub-config";
import { TIERS } from "../stacks/settings";
import { mustLoad } from "./helpers/load";
import { vllmArgProblems } from "./helpers/vllm-reference";

/** What this suite's files produce; the gateway and its error page come from services/gateway.ts. */
const specsOf = (hub: HubConfig): ServiceSpec[] => [
  sttSpec(hub),
  ttsSpec(hub),
  ...coderSpecs(hub),
  ...documentSpecs(hub),
];
/** With Grafana (test/dashboards.test.ts checks its spec): what the gateway can route to. */
const routableSpecsOf = (hub: HubConfig): ServiceSpec[] => [
  ...specsOf(hub),
  ...(hub.grafana ? [grafanaSpec(hub)] : []),
  ...embeddingsSpecs(hub),
];

const CASES: readonly { readonly label: string; readonly settings: Record<string, unknown> }[] = [
  ...TIERS.map((tier) => ({ label: `${tier} preset`, settings: { tier } })),
  { label: "hybrid, GPU on", settings: { tier: "hybrid", gpuEnabled: true } },
  { label: "hybrid, GPU off", settings: { tier: "hybrid", gpuEnabled: false } },
  { label: "gpu with a CPU OCR fallback", settings: { tier: "gpu", ocrCpuFallback: true, cpuSize: "c-8" } },
  { label: "gpu, two replicas", settings: { tier: "gpu", gpuCount: 2, budgetUsd: 6000 } },
  {
    label: "AMD MI300X",
    settings: { tier: "gpu", region: "atl1", gpuSize: "gpu-mi300x1-192gb", ocrEngine: "docling", cpuSize: "c-8" },
  },
];
const HUBS = CASES.map((c) => ({ ...c, hub: mustLoad(c.settings) }));

/** Independent of the code under test: which image runs each program the placement names. */
function expectedImage(hub: HubConfig, program: Program): ImageRef {
  switch (program) {
    case "vllm":
      return hub.gpu?.size.vendor === "amd" ? VLLM_ROCM_IMAGE : VLLM_CUDA_IMAGE;
    case "llama.cpp":
      return LLAMA_CPP_SERVER_IMAGE;
    case "speaches":
      return SPEACHES_CPU_IMAGE;
    case "coqui-tts":
      return COQUI_TTS_CPU_IMAGE;
    case "docling-serve":
      return DOCLING_SERVE_CPU_IMAGE;
    case "grafana":
      return GRAFANA_IMAGE;
    case "traefik":
    case "nginx":
    case "gatekeeper":
    case "autoscaler":
      throw new Error("the gateway, the gatekeeper and the autoscaler are not produced by these files");
    case "sandbox-front":
    case "gvisor":
      throw new Error("the sandbox's front and node are checked in test/sandbox-deploy.test.ts");
    case "embeddings":
      throw new Error("the embeddings containers are checked in test/embeddings-plan.test.ts");
    case "prometheus":
    case "alertmanager":
    case "node-exporter":
    case "dcgm-exporter":
    case "amd-device-metrics-exporter":
      throw new Error("monitoring containers are checked in test/monitoring.test.ts");
  }
}

/** Binaries each image ships (evidence in services/images.ts): the health test must use one. */
const SHIPPED: ReadonlyMap<ImageRef, readonly string[]> = new Map([
  [VLLM_CUDA_IMAGE, ["python3", "curl"]],
  [VLLM_ROCM_IMAGE, ["python3", "curl"]],
  [LLAMA_CPP_SERVER_IMAGE, ["curl"]],
  [SPEACHES_CPU_IMAGE, ["python3", "curl"]],
  [COQUI_TTS_CPU_IMAGE, ["python3"]],
  [DOCLING_SERVE_CPU_IMAGE, ["python3"]],
]);

const MONITORING_ROLES: readonly string[] = ["prometheus", "alertmanager", "node-exporter", "gpu-exporter"];
const key = (node: string, name: string, image: ImageRef) => `${node}/${name} ${imageName(image)}`;
const argAfter = (args: readonly string[], flag: string) => args[args.indexOf(flag) + 1];
const MIB_PER_GIB = 1024;

describe.each(HUBS)("service specs: $label", ({ hub }) => {
  const specs = specsOf(hub);

  it("run exactly the placement's workloads, on its nodes, from the right images", () => {
    const expected = hub.nodes
      .filter((n) => n.active)
      .flatMap((n) =>
        n.workloads
          .filter(
            (w) =>
              w.role !== "gateway" &&
              w.role !== "gatekeeper" &&
              w.role !== "autoscaler" &&
              !MONITORING_ROLES.includes(w.role) &&
              w.role !== "grafana" &&
              w.role !== "embeddings" &&
              w.role !== "embedder",
          )
          .map((w) => key(n.name, w.role, expectedImage(hub, w.program))),
      );
    expect(specs.map((s) => key(s.node, s.name, s.image)).sort()).toEqual(expected.sort());
    // Names are unique per node: Docker would refuse a second container of the same name.
    expect(new Set(specs.map((s) => `${s.node}/${s.name}`)).size).toBe(specs.length);
    // Each spec says it runs the program the placement chose for its role.
    for (const spec of specs)
      expect(spec.program, `${spec.node}/${spec.name}`).toBe(
        hub.nodes.find((n) => n.name === spec.node)!.workloads.find((w) => w.role === spec.role)!.program,
      );
  });

  it("answer every backend the gateway routes to, on its port and health path", () => {
    for (const route of routeTable(hub)) {
      const backends = [...route.primary, ...(route.fallback && route.fallback !== "gpu-off" ? [route.fallback] : [])];
      for (const b of backends) {
        const name = b.address.kind === "container" ? b.address.container : b.service;
        // The controller's off-state answer is its second port, with no health check of its own.
        if (b.service === CODER_OFF_SERVICE) {
          const controller = autoscalerSpec(hub);
          expect(controller?.name).toBe(name);
          expect(controller!.env.AUTOSCALER_OFF_PORT).toBe(String(b.port));
          continue;
        }
        const spec = routableSpecsOf(hub).find((s) => s.node === b.node && s.name === name);
        expect(spec, `${route.name} → ${b.node}/${name}`).toBeDefined();
        expect(spec!.port).toBe(b.port);
        expect(spec!.health.path).toBe(b.healthPath);
        // The gateway reaches GPU nodes over the VPC, CPU containers over the Docker network.
        expect(spec!.publishOnPrivateIp ?? false).toBe(b.address.kind === "vpc");
      }
    }
  });

  it("pin every image by a real tag", () => {
    for (const s of specs) {
      expect(s.image.tag).toMatch(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/);
      expect(s.image.tag.toLowerCase()).not.toContain("latest");
      if (s.image.digest) expect(s.image.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
      expect(s.image.source.length).toBeGreaterThan(10);
    }
  });

  it("give vLLM a command vLLM 0.24.0 accepts, with the placed model first", () => {
    const placed = new Map(
      hub.nodes.flatMap((n) =>
        n.workloads.filter((w) => w.program === "vllm").map((w) => [`${n.name}/${w.role}`, w.model]),
      ),
    );
    for (const s of specs.filter((x) => x.image === VLLM_CUDA_IMAGE || x.image === VLLM_ROCM_IMAGE)) {
      expect(vllmArgProblems(s.command), s.command.join(" ")).toEqual([]);
      expect(s.command[0]).toBe(placed.get(`${s.node}/${s.name}`));
      // vllm serve directly, or a shell whose last act is `exec vllm serve "$@"` with the command as "$@".
      if (s.entrypoint?.[0] === "/bin/sh") {
        expect(s.entrypoint.slice(0, 2)).toEqual(["/bin/sh", "-c"]);
        expect(s.entrypoint[2].trimEnd().split("\n").at(-1)).toBe('exec vllm serve "$@"');
        expect(s.entrypoint).toHaveLength(4);
      } else {
        expect(s.entrypoint).toEqual(["vllm", "serve"]);
      }
      expect(Number(argAfter(s.command, "--port"))).toBe(s.port);
    }
  });

  it("keep secrets out of arguments and plain environment", () => {
    for (const s of specs) {
      const text = [...(s.entrypoint ?? []), ...s.command].join(" ");
      expect(text).not.toMatch(/--api[-_]key|hubApiKey/i);
      for (const [name, value] of Object.entries(s.env)) {
        expect(name, `${s.name}: ${name} belongs in secretEnv`).not.toMatch(/KEY|TOKEN|SECRET|PASSWORD/);
        expect(value).not.toContain("hubApiKey");
      }
      for (const name of Object.keys(s.secretEnv)) expect(s.env[name], `${s.name}: ${name} set twice`).toBeUndefined();
      expect(Object.values(s.secretEnv).every((v) => v === "hubApiKey")).toBe(true);
      // A health test may name the variable, never carry its value.
      expect(s.health.test.join(" ")).not.toContain("hubApiKey");
    }
    // Every program that can check a key is given one; Coqui's server cannot.
    const guarded = specs.filter((s) => s.image !== COQUI_TTS_CPU_IMAGE);
    for (const s of guarded) expect(Object.keys(s.secretEnv).length, s.name).toBe(1);
  });

  it("request the GPU, with its vendor and the host IPC namespace, only on GPU nodes", () => {
    const gpuNodes = new Set(hub.nodes.filter((n) => n.kind === "gpu").map((n) => n.name));
    for (const s of specs) {
      if (gpuNodes.has(s.node)) {
        expect(s.gpu).toEqual({ vendor: hub.gpu!.size.vendor });
        expect(s.ipcHost).toBe(true);
      } else {
        expect(s.gpu).toBeUndefined();
        expect(s.ipcHost ?? false).toBe(false);
      }
    }
  });

  it("mount only directories on the node's own volume", () => {
    for (const s of specs) {
      const node = hub.nodes.find((n) => n.name === s.node)!;
      const volume = node.kind === "gpu" ? MODEL_CACHE_MOUNT : CPU_CACHE_MOUNT;
      expect(s.mounts.length, s.name).toBeGreaterThan(0);
      for (const m of s.mounts) {
        expect(m.hostPath.startsWith(`${volume}/`), `${s.name}: ${m.hostPath}`).toBe(true);
        expect(m.hostPath.split("/")).not.toContain("..");
        expect(m.containerPath.startsWith("/")).toBe(true);
      }
    }
  });

  it("bound every CPU service's memory, within the CPU size's RAM", () => {
    const cpu = hub.nodes.find((n) => n.kind === "cpu")!;
    const cpuSpecs = specs.filter((s) => s.node === cpu.name);
    for (const s of cpuSpecs) {
      const placed = cpu.workloads.find((w) => w.role === s.role)!;
      expect(s.memoryLimitMiB, s.name).toBeGreaterThanOrEqual(Math.floor(placed.ramGiB! * MIB_PER_GIB));
    }
    // The kernel, Docker and the gateway keep their share too.
    const reserved =
      (CPU_SERVICE_RAM.system.ramGiB + CPU_SERVICE_RAM.gateway.ramGiB + CPU_SERVICE_RAM.gatekeeper.ramGiB) *
      MIB_PER_GIB;
    const sum = cpuSpecs.reduce((total, s) => total + s.memoryLimitMiB!, 0);
    expect(sum + reserved).toBeLessThanOrEqual(hub.cpuNode.size.ramGiB * MIB_PER_GIB);
  });

  it("check health with a binary the image ships, on the port it serves", () => {
    for (const s of specs) {
      expect(s.health.test[0]).toBe("CMD");
      expect(SHIPPED.get(s.image), imageName(s.image)).toContain(s.health.test[1]);
      expect(s.health.test.join(" ")).toContain(`127.0.0.1:${s.port}${s.health.path}`);
      expect(s.health.startPeriodSeconds).toBeGreaterThanOrEqual(300);
    }
  });

  it("serve the llama.cpp coder under vLLM's model name, sized to the CPU node", () => {
    const vcpu = hub.cpuNode.size.vcpu;
    for (const s of specs.filter((x) => x.image === LLAMA_CPP_SERVER_IMAGE)) {
      const placed = hub.nodes.flatMap((n) => n.workloads).find((w) => w.role === s.role)!;
      expect(argAfter(s.command, "-hf")).toBe(placed.model);
      expect(argAfter(s.command, "--alias")).toBe(CODER_SERVED_NAME);
      expect(argAfter(s.command, "--port")).toBe(String(s.port));
      const threads = Number(argAfter(s.command, "--threads"));
      expect(threads).toBeGreaterThanOrEqual(1);
      expect(threads).toBeLessThan(vcpu);
      const context =
        s.role === "coder-fallback"
          ? hub.fallbackCoder!.context
          : hub.coder.backend === "llama.cpp"
            ? hub.coder.context
            : NaN;
      expect(Number(argAfter(s.command, "--ctx-size"))).toBe(context);
      expect(s.env.LLAMA_CACHE && s.mounts.some((m) => m.containerPath === s.env.LLAMA_CACHE)).toBe(true);
    }
  });
});

describe("cross-service properties", () => {
  it("the fallback coder answers to the vLLM coder's served name", () => {
    const hub = mustLoad({ tier: "hybrid", gpuEnabled: true });
    const specs = coderSpecs(hub);
    const vllm = specs.find((s) => s.name === "coder")!;
    const fallback = specs.find((s) => s.name === "coder-fallback")!;
    expect(argAfter(vllm.command, "--served-model-name")).toBe(CODER_SERVED_NAME);
    expect(argAfter(fallback.command, "--alias")).toBe(argAfter(vllm.command, "--served-model-name"));
  });

  it("the AMD size runs the ROCm build of the same vLLM release", () => {
    const hub = mustLoad({
      tier: "gpu",
      region: "atl1",
      gpuSize: "gpu-mi300x1-192gb",
      ocrEngine: "docling",
      cpuSize: "c-8",
    });
    const gpuSpecs = coderSpecs(hub).filter((s) => s.gpu);
    expect(gpuSpecs.length).toBe(1);
    expect(gpuSpecs[0].image).toBe(VLLM_ROCM_IMAGE);
    expect(gpuSpecs[0].gpu).toEqual({ vendor: "amd" });
    expect(VLLM_ROCM_IMAGE.tag).toBe(`v${VLLM_VERSION}`);
    expect(VLLM_CUDA_IMAGE.tag).toBe(`v${VLLM_VERSION}`);
  });

  it("no GPU service exists while the hybrid GPU is off, and the fallback stays", () => {
    const names = coderSpecs(mustLoad({ tier: "hybrid", gpuEnabled: false })).map((s) => `${s.node}/${s.name}`);
    expect(names).toEqual(["cpu/coder-fallback"]);
  });

  it("gives vLLM's first start time to download its checkpoint", () => {
    const small = coderSpecs(mustLoad({ tier: "gpu" })).find((s) => s.name === "coder")!;
    const huge = coderSpecs(mustLoad({ tier: "multigpu" })).find((s) => s.name === "coder")!;
    // Qwen2.5-Coder-32B (65.5 GB) needs well over 15 minutes; DeepSeek-V3 (~690 GB) hours.
    expect(small.health.startPeriodSeconds).toBeGreaterThan(15 * 60);
    expect(huge.health.startPeriodSeconds).toBeGreaterThan(2 * 3600);
  });

  it("speaches fetches the configured Whisper model, maps whisper-1 to it, then serves offline", () => {
    const hub = mustLoad({ tier: "gpu", sttModel: "small" });
    const stt = sttSpec(hub);
    // Catalogue: sttModel small is faster-whisper's Systran/faster-whisper-small.
    expect(hub.stt.repo).toBe("Systran/faster-whisper-small");
    const lines = stt.command[0].split("\n");
    const at = (pattern: RegExp) => lines.findIndex((l) => pattern.test(l));
    const preload = at(/snapshot_download\("Systran\/faster-whisper-small"\)/);
    const aliases = at(/> model_aliases\.json$/);
    const offline = at(/^export HF_HUB_OFFLINE=1$/);
    const serve = at(/^exec uvicorn .*--factory hub_speaches:create_app$/);
    // In this order: fetch while online, then no download is possible for the server.
    expect([preload, aliases, offline, serve].every((i) => i >= 0)).toBe(true);
    expect(preload).toBeLessThan(offline);
    expect(offline).toBeLessThan(serve);
    expect(lines[aliases]).toContain('\'{"whisper-1":"Systran/faster-whisper-small"}\'');
    expect(stt.env).toMatchObject({
      WHISPER__INFERENCE_DEVICE: "cpu",
      WHISPER__COMPUTE_TYPE: "int8",
      HUB_STT_MODEL: "Systran/faster-whisper-small",
    });
    expect(stt.mounts.map((m) => m.containerPath)).toEqual(["/home/ubuntu/.cache/huggingface/hub"]);
  });

  it("speaches keeps the model loaded with the TTL name 0.8.3 reads", () => {
    // speaches v0.8.3 src/speaches/config.py: WhisperConfig.ttl (env WHISPER__TTL, default 300 s,
    // -1 never unloads). STT_MODEL_TTL exists only from 0.9.0-rc.1 (FACTS.md), so 0.8.3 ignores it.
    expect(SPEACHES_CPU_IMAGE.tag).toBe("0.8.3-cpu");
    const env = sttSpec(mustLoad({ tier: "cpu" })).env;
    expect(env.WHISPER__TTL).toBe("-1");
    expect(env).not.toHaveProperty("STT_MODEL_TTL");
  });

  it("Coqui serves the configured model with tts-server through the format guard", () => {
    const hub = mustLoad({ tier: "gpu", ttsModel: "tts_models/en/ljspeech/vits" });
    const tts = ttsSpec(hub);
    expect(tts.entrypoint?.slice(0, 2)).toEqual(["/bin/sh", "-c"]);
    expect(tts.entrypoint?.at(-1)).toBe("tts-server");
    expect(tts.entrypoint?.[2].trimEnd().split("\n").at(-1)).toBe('exec python3 "${TMPDIR:-/tmp}/hub_coqui.py" "$@"');
    expect(argAfter(tts.command, "--model_name")).toBe("tts_models/en/ljspeech/vits");
    // An Apache-2.0 model needs no agreement, so none is given on the user's behalf.
    expect(tts.env).not.toHaveProperty("COQUI_TOS_AGREED");
  });

  it("docling waits for a synchronous conversion almost as long as the gateway lets a backend take", () => {
    const wait = Number(doclingSpec(mustLoad({ tier: "cpu" }), "ocr").env.DOCLING_SERVE_MAX_SYNC_WAIT);
    const gateway = Number(/^(\d+)s$/.exec(FORWARDING_TIMEOUTS.responseHeaderTimeout)?.[1]);
    // docling-serve v1.31.0 settings.py: max_sync_wait default 120, sync_poll_interval 2 s; its
    // 504 comes after the first poll past the wait, which must still be before Traefik gives up.
    expect(wait).toBeGreaterThan(120);
    expect(wait + 2).toBeLessThan(gateway);
    expect(gateway - wait).toBeLessThanOrEqual(60);
  });

  it("DeepSeek-OCR's grace period covers waiting for the coder's first start", () => {
    const specs = coderSpecs(mustLoad({ tier: "gpu" }));
    const coder = specs.find((s) => s.name === "coder")!;
    const ocr = specs.find((s) => s.name === "ocr")!;
    expect(ocr.health.startPeriodSeconds).toBeGreaterThan(coder.health.startPeriodSeconds);
    // The coder itself never waits on OCR.
    expect(coder.entrypoint?.[2]).not.toContain("HUB_WAIT_FOR_HEALTH_URL");
    expect(coder.env.HUB_WAIT_FOR_HEALTH_URL).toBeUndefined();
  });

  it("refuses a docling spec the placement does not have", () => {
    expect(() => doclingSpec(mustLoad({ tier: "gpu" }), "ocr")).toThrow(/no ocr workload/);
  });

  it("lists every image once, none of them latest", () => {
    expect(new Set(IMAGES.map(imageName)).size).toBe(IMAGES.length);
    for (const image of IMAGES) expect(image.tag).not.toMatch(/latest/i);
  });
});

describe("mount layout of every container", () => {
  /** `inner` is `outer` itself or a path below it (compared by path segments, not text). */
  const within = (inner: string, outer: string) => {
    const a = inner.split("/").filter(Boolean);
    const b = outer.split("/").filter(Boolean);
    return b.every((part, i) => a[i] === part);
  };
  it.each(HUBS)(
    "$label: no mount sits inside another (runc cannot create a mount point on a read-only mount)",
    ({ hub }) => {
      const nested: string[] = [];
      for (const spec of hubServiceSpecs(hub)) {
        const paths = spec.mounts.map((m) => m.containerPath);
        for (const [i, inner] of paths.entries())
          for (const [j, outer] of paths.entries())
            if (i !== j && within(inner, outer)) nested.push(`${spec.node}/${spec.name}: ${inner} inside ${outer}`);
      }
      expect(nested).toEqual([]);
    },
  );
});
