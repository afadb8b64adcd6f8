import { readFileSync } from "node:fs";
import * as path from "node:path";
import { ROOT } from "./load";

interface LlamaOption {
  readonly names: readonly string[];
  readonly negative?: readonly string[];
  readonly value: boolean;
  readonly env?: string;
}

interface LlamaReference {
  readonly tag: string;
  readonly choices: Readonly<Record<string, readonly string[]>>;
  readonly options: readonly LlamaOption[];
}

export const LLAMA_REFERENCE_FILE = path.join(ROOT, "test/fixtures/llama-cpp/server-args-b10573.json");
export const LLAMA_REFERENCE = JSON.parse(readFileSync(LLAMA_REFERENCE_FILE, "utf8")) as LlamaReference;

/**
 * Problems with an argument list for llama-server, checked against its own option table
 * (test/fixtures/llama-cpp/): every flag known by its exact name, a value after each flag that
 * takes one and none after a switch, and choice values from the documented set.
 */
export function llamaServerArgProblems(args: readonly string[]): string[] {
  const problems: string[] = [];
  const byName = new Map<string, { option: LlamaOption; takesValue: boolean }>();
  for (const option of LLAMA_REFERENCE.options) {
    for (const name of option.names) byName.set(name, { option, takesValue: option.value });
    for (const name of option.negative ?? []) byName.set(name, { option, takesValue: false });
  }
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const known = byName.get(arg);
    if (!known) {
      problems.push(
        arg.startsWith("-")
          ? `${arg} is not an option of llama-server ${LLAMA_REFERENCE.tag}`
          : `stray value ${JSON.stringify(arg)} at position ${i}`,
      );
      continue;
    }
    if (!known.takesValue) {
      if (i + 1 < args.length && !args[i + 1].startsWith("-")) {
        problems.push(`${arg} takes no value but is followed by ${JSON.stringify(args[i + 1])}`);
        i++;
      }
      continue;
    }
    const value = args[i + 1];
    if (value === undefined || (value.startsWith("-") && !/^-\d/.test(value))) {
      problems.push(`${arg} needs a value`);
      continue;
    }
    const choiceKey = known.option.names.find((n) => LLAMA_REFERENCE.choices[n]);
    if (choiceKey && !LLAMA_REFERENCE.choices[choiceKey].includes(value))
      problems.push(`${arg} ${value} is not one of ${LLAMA_REFERENCE.choices[choiceKey].join(", ")}`);
    i++;
  }
  return problems;
}
