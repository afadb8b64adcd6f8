import { describe, expect, it } from "vitest";
import { gpuCommand, scaleCommand } from "../cli/hub/commands";
import { decideGpu, decideGpuSync } from "../cli/hub/decisions";
import { decidePin, decideScale, decideUnpin, parsePinDuration } from "../cli/hub/scale";
import { loadHubConfig } from "../stacks";
import { engineConfig } from "../stacks/load";
import { runScript } from "./helpers/cli";
import { runProgram, T } from "./helpers/mock-run";
import { cfg, io, RecordingOps, step } from "./helpers/recording-ops";

const NOW = Date.parse("2026-12-02T10:00:00Z");
const HOUR = 3600_000;
const k = (name: string) => `inference-hub:${name}`;
const pinned = (nodes: number, until: string, extra: Record<string, string> = {}) =>
  cfg({ tier: "hybrid", gpuEnabled: String(nodes > 0), gpuPinNodes: String(nodes), gpuPinUntil: until, ...extra });

describe("gpu scale N: the decision", () => {
  it("hybrid: 1 turns the GPU on, 0 turns it off and keeps gpuCount; the ceiling is written down", () => {
    const up = decideScale(cfg({ tier: "hybrid" }), { nodes: 1, reason: "wake-on-demand", decisionId: "d-1" }, NOW);
    expect(up.ok && up.changes).toEqual({ [k("gpuEnabled")]: "true", [k("gpuMaxNodes")]: "1" });
    const down = decideScale(
      cfg({ tier: "hybrid", gpuEnabled: "true", gpuMaxNodes: "1" }),
      { nodes: 0, reason: "idle" },
      NOW,
    );
    expect(down.ok && down.changes).toEqual({ [k("gpuEnabled")]: "false" });
    expect(down.ok && down.after.gpu?.count).toBe(1);
  });

  it("the stack already at N: nothing to do, and the summary still names the reason and decision", () => {
    const d = decideScale(cfg({ tier: "gpu" }), { nodes: 1, reason: "hold", decisionId: "d-7" }, NOW);
    expect(d.ok && d.changes).toEqual({});
    expect(d.ok && d.summary).toContain("reason hold, decision d-7");
  });

  it("outside gpuMinNodes..gpuMaxNodes is refused, naming the range and the setting to widen", () => {
    const zero = decideScale(cfg({ tier: "gpu" }), { nodes: 0 }, NOW);
    expect(!zero.ok && zero.reason).toMatch(/outside the stack's range 1\.\.1 .*keeps at least one GPU node/);
    const three = decideScale(cfg({ tier: "gpu", gpuMaxNodes: "2", budgetUsd: "9000" }), { nodes: 3 }, NOW);
    expect(!three.ok && three.reason).toContain("pulumi config set gpuMaxNodes 3");
    const cpu = decideScale(cfg({ tier: "cpu" }), { nodes: 1 }, NOW);
    expect(!cpu.ok && cpu.reason).toContain("runs no GPU");
  });

  it("scale-down removes the highest-numbered replica and keeps the volumes (gpuMaxNodes written down when unset)", () => {
    const d = decideScale(cfg({ tier: "gpu", gpuCount: "3", budgetUsd: "9000" }), { nodes: 1 }, NOW);
    expect(d.ok && d.changes).toEqual({ [k("gpuCount")]: "1", [k("gpuMaxNodes")]: "3" });
    expect(d.ok && d.summary).toContain("removing gpu-1, gpu-2");
    expect(d.ok && d.after.modelCache.volumes).toBe(3);
    // Without writing the ceiling down, the default would follow gpuCount down and drop two volumes.
    const naive = loadHubConfig(engineConfig({ tier: "gpu", gpuCount: 1, budgetUsd: 9000 }));
    expect(naive.ok && naive.config.modelCache.volumes).toBe(1);
  });

  it("a budget the new count would pass is refused with the plan's own reason", () => {
    const d = decideScale(cfg({ tier: "gpu", gpuMaxNodes: "2" }), { nodes: 2 }, NOW);
    expect(!d.ok && d.reason).toContain("budgetUsd");
  });

  it("an active pin refuses another count unless forced; forced, the pin goes with the change", () => {
    const config = pinned(1, "2026-12-02T18:00:00Z");
    const refused = decideScale(config, { nodes: 0, reason: "idle" }, NOW);
    expect(!refused.ok && refused.reason).toMatch(/pinned at 1 GPU node\(s\) until 2026-12-02T18:00:00Z.*--force/);
    const forced = decideScale(config, { nodes: 0, force: true }, NOW);
    expect(forced.ok && forced.changes).toEqual({
      [k("gpuEnabled")]: "false",
      [k("gpuPinNodes")]: null,
      [k("gpuPinUntil")]: null,
      [k("gpuMaxNodes")]: "1",
    });
    // After the pin's end the same request passes and cleans the expired pin up.
    const later = decideScale(config, { nodes: 0 }, Date.parse("2026-12-02T18:00:01Z"));
    expect(later.ok && later.changes).toMatchObject({
      [k("gpuEnabled")]: "false",
      [k("gpuPinNodes")]: null,
      [k("gpuPinUntil")]: null,
    });
  });

  it("words that reach logs and the update history are checked", () => {
    expect(decideScale(cfg({ tier: "hybrid" }), { nodes: 1, reason: "$(curl evil)" }, NOW)).toMatchObject({
      ok: false,
      reason: expect.stringContaining("--reason"),
    });
    expect(decideScale(cfg({ tier: "hybrid" }), { nodes: 1, decisionId: "a\nb" }, NOW)).toMatchObject({
      ok: false,
      reason: expect.stringContaining("--decision-id"),
    });
    expect(decideScale(cfg({ tier: "hybrid" }), { nodes: 1.5 }, NOW)).toMatchObject({ ok: false });
  });
});

describe("pins", () => {
  it("durations: 8h, 90m, 1d, 2h30m; nonsense and more than a month refused", () => {
    expect(parsePinDuration("8h")).toEqual({ ok: true, ms: 8 * HOUR });
    expect(parsePinDuration("2h30m")).toEqual({ ok: true, ms: 2.5 * HOUR });
    expect(parsePinDuration("1d")).toEqual({ ok: true, ms: 24 * HOUR });
    for (const bad of ["", "0h", "8", "h", "-1h", "1w", "8h 5"]) expect(parsePinDuration(bad).ok, bad).toBe(false);
    expect(parsePinDuration("32d")).toMatchObject({ ok: false, reason: expect.stringContaining("tier gpu") });
  });

  it("gpu on --for 8h sets the GPU on and the pin; the plan carries it as HubConfig.gpuPin", () => {
    const d = decidePin(cfg({ tier: "hybrid" }), true, 8 * HOUR, NOW);
    expect(d.ok && d.changes).toEqual({
      [k("gpuEnabled")]: "true",
      [k("gpuPinNodes")]: "1",
      [k("gpuPinUntil")]: "2026-12-02T18:00:00Z",
    });
    expect(d.ok && d.after.gpuPin).toEqual({ nodes: 1, untilMs: NOW + 8 * HOUR });
    const off = decidePin(cfg({ tier: "hybrid", gpuEnabled: "true" }), false, 2 * HOUR, NOW);
    expect(off.ok && off.changes).toMatchObject({ [k("gpuEnabled")]: "false", [k("gpuPinNodes")]: "0" });
    expect(decidePin(cfg({ tier: "gpu" }), false, HOUR, NOW)).toMatchObject({
      ok: false,
      reason: expect.stringContaining("always on"),
    });
  });

  it("plan-time checks: both keys or neither, a GPU tier, the count the stack runs, a real UTC instant", () => {
    const problems = (settings: Record<string, unknown>) => {
      const r = loadHubConfig(engineConfig(settings), [], [], NOW);
      return r.ok ? [] : r.problems.map((p) => `${p.keys.join(",")}: ${p.message}`);
    };
    expect(problems({ tier: "hybrid", gpuPinNodes: 1 })).toEqual([expect.stringContaining("needs both")]);
    expect(problems({ tier: "cpu", gpuPinNodes: 0, gpuPinUntil: "2026-12-02T18:00:00Z" })).toEqual([
      expect.stringContaining("nothing to pin"),
    ]);
    expect(
      problems({ tier: "hybrid", gpuEnabled: false, gpuPinNodes: 1, gpuPinUntil: "2026-12-02T18:00:00Z" }),
    ).toEqual([expect.stringMatching(/gpuEnabled is false.*against the stack file/)]);
    for (const bad of ["2026-12-02 18:00", "2026-12-02T18:00:00+01:00", "2026-02-30T10:00:00Z", "tomorrow"]) {
      expect(problems({ tier: "hybrid", gpuEnabled: true, gpuPinNodes: 1, gpuPinUntil: bad })[0], bad).toMatch(
        /^gpuPinUntil: /,
      );
    }
    expect(problems({ tier: "hybrid", gpuEnabled: true, gpuPinNodes: 1, gpuPinUntil: "2026-12-02T18:00:00Z" })).toEqual(
      [],
    );
  });

  it("an expired pin is ignored: the plan warns, and a mismatch no longer matters", () => {
    const r = loadHubConfig(
      engineConfig({ tier: "hybrid", gpuEnabled: false, gpuPinNodes: 1, gpuPinUntil: "2026-12-01T18:00:00Z" }),
      [],
      [],
      NOW,
    );
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.config.warnings.map((w) => w.message)).toContainEqual(
      expect.stringContaining("expired at 2026-12-01T18:00:00Z; it is ignored"),
    );
    expect(r.config.gpuPin).toEqual({ nodes: 1, untilMs: Date.parse("2026-12-01T18:00:00Z") });
  });

  it("the windows' gpu sync leaves a pinned GPU alone until the pin ends, then follows the windows", () => {
    const config = pinned(0, "2026-12-02T12:00:00Z", {
      gpuWindows: JSON.stringify(["mon-fri 09:00-17:00 UTC"]),
      budgetUsd: "1000",
    });
    const during = decideGpuSync(config, new Date(NOW));
    expect(during.ok && during.changes).toEqual({});
    expect(during.ok && during.summary).toContain("pinned at 0 node(s)");
    const after = decideGpuSync(config, new Date("2026-12-02T12:30:00Z"));
    expect(after.ok && after.changes).toEqual({
      [k("gpuEnabled")]: "true",
      [k("gpuPinNodes")]: null,
      [k("gpuPinUntil")]: null,
    });
  });

  it("a plain gpu on|off replaces the pin; unpin removes it even when the pin is what the checks refuse", () => {
    const on = decideGpu(pinned(0, "2026-12-02T12:00:00Z"), true, NOW);
    expect(on.ok && on.changes).toEqual({
      [k("gpuEnabled")]: "true",
      [k("gpuPinNodes")]: null,
      [k("gpuPinUntil")]: null,
    });
    const broken = cfg({ tier: "hybrid", gpuEnabled: "false", gpuPinNodes: "1", gpuPinUntil: "2026-12-02T12:00:00Z" });
    expect(decideGpu(broken, false, NOW).ok).toBe(false);
    const unpin = decideUnpin(broken, NOW);
    expect(unpin.ok && unpin.changes).toEqual({ [k("gpuPinNodes")]: null, [k("gpuPinUntil")]: null });
    expect(decideUnpin(cfg({ tier: "hybrid" }), NOW)).toMatchObject({ ok: true, changes: {} });
  });
});

describe("gpu scale against a recording Pulumi", () => {
  it("sets the config, previews, applies with the decision in the update message, and prints the reason", async () => {
    const ops = new RecordingOps(cfg({ tier: "hybrid", gpuEnabled: "false", gpuMaxNodes: "1" }), [
      step("create", T.droplet, "gpu-0-droplet"),
    ]);
    const { lines, io: out } = io();
    await scaleCommand(ops, { nodes: 1, reason: "wake-on-demand", decisionId: "d-42" }, out, new Date(NOW));
    expect(ops.calls).toEqual(["getConfig", "set inference-hub:gpuEnabled=true", "preview", "up"]);
    expect(ops.messages).toEqual(["hub gpu scale 1 (reason wake-on-demand, decision d-42)"]);
    expect(lines[0]).toBe("hybrid: gpu scale 1 asked (reason wake-on-demand, decision d-42)");
    expect(lines.join("\n")).toMatch(/burn: \$0\.16\/h → \$3\.55\/h/);
  });

  it("a no-op touches nothing; a pinned stack refuses before anything is set", async () => {
    const same = new RecordingOps(cfg({ tier: "hybrid", gpuEnabled: "true" }));
    same.deployedNodes = { cpu: {}, "gpu-0": {} };
    await scaleCommand(same, { nodes: 1 }, io().io, new Date(NOW));
    expect(same.calls).toEqual(["getConfig"]);
    const pin = new RecordingOps(pinned(1, "2026-12-02T18:00:00Z"));
    pin.deployedNodes = { cpu: {}, "gpu-0": {} };
    pin.deployedPin = { nodes: 1, until: "2026-12-02T18:00:00Z" };
    await expect(scaleCommand(pin, { nodes: 0, reason: "idle" }, io().io, new Date(NOW))).rejects.toThrow(/pinned/);
    expect(pin.calls).toEqual(["getConfig"]);
  });

  it("a fresh checkout (the runner's) starts from what the stack runs: the count and the pin come from the outputs", async () => {
    // Committed: GPU off, no pin. Deployed: the autoscaler woke gpu-0 and an operator pinned it.
    const runner = new RecordingOps(cfg({ tier: "hybrid", gpuEnabled: "false" }));
    runner.deployedNodes = { cpu: {}, "gpu-0": {} };
    runner.deployedPin = { nodes: 1, until: "2026-12-02T18:00:00Z" };
    const { lines, io: out } = io();
    await expect(
      scaleCommand(runner, { nodes: 0, reason: "idle", decisionId: "d-9" }, out, new Date(NOW)),
    ).rejects.toThrow(/pinned at 1 GPU node\(s\) until 2026-12-02T18:00:00Z/);
    expect(runner.calls).toEqual([
      "getConfig",
      "set inference-hub:gpuEnabled=true",
      "set inference-hub:gpuPinNodes=1",
      "set inference-hub:gpuPinUntil=2026-12-02T18:00:00Z",
    ]);
    expect(lines.join("\n")).toContain("the stack runs 1 GPU node(s), pinned at 1 until 2026-12-02T18:00:00Z");
    // Without the pin the same request turns the GPU off, where the committed file alone would say "already 0".
    const unpinned = new RecordingOps(cfg({ tier: "hybrid", gpuEnabled: "false", gpuMaxNodes: "1" }));
    unpinned.deployedNodes = { cpu: {}, "gpu-0": {} };
    await scaleCommand(unpinned, { nodes: 0, reason: "idle" }, io().io, new Date(NOW));
    expect(unpinned.calls).toEqual([
      "getConfig",
      "set inference-hub:gpuEnabled=true",
      "set inference-hub:gpuEnabled=false",
      "preview",
      "up",
    ]);
  });

  it("gpu keep: config only, and nothing before a first deploy", async () => {
    const { keepDeployed } = await import("../cli/hub/commands");
    const ops = new RecordingOps(cfg({ tier: "gpu", gpuMaxNodes: "3", budgetUsd: "9000" }), [], "gpu");
    ops.deployedNodes = { cpu: {}, "gpu-0": {}, "gpu-1": {} };
    await keepDeployed(ops, io().io, new Date(NOW));
    expect(ops.calls).toEqual(["getConfig", "set inference-hub:gpuCount=2"]);
    const fresh = new RecordingOps(cfg({ tier: "gpu" }), [], "gpu");
    fresh.outputs = async () => ({}) as never;
    await keepDeployed(fresh, io().io, new Date(NOW));
    expect(fresh.calls).toEqual(["getConfig"]);
  });

  it("a scale-down whose preview would delete a model-cache volume is refused and the config restored", async () => {
    const before = cfg({ tier: "gpu", gpuCount: "2", gpuMaxNodes: "2", budgetUsd: "6000" });
    const ops = new RecordingOps(
      { ...before },
      [step("delete", T.droplet, "gpu-1-droplet", "gpu"), step("delete", T.volume, "storage-model-cache-1", "gpu")],
      "gpu",
    );
    ops.deployedNodes = { cpu: {}, "gpu-0": {}, "gpu-1": {} };
    await expect(scaleCommand(ops, { nodes: 1 }, io().io, new Date(NOW))).rejects.toThrow(
      /volume.*storage-model-cache-1/,
    );
    expect(ops.calls).not.toContain("up");
    expect(ops.config).toEqual(before);
  });

  it("gpu on --for and gpu status through the command", async () => {
    const ops = new RecordingOps(cfg({ tier: "hybrid" }));
    await gpuCommand(ops, "on", io().io, undefined, new Date(NOW), { pinMs: 8 * HOUR });
    expect(ops.calls).toEqual([
      "getConfig",
      "set inference-hub:gpuEnabled=true",
      "set inference-hub:gpuPinNodes=1",
      "set inference-hub:gpuPinUntil=2026-12-02T18:00:00Z",
      "preview",
      "up",
    ]);
    const status = io();
    await gpuCommand(ops, "status", status.io, undefined, new Date(NOW));
    expect(status.lines[1]).toBe("pinned at 1 GPU node(s) until 2026-12-02T18:00:00Z: the autoscaler leaves it alone");
  });

  it("the CLI refuses bad input before it looks for Pulumi", () => {
    for (const [args, why] of [
      [["gpu", "scale", "2x", "--stack", "hybrid"], /one node count/],
      [["gpu", "scale", "1", "--stack", "hybrid", "--reason", "a;b"], /--reason must be/],
      [["gpu", "on", "--for", "forever", "--stack", "hybrid"], /--for takes a duration/],
      // Options of another command: commander refuses them by name.
      [["gpu", "sync", "--for", "8h", "--stack", "hybrid"], /unknown option '--for'/],
      [["gpu", "on", "--force", "--stack", "hybrid"], /unknown option '--force'/],
    ] as const) {
      const r = runScript("hub", [...args], { env: { ...process.env, PATH: "/usr/bin:/bin", DIGITALOCEAN_TOKEN: "" } });
      expect(r.status, args.join(" ")).toBe(1);
      expect(r.stderr).toMatch(why);
      expect(r.stderr).not.toContain("Pulumi CLI");
    }
  }, 60_000);
});

describe("drain before destroy: scaling gpu from 2 nodes to 1, under Pulumi's mocks", () => {
  it("gpu-1 leaves the routes first, drains, then its containers and droplet go; its volume stays", async () => {
    const two = await runProgram({ tier: "gpu", gpuCount: 2, gpuMaxNodes: 2, budgetUsd: 6000 });
    const one = await runProgram({ tier: "gpu", gpuCount: 1, gpuMaxNodes: 2, budgetUsd: 6000 });
    const names = (run: typeof two) => new Set(run.resources.map((r) => r.name));
    const gone = [...names(two)].filter((n) => !names(one).has(n));
    // Only gpu-1's resources leave the program: the highest-numbered replica, nothing of gpu-0.
    expect(gone.length).toBeGreaterThan(5);
    for (const n of gone) expect(n, n).toMatch(/^gpu-1(-|$)/);

    // 1. The routes file (an update, which Pulumi applies while the program runs, before any
    //    delete) no longer names gpu-1 and no longer waits for it.
    const gpu1 = (two.outputs.nodeAddresses as Record<string, { private: string; public: string }>)["gpu-1"];
    const routesOf = (run: typeof two) => run.artifacts.find((a) => a.kind === "traefik-dynamic")!.content;
    expect(routesOf(two)).toContain(gpu1.private);
    expect(routesOf(one)).not.toContain(gpu1.private);
    const routesFile = (run: typeof two) => run.one(T.command, "cpu-containers-file-dynamic-routes.yml");
    expect(routesFile(two).options.dependsOn.some((d) => d.endsWith("::gpu-1-serving"))).toBe(true);
    expect(routesFile(one).options.dependsOn.some((d) => d.includes("gpu-1"))).toBe(false);

    // 2. Deletes run in reverse dependency order of the old state: gpu-1-serving depends on
    //    gpu-1's containers, so its delete (the drain) runs before any of them goes.
    const serving = two.one(T.command, "gpu-1-serving");
    const containers = two.resources.find((r) => r.name === "gpu-1-containers")!;
    expect(serving.options.dependsOn).toContain(containers.urn);
    const drain = String(serving.rawInputs.delete);
    expect(drain).toContain("traefik_config_last_reload_success");
    expect(drain).toMatch(/vllm:num_requests_\(running\|waiting\)/);
    expect(drain).toContain(`${gpu1.private}:8000/metrics`);

    // 3. The containers reach gpu-1 through its Docker provider, which waits for gpu-1-ready,
    //    whose connection is the droplet's address: the droplet is deleted after all of them.
    const coder = two.one("docker:index/container:Container", "gpu-1-containers-coder");
    const provider = two.resources.find((r) => r.urn === coder.provider)!;
    expect(provider.options.dependsOn.some((d) => d.endsWith("::gpu-1-ready"))).toBe(true);
    expect((two.one(T.command, "gpu-1-ready").rawInputs.connection as { host: string }).host).toBe(gpu1.public);

    // 4. The model-cache volume of the slot stays, unchanged and protected.
    for (const run of [two, one]) {
      const volume = run.one(T.volume, "storage-model-cache-1");
      expect(volume.options.protect && volume.options.retainOnDelete).toBe(true);
    }
    expect(one.one(T.volume, "storage-model-cache-1").inputs).toEqual(
      two.one(T.volume, "storage-model-cache-1").inputs,
    );
  }, 120_000);
});
