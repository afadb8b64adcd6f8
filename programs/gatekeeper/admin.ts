import type * as http from "node:http";
import { z } from "zod";
import { presentedCredential } from "./credentials";
import { limitsSchema } from "./key-merge";
import { KeyAdminError, type KeyRegistry, newKeySchema } from "./key-registry";
import type { KeyEntry } from "./keys";
import type { Logger } from "./log";
import { errorText } from "./log";
import { ADMIN_KEYS_PATH, ADMIN_STATUS_PATH } from "./protocol";
import type { UsageCounter } from "./usage";
import type { GatekeeperConfig } from "./config";
import { statusReport } from "./status";

/**
 * The admin API: keys created, listed, revoked, rotated and limited at runtime, and the status
 * report. Traefik routes `/admin/keys*` and `/admin/status` here behind forwardAuth with the admin
 * scope (the address limit, the key's rate limit and the audit row); that middleware passes the
 * caller's own key on, and this handler checks it again itself (a known, live key with the admin
 * scope), so nothing here trusts the network it is reached from. A key is in exactly one answer:
 * the one that creates it. No answer and no log line carries a key or its hash.
 */

const MAX_BODY_BYTES = 16 * 1024;
const KEY_ID = /^k_[A-Za-z0-9]{4,32}$/;

export interface AdminContext {
  readonly registry: KeyRegistry;
  readonly usage: UsageCounter;
  readonly log: Logger;
  readonly now: () => number;
  /** The status report (status.ts), given how the caller reached the gateway. */
  readonly status: (publicUrl: string | null) => Promise<unknown>;
}

export const isAdminPath = (pathname: string): boolean =>
  pathname === ADMIN_STATUS_PATH || pathname === ADMIN_KEYS_PATH || pathname.startsWith(`${ADMIN_KEYS_PATH}/`);

type Send = (status: number, body: unknown) => void;
const errorBody = (message: string, code: string) => ({
  error: {
    message,
    type: code === "store_unavailable" || code === "gatekeeper_error" ? "server_error" : "invalid_request_error",
    code,
  },
});

/** A key as the list shows it: everything but its hash. */
export function keyView(entry: KeyEntry, context: AdminContext): Record<string, unknown> {
  const { sha256: _hash, ...rest } = entry;
  const merged = context.registry.mergedKeys;
  const meta = merged?.meta.get(entry.id) ?? {};
  const lastUsed = context.usage.lastUsedMs(entry.id);
  return {
    ...rest,
    revoked: entry.revoked === true,
    origin: merged?.origin.get(entry.id) ?? "runtime",
    usedToday: context.usage.used(entry.id, context.now()),
    lastUsed: lastUsed === undefined ? null : new Date(lastUsed).toISOString(),
    ...meta,
  };
}

async function readJson(req: http.IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new KeyAdminError(400, `The request body is larger than ${MAX_BODY_BYTES} bytes.`);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString("utf8").trim();
  if (!text) return {};
  try {
    return JSON.parse(text);
  } catch {
    throw new KeyAdminError(400, "The request body is not JSON.");
  }
}

function parsed<T>(schema: z.ZodType<T>, value: unknown): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  throw new KeyAdminError(
    400,
    `The request is not valid: ${result.error.issues
      .map((i) => `${i.path.join(".") || "body"}: ${i.message}`)
      .join("; ")
      .slice(0, 600)}`,
  );
}

/** The public URL the caller used, as Traefik forwarded it. */
function publicUrlOf(req: http.IncomingMessage): string | null {
  const host = req.headers["x-forwarded-host"] ?? req.headers.host;
  const proto = req.headers["x-forwarded-proto"];
  if (typeof host !== "string" || !/^[A-Za-z0-9.:[\]-]{1,300}$/.test(host)) return null;
  return `${typeof proto === "string" && /^https?$/.test(proto) ? proto : "http"}://${host}/v1`;
}

export async function handleAdmin(
  req: http.IncomingMessage,
  pathname: string,
  send: Send,
  context: AdminContext,
): Promise<void> {
  const store = context.registry.current;
  const credential = presentedCredential(req.headersDistinct);
  const caller = credential.kind === "key" ? store?.find(credential.key) : undefined;
  if (!caller || caller.revoked) {
    send(401, errorBody("The admin API needs a valid API key with the admin scope.", "invalid_api_key"));
    return;
  }
  if (!caller.scopes.has("admin")) {
    send(403, errorBody("This API key may not use the admin service.", "insufficient_scope"));
    return;
  }
  const method = req.method ?? "GET";
  const nowMs = context.now();
  try {
    if (pathname === ADMIN_STATUS_PATH && method === "GET") {
      send(200, await context.status(publicUrlOf(req)));
      return;
    }
    if (pathname === ADMIN_KEYS_PATH && method === "GET") {
      await context.usage.sync(nowMs);
      const lastUsed =
        context.registry.storeKind === "none" ? new Map<string, number>() : await lastUsedOrEmpty(context);
      const keys = (context.registry.mergedKeys?.file.keys ?? []).map((k) => {
        const view = keyView(k, context);
        const stored = lastUsed.get(k.id);
        if (stored !== undefined && (view.lastUsed === null || Date.parse(view.lastUsed as string) < stored))
          view.lastUsed = new Date(stored).toISOString();
        return view;
      });
      send(200, { object: "list", store: context.registry.storeKind, data: keys });
      return;
    }
    if (pathname === ADMIN_KEYS_PATH && method === "POST") {
      const request = parsed(newKeySchema, await readJson(req));
      const created = await context.registry.create(request, caller.id, nowMs);
      context.log.info("key created", { key_id: created.entry.id, scopes: created.entry.scopes, by: caller.id });
      send(201, { ...keyView(created.entry, context), key: created.key });
      return;
    }
    const match = /^\/admin\/keys\/([^/]+)(?:\/(revoke|rotate))?$/.exec(pathname);
    if (!match || !KEY_ID.test(match[1])) {
      send(
        404,
        errorBody(
          `No such admin endpoint: ${method} ${pathname.slice(0, 100)}. Use GET|POST ${ADMIN_KEYS_PATH}, POST ${ADMIN_KEYS_PATH}/<id>/revoke|rotate, PATCH ${ADMIN_KEYS_PATH}/<id>, GET ${ADMIN_STATUS_PATH}.`,
          "not_found",
        ),
      );
      return;
    }
    const [, id, action] = match;
    if (action === "revoke" && method === "POST") {
      const { alreadyRevoked } = await context.registry.revoke(id, caller.id, nowMs);
      if (!alreadyRevoked) context.log.info("key revoked", { key_id: id, by: caller.id });
      send(200, {
        ...keyView(context.registry.mergedKeys!.file.keys.find((k) => k.id === id)!, context),
        alreadyRevoked,
      });
      return;
    }
    if (action === "rotate" && method === "POST") {
      const successor = await context.registry.rotate(id, caller.id, nowMs);
      context.log.info("key rotated", { key_id: id, successor: successor.entry.id, by: caller.id });
      send(201, { ...keyView(successor.entry, context), key: successor.key });
      return;
    }
    if (action === undefined && method === "PATCH") {
      const limits = parsed(limitsSchema, await readJson(req));
      const entry = await context.registry.setLimits(id, limits, caller.id);
      context.log.info("key limits changed", { key_id: id, limits, by: caller.id });
      send(200, keyView(entry, context));
      return;
    }
    if (action === undefined && method === "GET") {
      const entry = context.registry.mergedKeys?.file.keys.find((k) => k.id === id);
      if (!entry) throw new KeyAdminError(404, `No key with id ${id}.`);
      send(200, keyView(entry, context));
      return;
    }
    send(405, errorBody(`${method} is not allowed on ${pathname.slice(0, 100)}.`, "method_not_allowed"));
  } catch (error) {
    if (error instanceof KeyAdminError) {
      send(
        error.status,
        errorBody(
          error.message,
          error.status === 503
            ? "store_unavailable"
            : error.status === 404
              ? "not_found"
              : error.status === 409
                ? "conflict"
                : "invalid_request",
        ),
      );
      return;
    }
    context.log.error("admin request failed", { path: pathname.slice(0, 100), error: errorText(error) });
    send(500, errorBody("The admin request failed inside the gatekeeper.", "gatekeeper_error"));
  }
}

/** The admin API's context in a running gatekeeper: the status report reads Traefik, the controller and the backends over HTTP. */
export function adminContextFor(args: {
  registry: KeyRegistry;
  usage: UsageCounter;
  log: Logger;
  now: () => number;
  config: Pick<GatekeeperConfig, "statusContext" | "gatewayMetricsUrl" | "controllerUrl">;
  audit: () => Promise<{ configured: boolean; connected?: boolean; lastError?: string | null }>;
}): AdminContext {
  const { config } = args;
  const fetchText = async (url: string): Promise<string> => {
    const answer = await fetch(url, { signal: AbortSignal.timeout(3000) });
    if (!answer.ok) throw new Error(`${url} answered ${answer.status}`);
    return answer.text();
  };
  return {
    registry: args.registry,
    usage: args.usage,
    log: args.log,
    now: args.now,
    status: (publicUrl) =>
      statusReport(
        {
          context: config.statusContext,
          gatewayMetrics: () =>
            config.gatewayMetricsUrl
              ? fetchText(config.gatewayMetricsUrl)
              : Promise.reject(new Error("GATEKEEPER_GATEWAY_METRICS_URL is not set")),
          controllerStatus: config.controllerUrl
            ? async () => JSON.parse(await fetchText(config.controllerUrl!)) as unknown
            : undefined,
          keys: () => args.registry.status(),
          probe: async (url) => {
            const answer = await fetch(url, { signal: AbortSignal.timeout(3000) });
            await answer.arrayBuffer();
            return answer.status;
          },
          audit: args.audit,
          nowMs: args.now,
        },
        publicUrl,
      ),
  };
}

async function lastUsedOrEmpty(context: AdminContext): Promise<Map<string, number>> {
  try {
    return await context.registry.lastUsedFromStore();
  } catch {
    return new Map();
  }
}
