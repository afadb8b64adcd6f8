import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { parse as parseYaml } from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pictureOf, renderMermaid, type Picture } from "../cli/plan/diagram";
import { findChromium, renderSvgs } from "../cli/plan/diagram-svg";
import type { PlanArtifact } from "../cli/plan/document";
import { planFromFile, stackFilePath } from "../cli/plan/runner";
// The droplet tiers: the k8s tier has no droplet picture (docs/kubernetes.md draws the cluster).
import { DIAGRAM_TIERS as TIERS, svgDiagrams } from "../cli/docs/generate";
import { ROOT } from "./helpers/load";

// Typed by hand, as in diagram.test.ts: only the constructor is used.
const { JSDOM } = createRequire(__filename)("jsdom") as {
  JSDOM: new (text: string, options?: object) => { window: { document: XmlDocument } };
};
interface XmlElement {
  readonly textContent: string | null;
  getAttribute(name: string): string | null;
}
interface XmlDocument {
  readonly documentElement: XmlElement & { localName: string };
  querySelectorAll(selector: string): Iterable<XmlElement>;
}

/** README column width on GitHub, and the smallest text a reader should have to read there. */
const README_WIDTH_PX = 880;
const MIN_FONT_PX = 12;

/** Every label of a Mermaid text (quoted, entity-escaped, lines joined by <br/>), line by line. */
function labelLines(mermaid: string): string[] {
  const unescapeEntities = (s: string) =>
    s
      .replace(/#quot;/g, '"')
      .replace(/#lt;/g, "<")
      .replace(/#gt;/g, ">")
      .replace(/#amp;/g, "&");
  return [...mermaid.matchAll(/"([^"]*)"/g)]
    .flatMap((m) => m[1].split("<br/>"))
    .map(unescapeEntities)
    .filter((l) => l.trim() !== "");
}
const squash = (s: string) => s.replace(/\s+/g, "");

const planned = new Map<string, { picture: Picture; mermaid: string; artifacts: readonly PlanArtifact[] }>();
beforeAll(async () => {
  for (const tier of TIERS) {
    const result = await planFromFile(tier, stackFilePath(tier));
    if (!result.ok) throw new Error(`${tier} refused`);
    const picture = pictureOf(result.document, result.artifacts);
    planned.set(tier, { picture, mermaid: renderMermaid(picture, { compact: true }), artifacts: result.artifacts });
  }
}, 120_000);

describe("the picture has every container with its edges", () => {
  it("Prometheus to each container its configuration scrapes by name", () => {
    for (const tier of TIERS) {
      const { picture, artifacts } = planned.get(tier)!;
      // Read from the rendered prometheus.yml, not from the diagram code.
      const config = parseYaml(artifacts.find((a) => a.kind === "prometheus-config")!.content) as {
        scrape_configs: { static_configs?: { targets: string[] }[] }[];
      };
      const byName = config.scrape_configs
        .flatMap((j) => (j.static_configs ?? []).flatMap((g) => g.targets))
        .map((t) => t.split(":")[0])
        .filter((h) => h !== "localhost");
      expect(byName.length, tier).toBeGreaterThan(3);
      const prometheus = picture.containers.find((c) => c.name === "prometheus")!;
      const scraped = picture.scrapes
        .filter((s) => s.from === prometheus.id)
        .map((s) => picture.containers.find((c) => c.id === s.to)?.name);
      for (const name of byName) expect(scraped, `${tier}: ${name}`).toContain(name);
    }
  });

  it("Prometheus to the node exporter of each droplet, by its address in the file_sd targets", () => {
    for (const tier of TIERS.filter((t) => t !== "local")) {
      const { picture } = planned.get(tier)!;
      const droplets = picture.hosts.filter((h) => h.kind === "droplet");
      expect(droplets.length, tier).toBeGreaterThan(0);
      for (const h of droplets) {
        const exporter = picture.containers.find((c) => c.host === h.id && c.name === "node-exporter")!;
        expect(
          picture.scrapes.some((s) => s.to === exporter.id && s.jobs.includes("node")),
          `${tier}: ${h.node}`,
        ).toBe(true);
      }
    }
  });

  it("the API client to the gateway's /v1", () => {
    for (const tier of TIERS) {
      const { picture, mermaid } = planned.get(tier)!;
      const gateway = picture.containers.find((c) => c.image.startsWith("traefik:"))!;
      expect(picture.client, tier).toEqual({ to: gateway.id, paths: ["/v1/*"] });
      expect(mermaid).toMatch(new RegExp(`src_client -->\\|"/v1/\\* with an API key"\\| ${gateway.id}`));
    }
  });
});

const chromium = findChromium();
const rsvg = spawnSync("rsvg-convert", ["--version"], { encoding: "utf8" }).status === 0;
if (!rsvg)
  console.warn(
    "diagram SVG rendering with librsvg skipped: no rsvg-convert (apt-get install librsvg2-bin; .ci/install-system does)",
  );
it.runIf(!rsvg && process.env.CI === "true")("rsvg-convert is installed (required in CI)", () => {
  expect(rsvg).toBe(true);
});

describe("the committed SVG pictures (docs/diagrams/, written by npm run docs)", () => {
  for (const tier of TIERS) {
    it(`${tier}: labels as SVG <text>, none in <foreignObject>, every label of the picture present`, () => {
      const file = path.join(ROOT, svgDiagrams(tier));
      expect(existsSync(file), `${file}: run npm run docs`).toBe(true);
      checkSvg(tier, readFileSync(file, "utf8"), planned.get(tier)!.mermaid);
    });
  }
});

/** Text as SVG <text> for every label line, no HTML labels, and legible at README width. */
function checkSvg(tier: string, svg: string, mermaid: string): void {
  expect(svg).not.toContain("<foreignObject");
  const xml = new JSDOM(svg, { contentType: "image/svg+xml" }).window.document;
  expect(xml.documentElement.localName).toBe("svg");
  const texts = [...xml.querySelectorAll("text")].map((t) => squash(t.textContent ?? ""));
  const lines = labelLines(mermaid);
  expect(lines.length, tier).toBeGreaterThan(20);
  // Mermaid wraps long lines into several rows of one <text>: compared without whitespace.
  for (const line of lines)
    expect(
      texts.some((t) => t.includes(squash(line))),
      `${tier}: "${line}"`,
    ).toBe(true);
  const width = Number(xml.documentElement.getAttribute("viewBox")?.split(/\s+/)[2]);
  const fontPx = Number(/#hub-diagram\{[^}]*font-size:(\d+(?:\.\d+)?)px/.exec(svg)?.[1]);
  expect(fontPx, tier).toBeGreaterThan(0);
  const shown = fontPx * Math.min(1, README_WIDTH_PX / width);
  expect(
    shown,
    `${tier}: ${fontPx} px text in a ${Math.round(width)} px wide picture reads at ${shown.toFixed(1)} px in a ${README_WIDTH_PX} px column`,
  ).toBeGreaterThanOrEqual(MIN_FONT_PX);
}

describe.skipIf(!chromium)("SVG drawn now by Mermaid in Chromium", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "hub-diagram-svg-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const svgs = new Map<string, string>();
  beforeAll(async () => {
    const drawn = await renderSvgs(TIERS.map((t) => planned.get(t)!.mermaid));
    TIERS.forEach((t, i) => svgs.set(t, drawn[i]));
  }, 180_000);

  it("has every label as SVG <text>, no <foreignObject>, legible at README width, for every tier", () => {
    for (const tier of TIERS) checkSvg(tier, svgs.get(tier)!, planned.get(tier)!.mermaid);
  });

  it.skipIf(!rsvg)(
    "renders with librsvg (rsvg-convert) to a PNG, the text drawing pixels of its own",
    () => {
      const pngWidth = (file: string) => readFileSync(file).readUInt32BE(16);
      for (const tier of TIERS) {
        const svg = svgs.get(tier)!;
        const withText = path.join(dir, `${tier}.svg`);
        const noText = path.join(dir, `${tier}-no-text.svg`);
        writeFileSync(withText, svg);
        writeFileSync(noText, svg.replace(/<text[\s\S]*?<\/text>/g, ""));
        for (const f of [withText, noText])
          execFileSync("rsvg-convert", [
            "--width",
            String(README_WIDTH_PX),
            "--background-color",
            "white",
            "--output",
            f.replace(/\.svg$/, ".png"),
            f,
          ]);
        const png = withText.replace(/\.svg$/, ".png");
        expect(readFileSync(png).subarray(1, 4).toString(), tier).toBe("PNG");
        expect(pngWidth(png), tier).toBe(README_WIDTH_PX);
        // The words are drawn: the picture without its <text> compresses to clearly fewer bytes.
        const bytes = statSync(png).size;
        const bytesNoText = statSync(noText.replace(/\.svg$/, ".png")).size;
        expect(bytes, tier).toBeGreaterThan(20_000);
        expect(bytes, `${tier}: ${bytes} bytes with text, ${bytesNoText} without`).toBeGreaterThan(bytesNoText * 1.3);
      }
    },
    120_000,
  );
});
