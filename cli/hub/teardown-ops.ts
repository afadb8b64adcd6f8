import { execFile } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { Stack } from "@pulumi/pulumi/automation";
import { DIGITALOCEAN_API } from "../../programs/autoscaler/controller/contract";
import type { KeptVolume, PendingVolumes, StateResource, TeardownOps, VolumeDeleter } from "./down";
import { HubCommandError, selectStack } from "./ops";

/**
 * The real operations behind `hub down`: the stack's state through the Automation API
 * (`exportStack`, read only), `destroy` (with `excludeProtected`), and `pulumi state unprotect`,
 * which the Automation API does not wrap, through the CLI the workspace uses.
 */
export async function automationTeardownOps(stackName: string, workDir: string): Promise<TeardownOps> {
  const stack = await selectStack(
    stackName,
    workDir,
    "nothing was ever deployed from it in this Pulumi backend, so there is nothing to tear down.",
  );
  return teardownOpsFor(
    stack,
    (urn) =>
      new Promise((resolve, reject) => {
        execFile(
          "pulumi",
          ["state", "unprotect", urn, "--yes", "--stack", stackName, "--non-interactive"],
          { cwd: workDir, encoding: "utf8" },
          (error, _out, err) =>
            error
              ? reject(new HubCommandError(`pulumi state unprotect failed: ${err.trim().split("\n").pop()}`))
              : resolve(),
        );
      }),
  );
}

/** The operations over a stack the Automation API has, with `state unprotect` as given (the CLI). */
export function teardownOpsFor(stack: Stack, unprotect: (urn: string) => Promise<void>): TeardownOps {
  return {
    stackName: stack.name,
    resources: async () => ((await stack.exportStack()).deployment as { resources?: StateResource[] }).resources ?? [],
    destroy: async ({ excludeProtected }, onOutput) => {
      await stack.destroy({ onOutput, ...(excludeProtected ? { excludeProtected: true } : {}) });
    },
    unprotect,
  };
}

/** DigitalOcean's DELETE /v2/volumes/<id>: 204 deleted, 404 already gone. */
export function digitalOceanVolumes(token: string, api = DIGITALOCEAN_API): VolumeDeleter {
  return {
    where: "your DigitalOcean account",
    delete: async (id) => {
      if (!/^[0-9a-f-]{8,64}$/i.test(id)) throw new Error(`"${id}" is not a volume id`);
      const res = await fetch(`${api}/v2/volumes/${id}`, {
        method: "DELETE",
        headers: { authorization: `Bearer ${token}` },
        signal: AbortSignal.timeout(30_000),
      });
      if (res.status === 204) return "deleted";
      if (res.status === 404) return "gone";
      const body = (await res.text()).slice(0, 300);
      throw new Error(`DigitalOcean answered ${res.status}: ${body}`);
    },
  };
}

/** ~/.inference-hub/teardown/<stack>.json: volumes out of the stack, not yet deleted. */
export function pendingVolumesFile(stack: string, home = os.homedir()): PendingVolumes {
  const file = path.join(home, ".inference-hub", "teardown", `${stack}.json`);
  return {
    load: () => {
      try {
        return JSON.parse(readFileSync(file, "utf8")) as KeptVolume[];
      } catch {
        return [];
      }
    },
    save: (volumes) => {
      mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
      writeFileSync(file, `${JSON.stringify(volumes, null, 2)}\n`);
    },
  };
}
