import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import * as ts from "typescript";
import { parse, stringify } from "yaml";
import { afterAll, describe, expect, it } from "vitest";
import type { Command, Option } from "commander";
import { buildProgram, runHub } from "../cli/hub/cli";
import { SECRET_SETTINGS, SETTING_NAMES, TIERS } from "../stacks/settings";
import { runScriptToEnd, runToEnd } from "./helpers/cli";
import {
  anchors,
  codeBlocks,
  docFiles,
  inlineCode,
  isPlaceholder,
  links,
  shellCommands,
  withoutPlaceholders,
  type CodeBlock,
} from "./helpers/doc-blocks";
import { fakeHub } from "./helpers/hub-deps";
import { ROOT } from "./helpers/load";

/**
 * Every command in README.md and docs/*.md: run here when it can run offline (plans, recipes,
 * --help), otherwise parsed (bash -n, Python's ast, TypeScript's parser, YAML, JSON) and checked
 * against the programs themselves: an `npm run` script that exists, a hub command and flags the
 * commander program has, a script flag its --help names, a `pulumi config set` key the stack
 * accepts. Every internal link and anchor resolves.
 */

const DOCS = docFiles(ROOT);
const BLOCKS = DOCS.flatMap(codeBlocks);
const SHELL = new Set(["sh", "bash", "shell"]);
const SCRIPTS = Object.keys(
  (JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8")) as { scripts: Record<string, string> }).scripts,
);
const NPM_BUILTINS = new Set(["ci", "test", "install", "ls", "run"]);
const KNOWN_SETTINGS = new Set<string>([...SETTING_NAMES, ...Object.keys(SECRET_SETTINGS)]);
const tally = { run: 0, parsed: 0, notChecked: 0 };
const where = (b: { file: string; line: number }) => `${b.file}:${b.line}`;

afterAll(() => {
  // The figure for the docs' coverage: how many commands ran, how many were only checked.
  console.log(
    `doc commands: ${tally.run} run, ${tally.parsed} parsed and checked, ${tally.notChecked} blocks not checked (output samples, SQL, Mermaid: diagram.test.ts)`,
  );
});

// ---- npm run: scripts, hub commands and flags -------------------------------------------------

interface NpmRun {
  readonly script: string;
  readonly args: readonly string[];
}

function npmRun(words: readonly string[]): NpmRun | undefined {
  if (words[0] !== "npm" || words[1] !== "run") return undefined;
  const rest = words.slice(2).filter((w) => w !== "-s" && w !== "--silent");
  const dash = rest.indexOf("--");
  return { script: rest[0], args: dash < 0 ? [] : rest.slice(dash + 1) };
}

const program = buildProgram(fakeHub(), () => undefined);
const longFlags = (cmd: Command) =>
  new Set(cmd.options.map((o: Option) => o.long).filter((l): l is string => Boolean(l)));
const takesValue = (cmd: Command, flag: string) =>
  cmd.options.some((o: Option) => o.long === flag && (o.required || o.optional));
const PASSTHROUGH_SCRIPTS = new Set(["plan", "simulate", "smoke", "grafana", "bench"]);

/** The flags a script's own --help names (its parser refuses any other). */
const helpFlags = new Map<string, Set<string>>();
function flagsInHelp(key: string, runner: string, args: readonly string[]): Set<string> {
  if (!helpFlags.has(key)) {
    const run = spawnSync(process.execPath, [path.join(ROOT, "cli/run.cjs"), runner, ...args, "--help"], {
      cwd: ROOT,
      encoding: "utf8",
      timeout: 60_000,
    });
    const text = `${run.stdout}${run.stderr}`;
    if (run.status !== 0)
      throw new Error(
        `npm run ${runner} -- ${[...args, "--help"].join(" ")} exited ${run.status}: ${text.slice(0, 300)}`,
      );
    helpFlags.set(key, new Set([...text.matchAll(/--[a-z][\w-]*/g)].map((m) => m[0])));
  }
  return helpFlags.get(key)!;
}

/** Problems with one `npm run` command as the docs write it; empty when it names real things. */
function npmProblems(run: NpmRun): string[] {
  if (!SCRIPTS.includes(run.script))
    return [`npm run ${run.script}: no such script in package.json (${SCRIPTS.join(", ")})`];
  const flagsOf = (args: readonly string[]) =>
    args
      .filter((a) => a.startsWith("--") && a !== "--" && a !== "--help")
      .map((a) => a.split("=")[0])
      .filter((a) => !isPlaceholder(a));
  if (run.script === "hub") return hubProblems(run.args);
  if (run.script === "bench") {
    const sub = run.args[0] && !run.args[0].startsWith("-") ? run.args[0] : undefined;
    const known = flagsInHelp(`bench ${sub ?? ""}`, "bench", sub ? [sub] : []);
    return flagsOf(run.args)
      .filter((f) => !known.has(f))
      .map((f) => `npm run bench -- ${sub ?? ""}: ${f} is not in its --help`);
  }
  if (["plan", "simulate", "smoke", "grafana", "plan-diff"].includes(run.script)) {
    const known = flagsInHelp(run.script, run.script, []);
    return flagsOf(run.args)
      .filter((f) => !known.has(f))
      .map((f) => `npm run ${run.script}: ${f} is not in its --help`);
  }
  return [];
}

/** Walks the commander program as it parses: each word a subcommand, an option's value, or an argument. */
function hubProblems(args: readonly string[]): string[] {
  let level: Command = program;
  const problems: string[] = [];
  const named: string[] = ["hub"];
  for (let i = 0; i < args.length; i++) {
    const word = args[i];
    if (isPlaceholder(word)) {
      // `plan|simulate|...`, `<command>`: every alternative must be a command.
      if (level.commands.length && /^[\w-]+(\|[\w-]+)+$/.test(word))
        for (const alt of word.split("|"))
          if (!level.commands.some((c) => c.name() === alt)) problems.push(`hub ${alt}: no such command`);
      if (level.commands.length) return problems;
      continue;
    }
    const passthrough = PASSTHROUGH_SCRIPTS.has(level.name()) || level.name() === "finetune";
    if (word.startsWith("--")) {
      const flag = word.split("=")[0];
      if (flag === "--help") continue;
      if (passthrough) {
        const known =
          level.name() === "finetune"
            ? flagsInHelp("hub finetune", "hub", ["finetune"])
            : flagsInHelp(level.name(), level.name(), []);
        if (!known.has(flag)) problems.push(`${named.join(" ")}: ${flag} is not in its --help`);
        continue;
      }
      if (!longFlags(level).has(flag))
        problems.push(`${named.join(" ")}: no option ${flag} (it has ${[...longFlags(level)].join(", ") || "none"})`);
      else if (takesValue(level, flag) && !word.includes("=")) i++;
      continue;
    }
    if (word.startsWith("-")) continue;
    if (passthrough) continue;
    const next = level.commands.find((c) => c.name() === word || c.aliases().includes(word));
    if (next) {
      level = next;
      named.push(word);
    } else if (level.commands.length) {
      problems.push(`${named.join(" ")} ${word}: no such command (${level.commands.map((c) => c.name()).join(", ")})`);
      return problems;
    }
  }
  return problems;
}

// ---- recipes: `pulumi config set` onto a copy of the stack file ---------------------------------

type Overrides = Map<string, Map<string, unknown>>;

interface ConfigSet {
  readonly key: string;
  readonly path: boolean;
  readonly secret: boolean;
  readonly value?: string;
  readonly stack?: string;
}

function pulumiConfigSet(words: readonly string[]): ConfigSet | undefined {
  if (words[0] !== "pulumi" || words[1] !== "config" || words[2] !== "set") return undefined;
  const positional: string[] = [];
  let stack: string | undefined;
  let secret = false;
  let isPath = false;
  for (let i = 3; i < words.length; i++) {
    if (words[i] === "--stack" || words[i] === "-s") stack = words[++i];
    else if (words[i] === "--secret") secret = true;
    else if (words[i] === "--path") isPath = true;
    else if (!words[i].startsWith("-")) positional.push(words[i]);
  }
  return { key: positional[0], value: positional[1], stack, secret, path: isPath };
}

function applyConfigSet(overrides: Overrides, set: ConfigSet): void {
  // Only what can be written as the docs give it: no secret, no placeholder, a named stack.
  if (!set.stack || set.secret || set.value === undefined || isPlaceholder(set.value)) return;
  const perStack = overrides.get(set.stack) ?? new Map<string, unknown>();
  overrides.set(set.stack, perStack);
  const indexed = /^(\w+)\[(\d+)\]$/.exec(set.key);
  if (set.path && indexed) {
    const list = [...((perStack.get(indexed[1]) as string[] | undefined) ?? [])];
    list[Number(indexed[2])] = set.value;
    perStack.set(indexed[1], list);
  } else perStack.set(set.key, set.value);
}

const baseKey = (key: string) => key.replace(/^inference-hub:/, "").split(/[[.]/)[0];

// ---- what runs ------------------------------------------------------------------------------

interface Runnable {
  readonly at: string;
  readonly shown: string;
  readonly script: string;
  readonly args: readonly string[];
  /** The stack file the plan reads instead of the shipped one (a recipe's changes applied). */
  readonly stackFile?: { readonly stack: string; readonly settings: Map<string, unknown> };
}

const SHIPPED = new Set<string>(TIERS);

/** A plan the docs show, rewritten to run here: output files into a temporary directory. */
function runnablePlan(run: NpmRun, overrides: Overrides): Omit<Runnable, "at" | "shown"> | undefined {
  const args = [...run.args];
  if (args.includes("--help")) return { script: run.script, args };
  // The modelled wake, stage by stage: offline and quick.
  if (
    run.script === "simulate" &&
    args[0] === "--compare-stages" &&
    args.every((a, i) => i === 0 || (a === "--stack" ? SHIPPED.has(args[i + 1]) : args[i - 1] === "--stack"))
  )
    return { script: run.script, args };
  if (run.script !== "plan" || args.some(isPlaceholder) || args.includes("--config-file")) return undefined;
  const stackAt = args.indexOf("--stack");
  const stack = stackAt >= 0 ? args[stackAt + 1] : undefined;
  if (!stack || !SHIPPED.has(stack)) return undefined;
  const diagram = args.indexOf("--diagram");
  // SVG needs Chromium and 5-25 s: diagram.test.ts draws one; here it is checked, not run.
  if (diagram >= 0 && args[diagram + 1].endsWith(".svg")) return undefined;
  const settings = overrides.get(stack);
  return { script: "plan", args, stackFile: settings?.size ? { stack, settings: new Map(settings) } : undefined };
}

/** Everything the docs' shell blocks would run, in order, with the recipe state at that point. */
function shellRunnables(): Runnable[] {
  const runnables: Runnable[] = [];
  for (const doc of DOCS) {
    const overrides: Overrides = new Map();
    for (const block of codeBlocks(doc).filter((b) => SHELL.has(b.lang))) {
      for (const words of shellCommands(block.code)) {
        const set = pulumiConfigSet(words);
        if (set) applyConfigSet(overrides, set);
        const run = npmRun(words);
        const runnable = run && runnablePlan(run, overrides);
        if (run && runnable) runnables.push({ at: where(block), shown: words.join(" "), ...runnable });
      }
    }
  }
  return runnables;
}

async function runDocCommand(r: Runnable, dir: string): Promise<{ status: number | null; output: string }> {
  if (r.script === "hub") {
    const deps = fakeHub();
    const status = await runHub(r.args, deps);
    return { status, output: deps.stdout() + deps.stderr() };
  }
  const args = [...r.args];
  for (const flag of ["--out", "--diagram"]) {
    const i = args.indexOf(flag);
    if (i >= 0) args[i + 1] = path.join(dir, `${flag.slice(2)}-${path.basename(args[i + 1])}`);
  }
  if (r.stackFile) {
    const file = path.join(dir, `recipe-${Math.random().toString(36).slice(2)}`, `Pulumi.${r.stackFile.stack}.yaml`);
    const shipped = parse(readFileSync(path.join(ROOT, `Pulumi.${r.stackFile.stack}.yaml`), "utf8")) as {
      config: Record<string, unknown>;
    };
    for (const [key, value] of r.stackFile.settings) shipped.config[`inference-hub:${baseKey(key)}`] = value;
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, stringify(shipped));
    const at = args.indexOf("--stack");
    args.splice(at, 2, "--config-file", file);
  }
  const run = await runScriptToEnd(r.script, args);
  return { status: run.status, output: run.stdout + run.stderr };
}

// ---- the tests ------------------------------------------------------------------------------

describe("the commands in README.md and docs/ that can run here", () => {
  const runnables = shellRunnables();
  const seen = new Set<string>();
  const unique = runnables.filter((r) => {
    const key = `${r.script} ${r.args.join(" ")} ${r.stackFile ? JSON.stringify([...r.stackFile.settings]) : ""}`;
    return !seen.has(key) && (seen.add(key), true);
  });
  const dir = mkdtempSync(path.join(tmpdir(), "doc-commands-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("include the quick start's plans and its TLS recipe", () => {
    const readme = unique.filter((r) => r.at.startsWith("README.md"));
    expect(readme.some((r) => r.script === "plan" && r.args.includes("hybrid") && !r.stackFile)).toBe(true);
    const tls = readme.find((r) => r.stackFile?.settings.has("domain"));
    expect(tls, "the quick start plans the stack with domain and acmeEmail set").toBeDefined();
    expect(tls!.stackFile!.settings.get("acmeEmail")).toBeDefined();
  });

  it("refuse the GPU working hours recipe without its budget line: the recipe's fix is needed", async () => {
    const recipe = unique.find((r) => r.stackFile?.settings.has("gpuWindows"));
    expect(recipe?.stackFile?.settings.has("budgetUsd"), "docs/operations.md's recipe raises budgetUsd").toBe(true);
    const settings = new Map(recipe!.stackFile!.settings);
    settings.delete("budgetUsd");
    const { status, output } = await runDocCommand(
      { ...recipe!, stackFile: { stack: recipe!.stackFile!.stack, settings } },
      dir,
    );
    expect(status).toBe(1);
    expect(output).toMatch(/budgetUsd = 400: the projected month is \$[\d,.]+/);
  }, 120_000);

  it.each(
    unique.map(
      (r) =>
        [
          `${r.at}: ${r.shown}${r.stackFile ? ` (after ${[...r.stackFile.settings.keys()].join(", ")})` : ""}`,
          r,
        ] as const,
    ),
  )(
    "%s",
    async (_label, r) => {
      tally.run++;
      const { status, output } = await runDocCommand(r, dir);
      expect(status, output.slice(-2000)).toBe(0);
      if (r.args.includes("--help")) expect(output).toMatch(/usage/i);
      else expect(output).not.toMatch(/is refused/);
    },
    120_000,
  );
});

describe("the commands in README.md and docs/ that cannot run here", () => {
  const shellBlocks = BLOCKS.filter((b) => SHELL.has(b.lang));

  it.each(shellBlocks.map((b) => [where(b), b] as const))(
    "%s: bash parses it, and every npm run and pulumi config set names real things",
    async (_at, block) => {
      const syntax = await runToEnd("bash", ["-n"], { input: withoutPlaceholders(block.code) });
      expect(syntax.status, syntax.stderr).toBe(0);
      const problems: string[] = [];
      for (const words of shellCommands(block.code)) {
        tally.parsed++;
        if (words[0] === "npm" && !NPM_BUILTINS.has(words[1]))
          problems.push(`npm ${words[1]}: not an npm command the docs should use`);
        const run = npmRun(words);
        if (run) problems.push(...npmProblems(run));
        const set = pulumiConfigSet(words);
        if (set?.key && !isPlaceholder(set.key) && !KNOWN_SETTINGS.has(baseKey(set.key)))
          problems.push(`pulumi config set ${set.key}: not a setting of this stack (docs/configuration.md)`);
      }
      expect(problems).toEqual([]);
    },
  );

  it("every `npm run ...` in inline code names a script, and hub commands and flags that exist", () => {
    const problems: string[] = [];
    for (const doc of DOCS)
      for (const span of inlineCode(doc).filter((s) => s.startsWith("npm run "))) {
        for (const words of shellCommands(span)) {
          const run = npmRun(words);
          if (run) problems.push(...npmProblems(run).map((p) => `${doc.file}: \`${span}\`: ${p}`));
        }
      }
    expect(problems).toEqual([]);
  });

  const python = spawnSync("python3", ["--version"]).status === 0;
  if (!python)
    console.warn("doc tests: python3 not found, the Python examples are not parsed (.ci/install-system installs it)");
  it.runIf(!python && process.env.CI === "true")("python3 is installed (required in CI)", () => {
    expect(python).toBe(true);
  });
  it.runIf(python)("every Python example parses (Python's own ast)", async () => {
    const blocks = BLOCKS.filter((b) => b.lang === "python");
    expect(blocks.length).toBeGreaterThan(0);
    const check = await runToEnd(
      "python3",
      ["-c", "import ast, json, sys\nfor b in json.load(sys.stdin):\n    ast.parse(b)"],
      { input: JSON.stringify(blocks.map((b) => b.code)) },
    );
    expect(check.status, check.stderr).toBe(0);
    tally.parsed += blocks.length;
  });

  it.each(
    BLOCKS.filter((b) => ["js", "javascript", "ts", "typescript"].includes(b.lang)).map((b) => [where(b), b] as const),
  )("%s: JavaScript/TypeScript parses (TypeScript's parser)", (_at, block: CodeBlock) => {
    const out = ts.transpileModule(block.code, {
      fileName: block.lang.startsWith("t") ? "example.ts" : "example.mjs",
      reportDiagnostics: true,
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, allowJs: true },
    });
    expect((out.diagnostics ?? []).map((d) => ts.flattenDiagnosticMessageText(d.messageText, "\n"))).toEqual([]);
    tally.parsed++;
  });

  it.each(BLOCKS.filter((b) => b.lang === "yaml" || b.lang === "json").map((b) => [where(b), b] as const))(
    "%s: YAML/JSON parses",
    (_at, block: CodeBlock) => {
      if (block.lang === "json") expect(() => JSON.parse(block.code)).not.toThrow();
      else expect(() => parse(block.code)).not.toThrow();
      tally.parsed++;
    },
  );

  it("leaves only output samples, SQL and Mermaid unchecked here", () => {
    const unchecked = BLOCKS.filter(
      (b) => !SHELL.has(b.lang) && !["python", "js", "javascript", "ts", "typescript", "yaml", "json"].includes(b.lang),
    );
    for (const b of unchecked) expect(["", "sql", "mermaid", "markdown", "text"], where(b)).toContain(b.lang);
    tally.notChecked += unchecked.length;
  });
});

describe("links in README.md and docs/", () => {
  const anchorsOf = new Map(DOCS.map((d) => [d.file, anchors(d)]));
  it.each(DOCS.map((d) => [d.file, d] as const))("%s: every internal link and anchor resolves", (_file, doc) => {
    const broken: string[] = [];
    for (const link of links(doc)) {
      if (/^[a-z]+:/i.test(link.target)) continue;
      const [target, anchor] = link.target.split("#");
      const file = target ? path.normalize(path.join(path.dirname(doc.file), decodeURIComponent(target))) : doc.file;
      if (!existsSync(path.join(ROOT, file))) {
        broken.push(`${link.target}: no file ${file}`);
        continue;
      }
      if (anchor === undefined || !file.endsWith(".md") || statSync(path.join(ROOT, file)).isDirectory()) continue;
      const known = anchorsOf.get(file) ?? anchors({ file, text: readFileSync(path.join(ROOT, file), "utf8") });
      if (!known.has(anchor)) broken.push(`${link.target}: ${file} has no heading #${anchor}`);
    }
    expect(broken).toEqual([]);
  });
});

describe("the README", () => {
  const readme = DOCS.find((d) => d.file === "README.md")!.text;
  it("is a guide a user reads in about ten minutes (under 300 lines and 2,500 words; reference in docs/)", () => {
    expect(readme.split("\n").length).toBeLessThan(300);
    expect(readme.split(/\s+/).filter(Boolean).length).toBeLessThan(2500);
  });

  it("shows the first API call with the official openai SDKs and curl, and points Continue and aider at the hub", () => {
    const langs = BLOCKS.filter((b) => b.file === "README.md").map((b) => `${b.lang}\n${b.code}`);
    expect(
      langs.some(
        (b) =>
          b.startsWith("python") &&
          b.includes("from openai import OpenAI") &&
          b.includes("stream=True") &&
          b.includes("audio.transcriptions") &&
          b.includes("audio.speech"),
      ),
    ).toBe(true);
    expect(langs.some((b) => b.startsWith("js") && b.includes('from "openai"'))).toBe(true);
    expect(langs.some((b) => b.startsWith("sh") && b.includes("curl") && b.includes("/chat/completions"))).toBe(true);
    expect(langs.some((b) => b.startsWith("yaml") && /provider: openai/.test(b) && /apiBase:/.test(b))).toBe(true);
    expect(
      langs.some(
        (b) => b.startsWith("sh") && b.includes("OPENAI_API_BASE") && b.includes("aider --model openai/coder"),
      ),
    ).toBe(true);
  });
});
