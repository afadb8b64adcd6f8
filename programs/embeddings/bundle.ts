import * as path from "node:path";
import { bundleProgram } from "../bundle";

/** The embeddings front as one file for `node /app/embeddings.js` (programs/bundle.ts). */
export const EMBEDDINGS_ENTRY = path.join(__dirname, "main.ts");
export const bundleEmbeddingsFront = (): string => bundleProgram(EMBEDDINGS_ENTRY);
