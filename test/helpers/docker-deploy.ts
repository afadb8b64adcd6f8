import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { HUB_CONTAINER_LABEL } from "../../services/node-setup";
import { CPU_CACHE_MOUNT } from "../../services/node-setup";
import { PUBLIC_PORTS } from "../../services/ports";
import { planKeysChange } from "../../cli/hub/keys";
import {
  type ContainerInputs,
  containerLogs,
  createContainerAsProvider,
  engine,
  engineRequest,
  execIn,
  inspectContainer,
} from "./docker-engine";
import { freePort } from "./loopback";
import { runProgram } from "./mock-run";
import { sleep } from "./processes";

/**
 * The CPU node of a tier, started on the real Docker engine exactly as the deploy would create
 * it: the plan runs under the mock engine; the file commands it registers on the CPU node run
 * here as root (so owners and modes are the deploy's); the Docker network is created; every
 * docker.Container's inputs go through the provider's create call (docker-engine.ts).
 *
 * What changes, and only this: the node's data root (/mnt/cpu-cache on a droplet, the user's
 * ~/.inference-hub/<stack> on the local tier) moves to a temporary directory, in the commands'
 * scripts and in the containers' bind sources alike; and every published port is bound to
 * 127.0.0.1 on a free port (a droplet publishes on its private or public address, on fixed
 * ports), and a container on the host's network (node_exporter) listens on 127.0.0.1 on a free
 * port (its flag and health check), so nothing listens beyond loopback and no test takes a fixed port.
 */

export interface DockerPlan {
  readonly tier: string;
  readonly containers: readonly ContainerInputs[];
  /** The node's file commands in registration order: script and its stdin. */
  readonly commands: readonly { readonly name: string; readonly script: string; readonly stdin?: string }[];
  readonly network: { readonly name: string; readonly driver: string };
  /** The data root the plan wrote to. */
  readonly dataRoot: string;
  /** The API key a user created (keys create), in the clear, and the backends' key. */
  readonly userKey: string;
  readonly backendKey: string;
  /** Private addresses of the GPU nodes the plan names (stand-in addresses from the mock cloud). */
  readonly gpuPrivateIps: readonly string[];
  /** The audit database the stack names (auditDatabaseUrl): started beside the node by startCpuNode. */
  readonly auditDatabase: AuditDatabase;
}

/** A user's PostgreSQL for the audit log: Debian's PostgreSQL in a container on the node's network. */
export interface AuditDatabase {
  readonly host: string;
  readonly user: string;
  readonly password: string;
}

const AUDIT_DB_IMAGE = "inference-hub-test/postgres:debian-12";
export const auditDatabaseUrl = (db: AuditDatabase) => `postgres://${db.user}:${db.password}@${db.host}:5432/postgres`;

const CONTAINER = "docker:index/container:Container";
const IMAGE = "docker:index/remoteImage:RemoteImage";
const NETWORK = "docker:index/network:Network";
const COMMANDS = ["command:remote:Command", "command:local:Command"];

/** Runs the plan for `settings` with a user's key and a backends' key, and keeps the CPU node's part. */
export async function planCpuNode(settings: Record<string, unknown>): Promise<DockerPlan> {
  const created = planKeysChange(
    { version: 1, keys: [] },
    "create",
    [],
    { name: "engine-test", scopes: "llm,ocr,stt,tts,admin" },
    new Date(),
  );
  const backendKey = `hub-${randomBytes(18).toString("hex")}`;
  const auditDatabase = { host: "audit-db", user: "hub", password: randomBytes(12).toString("hex") };
  const run = await runProgram(settings, {
    secrets: {
      hubApiKey: backendKey,
      apiKeys: JSON.stringify(created.file),
      auditDatabaseUrl: auditDatabaseUrl(auditDatabase),
    },
  });
  const onCpu = (name: string) => name.startsWith("cpu-containers-");
  const images = new Map(
    run
      .byType(IMAGE)
      .filter((r) => onCpu(r.name))
      .map((r) => [r.name.replace(/^cpu-containers-image-/, ""), String(r.rawInputs.name)]),
  );
  const containers = run
    .byType(CONTAINER)
    .filter((r) => onCpu(r.name))
    .map((r) => {
      const inputs = r.rawInputs as unknown as ContainerInputs;
      const image = images.get(inputs.name);
      if (!image) throw new Error(`no image resource for container ${inputs.name}`);
      return { ...inputs, image };
    });
  const commands = run.resources
    .filter((r) => COMMANDS.includes(r.type) && onCpu(r.name))
    .map((r) => ({
      name: r.name,
      script: String(r.rawInputs.create),
      ...(r.rawInputs.stdin !== undefined ? { stdin: String(r.rawInputs.stdin) } : {}),
    }));
  const network = run.byType(NETWORK).find((r) => onCpu(r.name));
  if (!network) throw new Error("no Docker network on the CPU node");
  const dataRoot = settings.tier === "local" ? String(run.outputs.dataDir) : CPU_CACHE_MOUNT;
  const gpuPrivateIps = run
    .byType("digitalocean:index/droplet:Droplet")
    .filter((d) => !d.name.startsWith("cpu-"))
    .map((d) => String(d.cloudOutputs?.ipv4AddressPrivate));
  return {
    tier: String(settings.tier),
    containers,
    commands,
    network: { name: String(network.rawInputs.name), driver: String(network.rawInputs.driver) },
    dataRoot,
    userKey: created.newKey!,
    backendKey,
    gpuPrivateIps,
    auditDatabase,
  };
}

export interface StartedNode {
  readonly plan: DockerPlan;
  /** Container name → id (the plan's containers). */
  readonly ids: ReadonlyMap<string, string>;
  /** The audit database's container. */
  readonly auditDb: string;
  /** `<container>:<internal port>` → the loopback port it is published on here. */
  readonly ports: ReadonlyMap<string, number>;
  readonly dataDir: string;
  /** The gateway's public entry point (8100), on loopback here. */
  readonly baseUrl: string;
  remove(): Promise<void>;
}

/** Removes what a run (this one or an interrupted earlier one) left: the hub's containers and its network. */
export async function removeHubContainers(networkName: string): Promise<void> {
  const filters = encodeURIComponent(JSON.stringify({ label: [HUB_CONTAINER_LABEL] }));
  const containers = await engine<{ Id: string }[]>("GET", `/containers/json?all=1&filters=${filters}`);
  await Promise.all(containers.map((c) => engineRequest("DELETE", `/containers/${c.Id}?force=1&v=1`)));
  await engineRequest("DELETE", `/networks/${encodeURIComponent(networkName)}`);
}

const rebase = (text: string, from: string, to: string): string => text.split(`${from}/`).join(`${to}/`);

/** Writes the node's files, creates its network and starts its containers. */
export async function startCpuNode(plan: DockerPlan): Promise<StartedNode> {
  await removeHubContainers(plan.network.name);
  const dataDir = mkdtempSync(path.join(tmpdir(), `ih-engine-${plan.tier}-`));
  for (const command of plan.commands) {
    const script = rebase(command.script, plan.dataRoot, dataDir);
    const result = spawnSync("sh", ["-c", script], { input: command.stdin ?? "", encoding: "utf8" });
    if (result.status !== 0)
      throw new Error(`${command.name} failed (exit ${result.status}): ${result.stderr}\n${script.slice(0, 500)}`);
  }
  await engine("POST", "/networks/create", {
    Name: plan.network.name,
    Driver: plan.network.driver,
    CheckDuplicate: true,
  });
  const ports = new Map<string, number>();
  const ids = new Map<string, string>();
  // The user's audit database first, so the gatekeeper finds it (it would spool and retry otherwise).
  const db = plan.auditDatabase;
  const auditDb = await createContainerAsProvider({
    name: db.host,
    image: AUDIT_DB_IMAGE,
    envs: [`POSTGRES_USER=${db.user}`, `POSTGRES_PASSWORD=${db.password}`],
    labels: [{ label: HUB_CONTAINER_LABEL, value: "audit-database (test)" }],
    networksAdvanced: [{ name: plan.network.name, aliases: [db.host] }],
  });
  const deadline = Date.now() + 60_000;
  while ((await execIn(auditDb, ["pg_isready", "-q", "-h", "127.0.0.1"])).exitCode !== 0) {
    if (Date.now() > deadline) throw new Error(`the audit database did not start: ${await containerLogs(auditDb)}`);
    await sleep(250);
  }
  for (const c of plan.containers) {
    const published = [];
    for (const p of c.ports ?? []) {
      const port = await freePort();
      ports.set(`${c.name}:${p.internal}`, port);
      published.push({ ...p, ip: "127.0.0.1", external: port });
    }
    // On the host's network (node_exporter) the listen port is the host's own: a free one here, in its flag and its health check alike.
    let { command, healthcheck } = c;
    if (c.networkMode === "host") {
      const listen = c.command?.map((a) => /^--web\.listen-address=:(\d+)$/.exec(a)).find(Boolean);
      if (listen) {
        const port = await freePort();
        ports.set(`${c.name}:${listen[1]}`, port);
        command = c.command!.map((a) => (a === listen[0] ? `--web.listen-address=127.0.0.1:${port}` : a));
        healthcheck = c.healthcheck && {
          ...c.healthcheck,
          tests: c.healthcheck.tests.map((t) => t.replace(`127.0.0.1:${listen[1]}/`, `127.0.0.1:${port}/`)),
        };
      }
    }
    const inputs: ContainerInputs = {
      ...c,
      command,
      healthcheck,
      ports: published,
      volumes: c.volumes?.map((v) => ({
        ...v,
        hostPath: v.hostPath ? rebase(v.hostPath, plan.dataRoot, dataDir) : v.hostPath,
      })),
      mounts: c.mounts?.map((m) => ({ ...m, source: m.source ? rebase(m.source, plan.dataRoot, dataDir) : m.source })),
    };
    ids.set(c.name, await createContainerAsProvider(inputs));
  }
  const gateway = ports.get(`gateway:${PUBLIC_PORTS.legacy}`);
  if (!gateway)
    throw new Error(`the gateway publishes no ${PUBLIC_PORTS.legacy}; ports: ${[...ports.keys()].join(", ")}`);
  return {
    plan,
    ids,
    auditDb,
    ports,
    dataDir,
    baseUrl: `http://127.0.0.1:${gateway}/v1`,
    remove: async () => {
      await removeHubContainers(plan.network.name);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export interface HealthReport {
  readonly healthy: readonly string[];
  /** Container → why: its state, last health output and the end of its log. */
  readonly unhealthy: ReadonlyMap<string, string>;
}

/** Waits until every container with a health check reports healthy (or `timeoutMs` passes). */
export async function waitHealthy(node: StartedNode, timeoutMs: number): Promise<HealthReport> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const states = await Promise.all(
      [...node.ids].map(async ([name, id]) => [name, id, (await inspectContainer(id)).State] as const),
    );
    const pending = states.filter(
      ([, , s]) => s.Running && s.Health && s.Health.Status !== "healthy" && s.Health.Status !== "unhealthy",
    );
    if (pending.length === 0 || Date.now() > deadline) {
      const unhealthy = new Map<string, string>();
      for (const [name, id, s] of states) {
        if (s.Health?.Status === "healthy") continue;
        const last = s.Health?.Log.at(-1);
        unhealthy.set(
          name,
          `status ${s.Status}${s.Health ? `, health ${s.Health.Status}` : ", no health check"} (exit ${s.ExitCode}${s.Error ? `, ${s.Error}` : ""})${last ? `; last check exit ${last.ExitCode}: ${last.Output.trim().slice(-400)}` : ""}\n    log: ${(await containerLogs(id)).trim().slice(-800).replace(/\n/g, "\n    ")}`,
        );
      }
      return { healthy: states.filter(([, , s]) => s.Health?.Status === "healthy").map(([n]) => n), unhealthy };
    }
    await sleep(1000);
  }
}
