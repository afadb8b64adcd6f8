import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { gatekeeperSpec, GATEKEEPER_DIRS, GATEKEEPER_STATE_PATH } from "../services/auth";
import { planFromFile, stackFilePath } from "../cli/plan/runner";
import { CPU_CACHE_MOUNT } from "../services/node-setup";
import { loadText } from "./helpers/load";

/**
 * A deploy (`pulumi up`, here under the mock engine) never removes a runtime key: runtime keys
 * live in the gatekeeper's state directory on the CPU cache volume (or in PostgreSQL), which no
 * resource of the program writes, replaces or deletes; only the declared keys file is written.
 */

const COMMAND_TYPES = ["command:remote:Command", "command:local:Command"];
const scripts = (inputs: Record<string, unknown>) => ["create", "update", "delete"].map((k) => String(inputs[k] ?? ""));

describe("a deploy never touches the runtime keys", () => {
  for (const stack of ["hybrid", "local"]) {
    it(`${stack}: no command writes or deletes the state directory; the gatekeeper mounts it writable from the volume`, async () => {
      const result = await planFromFile(stack, stackFilePath(stack));
      if (!result.ok) throw new Error("plan refused");
      const stateDir =
        stack === "local"
          ? path.join(os.homedir(), ".inference-hub", stack, GATEKEEPER_DIRS.state.slice(CPU_CACHE_MOUNT.length))
          : GATEKEEPER_DIRS.state;
      const commands = result.resources.filter((r) => COMMAND_TYPES.includes(r.type));
      expect(commands.length).toBeGreaterThan(0);
      let created = 0;
      for (const c of commands) {
        for (const script of scripts(c.rawInputs ?? c.inputs)) {
          for (const clause of script.split(/&&|\n|;/).filter((part) => part.includes(stateDir))) {
            // Only ever created (with its owner): never written into, emptied or removed.
            expect(clause.trim(), c.name).toMatch(/^(install -d|mkdir -p|chown|chmod)\b/);
            created++;
          }
        }
      }
      expect(created).toBeGreaterThan(0);
      // The declared file is what the deploy writes, on its own mount (read-only in the container).
      const keysWriter = commands.find((c) => c.name.endsWith("-file-keys-keys.json"));
      expect(keysWriter, "the declared keys file's writer").toBeDefined();
      const container = result.resources.find(
        (r) => r.type === "docker:index/container:Container" && r.name.endsWith("-gatekeeper"),
      );
      const volumes = (container?.inputs.volumes ?? []) as {
        hostPath: string;
        containerPath: string;
        readOnly: boolean;
      }[];
      expect(volumes.find((v) => v.containerPath === GATEKEEPER_STATE_PATH)).toEqual({
        hostPath: stateDir,
        containerPath: GATEKEEPER_STATE_PATH,
        readOnly: false,
      });
      expect(volumes.find((v) => v.containerPath === "/keys")?.readOnly).toBe(true);
    });
  }

  it("the state directory is on the CPU cache volume, beside the audit spool, and the environment names it", () => {
    const loaded = loadText("config:\n  inference-hub:tier: cpu\n");
    if (!loaded.ok) throw new Error("refused");
    const spec = gatekeeperSpec(loaded.config);
    expect(GATEKEEPER_DIRS.state.startsWith(`${CPU_CACHE_MOUNT}/`)).toBe(true);
    expect(spec.env.GATEKEEPER_STATE_DIR).toBe(GATEKEEPER_STATE_PATH);
    expect(JSON.parse(spec.env.GATEKEEPER_STATUS_CONTEXT)).toMatchObject({
      tier: "cpu",
      gpuNodes: 0,
      budgetUsd: loaded.config.budgetUsd,
    });
  });
});
