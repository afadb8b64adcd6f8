import { readFileSync } from "node:fs";
import { envReader } from "../env";
import { SANDBOX_FRONT_PORT } from "../protocol";

/**
 * The sandbox front's settings, from the environment (services/sandbox.ts sets them). Every
 * problem is reported at once, naming the variable.
 */
export interface FrontConfig {
  /** SANDBOX_FRONT_PORT. @default 8080 */
  readonly port: number;
  /** SANDBOX_FRONT_HOST. @default "0.0.0.0" (the gateway node's Docker network; never published) */
  readonly host: string;
  /** SANDBOX_NODE_URL, or the first line of the file SANDBOX_NODE_URL_FILE names (the deployment writes it once the node's address is known): the sandbox API on the sandbox node's private address, e.g. http://10.110.0.5:8090. */
  readonly nodeUrl: string;
  /** SANDBOX_NODE_TOKEN: the token the sandbox node knows by its digest (a Pulumi secret; only this container holds it). */
  readonly nodeToken: string;
  /** SANDBOX_AUDIT_URL: the gatekeeper's execution reports, e.g. http://gatekeeper:8080/executions. @default - none: reports are only logged */
  readonly auditUrl?: string;
  /** SANDBOX_FRONT_TIMEOUT_MS: longest wait for the node's answer (above the longest wall-clock limit plus queueing). @default 180000 */
  readonly timeoutMs: number;
}

export class FrontConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`The sandbox front's environment is incomplete:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.name = "FrontConfigError";
  }
}

export function readFrontConfig(environment: Readonly<Record<string, string | undefined>> = process.env): FrontConfig {
  let env = environment;
  const { problems, text, integer } = envReader(() => env);
  const url = (name: string, required: boolean): string | undefined => {
    const value = text(name);
    if (value === undefined) {
      if (required) problems.push(`${name} is not set`);
      return undefined;
    }
    if (!/^http:\/\/[A-Za-z0-9.:[\]_-]+(:\d+)?(\/\S*)?$/.test(value))
      problems.push(`${name}=${value} must be an http:// URL (a private address or a container name)`);
    return value.replace(/\/$/, "");
  };
  const urlFile = text("SANDBOX_NODE_URL_FILE");
  if (text("SANDBOX_NODE_URL") === undefined && urlFile !== undefined) {
    try {
      env = { ...env, SANDBOX_NODE_URL: readFileSync(urlFile, "utf8").split("\n")[0] };
    } catch (error) {
      problems.push(`SANDBOX_NODE_URL_FILE=${urlFile} cannot be read (${(error as Error).message})`);
    }
  }
  const nodeToken = text("SANDBOX_NODE_TOKEN") ?? "";
  if (nodeToken.length < 32 || /\s/.test(nodeToken))
    problems.push("SANDBOX_NODE_TOKEN must be the sandbox token: at least 32 characters, no spaces");
  const config: FrontConfig = {
    port: integer("SANDBOX_FRONT_PORT", SANDBOX_FRONT_PORT, 0, 65535),
    host: text("SANDBOX_FRONT_HOST") ?? "0.0.0.0",
    nodeUrl: url("SANDBOX_NODE_URL", true) ?? "",
    nodeToken,
    auditUrl: url("SANDBOX_AUDIT_URL", false),
    timeoutMs: integer("SANDBOX_FRONT_TIMEOUT_MS", 180_000, 1000, 3_600_000),
  };
  if (problems.length) throw new FrontConfigError(problems);
  return config;
}
