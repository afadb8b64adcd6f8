import type { SecretName } from "../../services/spec";

/**
 * The k8s tier's objects as plain data: what infra/kubernetes/ renders from the specs and the
 * route table, what the tests hand to a real API server, and what the Pulumi program creates.
 * A secret is never a value here, only a reference (SecretRef), filled in at deploy time from
 * Pulumi secrets.
 */

export const NAMESPACE = "inference-hub";
/** DOKS node-pool names; DigitalOcean labels every node with its pool's (DOKS_POOL_LABEL). */
export const POOLS = { cpu: "hub-cpu", gpu: "hub-gpu" } as const;

/** How long an empty GPU node lingers before the cluster autoscaler removes it (billed meanwhile; its default is 10 minutes). */
export const GPU_NODE_UNNEEDED_TIME = "5m";

/** Every object carries these; `name` is the spec's name (its Service's DNS name). */
export const PART_OF = {
  "app.kubernetes.io/part-of": "inference-hub",
  "app.kubernetes.io/managed-by": "pulumi",
} as const;
export const NAME_LABEL = "app.kubernetes.io/name";
export const labelsFor = (name: string, component: string): Record<string, string> => ({
  ...PART_OF,
  [NAME_LABEL]: name,
  "app.kubernetes.io/component": component,
});

/** The one Secret holding the containers' secret environment (services/spec.ts SecretName). */
export const ENV_SECRET = "hub-secrets";

/**
 * The gatekeeper's forwardAuth certificate and key, as a `kubernetes.io/tls` Secret: the
 * gatekeeper's container reads the pair from it, and Traefik's forwardAuth pins the certificate
 * through the Middleware's `tls.caSecret`, which Traefik v3.7.13 reads from the key `tls.ca` or
 * else `ca.crt` (pkg/provider/kubernetes/crd/kubernetes.go loadCASecret/getCABlocks, and
 * traefikio/v1alpha1/middleware.go ClientTLS, in the github.com/traefik/traefik/v3@v3.7.13 module).
 * The certificate is self-signed, so it is its own CA.
 */
export const GATEKEEPER_TLS_SECRET = { name: "gatekeeper-tls", cert: "tls.crt", key: "tls.key", ca: "ca.crt" } as const;

/** Where a secret of the environment is in the cluster: its own TLS Secret for the gatekeeper's pair, else ENV_SECRET under its name. */
export function secretKeyOf(name: SecretName): { readonly name: string; readonly key: string } {
  if (name === "gatekeeperTlsCert") return { name: GATEKEEPER_TLS_SECRET.name, key: GATEKEEPER_TLS_SECRET.cert };
  if (name === "gatekeeperTlsKey") return { name: GATEKEEPER_TLS_SECRET.name, key: GATEKEEPER_TLS_SECRET.key };
  return { name: ENV_SECRET, key: name };
}

/** Secrets beyond the environment's: the keys file and Alertmanager's receiver credentials. */
export type FileSecretName = "apiKeys" | "alertSmtpPassword" | "alertWebhookUrl";
/**
 * Deploy-time values that are not secret but, like secrets, are known only then: the digest of the
 * gatekeeper's certificate, on its pod template, so a renewed pair rolls the pod (a Secret's new
 * value reaches no running container's environment) while Traefik already pins the new one.
 */
export type DerivedName = "gatekeeperTlsCertSha256";
export type KubeSecretName = SecretName | FileSecretName | DerivedName;
/** The pod-template annotation carrying the certificate's digest. */
export const TLS_CERT_ANNOTATION = "inference-hub/tls-cert-sha256";

/** A secret's place in an object: filled from Pulumi secrets at deploy time, never rendered. */
export interface SecretRef {
  readonly secretRef: KubeSecretName;
}
export const secretRef = (name: KubeSecretName): SecretRef => ({ secretRef: name });
export const isSecretRef = (v: unknown): v is SecretRef =>
  typeof v === "object" && v !== null && typeof (v as SecretRef).secretRef === "string" && Object.keys(v).length === 1;

export interface ObjectMeta {
  readonly name: string;
  readonly namespace?: string;
  readonly labels?: Readonly<Record<string, string>>;
  readonly annotations?: Readonly<Record<string, string>>;
}

/** Any Kubernetes object: apiVersion, kind, metadata, and the rest as the API defines it. */
export interface KubeObject {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: ObjectMeta;
  readonly [field: string]: unknown;
}

/** Cluster-scoped kinds among those the tier renders (no namespace in their metadata). */
export const CLUSTER_SCOPED = new Set([
  "Namespace",
  "PersistentVolume",
  "ClusterRole",
  "ClusterRoleBinding",
  "CustomResourceDefinition",
]);

/** Replaces every SecretRef in `value` with what `fill` gives for its name. */
export function fillSecrets<T>(value: unknown, fill: (name: KubeSecretName) => T): unknown {
  if (isSecretRef(value)) return fill(value.secretRef);
  if (Array.isArray(value)) return value.map((v) => fillSecrets(v, fill));
  if (value && typeof value === "object")
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, fillSecrets(v, fill)]));
  return value;
}

/** Every SecretRef name in `value`. */
export function secretRefsIn(value: unknown, found: Set<KubeSecretName> = new Set()): Set<KubeSecretName> {
  if (isSecretRef(value)) found.add(value.secretRef);
  else if (Array.isArray(value)) for (const v of value) secretRefsIn(v, found);
  else if (value && typeof value === "object") for (const v of Object.values(value)) secretRefsIn(v, found);
  return found;
}

/** `kind/name` (namespace-less): how tests and errors name an object. */
export const objectKey = (o: Pick<KubeObject, "kind" | "metadata">): string => `${o.kind}/${o.metadata.name}`;
