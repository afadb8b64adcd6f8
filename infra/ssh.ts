import { createHash, randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import * as sshpk from "sshpk";
import { cloudSlug } from "./naming";

/**
 * The deployer's SSH plumbing. Two clients log in to the nodes:
 * - `command.remote.Command` (readiness checks, file writes) speaks SSH itself (Go's x/crypto/ssh):
 *   it takes the private key and the expected host key as inputs.
 * - The Docker provider runs the system `ssh` (docker's connhelper: `ssh <sshOpts> -T root@host
 *   docker system dial-stdio`, each option its own argv entry, no shell). That ssh sees only the
 *   agent and ~/.ssh, so the key and a per-node known_hosts file go on disk, and its options
 *   point at them.
 * Files are rewritten on every program run (a CI runner starts empty) under one private
 * directory. Every path in the options is spelled from `~`, which ssh expands from the passwd
 * entry, so the Docker provider's configuration is the same string on every machine and never
 * makes Pulumi diff or replace what the provider manages.
 */

/** Where the deployer's SSH files live. */
export interface SshFileStore {
  /** The directory as ssh reads it in its options. */
  readonly root: string;
  /** Writes `root/relativePath` (mode 0600; its directories 0700), replacing it atomically. */
  write(relativePath: string, content: string): void;
}

/** `~` as ssh expands it: the passwd entry's home directory, not $HOME. */
export const sshHomeDirectory = (): string => os.userInfo().homedir;

export const HOME_SSH_ROOT = "~/.inference-hub/ssh";

/** Rejects anything but plain names: these end up in ssh's option values, split on spaces. */
const SAFE_PATH = /^[A-Za-z0-9._~/-]+$/;

function privateDirectory(dir: string): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = fs.lstatSync(dir);
  if (!st.isDirectory())
    throw new Error(`${dir} is not a directory (a symlink or a file is in the way); remove it and run again`);
  if (typeof process.getuid === "function" && st.uid !== process.getuid())
    throw new Error(`${dir} belongs to uid ${st.uid}, not to this user; remove it and run again`);
  if ((st.mode & 0o777) !== 0o700) fs.chmodSync(dir, 0o700);
}

/** Writes one private file under `realRoot`: directories 0700, the file 0600, replaced by rename. */
export function writePrivateFile(root: string, relativePath: string, content: string): string {
  const realRoot = path.resolve(root);
  if (!SAFE_PATH.test(relativePath) || relativePath.split("/").some((s) => s === ".." || s === ""))
    throw new Error(`refusing SSH file path ${JSON.stringify(relativePath)}`);
  const file = path.join(realRoot, relativePath);
  // The root and every directory between it and the file, outermost first.
  const chain: string[] = [];
  for (let d = path.dirname(file); d.length > realRoot.length; d = path.dirname(d)) chain.unshift(d);
  for (const d of [realRoot, ...chain]) privateDirectory(d);
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
  try {
    fs.writeFileSync(tmp, content, { mode: 0o600, flag: "wx" });
    fs.chmodSync(tmp, 0o600);
    fs.renameSync(tmp, file);
  } finally {
    fs.rmSync(tmp, { force: true });
  }
  return file;
}

/** The deploying user's ~/.inference-hub/ssh (real `pulumi up` and `pulumi preview`). */
export class HomeSshFileStore implements SshFileStore {
  readonly root = HOME_SSH_ROOT;
  write(relativePath: string, content: string): void {
    writePrivateFile(path.join(sshHomeDirectory(), ".inference-hub", "ssh"), relativePath, content);
  }
}

/** A directory of the caller's (tests): options name it by its absolute path. */
export class DirectorySshFileStore implements SshFileStore {
  constructor(readonly root: string) {
    if (!path.isAbsolute(root) || !SAFE_PATH.test(root))
      throw new Error(`SSH file directory ${JSON.stringify(root)} must be an absolute path of plain characters`);
  }
  write(relativePath: string, content: string): void {
    writePrivateFile(this.root, relativePath, content);
  }
}

/** The offline plan: the same options as a real deploy, nothing written to the user's home. */
export class UnwrittenSshFileStore implements SshFileStore {
  readonly root = HOME_SSH_ROOT;
  write(): void {}
}

/** One directory per stack (organization/project/stack), readable and collision-free. */
export function stackSshDirectory(organization: string, project: string, stack: string): string {
  const id = createHash("sha256").update(`${organization}/${project}/${stack}`).digest("hex").slice(0, 10);
  return `${cloudSlug(stack)}-${id}`;
}

/** A known_hosts line trusting exactly one key, under the alias the options name (never an IP). */
export function knownHostsLine(alias: string, publicKey: string): string {
  const key = sshpk.parseKey(publicKey, "ssh");
  return `${alias} ${key.toString("ssh").split(" ").slice(0, 2).join(" ")}\n`;
}

/**
 * The system ssh's options for Docker over SSH to one node. The host is matched by alias in a
 * known_hosts file holding only that node's key, so an IP an earlier droplet used never matters
 * and a different key on the same address is refused.
 */
export function dockerSshOptions(p: {
  readonly knownHostsFile: string;
  readonly hostKeyAlias: string;
  readonly identityFile?: string;
}): string[] {
  for (const v of [p.knownHostsFile, p.hostKeyAlias, p.identityFile ?? ""])
    if (v && !SAFE_PATH.test(v)) throw new Error(`unsafe ssh option value ${JSON.stringify(v)}`);
  const o = (option: string) => ["-o", option];
  return [
    // Never prompt: a prompt would hang the provider.
    ...o("BatchMode=yes"),
    ...o("StrictHostKeyChecking=yes"),
    ...o(`UserKnownHostsFile=${p.knownHostsFile}`),
    ...o("GlobalKnownHostsFile=/dev/null"),
    ...o(`HostKeyAlias=${p.hostKeyAlias}`),
    // The node has only the ed25519 key cloud-init installed.
    ...o("HostKeyAlgorithms=ssh-ed25519"),
    ...o("CheckHostIP=no"),
    ...o("UpdateHostKeys=no"),
    ...(p.identityFile ? [...o(`IdentityFile=${p.identityFile}`), ...o("IdentitiesOnly=yes")] : []),
    ...o("ConnectTimeout=20"),
    ...o("ServerAliveInterval=30"),
  ];
}

/** Why a configured deployer key cannot be used, or its public half's MD5 fingerprint. */
export function inspectDeployerKey(
  text: string,
): { ok: true; fingerprint: string; publicKey: string } | { ok: false; reason: string } {
  try {
    const key = sshpk.parsePrivateKey(text, "auto");
    return {
      ok: true,
      fingerprint: key.toPublic().fingerprint("md5").toString("hex"),
      publicKey: key.toPublic().toString("ssh").split(" ").slice(0, 2).join(" "),
    };
  } catch (err) {
    // Never echo the parser's message: it may quote the input.
    if ((err as Error).name === "KeyEncryptedError")
      return { ok: false, reason: "is encrypted with a passphrase; the deploy runs ssh without a prompt (BatchMode)" };
    return { ok: false, reason: "is not an OpenSSH or PEM private key" };
  }
}

/** How the deployer logs in, for every node of the stack. */
export interface SshAccess {
  /** The configured key (a Pulumi secret); unset: the SSH agent of the deploying shell. */
  readonly privateKey?: pulumi.Output<string>;
  readonly files: SshFileStore;
  /** This stack's directory under `files.root`. */
  readonly stackDirectory: string;
  /** The key file as ssh reads it, when a key is configured. */
  readonly identityFile?: string;
}

export const IDENTITY_FILE = "deployer_key";

/** Writes the key file now (every run, before any SSH) and describes the access. */
export function deployerSshAccess(
  files: SshFileStore,
  stackDirectory: string,
  privateKeyText: string | undefined,
): SshAccess {
  if (privateKeyText === undefined) return { files, stackDirectory };
  // OpenSSH refuses a key file without its final newline.
  files.write(
    `${stackDirectory}/${IDENTITY_FILE}`,
    privateKeyText.endsWith("\n") ? privateKeyText : `${privateKeyText}\n`,
  );
  return {
    privateKey: pulumi.secret(privateKeyText),
    files,
    stackDirectory,
    identityFile: `${files.root}/${stackDirectory}/${IDENTITY_FILE}`,
  };
}

/** Both SSH clients' settings for one node. */
export interface NodeSsh {
  /** For `command.remote.Command`: the pinned host key, and the configured key or else the agent. */
  readonly connection: command.types.input.remote.ConnectionArgs;
  /** For `docker.Provider`: known only once the node's known_hosts file is on disk. */
  readonly dockerSshOpts: pulumi.Output<string[]>;
}

/**
 * `hostKeyAlias` names the node in its known_hosts file (the droplet's cloud name). The connection
 * carries no agent socket path: the command provider reads SSH_AUTH_SOCK itself, and a path that
 * changes with every agent session would make every Command differ on every run.
 */
export function nodeSsh(
  access: SshAccess,
  node: {
    readonly name: string;
    readonly hostKeyAlias: string;
    readonly host: pulumi.Input<string>;
    readonly hostPublicKey: pulumi.Output<string>;
  },
): NodeSsh {
  const knownHosts = `${access.stackDirectory}/${node.name}.known_hosts`;
  const written = node.hostPublicKey.apply((publicKey) => {
    access.files.write(knownHosts, knownHostsLine(node.hostKeyAlias, publicKey));
    return publicKey;
  });
  return {
    connection: {
      host: node.host,
      user: "root",
      privateKey: access.privateKey,
      hostKey: node.hostPublicKey,
      // A fresh droplet takes a minute or two to answer SSH.
      dialErrorLimit: 40,
      perDialTimeout: 15,
    },
    dockerSshOpts: written.apply(() =>
      dockerSshOptions({
        knownHostsFile: `${access.files.root}/${knownHosts}`,
        hostKeyAlias: node.hostKeyAlias,
        identityFile: access.identityFile,
      }),
    ),
  };
}
