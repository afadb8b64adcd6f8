import { errorText, jsonLogger as log } from "../gatekeeper/log";
import { startSandboxApi } from "./app";
import { readSandboxConfig, SandboxConfigError } from "./config";

/**
 * Entry point of the bundled sandbox API (`node /opt/inference-hub/sandbox/sandbox.js`, a systemd
 * service on the sandbox node, as root: runsc needs it for namespaces, mounts and cgroups).
 */

const SHUTDOWN_DEADLINE_MS = 30_000;

async function main(): Promise<void> {
  const config = readSandboxConfig();
  const api = await startSandboxApi(config, log);
  log.info("sandbox API listening", {
    host: config.host,
    port: api.port,
    slots: config.slots,
    warm: config.warm,
    ceiling: config.ceiling,
  });
  const shutdown = (signal: string) => {
    log.info("sandbox API stopping", { signal });
    setTimeout(() => process.exit(1), SHUTDOWN_DEADLINE_MS).unref();
    api.close().then(
      () => process.exit(0),
      (error: unknown) => {
        log.error("sandbox API did not stop cleanly", { error: errorText(error) });
        process.exit(1);
      },
    );
  };
  process.once("SIGTERM", shutdown);
  process.once("SIGINT", shutdown);
}

main().catch((error: unknown) => {
  if (error instanceof SandboxConfigError) {
    log.error("the sandbox API's environment is incomplete; see docs/sandbox.md", { problems: error.problems });
    process.exit(2);
  }
  log.error("sandbox API failed to start", { error: errorText(error) });
  process.exit(1);
});
