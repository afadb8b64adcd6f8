import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import OpenAI, { toFile } from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IMAGE_UIDS } from "../services/images";
import { GPU_SERVICE_PORTS } from "../services/ports";
import { CODER_SERVED_NAME, OCR_SERVED_NAME } from "../stacks/hub-config";
import { engineAnswers, KIND_LABEL, LOCAL_IMAGES } from "../tools/local-images";
import { ALERTMANAGER_SERVER, NODE_EXPORTER, PROMETHEUS_SERVER } from "../tools/prometheus-servers";
import { containerLogs, engine, engineRequest, execIn } from "./helpers/docker-engine";
import { planCpuNode, removeHubContainers, startCpuNode, type StartedNode, waitHealthy } from "./helpers/docker-deploy";
import { sleep } from "./helpers/processes";
import { startStandIn, type StandIn } from "./helpers/stand-ins";
import { DECISIONS_TABLE } from "../programs/gatekeeper/migrations";

/**
 * The CPU node of every tier on a real Docker engine (docs/real-engine.md): the containers the
 * plan registers, created as the Docker provider creates them, from local images under the pinned
 * tags (real programs where they can be had here, labelled stand-ins where not), each waited on
 * until its own health check passes; then the gateway driven with OpenAI's SDK.
 */

const imageTag = (i: (typeof LOCAL_IMAGES)[number]) => `${i.ref.repo}:${i.ref.tag}`;
const kindOf = (tag: string): string | undefined => {
  const r = spawnSync("docker", ["image", "inspect", "--format", `{{ index .Config.Labels "${KIND_LABEL}" }}`, tag], {
    encoding: "utf8",
  });
  return r.status === 0 ? r.stdout.trim() : undefined;
};

const answers = engineAnswers();
const missingImages = answers ? LOCAL_IMAGES.filter((i) => kindOf(imageTag(i)) !== i.kind).map(imageTag) : [];
const isRoot = process.getuid?.() === 0;
const missing = !isRoot
  ? "not root: the deploy's file commands chown as root on the node, and the GPU stand-ins take addresses on lo"
  : !answers
    ? "no Docker engine answers on /var/run/docker.sock (start one: .ci/dockerd)"
    : missingImages.length
      ? `local images not built: ${missingImages.join(", ")} (npx tsx tools/local-images.ts build; .ci/run does)`
      : undefined;
if (missing) console.warn(`real Docker engine tests skipped: ${missing}`);

// Required under .ci/run (CI=true, as root); a CI that runs the suite as another user (GitHub's runners) skips with the notice.
it.runIf(Boolean(missing) && isRoot && process.env.CI === "true")(
  "a Docker engine answers and the local images are built (required in CI)",
  () => {
    expect.fail(missing);
  },
);

const sha = (text: string) => `sha256:${createHash("sha256").update(text).digest("hex").slice(0, 16)}`;

/** `docker run --rm --network none <image> <args>`: what a program in the image prints. */
function runOnce(image: string, args: string[], entrypoint?: string): string {
  const r = spawnSync(
    "docker",
    [
      "run",
      "--rm",
      "--pull",
      "never",
      "--network",
      "none",
      ...(entrypoint ? ["--entrypoint", entrypoint] : []),
      image,
      ...args,
    ],
    { encoding: "utf8", timeout: 60_000 },
  );
  return `${r.stdout}${r.stderr}`;
}

describe.skipIf(Boolean(missing))("the local images", () => {
  it("hold the built programs at their tags' versions", () => {
    for (const tool of [PROMETHEUS_SERVER, ALERTMANAGER_SERVER, NODE_EXPORTER]) {
      const image = LOCAL_IMAGES.find((i) => i.ref.repo.endsWith(tool.name.replace("_", "-")))!;
      expect(runOnce(imageTag(image), ["--version"]), image.ref.repo).toMatch(
        new RegExp(`^${tool.name}, version ${image.ref.tag.replace(/^v/, "").replace(/\./g, "\\.")} `, "m"),
      );
    }
    const traefik = LOCAL_IMAGES.find((i) => i.ref.repo === "traefik")!;
    expect(runOnce(imageTag(traefik), ["traefik", "version"])).toMatch(
      new RegExp(`Version:\\s+${traefik.ref.tag.replace(/\./g, "\\.")}\\b`),
    );
    const node = LOCAL_IMAGES.find((i) => i.ref.repo === "node")!;
    expect(runOnce(imageTag(node), ["node", "--version"]).trim()).toBe(`v${node.ref.tag.split("-")[0]}`);
  });

  it("say what they really are: Debian's nginx is not the tag's version, and the stand-ins say so", () => {
    const nginx = LOCAL_IMAGES.find((i) => i.ref.repo === "nginx")!;
    const version = /nginx\/(\d+\.\d+\.\d+)/.exec(runOnce(imageTag(nginx), ["nginx", "-v"]))?.[1];
    expect(version).toBeDefined();
    expect(nginx.ref.tag.startsWith(version!)).toBe(false);
    expect(nginx.description).toContain(version!.split(".").slice(0, 2).join("."));
    for (const image of LOCAL_IMAGES.filter((i) => i.kind === "stand-in"))
      expect(image.description).toMatch(/^STAND-IN, NOT /);
  });

  it("refuse a mount inside a read-only mount, as the old monitoring layout had (defect 4)", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "ih-nested-"));
    const prometheus = LOCAL_IMAGES.find((i) => i.ref.repo === "prom/prometheus")!;
    try {
      const id = await engine<{ Id: string }>("POST", "/containers/create?name=ih-nested-mount-check", {
        Image: imageTag(prometheus),
        Labels: { "inference-hub.role": "test" },
        HostConfig: { Binds: [`${dir}:/etc/prometheus:ro`, `${dir}-targets:/etc/prometheus/targets:ro`] },
      });
      const start = await engineRequest("POST", `/containers/${id.Id}/start`);
      expect(start.status).toBe(500);
      expect(start.body.toString()).toMatch(/read-only file system/);
    } finally {
      await engineRequest("DELETE", "/containers/ih-nested-mount-check?force=1&v=1");
      rmSync(dir, { recursive: true, force: true });
      rmSync(`${dir}-targets`, { recursive: true, force: true });
    }
  });
});

/** The tiers whose CPU node runs here, one at a time. */
const TIERS: readonly { readonly label: string; readonly settings: Record<string, unknown> }[] = [
  { label: "local", settings: { tier: "local" } },
  // The schema's largest rate limits: the gatekeeper once refused the environment they rendered (issue 17, defect 5).
  {
    label: "cpu (rate limits at the schema's maximum)",
    settings: { tier: "cpu", rateLimitPerMinute: 100_000, rateLimitBurst: 100_000 },
  },
  { label: "gpu", settings: { tier: "gpu" } },
  { label: "hybrid (GPU on)", settings: { tier: "hybrid", gpuEnabled: true } },
  { label: "multigpu", settings: { tier: "multigpu" } },
];

/** Health checks wait their interval (30 s for most) before the first probe; the slowest start period here is shorter. */
const HEALTH_TIMEOUT_MS = 150_000;

for (const tier of TIERS) {
  describe.skipIf(Boolean(missing)).sequential(`the ${tier.label} tier's CPU node on the real Docker engine`, () => {
    let node: StartedNode;
    const gpuStandIns: StandIn[] = [];
    const addedAddresses: string[] = [];
    let client: OpenAI;

    beforeAll(async () => {
      const plan = await planCpuNode(tier.settings);
      // The GPU nodes' vLLM replicas: stand-ins on their private addresses, added to this machine's loopback interface.
      for (const ip of plan.gpuPrivateIps) {
        if (spawnSync("ip", ["addr", "add", `${ip}/32`, "dev", "lo"]).status === 0) addedAddresses.push(ip);
        gpuStandIns.push(
          await startStandIn({
            program: "vllm",
            model: CODER_SERVED_NAME,
            host: ip,
            port: GPU_SERVICE_PORTS.coder,
            apiKey: { header: "authorization", value: plan.backendKey },
          }),
        );
        gpuStandIns.push(
          await startStandIn({
            program: "vllm",
            model: OCR_SERVED_NAME,
            host: ip,
            port: GPU_SERVICE_PORTS.ocr,
            apiKey: { header: "authorization", value: plan.backendKey },
          }),
        );
      }
      node = await startCpuNode(plan);
      client = new OpenAI({ apiKey: plan.userKey, baseURL: node.baseUrl, maxRetries: 0, timeout: 30_000 });
    }, 120_000);

    afterAll(async () => {
      await node?.remove();
      await Promise.all(gpuStandIns.map((s) => s.close()));
      for (const ip of addedAddresses) spawnSync("ip", ["addr", "del", `${ip}/32`, "dev", "lo"]);
    }, 60_000);

    it(
      "starts every container and each passes its own health check",
      async () => {
        const report = await waitHealthy(node, HEALTH_TIMEOUT_MS);
        const why = [...report.unhealthy].map(([name, reason]) => `${name}: ${reason}`).join("\n");
        expect(report.unhealthy.size, why).toBe(0);
        expect(report.healthy.length).toBe(
          node.plan.containers.filter((c) => c.healthcheck && c.healthcheck.tests[0] !== "NONE").length,
        );
      },
      HEALTH_TIMEOUT_MS + 10_000,
    );

    it("runs each container as its image's user, with the deploy's files, owners and modes", async () => {
      for (const c of node.plan.containers) {
        const uid = IMAGE_UIDS[c.image.split(":")[0]];
        const id = node.ids.get(c.name)!;
        const seen = await execIn(id, ["id", "-u"]);
        expect(`${c.name} ${seen.output.trim()}`).toBe(`${c.name} ${uid}`);
      }
      // Secrets on disk are for the one user that reads them (droplets); the local tier writes plain files.
      const key = path.join(node.dataDir, "prometheus/config/secrets/llamacpp-key");
      if (
        node.plan.tier !== "local" &&
        node.plan.containers.some((c) => c.name === "coder" && c.image.includes("llama.cpp"))
      ) {
        const st = statSync(key);
        expect([st.uid, st.mode & 0o777]).toEqual([IMAGE_UIDS["prom/prometheus"], 0o600]);
        const read = await execIn(node.ids.get("prometheus")!, ["cat", "/etc/prometheus/secrets/llamacpp-key"]);
        expect(read.exitCode).toBe(0);
      }
    });

    it("refuses a request without a key, and a model nobody serves", async () => {
      const keyless = await fetch(`${node.baseUrl}/chat/completions`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ model: CODER_SERVED_NAME, messages: [{ role: "user", content: "hi" }] }),
      });
      expect(keyless.status).toBe(401);
      expect(((await keyless.json()) as { error: { message: string } }).error.message).toBeTruthy();
      await expect(
        client.chat.completions.create({ model: "no-such-model", messages: [{ role: "user", content: "hi" }] }),
      ).rejects.toMatchObject({ status: 404 });
    });

    it("answers OpenAI's SDK through the gateway: models, chat, a stream", async () => {
      const models = await client.models.list();
      expect(models.data.map((m) => m.id)).toContain(CODER_SERVED_NAME);
      const chat = await client.chat.completions.create({
        model: CODER_SERVED_NAME,
        messages: [{ role: "user", content: "write hello world" }],
      });
      expect(chat.choices[0].message.content).toMatch(/answer from (vllm|llama\.cpp)/);
      const streamed = async () => {
        const stream = await client.chat.completions.create({
          model: CODER_SERVED_NAME,
          messages: [{ role: "user", content: "stream it" }],
          stream: true,
        });
        const parts: string[] = [];
        for await (const chunk of stream) parts.push(chunk.choices[0]?.delta?.content ?? "");
        return parts.filter(Boolean);
      };
      // About one stream in thirty is cut mid-way here ("terminated: other side closed"; see
      // docs/real-engine.md, not pinned down): tried twice, and the cut is reported.
      const parts = await streamed().catch(async (error: Error) => {
        console.warn(`${tier.label}: a streamed completion was cut (${error.message}); trying once more`);
        return streamed();
      });
      expect(parts.length).toBeGreaterThanOrEqual(2);
    });

    it("transcribes and speaks through the gateway (the hub's launchers in the speech containers)", async () => {
      const transcript = await client.audio.transcriptions.create({
        file: await toFile(Buffer.from("hello from the engine test"), "hello.wav"),
        model: "whisper-1",
      });
      expect(transcript.text).toBe("hello from the engine test");
      const speech = await client.audio.speech.create({
        model: "tts-1",
        voice: "alloy",
        input: "hello",
        response_format: "wav",
      });
      expect(
        Buffer.from(await speech.arrayBuffer())
          .subarray(0, 4)
          .toString("latin1"),
      ).toBe("RIFF");
      // No mp3 encoder in the CPU image: the launcher answers 400 naming the formats that work.
      await expect(
        client.audio.speech.create({ model: "tts-1", voice: "alloy", input: "hello", response_format: "mp3" }),
      ).rejects.toMatchObject({ status: 400 });
    });

    it("reads a document through the gateway (docling on the CPU node, DeepSeek-OCR on the GPU)", async () => {
      const hasDocling = node.plan.containers.some((c) => c.image.includes("docling"));
      if (hasDocling) {
        const converted = await client.post<{ document: { md_content: string } }>("/ocr/convert/source", {
          body: { sources: [{ kind: "http", url: "https://example.invalid/doc.pdf" }] },
        });
        expect(converted.document.md_content).toMatch(/converted by docling-serve/);
      } else {
        const ocr = new OpenAI({
          apiKey: node.plan.userKey,
          baseURL: `${node.baseUrl}/ocr`,
          maxRetries: 0,
          timeout: 30_000,
        });
        const read = await ocr.chat.completions.create({
          model: OCR_SERVED_NAME,
          messages: [{ role: "user", content: "Free OCR." }],
        });
        expect(read.choices[0].message.content).toMatch(/answer from vllm/);
      }
    });

    it("writes an audit row for each request to the stack's PostgreSQL", async () => {
      const count = async () =>
        Number(
          (
            await execIn(
              node.auditDb,
              [
                "psql",
                "-h",
                "127.0.0.1",
                "-U",
                node.plan.auditDatabase.user,
                "-d",
                "postgres",
                "-tAc",
                `SELECT count(*) FROM ${DECISIONS_TABLE}`,
              ],
              [`PGPASSWORD=${node.plan.auditDatabase.password}`],
            )
          ).output.trim() || "0",
        );
      const deadline = Date.now() + 20_000;
      while ((await count()) < 5 && Date.now() < deadline) await sleep(250);
      // The requests above: the keyless one, a model nobody serves, models, chat, stream, transcription, speech (two), a document.
      expect(await count()).toBeGreaterThanOrEqual(5);
    });

    it("sends the backends the hub's own key, never the user's", async () => {
      const backend = sha(`Bearer ${node.plan.backendKey}`);
      const user = sha(`Bearer ${node.plan.userKey}`);
      const coder = node.ids.get("coder");
      if (coder) {
        const lines = (await containerLogs(coder))
          .split("\n")
          .filter((l) => l.startsWith("{"))
          .map((l) => JSON.parse(l) as { url?: string; credentials?: Record<string, string> });
        const chats = lines.filter((l) => l.url === "/v1/chat/completions");
        expect(chats.length).toBeGreaterThan(0);
        for (const l of chats) expect(l.credentials?.authorization).toBe(backend);
        expect(lines.some((l) => l.credentials?.authorization === user)).toBe(false);
      }
      const gpuChats = gpuStandIns.flatMap((s) => s.received).filter((r) => r.url === "/v1/chat/completions");
      for (const r of gpuChats) expect(r.headers.authorization).toBe(`Bearer ${node.plan.backendKey}`);
      expect((coder ? 1 : 0) + gpuChats.length).toBeGreaterThan(0);
    });
  });
}

const volumeNames = async () =>
  new Set(((await engine<{ Volumes: { Name: string }[] | null }>("GET", "/volumes")).Volumes ?? []).map((v) => v.Name));
let volumesBefore = new Set<string>();
beforeAll(async () => {
  if (!missing) volumesBefore = await volumeNames();
});

afterAll(async () => {
  if (missing) return;
  await removeHubContainers("hub");
  // Nothing is left behind: no container, no network, no volume.
  expect(
    (
      await engine<unknown[]>(
        "GET",
        `/containers/json?all=1&filters=${encodeURIComponent(JSON.stringify({ label: ["inference-hub.role"] }))}`,
      )
    ).length,
  ).toBe(0);
  expect((await engine<{ Name: string }[]>("GET", "/networks")).map((n) => n.Name)).not.toContain("hub");
  expect([...(await volumeNames())].filter((v) => !volumesBefore.has(v))).toEqual([]);
});
