import { ADMIN_KEYS_PATH, ADMIN_STATUS_PATH } from "../../programs/gatekeeper/protocol";
import { HubCommandError } from "./ops";

/**
 * The gateway's admin API as the CLI speaks it: keys at runtime and the status report, over HTTPS
 * (or the local tier's loopback HTTP) with an admin-scope key. Node's fetch verifies certificates;
 * nothing here turns that off (a private CA goes in NODE_EXTRA_CA_CERTS).
 */

/** A key as the admin API lists it (never its hash; the key itself only in a create or rotate answer). */
export interface KeyView {
  readonly id: string;
  readonly name: string;
  readonly scopes: readonly string[];
  readonly origin: "declared" | "runtime";
  readonly revoked: boolean;
  readonly created: string;
  readonly lastUsed: string | null;
  readonly usedToday: number;
  readonly ratePerMinute?: number;
  readonly burst?: number;
  readonly dailyQuota?: number;
  readonly revokedAt?: string;
  readonly rotatedFrom?: string;
  readonly rotatedTo?: string;
  readonly [field: string]: unknown;
}

export interface CreatedKey extends KeyView {
  readonly key: string;
}

/** The gateway did not answer, or answered with a server error: for `hub status`, the hub is down. */
export class GatewayDown extends HubCommandError {}

export type Fetch = (
  url: string,
  init: { method: string; headers: Record<string, string>; body?: string; signal: AbortSignal },
) => Promise<{ status: number; text(): Promise<string> }>;

/** The gateway's origin from a base URL (`https://hub.example.com/v1` → `https://hub.example.com`). */
export const gatewayOrigin = (url: string): string => url.replace(/\/+$/, "").replace(/\/v1$/, "");

export class AdminClient {
  readonly origin: string;

  constructor(
    url: string,
    private readonly adminKey: string,
    private readonly fetcher: Fetch = fetch as unknown as Fetch,
    private readonly timeoutMs = 15_000,
  ) {
    this.origin = gatewayOrigin(url);
  }

  private async call<T>(method: string, path: string, body?: unknown): Promise<{ status: number; json: T }> {
    let answer: { status: number; text(): Promise<string> };
    try {
      answer = await this.fetcher(`${this.origin}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${this.adminKey}`,
          ...(body === undefined ? {} : { "content-type": "application/json" }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (error) {
      const cause = (error as { cause?: { code?: string; message?: string } }).cause;
      const why = cause?.code ?? cause?.message ?? (error as Error).message;
      const tls = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS/i.test(String(why))
        ? " The certificate could not be verified: for a private CA set NODE_EXTRA_CA_CERTS=<ca.pem>; verification is never turned off."
        : "";
      throw new GatewayDown(
        `cannot reach the gateway at ${this.origin} (${why}).${tls} Check the URL (hub url) and that the stack is deployed (hub status).`,
      );
    }
    const text = await answer.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    if (answer.status >= 400) {
      const message = (json as { error?: { message?: string } } | undefined)?.error?.message ?? text.slice(0, 200);
      const hint =
        answer.status === 401
          ? " Check the admin key (HUB_ADMIN_KEY or --key-file)."
          : answer.status === 403
            ? " The key needs the admin scope."
            : answer.status === 404 && !json
              ? " This gateway has no admin API yet: deploy this version first."
              : "";
      throw new (answer.status >= 500 ? GatewayDown : HubCommandError)(
        `the gateway ${answer.status >= 500 ? "failed" : "refused"} ${method} ${path} (${answer.status}): ${message}${hint}`,
      );
    }
    return { status: answer.status, json: json as T };
  }

  async createKey(request: Record<string, unknown>): Promise<CreatedKey> {
    return (await this.call<CreatedKey>("POST", ADMIN_KEYS_PATH, request)).json;
  }

  async listKeys(): Promise<{ store: string; data: KeyView[] }> {
    return (await this.call<{ store: string; data: KeyView[] }>("GET", ADMIN_KEYS_PATH)).json;
  }

  async revokeKey(id: string): Promise<KeyView & { alreadyRevoked: boolean }> {
    return (
      await this.call<KeyView & { alreadyRevoked: boolean }>(
        "POST",
        `${ADMIN_KEYS_PATH}/${encodeURIComponent(id)}/revoke`,
      )
    ).json;
  }

  async rotateKey(id: string): Promise<CreatedKey> {
    return (await this.call<CreatedKey>("POST", `${ADMIN_KEYS_PATH}/${encodeURIComponent(id)}/rotate`)).json;
  }

  async setLimits(id: string, limits: Record<string, number | null>): Promise<KeyView> {
    return (await this.call<KeyView>("PATCH", `${ADMIN_KEYS_PATH}/${encodeURIComponent(id)}`, limits)).json;
  }

  async status(): Promise<Record<string, unknown>> {
    return (await this.call<Record<string, unknown>>("GET", ADMIN_STATUS_PATH)).json;
  }
}
