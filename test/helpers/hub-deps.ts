import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import type { HubDeps } from "../../cli/hub/cli";
import type { KeptVolume, PendingVolumes, StateResource, TeardownOps, VolumeDeleter } from "../../cli/hub/down";
import { availableStacks } from "../../cli/plan/runner";
import { ROOT } from "./load";
import { RecordingOps } from "./recording-ops";

/** Records `hub down`'s Pulumi calls, over a state the test sets; destroy changes it as the real engine was seen to (docs/real-engine.md). */
export class RecordingTeardown implements TeardownOps {
  readonly calls: string[] = [];
  constructor(
    public state: StateResource[],
    readonly stackName = "hybrid",
  ) {}
  async resources() {
    return this.state;
  }
  async destroy(options: { excludeProtected: boolean }) {
    this.calls.push(options.excludeProtected ? "destroy --exclude-protected" : "destroy");
    if (!options.excludeProtected) {
      // Protected resources fail a plain destroy; unprotected ones go (retained volumes leave the state only).
      if (this.state.some((r) => r.protect)) throw new Error("resource cannot be deleted because it is protected");
      this.state = [];
      return;
    }
    const kept = new Set<string>();
    const keep = (urn?: string) => {
      const r = this.state.find((x) => x.urn === urn);
      if (!r || kept.has(r.urn)) return;
      kept.add(r.urn);
      keep(r.parent);
      for (const d of r.dependencies ?? []) keep(d);
    };
    for (const r of this.state) if (r.protect) keep(r.urn);
    this.state = this.state.filter((r) => kept.has(r.urn) || /^pulumi:(pulumi:Stack|providers:)/.test(r.type));
  }
  async unprotect(urn: string) {
    this.calls.push(`state unprotect ${urn}`);
    this.state = this.state.map((r) => (r.urn === urn ? { ...r, protect: false } : r));
  }
}

export class RecordingVolumes implements VolumeDeleter {
  readonly where = "the recording stand-in of DigitalOcean";
  readonly deleted: string[] = [];
  failNext = 0;
  constructor(private readonly existing: Set<string>) {}
  async delete(id: string) {
    if (this.failNext > 0) {
      this.failNext--;
      throw new Error("503 from the stand-in");
    }
    this.deleted.push(id);
    return this.existing.delete(id) ? ("deleted" as const) : ("gone" as const);
  }
}

export class MemoryPending implements PendingVolumes {
  volumes: readonly KeptVolume[] = [];
  load() {
    return this.volumes;
  }
  save(v: readonly KeptVolume[]) {
    this.volumes = v;
  }
}

export interface FakeHub extends HubDeps {
  readonly stdout: () => string;
  readonly stderr: () => string;
  readonly ran: { program: string; args: readonly string[] }[];
  readonly scripts: { name: string; args: readonly string[] }[];
  readonly stackOpsAsked: string[];
}

/** The CLI's dependencies as recording stand-ins: no Pulumi CLI on the PATH, no cloud token, an empty Pulumi home unless the test sets them. */
export function fakeHub(
  over: Partial<HubDeps> & {
    onPathPrograms?: readonly string[];
    answers?: string[];
    ops?: RecordingOps;
    teardown?: RecordingTeardown;
    volumes?: RecordingVolumes;
    pending?: MemoryPending;
  } = {},
): FakeHub {
  let out = "";
  let err = "";
  const home = mkdtempSync(path.join(tmpdir(), "hub-cli-home-"));
  const ran: { program: string; args: readonly string[] }[] = [];
  const scripts: { name: string; args: readonly string[] }[] = [];
  const stackOpsAsked: string[] = [];
  const answers = [...(over.answers ?? [])];
  const deps: FakeHub = {
    env: { PULUMI_HOME: path.join(home, "pulumi") },
    out: (t) => void (out += t),
    err: (t) => void (err += t),
    now: () => Date.parse("2026-12-07T12:00:00Z"),
    projectRoot: ROOT,
    home,
    stacksHere: availableStacks,
    onPath: (p) => (over.onPathPrograms ?? []).includes(p),
    stackOps: async (stack) => {
      stackOpsAsked.push(stack);
      return over.ops ?? new RecordingOps({}, [], stack);
    },
    teardownOps: async (stack) => {
      stackOpsAsked.push(stack);
      return over.teardown ?? new RecordingTeardown([], stack);
    },
    volumeDeleter: () => over.volumes ?? new RecordingVolumes(new Set()),
    pendingVolumes: () => over.pending ?? new MemoryPending(),
    fetch: fetch as never,
    run: async (program, args) => (ran.push({ program, args }), 0),
    prompt: async () => answers.shift(),
    script: async (name, args) => (scripts.push({ name, args }), 0),
    stdout: () => out,
    stderr: () => err,
    ran,
    scripts,
    stackOpsAsked,
    ...over,
  };
  return deps;
}
