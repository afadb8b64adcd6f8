import * as path from "node:path";
import { bundleProgram } from "../bundle";

/** The gatekeeper as one file for `node /app/gatekeeper.js` (programs/bundle.ts). */
export const GATEKEEPER_ENTRY = path.join(__dirname, "main.ts");

// pg requires pg-native only when asked for `pg.native`, inside a try block; it is never installed.
export const bundleGatekeeper = (): string => bundleProgram(GATEKEEPER_ENTRY, ["pg-native"]);
