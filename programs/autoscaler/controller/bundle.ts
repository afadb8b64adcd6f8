import * as path from "node:path";
import { bundleProgram } from "../../bundle";

/** The controller as one file for `node /app/autoscaler.js` in the gatekeeper's image (programs/bundle.ts). */
export const CONTROLLER_ENTRY = path.join(__dirname, "main.ts");

export const bundleController = (): string => bundleProgram(CONTROLLER_ENTRY);
