import { parseArgs, type ParseArgsConfig } from "node:util";

/**
 * The benchmarks' options, one way for all of them: `--help` prints the usage and exits 0; an
 * unknown or malformed option prints the reason and the usage and exits 1.
 */
export function benchArgs<T extends NonNullable<ParseArgsConfig["options"]>>(
  name: string,
  usage: string,
  options: T,
  allowPositionals = false,
) {
  try {
    const parsed = parseArgs({
      options: { ...options, help: { type: "boolean", short: "h" } },
      strict: true,
      allowPositionals,
    });
    if ((parsed.values as { help?: boolean }).help) {
      process.stdout.write(`${usage}\n`);
      process.exit(0);
    }
    return parsed;
  } catch (err) {
    process.stderr.write(`${name}: ${(err as Error).message}\n${usage}\n`);
    process.exit(1);
  }
}
