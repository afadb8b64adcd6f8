import { startGrafanaProxy } from "./lib/grafana-proxy";

/**
 * `HUB_ADMIN_KEY=ihk_... npm run grafana -- --url https://hub.example.com [--port 3000]`: opens the
 * hub's Grafana in a browser through a loopback proxy that adds the admin key (scripts/lib/grafana-proxy.ts).
 */
const USAGE = "usage: HUB_ADMIN_KEY=<key with the admin scope> npm run grafana -- --url <gateway URL, e.g. https://hub.example.com> [--port 3000]";

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  if (args.includes("--help")) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const value = (flag: string) => {
    const i = args.indexOf(flag);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const url = value("--url");
  const port = value("--port") === undefined ? 3000 : Number(value("--port"));
  const key = process.env.HUB_ADMIN_KEY;
  const problems = [
    url ? "" : "--url is required",
    Number.isInteger(port) && port > 0 && port < 65536 ? "" : `--port ${value("--port")} is not a port number`,
    key ? "" : "HUB_ADMIN_KEY is not set (a key with the admin scope: npm run hub -- keys create --name grafana --scopes admin --rate 3000)",
  ].filter(Boolean);
  if (problems.length) {
    process.stderr.write(`grafana: ${problems.join("; ")}\n${USAGE}\n`);
    return 1;
  }
  const proxy = await startGrafanaProxy({ upstream: url!, key: key!, port });
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
