import * as http from "node:http";
import * as https from "node:https";
import type { AddressInfo } from "node:net";
import { GRAFANA_PATH_PREFIX } from "../../services/grafana";

/**
 * A browser cannot add `Authorization: Bearer <key>` to every request it makes, and the gateway
 * lets nothing reach Grafana without an admin key. This proxy, on the operator's own machine and
 * on loopback only, adds the key to each request for /grafana/ and forwards it to the hub's
 * gateway; the browser opens http://127.0.0.1:<port>/grafana/. The key is read from the
 * environment (never from the command line, which other users can see in `ps`) and never logged.
 */

export interface GrafanaProxyOptions {
  /** The gateway's base URL: https://hub.example.com, http://<reserved IP> (a trailing /v1 is ignored). */
  readonly upstream: string;
  /** An API key with the admin scope. */
  readonly key: string;
  /** @default 3000 */
  readonly port?: number;
}

export interface GrafanaProxy {
  readonly url: string;
  close(): Promise<void>;
}

/** The gateway's origin from what the user has at hand (the stack output baseUrl ends in /v1). */
export function upstreamOrigin(text: string): URL {
  const url = new URL(text);
  if (url.protocol !== "http:" && url.protocol !== "https:")
    throw new Error(`--url ${text}: must be an http:// or https:// URL of the hub's gateway`);
  return new URL(url.origin);
}

/** Hop-by-hop and credential headers a browser sends that must not go upstream. */
const DROPPED = new Set([
  "host",
  "connection",
  "keep-alive",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "authorization",
  "x-api-key",
]);

export async function startGrafanaProxy(options: GrafanaProxyOptions): Promise<GrafanaProxy> {
  const origin = upstreamOrigin(options.upstream);
  const client = origin.protocol === "https:" ? https : http;
  const server = http.createServer((req, res) => {
    const path = req.url ?? "/";
    if (path === "/" || path === GRAFANA_PATH_PREFIX.slice(0, -1)) {
      res.writeHead(302, { location: GRAFANA_PATH_PREFIX });
      return res.end();
    }
    if (!path.startsWith(GRAFANA_PATH_PREFIX)) {
      res.writeHead(404, { "content-type": "text/plain" });
      return res.end("Only /grafana/ is forwarded.\n");
    }
    const headers: http.OutgoingHttpHeaders = {};
    for (const [name, value] of Object.entries(req.headers))
      if (!DROPPED.has(name) && value !== undefined) headers[name] = value;
    headers.authorization = `Bearer ${options.key}`;
    const upstream = client.request(
      {
        protocol: origin.protocol,
        hostname: origin.hostname,
        port: origin.port || undefined,
        method: req.method,
        path,
        headers,
      },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on("error", (error) => {
      if (!res.headersSent) res.writeHead(502, { "content-type": "text/plain" });
      res.end(`The hub's gateway at ${origin.origin} did not answer: ${error.message}\n`);
    });
    req.pipe(upstream);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 3000, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}${GRAFANA_PATH_PREFIX}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
