import { randomUUID } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { KEY_PATTERN, newApiKey } from "../programs/gatekeeper/keys";
import { mayCarrySecret, REQUEST_ID_PATTERN, requestIdFrom } from "../programs/gatekeeper/request-id";
import { pathFrom, REDACTED_SEGMENT } from "../programs/gatekeeper/server";

/**
 * Request ids the gatekeeper echoes or stores must not be able to carry a key. Property-based
 * (fast-check, seeded so a failure reproduces): whatever a key looks like and wherever it sits in
 * an id, the id is replaced; the request-id formats clients really send are kept.
 */

const SEED = 20261201;
const RUNS = 3000;
const FALLBACK = "00000000-0000-4000-8000-000000000000";
const none = { secrets: [] as string[] };

const BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const ID_CHARS = `${BASE64URL}.:`;
const chars = (alphabet: string, minLength: number, maxLength: number) =>
  fc.string({ unit: fc.constantFrom(...alphabet), minLength, maxLength });
/** A random key body of the lengths the keys file accepts (32 to 256 base64url characters; 43 from newApiKey). */
const keyBody = fc.oneof(
  chars(BASE64URL, 32, 64),
  fc.constant(null).map(() => newApiKey().key.slice(4)),
);
/** Id characters around the key, as a client's own prefix and suffix would be. */
const around = chars(ID_CHARS, 0, 20);

describe("request ids that could carry a key are replaced", () => {
  it("any hub key, anywhere in the id, in any case", () => {
    fc.assert(
      fc.property(keyBody, around, around, fc.boolean(), (body, before, after, upper) => {
        const key = `ihk_${body}`;
        expect(KEY_PATTERN.test(key)).toBe(true);
        const id = `${before}${upper ? key.toUpperCase() : key}${after}`.slice(0, 128);
        expect(requestIdFrom(id, FALLBACK, none)).toBe(FALLBACK);
      }),
      { seed: SEED, numRuns: RUNS },
    );
  });

  it("a key's random part without the prefix, alone or inside a longer id", () => {
    fc.assert(
      fc.property(
        keyBody,
        fc.constantFrom("", "req-", "trace."),
        fc.constantFrom("", "-1", ":retry"),
        (body, before, after) => {
          expect(mayCarrySecret(`${before}${body}${after}`, none)).toBe(true);
        },
      ),
      { seed: SEED, numRuns: RUNS },
    );
  });

  it("a 16-character piece of the request's own credential or of the backends' key, even a word-like one", () => {
    const backendKey = "backend-internal-key-0123456789";
    fc.assert(
      fc.property(fc.nat(backendKey.length - 16), around, (start, before) => {
        const id = `${before}${backendKey.slice(start, start + 16)}`;
        expect(mayCarrySecret(id, { secrets: [backendKey] })).toBe(true);
      }),
      { seed: SEED, numRuns: 500 },
    );
    // Without being told the secret, that readable text is an ordinary id.
    expect(mayCarrySecret(backendKey, none)).toBe(false);
  });

  it("other services' keys and tokens", () => {
    const secrets = [
      `sk-${"T3BlbkFJ".repeat(6)}`,
      "sk-proj-Xq3vN9dLr2TgW8yBk5HmZc1FsJ7aPoE4uQiYtR6nVbCxMl0w",
      "sk-ant-api03-Jm4kQ9vX2zR7tW1yL8pB3nC6hF0dS5gA-aE2uI9oP4qT7wY1xZ",
      "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
      "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN",
      "hf_AbCdEfGhIjKlMnOpQrStUvWxYz01234567",
      "AKIAIOSFODNN7EXAMPLE",
      "xoxb-1234567890123-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
      "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSJ9.dBjftJeZ4CVPmB92K27uhbUJU1p1r_wW1gFWFOEjXk",
      "3f9a2c1be0d45a6f7b8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c",
    ];
    for (const secret of secrets) expect(mayCarrySecret(secret, none), secret).toBe(true);
  });
});

describe("ordinary request ids are kept", () => {
  const hex = (length: number) => chars("0123456789abcdef", length, length);
  const formats = fc.oneof(
    fc.constant(null).map(() => randomUUID()),
    fc.constant(null).map(() => randomUUID().toUpperCase()),
    hex(32),
    hex(16),
    hex(32).map((h) => `req_${h}`),
    fc.tuple(hex(32), hex(16)).map(([trace, span]) => `00-${trace}-${span}-01`),
    // ULID (Crockford base32, first character 0-7).
    fc.tuple(chars("01234567", 1, 1), chars("0123456789ABCDEFGHJKMNPQRSTVWXYZ", 25, 25)).map(([a, b]) => `${a}${b}`),
    fc
      .tuple(
        fc.constantFrom("req", "ci-run", "job", "CheckoutService", "worker", "bench-paced"),
        fc.nat(10_000_000),
        fc.nat(99),
      )
      .map(([name, n, step]) => `${name}-${n}-step-${step}`),
    fc.constant(null).map(() => `${newApiKey().id}-${Date.now()}`),
    fc
      .date({ min: new Date("2020-01-01"), max: new Date("2030-01-01"), noInvalidDate: true })
      .map((d) => `${d.toISOString()}-worker-3`),
  );
  it("UUIDs, hex trace ids, ULIDs, readable tokens, key ids with a counter, timestamps", () => {
    fc.assert(
      fc.property(formats, (id) => {
        expect(REQUEST_ID_PATTERN.test(id)).toBe(true);
        expect(requestIdFrom(id, FALLBACK, none)).toBe(id);
      }),
      { seed: SEED, numRuns: RUNS },
    );
  });

  it("a known key id with mixed case, which the keys file allows", () => {
    const id = "k_AbCd1234EfGh5678IjKl";
    expect(mayCarrySecret(`${id}-request-7`, none)).toBe(true);
    expect(mayCarrySecret(`${id}-request-7`, { secrets: [], isKeyId: (candidate) => candidate === id })).toBe(false);
  });

  it("ids with characters outside the plain-token set are replaced, never cleaned up", () => {
    for (const id of ["has spaces", "semi;colon", "quote'", `${"a".repeat(129)}`, "", "tab\there"])
      expect(requestIdFrom(id, FALLBACK, none)).toBe(FALLBACK);
    expect(requestIdFrom(undefined, FALLBACK, none)).toBe(FALLBACK);
  });
});

describe("recorded paths", () => {
  it("drop the query string and any segment that could be a secret, keeping the route", () => {
    const key = newApiKey().key;
    expect(pathFrom("/v1/chat/completions?api_key=leak")).toBe("/v1/chat/completions");
    expect(pathFrom(`/v1/ocr/convert/${key}/file`)).toBe(`/v1/ocr/convert/${REDACTED_SEGMENT}/file`);
    expect(pathFrom(`/v1/bot${key.slice(4)}/x`)).toBe(`/v1/${REDACTED_SEGMENT}/x`);
    const task = randomUUID();
    expect(pathFrom(`/v1/status/poll/${task}`)).toBe(`/v1/status/poll/${task}`);
    expect(pathFrom("/v1/audio/transcriptions")).toBe("/v1/audio/transcriptions");
    expect(pathFrom(undefined)).toBeNull();
  });
});
