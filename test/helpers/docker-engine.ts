import * as http from "node:http";

/**
 * A small client for the Docker Engine API over its unix socket (API 1.41, Debian's 20.10), and
 * the mapping of a `docker.Container`'s inputs to the create call the Docker provider makes.
 * The mapping follows terraform-provider-docker's resourceDockerContainerCreate
 * (internal/provider/resource_docker_container_funcs.go), which @pulumi/docker bridges:
 * `command` → Cmd, `entrypoints` → Entrypoint, `envs` → Env, `labels` → Labels, `healthcheck` →
 * Healthcheck (Go durations to nanoseconds), `ports` → ExposedPorts and PortBindings
 * ("<internal>/tcp" → HostIp, HostPort), `volumes` → Binds ("host:container[:ro]"), `mounts` →
 * Mounts (with BindOptions.Propagation), `memory` MiB → bytes, `restart` → RestartPolicy,
 * `logDriver`/`logOpts` → LogConfig, `capabilities.adds` → CapAdd, `networkMode`, `pidMode`,
 * `ipcMode`, `groupAdds`, and Init false. The container is created on the default bridge, then
 * disconnected from it and connected to each of `networksAdvanced` with its aliases, and started.
 */

export const DOCKER_SOCKET = process.env.DOCKER_SOCKET ?? "/var/run/docker.sock";
const API = "/v1.41";

export class DockerApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export function engineRequest(
  method: string,
  path: string,
  body?: unknown,
  options: { raw?: boolean; timeoutMs?: number } = {},
): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = http.request(
      {
        socketPath: DOCKER_SOCKET,
        method,
        path: `${API}${path}`,
        headers: payload ? { "Content-Type": "application/json", "Content-Length": payload.length } : {},
        timeout: options.timeoutMs ?? 60_000,
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on("data", (c: Buffer) => parts.push(c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts) }));
      },
    );
    req.on("timeout", () => req.destroy(new Error(`${method} ${path}: no answer from the Docker engine`)));
    req.on("error", reject);
    req.end(payload);
  });
}

/** A call that must succeed; its JSON answer (or undefined for 204). */
export async function engine<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
  const res = await engineRequest(method, path, body);
  if (res.status >= 400)
    throw new DockerApiError(res.status, `${method} ${path}: ${res.status} ${res.body.toString("utf8").trim()}`);
  return (res.body.length ? JSON.parse(res.body.toString("utf8")) : undefined) as T;
}

export async function engineAnswers(): Promise<boolean> {
  try {
    return (await engineRequest("GET", "/_ping", undefined, { timeoutMs: 3000 })).status === 200;
  } catch {
    return false;
  }
}

/** The parts of docker.ContainerArgs the hub sets, resolved to plain values. */
export interface ContainerInputs {
  readonly name: string;
  readonly image: string;
  readonly entrypoints?: string[];
  readonly command?: string[];
  readonly envs?: string[];
  readonly user?: string;
  readonly ports?: { internal: number; external?: number; ip?: string; protocol?: string }[];
  readonly volumes?: { hostPath?: string; containerPath: string; readOnly?: boolean }[];
  readonly mounts?: {
    type: string;
    source?: string;
    target: string;
    readOnly?: boolean;
    bindOptions?: { propagation?: string };
  }[];
  readonly networksAdvanced?: { name: string; aliases?: string[] }[];
  readonly networkMode?: string;
  readonly pidMode?: string;
  readonly ipcMode?: string;
  readonly capabilities?: { adds?: string[]; drops?: string[] };
  readonly groupAdds?: string[];
  readonly memory?: number;
  readonly restart?: string;
  readonly healthcheck?: {
    tests: string[];
    interval?: string;
    timeout?: string;
    startPeriod?: string;
    retries?: number;
  };
  readonly logDriver?: string;
  readonly logOpts?: Record<string, string>;
  readonly labels?: { label: string; value: string }[];
}

/** Go's time.ParseDuration for the forms the hub writes ("30s", "1m30s", "500ms"), in nanoseconds. */
export function goDurationNanos(text: string | undefined): number {
  if (!text) return 0;
  const units: Record<string, number> = { ns: 1, us: 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 };
  let total = 0;
  const re = /(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)/gy;
  let m: RegExpExecArray | null;
  let consumed = 0;
  while ((m = re.exec(text))) {
    total += Number(m[1]) * units[m[2]];
    consumed = re.lastIndex;
  }
  if (consumed !== text.length) throw new Error(`not a Go duration: ${text}`);
  return total;
}

/** The body of POST /containers/create and the networks to connect afterwards, as the provider builds them. */
export function providerCreateCall(inputs: ContainerInputs): {
  body: Record<string, unknown>;
  networks: { name: string; aliases: string[] }[];
} {
  const exposed: Record<string, object> = {};
  const bindings: Record<string, { HostIp: string; HostPort: string }[]> = {};
  for (const p of inputs.ports ?? []) {
    const key = `${p.internal}/${p.protocol ?? "tcp"}`;
    exposed[key] = {};
    (bindings[key] ??= []).push({
      HostIp: p.ip ?? "0.0.0.0",
      HostPort: p.external === undefined ? "" : String(p.external),
    });
  }
  const binds = (inputs.volumes ?? []).map((v) => `${v.hostPath}:${v.containerPath}${v.readOnly ? ":ro" : ""}`);
  const mounts = (inputs.mounts ?? []).map((m) => ({
    Type: m.type,
    Source: m.source,
    Target: m.target,
    ReadOnly: m.readOnly ?? false,
    ...(m.bindOptions ? { BindOptions: { Propagation: m.bindOptions.propagation } } : {}),
  }));
  const hc = inputs.healthcheck;
  const body: Record<string, unknown> = {
    Image: inputs.image,
    Env: inputs.envs ?? [],
    ...(inputs.command?.length ? { Cmd: inputs.command } : {}),
    ...(inputs.entrypoints?.length ? { Entrypoint: inputs.entrypoints } : {}),
    ...(inputs.user ? { User: inputs.user } : {}),
    ...(Object.keys(exposed).length ? { ExposedPorts: exposed } : {}),
    Labels: Object.fromEntries((inputs.labels ?? []).map((l) => [l.label, l.value])),
    ...(hc
      ? {
          Healthcheck: {
            Test: hc.tests,
            Interval: goDurationNanos(hc.interval),
            Timeout: goDurationNanos(hc.timeout),
            StartPeriod: goDurationNanos(hc.startPeriod),
            Retries: hc.retries ?? 0,
          },
        }
      : {}),
    HostConfig: {
      RestartPolicy: { Name: inputs.restart ?? "no", MaximumRetryCount: 0 },
      Mounts: mounts,
      LogConfig: { Type: inputs.logDriver ?? "json-file", Config: inputs.logOpts ?? {} },
      ...(Object.keys(bindings).length ? { PortBindings: bindings } : {}),
      ...(binds.length ? { Binds: binds } : {}),
      ...(inputs.capabilities
        ? { CapAdd: inputs.capabilities.adds ?? [], CapDrop: inputs.capabilities.drops ?? [] }
        : {}),
      ...(inputs.memory ? { Memory: inputs.memory * 1024 * 1024 } : {}),
      ...(inputs.networkMode ? { NetworkMode: inputs.networkMode } : {}),
      ...(inputs.pidMode ? { PidMode: inputs.pidMode } : {}),
      ...(inputs.ipcMode ? { IpcMode: inputs.ipcMode } : {}),
      ...(inputs.groupAdds ? { GroupAdd: inputs.groupAdds } : {}),
      Init: false,
    },
  };
  return { body, networks: (inputs.networksAdvanced ?? []).map((n) => ({ name: n.name, aliases: n.aliases ?? [] })) };
}

/** Creates, connects and starts a container as the provider does; returns its id. */
export async function createContainerAsProvider(inputs: ContainerInputs): Promise<string> {
  const { body, networks } = providerCreateCall(inputs);
  const created = await engine<{ Id: string }>(
    "POST",
    `/containers/create?name=${encodeURIComponent(inputs.name)}`,
    body,
  );
  if (networks.length) {
    try {
      await engine("POST", "/networks/bridge/disconnect", { Container: created.Id, Force: false });
    } catch (error) {
      if (!/is not connected to the network bridge/.test((error as Error).message)) throw error;
    }
    for (const n of networks)
      await engine("POST", `/networks/${encodeURIComponent(n.name)}/connect`, {
        Container: created.Id,
        EndpointConfig: { Aliases: n.aliases, IPAMConfig: {} },
      });
  }
  await engine("POST", `/containers/${created.Id}/start`);
  return created.Id;
}

export interface ContainerState {
  readonly Status: string;
  readonly Running: boolean;
  readonly ExitCode: number;
  readonly Error: string;
  readonly Health?: { Status: string; FailingStreak: number; Log: { ExitCode: number; Output: string }[] };
}

export async function inspectContainer(id: string): Promise<{
  Id: string;
  Name: string;
  State: ContainerState;
  Config: { User: string; Labels: Record<string, string> };
  HostConfig: Record<string, unknown>;
  Mounts: { Source: string; Destination: string; RW: boolean }[];
  NetworkSettings: { Networks: Record<string, { Aliases: string[] | null }> };
}> {
  return engine("GET", `/containers/${id}/json`);
}

/** stdout and stderr of a container (json-file logs come multiplexed: an 8-byte header per frame). */
export async function containerLogs(id: string): Promise<string> {
  const res = await engineRequest("GET", `/containers/${id}/logs?stdout=1&stderr=1`);
  if (res.status >= 400) return `(no logs: ${res.status})`;
  const out: string[] = [];
  let at = 0;
  const buf = res.body;
  while (at + 8 <= buf.length) {
    const size = buf.readUInt32BE(at + 4);
    out.push(buf.subarray(at + 8, at + 8 + size).toString("utf8"));
    at += 8 + size;
  }
  return out.join("");
}

/** Runs `cmd` in a running container and returns its exit code and output. */
export async function execIn(
  id: string,
  cmd: string[],
  env: readonly string[] = [],
): Promise<{ exitCode: number; output: string }> {
  const exec = await engine<{ Id: string }>("POST", `/containers/${id}/exec`, {
    Cmd: cmd,
    AttachStdout: true,
    AttachStderr: true,
    Env: env,
  });
  const res = await engineRequest("POST", `/exec/${exec.Id}/start`, { Detach: false, Tty: false });
  const out: string[] = [];
  let at = 0;
  while (at + 8 <= res.body.length) {
    const size = res.body.readUInt32BE(at + 4);
    out.push(res.body.subarray(at + 8, at + 8 + size).toString("utf8"));
    at += 8 + size;
  }
  const info = await engine<{ ExitCode: number }>("GET", `/exec/${exec.Id}/json`);
  return { exitCode: info.ExitCode, output: out.join("") };
}

/** Removes every container and network carrying `label` (and the containers' anonymous volumes). */
export async function removeLabelled(label: string): Promise<void> {
  const filters = encodeURIComponent(JSON.stringify({ label: [label] }));
  const containers = await engine<{ Id: string }[]>("GET", `/containers/json?all=1&filters=${filters}`);
  await Promise.all(containers.map((c) => engineRequest("DELETE", `/containers/${c.Id}?force=1&v=1`)));
  const networks = await engine<{ Id: string }[]>("GET", `/networks?filters=${filters}`);
  for (const n of networks) await engineRequest("DELETE", `/networks/${n.Id}`);
}
