import { describe, expect, it } from "vitest";
import { runProgram, T } from "./helpers/mock-run";

const MARKER = "TESTSECRET-7f3a9c";
const PRIVATE_KEY = `-----BEGIN OPENSSH PRIVATE KEY-----\n${MARKER}\n-----END OPENSSH PRIVATE KEY-----`;

describe("secrets never appear in clear text", () => {
  for (const tier of ["cpu", "hybrid", "gpu"]) {
    it(`${tier}: the SSH private key reaches the readiness checks only as a Pulumi secret`, async () => {
      const run = await runProgram({ tier, gpuEnabled: tier !== "cpu" }, { secrets: { sshPrivateKey: PRIVATE_KEY } });
      // Shown inputs (what the plan prints and what a state file would hold in the clear) never hold it.
      for (const r of run.resources) expect(JSON.stringify(r.inputs), `${r.type} ${r.name}`).not.toContain(MARKER);
      for (const a of run.artifacts) expect(a.content, a.path).not.toContain(MARKER);
      expect(JSON.stringify(run.outputs)).not.toContain(MARKER);
      // ... yet it does reach the SSH connections, wrapped as a secret.
      const commands = run.byType(T.command);
      expect(commands.length).toBeGreaterThan(0);
      for (const c of commands) {
        // Pulumi marks the whole connection secret once one field is.
        const connection = c.inputs.connection as string | Record<string, unknown>;
        expect(typeof connection === "string" ? connection : connection.privateKey).toBe("[secret]");
        expect(JSON.stringify(c.rawInputs)).toContain(MARKER);
      }
    });
  }

  it("a secret setting stored in the clear is refused", async () => {
    const { loadText } = await import("./helpers/load");
    const r = loadText("config:\n  inference-hub:tier: cpu\n  inference-hub:sshPrivateKey: plaintext-key\n");
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.problems[0].keys).toEqual(["sshPrivateKey"]);
      expect(JSON.stringify(r.problems)).not.toContain("plaintext-key");
    }
  });
});
