import * as sshpk from "sshpk";
import { parse } from "yaml";
import { describe, expect, it } from "vitest";
import { volumeDevicePath } from "../services/node-setup";
import { cloudInitProblems } from "./helpers/cloud-init-validate";
import { runProgram, T } from "./helpers/mock-run";

const cases = [
  { tier: "cpu" },
  { tier: "gpu" },
  { tier: "hybrid", gpuEnabled: true },
  { tier: "multigpu" },
  { tier: "gpu", region: "atl1", gpuSize: "gpu-mi300x1-192gb", ocrEngine: "docling", cpuSize: "c-8" },
];

interface UserData {
  mounts: string[][];
  ssh_keys: { ed25519_private: string; ed25519_public: string };
}

describe("every cloud-init the program renders passes cloud-init's own validator and schema", () => {
  for (const settings of cases) {
    it(JSON.stringify(settings), async () => {
      const run = await runProgram(settings);
      const docs = run.artifacts.filter((a) => a.kind === "cloud-init");
      expect(docs.map((d) => d.node).sort()).toEqual(
        run
          .byType(T.droplet)
          .map((d) => d.name.replace(/-droplet$/, ""))
          .sort(),
      );
      for (const doc of docs) {
        // What the droplet really boots with (a secret: it holds the host's private key).
        const droplet = run.one(T.droplet, `${doc.node}-droplet`);
        const real = String(droplet.rawInputs.userData);
        expect(cloudInitProblems(real), doc.path).toEqual([]);
        const realDoc = parse(real) as UserData;
        // The shown file is that file with the private key replaced by the marker, nothing else.
        expect(parse(doc.content)).toEqual({
          ...realDoc,
          ssh_keys: { ...realDoc.ssh_keys, ed25519_private: "[secret]" },
        });
        // The installed pair belongs together, and is the key the node's SSH connections pin.
        const privateKey = sshpk.parsePrivateKey(realDoc.ssh_keys.ed25519_private, "openssh");
        expect(privateKey.type).toBe("ed25519");
        expect(privateKey.toPublic().fingerprint("sha256").toString()).toBe(
          sshpk.parseKey(realDoc.ssh_keys.ed25519_public, "ssh").fingerprint("sha256").toString(),
        );
        expect(run.one(T.command, `${doc.node}-ready`).rawInputs.connection).toMatchObject({
          hostKey: realDoc.ssh_keys.ed25519_public,
        });
        // ... and it mounts the volume its node is attached to.
        const attachment = run.one(T.attachment, `${doc.node}-volume`);
        const volume = run.byType(T.volume).find((v) => `mock-${v.name}` === attachment.inputs.volumeId)!;
        expect(realDoc.mounts[0][0]).toBe(volumeDevicePath(String(volume.inputs.name)));
      }
    });
  }
});
