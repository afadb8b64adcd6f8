import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { HEALTH_PATH, HOLDER_HEALTH_PATH, METRICS_PATH, OFF_BACKEND_NAME, STATUS_PATH } from "./contract";
import type { Controller } from "./controller";
import { errorText, Logger } from "./log";
import { holderFollowingFile } from "./holder";
import type { Fetcher } from "./signals";

/**
 * Two listeners. The control port serves /metrics (Prometheus), /healthz (Docker's check) and
 * /status (JSON; Traefik's admin route and `npm run hub -- autoscale` read it), on the CPU node's
 * Docker network only. The off port answers every request with the coder's off-state 503: it is
 * what the coder route falls back to, and serves nothing else, so no public path reaches the
 * control port's content through it.
 */
export interface ControllerServers {
  readonly controlPort: number;
  readonly offPort: number;
  close(): Promise<void>;
}

const json = (res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
    "cache-control": "no-store",
    ...headers,
  });
  res.end(text);
};

export async function startServers(
  controller: Controller,
  options: {
    readonly host: string;
    readonly controlPort: number;
    readonly offPort: number;
    readonly log: Logger;
    readonly fetcher?: Fetcher;
    readonly clock?: () => number;
  },
): Promise<ControllerServers> {
  const control = http.createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET" && req.method !== "HEAD")
      return json(res, 405, {
        error: { message: "only GET", type: "invalid_request_error", code: "method_not_allowed" },
      });
    if (path === METRICS_PATH) {
      controller.metrics.text().then(
        (text) => {
          res.writeHead(200, { "content-type": controller.metrics.registry.contentType });
          res.end(text);
        },
        (err: unknown) =>
          json(res, 500, { error: { message: errorText(err), type: "server_error", code: "metrics_failed" } }),
      );
      return;
    }
    if (path === HEALTH_PATH) {
      const status = controller.status();
      return json(res, 200, {
        status: "ok",
        lastTickMs: status?.atMs ?? null,
        mode: controller.acting ? "act" : "advice",
      });
    }
    if (path === STATUS_PATH) {
      const status = controller.status();
      return status
        ? json(res, 200, status)
        : json(
            res,
            503,
            {
              error: {
                message: "the controller has not completed its first tick yet",
                type: "server_error",
                code: "not_ready",
              },
            },
            { "retry-after": "15" },
          );
    }
    return json(res, 404, {
      error: {
        message: `not found; paths: ${METRICS_PATH}, ${HEALTH_PATH}, ${STATUS_PATH}`,
        type: "invalid_request_error",
        code: "not_found",
      },
    });
  });
  const holder = options.fetcher
    ? holderFollowingFile(controller, options.fetcher, options.clock ?? Date.now)
    : undefined;
  const off = http.createServer((req, res) => {
    const hold = holder?.current();
    if (hold) return hold(req, res);
    if ((req.url ?? "").split("?")[0] === HOLDER_HEALTH_PATH) {
      req.resume();
      return json(res, 200, { status: "ok", holding: false });
    }
    // The body (a chat request) is not needed: drain it so the connection can be reused.
    req.resume();
    // Traefik forwards the gatekeeper's key id with every request it let through; nothing else calling this port is demand.
    const answer = controller.answerOff(
      typeof req.headers["x-hub-key-id"] === "string" && req.headers["x-hub-key-id"] !== "",
    );
    json(res, answer.status, answer.body, {
      "retry-after": String(answer.retryAfterSeconds),
      "x-hub-gpu-state": answer.state,
      "x-hub-backend": OFF_BACKEND_NAME,
    });
  });
  const listen = (server: http.Server, port: number) =>
    new Promise<number>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, options.host, () => resolve((server.address() as AddressInfo).port));
    });
  const controlPort = await listen(control, options.controlPort);
  const offPort = await listen(off, options.offPort);
  const close = (server: http.Server) => new Promise<void>((resolve) => server.close(() => resolve()));
  return {
    controlPort,
    offPort,
    close: async () => {
      // Held requests are answered (CPU stand-in or 503) before the port goes, not cut.
      off.close();
      await holder?.drain(5000);
      control.closeAllConnections();
      off.closeAllConnections();
      await Promise.all([close(control), close(off)]);
    },
  };
}
