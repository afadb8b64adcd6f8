import type { Program, ServiceRole } from "../stacks/hub-config";

/** A pinned container image: a tag (never `latest`), and a digest where one was recorded. */
export interface ImageRef {
  readonly repo: string;
  readonly tag: string;
  readonly digest?: string;
  /** Where the tag was checked, and when. */
  readonly source: string;
}

export const imageName = (image: ImageRef): string =>
  `${image.repo}:${image.tag}${image.digest ? `@${image.digest}` : ""}`;

export interface Mount {
  /** Absolute path on the node (on its cache volume for anything worth keeping). */
  readonly hostPath: string;
  readonly containerPath: string;
  readonly readOnly?: boolean;
  /** Bind propagation, e.g. "rslave" so node_exporter sees filesystems mounted after it started. @default - Docker's rprivate */
  readonly propagation?: "rslave";
}

/** Container health check, run inside the container by Docker. */
export interface HealthCheck {
  /** HTTP path the service answers on when healthy; also what the gateway probes. */
  readonly path: string;
  /** Docker's `test`, e.g. ["CMD", "python3", "-c", "..."] — uses a binary the image has. */
  readonly test: readonly string[];
  readonly intervalSeconds: number;
  readonly timeoutSeconds: number;
  /** Model downloads and loading can take many minutes on first start. */
  readonly startPeriodSeconds: number;
  readonly retries: number;
}

/** What one program needs to run on one node: everything infra/ turns into a docker.Container. */
export interface ServiceSpec {
  /** Container name, unique per node, e.g. "coder", "stt". */
  readonly name: string;
  readonly role: ServiceRole | "errors";
  /** Which program it runs: what tests and artifacts key on, rather than the image name. */
  readonly program: Program;
  readonly node: string;
  readonly image: ImageRef;
  /** Overrides the image's entrypoint when set. */
  readonly entrypoint?: readonly string[];
  /** Arguments passed to the entrypoint (the image's CMD is replaced). */
  readonly command: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  /** Environment variables filled from Pulumi secrets at deploy time, by secret name. */
  readonly secretEnv: Readonly<Record<string, SecretName>>;
  /** Port the program listens on inside the container. */
  readonly port: number;
  /** Published on the node's private address (GPU services the gateway reaches over the VPC). */
  readonly publishOnPrivateIp?: boolean;
  readonly mounts: readonly Mount[];
  readonly gpu?: { readonly vendor: "nvidia" | "amd" };
  /** Hard memory limit, MiB (CPU services; GPU services are bounded by their GPU share). */
  readonly memoryLimitMiB?: number;
  /** Share the host's IPC namespace (vLLM tensor parallelism uses shared memory). */
  readonly ipcHost?: boolean;
  /** The host's network and PID namespaces (node_exporter reads the host's, not a container's). @default - the node's private Docker network */
  readonly hostNamespaces?: boolean;
  /** Linux capabilities added (DCGM's profiling metrics need SYS_ADMIN). @default - Docker's default set */
  readonly capAdd?: readonly string[];
  readonly health: HealthCheck;
}

/** Secrets the deployment creates (random) or reads from config; never rendered into files. */
export type SecretName =
  | "hubApiKey"
  | "auditDatabaseUrl"
  | "autoscalerDispatchToken"
  | "autoscalerPulumiToken"
  | "autoscalerBillingToken"
  | "sandboxToken"
  | "gatekeeperTlsCert"
  | "gatekeeperTlsKey";
