import { describe, expect, it } from "vitest";
import type { RecordedResource } from "../cli/plan/mock-engine";
import { mustLoad } from "./helpers/load";
import { runProgram, T } from "./helpers/mock-run";
import { vllmArgProblems } from "./helpers/vllm-reference";

const D = {
  provider: "pulumi:providers:docker",
  container: "docker:index/container:Container",
  image: "docker:index/remoteImage:RemoteImage",
  network: "docker:index/network:Network",
};

/** Containers grouped by the node whose Docker provider runs them. */
function containersByNode(run: Awaited<ReturnType<typeof runProgram>>): Record<string, string[]> {
  const providers = run.byType(D.provider);
  const out: Record<string, string[]> = {};
  for (const c of run.byType(D.container)) {
    const provider = providers.find((p) => c.provider?.endsWith(`::${p.name}`));
    expect(provider, `container ${c.name} has a node's Docker provider`).toBeDefined();
    const node = provider!.name.replace(/-containers-docker$/, "");
    (out[node] ??= []).push(String(c.inputs.name));
  }
  for (const k of Object.keys(out)) out[k].sort();
  return out;
}

/** What the placement says each node runs, plus the gateway's own containers. */
function expectedContainers(settings: Record<string, unknown>): Record<string, string[]> {
  const hub = mustLoad(settings);
  const out: Record<string, string[]> = {};
  for (const node of hub.nodes.filter((n) => n.active)) {
    out[node.name] = [...node.workloads.map((w): string => w.role), ...(node.kind === "cpu" ? ["errors"] : [])].sort();
  }
  return out;
}

const cases: Record<string, unknown>[] = [
  { tier: "cpu" },
  { tier: "gpu" },
  { tier: "hybrid", gpuEnabled: false },
  { tier: "hybrid", gpuEnabled: true },
  { tier: "multigpu" },
  { tier: "hybrid", gpuEnabled: true, ocrCpuFallback: true, cpuSize: "c-8" },
];

describe("containers per node", () => {
  for (const settings of cases) {
    it(`${JSON.stringify(settings)}: the placement's services, each on its node's Docker`, async () => {
      const run = await runProgram(settings);
      expect(containersByNode(run)).toEqual(expectedContainers(settings));
      for (const p of run.byType(D.provider)) {
        expect(String(p.inputs.host)).toMatch(/^ssh:\/\/root@192\.0\.2\.\d+$/);
        // Docker is reached only after the node's readiness check passed.
        expect(p.options.dependsOn.some((d) => d.includes("command:remote:Command") && d.endsWith("-ready"))).toBe(
          true,
        );
      }
      for (const c of run.byType(D.container)) {
        expect(c.inputs.restart).toBe("unless-stopped");
        expect(c.inputs.logOpts).toEqual({ "max-size": "50m", "max-file": "5" });
        expect((c.inputs.healthcheck as { tests: string[] }).tests.length).toBeGreaterThan(1);
        // node_exporter shares the host's network (services/monitoring.ts) and joins no Docker network.
        if (c.inputs.networkMode === "host") expect(c.inputs.name).toBe("node-exporter");
        else expect((c.inputs.networksAdvanced as { aliases: string[] }[])[0].aliases).toEqual([c.inputs.name]);
      }
    });
  }
});

describe("GPU containers", () => {
  it("request the GPU, share the host IPC namespace, publish only on the private address, keep caches on the volume", async () => {
    const run = await runProgram({ tier: "gpu" });
    const gpuNode = run.one(T.droplet, "gpu-0-droplet");
    // The vLLM containers; the exporters beside them are checked in test/monitoring.test.ts.
    const gpuContainers = run
      .byType(D.container)
      .filter((c) => c.name.startsWith("gpu-0-containers-") && !/exporter$/.test(c.name));
    expect(gpuContainers.map((c) => c.inputs.name).sort()).toEqual(["coder", "ocr"]);
    for (const c of gpuContainers) {
      expect(c.inputs.gpus).toBe("all");
      expect(c.inputs.ipcMode).toBe("host");
      for (const p of c.inputs.ports as { ip: string }[]) expect(p.ip).toMatch(/^198\.51\.100\.\d+$/);
      for (const v of c.inputs.volumes as { hostPath: string }[])
        expect(v.hostPath.startsWith("/mnt/model-cache/")).toBe(true);
    }
    expect(gpuNode).toBeDefined();
  });

  it("AMD nodes pass /dev/kfd and /dev/dri instead of --gpus", async () => {
    const run = await runProgram({
      tier: "gpu",
      region: "atl1",
      gpuSize: "gpu-mi300x1-192gb",
      ocrEngine: "docling",
      cpuSize: "c-8",
    });
    const coder = run.byType(D.container).find((c) => c.name === "gpu-0-containers-coder")!;
    expect(coder.inputs.gpus).toBeUndefined();
    expect((coder.inputs.devices as { hostPath: string }[]).map((d) => d.hostPath)).toEqual(["/dev/kfd", "/dev/dri"]);
  });

  it("vllm-args artifacts hold exactly the container's arguments, and vLLM accepts them", async () => {
    const run = await runProgram({ tier: "gpu" });
    const args = run.artifacts.filter((a) => a.kind === "vllm-args");
    expect(args.map((a) => a.path).sort()).toEqual([
      "gpu-0/containers/coder.vllm-args.json",
      "gpu-0/containers/ocr.vllm-args.json",
    ]);
    for (const a of args) {
      const list = JSON.parse(a.content) as string[];
      expect(vllmArgProblems(list)).toEqual([]);
      const container = run
        .byType(D.container)
        .find((c) => c.name === `gpu-0-containers-${a.path.split("/").pop()!.replace(".vllm-args.json", "")}`)!;
      expect(container.inputs.command).toEqual(list);
    }
  });
});

describe("the gateway", () => {
  it("publishes 80, 443 and 8100 on every interface and metrics on the private address only", async () => {
    const run = await runProgram({ tier: "hybrid" });
    const gateway = run.byType(D.container).find((c) => c.inputs.name === "gateway")!;
    const ports = gateway.inputs.ports as { internal: number; ip: string }[];
    expect(
      ports
        .filter((p) => p.ip === "0.0.0.0")
        .map((p) => p.internal)
        .sort(),
    ).toEqual([443, 80, 8100]);
    expect(ports.find((p) => p.internal === 8082)?.ip).toMatch(/^198\.51\.100\.\d+$/);
  });

  it("route changes reach the node as a file, without replacing the Traefik container", async () => {
    const off = await runProgram({ tier: "hybrid", gpuEnabled: false }, { stack: "s" });
    const on = await runProgram({ tier: "hybrid", gpuEnabled: true }, { stack: "s" });
    const gatewayOf = (run: typeof off) => run.byType(D.container).find((c) => c.inputs.name === "gateway")!.inputs;
    expect(gatewayOf(on)).toEqual(gatewayOf(off));
    const dynamicFile = (run: typeof off) => run.byType(T.command).find((c) => c.name.endsWith("dynamic-routes.yml"))!;
    expect(dynamicFile(on).inputs.stdin).not.toEqual(dynamicFile(off).inputs.stdin);
    const dynamic = on.artifacts.find((a) => a.kind === "traefik-dynamic")!;
    expect(dynamicFile(on).inputs.stdin).toBe(dynamic.content);
  });

  it("a static-config change restarts Traefik through its config-hash label", async () => {
    const plain = await runProgram({ tier: "cpu" }, { stack: "s" });
    const tls = await runProgram(
      { tier: "cpu", domain: "hub.example.com", acmeEmail: "ops@example.com" },
      { stack: "s" },
    );
    const label = (run: typeof plain) =>
      (
        run.byType(D.container).find((c) => c.inputs.name === "gateway")!.inputs.labels as {
          label: string;
          value: string;
        }[]
      ).find((l) => l.label === "inference-hub.config-hash")!.value;
    expect(label(plain)).not.toBe(label(tls));
  });
});

describe("changes replace only what they touch", () => {
  const byName = (run: Awaited<ReturnType<typeof runProgram>>) =>
    new Map<string, RecordedResource>(run.byType(D.container).map((c) => [c.name, c]));

  it("a new model changes only the coder containers", async () => {
    const a = byName(await runProgram({ tier: "gpu" }, { stack: "s" }));
    const b = byName(await runProgram({ tier: "gpu", llmModel: "qwen2.5-coder-14b" }, { stack: "s" }));
    const changed = [...a.keys()].filter((k) => JSON.stringify(a.get(k)!.inputs) !== JSON.stringify(b.get(k)?.inputs));
    expect(changed).toEqual(["gpu-0-containers-coder"]);
  });

  it("turning the GPU off removes the GPU containers and keeps the fallback", async () => {
    const on = byName(await runProgram({ tier: "hybrid", gpuEnabled: true }, { stack: "s" }));
    const off = byName(await runProgram({ tier: "hybrid", gpuEnabled: false }, { stack: "s" }));
    // Every container of the GPU node goes, its exporters too.
    expect([...on.keys()].filter((k) => !off.has(k)).sort()).toEqual([
      "gpu-0-containers-coder",
      "gpu-0-containers-gpu-exporter",
      "gpu-0-containers-node-exporter",
      "gpu-0-containers-ocr",
    ]);
    expect(off.has("cpu-containers-coder-fallback")).toBe(true);
  });
});

describe("no secret in clear text in any container env, argument or artifact", () => {
  it("the hub API key reaches containers only as a secret", async () => {
    const KEY = "HUBKEY-0123456789abcdef";
    const run = await runProgram({ tier: "gpu" }, { secrets: { hubApiKey: KEY } });
    for (const r of run.resources) expect(JSON.stringify(r.inputs), `${r.type} ${r.name}`).not.toContain(KEY);
    for (const a of run.artifacts) expect(a.content, a.path).not.toContain(KEY);
    const coder = run.byType(D.container).find((c) => c.name === "gpu-0-containers-coder")!;
    expect(coder.inputs.envs).toBe("[secret]");
    expect(JSON.stringify(coder.rawInputs.envs)).toContain(`VLLM_API_KEY=${KEY}`);
    expect(JSON.stringify(coder.rawInputs.command)).not.toContain(KEY);
    expect(run.outputs.hubApiKey).toBe("[secret]");
  });
});

describe("mount directories", () => {
  it("are created with the owner each image runs as, before its container starts", async () => {
    const run = await runProgram({ tier: "hybrid" });
    const prepare = run.byType(T.command).find((c) => c.name === "cpu-containers-directories")!;
    const script = String(prepare.inputs.create);
    const stt = mustLoad({ tier: "hybrid" });
    expect(stt.stt.repo).toContain("faster-whisper");
    // speaches runs as uid 1000 (its image's USER); its cache must be writable by it.
    expect(script).toMatch(/install -d -m 0755 -o 1000 -g 1000 '\/mnt\/cpu-cache\/[^']*speaches[^']*'/);
    const sttContainer = run.byType(D.container).find((c) => c.inputs.name === "stt")!;
    expect(sttContainer.options.dependsOn).toContain(prepare.urn);
  });
});

describe("images", () => {
  it("every image the program pulls is pinned to a version tag, never latest", async () => {
    for (const settings of cases) {
      const run = await runProgram(settings);
      for (const image of run.byType(D.image)) {
        const name = String(image.inputs.name);
        const tag = name.slice(name.lastIndexOf(":") + 1);
        expect(name, name).toMatch(/^[a-z0-9./_-]+:[\w.-]+$/);
        expect(tag, name).not.toMatch(/^(latest|main|master|stable|server)$/);
        expect(tag, name).toMatch(/\d/);
      }
    }
  });
});
