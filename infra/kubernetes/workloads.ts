import { createHash } from "node:crypto";
import * as path from "node:path";
import { GATEKEEPER_DIRS } from "../../services/auth";
import { GATEWAY_DIRS, GPU_DRAIN_TIMEOUT_SECONDS } from "../../services/gateway";
import { IMAGE_UIDS } from "../../services/images";
import { CPU_CACHE_MOUNT, MODEL_CACHE_MOUNT } from "../../services/node-setup";
import type { Route } from "../../services/routes";
import { imageName, type HealthCheck, type Mount, type ServiceSpec } from "../../services/spec";
import { DOKS_GPU_NODE, DOKS_POOL_LABEL } from "../../stacks/catalogue/kubernetes";
import type { HubConfig, KubernetesPlan } from "../../stacks/hub-config";
import { podMemoryMiB } from "../../stacks/kubernetes";
import {
  isSecretRef,
  KubeObject,
  labelsFor,
  NAME_LABEL,
  NAMESPACE,
  POOLS,
  SecretRef,
  secretKeyOf,
  secretRef,
  TLS_CERT_ANNOTATION,
} from "./model";

/**
 * ServiceSpec → Kubernetes workloads: the one description of every program (services/), rendered
 * for a cluster as infra/containers.ts renders it for Docker. CPU services become Deployments on
 * the CPU pool, the GPU node's programs one StatefulSet on the GPU pool (a pod per node, each
 * with its own model-cache claim), and each spec's name becomes its Service's name, so the
 * addresses the rendered configuration uses (`http://gatekeeper:8080`, `errors:8080`) resolve in
 * the namespace as they do on the node's Docker network.
 */

/** A file the deploy writes into a host directory on droplets; here, a key of the ConfigMap or Secret mounted there. */
export interface KubeFile {
  readonly path: string;
  readonly content: string | SecretRef;
}

/** The GPU workload: its StatefulSet, the Service in front of its replicas, and the headless one that names them. */
export const GPU_WORKLOAD = {
  statefulSet: "coder",
  service: "gpu",
  headless: "coder-replicas",
  claim: "model-cache",
} as const;
/** The static claim on the CPU cache volume (infra/storage.ts): the gatekeeper's audit spool and runtime keys live on it, as on the CPU node. */
export const CPU_CACHE_CLAIM = "cpu-cache";

/** Writable mounts that hold state worth keeping: a claim each (stacks/kubernetes.ts sizes them). */
const STATE_MOUNTS: Readonly<Record<string, string>> = {
  "prometheus:/prometheus": "prometheus",
  "alertmanager:/alertmanager": "alertmanager",
  "grafana:/var/lib/grafana": "grafana",
  "autoscaler:/state": "autoscaler",
};
/** Downloaded model files: fetched again after a pod moves, as after a fresh CPU node. */
const CACHE_ROOTS = [`${CPU_CACHE_MOUNT}/huggingface/`, `${CPU_CACHE_MOUNT}/models/`];

export const stateClaimName = (name: string): string => `${name}-state`;
/** A read-only mount that holds files the deploy writes (a ConfigMap or Secret), not a part of the model cache. */
export const isFilesMount = (mount: Mount): boolean =>
  mount.readOnly === true && !mount.hostPath.startsWith(`${MODEL_CACHE_MOUNT}/`);

/** The files the deploy writes at or below a host directory, plain and secret. */
export function filesUnder(dir: string, files: readonly KubeFile[]): { plain: KubeFile[]; secret: KubeFile[] } {
  const under = files.filter((f) => f.path.startsWith(`${dir}/`));
  return { plain: under.filter((f) => !isSecretRef(f.content)), secret: under.filter((f) => isSecretRef(f.content)) };
}

/** A file's key in its ConfigMap or Secret: its path below the directory, "/" as "__" (keys are flat). */
export const fileKey = (dir: string, file: string): string => path.posix.relative(dir, file).replace(/\//g, "__");

/** A host directory's ConfigMap or Secret: its path under the CPU cache, dashed (unique, like the directories). */
export const filesObjectName = (hostDir: string): string =>
  path.posix.relative(CPU_CACHE_MOUNT, hostDir).replace(/[^a-z0-9]+/g, "-");

type Volume = Record<string, unknown> & { name: string };
interface ResolvedMount {
  readonly volume: Volume;
  readonly volumeMount: Record<string, unknown>;
}

/** Where one of a spec's host mounts comes from in the cluster. */
export function resolveMount(spec: ServiceSpec, mount: Mount, files: readonly KubeFile[]): ResolvedMount {
  const at = (volume: Volume, extra: Record<string, unknown> = {}): ResolvedMount => ({
    volume,
    volumeMount: {
      name: volume.name,
      mountPath: mount.containerPath,
      ...(mount.readOnly ? { readOnly: true } : {}),
      ...extra,
    },
  });
  if (mount.hostPath.startsWith(`${MODEL_CACHE_MOUNT}/`)) {
    return at({ name: GPU_WORKLOAD.claim }, { subPath: path.posix.relative(MODEL_CACHE_MOUNT, mount.hostPath) });
  }
  // The audit spool and the runtime keys sit on the CPU cache volume, as on the CPU node: a move
  // from a droplet tier, `hub down` and the next `pulumi up` keep them.
  if (mount.hostPath === GATEKEEPER_DIRS.spool || mount.hostPath === GATEKEEPER_DIRS.state) {
    return at(
      { name: CPU_CACHE_CLAIM, persistentVolumeClaim: { claimName: CPU_CACHE_CLAIM } },
      { subPath: path.posix.relative(CPU_CACHE_MOUNT, mount.hostPath) },
    );
  }
  if (isFilesMount(mount)) {
    const { plain, secret } = filesUnder(mount.hostPath, files);
    const name = filesObjectName(mount.hostPath);
    const items = (list: readonly KubeFile[]) =>
      list.map((f) => ({ key: fileKey(mount.hostPath, f.path), path: path.posix.relative(mount.hostPath, f.path) }));
    if (!secret.length) return at({ name, configMap: { name, ...(plain.length ? { items: items(plain) } : {}) } });
    // Readable by the group the pod's fsGroup gives (the prom/* images run as nobody).
    if (!plain.length) return at({ name, secret: { secretName: name, items: items(secret), defaultMode: 0o440 } });
    // Secret files beside plain ones in one directory (Alertmanager's config/secrets/): one projected volume.
    return at({
      name,
      projected: {
        defaultMode: 0o440,
        sources: [{ configMap: { name, items: items(plain) } }, { secret: { name, items: items(secret) } }],
      },
    });
  }
  const state =
    STATE_MOUNTS[`${spec.name}:${mount.containerPath}`] ??
    (mount.hostPath === GATEWAY_DIRS.acme ? "gateway-acme" : undefined);
  if (state) return at({ name: "state", persistentVolumeClaim: { claimName: stateClaimName(state) } });
  if (CACHE_ROOTS.some((root) => `${mount.hostPath}/`.startsWith(root)))
    return at({ name: `cache-${filesObjectName(mount.hostPath)}`, emptyDir: {} });
  throw new Error(
    `${spec.name}: no Kubernetes volume for its writable mount ${mount.hostPath} → ${mount.containerPath}; add it to STATE_MOUNTS (kept) or CACHE_ROOTS (downloaded again) in infra/kubernetes/workloads.ts`,
  );
}

/** Docker's health test as an exec probe command; undefined for "NONE". */
export function probeCommand(test: readonly string[]): string[] | undefined {
  const [form, ...rest] = test;
  if (form === "NONE") return undefined;
  if (form === "CMD") return [...rest];
  if (form === "CMD-SHELL") return ["/bin/sh", "-c", rest.join(" ")];
  throw new Error(`health test ${JSON.stringify(test)} is not CMD, CMD-SHELL or NONE`);
}

/**
 * Docker's health check as probes: the same command; the start period becomes a startup probe
 * (nothing is killed while a first start downloads weights), then liveness after `retries`
 * failures, and readiness at the first failure so the Service stops sending at once.
 */
export function probes(health: HealthCheck): Record<string, unknown> {
  const command = probeCommand(health.test);
  if (!command) return {};
  const exec = { exec: { command } };
  const every = { periodSeconds: health.intervalSeconds, timeoutSeconds: health.timeoutSeconds };
  return {
    startupProbe: {
      ...exec,
      ...every,
      failureThreshold: Math.ceil(health.startPeriodSeconds / health.intervalSeconds) + health.retries,
    },
    livenessProbe: { ...exec, ...every, failureThreshold: health.retries },
    readinessProbe: { ...exec, ...every, failureThreshold: 1 },
  };
}

/** A sibling container's address (`http://coder:8000`): in one pod it is localhost. */
function localToPod(value: string, siblings: readonly string[]): string {
  let out = value;
  for (const s of siblings) out = out.replace(new RegExp(`^(https?://)${s}(:\\d+)`), "$1127.0.0.1$2");
  return out;
}

function env(spec: ServiceSpec, siblings: readonly string[], nodeName: string | undefined): Record<string, unknown>[] {
  const plain = Object.entries(spec.env).map(([name, value]) =>
    // The droplet's name (X-Hub-Backend: gpu-0) becomes the pod's (coder-0).
    nodeName !== undefined && value === nodeName
      ? { name, valueFrom: { fieldRef: { fieldPath: "metadata.name" } } }
      : { name, value: localToPod(value, siblings) },
  );
  const secret = Object.entries(spec.secretEnv).map(([name, secret]) => ({
    name,
    valueFrom: { secretKeyRef: secretKeyOf(secret) },
  }));
  return [...plain, ...secret];
}

/** Content hash of the plain files a spec mounts: a change rolls its pods, as a changed file restarts the container on a droplet. */
function configHash(spec: ServiceSpec, files: readonly KubeFile[]): string | undefined {
  const dirs = new Set(spec.mounts.filter(isFilesMount).map((m) => m.hostPath));
  const mine = files
    .filter((f) => [...dirs].some((d) => f.path.startsWith(`${d}/`)) && typeof f.content === "string")
    .sort((a, b) => a.path.localeCompare(b.path));
  if (!mine.length) return undefined;
  const h = createHash("sha256");
  for (const f of mine) h.update(`${f.path}\0${f.content as string}\0`);
  return h.digest("hex").slice(0, 16);
}

/** What rolls a pod on change: its plain files' hash, and the certificate it serves (filled at deploy time). */
function podAnnotations(spec: ServiceSpec, filesHash: string | undefined): { annotations?: Record<string, unknown> } {
  const annotations: Record<string, unknown> = {};
  if (filesHash) annotations["inference-hub/config-hash"] = filesHash;
  if (Object.values(spec.secretEnv).includes("gatekeeperTlsCert"))
    annotations[TLS_CERT_ANNOTATION] = secretRef("gatekeeperTlsCertSha256");
  return Object.keys(annotations).length ? { annotations } : {};
}

export interface ContainerOptions {
  readonly siblings: readonly string[];
  readonly nodeName?: string;
  readonly memoryMiB?: number;
  readonly gpu?: { readonly resource: string; readonly count: number; readonly requests: boolean };
  readonly extraPorts?: readonly number[];
}

export function container(
  spec: ServiceSpec,
  files: readonly KubeFile[],
  o: ContainerOptions,
): { container: Record<string, unknown>; volumes: Volume[] } {
  if (spec.hostNamespaces)
    throw new Error(
      `${spec.name} runs in the host's namespaces; the k8s tier has no such workload (DigitalOcean's node agent covers it)`,
    );
  const mounts = spec.mounts.map((m) => resolveMount(spec, m, files));
  const volumes = mounts.map((m) => m.volume);
  const volumeMounts = mounts.map((m) => m.volumeMount);
  if (spec.ipcHost) {
    // vLLM's tensor parallelism shares memory through /dev/shm; Docker's --ipc=host gave it the host's.
    volumes.push({ name: "shm", emptyDir: { medium: "Memory" } });
    volumeMounts.push({ name: "shm", mountPath: "/dev/shm" });
  }
  const resources: Record<string, Record<string, string | number>> = {};
  if (o.memoryMiB !== undefined) {
    resources.requests = { memory: `${o.memoryMiB}Mi`, cpu: "100m" };
    resources.limits = { memory: `${o.memoryMiB}Mi` };
  }
  if (o.gpu?.requests) {
    // Extended resources: the request must equal the limit (the API server refuses anything else).
    resources.requests = { ...resources.requests, [o.gpu.resource]: o.gpu.count };
    resources.limits = { ...resources.limits, [o.gpu.resource]: o.gpu.count };
  }
  const ports = [...new Set([spec.port, ...(o.extraPorts ?? [])])];
  const envList = env(spec, o.siblings, o.nodeName);
  // The second vLLM on the node shares the GPU the first one was given (one pod per GPU node).
  if (o.gpu && !o.gpu.requests && o.gpu.resource === DOKS_GPU_NODE.nvidiaResource)
    envList.push({ name: "NVIDIA_VISIBLE_DEVICES", value: "all" });
  return {
    volumes,
    container: {
      name: spec.name,
      image: imageName(spec.image),
      ...(spec.entrypoint ? { command: [...spec.entrypoint] } : {}),
      args: [...spec.command],
      env: envList,
      ports: ports.map((p) => ({ name: `p-${p}`, containerPort: p, protocol: "TCP" })),
      ...(Object.keys(resources).length ? { resources } : {}),
      volumeMounts,
      ...(spec.capAdd?.length ? { securityContext: { capabilities: { add: [...spec.capAdd] } } } : {}),
      ...probes(spec.health),
    },
  };
}

/** Ports other services reach a spec on beyond its main one: route backends, and the fixed ones (the gateway's metrics, the gatekeeper's forwardAuth port). */
export function extraPorts(
  spec: ServiceSpec,
  routes: readonly Route[],
  fixed: Readonly<Record<string, readonly number[]>>,
): number[] {
  const fromRoutes = routes
    .flatMap((r) => [
      ...r.primary,
      ...(typeof r.fallback === "object" ? [r.fallback] : []),
      ...(r.holder ? [r.holder] : []),
    ])
    .filter((b) => b.address.kind === "container" && b.address.container === spec.name)
    .map((b) => b.port);
  return [...new Set([...fromRoutes, ...(fixed[spec.name] ?? [])])]
    .filter((p) => p !== spec.port)
    .sort((a, b) => a - b);
}

const meta = (name: string, component: string, extra: Record<string, unknown> = {}) => ({
  name,
  namespace: NAMESPACE,
  labels: labelsFor(name, component),
  ...extra,
});

function podSecurity(specs: readonly ServiceSpec[]): Record<string, unknown> {
  // Volumes writable by the user the image runs as (speaches 1000, docling 1001, Grafana 472, prom/* 65534).
  const uid = specs.map((s) => IMAGE_UIDS[s.image.repo] ?? 0).find((u) => u > 0);
  return uid ? { securityContext: { fsGroup: uid } } : {};
}

export interface WorkloadInputs {
  readonly hub: HubConfig;
  readonly plan: KubernetesPlan;
  readonly specs: readonly ServiceSpec[];
  readonly routes: readonly Route[];
  readonly files: readonly KubeFile[];
  /** Ports beyond each spec's own, by spec name (the gateway's metrics entry point, the gatekeeper's forwardAuth port). */
  readonly fixedPorts: Readonly<Record<string, readonly number[]>>;
  /** Specs whose pods talk to the API server (Traefik's CRD provider, Prometheus' pod discovery): a service account each. */
  readonly serviceAccounts: ReadonlySet<string>;
}

/** One Deployment and one Service per CPU spec; one StatefulSet for the GPU node's specs, with its Services. */
export function workloadObjects(w: WorkloadInputs): KubeObject[] {
  const objects: KubeObject[] = [];
  const cpuSpecs = w.specs.filter((s) => s.node === "cpu");
  const gpuNode = w.hub.nodes.find((n) => n.kind === "gpu")?.name;
  const gpuSpecs = gpuNode ? w.specs.filter((s) => s.node === gpuNode) : [];
  const cpuWorkloads = new Map(
    w.hub.nodes.filter((n) => n.kind === "cpu").flatMap((n) => n.workloads.map((x) => [x.role, x] as const)),
  );

  for (const spec of cpuSpecs) {
    const workload = cpuWorkloads.get(spec.role as never);
    const memoryMiB = workload?.ramGiB ? podMemoryMiB(workload.ramGiB) : spec.memoryLimitMiB;
    const ports = extraPorts(spec, w.routes, w.fixedPorts);
    const { container: c, volumes } = container(spec, w.files, { siblings: [], memoryMiB, extraPorts: ports });
    const hash = configHash(spec, w.files);
    const stateful = volumes.some((v) => v.persistentVolumeClaim !== undefined);
    const account = w.serviceAccounts.has(spec.name);
    objects.push({
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: meta(spec.name, spec.role),
      spec: {
        replicas: 1,
        selector: { matchLabels: { [NAME_LABEL]: spec.name } },
        // A claim attaches to one node at a time: the old pod must let go before the new one starts.
        strategy: stateful ? { type: "Recreate" } : { type: "RollingUpdate" },
        template: {
          metadata: { labels: labelsFor(spec.name, spec.role), ...podAnnotations(spec, hash) },
          spec: {
            nodeSelector: { [DOKS_POOL_LABEL]: POOLS.cpu },
            ...(account ? { serviceAccountName: spec.name } : {}),
            automountServiceAccountToken: account,
            // No *_PORT variables from other Services (vLLM, for one, reads VLLM_PORT).
            enableServiceLinks: false,
            ...podSecurity([spec]),
            containers: [c],
            volumes: dedupe(volumes),
          },
        },
      },
    });
    objects.push(serviceObject(spec.name, spec.role, spec.name, [spec.port, ...ports]));
  }

  if (gpuSpecs.length) objects.push(...gpuObjects(w, gpuSpecs, gpuNode!));
  return objects;
}

function serviceObject(
  name: string,
  component: string,
  selectName: string,
  ports: readonly number[],
  extra: Record<string, unknown> = {},
): KubeObject {
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: meta(name, component),
    spec: {
      type: "ClusterIP",
      selector: { [NAME_LABEL]: selectName },
      ports: [...new Set(ports)].map((p) => ({ name: `p-${p}`, port: p, targetPort: p, protocol: "TCP" })),
      ...extra,
    },
  };
}

/** vLLM asks for no new request once out of the Service and finishes what it has: the same signals as the droplet drain (services/gateway.ts). */
export const VLLM_DRAIN_SCRIPT = [
  "import time, urllib.request",
  "def busy(port):",
  "    try:",
  "        text = urllib.request.urlopen(f'http://127.0.0.1:{port}/metrics', timeout=5).read().decode()",
  "    except Exception:",
  "        return 0",
  "    return sum(float(l.split()[-1]) for l in text.splitlines() if l.startswith(('vllm:num_requests_running', 'vllm:num_requests_waiting')))",
  "import sys",
  "port = int(sys.argv[1])",
  "time.sleep(15)",
  "while busy(port) > 0:",
  "    time.sleep(2)",
].join("\n");

function gpuObjects(w: WorkloadInputs, specs: readonly ServiceSpec[], nodeName: string): KubeObject[] {
  const pool = w.plan.gpuPool;
  const names = specs.map((s) => s.name);
  const built = specs.map((spec, i) => {
    const { container: c, volumes } = container(spec, w.files, {
      siblings: names.filter((n) => n !== spec.name),
      nodeName,
      gpu: { resource: pool.resource, count: pool.gpusPerNode, requests: i === 0 },
    });
    // On scale-down: out of the Services first, then in-flight requests finish (bounded by the grace period).
    const preStop =
      spec.program === "vllm"
        ? { lifecycle: { preStop: { exec: { command: ["python3", "-c", VLLM_DRAIN_SCRIPT, String(spec.port)] } } } }
        : {};
    return { container: { ...c, ...preStop }, volumes };
  });
  const volumes = dedupe(built.flatMap((b) => b.volumes)).filter((v) => v.name !== GPU_WORKLOAD.claim);
  const ports = specs.map((s) => s.port);
  const component = "gpu";
  return [
    {
      apiVersion: "apps/v1",
      kind: "StatefulSet",
      metadata: meta(GPU_WORKLOAD.statefulSet, component),
      spec: {
        serviceName: GPU_WORKLOAD.headless,
        // KEDA sets the count; none until the first allowed request (or gpuMinNodes).
        replicas: pool.minNodes,
        // Replicas start and stop independently: a new one need not wait for the one before.
        podManagementPolicy: "Parallel",
        selector: { matchLabels: { [NAME_LABEL]: GPU_WORKLOAD.statefulSet } },
        // Claims outlive their pods and the StatefulSet: scaling down or deleting never deletes a model cache.
        persistentVolumeClaimRetentionPolicy: { whenDeleted: "Retain", whenScaled: "Retain" },
        template: {
          metadata: { labels: labelsFor(GPU_WORKLOAD.statefulSet, component) },
          spec: {
            nodeSelector: { [DOKS_POOL_LABEL]: POOLS.gpu },
            tolerations: [{ key: DOKS_GPU_NODE.taint.key, operator: "Exists", effect: DOKS_GPU_NODE.taint.effect }],
            automountServiceAccountToken: false,
            enableServiceLinks: false,
            terminationGracePeriodSeconds: GPU_DRAIN_TIMEOUT_SECONDS,
            containers: built.map((b) => b.container),
            ...(volumes.length ? { volumes } : {}),
          },
        },
        volumeClaimTemplates: [
          {
            metadata: { name: GPU_WORKLOAD.claim, labels: labelsFor(GPU_WORKLOAD.claim, "model-cache") },
            spec: {
              accessModes: ["ReadWriteOnce"],
              storageClassName: w.plan.storageClass,
              resources: { requests: { storage: `${w.hub.modelCache.sizeGiB}Gi` } },
            },
          },
        ],
      },
    },
    // The gateway's and Prometheus' way in: any ready replica.
    serviceObject(GPU_WORKLOAD.service, component, GPU_WORKLOAD.statefulSet, ports),
    // Stable per-pod names (coder-0.coder-replicas), ready or not: the autoscaler's and the drain's view of each replica.
    serviceObject(GPU_WORKLOAD.headless, component, GPU_WORKLOAD.statefulSet, ports, {
      clusterIP: "None",
      publishNotReadyAddresses: true,
    }),
  ];
}

function dedupe(volumes: readonly Volume[]): Volume[] {
  const seen = new Map<string, Volume>();
  for (const v of volumes) {
    const prev = seen.get(v.name);
    if (prev && JSON.stringify(prev) !== JSON.stringify(v))
      throw new Error(`two different volumes named ${v.name} in one pod`);
    seen.set(v.name, v);
  }
  return [...seen.values()];
}
