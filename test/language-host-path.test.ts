import { readFileSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { ROOT } from "./helpers/load";
import { EngineRig, REAL_ENGINE_MISSING, startEngineRig } from "./helpers/real-engine";
import { hostEnvironment } from "./helpers/stand-in-plugins/language-host";

/**
 * `pulumi up`'s TypeScript path, which the inline-program tests skip: the real CLI launches the
 * nodejs language host and sends it Pulumi.yaml's runtime options; the host starts the SDK's own
 * run entry (@pulumi/pulumi/cmd/run) with its working directory at `main` (infra/), and the run
 * entry compiles the program with the SDK's ts-node, type-checking it with whatever tsconfig its
 * lookup finds there. The real host is not on the Go module proxy, so a labelled stand-in on PATH
 * starts the program the way its source does (test/helpers/stand-in-plugins/language-host.ts).
 *
 * Without `runtime.options.tsconfig` the lookup finds no tsconfig.json in infra/, ts-node compiles
 * with loose defaults, and the program does not type-check (TS2339 on a narrowed union): then the
 * preview below fails.
 */

const missing = REAL_ENGINE_MISSING;
if (missing) console.warn(`language-host path test skipped: ${missing}`);

describe.skipIf(Boolean(missing))(
  "the program compiles and runs the way `pulumi up` starts it (real CLI, the SDK's run entry and ts-node)",
  { timeout: 300_000 },
  () => {
    let rig: EngineRig;
    beforeAll(async () => {
      rig = await startEngineRig();
    }, 120_000);
    afterAll(() => rig?.close());

    it("Pulumi.yaml points the run entry at the project's tsconfig, from the program directory", () => {
      const project = parse(readFileSync(path.join(ROOT, "Pulumi.yaml"), "utf8")) as {
        main: string;
        runtime: { options: Record<string, unknown> };
      };
      const env = hostEnvironment(project.runtime.options);
      expect(env.PULUMI_NODEJS_TYPESCRIPT).toBe("true");
      // The run entry resolves the path from its working directory, `main`.
      expect(path.resolve(ROOT, project.main, env.PULUMI_NODEJS_TSCONFIG_PATH ?? "tsconfig.json")).toBe(
        path.join(ROOT, "tsconfig.json"),
      );
    });

    it("`pulumi preview --stack local`: the program type-checks under the SDK's ts-node and registers its resources", async () => {
      await rig.stack("local");
      const { code, stdout, stderr } = await rig.cli(["preview"], "local");
      const output = `${stdout}\n${stderr}`;
      const start = rig.languageHostStarts().at(-1);
      expect(start, output).toBeDefined();
      // Started as the real host starts it: the SDK's run entry, in the program directory, with Pulumi.yaml's options.
      expect(start!.args[0]).toBe(require.resolve("@pulumi/pulumi/cmd/run"));
      expect(start!.args[start!.args.indexOf("--pwd") + 1]).toBe(path.join(rig.projectDir, "infra"));
      expect(start!.options).toMatchObject({ typescript: true });
      expect(output).toContain("using pulumi-language-nodejs from $PATH");
      expect(output).not.toMatch(/TSError|error TS\d+/);
      expect(code, output).toBe(0);
      expect(stdout).toMatch(/\+ \d+ to create/);
    }, 600_000);

    it("a refused config is reported once, without a stack trace or Node's PromiseRejectionHandledWarning", async () => {
      writeFileSync(
        path.join(rig.projectDir, "Pulumi.refused.yaml"),
        "config:\n  inference-hub:tier: local\n  inference-hub:cpuCacheGiB: lots\n",
      );
      await rig.stack("refused");
      const { code, stdout, stderr } = await rig.cli(["preview"], "refused");
      const output = `${stdout}\n${stderr}`;
      expect(code).not.toBe(0);
      const diagnostics = output.slice(output.indexOf("Diagnostics:"));
      expect(diagnostics.match(/cpuCacheGiB = "lots": is not a whole number/g) ?? [], output).toHaveLength(1);
      expect(output).not.toMatch(/PromiseRejectionHandledWarning|^\s+at .*:\d+:\d+\)?$/m);
    }, 600_000);
  },
);
