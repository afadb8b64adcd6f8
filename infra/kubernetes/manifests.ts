import { hubServiceSpecs } from "../../services/index";
import { GATEKEEPER_CONTAINER, GATEKEEPER_TLS_PORT } from "../../services/auth";
import { GATEWAY_CONTAINER } from "../../services/gateway";
import { PROMETHEUS_CONTAINER } from "../../services/monitoring";
import { GATEWAY_METRICS_PORT, PUBLIC_PORTS } from "../../services/ports";
import { routeTable, type Route } from "../../services/routes";
import type { SecretName, ServiceSpec } from "../../services/spec";
import type { HubConfig } from "../../stacks/hub-config";
import {
  ENV_SECRET,
  GATEKEEPER_TLS_SECRET,
  KubeObject,
  labelsFor,
  NAME_LABEL,
  NAMESPACE,
  PART_OF,
  secretRef,
} from "./model";
import { kubernetesFiles, type SecretPresence, type StackIdentity } from "./files";
import { scaledObject, scalingPlan, type ScalingPlan } from "./scaling";
import { storageObjects, type VolumeIds } from "./storage";
import { LOAD_BALANCER_ANNOTATIONS, traefikKubernetesRendering, type TraefikKubernetesRendering } from "./traefik";
import {
  fileKey,
  filesObjectName,
  filesUnder,
  GPU_WORKLOAD,
  isFilesMount,
  type KubeFile,
  workloadObjects,
} from "./workloads";

/**
 * Everything the k8s tier puts into the cluster, as plain objects: one pure function from
 * HubConfig (plus the volume ids the cloud assigns) to a list the tests hand to a real API server
 * and infra/kubernetes/program.ts creates. Secrets appear only as references (model.ts SecretRef).
 */

const ENV_SECRETS: readonly SecretName[] = [
  "hubApiKey",
  "auditDatabaseUrl",
  "autoscalerDispatchToken",
  "autoscalerBillingToken",
];

/** The droplet route table for the cluster: each GPU route's replicas are one Service (`gpu`), not one address per node. */
export function kubernetesRoutes(hub: HubConfig): { routes: Route[]; gpuAddresses: Record<string, string> } {
  const routes = routeTable(hub).map((r) => {
    const gpu = r.primary.filter((b) => b.address.kind === "vpc");
    return gpu.length > 1 ? { ...r, primary: [gpu[0]] } : r;
  });
  const nodes = new Set(routes.flatMap((r) => r.primary.filter((b) => b.address.kind === "vpc").map((b) => b.node)));
  return { routes, gpuAddresses: Object.fromEntries([...nodes].map((n) => [n, GPU_WORKLOAD.service])) };
}

/** The specs a cluster runs: the GPU programs of one node (the StatefulSet's template) and every CPU one. */
export function kubernetesSpecs(hub: HubConfig): ServiceSpec[] {
  const firstGpu = hub.nodes.find((n) => n.kind === "gpu")?.name;
  return hubServiceSpecs(hub).filter((s) => s.node === "cpu" || s.node === firstGpu);
}

export interface KubernetesManifests {
  readonly objects: readonly KubeObject[];
  readonly routes: readonly Route[];
  readonly traefik: TraefikKubernetesRendering;
  readonly files: readonly KubeFile[];
  readonly scaling?: ScalingPlan;
}

export interface ManifestInputs<Id> {
  readonly hub: HubConfig;
  readonly secrets: SecretPresence;
  readonly volumeIds: VolumeIds<Id>;
  /** @default - a stack named "k8s" in Pulumi's default organization (tests and the plan's summary) */
  readonly stack?: StackIdentity;
}

export function kubernetesManifests<Id>(input: ManifestInputs<Id>): KubernetesManifests {
  const { hub } = input;
  const plan = hub.kubernetes;
  if (!plan) throw new Error(`the ${hub.tier} tier has no Kubernetes plan`);
  const specs = kubernetesSpecs(hub);
  const { routes, gpuAddresses } = kubernetesRoutes(hub);
  const traefik = traefikKubernetesRendering(hub, routes, gpuAddresses);
  const files = kubernetesFiles(
    hub,
    specs,
    routes,
    traefik,
    input.secrets,
    gpuAddresses,
    input.stack ?? { name: "k8s", organization: "organization" },
  );
  const serviceAccounts = new Set([GATEWAY_CONTAINER, ...(hub.monitoring ? [PROMETHEUS_CONTAINER] : [])]);
  const scaling = specs.some((s) => s.node !== "cpu") ? scalingPlan(hub, routes) : undefined;

  const objects: KubeObject[] = [
    { apiVersion: "v1", kind: "Namespace", metadata: { name: NAMESPACE, labels: { ...PART_OF } } },
    // The containers' secret environment: filled from Pulumi secrets at deploy time (program.ts).
    {
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: ENV_SECRET, namespace: NAMESPACE, labels: labelsFor(ENV_SECRET, "secrets") },
      type: "Opaque",
      stringData: Object.fromEntries(ENV_SECRETS.map((n) => [n, secretRef(n)])),
    },
    // The gatekeeper's forwardAuth pair: its container reads both, Traefik pins the certificate (model.ts).
    {
      apiVersion: "v1",
      kind: "Secret",
      metadata: {
        name: GATEKEEPER_TLS_SECRET.name,
        namespace: NAMESPACE,
        labels: labelsFor(GATEKEEPER_TLS_SECRET.name, "secrets"),
      },
      type: "kubernetes.io/tls",
      stringData: {
        [GATEKEEPER_TLS_SECRET.cert]: secretRef("gatekeeperTlsCert"),
        [GATEKEEPER_TLS_SECRET.key]: secretRef("gatekeeperTlsKey"),
        [GATEKEEPER_TLS_SECRET.ca]: secretRef("gatekeeperTlsCert"),
      },
    },
    ...fileObjects(specs, files),
    ...workloadObjects({
      hub,
      plan,
      specs,
      routes,
      files,
      fixedPorts: {
        [GATEWAY_CONTAINER]: [GATEWAY_METRICS_PORT, PUBLIC_PORTS.https],
        [GATEKEEPER_CONTAINER]: [GATEKEEPER_TLS_PORT],
      },
      serviceAccounts,
    }),
    ...gatewayAccess(),
    ...(hub.monitoring ? prometheusAccess() : []),
    ...storageObjects(hub, plan, input.volumeIds),
    ...traefik.middlewares,
    ...traefik.ingressRoutes,
    ...(scaling ? [scaledObject(hub, scaling)] : []),
  ];
  return { objects, routes, traefik, files, scaling };
}

/** Per directory the specs mount read-only: a ConfigMap of its plain files, and a Secret of its secret ones. */
function fileObjects(specs: readonly ServiceSpec[], files: readonly KubeFile[]): KubeObject[] {
  const dirs = new Set(specs.flatMap((s) => s.mounts.filter(isFilesMount).map((m) => m.hostPath)));
  const objects: KubeObject[] = [];
  for (const dir of [...dirs].sort()) {
    const { plain, secret } = filesUnder(dir, files);
    const name = filesObjectName(dir);
    const metadata = { name, namespace: NAMESPACE, labels: labelsFor(name, "files") };
    const data = (list: readonly KubeFile[]) => Object.fromEntries(list.map((f) => [fileKey(dir, f.path), f.content]));
    if (plain.length || !secret.length)
      objects.push({ apiVersion: "v1", kind: "ConfigMap", metadata, data: data(plain) });
    if (secret.length)
      objects.push({ apiVersion: "v1", kind: "Secret", metadata, type: "Opaque", stringData: data(secret) });
  }
  return objects;
}

/**
 * Traefik reads its CRDs, Services and EndpointSlices in the hub's namespace (Traefik's own
 * kubernetes-crd-rbac.yml, narrowed to one namespace), nodes cluster-wide; and the one public
 * door: a DigitalOcean load balancer on 80 and 443, nothing else.
 */
function gatewayAccess(): KubeObject[] {
  const name = GATEWAY_CONTAINER;
  const labels = labelsFor(name, "gateway");
  const read = ["get", "list", "watch"];
  return [
    { apiVersion: "v1", kind: "ServiceAccount", metadata: { name, namespace: NAMESPACE, labels } },
    {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "Role",
      metadata: { name, namespace: NAMESPACE, labels },
      rules: [
        { apiGroups: [""], resources: ["services", "secrets", "configmaps"], verbs: read },
        { apiGroups: ["discovery.k8s.io"], resources: ["endpointslices"], verbs: ["list", "watch"] },
        {
          apiGroups: ["traefik.io"],
          resources: [
            "middlewares",
            "middlewaretcps",
            "ingressroutes",
            "traefikservices",
            "ingressroutetcps",
            "ingressrouteudps",
            "tlsoptions",
            "tlsstores",
            "serverstransports",
            "serverstransporttcps",
          ],
          verbs: read,
        },
      ],
    },
    {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "RoleBinding",
      metadata: { name, namespace: NAMESPACE, labels },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name },
      subjects: [{ kind: "ServiceAccount", name, namespace: NAMESPACE }],
    },
    {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "ClusterRole",
      metadata: { name: `${NAMESPACE}-${name}`, labels },
      rules: [{ apiGroups: [""], resources: ["nodes"], verbs: read }],
    },
    {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "ClusterRoleBinding",
      metadata: { name: `${NAMESPACE}-${name}`, labels },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: `${NAMESPACE}-${name}` },
      subjects: [{ kind: "ServiceAccount", name, namespace: NAMESPACE }],
    },
    {
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: `${name}-public`, namespace: NAMESPACE, labels, annotations: { ...LOAD_BALANCER_ANNOTATIONS } },
      spec: {
        type: "LoadBalancer",
        selector: { [NAME_LABEL]: name },
        ports: [
          { name: "http", port: PUBLIC_PORTS.http, targetPort: PUBLIC_PORTS.http, protocol: "TCP" },
          { name: "https", port: PUBLIC_PORTS.https, targetPort: PUBLIC_PORTS.https, protocol: "TCP" },
        ],
      },
    },
  ];
}

/** Prometheus finds the GPU replicas by listing the namespace's pods (files.ts kubernetesPrometheusConfig). */
function prometheusAccess(): KubeObject[] {
  const name = PROMETHEUS_CONTAINER;
  const labels = labelsFor(name, "prometheus");
  return [
    { apiVersion: "v1", kind: "ServiceAccount", metadata: { name, namespace: NAMESPACE, labels } },
    {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "Role",
      metadata: { name, namespace: NAMESPACE, labels },
      rules: [{ apiGroups: [""], resources: ["pods"], verbs: ["get", "list", "watch"] }],
    },
    {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "RoleBinding",
      metadata: { name, namespace: NAMESPACE, labels },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name },
      subjects: [{ kind: "ServiceAccount", name, namespace: NAMESPACE }],
    },
  ];
}
