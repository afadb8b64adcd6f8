import * as http from "node:http";
import * as https from "node:https";
import * as ipaddr from "ipaddr.js";

/**
 * The public address the deploy runs from, as the internet sees it. With no `adminCidrs` the SSH
 * firewall rule opens port 22 to exactly this address, looked up on every run.
 */
export interface DeployerAddressSource {
  /** Public IPv4 addresses (one, or two behind a load-balanced NAT); rejects with DeployerAddressError. */
  find(): Promise<readonly string[]>;
}

export class DeployerAddressError extends Error {
  constructor(readonly failures: readonly { readonly service: string; readonly reason: string }[]) {
    super(failures.map((f) => `${f.service}: ${f.reason}`).join("; "));
    this.name = "DeployerAddressError";
  }
}

/**
 * Echo services asked in parallel. IPv4 only: the deployer reaches droplets on their public IPv4
 * address (`Droplet.ipv4Address`), so that is the source address the firewall must allow.
 */
export const ADDRESS_ECHO_SERVICES: readonly { readonly url: string; readonly source: string }[] = [
  // ipify's API description (openapi/ipify-ip-api.yml, x-last-validated 2026-05-29): api.ipify.org answers
  // the caller's IPv4 address as plain text; api6/api64 are the IPv6 and dual-stack hosts.
  { url: "https://api.ipify.org/", source: "ipify: api.ipify.org, the IPv4-only endpoint, plain text" },
  // AWS's long-standing checkip service: plain text, the caller's IPv4 address and a newline.
  { url: "https://checkip.amazonaws.com/", source: "AWS checkip.amazonaws.com, plain text" },
];

const MAX_BODY_BYTES = 256;

export type TextGetter = (url: string, timeoutMs: number) => Promise<string>;

/** One GET over IPv4, no redirects, a small body, a hard timeout. http: only for local test stand-ins. */
export const getText: TextGetter = (url, timeoutMs) =>
  new Promise((resolve, reject) => {
    const client = url.startsWith("http:") ? http : https;
    const req = client.get(
      url,
      {
        family: 4,
        timeout: timeoutMs,
        headers: { "user-agent": "inference-hub deployer-address lookup", accept: "text/plain" },
      },
      (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          reject(new Error(`HTTP ${res.statusCode}`));
          return;
        }
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          body += chunk;
          if (body.length > MAX_BODY_BYTES) req.destroy(new Error(`answer longer than ${MAX_BODY_BYTES} bytes`));
        });
        res.on("end", () => resolve(body));
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error(`no answer within ${timeoutMs / 1000} s`)));
    req.on("error", reject);
  });

// Ranges an internet echo service can never see as a source: the answer would be wrong or forged.
const NOT_PUBLIC = new Set([
  "unspecified",
  "broadcast",
  "multicast",
  "linkLocal",
  "loopback",
  "private",
  "carrierGradeNat",
]);

/** The echo service's answer → an IPv4 address, or why it is not one. */
export function parseEchoAnswer(body: string): { ok: true; address: string } | { ok: false; reason: string } {
  const text = body.trim();
  if (!ipaddr.IPv4.isValidFourPartDecimal(text))
    return { ok: false, reason: `answered ${JSON.stringify(text.slice(0, 60))}, not an IPv4 address` };
  const range = ipaddr.IPv4.parse(text).range();
  if (NOT_PUBLIC.has(range))
    return { ok: false, reason: `answered ${text}, a ${range} address no internet service can see as a source` };
  return { ok: true, address: text };
}

/** Asks every echo service at once; every distinct answer is kept (NATs with several exits). */
export class EchoServiceAddressSource implements DeployerAddressSource {
  constructor(
    private readonly services: readonly { readonly url: string }[] = ADDRESS_ECHO_SERVICES,
    private readonly timeoutMs = 10_000,
    private readonly get: TextGetter = getText,
  ) {}

  async find(): Promise<readonly string[]> {
    const answers = await Promise.all(
      this.services.map(async ({ url }) => {
        const service = new URL(url).host;
        try {
          const parsed = parseEchoAnswer(await this.get(url, this.timeoutMs));
          return parsed.ok ? { service, address: parsed.address } : { service, reason: parsed.reason };
        } catch (err) {
          return { service, reason: (err as Error).message };
        }
      }),
    );
    const addresses = [...new Set(answers.flatMap((a) => ("address" in a && a.address ? [a.address] : [])))];
    if (addresses.length === 0)
      throw new DeployerAddressError(
        answers.map((a) => ({ service: a.service, reason: "reason" in a ? String(a.reason) : "no answer" })),
      );
    return addresses.sort();
  }
}
