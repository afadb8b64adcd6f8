import * as digitalocean from "@pulumi/digitalocean";
import { DeployerAddressSource, EchoServiceAddressSource } from "./deployer-address";
import { HomeSshFileStore, SshFileStore, UnwrittenSshFileStore } from "./ssh";
import type { AccountSshKey } from "./ssh-keys";

/** The account's SSH keys with one fingerprint (DigitalOcean holds a key at most once). */
export interface AccountSshKeySource {
  withFingerprint(fingerprint: string): Promise<readonly AccountSshKey[]>;
}

/** The DOKS versions DigitalOcean offers now (the k8s tier picks its release from them). */
export interface KubernetesVersionSource {
  offered(): Promise<readonly string[]>;
}

/**
 * What the program needs from the machine it runs on and the cloud account, beyond the engine:
 * a real deploy talks to the internet and writes the deployer's SSH files; the offline plan and
 * the tests pass their own.
 */
export interface DeployEnvironment {
  readonly sshFiles: SshFileStore;
  /** False in the offline plan, where secret settings are placeholders: their content is not checked. */
  readonly secretsReadable: boolean;
  /** Undefined: not knowable here (the offline plan); the firewall's SSH source stays "known after deploy". */
  readonly deployerAddress?: DeployerAddressSource;
  /** Undefined: the account cannot be read (the offline plan assumes the key is not registered yet). */
  readonly accountSshKeys?: AccountSshKeySource;
  /** Undefined: not knowable here (the offline plan assumes the catalogue's DOKS release). */
  readonly kubernetesVersions?: KubernetesVersionSource;
}

class DigitalOceanAccountKeys implements AccountSshKeySource {
  async withFingerprint(fingerprint: string): Promise<readonly AccountSshKey[]> {
    const result = await digitalocean.getSshKeys({ filters: [{ key: "fingerprint", values: [fingerprint] }] });
    return (result.sshKeys ?? []).map((k) => ({
      id: k.id,
      name: k.name,
      fingerprint: k.fingerprint,
      publicKey: k.publicKey,
    }));
  }
}

/** `pulumi up` / `pulumi preview`. */
export function liveEnvironment(): DeployEnvironment {
  return {
    sshFiles: new HomeSshFileStore(),
    secretsReadable: true,
    deployerAddress: new EchoServiceAddressSource(),
    accountSshKeys: new DigitalOceanAccountKeys(),
    kubernetesVersions: { offered: async () => (await digitalocean.getKubernetesVersions()).validVersions ?? [] },
  };
}

/** `npm run plan`: no network, nothing written. */
export function offlineEnvironment(): DeployEnvironment {
  return { sshFiles: new UnwrittenSshFileStore(), secretsReadable: false };
}
