import { errorText, jsonLogger as log } from "../../gatekeeper/log";
import { FrontConfigError, readFrontConfig } from "./config";
import { createFrontServer, listenFront } from "./server";

/** Entry point of the bundled sandbox front (`node /app/sandbox-front.js` in node:22-alpine on the gateway node). */
async function main(): Promise<void> {
  const config = readFrontConfig();
  const server = createFrontServer({ config, log });
  const port = await listenFront(server, config.port, config.host);
  log.info("sandbox front listening", { port, node: config.nodeUrl, audit: config.auditUrl !== undefined });
  const stop = (signal: string) => {
    log.info("sandbox front stopping", { signal });
    setTimeout(() => process.exit(0), 10_000).unref();
    server.close(() => process.exit(0));
  };
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
}

main().catch((error: unknown) => {
  if (error instanceof FrontConfigError) {
    log.error("the sandbox front's environment is incomplete; see docs/sandbox.md", { problems: error.problems });
    process.exit(2);
  }
  log.error("sandbox front failed to start", { error: errorText(error) });
  process.exit(1);
});
