import { KeysFile, newApiKey, parseKeysFile, SCOPES, Scope } from "../../../programs/gatekeeper/keys";
import { LIMIT_NAMES, type PartialLimits } from "../../../programs/sandbox/protocol";
import { PROJECT } from "../../../stacks/settings";
import { Io, previewAndApply } from "./commands";
import { HubCommandError, StackOps } from "./ops";

const API_KEYS = `${PROJECT}:apiKeys`;

export interface KeyOptions {
  readonly name?: string;
  readonly scopes?: string;
  readonly rate?: string;
  /** `wall_ms=30000,memory_bytes=536870912`: the key's own sandbox ceiling. */
  readonly sandboxLimits?: string;
  /** Seconds the key's coder requests wait for a waking GPU when they do not say (X-Hub-Wait). */
  readonly wait?: string;
  /** The most its requests may wait, whatever they ask. */
  readonly maxWait?: string;
}

/** `--sandbox-limits wall_ms=30000,memory_bytes=536870912` → the key's ceiling, or the problems with it. */
export function parseSandboxLimits(text: string): { limits?: PartialLimits; problems: string[] } {
  const problems: string[] = [];
  const limits: Record<string, number> = {};
  for (const part of text.split(",").map((p) => p.trim()).filter(Boolean)) {
    const [name, value] = part.split("=");
    if (!(LIMIT_NAMES as readonly string[]).includes(name)) problems.push(`--sandbox-limits: ${name} is not a limit; limits: ${LIMIT_NAMES.join(", ")}`);
    else if (!/^[1-9]\d*$/.test(value ?? "") || !Number.isSafeInteger(Number(value))) problems.push(`--sandbox-limits: ${name}=${value ?? ""} is not a positive whole number`);
    else limits[name] = Number(value);
  }
  if (problems.length === 0 && Object.keys(limits).length === 0) problems.push("--sandbox-limits needs limit=value pairs, e.g. wall_ms=30000,memory_bytes=536870912");
  return problems.length ? { problems } : { limits: limits as PartialLimits, problems };
}

/** 0..840 s: Traefik cuts a non-streaming answer after 900 s (the stack's gpuHoldMaxSeconds caps it further). */
const WAIT_MAX_SECONDS = 840;

/** The change a keys command makes to the keys document, as a pure function. */
export function planKeysChange(current: KeysFile, action: string | undefined, args: readonly string[], opts: KeyOptions, now: Date): { file: KeysFile; newKey?: string; summary: string } {
  if (action === "create") {
    const problems: string[] = [];
    const name = opts.name?.trim();
    if (!name) problems.push("--name is required (who or what uses the key)");
    const scopes = (opts.scopes ?? "").split(",").map((s) => s.trim()).filter(Boolean);
    if (scopes.length === 0) problems.push(`--scopes is required: a comma-separated list of ${SCOPES.join(", ")}`);
    const unknown = scopes.filter((s) => !(SCOPES as readonly string[]).includes(s));
    if (unknown.length) problems.push(`unknown scope(s) ${unknown.join(", ")}; scopes: ${SCOPES.join(", ")}`);
    const rate = opts.rate === undefined ? undefined : Number(opts.rate);
    if (rate !== undefined && !(Number.isInteger(rate) && rate > 0)) problems.push(`--rate ${opts.rate} is not a positive whole number of requests per minute`);
    const sandbox = opts.sandboxLimits === undefined ? undefined : parseSandboxLimits(opts.sandboxLimits);
    if (sandbox) problems.push(...sandbox.problems);
    if (sandbox?.limits && !scopes.includes("sandbox")) problems.push("--sandbox-limits applies to keys with the sandbox scope; add sandbox to --scopes");
    const seconds = (flag: string, text: string | undefined) => {
      if (text === undefined) return undefined;
      if (!/^\d{1,3}$/.test(text) || Number(text) > WAIT_MAX_SECONDS) problems.push(`--${flag} ${text} is not a whole number of seconds from 0 to ${WAIT_MAX_SECONDS}`);
      return Number(text);
    };
    const waitSeconds = seconds("wait", opts.wait);
    const maxWaitSeconds = seconds("max-wait", opts.maxWait);
    if ((waitSeconds !== undefined || maxWaitSeconds !== undefined) && !scopes.includes("llm")) problems.push("--wait and --max-wait are for keys with the llm scope (only coder requests wait for the GPU)");
    if (problems.length) throw new HubCommandError(problems.join("; "));
    const key = newApiKey();
    const wait = waitSeconds === undefined ? {} : { waitSeconds };
    const maxWait = maxWaitSeconds === undefined ? {} : { maxWaitSeconds };
    const entry = { id: key.id, name: name!, sha256: key.sha256, scopes: scopes as Scope[], ...(rate ? { ratePerMinute: rate } : {}), ...(sandbox?.limits ? { sandboxLimits: sandbox.limits } : {}), ...wait, ...maxWait, created: now.toISOString() };
    return { file: { ...current, keys: [...current.keys, entry] }, newKey: key.key, summary: `created key ${key.id} (${name}) with scopes ${scopes.join(", ")}${waitSeconds !== undefined ? `, waiting up to ${waitSeconds} s for a waking GPU by default` : ""}` };
  }
  if (action === "revoke") {
    const id = args[0];
    if (!id) throw new HubCommandError("revoke needs a key id (see keys list)");
    const found = current.keys.find((k) => k.id === id);
    if (!found) throw new HubCommandError(`no key with id ${id}; ids: ${current.keys.map((k) => k.id).join(", ") || "none"}`);
    if (found.revoked) return { file: current, summary: `key ${id} is already revoked` };
    return { file: { ...current, keys: current.keys.map((k) => (k.id === id ? { ...k, revoked: true } : k)) }, summary: `revoked key ${id} (${found.name})` };
  }
  throw new HubCommandError(`keys takes create, list or revoke, not "${action ?? ""}"`);
}

export function listKeys(file: KeysFile): string[] {
  if (file.keys.length === 0) return ["no API keys: every request is refused. Create one: npm run hub -- keys create --name <who> --scopes llm --stack <name>"];
  return file.keys.map((k) => `${k.id}  ${k.revoked ? "REVOKED " : ""}${k.name}  scopes=${k.scopes.join(",")}${k.ratePerMinute ? `  rate=${k.ratePerMinute}/min` : ""}${k.sandboxLimits ? `  sandbox-limits=${Object.entries(k.sandboxLimits).map(([n, v]) => `${n}=${v}`).join(",")}` : ""}${k.waitSeconds !== undefined ? `  wait=${k.waitSeconds}s` : ""}${k.maxWaitSeconds !== undefined ? `  max-wait=${k.maxWaitSeconds}s` : ""}  created=${k.created}`);
}

/** `keys create|list|revoke`: edits the stack's secret `apiKeys` (hashes only), then deploys it. */
export async function keysCommand(ops: StackOps, action: string | undefined, args: readonly string[], opts: KeyOptions, io: Io): Promise<void> {
  const config = await ops.getConfig();
  const text = config[API_KEYS]?.value;
  const current: KeysFile = text ? parseKeysFile(text) : { version: 1, keys: [] };
  if (action === "list") {
    for (const line of listKeys(current)) io.out(line);
    return;
  }
  const change = planKeysChange(current, action, args, opts, new Date(io.now()));
  if (change.file === current) {
    io.out(`${ops.stackName}: ${change.summary}; nothing to do.`);
    return;
  }
  await ops.setConfig(API_KEYS, JSON.stringify(change.file), true);
  io.out(`${ops.stackName}: ${change.summary}`);
  await previewAndApply(ops, config, [API_KEYS], io);
  if (change.newKey) {
    // Shown once: only its hash is kept anywhere.
    io.out(`API key (shown once, store it now): ${change.newKey}`);
  }
}
