import type { DropletState, ImageOps, SnapshotInfo } from "../../cli/hub/gpu-image";

/**
 * A RECORDING STAND-IN of the DigitalOcean operations the GPU image build uses (not DigitalOcean):
 * snapshots by name, droplets whose states follow a script, snapshot actions that complete after
 * a number of polls. Every call is recorded in order; `sleep` only counts.
 */
export class RecordingImageOps implements ImageOps {
  readonly calls: string[] = [];
  readonly snapshots: SnapshotInfo[] = [];
  readonly droplets = new Map<number, { spec: Parameters<ImageOps["createDroplet"]>[0]; destroyed: boolean }>();
  /** States each new droplet reports, one per poll; the last repeats. */
  dropletStates: DropletState[] = ["new", "active", "active", "off"];
  /** Action states, one per poll; the last repeats. */
  actionStates: ("in-progress" | "completed" | "errored")[] = ["in-progress", "completed"];
  /** Destroy calls that fail before one succeeds. */
  destroyFailures = 0;
  /** Throw from dropletState (a network failure mid-build). */
  stateError?: Error;
  sizeGB = 44.1;
  private nextId = 100;
  private polls = new Map<number, number>();
  private actionDroplet = new Map<number, { droplet: number; name: string; polls: number }>();

  constructor(private readonly region = "tor1") {}

  async findSnapshot(name: string) {
    this.calls.push(`findSnapshot ${name}`);
    return this.snapshots.find((s) => s.name === name);
  }
  async createDroplet(spec: Parameters<ImageOps["createDroplet"]>[0]) {
    const id = this.nextId++;
    this.droplets.set(id, { spec, destroyed: false });
    this.calls.push(`createDroplet ${spec.name} ${spec.size} ${spec.image}`);
    return id;
  }
  async dropletState(id: number) {
    if (this.stateError) throw this.stateError;
    const n = this.polls.get(id) ?? 0;
    this.polls.set(id, n + 1);
    return this.droplets.get(id)?.destroyed ? "gone" : this.dropletStates[Math.min(n, this.dropletStates.length - 1)];
  }
  async snapshot(dropletId: number, name: string) {
    const action = this.nextId++;
    this.actionDroplet.set(action, { droplet: dropletId, name, polls: 0 });
    this.calls.push(`snapshot ${dropletId} ${name}`);
    return action;
  }
  async actionState(actionId: number) {
    const a = this.actionDroplet.get(actionId)!;
    const state = this.actionStates[Math.min(a.polls++, this.actionStates.length - 1)];
    if (state === "completed" && !this.snapshots.some((s) => s.name === a.name))
      this.snapshots.push({ id: String(9000 + actionId), name: a.name, regions: [this.region], sizeGB: this.sizeGB });
    return state;
  }
  async destroyDroplet(id: number) {
    this.calls.push(`destroyDroplet ${id}`);
    if (this.destroyFailures > 0) {
      this.destroyFailures--;
      throw new Error("stand-in: 503 Service Unavailable");
    }
    this.droplets.get(id)!.destroyed = true;
  }
  async sleep() {
    /* the clock in the test's Io moves instead */
  }
  get alive(): number[] {
    return [...this.droplets].filter(([, d]) => !d.destroyed).map(([id]) => id);
  }
}
