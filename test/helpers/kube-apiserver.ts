import { generateKeyPairSync } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import * as https from "node:https";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { parseAllDocuments } from "yaml";
import { kubeBinaries, KUBE_MISSING_REASON } from "../../tools/kube";
import { freeLoopbackPort } from "./postgres";
import { ManagedProcess, waitFor } from "./processes";

/**
 * A real Kubernetes API server (and its etcd) on loopback, built by tools/kube.ts at the
 * DOKS release's Kubernetes version: the tests create namespaces and CRDs in it for real and
 * check every rendered object with server-side dry-run (`dryRun=All&fieldValidation=Strict`).
 * Flags from ../shared/FACTS.md ("A real Kubernetes API server on this machine kind").
 * One per test file: start it in beforeAll, stop it in afterAll.
 */

export const kubeMissing = (): string | undefined => (kubeBinaries() ? undefined : KUBE_MISSING_REASON);

export interface ApiAnswer {
  readonly status: number;
  readonly body: Record<string, unknown>;
}

interface ApiResource {
  readonly name: string;
  readonly kind: string;
  readonly namespaced: boolean;
}

export class TestApiServer {
  private readonly agent: https.Agent;
  private discovery = new Map<string, ApiResource[]>();

  private constructor(
    readonly url: string,
    readonly token: string,
    readonly dir: string,
    private readonly etcd: ManagedProcess,
    private readonly apiServer: ManagedProcess,
  ) {
    this.agent = new https.Agent({ ca: readFileSync(this.caFile), keepAlive: true });
  }

  /** The API server's self-signed serving certificate (what a client such as Traefik trusts). */
  get caFile(): string {
    return path.join(this.dir, "certs", "apiserver.crt");
  }

  static async start(): Promise<TestApiServer> {
    const bins = kubeBinaries();
    if (!bins) throw new Error(KUBE_MISSING_REASON);
    const dir = mkdtempSync(path.join(tmpdir(), "hub-kube-"));
    mkdirSync(path.join(dir, "certs"));
    const { publicKey, privateKey } = generateKeyPairSync("rsa", {
      modulusLength: 2048,
      publicKeyEncoding: { type: "spki", format: "pem" },
      privateKeyEncoding: { type: "pkcs8", format: "pem" },
    });
    writeFileSync(path.join(dir, "sa.pub"), publicKey);
    writeFileSync(path.join(dir, "sa.key"), privateKey);
    const token = `hub-test-${Math.random().toString(36).slice(2)}`;
    writeFileSync(path.join(dir, "tokens.csv"), `${token},admin,admin,"system:masters"\n`);
    const [client, peer, secure] = [await freeLoopbackPort(), await freeLoopbackPort(), await freeLoopbackPort()];
    const etcdUrl = `http://127.0.0.1:${client}`;
    const etcd = ManagedProcess.start("etcd", bins.etcd, [
      "--name=default",
      `--data-dir=${path.join(dir, "etcd")}`,
      `--listen-client-urls=${etcdUrl}`,
      `--advertise-client-urls=${etcdUrl}`,
      `--listen-peer-urls=http://127.0.0.1:${peer}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${peer}`,
      `--initial-cluster=default=http://127.0.0.1:${peer}`,
      // A throwaway store: nothing to lose on a crash.
      "--unsafe-no-fsync",
      "--log-level=warn",
    ]);
    const apiServer = ManagedProcess.start("kube-apiserver", bins["kube-apiserver"], [
      "--bind-address=127.0.0.1",
      "--advertise-address=127.0.0.1",
      `--secure-port=${secure}`,
      `--cert-dir=${path.join(dir, "certs")}`,
      `--etcd-servers=${etcdUrl}`,
      "--service-cluster-ip-range=10.96.0.0/16",
      "--service-account-issuer=https://kubernetes.default.svc",
      `--service-account-key-file=${path.join(dir, "sa.pub")}`,
      `--service-account-signing-key-file=${path.join(dir, "sa.key")}`,
      `--token-auth-file=${path.join(dir, "tokens.csv")}`,
      "--authorization-mode=AlwaysAllow",
      // Required on loopback (FACTS.md); no token controller runs, so no ServiceAccount admission.
      "--endpoint-reconciler-type=none",
      "--disable-admission-plugins=ServiceAccount",
    ]);
    const url = `https://127.0.0.1:${secure}`;
    // The certificate appears once the server has generated it.
    await waitFor(
      "the API server's certificate",
      () => {
        try {
          readFileSync(path.join(dir, "certs", "apiserver.crt"));
          return true;
        } catch {
          return false;
        }
      },
      60_000,
      { context: () => apiServer.tail() },
    );
    const server = new TestApiServer(url, token, dir, etcd, apiServer);
    await waitFor(
      "the API server to be ready",
      async () => (await server.request("GET", "/readyz")).status === 200,
      120_000,
      { intervalMs: 250, context: () => `${apiServer.tail()}\n${etcd.tail()}` },
    );
    return server;
  }

  /** The API server first, then etcd: the other order hangs its shutdown (FACTS.md). */
  async stop(): Promise<void> {
    await this.apiServer.stop();
    await this.etcd.stop();
    this.agent.destroy();
    rmSync(this.dir, { recursive: true, force: true });
  }

  request(method: string, pathname: string, body?: unknown): Promise<ApiAnswer> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = https.request(
        `${this.url}${pathname}`,
        {
          method,
          agent: this.agent,
          headers: {
            Authorization: `Bearer ${this.token}`,
            Accept: "application/json",
            ...(payload ? { "Content-Type": "application/json" } : {}),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => {
            const text = Buffer.concat(chunks).toString();
            let parsed: Record<string, unknown>;
            try {
              parsed = JSON.parse(text) as Record<string, unknown>;
            } catch {
              parsed = { text };
            }
            resolve({ status: res.statusCode ?? 0, body: parsed });
          });
        },
      );
      req.on("error", reject);
      if (payload) req.write(payload);
      req.end();
    });
  }

  /** The API path of a kind (`/api/v1/namespaces/<ns>/services`), from the server's own discovery. */
  async collectionPath(apiVersion: string, kind: string, namespace: string | undefined): Promise<string> {
    const base = apiVersion.includes("/") ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
    let resources = this.discovery.get(base);
    if (!resources) {
      const answer = await this.request("GET", base);
      if (answer.status !== 200)
        throw new Error(`discovery of ${base} answered ${answer.status}: ${JSON.stringify(answer.body).slice(0, 300)}`);
      resources = (answer.body.resources as ApiResource[]).filter((r) => !r.name.includes("/"));
      this.discovery.set(base, resources);
    }
    const resource = resources.find((r) => r.kind === kind);
    if (!resource) throw new Error(`${apiVersion} has no kind ${kind} in this API server`);
    if (resource.namespaced && !namespace) throw new Error(`${kind} is namespaced; the object names no namespace`);
    return resource.namespaced ? `${base}/namespaces/${namespace}/${resource.name}` : `${base}/${resource.name}`;
  }

  /** Creates an object for real (namespaces, CRDs: what dry-run needs to exist). */
  async create(object: Record<string, unknown>): Promise<ApiAnswer> {
    const meta = object.metadata as { namespace?: string };
    return this.request(
      "POST",
      await this.collectionPath(object.apiVersion as string, object.kind as string, meta.namespace),
      object,
    );
  }

  /** Server-side dry-run with strict field validation: admission, defaulting, validation, CEL; nothing is stored. */
  async dryRun(object: Record<string, unknown>): Promise<ApiAnswer> {
    const meta = object.metadata as { namespace?: string };
    return this.request(
      "POST",
      `${await this.collectionPath(object.apiVersion as string, object.kind as string, meta.namespace)}?dryRun=All&fieldValidation=Strict`,
      object,
    );
  }

  /** Installs every CustomResourceDefinition in a YAML stream and waits until each is Established. */
  async installCrds(yamlText: string): Promise<string[]> {
    const crds = parseAllDocuments(yamlText)
      .map((d) => d.toJS() as Record<string, unknown> | null)
      .filter((d): d is Record<string, unknown> => d !== null && d.kind === "CustomResourceDefinition");
    const names: string[] = [];
    for (const crd of crds) {
      const answer = await this.create(crd);
      if (answer.status !== 201 && answer.status !== 409)
        throw new Error(
          `installing CRD ${(crd.metadata as { name: string }).name} answered ${answer.status}: ${JSON.stringify(answer.body).slice(0, 500)}`,
        );
      names.push((crd.metadata as { name: string }).name);
    }
    for (const name of names) {
      await waitFor(
        `CRD ${name} to be Established`,
        async () => {
          const answer = await this.request("GET", `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${name}`);
          const conditions =
            (answer.body.status as { conditions?: { type: string; status: string }[] } | undefined)?.conditions ?? [];
          return conditions.some((c) => c.type === "Established" && c.status === "True");
        },
        30_000,
        { intervalMs: 100 },
      );
    }
    this.discovery.clear();
    return names;
  }
}

/** A refusal's message: the API server's Status.message. */
export const statusMessage = (answer: ApiAnswer): string =>
  String(answer.body.message ?? JSON.stringify(answer.body).slice(0, 500));
