import { KeysFile, newApiKey, parseKeysFile, SCOPES, Scope } from "../../programs/gatekeeper/keys";
import { LIMIT_MAXIMUMS } from "../../programs/gatekeeper/protocol";
import { LIMIT_NAMES, type PartialLimits } from "../../programs/sandbox/protocol";
import { PROJECT } from "../../stacks/settings";
import type { AdminClient, KeyView } from "./admin-client";
import type { Io } from "./commands";
import { saveKeyFile } from "./connection";
import { HubCommandError, StackOps } from "./ops";

/**
 * `hub keys create|list|revoke|rotate|limits`: at runtime, through the gateway's admin API
 * (admin-client.ts): no deploy, no Pulumi CLI, no cloud token. `keys create --bootstrap` is the
 * one that writes the stack's `apiKeys` (the declared set) instead: a new stack's first admin key,
 * which the next deploy brings, and which no later deploy can lose.
 */

const API_KEYS = `${PROJECT}:apiKeys`;

export interface KeyOptions {
  readonly name?: string;
  readonly scopes?: string;
  readonly rate?: string;
  readonly burst?: string;
  readonly dailyQuota?: string;
  /** `wall_ms=30000,memory_bytes=536870912`: the key's own sandbox ceiling. */
  readonly sandboxLimits?: string;
  /** Seconds the key's coder requests wait for a waking GPU when they do not say (X-Hub-Wait). */
  readonly wait?: string;
  /** The most its requests may wait, whatever they ask. */
  readonly maxWait?: string;
}

/** 0..840 s: Traefik cuts a non-streaming answer after 900 s (the stack's gpuHoldMaxSeconds caps it further). */
const WAIT_MAX_SECONDS = 840;

/** `--sandbox-limits wall_ms=30000,memory_bytes=536870912` → the key's ceiling, or the problems with it. */
export function parseSandboxLimits(text: string): { limits?: PartialLimits; problems: string[] } {
  const problems: string[] = [];
  const limits: Record<string, number> = {};
  for (const part of text
    .split(",")
    .map((p) => p.trim())
    .filter(Boolean)) {
    const [name, value] = part.split("=");
    if (!(LIMIT_NAMES as readonly string[]).includes(name))
      problems.push(`--sandbox-limits: ${name} is not a limit; limits: ${LIMIT_NAMES.join(", ")}`);
    else if (!/^[1-9]\d*$/.test(value ?? "") || !Number.isSafeInteger(Number(value)))
      problems.push(`--sandbox-limits: ${name}=${value ?? ""} is not a positive whole number`);
    else limits[name] = Number(value);
  }
  if (problems.length === 0 && Object.keys(limits).length === 0)
    problems.push("--sandbox-limits needs limit=value pairs, e.g. wall_ms=30000,memory_bytes=536870912");
  return problems.length ? { problems } : { limits: limits as PartialLimits, problems };
}

/** A whole number in 1..max, or `none` (clears a limit) where allowed. */
function limitValue(
  flag: string,
  text: string | undefined,
  max: number,
  problems: string[],
  noneAllowed: boolean,
): number | null | undefined {
  if (text === undefined) return undefined;
  if (noneAllowed && text === "none") return null;
  if (!/^[1-9]\d*$/.test(text) || Number(text) > max)
    problems.push(
      `--${flag} ${JSON.stringify(text)} is not a whole number from 1 to ${max}${noneAllowed ? " (or none, to go back to the default)" : ""}`,
    );
  return Number(text);
}

/** What a new key asks for, from the command's options; every problem at once. */
export function newKeyRequest(opts: KeyOptions): Record<string, unknown> {
  const problems: string[] = [];
  const name = opts.name?.trim();
  if (!name) problems.push("--name is required (who or what uses the key)");
  const scopes = (opts.scopes ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  if (scopes.length === 0) problems.push(`--scopes is required: a comma-separated list of ${SCOPES.join(", ")}`);
  const unknown = scopes.filter((s) => !(SCOPES as readonly string[]).includes(s));
  if (unknown.length) problems.push(`unknown scope(s) ${unknown.join(", ")}; scopes: ${SCOPES.join(", ")}`);
  const rate = limitValue("rate", opts.rate, LIMIT_MAXIMUMS.keyRatePerMinute, problems, false);
  const burst = limitValue("burst", opts.burst, LIMIT_MAXIMUMS.keyBurst, problems, false);
  const dailyQuota = limitValue("daily-quota", opts.dailyQuota, LIMIT_MAXIMUMS.keyDailyQuota, problems, false);
  const sandbox = opts.sandboxLimits === undefined ? undefined : parseSandboxLimits(opts.sandboxLimits);
  if (sandbox) problems.push(...sandbox.problems);
  if (sandbox?.limits && !scopes.includes("sandbox"))
    problems.push("--sandbox-limits applies to keys with the sandbox scope; add sandbox to --scopes");
  const seconds = (flag: string, text: string | undefined) => {
    if (text === undefined) return undefined;
    if (!/^\d{1,3}$/.test(text) || Number(text) > WAIT_MAX_SECONDS)
      problems.push(`--${flag} ${text} is not a whole number of seconds from 0 to ${WAIT_MAX_SECONDS}`);
    return Number(text);
  };
  const waitSeconds = seconds("wait", opts.wait);
  const maxWaitSeconds = seconds("max-wait", opts.maxWait);
  if ((waitSeconds !== undefined || maxWaitSeconds !== undefined) && !scopes.includes("llm"))
    problems.push("--wait and --max-wait are for keys with the llm scope (only coder requests wait for the GPU)");
  if (problems.length) throw new HubCommandError(problems.join("; "));
  return {
    name,
    scopes,
    ...(rate ? { ratePerMinute: rate } : {}),
    ...(burst ? { burst } : {}),
    ...(dailyQuota ? { dailyQuota } : {}),
    ...(sandbox?.limits ? { sandboxLimits: sandbox.limits } : {}),
    ...(waitSeconds !== undefined ? { waitSeconds } : {}),
    ...(maxWaitSeconds !== undefined ? { maxWaitSeconds } : {}),
  };
}

/** The limits a `keys limits` call changes; every problem at once. */
export function limitsRequest(opts: Pick<KeyOptions, "rate" | "burst" | "dailyQuota">): Record<string, number | null> {
  const problems: string[] = [];
  const out: Record<string, number | null> = {};
  const rate = limitValue("rate", opts.rate, LIMIT_MAXIMUMS.keyRatePerMinute, problems, true);
  const burst = limitValue("burst", opts.burst, LIMIT_MAXIMUMS.keyBurst, problems, true);
  const dailyQuota = limitValue("daily-quota", opts.dailyQuota, LIMIT_MAXIMUMS.keyDailyQuota, problems, true);
  if (rate !== undefined) out.ratePerMinute = rate;
  if (burst !== undefined) out.burst = burst;
  if (dailyQuota !== undefined) out.dailyQuota = dailyQuota;
  if (problems.length === 0 && Object.keys(out).length === 0)
    problems.push("keys limits needs at least one of --rate, --burst, --daily-quota (a number, or none)");
  if (problems.length) throw new HubCommandError(problems.join("; "));
  return out;
}

export const KEY_ID_PATTERN = /^k_[A-Za-z0-9]{4,32}$/;
export function keyIdProblem(id: string | undefined): string | undefined {
  if (!id) return "a key id is required (see keys list), e.g. k_3f9a2c1b";
  return KEY_ID_PATTERN.test(id)
    ? undefined
    : `${JSON.stringify(id.slice(0, 40))} is not a key id (k_ and 4 to 32 letters or digits; see keys list)`;
}

/** The change `keys create --bootstrap` makes to the declared document, as a pure function. */
export function planKeysChange(
  current: KeysFile,
  action: string | undefined,
  args: readonly string[],
  opts: KeyOptions,
  now: Date,
): { file: KeysFile; newKey?: string; summary: string } {
  if (action === "create") {
    const request = newKeyRequest(opts);
    const key = newApiKey();
    const entry = {
      ...(request as { name: string; scopes: Scope[] }),
      id: key.id,
      sha256: key.sha256,
      created: now.toISOString(),
    };
    return {
      file: { ...current, keys: [...current.keys, entry] },
      newKey: key.key,
      summary: `declared key ${key.id} (${entry.name}) with scopes ${entry.scopes.join(", ")}`,
    };
  }
  throw new HubCommandError(`keys takes create, list, revoke, rotate or limits, not "${[action, ...args].join(" ")}"`);
}

const when = (iso: string | null | undefined) => (iso ? iso.replace(/\.\d{3}Z$/, "Z") : "never");

export function keyLine(k: KeyView): string {
  const limits = [
    k.ratePerMinute ? `rate=${k.ratePerMinute}/min` : "",
    k.burst ? `burst=${k.burst}` : "",
    k.dailyQuota ? `quota=${k.usedToday}/${k.dailyQuota} today` : "",
    k.waitSeconds !== undefined ? `wait=${String(k.waitSeconds)}s` : "",
    k.maxWaitSeconds !== undefined ? `max-wait=${String(k.maxWaitSeconds)}s` : "",
  ]
    .filter(Boolean)
    .join(" ");
  return `${k.id}  ${k.revoked ? "REVOKED  " : ""}${k.name}  scopes=${k.scopes.join(",")}${limits ? `  ${limits}` : ""}  ${k.origin}  created=${when(k.created)}  last used=${when(k.lastUsed)}${k.rotatedTo ? `  replaced by ${k.rotatedTo}` : ""}`;
}

/** The key, shown once (or saved to a file only its owner reads, and then not shown). */
function handOver(key: string, io: Io, saveTo?: string): void {
  if (saveTo) {
    saveKeyFile(saveTo, key);
    io.out(`API key saved to ${saveTo} (mode 600); it is shown nowhere else and stored only as a hash.`);
  } else io.out(`API key (shown once, store it now): ${key}`);
}

export async function keysCreate(client: AdminClient, opts: KeyOptions, io: Io, saveTo?: string): Promise<KeyView> {
  const request = newKeyRequest(opts);
  const created = await client.createKey(request);
  io.out(
    `created key ${created.id} (${created.name}) with scopes ${created.scopes.join(", ")}; it works now, on every gateway replica`,
  );
  handOver(created.key, io, saveTo);
  return created;
}

export async function keysList(client: AdminClient, io: Io): Promise<void> {
  const { store, data } = await client.listKeys();
  if (data.length === 0)
    io.out("no API keys: every request is refused. Create one: npm run hub -- keys create --name <who> --scopes llm");
  for (const k of data) io.out(keyLine(k));
  io.out(
    `(${data.filter((k) => !k.revoked).length} active, ${data.length} in all; runtime keys stored in ${store === "none" ? "nowhere: this gateway has no key store" : store})`,
  );
}

export async function keysRevoke(client: AdminClient, id: string, io: Io): Promise<void> {
  const revoked = await client.revokeKey(id);
  io.out(
    revoked.alreadyRevoked
      ? `key ${id} (${revoked.name}) was revoked already; nothing to do`
      : `revoked key ${id} (${revoked.name}): refused from now on, on every gateway replica`,
  );
  if (revoked.origin === "declared")
    io.out(
      "  it is declared in the stack's apiKeys: it stays revoked whatever a deploy writes; remove it from apiKeys to drop it",
    );
}

export async function keysRotate(client: AdminClient, id: string, io: Io, saveTo?: string): Promise<void> {
  const next = await client.rotateKey(id);
  io.out(
    `rotated key ${id}: its successor ${next.id} (${next.name}, scopes ${next.scopes.join(", ")}) works now, and ${id} is revoked`,
  );
  handOver(next.key, io, saveTo);
}

export async function keysLimits(
  client: AdminClient,
  id: string,
  opts: Pick<KeyOptions, "rate" | "burst" | "dailyQuota">,
  io: Io,
): Promise<void> {
  const limits = limitsRequest(opts);
  const view = await client.setLimits(id, limits);
  io.out(`key ${id} (${view.name}): ${keyLine(view)}`);
}

/**
 * `keys create --bootstrap`: the key goes into the stack's secret `apiKeys` (its hash only); the
 * next deploy brings it. Nothing is deployed here, so nothing can fail between storing the hash
 * and showing the key.
 */
export async function keysBootstrap(ops: StackOps, opts: KeyOptions, io: Io, saveTo?: string): Promise<void> {
  const config = await ops.getConfig();
  const text = config[API_KEYS]?.value;
  const current: KeysFile = text ? parseKeysFile(text) : { version: 1, keys: [] };
  const change = planKeysChange(current, "create", [], opts, new Date(io.now()));
  // Saved before the config is written: a failure after this leaves a key nobody lost.
  handOver(change.newKey!, io, saveTo);
  await ops.setConfig(API_KEYS, JSON.stringify(change.file), true);
  io.out(
    `${ops.stackName}: ${change.summary} in the stack's apiKeys (secret config). Deploy to bring it (pulumi up --stack ${ops.stackName}); commit Pulumi.${ops.stackName}.yaml so your pipeline deploys it too.`,
  );
}
