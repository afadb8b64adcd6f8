import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { GRAFANA_PATH_PREFIX, GRAFANA_USER_HEADER } from "../../services/grafana";

/**
 * A STAND-IN FOR GRAFANA, NOT GRAFANA. Grafana's server cannot run here (no image, and its Go
 * module is AGPL, so it is never built), so the gateway tests put this small HTTP server where
 * the grafana container would be. It models only what the route relies on, as the hub configures
 * Grafana (services/grafana.ts): it serves under /grafana/ (serve_from_sub_path), answers
 * /grafana/api/health, and, as auth.proxy does with the login form and anonymous access off,
 * refuses a request without the X-Hub-Key-Id header (401) and otherwise answers as that user.
 * It records what it received, so tests can check what the gateway forwarded.
 */

export interface GrafanaReceived {
  readonly url: string;
  readonly headers: http.IncomingHttpHeaders;
}

export interface GrafanaStandIn {
  readonly port: number;
  readonly received: GrafanaReceived[];
  close(): Promise<void>;
}

/** @param options.host, options.port where to listen (a container image: 0.0.0.0 and GF_SERVER_HTTP_PORT); @default loopback, a free port */
export async function startGrafanaStandIn(
  options: { host?: string; port?: number; onReceived?: (request: GrafanaReceived) => void } = {},
): Promise<GrafanaStandIn> {
  const received: GrafanaReceived[] = [];
  const server = http.createServer((req, res) => {
    received.push({ url: req.url ?? "", headers: req.headers });
    options.onReceived?.({ url: req.url ?? "", headers: req.headers });
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { "content-type": "application/json", "x-stand-in": "grafana" });
      res.end(JSON.stringify(body));
    };
    const url = req.url ?? "/";
    if (!url.startsWith(GRAFANA_PATH_PREFIX)) return send(404, { message: "Not found" });
    if (url === `${GRAFANA_PATH_PREFIX}api/health`) return send(200, { database: "ok" });
    const user = req.headers[GRAFANA_USER_HEADER.toLowerCase()];
    if (typeof user !== "string" || user === "") return send(401, { message: "Unauthorized" });
    send(200, { login: user, path: url });
  });
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, options.host ?? "127.0.0.1", resolve));
  return {
    port: (server.address() as AddressInfo).port,
    received,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
