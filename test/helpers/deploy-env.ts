import type { DeployerAddressSource } from "../../infra/deployer-address";
import type { AccountSshKeySource, DeployEnvironment } from "../../infra/environment";
import { DirectorySshFileStore, UnwrittenSshFileStore } from "../../infra/ssh";
import type { AccountSshKey } from "../../infra/ssh-keys";

/** The deploying machine's address in tests: an RFC 5737 documentation address, outside the mock engine's droplet range. */
export const STAND_IN_DEPLOYER = "192.0.2.250";

/** Answers what it is told and counts the lookups. */
export class RecordingAddressSource implements DeployerAddressSource {
  calls = 0;
  constructor(private readonly answer: readonly string[] | Error = [STAND_IN_DEPLOYER]) {}
  async find(): Promise<readonly string[]> {
    this.calls++;
    if (this.answer instanceof Error) throw this.answer;
    return this.answer;
  }
}

/** A DigitalOcean account's key list, and the fingerprints it was asked for. */
export class RecordingAccountKeys implements AccountSshKeySource {
  readonly queries: string[] = [];
  constructor(private readonly keys: readonly AccountSshKey[] = []) {}
  async withFingerprint(fingerprint: string): Promise<readonly AccountSshKey[]> {
    this.queries.push(fingerprint);
    return this.keys.filter((k) => k.fingerprint === fingerprint);
  }
}

export function testEnvironment(
  opts: { sshDir?: string; address?: DeployerAddressSource; accountKeys?: AccountSshKeySource } = {},
): DeployEnvironment {
  return {
    // Nothing is written unless a test asks for a directory of its own.
    sshFiles: opts.sshDir ? new DirectorySshFileStore(opts.sshDir) : new UnwrittenSshFileStore(),
    secretsReadable: true,
    deployerAddress: opts.address ?? new RecordingAddressSource(),
    accountSshKeys: opts.accountKeys ?? new RecordingAccountKeys(),
  };
}
