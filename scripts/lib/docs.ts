import { stringify } from "yaml";
import { ERRORS_IMAGE, IMAGES, MONITORING_IMAGES, NODE_IMAGE, TRAEFIK_IMAGE } from "../../services/images";
import { routeTable } from "../../services/routes";
import { imageName } from "../../services/spec";
import { CPU_SIZES, GPU_SIZES } from "../../stacks/catalogue/droplets";
import { MODELS } from "../../stacks/catalogue/models";
import { engineConfig, loadHubConfig } from "../../stacks";
import { PRESETS } from "../../stacks/presets";
import { PROJECT, SECRET_SETTINGS, SETTING_NAMES, SETTINGS, TIERS } from "../../stacks/settings";

/**
 * Generated documentation: the README's tables and Pulumi.yaml's config declarations come from
 * the same code the plan runs, and a test fails when the checked-in files drift from it.
 * Regenerate with `npm run docs`.
 */

const money = (n: number) => `$${n.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`;
const mdTable = (header: string[], rows: string[][]) => [`| ${header.join(" | ")} |`, `| ${header.map(() => "---").join(" | ")} |`, ...rows.map((r) => `| ${r.join(" | ")} |`)].join("\n");

export function tierTable(): string {
  const rows = TIERS.map((tier) => {
    const loaded = loadHubConfig({ [`${PROJECT}:tier`]: tier });
    if (!loaded.ok) throw new Error(`preset ${tier} does not validate: ${loaded.problems.map((p) => p.message).join("; ")}`);
    const hub = loaded.config;
    const coder = hub.coder.backend === "vllm" ? `${hub.coder.model.displayName}, ${hub.coder.weights.format} (vLLM)` : `${hub.coder.model.displayName}, ${hub.coder.gguf.quantTag} (llama.cpp)`;
    const gpu = hub.gpu ? `${hub.gpu.count} x ${hub.gpu.size.slug}, ${hub.gpu.hoursPerMonth} h/month` : "none";
    return [`\`${tier}\``, hub.region, hub.cpuNode.size.slug, gpu, coder, hub.ocr.engine, money(hub.cost.monthlyUsd), `${money(hub.cost.hourlyGpuOnUsd)}/h`];
  });
  return mdTable(["tier", "region", "CPU node", "GPU", "coder", "OCR", "per month", "burn with GPU on"], rows);
}

export function settingsTable(): string {
  const rows = SETTING_NAMES.map((name) => {
    const defaults = TIERS.map((t) => PRESETS[t][name]);
    const same = defaults.every((d) => JSON.stringify(d) === JSON.stringify(defaults[0]));
    const shown = same ? (defaults[0] === undefined ? "unset" : `\`${JSON.stringify(defaults[0])}\``) : TIERS.map((t, i) => `${t}: \`${JSON.stringify(defaults[i])}\``).join(", ");
    return [`\`${name}\``, SETTINGS[name].type, SETTINGS[name].description, shown];
  });
  for (const [name, spec] of Object.entries(SECRET_SETTINGS)) rows.push([`\`${name}\``, `${spec.type} (secret)`, spec.description, "unset"]);
  return mdTable(["key", "type", "meaning", "preset default"], rows);
}

export function modelTable(): string {
  return mdTable(
    ["id", "model", "params", "native", "weights", "max context", "4bit on GPU", "GGUF (CPU)"],
    MODELS.map((m) => [`\`${m.id}\``, m.displayName, `${m.paramsB}B`, m.nativeDtype, `${m.weightsGB} GB`, String(m.maxContext), m.awq ? `AWQ \`${m.awq.repo}\`` : m.nativeDtype === "fp8" ? "refused" : "bitsandbytes", m.gguf ? "Q4_K_M, Q8_0" : "none"]),
  );
}

export function sizeTable(): string {
  const gpuRows = GPU_SIZES.map((s) => [`\`${s.slug}\``, `${s.gpuCount} x ${s.gpuModel} ${s.gpuMemoryGBPerGpu} GB`, `${s.ramGiB} GiB`, `$${s.pricePerHour}/h${s.sources.price.verified ? "" : " ⚠"}`, s.regions.join(", ") + (s.sources.regions.verified ? "" : " ⚠"), s.fp8 ? "yes" : "no", `\`${s.image}\``]);
  const cpuRows = CPU_SIZES.map((s) => [`\`${s.slug}\``, `${s.vcpu} ${s.dedicatedCpu ? "dedicated" : "shared"} vCPU`, `${s.ramGiB} GiB`, `$${s.pricePerMonth}/month${s.sources.price.verified ? "" : " ⚠"}`, "all", "-", `\`${s.image}\``]);
  return mdTable(["size", "compute", "RAM", "price", "regions", "FP8", "image"], [...gpuRows, ...cpuRows]);
}

/** The API surface per situation: which program answers each path, where, and what stands in. */
export function routesTable(): string {
  const situations: [string, Record<string, unknown>][] = [
    ["gpu, or hybrid with the GPU on", { tier: "hybrid", gpuEnabled: true }],
    ["hybrid, GPU off", { tier: "hybrid", gpuEnabled: false }],
    ["cpu", { tier: "cpu" }],
  ];
  const rows: string[][] = [];
  for (const [label, settings] of situations) {
    const loaded = loadHubConfig(engineConfig(settings));
    if (!loaded.ok) throw new Error(`${label} does not validate`);
    for (const route of routeTable(loaded.config)) {
      const where = (b: { service: string; node: string; address: { kind: string } }) => `${b.service} on ${b.node}${b.address.kind === "vpc" ? " (VPC)" : ""}`;
      const primary = route.primary.length ? route.primary.map(where).join(", ") : "—";
      const fallback = route.fallback === undefined ? "—" : route.fallback === "gpu-off" ? "503 `gpu_off` JSON error" : where(route.fallback);
      rows.push([label, route.paths.map((p) => `\`${p}${route.prefix ? "*" : ""}\``).join(" "), route.description, primary, fallback]);
    }
  }
  return mdTable(["situation", "paths", "service", "answered by", "when that is down"], rows);
}

export function imagesTable(): string {
  const images = [TRAEFIK_IMAGE, ERRORS_IMAGE, NODE_IMAGE, ...IMAGES, ...MONITORING_IMAGES];
  return mdTable(["image", "source of the pin"], images.map((i) => [`\`${imageName(i)}\``, i.source.replace(/\|/g, "/")]));
}

export const README_SECTIONS: Record<string, () => string> = {
  tiers: tierTable,
  routes: routesTable,
  images: imagesTable,
  settings: settingsTable,
  models: modelTable,
  sizes: sizeTable,
};

/** Replaces every `<!-- generated:NAME -->` ... `<!-- /generated:NAME -->` block. */
export function renderReadme(current: string): string {
  let text = current;
  for (const [name, render] of Object.entries(README_SECTIONS)) {
    const pattern = new RegExp(`(<!-- generated:${name} -->)[\\s\\S]*?(<!-- /generated:${name} -->)`);
    if (!pattern.test(text)) throw new Error(`README.md has no generated:${name} block`);
    text = text.replace(pattern, (_m, open: string, close: string) => `${open}\n${render()}\n${close}`);
  }
  return text;
}

export function renderPulumiYaml(): string {
  const config: Record<string, { type: string; description: string; items?: { type: string }; secret?: boolean }> = {};
  for (const name of SETTING_NAMES) {
    const spec = SETTINGS[name];
    config[name] = spec.type === "array" ? { type: "array", items: { type: "string" }, description: spec.description } : { type: spec.type, description: spec.description };
  }
  for (const [name, spec] of Object.entries(SECRET_SETTINGS)) config[name] = { type: spec.type, description: spec.description, secret: true };
  const project = {
    name: PROJECT,
    description: "Self-hosted AI inference hub on DigitalOcean: CPU gateway and speech/OCR node, on-demand vLLM GPU node, persistent model cache.",
    runtime: { name: "nodejs", options: { typescript: true } },
    main: "infra/",
    config,
  };
  return `# Generated by \`npm run docs\` from stacks/settings.ts: edit there, not here.\n${stringify(project, { lineWidth: 0 })}`;
}
