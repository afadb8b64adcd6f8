import { readdirSync, readFileSync } from "node:fs";
import * as path from "node:path";

/**
 * What the doc tests read out of README.md and docs/*.md: fenced code blocks, the shell commands
 * in them (and in inline code), headings as GitHub anchors them, and links.
 */

export interface DocFile {
  /** Relative to the project root, e.g. docs/api.md. */
  readonly file: string;
  readonly text: string;
}

export interface CodeBlock {
  readonly file: string;
  /** 1-based line of the opening fence. */
  readonly line: number;
  /** The info string's first word, lower case ("" when none). */
  readonly lang: string;
  readonly code: string;
}

export function docFiles(root: string): DocFile[] {
  const docs = readdirSync(path.join(root, "docs"))
    .filter((f) => f.endsWith(".md"))
    .sort()
    .map((f) => `docs/${f}`);
  return ["README.md", ...docs].map((file) => ({ file, text: readFileSync(path.join(root, file), "utf8") }));
}

/** Fenced blocks (``` or ~~~, indented inside list items too), with the indentation removed. */
export function codeBlocks(doc: DocFile): CodeBlock[] {
  const lines = doc.text.split("\n");
  const blocks: CodeBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^( *)(`{3,}|~{3,})\s*([\w+-]*)/.exec(lines[i]);
    if (!open) continue;
    const [, indent, fence, lang] = open;
    const body: string[] = [];
    let j = i + 1;
    while (j < lines.length && !new RegExp(`^ *${fence[0]}{${fence.length},}\\s*$`).test(lines[j]))
      body.push(lines[j++].slice(indent.length));
    blocks.push({ file: doc.file, line: i + 1, lang: lang.toLowerCase(), code: body.join("\n") });
    i = j;
  }
  return blocks;
}

/** The text outside fenced blocks (for headings, links and inline code). */
export function prose(doc: DocFile): string {
  const lines = doc.text.split("\n");
  const kept: string[] = [];
  let fence: string | undefined;
  for (const line of lines) {
    const marker = /^ *(`{3,}|~{3,})/.exec(line)?.[1];
    if (marker && (!fence || (marker[0] === fence[0] && marker.length >= fence.length && /^ *[`~]+\s*$/.test(line)))) {
      fence = fence ? undefined : marker;
      kept.push("");
      continue;
    }
    kept.push(fence ? "" : line);
  }
  return kept.join("\n");
}

/** GitHub's heading anchors: lower case, formatting and punctuation dropped, spaces to hyphens, repeats numbered. */
export function anchors(doc: DocFile): Set<string> {
  const seen = new Map<string, number>();
  const result = new Set<string>();
  for (const match of prose(doc).matchAll(/^#{1,6} +(.+?) *#* *$/gm)) {
    const text = match[1]
      .replace(/`/g, "")
      .replace(/\[([^\]]*)\]\([^)]*\)/g, "$1")
      .replace(/[*_]{1,2}([^*_]+)[*_]{1,2}/g, "$1");
    const base = text
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, "")
      .replace(/ /g, "-");
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    result.add(n === 0 ? base : `${base}-${n}`);
  }
  return result;
}

export interface Link {
  readonly file: string;
  readonly target: string;
}

/** Markdown links and images outside code, with their targets as written. */
export function links(doc: DocFile): Link[] {
  const text = prose(doc).replace(/`[^`\n]*`/g, "");
  return [...text.matchAll(/!?\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)].map((m) => ({ file: doc.file, target: m[1] }));
}

/** Inline code spans outside fenced blocks. */
export function inlineCode(doc: DocFile): string[] {
  return [...prose(doc).matchAll(/`([^`\n]+)`/g)].map((m) => m[1]);
}

/**
 * The simple commands of a shell script, as word lists: line continuations joined, comments
 * dropped, split at `&&`, `||`, `;` and `|`, quotes removed, `$(...)` contents as commands of their
 * own, redirections dropped. Enough for the commands docs show; `bash -n` checks the syntax.
 */
export function shellCommands(script: string): string[][] {
  const joined = withoutPlaceholders(script).replace(/\\\n/g, " ");
  const commands: string[][] = [];
  for (const line of joined.split("\n")) {
    for (const inner of line.matchAll(/\$\(([^()]*)\)/g)) commands.push(...shellCommands(inner[1]));
    let words: string[] = [];
    let word = "";
    let inWord = false;
    const end = () => {
      if (inWord) words.push(word);
      word = "";
      inWord = false;
    };
    const flush = () => {
      end();
      if (words.length) commands.push(words);
      words = [];
    };
    const text = line.replace(/\$\(([^()]*)\)/g, "SUBSTITUTED");
    for (let i = 0; i < text.length; i++) {
      const c = text[i];
      if (c === "'" || c === '"') {
        const close = text.indexOf(c, i + 1);
        word += text.slice(i + 1, close < 0 ? text.length : close);
        inWord = true;
        i = close < 0 ? text.length : close;
      } else if (c === "\\" && i + 1 < text.length) {
        word += text[++i];
        inWord = true;
      } else if (c === "#" && !inWord) {
        break;
      } else if (c === ";" || c === "|" || c === "&") {
        flush();
        if (text[i + 1] === c) i++;
      } else if (c === ">" || c === "<") {
        end();
        // A redirection's target is not a word of the command.
        while (text[i + 1] === ">" || text[i + 1] === "&") i++;
        while (text[i + 1] === " ") i++;
        while (i + 1 < text.length && !/[\s;&|]/.test(text[i + 1])) i++;
      } else if (/\s/.test(c)) {
        end();
      } else {
        word += c;
        inWord = true;
      }
    }
    flush();
  }
  // Leading VAR=value assignments are the command's environment, not the command.
  return commands
    .map((words) => words.slice(words.findIndex((w) => !/^[A-Za-z_][A-Za-z0-9_]*=/.test(w))))
    .filter((w) => w.length > 0 && !w.every((x) => /^[A-Za-z_][A-Za-z0-9_]*=/.test(x)));
}

/** `<cpu private ip>` as one word bash and the tokenizer read as such (docs write placeholders in angle brackets). */
export const withoutPlaceholders = (script: string) =>
  script.replace(/<([A-Za-z][^<>\n]*)>/g, (_m, inner: string) => `PLACEHOLDER:${inner.replace(/\W+/g, "_")}`);

/** A word or value the docs write as a placeholder (`<stack>`, `ihk_...`, `[--watch]`, `a|b`). */
export const isPlaceholder = (word: string) => /[<>[\]|]|\.\.\.|SUBSTITUTED|PLACEHOLDER|\$/.test(word);
