import * as path from "node:path";
import { bundleProgram } from "../bundle";

/** The sandbox API (programs/sandbox/main.ts) for the sandbox node's own Node.js: Debian 13's nodejs 20. */
export const SANDBOX_API_ENTRY = path.join(__dirname, "main.ts");
export const SANDBOX_NODE_RUNTIME = "node20";
export const bundleSandboxApi = (): string => bundleProgram(SANDBOX_API_ENTRY, [], SANDBOX_NODE_RUNTIME);

/** The front (programs/sandbox/front/main.ts) for `node /app/sandbox-front.js` in the node:22-alpine image. */
export const SANDBOX_FRONT_ENTRY = path.join(__dirname, "front", "main.ts");
export const bundleSandboxFront = (): string => bundleProgram(SANDBOX_FRONT_ENTRY);
