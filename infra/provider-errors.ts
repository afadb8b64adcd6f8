/**
 * A failed provider call (an invoke such as digitalocean.getSshKeys) as one line for a problem
 * list. The real digitalocean provider (pulumi-digitalocean, Terraform bridge) answers without
 * network or token with
 *   invoking digitalocean:index/getSshKeys:getSshKeys: 1 error occurred:
 *   	* Unable to load records: Error retrieving ssh keys: Get "https://api.digitalocean.com/...": dial tcp: lookup api.digitalocean.com ...: no such host
 * (seen 2026-12-07 with the real plugin, see docs/pulumi-engine.md); the engine may add its own
 * "invocation of <token> returned an error:". Keeping only the first line kept only the header.
 *
 * Kept: every cause line, in order, joined with "; ". Dropped: the wrapper, the header, bullet
 * marks, stack frames. Masked: anything shaped like a credential (DigitalOcean tokens, bearer
 * tokens, passwords in URLs, token-like query parameters), so a provider that echoes its request
 * cannot leak one into the output.
 */

const WRAPPER = /^(invocation of \S+ returned an error:|invoking \S+:)\s*/i;
const HEADER = /^\d+ errors? occurred:?$/i;
const STACK_FRAME = /^at\s+\S/;

const SECRETS: readonly [RegExp, string][] = [
  [/\bdo[opr]_v1_[0-9a-f]{16,}/gi, "[redacted token]"],
  [/\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+/gi, "$1 [redacted]"],
  [/(\/\/[^/\s:@]+):[^/\s@]+@/g, "$1:[redacted]@"],
  [/([?&](?:access_token|token|api_key|apikey|key|password|secret)=)[^&\s"']+/gi, "$1[redacted]"],
];

/** The most a cause adds to a problem line; the rest is cut at a word with an ellipsis. */
export const MAX_CAUSE_LENGTH = 600;

export function providerErrorCause(err: unknown, maxLength: number = MAX_CAUSE_LENGTH): string {
  const text = err instanceof Error ? err.message : String(err);
  const causes: string[] = [];
  for (const raw of text.split(/\r?\n/)) {
    let line = raw.trim();
    // The engine wraps the provider's message once per hop; take every wrapper off.
    while (WRAPPER.test(line)) line = line.replace(WRAPPER, "");
    line = line.replace(/^[*-]\s+/, "").trim();
    // The header may share a line with the wrapper: "invocation of ... returned an error: 1 error occurred:".
    line = line.replace(/^\d+ errors? occurred:\s*/i, "").trim();
    if (!line || HEADER.test(line) || STACK_FRAME.test(line)) continue;
    if (!causes.includes(line)) causes.push(line);
  }
  let cause = causes.join("; ") || "no message";
  for (const [pattern, replacement] of SECRETS) cause = cause.replace(pattern, replacement);
  if (cause.length <= maxLength) return cause;
  const cut = cause.slice(0, maxLength);
  return `${cut.slice(0, Math.max(cut.lastIndexOf(" "), maxLength / 2))} …`;
}
