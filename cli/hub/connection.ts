import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { KEY_PATTERN } from "../../programs/gatekeeper/keys";
import { PUBLIC_PORTS } from "../../services/ports";
import type { HubConfig } from "../../stacks/hub-config";
import { HubCommandError } from "./ops";

/**
 * How the CLI finds a running hub and speaks for its operator, with no cloud token:
 * - the gateway's URL: `--url`, else `HUB_URL`, else what the stack file says (the local tier's
 *   loopback address, or https://<domain>), else the stack's `baseUrl` output when the Pulumi CLI
 *   is here, else an error naming the three ways;
 * - the admin key: `--key-file`, else `HUB_ADMIN_KEY`, else `~/.inference-hub/keys/<stack>.admin-key`;
 *   a key file readable by anyone but its owner is refused, as ssh refuses such a private key.
 */

export const keysDirectory = (home = os.homedir()): string => path.join(home, ".inference-hub", "keys");
export const defaultKeyFile = (stack: string, home = os.homedir()): string =>
  path.join(keysDirectory(home), `${stack}.admin-key`);

export type UrlSource = "--url" | "HUB_URL" | "the stack file" | "the stack's baseUrl output";

/** The URL the stack file alone decides, without a deploy to ask. */
export function urlFromStackFile(hub: HubConfig): string | undefined {
  if (hub.tier === "local") return `http://127.0.0.1:${PUBLIC_PORTS.legacy}/v1`;
  if (hub.gateway.domain) return `https://${hub.gateway.domain}/v1`;
  return undefined;
}

export async function gatewayUrl(opts: {
  flag?: string;
  env: NodeJS.ProcessEnv;
  hub?: HubConfig;
  stackOutput?: () => Promise<string | undefined>;
}): Promise<{ url: string; source: UrlSource }> {
  const checked = (url: string, source: UrlSource) => {
    if (!/^https?:\/\/[^\s/]+/.test(url))
      throw new HubCommandError(
        `${source} ${JSON.stringify(url)} is not an http:// or https:// URL (e.g. https://hub.example.com/v1)`,
      );
    return { url: url.replace(/\/+$/, ""), source };
  };
  if (opts.flag) return checked(opts.flag, "--url");
  if (opts.env.HUB_URL) return checked(opts.env.HUB_URL, "HUB_URL");
  const fromFile = opts.hub ? urlFromStackFile(opts.hub) : undefined;
  if (fromFile) return checked(fromFile, "the stack file");
  const output = opts.stackOutput ? await opts.stackOutput() : undefined;
  if (output) return checked(output, "the stack's baseUrl output");
  throw new HubCommandError(
    `the gateway's URL is unknown: pass --url https://<host>/v1, set HUB_URL, or install the Pulumi CLI so the stack's baseUrl output can be read (${opts.stackOutput ? "the stack has no baseUrl output: is it deployed?" : "it is not on the PATH"})`,
  );
}

/** A key file must be the owner's alone (mode 0600 or stricter), as ssh requires of a private key. */
export function readKeyFile(file: string): string {
  let mode: number;
  try {
    mode = statSync(file).mode & 0o777;
  } catch {
    throw new HubCommandError(`--key-file ${file}: no such file`);
  }
  if (mode & 0o077)
    throw new HubCommandError(
      `--key-file ${file} is readable by others (mode ${mode.toString(8).padStart(4, "0")}); an admin key must be yours alone: chmod 600 ${file}`,
    );
  const key = readFileSync(file, "utf8").trim();
  if (!KEY_PATTERN.test(key)) throw new HubCommandError(`--key-file ${file} does not hold a hub key (ihk_...)`);
  return key;
}

export function adminKey(opts: { keyFile?: string; env: NodeJS.ProcessEnv; stack: string; home?: string }): {
  key: string;
  source: string;
} {
  if (opts.keyFile) return { key: readKeyFile(opts.keyFile), source: opts.keyFile };
  const fromEnv = opts.env.HUB_ADMIN_KEY?.trim();
  if (fromEnv) {
    if (!KEY_PATTERN.test(fromEnv)) throw new HubCommandError("HUB_ADMIN_KEY does not hold a hub key (ihk_...)");
    return { key: fromEnv, source: "HUB_ADMIN_KEY" };
  }
  const file = defaultKeyFile(opts.stack, opts.home);
  if (existsSync(file)) return { key: readKeyFile(file), source: file };
  throw new HubCommandError(
    `no admin key: set HUB_ADMIN_KEY, pass --key-file FILE, or keep one in ${file} (mode 600). A new stack's first admin key: npm run hub -- keys create --bootstrap --name admin --scopes admin --stack ${opts.stack}, then deploy`,
  );
}

/** Writes a key to a file only its owner can read; refuses to overwrite one. */
export function saveKeyFile(file: string, key: string): void {
  if (existsSync(file))
    throw new HubCommandError(`${file} exists; the new key was not saved there (move the old file away first)`);
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  writeFileSync(file, `${key}\n`, { mode: 0o600, flag: "wx" });
  chmodSync(file, 0o600);
}

/** Where the admin key travels unencrypted, say so (never a refusal: a stack without a domain is plain HTTP). */
export function plainHttpWarning(url: string): string | undefined {
  const { protocol, hostname } = new URL(url);
  if (protocol !== "http:" || hostname === "127.0.0.1" || hostname === "localhost" || hostname === "::1")
    return undefined;
  return `warning: ${url} is plain HTTP: the admin key crosses the network unencrypted. Set domain and acmeEmail on the stack for TLS.`;
}

/** TLS verification is never turned off by this CLI; if the environment turned it off, say so on every call. */
export function tlsWarning(env: NodeJS.ProcessEnv): string | undefined {
  return env.NODE_TLS_REJECT_UNAUTHORIZED === "0"
    ? "warning: NODE_TLS_REJECT_UNAUTHORIZED=0 is set: certificates are NOT verified. Unset it; for a private CA use NODE_EXTRA_CA_CERTS=<ca.pem>."
    : undefined;
}
