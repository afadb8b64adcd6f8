import type { ImageRef } from "./spec";
import { VLLM_VERSION } from "./vllm";

/**
 * Every container image the hub runs, pinned by tag (never `latest`). No digest is pinned: the
 * digests seen in public files could not be checked against the registries from here (index or
 * single-platform manifest?), and a wrong digest fails every pull. Check one with
 * `docker buildx imagetools inspect <repo>:<tag>` before adding it.
 */
const READ = "2026-11-26";

/** CUDA build for NVIDIA sizes; its argument list is ../shared/reference/vllm/args-0.24.0.json. */
export const VLLM_CUDA_IMAGE: ImageRef = {
  repo: "vllm/vllm-openai",
  tag: `v${VLLM_VERSION}`,
  source: `Docker Hub tag seen pinned in several public deployments (Jul-Oct 2026); FACTS.md prefers it; read ${READ}. Verified in use, not against the registry.`,
};

/**
 * vLLM's own ROCm build of the same release, for AMD sizes (MI300X). AMD's `rocm/vllm` tags
 * (e.g. rocm7.14.0_..._vllm_0.23.0) carry other vLLM versions, so they would not match the
 * 0.24.0 argument list.
 */
export const VLLM_ROCM_IMAGE: ImageRef = {
  repo: "vllm/vllm-openai-rocm",
  tag: `v${VLLM_VERSION}`,
  source: `Docker Hub tag seen used on MI300X/MI355X in public benchmark and build files (2026; the series runs v0.20.0..v0.29.0); read ${READ}. Verified in use, not against the registry.`,
};

/** llama.cpp's CPU server image: ENTRYPOINT /app/llama-server, ships curl (.devops/cpu.Dockerfile). */
export const LLAMA_CPP_SERVER_IMAGE: ImageRef = {
  repo: "ghcr.io/ggml-org/llama.cpp",
  tag: "server-b11176",
  source: `public deployment notes of 2026-09-29 (amd64 + arm64 index, checked there against the ghcr.io API; GCC 14, GGML_CPU_ALL_VARIANTS=ON); read ${READ}. Verified in use, not against the registry.`,
};

/** speaches (faster-whisper) CPU image: CMD uvicorn, USER ubuntu (uid 1000), ships curl and the venv's python3. */
export const SPEACHES_CPU_IMAGE: ImageRef = {
  repo: "ghcr.io/speaches-ai/speaches",
  tag: "0.8.3-cpu",
  source: `FACTS.md; tag seen pinned (with digest sha256:21e3df06d842fb7802ab470dd77c25f0e8c0d22950e8d8c6ae886e851af53ef8, unverified) in a public deployment spec; read ${READ}. 0.9.0 is still rc-only.`,
};

/**
 * The maintained Coqui fork's CPU image: ENTRYPOINT `tts`, runs as root, python3 from /opt/venv.
 * v0.27.3 (2025-12-12) still installs PyTorch; images of the following releases shipped without
 * it until fixed (idiap/coqui-ai-TTS issues #546, #570), so do not bump blindly.
 */
export const COQUI_TTS_CPU_IMAGE: ImageRef = {
  repo: "ghcr.io/idiap/coqui-tts-cpu",
  tag: "v0.27.3",
  source: `release v0.27.3 (idiap/coqui-ai-TTS PR #526, merged 2025-12-12); tag name follows the repo's docker workflow (v<version>); read ${READ}. Unverified: the tag itself was not seen in a registry listing.`,
};

/** docling-serve CPU image: CMD `docling-serve run`, USER 1001, models baked into /opt/app-root/src/.cache/docling/models. */
export const DOCLING_SERVE_CPU_IMAGE: ImageRef = {
  repo: "quay.io/docling-project/docling-serve-cpu",
  tag: "v1.36.0",
  source: `tag seen pinned in a public design spec dated 2026-10-05 (v1.35.0 also seen, with digest sha256:79e5fcd19ab227ed36323fa5fa31820d14d53efc4f073417ba37be7931c7af0a, unverified); read ${READ}. Verified in use, not against the registry.`,
};

/**
 * Grafana OSS (AGPL: only the image runs; nothing of it is built or vendored). 13.2.3 is the
 * release @grafana/schema 13.2.3 (npm, the dashboard schema the tests check against) belongs to.
 */
export const GRAFANA_IMAGE: ImageRef = {
  repo: "grafana/grafana",
  tag: "13.2.3",
  source:
    "Docker Hub tag seen pinned in public deployment docs (grafana/grafana:13.2.3, 13.2.0, 13.1.3 in compose files and READMEs, 2026); npm @grafana/schema 13.2.3 is the same release; read 2026-12-02. Verified in use, not against the registry.",
};

export const IMAGES: readonly ImageRef[] = [
  VLLM_CUDA_IMAGE,
  VLLM_ROCM_IMAGE,
  LLAMA_CPP_SERVER_IMAGE,
  SPEACHES_CPU_IMAGE,
  COQUI_TTS_CPU_IMAGE,
  DOCLING_SERVE_CPU_IMAGE,
  GRAFANA_IMAGE,
];

/** MI300X runs vLLM only from the ROCm build (FACTS.md). */
export const vllmImage = (vendor: "nvidia" | "amd"): ImageRef => (vendor === "amd" ? VLLM_ROCM_IMAGE : VLLM_CUDA_IMAGE);

/**
 * A Docker health test that GETs `url` with Python's standard library: every Python image here
 * has python3 on its PATH, and none needs curl for it. A 4xx/5xx raises, so the check fails.
 * `header` sends a secret read from the container's own environment (never from the spec).
 */
export function pythonHttpCheck(
  url: string,
  header?: { readonly name: string; readonly prefix?: string; readonly fromEnv: string },
): string[] {
  const secret = header ? `os.environ[${JSON.stringify(header.fromEnv)}]` : "";
  const headers = header
    ? `, headers={${JSON.stringify(header.name)}: ${header.prefix ? `${JSON.stringify(header.prefix)} + ${secret}` : secret}}`
    : "";
  const code = `import os, urllib.request; urllib.request.urlopen(urllib.request.Request(${JSON.stringify(url)}${headers}), timeout=5)`;
  return ["CMD", "python3", "-c", code];
}

/** FACTS.md "Traefik v3": v3.7.13 seen 2026-09; the v3.7.13 security release is also what renovate proposed on 2026-09-11 (dfds/infrastructure-modules#2475). */
export const TRAEFIK_IMAGE: ImageRef = {
  repo: "traefik",
  tag: "v3.7.13",
  source: "FACTS.md Traefik v3 (v3.7.13 seen 2026-09); renovate PR dfds/infrastructure-modules#2475 (2026-09-11)",
};

/**
 * nginx stable line (1.30) on Alpine 3.24; busybox wget is in the image for the health check.
 * No digest pinned, as for the images above: the tag is rebuilt for Alpine fixes and an old index
 * digest is not guaranteed to stay pullable. The one recorded was sha256:0985e772fb9f...d94.
 */
export const ERRORS_IMAGE: ImageRef = {
  repo: "nginx",
  tag: "1.30.5-alpine",
  source:
    "docker-library/repo-info repos/nginx/remote/1.30.5-alpine.md (index sha256:0985e772fb9f729e6fa0980da05fca5d9c468e870eed43071545afa9d2e27d94, built 2026-09-22); read 2026-11-26",
};

/** The gatekeeper's runtime: the bundled program needs Node 22 (global fetch for its health check). */
export const NODE_IMAGE: ImageRef = {
  repo: "node",
  tag: "22.17.1-alpine3.22",
  source: "Docker Hub official image; tag seen in public Dockerfiles (FROM node:22.17.1-alpine3.22); read 2026-11-26",
};

/**
 * Monitoring (services/monitoring.ts). Prometheus 3.15.0 and Alertmanager 0.34.1 are the newest
 * tags seen pinned by many public projects on 2026-12-02 (3.16.0 seen once as a -distroless quay
 * tag, Alertmanager 0.35.0 not at all). tools/prometheus-tools.ts builds promtool and
 * amtool from the Go module proxy at these versions (prometheus v0.315.0, alertmanager v0.34.1).
 */
export const PROMETHEUS_IMAGE: ImageRef = {
  repo: "prom/prometheus",
  tag: "v3.15.0",
  source:
    "Docker Hub tag pinned in many public compose files, Makefiles and promtool CI steps (docker run --entrypoint promtool prom/prometheus:v3.15.0); Go module github.com/prometheus/prometheus v0.315.0 (VERSION 3.15.0, tagged 2026-09-25); read 2026-12-02. Verified in use, not against the registry.",
};

export const ALERTMANAGER_IMAGE: ImageRef = {
  repo: "prom/alertmanager",
  tag: "v0.34.1",
  source:
    "Docker Hub tag pinned in many public Makefiles and compose files; one records docker.io/prom/alertmanager:v0.34.1 = quay.io/prometheus/alertmanager:v0.34.1, index sha256:e9733bafb1bd... (unverified here); Go module v0.34.1 tagged 2026-09-17; read 2026-12-02. Verified in use, not against the registry.",
};

/** node_exporter: busybox base (wget for the health check), USER nobody. */
export const NODE_EXPORTER_IMAGE: ImageRef = {
  repo: "prom/node-exporter",
  tag: "v1.12.1",
  source:
    "Docker Hub tag pinned in several public deployment files (one with digest sha256:1b4e4438faca4dd7e001dd445d161a4a2091b0fededa84093b3a8dfeae1f1be0, unverified here); read 2026-12-02. Verified in use, not against the registry.",
};

/**
 * NVIDIA's DCGM exporter (<DCGM version>-<exporter version>-<base>). The ubuntu22.04 variant is
 * used, not distroless, because its health check needs bash.
 */
export const DCGM_EXPORTER_IMAGE: ImageRef = {
  repo: "nvcr.io/nvidia/k8s/dcgm-exporter",
  tag: "4.4.2-4.7.0-ubuntu22.04",
  source:
    "NGC tag recorded in a public GPU incident report (with nv-hostengine v4.4.2); 4.5.x-4.8.x distroless tags also seen; read 2026-12-02. Verified in use, not against the registry.",
};

/** AMD's device-metrics-exporter, standalone mode (/dev/kfd + /dev/dri, port 5000). */
export const AMD_DEVICE_METRICS_EXPORTER_IMAGE: ImageRef = {
  repo: "rocm/device-metrics-exporter",
  tag: "v1.5.0",
  source:
    "Docker Hub tag run beside vllm-openai-rocm in public MI300X scripts, and found preinstalled on a DigitalOcean MI300X droplet in a public run log; read 2026-12-02. Verified in use, not against the registry.",
};

export const MONITORING_IMAGES: readonly ImageRef[] = [
  PROMETHEUS_IMAGE,
  ALERTMANAGER_IMAGE,
  NODE_EXPORTER_IMAGE,
  DCGM_EXPORTER_IMAGE,
  AMD_DEVICE_METRICS_EXPORTER_IMAGE,
];

/**
 * User each image runs as, with where that was read. Bind-mounted cache directories are created
 * root-owned, so the non-root ones (speaches, docling-serve, the prom/* images) need their host
 * directory chowned to this uid before the container starts, or their first write fails with
 * "Permission denied". The local test images (tools/local-images.ts) run as the same users.
 */
export const IMAGE_USERS: Readonly<Record<string, { readonly uid: number; readonly source: string }>> = {
  [VLLM_CUDA_IMAGE.repo]: {
    uid: 0,
    source: "root, as recorded before this catalogue gave sources (Dockerfile not re-read)",
  },
  [VLLM_ROCM_IMAGE.repo]: {
    uid: 0,
    source: "root, as recorded before this catalogue gave sources (Dockerfile not re-read)",
  },
  [LLAMA_CPP_SERVER_IMAGE.repo]: { uid: 0, source: "root, as recorded before (.devops/cpu.Dockerfile not re-read)" },
  [SPEACHES_CPU_IMAGE.repo]: {
    uid: 1000,
    source: "USER ubuntu, uid 1000 (FACTS.md HF cache path /home/ubuntu; recorded before, Dockerfile not re-read)",
  },
  [COQUI_TTS_CPU_IMAGE.repo]: { uid: 0, source: "root, as recorded before (Dockerfile not re-read)" },
  [DOCLING_SERVE_CPU_IMAGE.repo]: { uid: 1001, source: "USER 1001, as recorded before (Containerfile not re-read)" },
  [GRAFANA_IMAGE.repo]: {
    uid: 472,
    source: 'Grafana\'s Dockerfile GF_UID 472; docs "Configure a Grafana Docker image"',
  },
  [PROMETHEUS_IMAGE.repo]: { uid: 65534, source: "prometheus Dockerfile: USER nobody" },
  [ALERTMANAGER_IMAGE.repo]: { uid: 65534, source: "alertmanager Dockerfile: USER nobody" },
  [NODE_EXPORTER_IMAGE.repo]: { uid: 65534, source: "node_exporter Dockerfile: USER nobody" },
  [TRAEFIK_IMAGE.repo]: { uid: 0, source: "root: the official image sets no USER (not re-read here)" },
  [ERRORS_IMAGE.repo]: {
    uid: 0,
    source: "root master, nginx workers: the official image sets no USER (not re-read here)",
  },
  [NODE_IMAGE.repo]: {
    uid: 0,
    source: "root: the official image sets no USER; its node user (1000) is opt-in (not re-read here)",
  },
  [DCGM_EXPORTER_IMAGE.repo]: { uid: 0, source: "root, assumed: DCGM needs the GPU devices (not read)" },
  [AMD_DEVICE_METRICS_EXPORTER_IMAGE.repo]: {
    uid: 0,
    source: "not read: assumed root, as the exporter opens /dev/kfd and /dev/dri",
  },
};

export const IMAGE_UIDS: Readonly<Record<string, number>> = Object.fromEntries(
  Object.entries(IMAGE_USERS).map(([repo, user]) => [repo, user.uid]),
);
