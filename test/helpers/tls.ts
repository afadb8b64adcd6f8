import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import * as path from "node:path";

/** Debian's openssl (.ci/install-system installs it): the tests' stand-in for @pulumi/tls. */
export const OPENSSL_BINARY = ["/usr/bin/openssl", "/bin/openssl"].find((p) => existsSync(p));
export const OPENSSL_MISSING_REASON = 'no openssl (Debian package "openssl"; .ci/run installs it)';

/**
 * A self-signed ECDSA P-256 certificate for `name` and 127.0.0.1, and its key (PEM): what
 * infra/program.ts makes with @pulumi/tls for the gatekeeper's forwardAuth port.
 */
export function selfSignedPair(dir: string, name: string): { readonly cert: string; readonly key: string } {
  mkdirSync(dir, { recursive: true });
  const [certFile, keyFile] = [path.join(dir, "cert.pem"), path.join(dir, "key.pem")];
  execFileSync(
    OPENSSL_BINARY ?? "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-keyout",
      keyFile,
      "-out",
      certFile,
      "-days",
      "2",
      "-subj",
      `/CN=${name}`,
      "-addext",
      `subjectAltName=DNS:${name},IP:127.0.0.1`,
    ],
    { stdio: "ignore" },
  );
  return { cert: readFileSync(certFile, "utf8"), key: readFileSync(keyFile, "utf8") };
}
