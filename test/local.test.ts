import { describe, expect, it } from "vitest";
import { mustLoad } from "./helpers/load";
import { runProgram } from "./helpers/mock-run";

describe("the local tier", () => {
  it("plans only Docker resources (plus local file commands, the generated key and the gatekeeper's certificate): no DigitalOcean", async () => {
    const run = await runProgram({ tier: "local" });
    expect(run.resources.filter((r) => r.type.startsWith("digitalocean:"))).toEqual([]);
    const kinds = new Set(run.resources.map((r) => r.type.split(":")[0]));
    // tls: the gatekeeper's forwardAuth certificate, made on this machine like the generated key.
    expect([...kinds].sort()).toEqual(["command", "docker", "inference-hub", "pulumi", "random", "tls"]);
    expect(
      run.resources.filter((r) => r.type.startsWith("command:")).every((r) => r.type === "command:local:Command"),
    ).toBe(true);
  });

  it("runs the CPU services, CPU models only, with the gateway on 127.0.0.1:8100", async () => {
    const hub = mustLoad({ tier: "local" });
    expect(hub.gpu).toBeUndefined();
    expect(hub.coder.backend).toBe("llama.cpp");
    expect(hub.cost.monthlyUsd).toBe(0);
    const run = await runProgram({ tier: "local" });
    const containers = run.resources.filter((r) => r.type === "docker:index/container:Container");
    expect(containers.map((c) => c.inputs.name).sort()).toEqual([
      "alertmanager",
      "coder",
      "embedder",
      "embeddings",
      "errors",
      "gatekeeper",
      "gateway",
      "grafana",
      "ocr",
      "prometheus",
      "stt",
      "tts",
    ]);
    const gateway = containers.find((c) => c.inputs.name === "gateway")!;
    expect(gateway.inputs.ports).toEqual([{ internal: 8100, external: 8100, ip: "127.0.0.1" }]);
    // Monitoring on a laptop: Prometheus and Alertmanager on loopback, no node_exporter.
    expect(containers.find((c) => c.inputs.name === "prometheus")!.inputs.ports).toEqual([
      { internal: 9090, external: 9090, ip: "127.0.0.1" },
    ]);
    for (const c of containers)
      for (const p of (c.inputs.ports as { ip: string }[] | undefined) ?? []) expect(p.ip).toBe("127.0.0.1");
    // Files live in the user's directory, not under /mnt.
    for (const c of containers)
      for (const v of c.inputs.volumes as { hostPath: string }[]) expect(v.hostPath).toContain("/.inference-hub/");
    expect(run.outputs.baseUrl).toBe("http://127.0.0.1:8100/v1");
  });

  it("refuses cloud settings that mean nothing on a laptop", () => {
    expect(() => mustLoad({ tier: "local", cpuSize: "c-4" })).toThrow(/local tier runs on this machine/);
    expect(() => mustLoad({ tier: "local", gpuCount: 1 })).toThrow(/runs no GPU/);
  });
});
