import { describe, expect, it } from "vitest";
import { checkoutHub, EXIT, runHub } from "../cli/hub/cli";
import { ROOT } from "./helpers/load";
import {
  hubDown,
  keptVolumes,
  leftToDestroy,
  type StateResource,
  VOLUME_TYPE,
  volumeMonthlyUsd,
} from "../cli/hub/down";
import { planFromFile, stackFilePath } from "../cli/plan/runner";
import { fakeHub, MemoryPending, RecordingTeardown, RecordingVolumes } from "./helpers/hub-deps";
import { io } from "./helpers/recording-ops";

/**
 * `hub down` against a recording stand-in of the Pulumi operations, over a state shaped like the
 * one the real engine leaves (docs/real-engine.md: after `destroy --exclude-protected` the
 * volumes, their tag, their two components, the provider and the stack remain).
 */

const S = "hybrid";
const urn = (type: string, name: string, parent = "") => `urn:pulumi:${S}::inference-hub::${parent}${type}::${name}`;
const STACK = urn("pulumi:pulumi:Stack", `inference-hub-${S}`);
const PROVIDER = urn("pulumi:providers:digitalocean", "default_4_80_1");
const NETWORK = urn("inference-hub:network:HubNetwork", "network");
const STORAGE = urn("inference-hub:storage:HubStorage", "storage");
const TAG = urn("digitalocean:index/tag:Tag", `network-tag-ih-stack-${S}`, "inference-hub:network:HubNetwork$");
const volume = (name: string, id: string, size: number): StateResource => ({
  urn: urn(VOLUME_TYPE, name, "inference-hub:storage:HubStorage$"),
  type: VOLUME_TYPE,
  id,
  protect: true,
  retainOnDelete: true,
  parent: STORAGE,
  dependencies: [TAG],
  inputs: { name: `ih-${S}-${name}`, size },
});

function deployedState(): StateResource[] {
  return [
    { urn: STACK, type: "pulumi:pulumi:Stack" },
    { urn: PROVIDER, type: "pulumi:providers:digitalocean" },
    { urn: NETWORK, type: "inference-hub:network:HubNetwork", parent: STACK },
    { urn: STORAGE, type: "inference-hub:storage:HubStorage", parent: STACK },
    { urn: TAG, type: "digitalocean:index/tag:Tag", parent: NETWORK },
    { urn: urn("digitalocean:index/vpc:Vpc", "network-vpc"), type: "digitalocean:index/vpc:Vpc", parent: NETWORK },
    {
      urn: urn("digitalocean:index/droplet:Droplet", "cpu-droplet"),
      type: "digitalocean:index/droplet:Droplet",
      dependencies: [TAG],
    },
    volume("storage-cpu-cache", "vol-cpu-0001", 100),
    volume("storage-model-cache-0", "vol-gpu-0001", 200),
  ];
}

describe("hub down, keeping the volumes", () => {
  it("runs destroy --exclude-protected once, and says which volumes stay, their size and monthly cost", async () => {
    const ops = new RecordingTeardown(deployedState(), S);
    const { lines, io: out } = io();
    await hubDown(ops, out, { deleteVolumes: false });
    expect(ops.calls).toEqual(["destroy --exclude-protected"]);
    expect(lines.join("\n")).toMatch(/kept: 2 volume\(s\), 300 GiB, \$30\.00\/month while they exist/);
    expect(lines.join("\n")).toMatch(/ih-hybrid-storage-model-cache-0 \(vol-gpu-0001\): 200 GiB, \$20\.00\/month/);
    // What the real engine keeps: the volumes and what they need.
    expect(ops.state.map((r) => r.urn.split("::").pop()).sort()).toEqual([
      "default_4_80_1",
      "inference-hub-hybrid",
      "network",
      "network-tag-ih-stack-hybrid",
      "storage",
      "storage-cpu-cache",
      "storage-model-cache-0",
    ]);
  });

  it("a second run is a no-op: no engine call", async () => {
    const ops = new RecordingTeardown(deployedState(), S);
    await hubDown(ops, io().io, { deleteVolumes: false });
    ops.calls.length = 0;
    const { lines, io: out } = io();
    await hubDown(ops, out, { deleteVolumes: false });
    expect(ops.calls).toEqual([]);
    expect(lines[0]).toBe("hybrid: already down; only the volumes remain.");
    expect(leftToDestroy(ops.state)).toEqual([]);
    const empty = new RecordingTeardown([], S);
    const never = io();
    await hubDown(empty, never.io, { deleteVolumes: false });
    expect(empty.calls).toEqual([]);
    expect(never.lines).toEqual(["hybrid: nothing is deployed; nothing to do."]);
  });
});

describe("hub down --delete-volumes", () => {
  it("refuses without the typed stack name, and with a wrong one: nothing runs", async () => {
    for (const typed of [undefined, "hybird", ""]) {
      const ops = new RecordingTeardown(deployedState(), S);
      await expect(
        hubDown(
          ops,
          io().io,
          { deleteVolumes: true, typedStackName: typed },
          { volumes: new RecordingVolumes(new Set()), pending: new MemoryPending() },
        ),
      ).rejects.toThrow(/type the stack name to confirm.*nothing was changed/);
      expect(ops.calls).toEqual([]);
    }
  });

  it("destroys the rest, unprotects each volume, destroys, then deletes the retained volumes by id; a second run does nothing", async () => {
    const ops = new RecordingTeardown(deployedState(), S);
    const account = new Set(["vol-cpu-0001", "vol-gpu-0001"]);
    const volumes = new RecordingVolumes(account);
    const pending = new MemoryPending();
    await hubDown(ops, io().io, { deleteVolumes: true, typedStackName: S }, { volumes, pending });
    expect(ops.calls).toEqual([
      "destroy --exclude-protected",
      `state unprotect ${volume("storage-cpu-cache", "", 0).urn}`,
      `state unprotect ${volume("storage-model-cache-0", "", 0).urn}`,
      "destroy",
    ]);
    expect(volumes.deleted.sort()).toEqual(["vol-cpu-0001", "vol-gpu-0001"]);
    expect(account.size).toBe(0);
    expect(ops.state).toEqual([]);
    ops.calls.length = 0;
    const again = io();
    await hubDown(ops, again.io, { deleteVolumes: true, typedStackName: S }, { volumes, pending });
    expect(ops.calls).toEqual([]);
    expect(again.lines).toEqual(["hybrid: nothing is deployed; nothing to do."]);
  });

  it("a volume the cloud would not delete is remembered, and the next run deletes it without touching Pulumi", async () => {
    const ops = new RecordingTeardown(deployedState(), S);
    const volumes = new RecordingVolumes(new Set(["vol-cpu-0001", "vol-gpu-0001"]));
    volumes.failNext = 1;
    const pending = new MemoryPending();
    await expect(
      hubDown(ops, io().io, { deleteVolumes: true, typedStackName: S }, { volumes, pending }),
    ).rejects.toThrow(/1 volume\(s\) left the stack but could not be deleted.*run the same command again/);
    expect(pending.volumes.map((v) => v.id)).toEqual(["vol-cpu-0001"]);
    ops.calls.length = 0;
    await hubDown(ops, io().io, { deleteVolumes: true, typedStackName: S }, { volumes, pending });
    expect(ops.calls).toEqual([]);
    expect(volumes.deleted).toContain("vol-cpu-0001");
    expect(pending.volumes).toEqual([]);
  });

  it("through the CLI: the typed name is asked for, a wrong answer changes nothing, --confirm types it ahead; keeping volumes asks y/N unless --yes", async () => {
    const wrong = fakeHub({
      onPathPrograms: ["pulumi"],
      answers: ["cpu"],
      teardown: new RecordingTeardown(deployedState(), "hybrid"),
    });
    wrong.env.DIGITALOCEAN_TOKEN = "dop_v1_test";
    expect(await runHub(["down", "--stack", "hybrid", "--delete-volumes"], wrong)).toBe(EXIT.refused);
    expect(wrong.stderr()).toMatch(/"cpu" is not hybrid: nothing was changed/);
    const teardown = new RecordingTeardown(deployedState(), "hybrid");
    const confirmed = fakeHub({
      onPathPrograms: ["pulumi"],
      teardown,
      volumes: new RecordingVolumes(new Set(["vol-cpu-0001", "vol-gpu-0001"])),
    });
    confirmed.env.DIGITALOCEAN_TOKEN = "dop_v1_test";
    expect(await runHub(["down", "--stack", "hybrid", "--delete-volumes", "--confirm", "hybrid"], confirmed)).toBe(
      EXIT.ok,
    );
    expect(teardown.calls.at(-1)).toBe("destroy");
    const no = fakeHub({
      onPathPrograms: ["pulumi"],
      answers: ["n"],
      teardown: new RecordingTeardown(deployedState(), "hybrid"),
    });
    no.env.DIGITALOCEAN_TOKEN = "dop_v1_test";
    expect(await runHub(["down", "--stack", "hybrid"], no)).toBe(EXIT.ok);
    expect(no.stdout()).toBe("nothing was changed.\n");
    const noTerminal = fakeHub({ onPathPrograms: ["pulumi"] });
    noTerminal.env.DIGITALOCEAN_TOKEN = "dop_v1_test";
    expect(await runHub(["down", "--stack", "hybrid"], noTerminal)).toBe(EXIT.refused);
    expect(noTerminal.stderr()).toMatch(/pass --yes/);
    // The local tier needs no cloud token.
    const local = fakeHub({ onPathPrograms: ["pulumi"], teardown: new RecordingTeardown([], "local") });
    expect(await runHub(["down", "--stack", "local", "--yes"], local)).toBe(EXIT.ok);
  });
});

describe("what hub down keeps, per tier (the figures of docs/day-two.md)", () => {
  // k8s too: its state claims (metrics, the controller's ledger, certificates) are volumes of the stack like the caches, so all stay.
  for (const stack of ["cpu", "gpu", "hybrid", "multigpu", "k8s"]) {
    it(`${stack}: the plan's volumes are what stays, at $0.10/GiB-month`, async () => {
      const result = await planFromFile(stack, stackFilePath(stack));
      if (!result.ok) throw new Error("plan refused");
      const resources = result.document.resources as unknown as {
        type: string;
        urn: string;
        inputs?: Record<string, unknown>;
        options: { protect: boolean; retainOnDelete: boolean };
      }[];
      const volumes = resources.filter((r) => r.type === VOLUME_TYPE);
      expect(volumes.length).toBeGreaterThan(0);
      for (const v of volumes) expect(v.options).toMatchObject({ protect: true, retainOnDelete: true });
      const kept = keptVolumes(volumes.map((v) => ({ urn: v.urn, type: v.type, inputs: v.inputs, protect: true })));
      const total = kept.reduce((s, v) => s + v.sizeGiB, 0);
      console.log(
        `hub down keeps on ${stack}: ${kept.map((v) => `${v.name} ${v.sizeGiB} GiB`).join(", ")}; ${total} GiB = $${volumeMonthlyUsd(total).toFixed(2)}/month`,
      );
      // The plan's own cost line for block storage: what the stack pays for these volumes while they exist.
      const hub = checkoutHub(ROOT, stack, Date.now())!;
      expect(volumeMonthlyUsd(total)).toBe(hub.cost.lines.find((l) => l.item === "Block storage")?.monthlyUsd);
    });
  }
});
