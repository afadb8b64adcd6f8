import { describe, expect, it } from "vitest";
import { AccountSshKey, decideSshKeyRegistration, dropletSshKeys, md5Fingerprint } from "../infra/ssh-keys";
import { RecordingAccountKeys, testEnvironment } from "./helpers/deploy-env";
import { testKeyPair } from "./helpers/keys";
import { runProgram, T } from "./helpers/mock-run";
import { sshKeygenMd5 } from "./helpers/ssh";

const alice = testKeyPair("alice");
const bob = testKeyPair("bob");
const fp = (k: { publicKey: string }) => md5Fingerprint(k.publicKey);
const accountKey = (id: number, name: string, key: { publicKey: string }): AccountSshKey => ({
  id,
  name,
  fingerprint: sshKeygenMd5(key.publicKey),
  publicKey: `${key.publicKey} as-stored-by-do`,
});

describe("md5Fingerprint", () => {
  it("is ssh-keygen's MD5 fingerprint, the form DigitalOcean lists and droplets take", () => {
    for (const k of [alice, bob]) expect(md5Fingerprint(`${k.publicKey} some comment`)).toBe(sshKeygenMd5(k.publicKey));
  });
});

describe("decideSshKeyRegistration", () => {
  const own = "ih-prod-deployer";
  it("registers a key the account does not hold", () => {
    const d = decideSshKeyRegistration({
      ownName: own,
      publicKey: `${alice.publicKey}\n`,
      fingerprint: fp(alice),
      accountKeys: [accountKey(7, "ih-prod-deployer", bob)],
    });
    expect(d).toEqual({ action: "create", name: own, publicKey: alice.publicKey, fingerprint: fp(alice) });
  });

  it("reuses a key the account holds under another name (another stack, or added by hand), without managing it", () => {
    const d = decideSshKeyRegistration({
      ownName: own,
      publicKey: alice.publicKey,
      fingerprint: fp(alice),
      accountKeys: [accountKey(7, "ih-staging-deployer", alice)],
    });
    expect(d).toEqual({ action: "reuse", fingerprint: fp(alice), registeredAs: "ih-staging-deployer" });
  });

  it("keeps managing the key it registered under its own name, adopting it by id with the account's own text", () => {
    const d = decideSshKeyRegistration({
      ownName: own,
      publicKey: alice.publicKey,
      fingerprint: fp(alice).toUpperCase(),
      accountKeys: [accountKey(42, own, alice)],
    });
    expect(d).toEqual({
      action: "adopt",
      name: own,
      publicKey: `${alice.publicKey} as-stored-by-do`,
      fingerprint: fp(alice),
      id: "42",
    });
  });

  it("droplet sshKeys: configured first, the registered key once, lower case", () => {
    expect(
      dropletSshKeys(
        ["AA:bb:00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd", "1234"],
        "aa:bb:00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd",
      ),
    ).toEqual(["aa:bb:00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd", "1234"]);
    expect(dropletSshKeys([], undefined)).toEqual([]);
  });
});

describe("the program's SSH key registration against an account", () => {
  const settings = { tier: "gpu", sshPublicKey: alice.publicKey };
  const runWith = (stack: string, keys: readonly AccountSshKey[]) => {
    const account = new RecordingAccountKeys(keys);
    return runProgram(settings, { stack, env: testEnvironment({ accountKeys: account }) }).then((run) => ({
      run,
      account,
    }));
  };

  it("two stacks, one key: the first registers it, the second names it by fingerprint and manages nothing", async () => {
    const { run: first, account } = await runWith("prod", []);
    expect(account.queries).toEqual([sshKeygenMd5(alice.publicKey)]);
    const [registered] = first.byType(T.sshKey);
    expect(registered.inputs).toMatchObject({ name: "ih-prod-deployer", publicKey: alice.publicKey });
    // Never deleted by a destroy: another stack may name it.
    expect(registered.options.retainOnDelete).toBe(true);

    const { run: second } = await runWith("staging", [accountKey(101, "ih-prod-deployer", alice)]);
    expect(second.byType(T.sshKey)).toEqual([]);
    for (const d of second.byType(T.droplet)) {
      expect(d.inputs.sshKeys).toEqual([sshKeygenMd5(alice.publicKey)]);
      expect(d.options.dependsOn.some((u) => u.includes("SshKey"))).toBe(false);
    }
  });

  it("a key the user added by hand is reused, not registered again (which DigitalOcean refuses with 422)", async () => {
    const { run } = await runWith("prod", [accountKey(5, "alice laptop", alice)]);
    expect(run.byType(T.sshKey)).toEqual([]);
    expect(run.one(T.droplet, "gpu-0-droplet").inputs.sshKeys).toEqual([sshKeygenMd5(alice.publicKey)]);
  });

  it("the next run, which finds the key it registered, keeps the same resource (adopted by id): no delete, no flapping, same droplet inputs", async () => {
    const { run: first } = await runWith("prod", []);
    const { run: next } = await runWith("prod", [accountKey(77, "ih-prod-deployer", alice)]);
    const [before] = first.byType(T.sshKey);
    const [after] = next.byType(T.sshKey);
    expect(after.urn).toBe(before.urn);
    expect(after.options.import).toBe("77");
    expect(after.options.retainOnDelete).toBe(true);
    expect(after.inputs.name).toBe(before.inputs.name);
    // A GPU droplet replaces on an sshKeys change: the value must not move between the runs.
    expect(next.one(T.droplet, "gpu-0-droplet").inputs.sshKeys).toEqual(
      first.one(T.droplet, "gpu-0-droplet").inputs.sshKeys,
    );
  });

  it("an account that cannot be listed refuses the deploy with the reason", async () => {
    const broken = {
      withFingerprint: async () =>
        Promise.reject(new Error("GET https://api.digitalocean.com/v2/account/keys: 401 Unable to authenticate you")),
    };
    await expect(runProgram(settings, { env: testEnvironment({ accountKeys: broken }) })).rejects.toThrow(
      /sshPublicKey: could not list the DigitalOcean account's SSH keys .*401 Unable to authenticate you.*Check DIGITALOCEAN_TOKEN/,
    );
  });
});

describe("the configured deployer key is checked before anything is created", () => {
  it("refuses a key that is not installed on the droplets, naming both fingerprints", async () => {
    const run = runProgram(
      { tier: "cpu", sshPublicKey: alice.publicKey },
      { secrets: { sshPrivateKey: bob.privateKey } },
    );
    await expect(run).rejects.toThrow(
      new RegExp(
        `sshPrivateKey, sshPublicKey, sshKeyFingerprints: the private key's public half \\(MD5 ${sshKeygenMd5(bob.publicKey)}\\) is not installed on the droplets \\(they get ${sshKeygenMd5(alice.publicKey)}\\)`,
      ),
    );
  });

  it("refuses text that is not a private key without echoing it, and reports the other problems with it", async () => {
    const run = runProgram(
      { tier: "cpu", sshPublicKey: alice.publicKey },
      {
        secrets: { sshPrivateKey: "not-a-key-SECRET-MARKER" },
        env: testEnvironment({ address: { find: async () => Promise.reject(new Error("offline")) } }),
      },
    );
    await expect(run).rejects.toThrow(
      /2 problems[\s\S]*sshPrivateKey \(secret, not shown\): is not an OpenSSH or PEM private key[\s\S]*adminCidrs: is empty/,
    );
    await expect(run).rejects.not.toThrow(/SECRET-MARKER/);
  });

  it("accepts the key whose public half is sshPublicKey, or one of sshKeyFingerprints", async () => {
    await expect(
      runProgram({ tier: "cpu", sshPublicKey: alice.publicKey }, { secrets: { sshPrivateKey: alice.privateKey } }),
    ).resolves.toBeDefined();
    await expect(
      runProgram(
        { tier: "cpu", sshKeyFingerprints: [sshKeygenMd5(bob.publicKey)] },
        { secrets: { sshPrivateKey: bob.privateKey } },
      ),
    ).resolves.toBeDefined();
  });
});
