import type { Io } from "./commands";
import type { StackOps } from "./ops";
import { HubCommandError } from "./ops";

/** Placeholder until the gatekeeper's key format lands. */
export async function keysCommand(_ops: StackOps, _action: string | undefined, _rest: readonly string[], _opts: Record<string, string | undefined>, _io: Io): Promise<void> {
  throw new HubCommandError("keys: not available yet");
}
