import { KEY_PATTERN } from "./keys";

/**
 * Reads the API key a client presented, from `Authorization: Bearer <key>` (OpenAI SDKs) or
 * `X-Api-Key: <key>` (Anthropic-style clients). Anything ambiguous is refused rather than guessed.
 */

/** Longer header values are refused before any hashing: no key is this long. */
export const MAX_CREDENTIAL_HEADER_CHARS = 512;

export type CredentialProblem = "missing_key" | "malformed_key" | "oversized_credential" | "conflicting_keys";

export type PresentedCredential =
  | { readonly kind: "key"; readonly key: string }
  | { readonly kind: "problem"; readonly problem: CredentialProblem; readonly detail: string };

/** Header values by lower-case name, every occurrence kept (node's `req.headersDistinct`). */
export type DistinctHeaders = Readonly<Record<string, readonly string[] | undefined>>;

const problem = (kind: CredentialProblem, detail: string): PresentedCredential => ({
  kind: "problem",
  problem: kind,
  detail,
});

/** The distinct non-empty values of a header; empty values count as absent. */
function values(headers: DistinctHeaders, name: string): string[] {
  return [...new Set((headers[name] ?? []).map((v) => v.trim()).filter((v) => v.length > 0))];
}

export function presentedCredential(headers: DistinctHeaders): PresentedCredential {
  const authorization = values(headers, "authorization");
  const apiKey = values(headers, "x-api-key");
  if ([...authorization, ...apiKey].some((v) => v.length > MAX_CREDENTIAL_HEADER_CHARS)) {
    return problem(
      "oversized_credential",
      `a credential header is longer than ${MAX_CREDENTIAL_HEADER_CHARS} characters`,
    );
  }
  if (authorization.length > 1 || apiKey.length > 1)
    return problem("conflicting_keys", "a credential header was sent more than once with different values");

  let fromAuthorization: string | undefined;
  if (authorization.length === 1) {
    // RFC 9110: the scheme is case-insensitive; one or more spaces separate it from the token.
    const match = /^bearer[ \t]+(\S+)$/i.exec(authorization[0]);
    if (!match) return problem("malformed_key", "Authorization must be `Bearer <key>`");
    fromAuthorization = match[1];
  }
  const fromApiKey = apiKey[0];
  if (fromAuthorization !== undefined && fromApiKey !== undefined && fromAuthorization !== fromApiKey) {
    return problem("conflicting_keys", "Authorization and X-Api-Key carry different keys");
  }
  const key = fromAuthorization ?? fromApiKey;
  if (key === undefined) return problem("missing_key", "no Authorization: Bearer or X-Api-Key header");
  // Also refuses non-ASCII: node hands header bytes over as latin1 text, which the pattern rejects.
  if (!KEY_PATTERN.test(key)) return problem("malformed_key", "the key is not a hub key (ihk_...)");
  return { kind: "key", key };
}

/**
 * Every token the request presented as a credential, valid or not (the value after `Bearer`, or
 * the whole header): text the gatekeeper echoes or stores must not share with any of them.
 */
export function presentedTokens(headers: DistinctHeaders): string[] {
  const tokens = values(headers, "x-api-key");
  for (const value of values(headers, "authorization")) tokens.push(value.replace(/^bearer[ \t]+/i, ""));
  return tokens;
}
