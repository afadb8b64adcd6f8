/**
 * Text a client controls that the gatekeeper echoes or stores (X-Request-Id, path segments) must
 * not be able to carry a secret into a response, a backend's logs, the spool or the database.
 *
 * The usual accident is a key pasted verbatim into the wrong header or URL: the hub key itself
 * (`ihk_...`), its random part without the prefix, the request's own credential, the backends'
 * key, or another service's key (`sk-...`, `ghp_...`, a JWT, an AWS key id, 64 hex digits).
 * Request ids in the wild are UUIDs, ULIDs, hex trace ids and readable tokens such as
 * `ci-run-42-step-3`. So text is refused when:
 *
 * 1. it contains the hub's key prefix `ihk_` (any key, any case);
 * 2. it shares 16 characters or more with a credential this request presented or with the
 *    backends' key (a fragment that long is a leak of its own);
 * 3. a run of 20 or more key characters ([A-Za-z0-9_-]) in it is not built from "plain" parts:
 *    digits, single-case hex (up to 32 digits: a UUID, a trace id), a ULID, a short lower-case
 *    token, or a word (lower, Capitalised, a little camelCase, trailing digits). Random keys
 *    mix cases and digits throughout, so their runs fail this; readable ids pass it.
 *
 * Key ids (`k_...`) from the keys file are public handles and always fine.
 */

/** What the gatekeeper keeps of a client's X-Request-Id: a plain token of up to 128 characters. */
export const REQUEST_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;
const KEY_PREFIX_ANYWHERE = /ihk_/i;
/** Shorter than this, a credential cannot be a real key (the gatekeeper refuses it anyway). */
const MIN_SECRET_CHARS = 8;
/** Overlap with a known secret that counts as carrying it. */
const SHARED_SECRET_CHARS = 16;
/** Runs of key characters at least this long must look like an identifier, not like random text. */
const LONG_RUN_CHARS = 20;
const KEY_ID_ANYWHERE = /k_[A-Za-z0-9]{4,32}/g;

/** Parts plain by their character class alone. */
const PLAIN_PARTS: readonly RegExp[] = [
  /^[0-9]{1,32}$/,
  /^[0-9a-f]{1,32}$/,
  /^[0-9A-F]{1,32}$/,
  // ULID: 48-bit time + 80 random bits in Crockford base32 (ulid/spec).
  /^[0-7][0-9A-HJKMNP-TV-Z]{25}$/,
  // Key ids' random part, short hashes, "v2", "job42".
  /^[a-z0-9]{1,12}$/,
  // GET, US, V2.
  /^[A-Z]{1,8}[0-9]{0,6}$/,
];
/** A word: lower-case, Capitalised or camelCase (each hump followed by two or more lower-case letters), digits only at the end. */
const WORD = /^(?=.{1,32}$)[A-Za-z][a-z]*(?:[A-Z][a-z]{2,})*[0-9]{0,6}$/;
/** Readable camelCase has a capital every five or more letters; random text one every two. */
const MIN_LETTERS_PER_CAPITAL = 5;

function isPlainRun(run: string): boolean {
  let letters = 0;
  let capitals = 0;
  for (const part of run.split(/[-_]+/)) {
    if (part.length === 0 || PLAIN_PARTS.some((pattern) => pattern.test(part))) continue;
    if (!WORD.test(part)) return false;
    for (const char of part) {
      if (char >= "a" && char <= "z") letters += 1;
      else if (char >= "A" && char <= "Z") {
        letters += 1;
        capitals += 1;
      }
    }
  }
  return capitals === 0 || letters >= MIN_LETTERS_PER_CAPITAL * capitals;
}

function sharesSecret(text: string, secrets: readonly string[]): boolean {
  for (const secret of secrets) {
    if (secret.length < MIN_SECRET_CHARS) continue;
    const window = Math.min(SHARED_SECRET_CHARS, secret.length);
    for (let start = 0; start + window <= text.length; start++) {
      if (secret.includes(text.slice(start, start + window))) return true;
    }
  }
  return false;
}

export interface SecretContext {
  /** Secrets the text must not share with: the request's own credentials and the backends' key. */
  readonly secrets: readonly string[];
  /** Whether a `k_...` handle is a key id of the keys file in force. @default - none is */
  readonly isKeyId?: (id: string) => boolean;
}

/** Whether `text` could be, or contain, a secret; see the rules at the top of this file. */
export function mayCarrySecret(text: string, context: SecretContext): boolean {
  if (KEY_PREFIX_ANYWHERE.test(text)) return true;
  if (sharesSecret(text, context.secrets)) return true;
  const isKeyId = context.isKeyId;
  // A known key id is replaced by a separator, so it neither counts towards a run nor breaks one's rules.
  const withoutKeyIds = isKeyId ? text.replace(KEY_ID_ANYWHERE, (id) => (isKeyId(id) ? "." : id)) : text;
  return withoutKeyIds.split(/[^A-Za-z0-9_-]+/).some((run) => run.length >= LONG_RUN_CHARS && !isPlainRun(run));
}

/**
 * The request id to echo, forward and store: the client's (or Traefik's) X-Request-Id when it is
 * a plain token that cannot carry a secret, else `fallback` (the decision id). It is never the
 * audit row's primary key, so a client cannot collide with someone else's row.
 */
export function requestIdFrom(header: string | undefined, fallback: string, context: SecretContext): string {
  if (header === undefined || !REQUEST_ID_PATTERN.test(header)) return fallback;
  return mayCarrySecret(header, context) ? fallback : header;
}
