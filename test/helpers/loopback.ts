import * as net from "node:net";

/**
 * The one place where the rig changes what the plan rendered: addresses, ports and directories,
 * so that Traefik, nginx and the backends run side by side on this machine's loopback. It walks
 * the parsed configuration objects (Traefik's YAML after `yaml.parse`, nginx's directive tree),
 * never the text, and changes only:
 *   - backend URLs `http(s)://<host>:<port>...` whose `<host>:<port>` is in `ports`
 *     → `http(s)://127.0.0.1:<mapped>...` (scheme, path and query kept);
 *   - listen addresses `:<port>` / `<ip>:<port>` (Traefik entry points) and nginx `listen <port>`
 *     whose key (`:<port>` or `<ip>:<port>`) is in `ports` → `127.0.0.1:<mapped>`;
 *   - strings equal to, or starting with `<dir>/`, a directory in `paths` (also as the value of a
 *     command-line flag, `--configFile=<dir>/traefik.yml`).
 * Any URL or listen address it does not know is an error: nothing in the rig may point at a real
 * deployment's address by accident. Everything else (middlewares, timeouts, rules, bodies) is
 * passed through untouched.
 */
export interface LoopbackMap {
  /** `host:port` of a backend, or a listen address as written (`:80`, `127.0.0.1:8083`), → loopback port. */
  readonly ports: ReadonlyMap<string, number>;
  /** Directory in the rendered config → directory on this machine. */
  readonly paths?: ReadonlyMap<string, string>;
}

const LOOPBACK = "127.0.0.1";
const URL_PATTERN = /^(https?):\/\/([A-Za-z0-9.-]+):(\d{1,5})(\/.*|\?.*)?$/;
const LISTEN_PATTERN = /^((?:\d{1,3}\.){3}\d{1,3})?:(\d{1,5})$/;

export class UnmappedAddressError extends Error {}

export function remapForLoopback<T>(doc: T, map: LoopbackMap): T {
  const port = (key: string, where: string): number => {
    const mapped = map.ports.get(key);
    if (mapped === undefined)
      throw new UnmappedAddressError(
        `${where}: ${key} has no loopback port in the rig (known: ${[...map.ports.keys()].join(", ")})`,
      );
    return mapped;
  };
  const remapString = (text: string, where: string): string => {
    const url = URL_PATTERN.exec(text);
    if (url) return `${url[1]}://${LOOPBACK}:${port(`${url[2]}:${url[3]}`, where)}${url[4] ?? ""}`;
    const listen = LISTEN_PATTERN.exec(text);
    if (listen) return `${LOOPBACK}:${port(text, where)}`;
    const flag = /^(--[A-Za-z.]+=)(.+)$/.exec(text);
    if (flag) return `${flag[1]}${remapString(flag[2], where)}`;
    for (const [from, to] of map.paths ?? []) {
      if (text === from) return to;
      if (text.startsWith(`${from}/`)) return `${to}${text.slice(from.length)}`;
    }
    return text;
  };
  const walk = (value: unknown, where: string): unknown => {
    if (typeof value === "string") return remapString(value, where);
    if (Array.isArray(value)) {
      // nginx: ["listen", 8080]
      if (value[0] === "listen" && value.length === 2 && typeof value[1] === "number")
        return ["listen", `${LOOPBACK}:${port(`:${value[1]}`, where)}`];
      return value.map((v, i) => walk(v, `${where}[${i}]`));
    }
    if (value !== null && typeof value === "object") {
      return Object.fromEntries(
        Object.entries(value as Record<string, unknown>).map(([k, v]) => [k, walk(v, where ? `${where}.${k}` : k)]),
      );
    }
    return value;
  };
  return walk(doc, "") as T;
}

/** A port nothing on 127.0.0.1 listens on right now. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, LOOPBACK, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
