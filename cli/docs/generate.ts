import { stringify } from "yaml";
import { hubServiceSpecs } from "../../services/index";
import type { ServiceSpec } from "../../services/spec";
import type { HubConfig } from "../../stacks/hub-config";
import { pictureOf, renderMermaid } from "../plan/diagram";
import type { PlanArtifact, PlanDocument } from "../plan/document";
import { planFromFile, stackFilePath } from "../plan/runner";
import { ERRORS_IMAGE, IMAGE_USERS, IMAGES, MONITORING_IMAGES, NODE_IMAGE, TRAEFIK_IMAGE } from "../../services/images";
import { routeTable, type Route } from "../../services/routes";
import { limitsTable, SANDBOX_TOOL } from "../../programs/sandbox/tool";
import { imageName } from "../../services/spec";
import { CPU_SIZES, GPU_SIZES } from "../../stacks/catalogue/droplets";
import { MODELS } from "../../stacks/catalogue/models";
import { engineConfig, loadHubConfig } from "../../stacks";
import { PRESETS } from "../../stacks/presets";
import { DECLARED_DEFAULTS } from "../../stacks/project-config";
import { PROJECT, SECRET_SETTINGS, SETTING_NAMES, SETTINGS, TIERS } from "../../stacks/settings";

/**
 * Generated documentation: the tables of README.md and docs/, and Pulumi.yaml's config declarations come from
 * the same code the plan runs, and a test fails when the checked-in files drift from it.
 * Regenerate with `npm run docs`.
 */

const money = (n: number) => `$${n.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`;
const mdTable = (header: string[], rows: string[][]) =>
  [
    `| ${header.join(" | ")} |`,
    `| ${header.map(() => "---").join(" | ")} |`,
    ...rows.map((r) => `| ${r.join(" | ")} |`),
  ].join("\n");

export function tierTable(): string {
  const rows = TIERS.map((tier) => {
    const loaded = loadHubConfig({ [`${PROJECT}:tier`]: tier });
    if (!loaded.ok)
      throw new Error(`preset ${tier} does not validate: ${loaded.problems.map((p) => p.message).join("; ")}`);
    const hub = loaded.config;
    const coder =
      hub.coder.backend === "vllm"
        ? `${hub.coder.model.displayName}, ${hub.coder.weights.format} (vLLM)`
        : `${hub.coder.model.displayName}, ${hub.coder.gguf.quantTag} (llama.cpp)`;
    const gpu = hub.gpu ? `${hub.gpu.count} x ${hub.gpu.size.slug}, ${hub.gpu.hoursPerMonth} h/month` : "none";
    return [
      `\`${tier}\``,
      hub.region,
      hub.cpuNode.size.slug,
      gpu,
      coder,
      hub.ocr.engine,
      money(hub.cost.monthlyUsd),
      `${money(hub.cost.hourlyGpuOnUsd)}/h`,
    ];
  });
  return mdTable(["tier", "region", "CPU node", "GPU", "coder", "OCR", "per month", "burn with GPU on"], rows);
}

export function settingsTable(): string {
  const rows = SETTING_NAMES.map((name) => {
    const defaults = TIERS.map((t) => PRESETS[t][name]);
    const same = defaults.every((d) => JSON.stringify(d) === JSON.stringify(defaults[0]));
    const shown = same
      ? defaults[0] === undefined
        ? "unset"
        : `\`${JSON.stringify(defaults[0])}\``
      : TIERS.map((t, i) => `${t}: \`${JSON.stringify(defaults[i])}\``).join(", ");
    return [`\`${name}\``, SETTINGS[name].type, SETTINGS[name].description, shown];
  });
  for (const [name, spec] of Object.entries(SECRET_SETTINGS))
    rows.push([`\`${name}\``, `${spec.type} (secret)`, spec.description, "unset"]);
  return mdTable(["key", "type", "meaning", "preset default"], rows);
}

export function modelTable(): string {
  return mdTable(
    ["id", "model", "params", "native", "weights", "max context", "4bit on GPU", "GGUF (CPU)"],
    MODELS.map((m) => [
      `\`${m.id}\``,
      m.displayName,
      `${m.paramsB}B`,
      m.nativeDtype,
      `${m.weightsGB} GB`,
      String(m.maxContext),
      m.awq ? `AWQ \`${m.awq.repo}\`` : m.nativeDtype === "fp8" ? "refused" : "bitsandbytes",
      m.gguf ? "Q4_K_M, Q8_0" : "none",
    ]),
  );
}

export function sizeTable(): string {
  const gpuRows = GPU_SIZES.map((s) => [
    `\`${s.slug}\``,
    `${s.gpuCount} x ${s.gpuModel} ${s.gpuMemoryGBPerGpu} GB`,
    `${s.ramGiB} GiB`,
    `$${s.pricePerHour}/h${s.sources.price.verified ? "" : " ⚠"}`,
    s.regions.join(", ") + (s.sources.regions.verified ? "" : " ⚠"),
    s.fp8 ? "yes" : "no",
    `\`${s.image}\``,
  ]);
  const cpuRows = CPU_SIZES.map((s) => [
    `\`${s.slug}\``,
    `${s.vcpu} ${s.dedicatedCpu ? "dedicated" : "shared"} vCPU`,
    `${s.ramGiB} GiB`,
    `$${s.pricePerMonth}/month${s.sources.price.verified ? "" : " ⚠"}`,
    "all",
    "-",
    `\`${s.image}\``,
  ]);
  return mdTable(["size", "compute", "RAM", "price", "regions", "FP8", "image"], [...gpuRows, ...cpuRows]);
}

/** The API surface per situation: which program answers each path, where, and what stands in. */
export function routesTable(): string {
  const situations: [string, Record<string, unknown>, ((route: Route) => boolean)?][] = [
    ["gpu, or hybrid with the GPU on", { tier: "hybrid", gpuEnabled: true }],
    ["hybrid, GPU off", { tier: "hybrid", gpuEnabled: false }],
    ["cpu", { tier: "cpu" }],
    // Any cloud tier: only the route the setting adds.
    ["any cloud tier with `sandbox: on`", { tier: "cpu", sandbox: "on" }, (route) => route.scope === "sandbox"],
  ];
  const rows: string[][] = [];
  for (const [label, settings, only] of situations) {
    const loaded = loadHubConfig(engineConfig(settings));
    if (!loaded.ok) throw new Error(`${label} does not validate`);
    for (const route of routeTable(loaded.config).filter((r) => !only || only(r))) {
      const where = (b: { service: string; node: string; address: { kind: string } }) =>
        `${b.service} on ${b.node}${b.address.kind === "vpc" ? " (VPC)" : ""}`;
      const primary = route.primary.length ? route.primary.map(where).join(", ") : "—";
      const standIn =
        route.fallback === undefined
          ? "—"
          : route.fallback === "gpu-off"
            ? "503 `gpu_off` JSON error"
            : where(route.fallback);
      // The holder hands a request to the stand-in unless it waits for the GPU (docs/gpu-wake.md).
      const fallback = route.holder
        ? `${where(route.holder)} (holds requests that wait for the GPU), then ${standIn}`
        : standIn;
      rows.push([
        label,
        route.paths.map((p) => `\`${p}${route.prefix ? "*" : ""}\``).join(" "),
        route.description,
        primary,
        fallback,
      ]);
    }
  }
  return mdTable(["situation", "paths", "service", "answered by", "when that is down"], rows);
}

export function imagesTable(): string {
  const images = [TRAEFIK_IMAGE, ERRORS_IMAGE, NODE_IMAGE, ...IMAGES, ...MONITORING_IMAGES];
  const user = (repo: string) =>
    IMAGE_USERS[repo] ? `${IMAGE_USERS[repo].uid} (${IMAGE_USERS[repo].source.replace(/\|/g, "/")})` : "not recorded";
  return mdTable(
    ["image", "runs as uid", "source of the pin"],
    images.map((i) => [`\`${imageName(i)}\``, user(i.repo), i.source.replace(/\|/g, "/")]),
  );
}

/** Tiers the seed table shows: hybrid is the gpu tier's GPU on demand, local the cpu tier's services at home. */
const SEED_TIERS = ["cpu", "gpu", "multigpu"] as const;
/** The diagram draws droplets, firewalls and Docker containers; the k8s tier has none (docs/kubernetes.md describes its cluster). */
export const DIAGRAM_TIERS = TIERS.filter((t) => t !== "k8s");

/** The argument after `flag` in a spec's command line; a missing flag is a docs bug, not a blank cell. */
function flagValue(spec: ServiceSpec, flag: string): string {
  const i = spec.command.indexOf(flag);
  if (i < 0 || i + 1 >= spec.command.length)
    throw new Error(
      `${spec.name} on ${spec.node} has no ${flag} argument: the seed table would say something the spec does not`,
    );
  return spec.command[i + 1];
}

interface SeedRow {
  readonly seed: string;
  /** The setting (code-quoted), or what replaced the variable. */
  readonly setting: string;
  readonly cell: (hub: HubConfig, coder: ServiceSpec, specs: readonly ServiceSpec[]) => string;
}

const code = (text: string | number | boolean) => `\`${text}\``;
const settingValue = (hub: HubConfig, name: keyof HubConfig["settings"]) =>
  code(JSON.stringify(hub.settings[name]).replace(/^"|"$/g, ""));
const isVllm = (spec: ServiceSpec) => spec.program === "vllm";
const specNamed = (specs: readonly ServiceSpec[], name: string) => {
  const found = specs.find((s) => s.name === name);
  if (!found) throw new Error(`no ${name} container in the specs`);
  return found;
};

const SEED_ROWS: readonly SeedRow[] = [
  {
    seed: "LLM_MODEL",
    setting: code("llmModel"),
    cell: (hub, coder) =>
      `${settingValue(hub, "llmModel")} → ${isVllm(coder) ? code(`vllm serve ${coder.command[0]}`) : code(`-hf ${flagValue(coder, "-hf")}`)}`,
  },
  {
    seed: "QUANTIZATION",
    setting: code("llmQuantization"),
    cell: (hub, coder) => {
      if (!isVllm(coder))
        return `${settingValue(hub, "llmQuantization")} → GGUF ${code(flagValue(coder, "-hf").split(":").pop()!)} (llama.cpp)`;
      return `${settingValue(hub, "llmQuantization")} → ${coder.command.includes("--quantization") ? code(`--quantization ${flagValue(coder, "--quantization")}`) : "no `--quantization` (the native checkpoint)"}${coder.command[0] !== hub.coder.model.repo ? `, checkpoint ${code(coder.command[0])}` : ""}`;
    },
  },
  {
    seed: "MAX_MODEL_LEN",
    setting: code("llmMaxContext"),
    cell: (hub, coder) =>
      `${settingValue(hub, "llmMaxContext")} → ${isVllm(coder) ? code(`--max-model-len ${flagValue(coder, "--max-model-len")}`) : code(`--ctx-size ${flagValue(coder, "--ctx-size")}`)}`,
  },
  {
    seed: "GPU_MEMORY_UTILIZATION",
    setting: `${code("llmGpuMemoryPercent")} (percent)`,
    cell: (hub, coder) =>
      isVllm(coder)
        ? `${settingValue(hub, "llmGpuMemoryPercent")} → ${code(`--gpu-memory-utilization ${flagValue(coder, "--gpu-memory-utilization")}`)}`
        : "not used (no GPU)",
  },
  {
    seed: "VLLM_ENGINE",
    setting: `no setting: the ${code("tier")} picks the program (vLLM on a GPU, llama.cpp on the CPU), ${code("gpuSize")}'s vendor the vLLM build (CUDA or ROCm)`,
    cell: (_hub, coder) =>
      `${code(`${coder.image.repo.replace(/^.*\//, "")}:${coder.image.tag}`)}${coder.entrypoint ? `, ${code(programStarted(coder.entrypoint))}` : ""}`,
  },
  {
    seed: "TENSOR_PARALLEL_SIZE",
    setting: code("llmTensorParallelSize"),
    cell: (hub, coder) =>
      isVllm(coder)
        ? `${settingValue(hub, "llmTensorParallelSize")} → ${code(`--tensor-parallel-size ${flagValue(coder, "--tensor-parallel-size")}`)}${coder.command.includes("--enable-expert-parallel") ? ` ${code("--enable-expert-parallel")}` : ""}`
        : "not used (one CPU process)",
  },
  {
    seed: "MODEL_NAME",
    setting: `no setting for the name clients send: always ${code("coder")}, so it survives the GPU going off; the OCR model is ${code("ocrEngine")}`,
    cell: (hub, coder, specs) => {
      const served = isVllm(coder)
        ? code(`--served-model-name ${flagValue(coder, "--served-model-name")}`)
        : code(`--alias ${flagValue(coder, "--alias")}`);
      const ocr = specs.find((s) => s.name === "ocr");
      const ocrCell = !ocr
        ? `${settingValue(hub, "ocrEngine")}`
        : isVllm(ocr)
          ? `${settingValue(hub, "ocrEngine")} → ${code(`vllm serve ${ocr.command[0]}`)}, ${code(`--served-model-name ${flagValue(ocr, "--served-model-name")}`)}`
          : `${settingValue(hub, "ocrEngine")} → ${code(ocr.image.repo.replace(/^.*\//, ""))}`;
      return `${served}; OCR ${ocrCell}`;
    },
  },
  {
    seed: "WHISPER_MODEL",
    setting: code("sttModel"),
    cell: (hub, _c, specs) =>
      `${settingValue(hub, "sttModel")} → ${code(specNamed(specs, "stt").env.HUB_STT_MODEL)} (fetched at start, then served offline)`,
  },
  {
    seed: "TTS_MODEL",
    setting: code("ttsModel"),
    cell: (hub, _c, specs) =>
      `${settingValue(hub, "ttsModel")} → ${code(`--model_name ${flagValue(specNamed(specs, "tts"), "--model_name")}`)}`,
  },
];

/**
 * The seed design's environment variables, one to one onto the settings, with what each tier's
 * preset value ends up as in the container specs the deploy runs.
 */
export function seedSettingsTable(): string {
  const columns = SEED_TIERS.map((tier) => {
    const loaded = loadHubConfig({ [`${PROJECT}:tier`]: tier });
    if (!loaded.ok) throw new Error(`preset ${tier} does not validate`);
    const specs = hubServiceSpecs(loaded.config);
    const coder = specNamed(specs, "coder");
    return { tier, hub: loaded.config, coder, specs };
  });
  const header = [
    "seed variable",
    "setting",
    ...columns.map((c) => `${c.tier} tier (${c.hub.gpu ? c.hub.gpu.size.slug : c.hub.cpuNode.size.slug})`),
  ];
  return mdTable(
    header,
    SEED_ROWS.map((row) => [
      code(row.seed),
      row.setting,
      ...columns.map((c) => row.cell(c.hub, c.coder, c.specs).replace(/\|/g, "\\|")),
    ]),
  );
}

/** The generated blocks of each documentation file (relative to the project root), by block name. */
export const DOC_SECTIONS: Record<string, Record<string, () => string>> = {
  "README.md": { tiers: tierTable },
  "docs/configuration.md": { settings: settingsTable, models: modelTable, sizes: sizeTable, seed: seedSettingsTable },
  "docs/api.md": { routes: routesTable },
  "docs/architecture.md": { images: imagesTable },
  "docs/sandbox.md": {
    "sandbox-limits": limitsTable,
    "sandbox-tool": () => ["```json", JSON.stringify(SANDBOX_TOOL, null, 2), "```"].join("\n"),
  },
};

/** Replaces the generated blocks of one documentation file that need no plan. */
export function renderDoc(file: string, current: string): string {
  const sections = DOC_SECTIONS[file];
  if (!sections) throw new Error(`${file} has no generated blocks`);
  let text = current;
  for (const [name, render] of Object.entries(sections)) text = replaceSection(text, name, render(), file);
  return text;
}

/** docs/sandbox.md's generated blocks: the limits and the tool definition, from the code. */
export const renderSandboxDoc = (current: string) => renderDoc("docs/sandbox.md", current);

/** README.md's generated blocks (the tier table). */
export const renderReadme = (current: string) => renderDoc("README.md", current);

function replaceSection(text: string, name: string, content: string, file: string): string {
  const pattern = new RegExp(`(<!-- generated:${name} -->)[\\s\\S]*?(<!-- /generated:${name} -->)`);
  if (!pattern.test(text)) throw new Error(`${file} has no generated:${name} block`);
  return text.replace(pattern, (_m, open: string, close: string) => `${open}\n${content}\n${close}`);
}

/** The offline plan of each tier's shipped stack file (Pulumi.<tier>.yaml), one after another: Pulumi's mock engine is process-global. */
export async function tierPlans(): Promise<
  Record<string, { document: PlanDocument; artifacts: readonly PlanArtifact[] }>
> {
  const plans: Record<string, { document: PlanDocument; artifacts: readonly PlanArtifact[] }> = {};
  for (const tier of TIERS) {
    const result = await planFromFile(tier, stackFilePath(tier));
    if (!result.ok)
      throw new Error(`stack ${tier} is refused: ${result.document.problems.map((p) => p.message).join("; ")}`);
    plans[tier] = { document: result.document, artifacts: result.artifacts };
  }
  return plans;
}

/** One picture per tier with droplets (DIAGRAM_TIERS), so each shows exactly what `npm run plan -- --stack <tier>` plans. */
export async function tierDiagrams(
  plans?: Record<string, { document: PlanDocument; artifacts: readonly PlanArtifact[] }>,
): Promise<Record<string, string>> {
  const from = plans ?? (await tierPlans());
  return Object.fromEntries(
    DIAGRAM_TIERS.map((tier) => [
      tier,
      renderMermaid(pictureOf(from[tier].document, from[tier].artifacts), { compact: true }),
    ]),
  );
}

/** Where `npm run docs` writes a tier's picture as SVG, relative to the project. */
export const svgDiagrams = (tier: string) => `docs/diagrams/${tier}.svg`;

export function diagramsSection(diagrams: Record<string, string>): string {
  return DIAGRAM_TIERS.map(
    (tier) =>
      `**${tier}** (\`npm run plan -- --stack ${tier} --diagram ${tier}.md\`):\n\n\`\`\`mermaid\n${diagrams[tier]}\`\`\``,
  ).join("\n\n");
}

const RESOURCE_KINDS: readonly [string, string][] = [
  ["droplets", "digitalocean:index/droplet:Droplet"],
  ["volumes", "digitalocean:index/volume:Volume"],
  ["firewalls", "digitalocean:index/firewall:Firewall"],
  ["containers", "docker:index/container:Container"],
  ["remote commands", "command:remote:Command"],
];

/** How many resources each shipped stack's plan registers, in total and of the kinds a reader pays for or runs. */
export function resourcesSection(documents: Record<string, PlanDocument>): string {
  const rows = TIERS.map((tier) => {
    const resources = documents[tier].resources;
    return [
      `\`${tier}\``,
      String(resources.length),
      ...RESOURCE_KINDS.map(([, type]) => String(resources.filter((r) => r.type === type).length)),
    ];
  });
  return mdTable(["stack", "resources", ...RESOURCE_KINDS.map(([label]) => label)], rows);
}

/** docs/architecture.md's blocks that need the plans: the pictures and the resource counts. */
export function renderArchitecture(
  current: string,
  diagrams: Record<string, string>,
  documents: Record<string, PlanDocument>,
): string {
  const sync = renderDoc("docs/architecture.md", current);
  return replaceSection(
    replaceSection(sync, "diagrams", diagramsSection(diagrams), "docs/architecture.md"),
    "resources",
    resourcesSection(documents),
    "docs/architecture.md",
  );
}

/**
 * Pulumi.yaml: the project, how the language host compiles it, and the config declarations the
 * Pulumi CLI can take without overriding a tier preset (stacks/project-config.ts says which and
 * why). Every other setting is listed in a comment, with its type and meaning.
 */
export function renderPulumiYaml(): string {
  const config: Record<string, { type: string; items?: { type: string }; description: string; default: unknown }> = {};
  for (const [name, value] of DECLARED_DEFAULTS) {
    const spec = SETTINGS[name];
    config[name] = {
      type: spec.type,
      ...(spec.type === "array" ? { items: { type: "string" } } : {}),
      description: spec.description,
      default: value,
    };
  }
  const project = {
    name: PROJECT,
    description:
      "Self-hosted AI inference hub on DigitalOcean: CPU gateway and speech/OCR node, on-demand vLLM GPU node, persistent model cache.",
    // The language host runs the program from main (infra/), where no tsconfig.json is: without
    // this, the SDK's ts-node compiles with loose defaults and the program does not type-check.
    runtime: { name: "nodejs", options: { typescript: true, tsconfig: "../tsconfig.json" } },
    main: "infra/",
    config,
  };
  const typeOf = (type: string) => (type === "array" ? "list of strings" : type);
  const undeclared = [
    ...SETTING_NAMES.filter((name) => !DECLARED_DEFAULTS.has(name)).map(
      (name) => `#   ${name} (${typeOf(SETTINGS[name].type)}): ${SETTINGS[name].description}`,
    ),
    ...Object.entries(SECRET_SETTINGS).map(
      ([name, spec]) =>
        `#   ${name} (${spec.type}, secret: pulumi config set --secret ${name} ...): ${spec.description}`,
    ),
  ];
  const note = [
    "#",
    "# Declared above: the settings whose value is the same in every tier's preset, with that value as",
    "# the default. The Pulumi CLI requires every declared key without a default, and hands a default",
    "# to the program as if the stack had set it, so the settings below (tier-dependent, unset by",
    "# default, or secret) are not declared. Set any of them in Pulumi.<stack>.yaml or with",
    "# `pulumi config set`; the program checks them and names the setting when one is wrong. More in",
    "# docs/pulumi-engine.md and docs/configuration.md.",
    "#",
    ...undeclared,
  ];
  return `# Generated by \`npm run docs\` from stacks/settings.ts: edit there, not here.\n${stringify(project, { lineWidth: 0 })}${note.join("\n")}\n`;
}

/** What an entrypoint runs: a start script (`sh -c <script> <name> ...`) is shown as the command it execs. */
function programStarted(entrypoint: readonly string[]): string {
  if (entrypoint[0] === "/bin/sh" && entrypoint[1] === "-c") {
    const exec = /^exec (.+?) "\$@"$/m.exec(entrypoint[2] ?? "");
    if (exec) return `${exec[1]} (after a start script)`;
  }
  return entrypoint.join(" ");
}
