import { parseArgs } from "node:util";
import { GatekeeperConfigError, readGatekeeperConfig } from "./config";
import { newApiKey, SCOPES, isScope } from "./keys";
import { errorText, jsonLogger as log } from "./log";
import { startGatekeeper } from "./server";

/**
 * Entry point of the bundled gatekeeper (`node /app/gatekeeper.js`), configured by environment
 * (see config.ts). `node gatekeeper.js new-key --name "alice laptop" --scopes llm,stt` prints a
 * fresh key once and the entry to add to the keys file.
 */

const SHUTDOWN_DEADLINE_MS = 10_000;

function printNewKey(args: readonly string[]): void {
  const { values } = parseArgs({
    args: [...args],
    options: { name: { type: "string" }, scopes: { type: "string" } },
    strict: true,
  });
  const scopes = (values.scopes ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  const unknown = scopes.filter((s) => !isScope(s));
  if (!values.name || scopes.length === 0 || unknown.length > 0) {
    throw new Error(
      `usage: new-key --name "<who and where>" --scopes <${SCOPES.join("|")}>[,...]${unknown.length ? ` (unknown scopes: ${unknown.join(", ")})` : ""}`,
    );
  }
  const fresh = newApiKey();
  const entry = { id: fresh.id, name: values.name, sha256: fresh.sha256, scopes, created: new Date().toISOString() };
  process.stdout.write(`${JSON.stringify({ key: fresh.key, keysFileEntry: entry }, null, 2)}\n`);
  process.stderr.write(
    "The key is shown once and stored nowhere; give it to its owner and add keysFileEntry to the keys file.\n",
  );
}

async function main(): Promise<void> {
  const [command, ...rest] = process.argv.slice(2);
  if (command === "new-key") return printNewKey(rest);
  if (command !== undefined)
    throw new Error(`unknown command ${command}; run without arguments to serve, or "new-key"`);

  const config = readGatekeeperConfig();
  // libuv reads this when its thread pool first starts, which is after this line: every commit in
  // flight holds a thread for its fdatasync, and the shipper's reads must not queue behind them.
  process.env.UV_THREADPOOL_SIZE ??= String(config.spoolCommitsInFlight + 4);
  const gatekeeper = await startGatekeeper({ config, log });
  const port = await gatekeeper.listen();
  log.info("gatekeeper listening", {
    port,
    tlsPort: gatekeeper.tlsPort ?? null,
    keys: gatekeeper.keys.status().count,
    spool: config.spoolDir,
    database: config.databaseUrl !== undefined,
  });

  process.on("SIGHUP", () => void gatekeeper.keys.reload());
  const shutdown = (signal: string) => {
    log.info("gatekeeper stopping", { signal });
    setTimeout(() => process.exit(1), SHUTDOWN_DEADLINE_MS).unref();
    gatekeeper.close().then(
      () => process.exit(0),
      (error: unknown) => {
        log.error("gatekeeper did not stop cleanly", { error: errorText(error) });
        process.exit(1);
      },
    );
  };
  process.once("SIGTERM", shutdown);
  process.once("SIGINT", shutdown);
}

main().catch((error: unknown) => {
  if (error instanceof GatekeeperConfigError) {
    log.error("the gatekeeper's environment is incomplete; see programs/gatekeeper/README.md", {
      problems: error.problems,
    });
    process.exit(2);
  }
  log.error("gatekeeper failed to start", { error: errorText(error) });
  process.exit(1);
});
