import { hubProgram } from "./program";

// Stack outputs: see README "Stack outputs". Exported as a function, which the SDK's run entry
// calls and awaits at once: an exported promise that rejects early (a refused config) would be
// reported twice, with Node's PromiseRejectionHandledWarning, because the entry awaits other
// work between loading the module and awaiting its export.
export = () => hubProgram();
