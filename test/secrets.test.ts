import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { keyBodyLine, testKeyPair } from "./helpers/keys";
import { runProgram, T } from "./helpers/mock-run";

const deployer = testKeyPair("secrets-deployer");

describe("secrets never appear in clear text", () => {
  for (const tier of ["cpu", "hybrid", "gpu"]) {
    it(`${tier}: the deployer key and every host key reach their consumers only as Pulumi secrets`, async () => {
      const run = await runProgram(
        { tier, gpuEnabled: tier !== "cpu", sshPublicKey: deployer.publicKey },
        { secrets: { sshPrivateKey: deployer.privateKey } },
      );
      const droplets = run.byType(T.droplet);
      // Each droplet's real user data carries its own private host key.
      const hostKeys = droplets.map(
        (d) =>
          (parse(String(d.rawInputs.userData)) as { ssh_keys: { ed25519_private: string } }).ssh_keys.ed25519_private,
      );
      expect(hostKeys.length).toBe(tier === "cpu" ? 1 : 2);
      expect(new Set(hostKeys).size).toBe(hostKeys.length);
      const markers = [keyBodyLine(deployer.privateKey), ...hostKeys.map(keyBodyLine)];
      for (const m of markers) expect(m.length).toBeGreaterThan(40);

      // Shown inputs (what the plan prints and what a state file would hold in the clear), artifacts and outputs never hold one.
      for (const m of markers) {
        for (const r of run.resources) expect(JSON.stringify(r.inputs), `${r.type} ${r.name}`).not.toContain(m);
        for (const a of run.artifacts) expect(a.content, a.path).not.toContain(m);
        expect(JSON.stringify(run.outputs)).not.toContain(m);
      }
      for (const d of droplets) expect(d.inputs.userData, d.name).toBe("[secret]");
      // The plan's cloud-init shows where the host key goes, as a marker.
      for (const a of run.artifacts.filter((x) => x.kind === "cloud-init"))
        expect((parse(a.content) as { ssh_keys: { ed25519_private: string } }).ssh_keys.ed25519_private).toBe(
          "[secret]",
        );

      // ... yet the deployer key does reach every SSH connection, wrapped as a secret.
      const commands = run.byType(T.command);
      expect(commands.length).toBeGreaterThan(0);
      for (const c of commands) {
        // Pulumi marks the whole connection secret once one field is.
        const connection = c.inputs.connection as string | Record<string, unknown>;
        expect(typeof connection === "string" ? connection : connection.privateKey).toBe("[secret]");
        expect(JSON.stringify(c.rawInputs)).toContain(keyBodyLine(deployer.privateKey));
      }
      // The Docker provider gets a path to the key file, never the key.
      for (const p of run.byType("pulumi:providers:docker").filter((x) => x.inputs.host))
        expect(JSON.stringify(p.rawInputs)).not.toContain(keyBodyLine(deployer.privateKey));
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
