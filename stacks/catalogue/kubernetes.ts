import { Source, src, unverified } from "./sources";

/**
 * DigitalOcean Kubernetes (DOKS): what the `k8s` tier builds on. Figures from ../shared/FACTS.md
 * ("DigitalOcean Kubernetes (DOKS)") unless a source says otherwise.
 */

export const DOKS_DOCS =
  "docs.digitalocean.com/products/kubernetes (details/supported-gpus, details/pricing, details/changelog; dated copy 2025-12-05), via shared/FACTS.md";

/**
 * The DOKS release the tier is written and tested against. DOKS slugs pin an exact patch and a
 * DigitalOcean build (`1.36.1-do.0`); releases come and go, so the deploy asks DigitalOcean for
 * the newest patch of this minor (`getKubernetesVersions({ versionPrefix })`, infra/kubernetes/)
 * and this slug is only what was seen. The test API server is built at exactly `kubernetes`
 * (tools/kube.ts), so the objects are checked by the version the cluster runs.
 */
export const DOKS_RELEASE = {
  slug: "1.36.1-do.0",
  kubernetes: "1.36.1",
  minor: "1.36",
  source: unverified(
    'public Terraform and API fixtures pinning `1.36.1-do.0` with `version_prefix = "1.36."` (found 2026-12-07); DigitalOcean\'s own version list is `doctl kubernetes options versions` / GET /v2/kubernetes/options',
    "2026-12-07",
    "no dated DigitalOcean page lists it; the deploy looks the minor up and refuses if the region offers neither it nor a newer one",
  ),
} as const;

/** A GPU node pool needs DOKS 1.30.4-do.0 or later (supported-gpus page). */
export const DOKS_GPU_MIN_KUBERNETES = "1.30.4";

/** DOKS GPU node-pool sizes, self-serve (H200 and MI325X by contract only). */
export const DOKS_GPU_SIZES: readonly string[] = [
  "gpu-h100x1-80gb",
  "gpu-h100x8-640gb",
  "gpu-l40sx1-48gb",
  "gpu-4000adax1-20gb",
  "gpu-6000adax1-48gb",
  "gpu-mi300x1-192gb",
  "gpu-mi300x8-1536gb",
];

/** What DigitalOcean puts on GPU nodes by itself: the taint pods must tolerate, the labels they can select. */
export const DOKS_GPU_NODE = {
  taint: { key: "nvidia.com/gpu", effect: "NoSchedule" },
  brandLabel: "doks.digitalocean.com/gpu-brand",
  modelLabel: "doks.digitalocean.com/gpu-model",
  /** Extended resource the NVIDIA device plugin advertises (on by default on DOKS). */
  nvidiaResource: "nvidia.com/gpu",
  /** AMD's device plugin resource name. */
  amdResource: "amd.com/gpu",
} as const;

/** Label DigitalOcean puts on every node with its pool's name (details/managed). */
export const DOKS_POOL_LABEL = "doks.digitalocean.com/node-pool";

/**
 * Memory a DOKS node keeps from pods: kubelet reservations plus DigitalOcean's own DaemonSets
 * (Cilium, the CSI node plugin, do-node-agent, konnectivity). DigitalOcean publishes allocatable
 * memory per size; that table was not read, so this is an estimate to check with
 * `kubectl describe node` (Allocatable) on the first deploy.
 */
export const DOKS_NODE_RESERVE = {
  ramGiB: 1.5,
  source: unverified(
    "estimate: kubelet system/kube reservations and the DOKS DaemonSets; DigitalOcean's allocatable-memory table not read",
    "2026-12-07",
  ),
} as const;

/** DigitalOcean's limits page: the cluster autoscaler scales a pool down to 1 node (a pool at 0 only by hand). */
export const DOKS_LIMITS = "docs.digitalocean.com/products/kubernetes/details/limits (undated copy read 2026-12-07)";

export const DOKS_PRICES = {
  /** The control plane is free; the high-availability one costs this a month. */
  haControlPlaneMonthlyUsd: 40,
  /** A regional load balancer, per node of it, a month. */
  loadBalancerNodeMonthlyUsd: 12,
} as const;

/** Block storage for pods: ReadWriteOnce only. The retain class keeps the volume when its claim goes. */
export const DOKS_STORAGE = {
  retainClass: "do-block-storage-retain",
  deleteClass: "do-block-storage",
  csiDriver: "dobs.csi.digitalocean.com",
  /** The CSI driver's attribute that keeps it from formatting an existing volume. */
  noFormatAttribute: "com.digitalocean.csi/noformat",
  maxVolumesPerNode: 15,
} as const;

/**
 * Binding a volume made outside Kubernetes: the CSI driver's own example does it by id with a
 * static PersistentVolume, while DigitalOcean's how-to says such volumes "cannot be used" (⚠).
 */
export const DOKS_EXISTING_VOLUME = unverified(
  'github.com/digitalocean/csi-digitalocean examples/kubernetes/pod-single-existing-volume (binds by csi.volumeHandle) vs docs.digitalocean.com/products/kubernetes/how-to/add-volumes/ ("cannot be used")',
  "2026-12-07",
);

/** Scaling a pool from zero nodes: allowed by DigitalOcean's autoscaling page, a preview in the Terraform/Pulumi docs (⚠). */
export const DOKS_SCALE_FROM_ZERO = unverified(
  "DigitalOcean's autoscaling page (2025-06) allows min_nodes 0; the Terraform/Pulumi node-pool docs call it a private preview; the limits page says the autoscaler scales down to 1",
  "2026-12-07",
);

/**
 * Third-party Helm charts the tier installs by name and pinned version at deploy time (never
 * copied): KEDA, and the NVIDIA device plugin only if DOKS ever stops shipping it.
 */
export const KEDA_CHART = {
  chart: "keda",
  /** KEDA's charts carry the app's version; v2.21.0 is the newest tag whose module builds with Go 1.26 (v2.21.1 asks for Go 1.27.4). */
  version: "2.21.0",
  repo: "https://kedacore.github.io/charts",
  /** KEDA's Go module at the chart's app version: the CRDs the tests install come from it (config/crd/bases). */
  module: "github.com/kedacore/keda/v2",
  moduleVersion: "v2.21.0",
  source: unverified(
    "proxy.golang.org github.com/kedacore/keda/v2 v2.21.0 (tagged 2026-09-23); chart version = app version by KEDA's release practice, not read from the chart index",
    "2026-12-07",
  ),
} as const;

export const KUBERNETES_SOURCES: Readonly<Record<string, Source>> = {
  doks: src(DOKS_DOCS, "2026-12-07"),
  release: DOKS_RELEASE.source,
  existingVolume: DOKS_EXISTING_VOLUME,
  scaleFromZero: DOKS_SCALE_FROM_ZERO,
  keda: KEDA_CHART.source,
};
