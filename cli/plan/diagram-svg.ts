import { existsSync } from "node:fs";
import * as path from "node:path";

/**
 * SVG from the Mermaid text, drawn by Mermaid's own renderer (the pinned package's browser bundle)
 * in a headless Chromium driven by playwright-core. Mermaid lays a diagram out by measuring text,
 * which needs a real browser: jsdom has no layout. Nothing is downloaded: the page loads only
 * the bundle from node_modules, and Chromium is the system's (Debian's `chromium`), or
 * HUB_CHROMIUM. Mermaid's CLI is not used: it installs Puppeteer, which downloads its own Chrome.
 */

const PROJECT_ROOT = path.resolve(__dirname, "../..");
/** Where Debian and Ubuntu install Chromium. */
const CHROMIUM_PATHS = ["/usr/bin/chromium", "/usr/bin/chromium-browser"];

export class SvgUnavailable extends Error {
  override name = "SvgUnavailable";
}

/** The Chromium the SVG is drawn with, or undefined when this machine has none. */
export function findChromium(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env.HUB_CHROMIUM) return existsSync(env.HUB_CHROMIUM) ? env.HUB_CHROMIUM : undefined;
  return CHROMIUM_PATHS.find((p) => existsSync(p));
}

/** Mermaid's self-contained browser bundle, from the pinned package. */
export function mermaidBundlePath(): string {
  return path.join(PROJECT_ROOT, "node_modules", "mermaid", "dist", "mermaid.min.js");
}

export async function renderSvg(mermaidText: string): Promise<string> {
  return (await renderSvgs([mermaidText]))[0];
}

/** Several diagrams, drawn in one Chromium (it takes a second or two to start). */
export async function renderSvgs(mermaidTexts: readonly string[]): Promise<string[]> {
  const executablePath = findChromium();
  if (!executablePath)
    throw new SvgUnavailable(
      "SVG needs a Chromium to lay the diagram out, and none was found (/usr/bin/chromium, or HUB_CHROMIUM). Install Debian's: apt-get install chromium; or write a .mmd or .md file instead.",
    );
  const { chromium } = await import("playwright-core");
  // As root (CI, containers) Chromium's sandbox cannot start; the page only ever loads local text.
  const browser = await chromium.launch({ executablePath, args: ["--no-sandbox"], timeout: 60_000 });
  try {
    const page = await browser.newPage();
    // Nothing leaves the machine: any request the page makes is refused.
    await page.route("**/*", (route) => route.abort());
    await page.setContent("<!doctype html><html><body></body></html>");
    await page.addScriptTag({ path: mermaidBundlePath() });
    const svgs: string[] = [];
    for (const text of mermaidTexts) {
      // Runs in the page (a DOM this project's TypeScript has no types for), hence a string.
      const svg: unknown = await page.evaluate(`(async (text) => {
        // Labels as SVG <text>, not HTML in <foreignObject>: any SVG viewer (librsvg, an <img> on GitHub) draws them.
        // Tight spacing and 150 px wrapping keep the tiers' pictures under ~1,170 px wide, so 16 px text
        // stays >= 12 px when a README column (~880 px) scales them down.
        mermaid.initialize({ startOnLoad: false, securityLevel: "strict", htmlLabels: false, flowchart: { htmlLabels: false, wrappingWidth: ${WRAPPING_WIDTH_PX}, nodeSpacing: 20, rankSpacing: 24, padding: 8, diagramPadding: 8 } });
        const { svg } = await mermaid.render("hub-diagram", text);
        const holder = document.createElement("div");
        holder.innerHTML = svg;
        // Mermaid writes each word as its own <tspan> (" 80," after "tcp"); viewers that trim each
        // tspan's edge spaces (librsvg) glue the words. One text node per line keeps the spaces.
        for (const row of holder.querySelectorAll("tspan.text-outer-tspan")) row.textContent = row.textContent;
        // Serialized as XML, the file opens in any SVG viewer.
        return new XMLSerializer().serializeToString(holder.querySelector("svg"));
      })(${JSON.stringify(text)})`);
      if (typeof svg !== "string" || !svg.startsWith("<svg")) throw new Error("Mermaid returned no SVG");
      svgs.push(svg);
    }
    return svgs;
  } finally {
    await browser.close();
  }
}

/** Where Mermaid wraps a label line (its default is 200). */
const WRAPPING_WIDTH_PX = 150;
