import * as pulumi from "@pulumi/pulumi";
import { ConfigError, Problems } from "../stacks/problems";

/**
 * Secret settings the offline plan knows are set (stored `secure:` in the stack file) but cannot
 * decrypt, so it hands the program a stand-in. Code that parses a secret's content asks here first
 * and leaves a stand-in alone: it is checked when `pulumi up` decrypts the real value. Outside the
 * offline plan the set is empty, so every secret is checked.
 */
const standIns = new Set<string>();

export const isOfflineStandIn = (setting: string): boolean => standIns.has(setting);

/** Runs `body` (one program run under mocks) with these settings marked as stand-ins. */
export async function withOfflineStandIns<T>(settings: readonly string[], body: () => Promise<T>): Promise<T> {
  for (const s of settings) standIns.add(s);
  try {
    return await body();
  } finally {
    standIns.clear();
  }
}

/**
 * The program refusing a setting only it can check (e.g. the apiKeys document): a RunError, so
 * `pulumi up` prints the message without a stack trace, that also carries the problems, so the
 * offline plan can show them as a refusal.
 */
export class SettingsRefused extends pulumi.RunError {
  constructor(readonly problems: Problems) {
    super(new ConfigError(problems, `stack ${pulumi.getStack()}`).message);
  }
}
