import type { Language } from "./protocol";

/**
 * The languages the root file system holds (programs/sandbox/rootfs.ts installs their packages):
 * how a program in each is run. Versions are read from the tree's manifest, so the API reports
 * what is installed, not what was meant to be.
 */

interface LanguageDefinition {
  readonly language: string;
  readonly aliases: readonly string[];
  readonly package: string;
  readonly defaultFile: string;
  readonly command: (entry: string, args: readonly string[]) => string[];
}

export const LANGUAGE_DEFINITIONS: readonly LanguageDefinition[] = [
  {
    language: "python",
    aliases: ["python3", "py"],
    package: "python3",
    defaultFile: "main.py",
    command: (entry, args) => ["/usr/bin/python3", entry, ...args],
  },
  {
    language: "javascript",
    aliases: ["node", "nodejs", "js"],
    package: "nodejs",
    defaultFile: "main.js",
    command: (entry, args) => ["/usr/bin/node", entry, ...args],
  },
  {
    language: "bash",
    aliases: ["sh", "shell"],
    package: "bash",
    defaultFile: "main.sh",
    command: (entry, args) => ["/bin/bash", entry, ...args],
  },
];

/** Debian's version without epoch, Debian revision or repack suffix: "20.19.2+dfsg-1+deb13u3" → "20.19.2". */
export const upstreamVersion = (debianVersion: string): string =>
  debianVersion
    .replace(/^\d+:/, "")
    .replace(/-[^-]*$/, "")
    .replace(/[+~](dfsg|ds|repack).*$/, "");

export interface LanguageTable {
  readonly list: readonly Language[];
  find(name: string): { readonly language: Language; readonly command: LanguageDefinition["command"] } | undefined;
}

/** The languages the tree holds, by name or alias; one whose package is missing is left out. */
export function languageTable(packages: Readonly<Record<string, string>>): LanguageTable {
  const available = LANGUAGE_DEFINITIONS.filter((d) => packages[d.package] !== undefined);
  const list = available.map(
    (d): Language => ({
      language: d.language,
      version: upstreamVersion(packages[d.package]),
      aliases: d.aliases,
      package: d.package,
      package_version: packages[d.package],
      default_file: d.defaultFile,
    }),
  );
  return {
    list,
    find(name) {
      const wanted = name.toLowerCase();
      const index = available.findIndex((d) => d.language === wanted || d.aliases.includes(wanted));
      return index < 0 ? undefined : { language: list[index], command: available[index].command };
    },
  };
}
