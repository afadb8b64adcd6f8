/**
 * A refused setting: which key, what value, why, and what would work. Checks return these
 * instead of throwing, so every problem in a stack is reported at once.
 */
export interface Problem {
  /** The Pulumi config key(s) at fault, e.g. `llmQuantization`. */
  readonly keys: readonly string[];
  readonly value?: unknown;
  readonly message: string;
  readonly fix: string;
}

/** A refusal always names at least one problem: the type makes an empty one unbuildable. */
export type Problems = readonly [Problem, ...Problem[]];

export const isNonEmpty = (problems: readonly Problem[]): problems is Problems => problems.length > 0;

export const problem = (keys: string | readonly string[], value: unknown, message: string, fix: string): Problem => ({
  keys: typeof keys === "string" ? [keys] : keys,
  value,
  message,
  fix,
});

/** A warning does not stop the plan but is printed prominently (e.g. SSH open to the internet). */
export interface Warning {
  readonly keys: readonly string[];
  readonly message: string;
}

/** Shown instead of a value that may be a secret (a secret setting, an unknown key, a credential). */
export const NOT_SHOWN = "(not shown)";
/** At most this much of a value is repeated back; a refusal is read in CI logs, not a hex dump. */
export const MAX_VALUE_CHARS = 120;
/** Keys, messages and fixes are capped too: they can quote parts of a value or a 1 MiB key name. */
export const MAX_KEY_CHARS = 80;
export const MAX_TEXT_CHARS = 1000;

/**
 * Text that is a credential wherever it appears: PEM private keys, the hub's own API keys
 * (programs/gatekeeper/keys.ts KEY_PREFIX), and passwords inside URLs (a database URL pasted
 * into the wrong setting).
 */
const CREDENTIALS: readonly { readonly pattern: RegExp; readonly replace: string }[] = [
  { pattern: /-----BEGIN[^-\n]*PRIVATE KEY-----[\s\S]*?(?:-----END[^-\n]*PRIVATE KEY-----|$)/g, replace: NOT_SHOWN },
  { pattern: /ihk_[A-Za-z0-9_-]+/g, replace: `ihk_${NOT_SHOWN}` },
  { pattern: /(\b[a-z][a-z0-9+.-]*:\/\/[^/\s:@]*:)[^@\s]*@/gi, replace: `$1${NOT_SHOWN}@` },
];

export function looksLikeCredential(text: string): boolean {
  return CREDENTIALS.some(({ pattern }) => new RegExp(pattern.source, pattern.flags.replace("g", "")).test(text));
}

function redact(text: string): string {
  let out = text;
  for (const { pattern, replace } of CREDENTIALS) out = out.replace(pattern, replace);
  return out;
}

/** Cuts text to `max` characters, saying how long it was. */
export function cap(text: string, max: number): string {
  if (text.length <= max) return text;
  const note = `… (${text.length} characters)`;
  return `${text.slice(0, Math.max(0, max - note.length))}${note}`;
}

/** What a refusal may repeat of a value: small and harmless values as they are, else a capped or hidden stand-in. */
export function presentableValue(value: unknown): unknown {
  if (value === undefined || value === NOT_SHOWN) return value;
  let json: string;
  try {
    json = JSON.stringify(value) ?? String(value);
  } catch {
    json = String(value);
  }
  if (looksLikeCredential(json)) return NOT_SHOWN;
  if (json.length <= MAX_VALUE_CHARS) return value;
  return cap(typeof value === "string" ? value : json, MAX_VALUE_CHARS);
}

/** A problem as it may be printed or written into a plan document: no credential, nothing unbounded. */
export function presentableProblem(p: Problem): Problem {
  return {
    keys: p.keys.map((k) => cap(redact(k), MAX_KEY_CHARS)),
    ...(p.value === undefined ? {} : { value: presentableValue(p.value) }),
    message: cap(redact(p.message), MAX_TEXT_CHARS),
    fix: cap(redact(p.fix), MAX_TEXT_CHARS),
  };
}

export function presentableWarning(w: Warning): Warning {
  return { keys: w.keys.map((k) => cap(redact(k), MAX_KEY_CHARS)), message: cap(redact(w.message), MAX_TEXT_CHARS) };
}

export function formatValue(value: unknown): string {
  if (value === undefined) return "(unset)";
  if (value === NOT_SHOWN) return NOT_SHOWN;
  return JSON.stringify(value) ?? String(value);
}

export function formatProblem(raw: Problem): string {
  const p = presentableProblem(raw);
  const value = p.value === undefined ? "" : ` = ${formatValue(p.value)}`;
  return `${p.keys.join(", ")}${value}: ${p.message} ${p.fix}`.trim();
}

export class ConfigError extends Error {
  constructor(
    readonly problems: Problems,
    readonly origin: string,
  ) {
    super(
      `${origin}: ${problems.length} setting problem${problems.length === 1 ? "" : "s"}:\n` +
        problems.map((p) => `  - ${formatProblem(p)}`).join("\n"),
    );
    this.name = "ConfigError";
  }
}
