import * as sshpk from "sshpk";

/**
 * Registering `sshPublicKey` with DigitalOcean. The account refuses a public key it already holds
 * (422 "SSH Key is already in use on your account"), so two stacks sharing a key, or a key the
 * user added by hand, would fail a plain `new digitalocean.SshKey`. The program lists the
 * account's keys with that fingerprint first and decides here, from plain data.
 */

/** A key as `digitalocean.getSshKeys` lists it. */
export interface AccountSshKey {
  readonly id: number;
  readonly name: string;
  readonly fingerprint: string;
  readonly publicKey: string;
}

export type SshKeyRegistration =
  /** The account lacks the key: register it under this stack's name. */
  | { readonly action: "create"; readonly name: string; readonly publicKey: string; readonly fingerprint: string }
  /**
   * The account holds it under this stack's name: this stack registered it (on an earlier run, or
   * before a `pulumi destroy` that left it in place). Keep declaring it, adopting it by id when it
   * is not in the state, so a run never deletes what an earlier run created.
   */
  | {
      readonly action: "adopt";
      readonly name: string;
      readonly publicKey: string;
      readonly fingerprint: string;
      readonly id: string;
    }
  /** The account holds it under another name (another stack, or added by hand): only name it by fingerprint. */
  | { readonly action: "reuse"; readonly fingerprint: string; readonly registeredAs: string };

/** DigitalOcean's fingerprint of an OpenSSH public key: MD5, lower-case colon hex. */
export function md5Fingerprint(publicKey: string): string {
  return sshpk.parseKey(publicKey, "ssh").fingerprint("md5").toString("hex");
}

export function decideSshKeyRegistration(input: {
  /** The name this stack registers keys under, e.g. ih-hybrid-deployer. */
  readonly ownName: string;
  readonly publicKey: string;
  readonly fingerprint: string;
  /** The account's keys (at least every key with this fingerprint). */
  readonly accountKeys: readonly AccountSshKey[];
}): SshKeyRegistration {
  const fingerprint = input.fingerprint.toLowerCase();
  // DigitalOcean holds a public key at most once, so at most one entry matches.
  const existing = input.accountKeys.find((k) => k.fingerprint.toLowerCase() === fingerprint);
  if (!existing) return { action: "create", name: input.ownName, publicKey: input.publicKey.trim(), fingerprint };
  if (existing.name === input.ownName) {
    // The account's own copy of the text: what the provider read back into the state.
    return {
      action: "adopt",
      name: input.ownName,
      publicKey: existing.publicKey,
      fingerprint,
      id: String(existing.id),
    };
  }
  return { action: "reuse", fingerprint, registeredAs: existing.name };
}

/** The droplets' `sshKeys`: the configured fingerprints/ids plus the registered key, each once, in a stable order. */
export function dropletSshKeys(configured: readonly string[], registered: string | undefined): string[] {
  const out: string[] = [];
  for (const k of [...configured, ...(registered ? [registered] : [])])
    if (!out.includes(k.toLowerCase())) out.push(k.toLowerCase());
  return out;
}
