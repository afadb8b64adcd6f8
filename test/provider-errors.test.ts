import { describe, expect, it } from "vitest";
import { MAX_CAUSE_LENGTH, providerErrorCause } from "../infra/provider-errors";
import { RecordingAccountKeys, testEnvironment } from "./helpers/deploy-env";
import { runProgram } from "./helpers/mock-run";

// The real digitalocean provider's getSshKeys failure without network or token, as the program got
// it in the deploy rehearsal (docs/pulumi-engine.md): the bridge's "invoking <token>:", then
// go-multierror's header and list.
const NO_SUCH_HOST =
  'invoking digitalocean:index/getSshKeys:getSshKeys: 1 error occurred:\n\t* Unable to load records: Error retrieving ssh keys: Get "https://api.digitalocean.com/v2/account/keys?page=1&per_page=200": dial tcp: lookup api.digitalocean.com on 10.255.255.53:53: no such host\n\n';
const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOuyQ81UZv1fAG2JQpBPA7H1YrqCLHPTl3RuwgPR2Dhb me@laptop";

describe("a failed provider call's cause, on one line", () => {
  it("keeps the cause after go-multierror's header and drops the provider's wrapper", () => {
    expect(providerErrorCause(new Error(NO_SUCH_HOST))).toBe(
      'Unable to load records: Error retrieving ssh keys: Get "https://api.digitalocean.com/v2/account/keys?page=1&per_page=200": dial tcp: lookup api.digitalocean.com on 10.255.255.53:53: no such host',
    );
  });

  it("keeps every cause of a multi-error, in order, and takes off a wrapper per hop", () => {
    const twice = `invocation of a:b:c returned an error: invoking a:b:c: 2 errors occurred:\n\t* GET https://api.digitalocean.com/v2/account/keys: 401 (request "abc") Unable to authenticate you\n\t* second cause\n\n`;
    expect(providerErrorCause(new Error(twice))).toBe(
      'GET https://api.digitalocean.com/v2/account/keys: 401 (request "abc") Unable to authenticate you; second cause',
    );
  });

  it("shows no stack frames", () => {
    const withStack = new Error(
      "1 error occurred:\n\t* boom\n    at Object.invoke (/x/provider.js:1:2)\n    at Server.invoke (/x/server.ts:580:48)",
    );
    expect(providerErrorCause(withStack)).toBe("boom");
  });

  it("masks anything shaped like a credential a provider might echo", () => {
    const leaky = `1 error occurred:\n\t* token dop_v1_${"ab".repeat(32)} refused; Authorization: Bearer abc.def-ghi; https://user:hunter2@db.example.com/x?token=s3cr3t&page=1`;
    const cause = providerErrorCause(new Error(leaky));
    for (const secret of ["dop_v1_abab", "abc.def-ghi", "hunter2", "s3cr3t"]) expect(cause).not.toContain(secret);
    expect(cause).toContain("[redacted token]");
    expect(cause).toContain("page=1");
  });

  it("stays bounded, cut at a word", () => {
    const long = `1 error occurred:\n\t* ${"word ".repeat(400)}`;
    const cause = providerErrorCause(new Error(long));
    expect(cause.length).toBeLessThanOrEqual(MAX_CAUSE_LENGTH + 2);
    expect(cause.endsWith(" …")).toBe(true);
  });

  it("takes anything thrown, not only Errors", () => {
    expect(providerErrorCause("plain text\nsecond line")).toBe("plain text; second line");
    expect(providerErrorCause(new Error(""))).toBe("no message");
  });
});

describe("the program's refusal names the cause of a failed account lookup", () => {
  it("shows the DNS failure behind `could not list the DigitalOcean account's SSH keys`", async () => {
    const failing = new RecordingAccountKeys();
    failing.withFingerprint = async () => {
      throw new Error(NO_SUCH_HOST);
    };
    await expect(
      runProgram({ tier: "cpu", sshPublicKey: KEY }, { env: testEnvironment({ accountKeys: failing }) }),
    ).rejects.toThrow(
      /could not list the DigitalOcean account's SSH keys to see whether \S+ is registered already \(Unable to load records: .*no such host\)\. Check DIGITALOCEAN_TOKEN\./,
    );
  });
});
