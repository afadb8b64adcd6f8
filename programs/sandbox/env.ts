/**
 * Reading a program's environment with every problem collected, each naming the variable and what
 * would be valid (the sandbox API's and the front's configs share it).
 */
export interface EnvReader {
  readonly problems: string[];
  text(name: string): string | undefined;
  integer(name: string, fallback: number, min: number, max: number): number;
}

export function envReader(env: () => Readonly<Record<string, string | undefined>>): EnvReader {
  const problems: string[] = [];
  const text = (name: string): string | undefined => env()[name]?.trim() || undefined;
  return {
    problems,
    text,
    integer(name, fallback, min, max) {
      const raw = text(name);
      if (raw === undefined) return fallback;
      const value = Number(raw);
      if (!Number.isInteger(value) || value < min || value > max)
        problems.push(`${name}=${raw} is not valid; use a whole number from ${min} to ${max}`);
      return value;
    },
  };
}
