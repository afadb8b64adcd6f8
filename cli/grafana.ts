import { parseArgs } from "node:util";
import { startGrafanaProxy } from "./grafana/proxy";

/**
 * `HUB_ADMIN_KEY=ihk_... npm run grafana -- --url https://hub.example.com/v1 [--port 3000]`: opens the
 * hub's Grafana in a browser through a loopback proxy that adds the admin key (cli/grafana/proxy.ts).
 * `--url` is read as smoke reads it: the hub's base URL (with or without /v1), else HUB_URL.
 */
const USAGE =
  "usage: HUB_ADMIN_KEY=<key with the admin scope> npm run grafana -- --url <the hub's URL, e.g. https://hub.example.com/v1; else $HUB_URL> [--port 3000]";

async function main(): Promise<number> {
  let values: { url?: string; port?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      options: { url: { type: "string" }, port: { type: "string" }, help: { type: "boolean", short: "h" } },
      strict: true,
    }));
  } catch (err) {
    process.stderr.write(`grafana: ${(err as Error).message}\n${USAGE}\n`);
    return 1;
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const url = values.url ?? process.env.HUB_URL;
  const port = values.port === undefined ? 3000 : Number(values.port);
  const key = process.env.HUB_ADMIN_KEY;
  const problems = [
    url
      ? /^https?:\/\/[^\s/]+/.test(url)
        ? ""
        : `--url ${JSON.stringify(url)} is not an http:// or https:// URL`
      : "--url (or HUB_URL) is required",
    Number.isInteger(port) && port > 0 && port < 65536 ? "" : `--port ${values.port} is not a port number`,
    key
      ? ""
      : "HUB_ADMIN_KEY is not set (a key with the admin scope: npm run hub -- keys create --name grafana --scopes admin --rate 3000)",
  ].filter(Boolean);
  if (problems.length) {
    process.stderr.write(`grafana: ${problems.join("; ")}\n${USAGE}\n`);
    return 1;
  }
  const proxy = await startGrafanaProxy({ upstream: url!.replace(/\/+$/, "").replace(/\/v1$/, ""), key: key!, port });
  process.stdout.write(`Grafana: open ${proxy.url} (Ctrl-C to stop; the proxy listens on loopback only)\n`);
  await new Promise<void>((resolve) => process.once("SIGINT", () => resolve()));
  await proxy.close();
  return 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`grafana: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);
