import { hubProgram } from "./program";

// Stack outputs: see README "Stack outputs".
export = hubProgram();
