import { hubServiceSpecs } from "../../services/index";
import type { HubConfig } from "../../stacks/hub-config";
import { NAMESPACE } from "../../infra/kubernetes/model";
import { GPU_WORKLOAD } from "../../infra/kubernetes/workloads";
import { HubCommandError } from "./ops";

/**
 * `hub logs <service>`: a container's log, read where it runs. On a droplet tier over the same
 * SSH the deploy uses (the stack's `nodeSshOptions` output: its pinned host key, the deployer's
 * key), as `docker logs` on the node; on the local tier with this machine's `docker logs`; on the
 * k8s tier with `kubectl logs` against the cluster KUBECONFIG points at (docs/kubernetes.md).
 */

/** Names people use for a few containers. */
const ALIASES: Readonly<Record<string, string>> = { controller: "autoscaler", traefik: "gateway", vllm: "coder" };

export interface LogsOptions {
  readonly since?: string;
  readonly follow?: boolean;
  readonly tail?: string;
  /** Which node, for a service on every GPU node. @default - the first that runs it */
  readonly node?: string;
}

/** `10m`, `2h`, `1d`, `30s`, or an RFC 3339 time: what `docker logs --since` takes. */
const SINCE = /^(\d+[smhd]|\d{4}-\d{2}-\d{2}(T[\d:.]+(Z|[+-]\d{2}:\d{2})?)?)$/;

export function logsOptionProblems(opts: LogsOptions): string[] {
  const problems: string[] = [];
  if (opts.since !== undefined && !SINCE.test(opts.since))
    problems.push(
      `--since ${JSON.stringify(opts.since)} is not a duration (30s, 10m, 2h, 1d) or a date (2026-12-07T10:00:00Z)`,
    );
  if (opts.tail !== undefined && !/^(\d{1,7}|all)$/.test(opts.tail))
    problems.push(`--tail ${JSON.stringify(opts.tail)} is not a number of lines (or all)`);
  if (opts.node !== undefined && !/^[a-z][a-z0-9-]{0,30}$/.test(opts.node))
    problems.push(`--node ${JSON.stringify(opts.node)} is not a node name (cpu, gpu-0, ...)`);
  return problems;
}

/** The containers a stack runs, by node. */
export function serviceNodes(hub: HubConfig): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const spec of hubServiceSpecs(hub)) out.set(spec.name, [...(out.get(spec.name) ?? []), spec.node]);
  return out;
}

export interface LogsTarget {
  readonly container: string;
  readonly node: string;
}

export function logsTarget(hub: HubConfig, service: string, node?: string): LogsTarget {
  const container = ALIASES[service] ?? service;
  const nodes = serviceNodes(hub);
  const on = nodes.get(container);
  if (!on)
    throw new HubCommandError(
      `the ${hub.tier} tier runs no ${JSON.stringify(service)}; services: ${[...nodes.keys(), ...Object.keys(ALIASES).filter((a) => nodes.has(ALIASES[a]))].sort().join(", ")}`,
    );
  // A GPU service is declared once per GPU node name pattern; its replicas are gpu-0, gpu-1, ...
  const chosen = node ?? on[0];
  if (node && !on.includes(node) && !(on.some((n) => n.startsWith("gpu")) && /^gpu-\d+$/.test(node)))
    throw new HubCommandError(`--node ${node}: ${container} runs on ${on.join(", ")}`);
  return { container, node: chosen };
}

export function dockerLogsArgs(container: string, opts: LogsOptions): string[] {
  return [
    "logs",
    "--timestamps",
    ...(opts.since ? ["--since", opts.since] : []),
    "--tail",
    opts.tail ?? (opts.since ? "all" : "200"),
    ...(opts.follow ? ["--follow"] : []),
    container,
  ];
}

/** The command to run: `docker logs` here, or `ssh <the deploy's options> root@<node> docker logs ...`. */
export function logsCommand(
  hub: HubConfig,
  target: LogsTarget,
  opts: LogsOptions,
  outputs: { nodeAddresses?: unknown; nodeSshOptions?: unknown } = {},
): { program: string; args: string[] } {
  if (hub.tier === "k8s") return { program: "kubectl", args: kubectlLogsArgs(target, opts) };
  const docker = dockerLogsArgs(target.container, opts);
  if (hub.tier === "local") return { program: "docker", args: docker };
  const addresses = (outputs.nodeAddresses ?? {}) as Record<string, { public?: string }>;
  const options = (outputs.nodeSshOptions ?? {}) as Record<string, string[]>;
  const host = addresses[target.node]?.public;
  const ssh = options[target.node];
  if (!host)
    throw new HubCommandError(
      `node ${target.node} is not running (the stack's outputs list ${Object.keys(addresses).join(", ") || "no node"})${target.node.startsWith("gpu") ? "; is the GPU off? (hub gpu status)" : ""}`,
    );
  if (!Array.isArray(ssh) || !ssh.includes("StrictHostKeyChecking=yes"))
    throw new HubCommandError(
      `the stack's outputs have no pinned SSH options for ${target.node}: run \`pulumi up\` once from this checkout so it writes the node's known_hosts and records them`,
    );
  // -T: no terminal; the remote command is fixed words, no shell input from the user.
  return { program: "ssh", args: [...ssh, "-T", `root@${host}`, "docker", ...docker] };
}

/** kubectl's --since takes Go durations (no days) and --since-time a full RFC 3339 time. */
function kubectlSince(since: string): string[] {
  const days = /^(\d+)d$/.exec(since);
  if (days) return ["--since", `${Number(days[1]) * 24}h`];
  if (/^\d+[smh]$/.test(since)) return ["--since", since];
  return [
    "--since-time",
    since.includes("T") ? (/(Z|[+-]\d{2}:\d{2})$/.test(since) ? since : `${since}Z`) : `${since}T00:00:00Z`,
  ];
}

/**
 * `kubectl logs` for the k8s tier: a CPU service is its Deployment, a GPU program a container of
 * the coder StatefulSet's pod for that node slot (gpu-1 is pod coder-1).
 */
export function kubectlLogsArgs(target: LogsTarget, opts: LogsOptions): string[] {
  const ordinal = /^gpu-(\d+)$/.exec(target.node);
  const workload = ordinal ? `pod/${GPU_WORKLOAD.statefulSet}-${ordinal[1]}` : `deployment/${target.container}`;
  const tail = opts.tail ?? (opts.since ? "all" : "200");
  return [
    "--namespace",
    NAMESPACE,
    "logs",
    workload,
    "--container",
    target.container,
    "--timestamps",
    ...(opts.since ? kubectlSince(opts.since) : []),
    "--tail",
    tail === "all" ? "-1" : tail,
    ...(opts.follow ? ["--follow"] : []),
  ];
}
