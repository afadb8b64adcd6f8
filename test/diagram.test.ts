import { mkdtempSync, readFileSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { createRequire } from "node:module";
import { beforeAll, describe, expect, it } from "vitest";
import { pictureOf, renderMermaid, type Picture } from "../cli/plan/diagram";
import { findChromium } from "../cli/plan/diagram-svg";
import {
  diagramsSection,
  renderArchitecture,
  resourcesSection,
  seedSettingsTable,
  svgDiagrams,
} from "../cli/docs/generate";
import type { PlanArtifact, PlanDocument } from "../cli/plan/document";
import { planFromFile, planFromText, stackFilePath, type PlanResult } from "../cli/plan/runner";
import { DIAGRAM_TIERS as TIERS } from "../cli/docs/generate";
import { TIERS as ALL_TIERS } from "../stacks/settings";
import { runScriptToEnd } from "./helpers/cli";
import { ROOT } from "./helpers/load";

// Mermaid's flowchart parser sanitizes labels with DOMPurify, which needs a DOM: jsdom gives it one.
// Typed by hand: @types/jsdom brings undici-types 7, whose Blob clashes with Node 20's; only the constructor is used.
const { JSDOM } = createRequire(__filename)("jsdom") as {
  JSDOM: new (html: string, options?: object) => { window: { document: unknown } };
};
const dom = new JSDOM("<!doctype html><html><body></body></html>");
Object.assign(globalThis, { window: dom.window, document: dom.window.document });
type Mermaid = typeof import("mermaid").default;
let mermaid: Mermaid;

interface Vertex {
  readonly id: string;
  readonly text: string;
  readonly classes: readonly string[];
}
interface Edge {
  readonly start: string;
  readonly end: string;
  readonly text: string;
  readonly stroke: string;
}
interface SubGraph {
  readonly id: string;
  readonly title: string;
  readonly nodes: readonly string[];
}
interface Parsed {
  readonly vertices: Map<string, Vertex>;
  readonly edges: readonly Edge[];
  readonly subgraphs: readonly SubGraph[];
}

/** The diagram as Mermaid itself reads it (mermaid.parse throws on anything GitHub could not render). */
async function parseMermaid(text: string): Promise<Parsed> {
  const result = await mermaid.parse(text);
  expect(result?.diagramType).toBe("flowchart-v2");
  const diagram = await mermaid.mermaidAPI.getDiagramFromText(text);
  const db = diagram.db as unknown as {
    getVertices(): Map<string, Vertex>;
    getEdges(): Edge[];
    getSubGraphs(): SubGraph[];
  };
  return { vertices: db.getVertices(), edges: db.getEdges(), subgraphs: db.getSubGraphs() };
}

interface Planned {
  readonly document: PlanDocument;
  readonly artifacts: readonly PlanArtifact[];
  readonly picture: Picture;
  readonly text: string;
  readonly parsed: Parsed;
}

async function planned(result: PlanResult, compact = false): Promise<Planned> {
  if (!result.ok) throw new Error(`refused: ${result.document.problems.map((p) => p.message).join("; ")}`);
  const picture = pictureOf(result.document, result.artifacts);
  const text = renderMermaid(picture, { compact });
  return { document: result.document, artifacts: result.artifacts, picture, text, parsed: await parseMermaid(text) };
}

const planText = (stack: string, settings: Record<string, unknown>) =>
  planFromText(
    stack,
    `Pulumi.${stack}.yaml`,
    `config:\n${Object.entries(settings)
      .map(([k, v]) => `  inference-hub:${k}: ${JSON.stringify(v)}`)
      .join("\n")}\n`,
  );

const resourcesOf = (doc: PlanDocument, type: string) => doc.resources.filter((r) => r.type === type);
const subgraphOfNode = (p: Parsed, node: string) => p.subgraphs.find((s) => s.title.startsWith(`${node} ·`));
const vertexWith = (p: Parsed, text: string) => [...p.vertices.values()].find((v) => v.text.includes(text));
/** tcp ports on an edge label such as "tcp 80, 443, 8100 + icmp". */
const tcpPorts = (label: string) =>
  (/tcp ([\d, ]+)/.exec(label)?.[1] ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)
    .map(Number);

// The gateway's web ports, as the README documents them: "the gateway (CPU) node takes 80, 443 and 8100 from anywhere".
const WEB_PORTS = [80, 443, 8100];

const tiers = new Map<string, Planned>();
const compactTiers = new Map<string, string>();

beforeAll(async () => {
  mermaid = (await import("mermaid")).default;
  for (const tier of TIERS) {
    const result = await planFromFile(tier, stackFilePath(tier));
    const p = await planned(result);
    tiers.set(tier, p);
    compactTiers.set(tier, renderMermaid(p.picture, { compact: true }));
  }
}, 120_000);

describe("the deployment diagram, for every shipped tier", () => {
  it("parses with Mermaid's own flowchart parser, full and compact", async () => {
    for (const tier of TIERS) {
      expect(tiers.get(tier)!.parsed.vertices.size, tier).toBeGreaterThan(3);
      await parseMermaid(compactTiers.get(tier)!);
    }
  });

  it("draws every planned droplet, volume and container, each container inside its node", () => {
    for (const tier of TIERS) {
      const { document, parsed } = tiers.get(tier)!;
      for (const d of resourcesOf(document, "digitalocean:index/droplet:Droplet"))
        expect(
          parsed.subgraphs.some((s) => s.title.includes(`droplet ${String(d.inputs.name)} `)),
          `${tier}: droplet ${d.name}`,
        ).toBe(true);
      for (const v of resourcesOf(document, "digitalocean:index/volume:Volume"))
        expect(vertexWith(parsed, String(v.inputs.name)), `${tier}: volume ${v.name}`).toBeDefined();
      // The plan's container list comes from the service specs, not from the registered resources: two ways to the same answer.
      expect(document.containers.length, tier).toBeGreaterThan(0);
      for (const c of document.containers) {
        const host =
          tier === "local"
            ? parsed.subgraphs.find((s) => s.title.startsWith("this machine's Docker engine"))
            : subgraphOfNode(parsed, c.node);
        expect(host, `${tier}: node ${c.node}`).toBeDefined();
        expect(
          host!.nodes.some((id) => parsed.vertices.get(id)?.text.split("<br>")[0].replace(" (GPU)", "") === c.name),
          `${tier}: ${c.name} inside ${c.node}`,
        ).toBe(true);
      }
      const drawnContainers = parsed.subgraphs.filter((s) => s.id !== "vpc").flatMap((s) => s.nodes);
      expect(drawnContainers.length, tier).toBe(resourcesOf(document, "docker:index/container:Container").length);
    }
  });

  it("attaches each volume to the node the README says: cpu-cache to cpu, model-cache-i to gpu-i", () => {
    for (const tier of TIERS.filter((t) => t !== "local")) {
      const { document, parsed } = tiers.get(tier)!;
      const attachedTo = (name: string) => {
        const vertex = vertexWith(parsed, `ih-${document.stack}-${name}`)!;
        return parsed.edges
          .filter((e) => e.start === vertex.id && e.stroke !== "dotted")
          .map((e) => parsed.subgraphs.find((s) => s.id === e.end)?.title.split(" ·")[0]);
      };
      // A detached volume's dotted edge goes to the off node it attaches to once on.
      const waitsFor = (name: string) => {
        const vertex = vertexWith(parsed, `ih-${document.stack}-${name}`)!;
        return parsed.edges
          .filter((e) => e.start === vertex.id && e.stroke === "dotted")
          .map((e) => parsed.vertices.get(e.end)?.text.split(" ·")[0]);
      };
      expect(attachedTo("cpu-cache"), tier).toEqual(["cpu"]);
      const gpuOn = document.nodes.some((n) => n.kind === "gpu" && n.active);
      const gpuOff = document.nodes.some((n) => n.kind === "gpu" && !n.active);
      expect(attachedTo("model-cache-0"), tier).toEqual(gpuOn ? ["gpu-0"] : []);
      expect(waitsFor("model-cache-0"), tier).toEqual(gpuOff ? ["gpu-0"] : []);
    }
  });

  it("shows every volume as protected and kept on destroy, as the plan registered it", () => {
    for (const tier of TIERS) {
      const { document, parsed } = tiers.get(tier)!;
      for (const v of resourcesOf(document, "digitalocean:index/volume:Volume"))
        expect(vertexWith(parsed, String(v.inputs.name))!.text, v.name).toContain("protected · kept on destroy");
    }
  });

  it("lets the internet reach only the gateway node, on its web ports; SSH and the rest come from admins or the VPC", () => {
    for (const tier of TIERS.filter((t) => t !== "local")) {
      const { parsed, document } = tiers.get(tier)!;
      const internet = vertexWith(parsed, "internet")!;
      const fromInternet = parsed.edges.filter((e) => e.start === internet.id);
      expect(
        fromInternet.map((e) => parsed.subgraphs.find((s) => s.id === e.end)?.title.split(" ·")[0]),
        tier,
      ).toEqual(["cpu"]);
      expect(
        fromInternet.flatMap((e) => tcpPorts(e.text)).sort((a, b) => a - b),
        tier,
      ).toEqual(WEB_PORTS);
      const admin = vertexWith(parsed, "admin SSH")!;
      expect(admin.text, tier).toContain("the deploying machine's address");
      const droplets = resourcesOf(document, "digitalocean:index/droplet:Droplet").length;
      const sshEdges = parsed.edges.filter((e) => e.start === admin.id);
      expect(sshEdges.length, tier).toBe(droplets);
      for (const e of sshEdges) expect(tcpPorts(e.text), tier).toEqual([22]);
    }
  });

  it("draws no GPU droplet where gpuCount is 0 (cpu) or the GPU is off (hybrid), and the off node dashed", () => {
    const cpu = tiers.get("cpu")!;
    expect(
      cpu.parsed.subgraphs.filter((s) => s.title.includes("droplet ih-cpu-gpu")),
      "cpu",
    ).toEqual([]);
    expect(
      [...cpu.parsed.vertices.values()].filter((v) => v.text.includes("OFF")),
      "cpu",
    ).toEqual([]);
    const hybrid = tiers.get("hybrid")!;
    expect(hybrid.parsed.subgraphs.filter((s) => s.title.includes("droplet ih-hybrid-gpu"))).toEqual([]);
    const off = vertexWith(hybrid.parsed, "OFF")!;
    expect(off.text).toMatch(/^gpu-0 · gpu-h100x1-80gb/);
    expect(off.classes).toContain("off");
    expect(vertexWith(hybrid.parsed, "ih-hybrid-model-cache-0")!.text).toContain("detached");
    // With the GPU off, the coder's paths go to the controller's holder, which falls back to the CPU stand-in
    // (README: "the route points at the controller's holder, which hands the request to the stand-in").
    const coderEdge = hybrid.parsed.edges.find(
      (e) => e.text.includes("/v1/chat/completions") && e.stroke === "normal",
    )!;
    expect(coderEdge.end).toBe("c_cpu_autoscaler");
    expect(
      hybrid.parsed.edges.some(
        (e) =>
          e.end === "c_cpu_coder_fallback" && e.text.includes("fallback") && e.text.includes("/v1/chat/completions"),
      ),
    ).toBe(true);
  });

  it("routes the coder's paths over the VPC to the GPU node's vLLM when it is on, with failover dotted", () => {
    const gpu = tiers.get("gpu")!.parsed;
    const toCoder = gpu.edges.filter((e) => e.text.includes("/v1/chat/completions"));
    const primary = toCoder.find((e) => e.stroke === "normal")!;
    expect(subgraphOfNode(gpu, "gpu-0")!.nodes).toContain(primary.end);
    expect(gpu.vertices.get(primary.end)!.text).toMatch(/^coder \(GPU\)/);
    expect(toCoder.filter((e) => e.stroke === "dotted").length).toBe(1);
    // Every public request is checked by the gatekeeper first.
    const auth = gpu.edges.find((e) => e.text.startsWith("forwardAuth"))!;
    expect(gpu.vertices.get(auth.end)!.text).toMatch(/^gatekeeper/);
  });

  it("shows the local tier as this machine's Docker, reachable on loopback only, with no cloud", () => {
    const { parsed } = tiers.get("local")!;
    expect(parsed.subgraphs.map((s) => s.id)).toEqual(["host_local"]);
    expect(vertexWith(parsed, "internet")).toBeUndefined();
    const me = vertexWith(parsed, "this machine<br>127.0.0.1")!;
    const edges = parsed.edges.filter((e) => e.start === me.id);
    // The gateway, and Prometheus and Alertmanager on their default ports, all on loopback.
    const reached = new Map(edges.map((e) => [parsed.vertices.get(e.end)!.text.split("<br>")[0], tcpPorts(e.text)]));
    expect(Object.fromEntries(reached)).toEqual({ gateway: [8100], prometheus: [9090], alertmanager: [9093] });
  });
});

describe("the deployment diagram, for settings that change the picture", () => {
  it("puts SSH on the internet edge exactly when adminCidrs opens it to everyone", async () => {
    const open = await planned(await planText("open", { tier: "gpu", adminCidrs: ["0.0.0.0/0"] }));
    const internet = vertexWith(open.parsed, "internet")!;
    const ports = open.parsed.edges
      .filter((e) => e.start === internet.id)
      .map((e) => [open.parsed.subgraphs.find((s) => s.id === e.end)!.title.split(" ·")[0], tcpPorts(e.text)]);
    expect(ports).toEqual([
      ["cpu", [...WEB_PORTS, 22]],
      ["gpu-0", [22]],
    ]);
    expect(open.document.ssh?.exposure).toBe("anywhere");

    const pinned = await planned(await planText("pinned", { tier: "gpu", adminCidrs: ["203.0.113.7/32"] }));
    expect(vertexWith(pinned.parsed, "admin SSH")!.text).toContain("203.0.113.7/32");
  });

  it("attaches model-cache-i to gpu-i with several GPU nodes, and shows volumes of unused slots detached", async () => {
    const two = await planned(
      await planText("two", { tier: "gpu", gpuCount: 2, gpuMinNodes: 1, gpuMaxNodes: 3, budgetUsd: 10000 }),
    );
    const { parsed } = two;
    const attached = (name: string) =>
      parsed.edges
        .filter((e) => e.start === vertexWith(parsed, name)!.id)
        .map((e) => parsed.subgraphs.find((s) => s.id === e.end)!.title.split(" ·")[0]);
    expect(attached("ih-two-model-cache-0")).toEqual(["gpu-0"]);
    expect(attached("ih-two-model-cache-1")).toEqual(["gpu-1"]);
    expect(attached("ih-two-model-cache-2")).toEqual([]);
    expect(vertexWith(parsed, "ih-two-model-cache-2")!.text).toContain("detached");
    // Both replicas answer the coder's paths.
    const replicas = parsed.edges
      .filter((e) => e.text.includes("/v1/chat/completions") && e.stroke === "normal")
      .map((e) => e.end)
      .sort();
    expect(replicas).toEqual(["c_gpu_0_coder", "c_gpu_1_coder"]);
  });

  it("says so when a volume is not protected (the picture follows the resource options, not a fixed text)", async () => {
    const gpu = tiers.get("gpu")!;
    const unprotected = {
      ...gpu.document,
      resources: gpu.document.resources.map((r) =>
        r.name === "storage-cpu-cache" ? { ...r, options: { ...r.options, protect: false, retainOnDelete: false } } : r,
      ),
    };
    const parsed = await parseMermaid(renderMermaid(pictureOf(unprotected, gpu.artifacts)));
    expect(vertexWith(parsed, "ih-gpu-cpu-cache")!.text).toContain("NOT protected · deleted on destroy");
  });

  it("escapes labels, so odd names still parse and read back unchanged", async () => {
    const gpu = tiers.get("gpu")!;
    const odd = 'cod"er]<b>|x';
    const renamed = {
      ...gpu.document,
      resources: gpu.document.resources.map((r) =>
        r.type === "docker:index/container:Container" && r.inputs.name === "tts"
          ? { ...r, inputs: { ...r.inputs, name: odd } }
          : r,
      ),
    };
    const parsed = await parseMermaid(renderMermaid(pictureOf(renamed, gpu.artifacts)));
    expect([...parsed.vertices.values()].some((v) => v.text.includes("cod") && v.text.includes("er]"))).toBe(true);
    await expect(mermaid.parse(`flowchart LR\n  a["${odd}"]\n`)).rejects.toThrow();
  });
});

describe("docs/architecture.md and docs/configuration.md", () => {
  const architecture = readFileSync(path.join(ROOT, "docs/architecture.md"), "utf8");
  const configuration = readFileSync(path.join(ROOT, "docs/configuration.md"), "utf8");
  // The k8s tier has no picture (DIAGRAM_TIERS) but its resources are counted too.
  const others = new Map<string, PlanDocument>();
  beforeAll(async () => {
    for (const tier of ALL_TIERS.filter((t) => !tiers.has(t))) {
      const result = await planFromFile(tier, stackFilePath(tier));
      if (!result.ok) throw new Error(`${tier} refused`);
      others.set(tier, result.document);
    }
  }, 120_000);
  const documents = () =>
    Object.fromEntries([...[...tiers].map(([tier, p]) => [tier, p.document] as const), ...others]);

  it("shows one diagram per tier and the resource counts, as `npm run docs` generates them from the plans (run it to refresh)", async () => {
    expect(renderArchitecture(architecture, Object.fromEntries(compactTiers), documents())).toBe(architecture);
    const section = /<!-- generated:diagrams -->([\s\S]*?)<!-- \/generated:diagrams -->/.exec(architecture)![1];
    expect(section.trim()).toBe(diagramsSection(Object.fromEntries(compactTiers)));
    const blocks = [...section.matchAll(/```mermaid\n([\s\S]*?)```/g)].map((m) => m[1]);
    expect(blocks.length).toBe(TIERS.length);
    for (const block of blocks) await parseMermaid(block);
  });

  it("the README's picture is the hybrid tier's committed SVG (npm run docs writes it): every container and volume is in it", () => {
    expect(readFileSync(path.join(ROOT, "README.md"), "utf8")).toContain(`](${svgDiagrams("hybrid")})`);
    const svg = readFileSync(path.join(ROOT, svgDiagrams("hybrid")), "utf8");
    const xml = new JSDOM(svg, { contentType: "image/svg+xml" }) as unknown as {
      window: { document: { documentElement: { localName: string; textContent: string } } };
    };
    expect(xml.window.document.documentElement.localName).toBe("svg");
    const text = xml.window.document.documentElement.textContent;
    const { document } = tiers.get("hybrid")!;
    for (const c of document.containers) expect(text, c.name).toContain(c.name);
    for (const v of resourcesOf(document, "digitalocean:index/volume:Volume"))
      expect(text, v.name).toContain(String(v.inputs.name));
  });

  it("counts each stack's resources from its plan (the figure the README once copied by hand)", () => {
    const rows = resourcesSection(documents())
      .split("\n")
      .slice(2)
      .map((r) =>
        r
          .split("|")
          .map((c) => c.trim())
          .filter(Boolean),
      );
    expect(rows.map((r) => r[0])).toEqual(ALL_TIERS.map((t) => `\`${t}\``));
    for (const [tier, document] of Object.entries(documents())) {
      const row = rows.find((r) => r[0] === `\`${tier}\``)!;
      expect(Number(row[1]), tier).toBe(document.resources.length);
      expect(Number(row[2]), tier).toBe(resourcesOf(document, "digitalocean:index/droplet:Droplet").length);
      if (tier !== "k8s") expect(Number(row[5]), tier).toBe(document.containers.length);
    }
  });

  it("maps the nine seed variables onto settings, with what each becomes", () => {
    const table = seedSettingsTable();
    const rows = table
      .split("\n")
      .slice(2)
      .map((r) =>
        r
          .split(/(?<!\\)\|/)
          .map((c) => c.trim())
          .filter(Boolean),
      );
    const seedVars = [
      "LLM_MODEL",
      "QUANTIZATION",
      "MAX_MODEL_LEN",
      "GPU_MEMORY_UTILIZATION",
      "VLLM_ENGINE",
      "TENSOR_PARALLEL_SIZE",
      "MODEL_NAME",
      "WHISPER_MODEL",
      "TTS_MODEL",
    ];
    expect(rows.map((r) => r[0])).toEqual(seedVars.map((v) => `\`${v}\``));
    const header = table
      .split("\n")[0]
      .split("|")
      .map((c) => c.trim())
      .filter(Boolean);
    const cell = (seed: string, tierPrefix: string) =>
      rows.find((r) => r[0] === `\`${seed}\``)![header.findIndex((h) => h.startsWith(tierPrefix))];
    // FACTS.md: 8bit is FP8 on an H100; the CPU node's 4bit is the Q4_K_M GGUF; DeepSeek-V3 runs tensor-parallel over 8 GPUs.
    expect(cell("QUANTIZATION", "gpu tier (gpu-h100x1-80gb)")).toContain(
      "`8bit` → `--quantization compressed-tensors`, checkpoint `RedHatAI/Qwen2.5-Coder-32B-Instruct-FP8-dynamic`",
    );
    expect(cell("QUANTIZATION", "cpu tier")).toContain("Q4_K_M");
    expect(cell("TENSOR_PARALLEL_SIZE", "multigpu tier")).toContain("--tensor-parallel-size 8");
    expect(cell("GPU_MEMORY_UTILIZATION", "gpu tier")).toContain("--gpu-memory-utilization 0.70");
    expect(cell("VLLM_ENGINE", "setting")).toMatch(/^no setting/);
    expect(configuration).toContain(table);
  });
});

describe("npm run plan -- --diagram FILE", () => {
  it("writes a Markdown file with the picture of the plan", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "hub-diagram-"));
    try {
      const file = path.join(dir, "nested", "hybrid.md");
      const run = await runScriptToEnd("plan", ["--stack", "hybrid", "--diagram", file]);
      expect(run.status, run.stderr).toBe(0);
      const block = /```mermaid\n([\s\S]*?)```/.exec(readFileSync(file, "utf8"))![1];
      expect(block).toBe(tiers.get("hybrid")!.text);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("refuses a file type it cannot write before planning, saying what works", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "hub-diagram-"));
    try {
      const file = path.join(dir, "hub.png");
      const run = await runScriptToEnd("plan", ["--stack", "gpu", "--diagram", file]);
      expect(run.status).toBe(1);
      for (const works of [".mmd", ".md", ".svg"]) expect(run.stderr).toContain(works);
      expect(run.stdout).toBe("");
      expect(existsSync(file)).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

const chromium = findChromium();
if (!chromium)
  console.warn("diagram SVG test skipped: no Chromium (apt-get install chromium; .ci/install-system does)");
// In CI a missing Chromium is a failure, as for the other real programs the suite runs.
it.runIf(!chromium && process.env.CI === "true")("Chromium is installed (required in CI)", () => {
  expect(chromium).toBeDefined();
});

describe.skipIf(!chromium)("npm run plan -- --diagram FILE.svg (Mermaid's renderer in headless Chromium)", () => {
  it("draws every container and volume of the plan into a well-formed SVG", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "hub-diagram-"));
    try {
      const file = path.join(dir, "gpu.svg");
      const run = await runScriptToEnd("plan", ["--stack", "gpu", "--diagram", file], { env: { ...process.env } });
      expect(run.status, run.stderr).toBe(0);
      const svg = readFileSync(file, "utf8");
      // An XML parse, as an SVG viewer does it: render()'s HTML-ish <br> would fail here.
      const xml = new JSDOM(svg, { contentType: "image/svg+xml" }) as unknown as {
        window: { document: { documentElement: { localName: string; textContent: string } } };
      };
      expect(xml.window.document.documentElement.localName).toBe("svg");
      const text = xml.window.document.documentElement.textContent;
      const { document } = tiers.get("gpu")!;
      for (const c of document.containers) expect(text, c.name).toContain(c.name);
      for (const v of resourcesOf(document, "digitalocean:index/volume:Volume"))
        expect(text, v.name).toContain(String(v.inputs.name));
      expect(text).toContain("tcp 80, 443, 8100");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
