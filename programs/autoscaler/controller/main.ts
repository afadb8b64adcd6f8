import { Controller } from "./controller";
import {
  CONTAINER_PATHS,
  CONTROLLER_PORT,
  ControllerFile,
  DIGITALOCEAN_API,
  DISPATCH_WORKFLOW,
  ENV,
  GITHUB_API,
  OFF_ANSWER_PORT,
  PULUMI_API,
} from "./contract";
import { GitHubPipeline, type Pipeline } from "./actuator";
import { PulumiDeploymentsPipeline } from "./deployments";
import { DigitalOceanBilling } from "./billing";
import { errorText, jsonLogger as log } from "./log";
import { startServers } from "./server";
import { httpFetcher } from "./signals";
import { JsonStore } from "./store";
import * as fs from "node:fs";
import { parseControllerFile } from "./contract";

/**
 * Entry point of the bundled controller (`node /app/autoscaler.js`). The config file comes from
 * the deploy; the two tokens come from the environment (Pulumi secrets, never in the file).
 */

const SHUTDOWN_DEADLINE_MS = 10_000;

/** The actuator the config file names, with its token from the environment; none (advice mode) without one. */
function pipelineFor(file: ControllerFile, env: NodeJS.ProcessEnv): { pipeline?: Pipeline; why?: string } {
  const dispatch = file.dispatch;
  if (!dispatch)
    return { why: "no autoscalerDispatchRepo (GitHub) or autoscalerActuator pulumi-deployments in the config file" };
  if ("kind" in dispatch) {
    const token = env[ENV.pulumiToken]?.trim();
    if (!token) return { why: `${ENV.pulumiToken} is not set` };
    return {
      pipeline: new PulumiDeploymentsPipeline(
        {
          api: env[ENV.pulumiApi]?.trim() || PULUMI_API,
          token,
          organization: dispatch.organization,
          project: dispatch.project,
          stack: dispatch.stack,
        },
        httpFetcher,
      ),
    };
  }
  const token = env[ENV.dispatchToken]?.trim();
  if (!token) return { why: `${ENV.dispatchToken} is not set` };
  return {
    pipeline: new GitHubPipeline(
      {
        api: env[ENV.githubApi]?.trim() || GITHUB_API,
        token,
        repo: dispatch.repo,
        ref: dispatch.ref,
        workflow: dispatch.workflow || DISPATCH_WORKFLOW,
      },
      httpFetcher,
    ),
  };
}

function port(name: string, fallback: number): number {
  const raw = process.env[name]?.trim();
  if (!raw) return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0 || value > 65535)
    throw new Error(`${name}=${raw} is not a port; use a whole number from 0 to 65535`);
  return value;
}

async function main(): Promise<void> {
  const configFile = process.env[ENV.configFile]?.trim() || CONTAINER_PATHS.configFile;
  const stateDir = process.env[ENV.stateDir]?.trim() || CONTAINER_PATHS.stateDir;
  const billingToken = process.env[ENV.billingToken]?.trim();
  // Checked before anything starts, so a bad file stops the container with the reason.
  const file = parseControllerFile(fs.readFileSync(configFile, "utf8"));
  const { pipeline, why } = pipelineFor(file, process.env);
  const billing = billingToken
    ? new DigitalOceanBilling(process.env[ENV.digitaloceanApi]?.trim() || DIGITALOCEAN_API, billingToken, httpFetcher)
    : undefined;
  if (!pipeline) log.warn("advice mode: the controller decides, logs and exports, but does not act", { why });

  const controller = await Controller.start({
    configFile,
    store: new JsonStore(stateDir),
    fetcher: httpFetcher,
    clock: Date.now,
    monotonic: () => performance.now(),
    log,
    pipeline,
    billing,
  });
  const servers = await startServers(controller, {
    host: process.env.AUTOSCALER_HOST?.trim() || "0.0.0.0",
    controlPort: port(ENV.port, CONTROLLER_PORT),
    offPort: port(ENV.offPort, OFF_ANSWER_PORT),
    log,
    fetcher: httpFetcher,
    clock: Date.now,
  });
  log.info("autoscaler listening", {
    controlPort: servers.controlPort,
    offPort: servers.offPort,
    stack: file.stack,
    mode: pipeline ? "act" : "advice",
    billingCrossCheck: billing !== undefined,
  });

  let timer: NodeJS.Timeout | undefined;
  let stopping = false;
  const loop = async () => {
    try {
      await controller.requestTick();
    } catch (err) {
      log.error("tick failed", { error: errorText(err) });
    }
    if (!stopping) timer = setTimeout(loop, controller.tickSeconds * 1000);
  };
  void loop();

  const shutdown = (signal: string) => {
    stopping = true;
    if (timer) clearTimeout(timer);
    log.info("autoscaler stopping", { signal });
    setTimeout(() => process.exit(1), SHUTDOWN_DEADLINE_MS).unref();
    servers.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once("SIGTERM", shutdown);
  process.once("SIGINT", shutdown);
}

main().catch((error: unknown) => {
  log.error("autoscaler failed to start", { error: errorText(error) });
  process.exit(1);
});
