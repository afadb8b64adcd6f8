import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HubCommandError, selectStack } from "../cli/hub/ops";
import { PULUMI_CLI, REAL_ENGINE_MISSING } from "./helpers/real-engine";
import { ROOT } from "./helpers/load";

/**
 * `hub down` and the hub's other Pulumi commands select the stack through the Automation API; what
 * they tell the user depends on the real CLI's own messages, so they are read from it here.
 */
describe.skipIf(Boolean(REAL_ENGINE_MISSING))("selecting a stack with the real Pulumi CLI", () => {
  const saved = { ...process.env };
  let root: string;
  beforeAll(() => {
    root = mkdtempSync(path.join(tmpdir(), "hub-select-"));
    process.env.PATH = `${path.dirname(PULUMI_CLI!)}:${process.env.PATH}`;
    process.env.PULUMI_HOME = path.join(root, "home");
    process.env.PULUMI_SKIP_UPDATE_CHECK = "true";
    process.env.PULUMI_CONFIG_PASSPHRASE = "test";
    delete process.env.PULUMI_ACCESS_TOKEN;
  });
  afterAll(() => {
    process.env = saved;
    rmSync(root, { recursive: true, force: true });
  });

  it("a stack the backend does not have: says so and what to do", async () => {
    process.env.PULUMI_BACKEND_URL = `file://${root}`;
    const failure = await selectStack("nosuch", ROOT, "create it first.").catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(HubCommandError);
    expect((failure as Error).message).toBe('no stack named "nosuch": create it first.');
  }, 60_000);

  it("no backend session: tells the user to log in", async () => {
    delete process.env.PULUMI_BACKEND_URL;
    const failure = await selectStack("nosuch", ROOT, "create it first.").catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(HubCommandError);
    expect((failure as Error).message).toMatch(/^not logged in to a Pulumi backend: run `pulumi login`/);
  }, 60_000);
});
