import { spawnSync } from "node:child_process";
import { createPrivateKey, createPublicKey, X509Certificate } from "node:crypto";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { cloudState, standInEd25519 } from "../cli/plan/mock-engine";
import { SSHD } from "./helpers/ssh";

/**
 * The offline plan's stand-ins for tls.PrivateKey and tls.SelfSignedCert (cli/plan/mock-engine.ts)
 * are real keys and certificates: the SSH tests log in with them and the Docker tests serve TLS
 * with them. Checked here by OpenSSL (Node's X509Certificate) and by OpenSSH's ssh-keygen, not by
 * sshpk, which makes them.
 */

const scratch = mkdtempSync(path.join(tmpdir(), "stand-ins-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const certFor = (privateKeyPem: string, dnsNames: unknown) =>
  (cloudState("tls:index/selfSignedCert:SelfSignedCert", "cert", { privateKeyPem, dnsNames }) as { certPem: string })
    .certPem;

describe("the stand-in TLS certificate", () => {
  const key = standInEd25519("stand-ins test/gatekeeper-tls");
  const cert = new X509Certificate(certFor(key.privateKeyPem, ["gatekeeper"]));

  it("is signed by the key it names, for the first DNS name, with the fixed validity", () => {
    expect(cert.verify(cert.publicKey)).toBe(true);
    expect(cert.checkPrivateKey(createPrivateKey(key.privateKeyPem))).toBe(true);
    expect(cert.publicKey.export({ format: "pem", type: "spki" })).toBe(key.publicKeyPem);
    expect(cert.subject).toBe("CN=gatekeeper");
    expect(cert.subjectAltName).toBe("DNS:gatekeeper");
    expect(new Date(cert.validFrom).toISOString()).toBe("2026-01-01T00:00:00.000Z");
    expect(new Date(cert.validTo).toISOString()).toBe("2099-01-01T00:00:00.000Z");
  });

  it("is the same certificate on every plan (the rendered files do not change)", () => {
    const again = standInEd25519("stand-ins test/gatekeeper-tls");
    expect(certFor(again.privateKeyPem, ["gatekeeper"])).toBe(cert.toString());
    expect(certFor(again.privateKeyPem, ["other"])).not.toBe(cert.toString());
  });

  it("is made for a key it did not make too (a PEM from elsewhere)", () => {
    const other = standInEd25519("stand-ins test/elsewhere").privateKeyPem;
    // The same key, written out again by Node: not the stand-in's own string.
    const rewritten = createPrivateKey(other).export({ format: "der", type: "pkcs8" });
    const pem = `-----BEGIN PRIVATE KEY-----\n${rewritten.toString("base64")}\n-----END PRIVATE KEY-----\n`;
    const made = new X509Certificate(certFor(pem, undefined));
    expect(made.subject).toBe("CN=localhost");
    expect(made.verify(made.publicKey)).toBe(true);
    expect(made.checkPrivateKey(createPrivateKey(other))).toBe(true);
  });
});

describe("the stand-in SSH host key", () => {
  const key = standInEd25519("stand-ins test/host");

  it("has one key pair in all four forms", () => {
    const fromPem = createPublicKey(key.privateKeyPem).export({ format: "pem", type: "spki" });
    expect(fromPem).toBe(key.publicKeyPem);
    expect(key.publicKeyOpenssh).toMatch(/^ssh-ed25519 [A-Za-z0-9+/]+=*\n$/);
    expect(standInEd25519("stand-ins test/other").publicKeyOpenssh).not.toBe(key.publicKeyOpenssh);
  });

  // OpenSSH's own reading of the private key file: the public half it derives is the one the plan renders.
  it.runIf(SSHD)("is read by ssh-keygen, which derives the same public key", () => {
    const file = path.join(scratch, "host_key");
    writeFileSync(file, key.privateKeyOpenssh);
    chmodSync(file, 0o600);
    const derived = spawnSync("ssh-keygen", ["-y", "-f", file], { encoding: "utf8" });
    expect(derived.status, derived.stderr).toBe(0);
    expect(derived.stdout.split(" ").slice(0, 2).join(" ").trim()).toBe(key.publicKeyOpenssh.trim());
  });
});
