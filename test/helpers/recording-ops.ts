import type { PreviewStep, StackConfig } from "../../cli/hub/decisions";
import type { StackOps } from "../../cli/hub/ops";

export const cfg = (values: Record<string, string>): StackConfig =>
  Object.fromEntries(Object.entries(values).map(([k, v]) => [`inference-hub:${k}`, { value: v, secret: false }]));

/** Records what the command asks Pulumi to do; previews answer with scripted steps. */
export class RecordingOps implements StackOps {
  readonly calls: string[] = [];
  /** The update messages `up` was given, in order. */
  readonly messages: (string | undefined)[] = [];
  constructor(
    public config: Record<string, { value: string; secret: boolean }>,
    private readonly previewSteps: PreviewStep[] = [],
    readonly stackName = "hybrid",
  ) {}
  async getConfig() {
    this.calls.push("getConfig");
    return { ...this.config };
  }
  async setConfig(key: string, value: string, secret: boolean) {
    this.calls.push(`set ${key}=${value}`);
    this.config[key] = { value, secret };
  }
  async removeConfig(key: string) {
    this.calls.push(`remove ${key}`);
    delete this.config[key];
  }
  async preview() {
    this.calls.push("preview");
    return this.previewSteps;
  }
  async up(_out: (l: string) => void, onStep: (s: PreviewStep) => void, message?: string) {
    this.calls.push("up");
    this.messages.push(message);
    for (const s of this.previewSteps) onStep(s);
    return this.previewSteps;
  }
  deployedNodes: Record<string, unknown> = { cpu: {} };
  /** The gpuPin stack output, when the deployed stack has one. */
  deployedPin: { nodes: number; until: string } | undefined;
  async outputs() {
    return {
      baseUrl: { value: "http://203.0.113.10/v1", secret: false },
      nodeAddresses: { value: this.deployedNodes, secret: false },
      ...(this.deployedPin ? { gpuPin: { value: this.deployedPin, secret: false } } : {}),
    };
  }
}

/** An Io that collects lines, with a clock that moves a second per read. */
export const io = () => {
  const lines: string[] = [];
  let t = 0;
  return { lines, io: { out: (l: string) => void lines.push(l), now: () => (t += 1000) } };
};

export const step = (op: string, type: string, name: string, stack = "hybrid"): PreviewStep => ({
  op,
  type,
  urn: `urn:pulumi:${stack}::inference-hub::x$${type}::${name}`,
});
