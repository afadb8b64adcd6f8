import { readFileSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import type { EngineEvent, Stack } from "@pulumi/pulumi/automation";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkPreview, decideGpu, decideTier, type PreviewStep, type StackConfig } from "../cli/hub/decisions";
import { RUNNER, runToEnd } from "./helpers/cli";
import {
  EngineRig,
  ProviderCall,
  REAL_ENGINE_MISSING,
  startEngineRig,
  TEST_SSH_PUBLIC_KEY,
} from "./helpers/real-engine";

/**
 * What only the real engine can say about a deployed stack, with the STAND-IN provider plugins
 * (test/helpers/stand-in-plugins; their Diff replaces exactly where the real providers' sources
 * say an input forces a new resource): the resource options as the engine records them in state,
 * a tier switch's update plan (cpu → gpu → hybrid off → hybrid on → cpu) through the engine's own
 * diff, and what `pulumi destroy` does to the protected, retained volumes. One stack walks the
 * whole sequence; docs/pulumi-engine.md records what each teardown does.
 */

const missing = REAL_ENGINE_MISSING;
if (missing) console.warn(`real-engine lifecycle tests skipped: ${missing}`);

const VOLUME = "digitalocean:index/volume:Volume";
const DROPLET = "digitalocean:index/droplet:Droplet";
const STACK = "lifecycle";

interface Update {
  readonly steps: PreviewStep[];
  readonly calls: ProviderCall[];
}

describe.skipIf(Boolean(missing))(
  "one stack through a tier switch and its teardowns, on the real Pulumi engine",
  { timeout: 300_000 },
  () => {
    let rig: EngineRig;
    let stack: Stack;
    const volumeIds: Record<string, unknown>[] = [];

    /** `pulumi up`, with the engine's step for every resource and what the providers were asked. */
    async function up(): Promise<Update> {
      rig.takeProviderCalls();
      const steps: PreviewStep[] = [];
      const onEvent = (e: EngineEvent) =>
        e.resourcePreEvent &&
        steps.push({
          op: e.resourcePreEvent.metadata.op,
          urn: e.resourcePreEvent.metadata.urn,
          type: e.resourcePreEvent.metadata.type,
        });
      const result = await stack.up({ onEvent });
      volumeIds.push(result.outputs.volumeIds.value as Record<string, unknown>);
      history.push(steps);
      return { steps, calls: rig.takeProviderCalls() };
    }

    /** Applies a hub decision's config changes, as `npm run hub -- tier|gpu` does. */
    async function apply(decide: (config: StackConfig) => ReturnType<typeof decideTier>): Promise<void> {
      const config = (await stack.getAllConfig()) as StackConfig;
      const decision = decide(config);
      if (!decision.ok) throw new Error(decision.reason);
      for (const [key, value] of Object.entries(decision.changes)) {
        if (value === null) await stack.removeConfig(key);
        else await stack.setConfig(key, { value });
      }
    }

    const volumeSteps = (u: Update) => u.steps.filter((s) => s.type === VOLUME);
    const stateResources = async () =>
      ((await stack.exportStack()).deployment as { resources?: StateResource[] }).resources ?? [];
    /** Every update's steps, in the order the engine took them. */
    const history: PreviewStep[][] = [];

    /** The offline plan of the stack file as it stands after the switch (`npm run plan -- --json`), read once. */
    let planned: Promise<PlannedResource[]> | undefined;
    const plan = () =>
      (planned ??= runToEnd(process.execPath, [
        RUNNER,
        "plan",
        "--config-file",
        path.join(rig.projectDir, `Pulumi.${STACK}.yaml`),
        "--json",
      ]).then((run) => {
        if (run.status !== 0) throw new Error(`npm run plan failed: ${run.stderr}`);
        return (JSON.parse(run.stdout) as { resources: PlannedResource[] }).resources;
      }));

    beforeAll(async () => {
      rig = await startEngineRig();
      // A user's cpu stack: the shipped file plus an SSH key (`pulumi up` refuses droplets without one).
      writeFileSync(path.join(rig.projectDir, `Pulumi.${STACK}.yaml`), "config:\n  inference-hub:tier: cpu\n");
      stack = await rig.stack(STACK);
      await stack.setConfig("sshPublicKey", { value: TEST_SSH_PUBLIC_KEY });
    }, 120_000);
    afterAll(() => rig?.close());

    const switches: {
      to: string;
      decide: (c: StackConfig) => ReturnType<typeof decideTier>;
      gpuDroplet: "create" | "delete" | "none";
    }[] = [
      { to: "gpu", decide: (c) => decideTier(c, "gpu"), gpuDroplet: "create" },
      { to: "hybrid, GPU off", decide: (c) => decideTier(c, "hybrid"), gpuDroplet: "delete" },
      { to: "hybrid, GPU on", decide: (c) => decideGpu(c, true), gpuDroplet: "create" },
      { to: "cpu", decide: (c) => decideTier(c, "cpu"), gpuDroplet: "delete" },
    ];

    it("cpu: the first up creates both volumes, and the state on disk holds the generated API key only encrypted", async () => {
      const first = await up();
      expect(volumeSteps(first).map((s) => s.op)).toEqual(["create", "create"]);
      expect(first.calls.filter((c) => c.type === VOLUME && c.op === "create")).toHaveLength(2);
      const apiKey = (await stack.outputs()).hubApiKey;
      expect(apiKey.secret).toBe(true);
      expect(String(apiKey.value)).toMatch(/^[A-Za-z0-9]{48}$/);
      const stateFile = readFileSync(
        path.join(rig.backendDir, ".pulumi", "stacks", "inference-hub", `${STACK}.json`),
        "utf8",
      );
      expect(stateFile).not.toContain(String(apiKey.value));
    });

    for (const change of switches) {
      it(`→ ${change.to}: the engine's plan never replaces or deletes a volume; the GPU droplet comes and goes`, async () => {
        await apply(change.decide);
        const update = await up();
        // The engine's own plan, built from the stand-in providers' replacement rules.
        expect(
          volumeSteps(update)
            .map((s) => s.op)
            .sort(),
        ).toEqual(["same", "same"]);
        expect(checkPreview(update.steps)).toEqual({ ok: true });
        // And the providers were never asked to create or delete one.
        expect(update.calls.filter((c) => c.type === VOLUME && (c.op === "create" || c.op === "delete"))).toEqual([]);
        expect(volumeIds.at(-1)).toEqual(volumeIds[0]);
        const gpuDroplet = update.steps
          .filter((s) => s.type === DROPLET && s.urn.endsWith("::gpu-0-droplet"))
          .map((s) => s.op);
        expect(gpuDroplet).toEqual(change.gpuDroplet === "none" ? [] : [change.gpuDroplet]);
      });
    }

    it("the engine records the options the program asks for (as the offline plan shows them) on the deployed stack", async () => {
      const state = new Map((await stateResources()).map((r) => [r.urn, r]));
      for (const p of await plan()) {
        const s = state.get(p.urn);
        expect(s, p.urn).toBeDefined();
        // deleteBeforeReplace is not kept in state (apitype ResourceV3 has no field for it): see the next test.
        const recorded = {
          protect: s?.protect ?? false,
          retainOnDelete: s?.retainOnDelete ?? false,
          ignoreChanges: s?.ignoreChanges ?? [],
          replaceOnChanges: s?.replaceOnChanges ?? [],
        };
        const asked = {
          protect: p.options.protect,
          retainOnDelete: p.options.retainOnDelete,
          ignoreChanges: p.options.ignoreChanges,
          replaceOnChanges: p.options.replaceOnChanges,
        };
        expect(recorded, p.urn).toEqual(asked);
        for (const dep of p.options.dependsOn)
          expect(s?.dependencies ?? [], `${p.urn} depends on ${dep}`).toContain(dep);
      }
      // On the volumes themselves, not inherited from their component.
      const volumes = [...state.values()].filter((r) => r.type === VOLUME);
      expect(volumes.map((v) => [v.protect, v.retainOnDelete])).toEqual([
        [true, true],
        [true, true],
      ]);
    });

    it("deleteBeforeReplace, which the state does not keep, is how the engine replaced containers in the switch (old one gone before the new one, same name)", async () => {
      const asked = new Map((await plan()).map((r) => [r.urn, r.options.deleteBeforeReplace]));
      let replaced = 0;
      for (const steps of history) {
        const ops = (urn: string) => steps.filter((s) => s.urn === urn).map((s) => s.op);
        for (const urn of new Set(steps.filter((s) => s.op === "create-replacement").map((s) => s.urn))) {
          if (!asked.has(urn)) continue;
          replaced++;
          const order = ops(urn).filter((op) => op === "delete-replaced" || op === "create-replacement");
          expect(order, urn).toEqual(
            asked.get(urn) ? ["delete-replaced", "create-replacement"] : ["create-replacement", "delete-replaced"],
          );
        }
      }
      // The switch did replace something (containers whose command or environment changed).
      expect(replaced).toBeGreaterThan(0);
    });

    it("`pulumi destroy` deletes everything else, then fails on the protected volumes, which stay", async () => {
      rig.takeProviderCalls();
      const error = await stack.destroy({}).then(
        () => undefined,
        (err: Error) => err.message,
      );
      expect(error).toBeDefined();
      for (const name of ["storage-cpu-cache", "storage-model-cache-0"]) {
        expect(error).toContain(
          `resource "urn:pulumi:${STACK}::inference-hub::inference-hub:storage:HubStorage$${VOLUME}::${name}" cannot be deleted`,
        );
      }
      expect(error).toMatch(
        /because it is protected\. To unprotect the resource, either remove the `protect` flag from the resource in your Pulumi program and run `pulumi up`, or use the command:/,
      );
      const deleted = rig.takeProviderCalls().filter((c) => c.op === "delete");
      expect(deleted.some((c) => c.type === DROPLET)).toBe(true);
      expect(deleted.filter((c) => c.type === VOLUME)).toEqual([]);
      expect(survivors(await stateResources())).toEqual(KEPT);
    });

    it("`pulumi up` after it brings the stack back on the same volumes", async () => {
      const again = await up();
      expect(volumeSteps(again).map((s) => s.op)).toEqual(["same", "same"]);
      expect(volumeIds.at(-1)).toEqual(volumeIds[0]);
    });

    it("`pulumi destroy --exclude-protected` tears down everything but the volumes and succeeds", async () => {
      rig.takeProviderCalls();
      const result = await stack.destroy({ excludeProtected: true });
      expect(result.stdout).toContain(
        "All unprotected resources were destroyed. There are still 7 protected resources associated with this stack.",
      );
      const deleted = rig.takeProviderCalls().filter((c) => c.op === "delete");
      expect(deleted.filter((c) => c.type === VOLUME)).toEqual([]);
      expect(survivors(await stateResources())).toEqual(KEPT);
    });

    it("then: `state unprotect` alone drops a volume from the stack but leaves it in the account (retainOnDelete); clearing retainOnDelete in the state deletes it", async () => {
      const urn = (name: string) =>
        `urn:pulumi:${STACK}::inference-hub::inference-hub:storage:HubStorage$${VOLUME}::${name}`;
      const unprotect = await rig.cli(["state", "unprotect", urn("storage-model-cache-0"), "--yes"], STACK);
      expect(unprotect.code, unprotect.stderr).toBe(0);
      // No CLI command clears retainOnDelete: edit the exported state and import it back.
      const exported = await stack.exportStack();
      for (const r of (exported.deployment as { resources: StateResource[] }).resources) {
        if (r.urn === urn("storage-cpu-cache")) Object.assign(r, { protect: false, retainOnDelete: false });
      }
      await stack.importStack(exported);
      rig.takeProviderCalls();
      await stack.destroy({});
      const deleted = rig.takeProviderCalls().filter((c) => c.op === "delete" && c.type === VOLUME);
      expect(deleted.map((c) => c.name)).toEqual(["storage-cpu-cache"]);
      expect(await stateResources()).toEqual([]);
    });
  },
);

interface StateResource {
  urn: string;
  type: string;
  protect?: boolean;
  retainOnDelete?: boolean;
  ignoreChanges?: string[];
  replaceOnChanges?: string[];
  deleteBeforeReplace?: boolean;
  dependencies?: string[];
}

interface PlannedResource {
  readonly urn: string;
  readonly options: {
    protect: boolean;
    retainOnDelete: boolean;
    ignoreChanges: string[];
    replaceOnChanges: string[];
    deleteBeforeReplace: boolean;
    dependsOn: string[];
  };
}

/** What a teardown leaves: the volumes, what they depend on (the stack tag, their component), and the engine's own resources. */
const KEPT = [
  "digitalocean:index/tag:Tag::network-tag-ih-stack-lifecycle",
  "digitalocean:index/volume:Volume::storage-cpu-cache",
  "digitalocean:index/volume:Volume::storage-model-cache-0",
  "inference-hub:network:HubNetwork::network",
  "inference-hub:storage:HubStorage::storage",
  "pulumi:providers:digitalocean::default_4_80_1",
  "pulumi:pulumi:Stack::inference-hub-lifecycle",
];
const survivors = (resources: readonly StateResource[]) =>
  resources.map((r) => `${r.type}::${r.urn.split("::").pop()}`).sort();
