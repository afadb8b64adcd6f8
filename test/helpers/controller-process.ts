import * as path from "node:path";
import { rigRequest } from "./gateway-rig";
import { freeLoopbackPort } from "./postgres";
import { ManagedProcess, waitFor } from "./processes";

export interface ControllerProcess {
  readonly proc: ManagedProcess;
  /** The control port (/status, /metrics). */
  readonly control: number;
  /** The off port: the coder route's answer while the GPU is off, and the holder. */
  readonly off: number;
}

/**
 * The bundled controller (`bundle`) as the CPU node runs it, reading `dir`/autoscaler.json and
 * keeping its state in `dir`/state, on two free loopback ports; resolves after its first tick.
 */
export async function startControllerProcess(
  bundle: string,
  dir: string,
  env: Record<string, string>,
): Promise<ControllerProcess> {
  const [control, off] = await Promise.all([freeLoopbackPort(), freeLoopbackPort()]);
  const proc = ManagedProcess.start("autoscaler", process.execPath, [bundle], {
    env: {
      PATH: process.env.PATH ?? "",
      AUTOSCALER_CONFIG_FILE: path.join(dir, "autoscaler.json"),
      AUTOSCALER_STATE_DIR: path.join(dir, "state"),
      AUTOSCALER_HOST: "127.0.0.1",
      AUTOSCALER_PORT: String(control),
      AUTOSCALER_OFF_PORT: String(off),
      ...env,
    },
  });
  await waitFor(
    "the controller's first tick",
    async () => (await rigRequest(control, { path: "/status" }).catch(() => ({ status: 0 }))).status === 200,
    20_000,
    { context: () => proc.tail() },
  );
  return { proc, control, off };
}
