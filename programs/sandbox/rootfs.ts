/**
 * The languages' root file system: one Debian tree, built with debootstrap on the sandbox node at
 * setup (and by tools/sandbox-rootfs.ts for the tests), mounted read-only into every
 * sandbox. One recipe, so the node and the tests run the same interpreters.
 *
 * Pinning: the node builds from snapshot.debian.org at SNAPSHOT, an archive that never changes, and
 * the script refuses a tree whose language packages differ from PACKAGES. The tests here build from
 * deb.debian.org (snapshot.debian.org did not resolve on this machine kind, 2026-12-07) and only
 * warn on a difference, which the manifest records.
 */

export interface RootfsRecipe {
  /** Debian release the tree is built from. */
  readonly suite: string;
  /** snapshot.debian.org timestamp the node builds from. */
  readonly snapshot: string;
  /** Package → exact version the tree must hold (the interpreters the API reports). */
  readonly packages: Readonly<Record<string, string>>;
}

/**
 * Debian 13 "trixie" at its 13.8 point release (deb.debian.org's InRelease, Date 2026-11-21, read
 * 2026-12-07; versions from its main/binary-amd64 Packages). The snapshot is taken after that
 * release, so it serves the same versions ⚠ (snapshot.debian.org not reachable from here to check).
 */
export const ROOTFS_RECIPE: RootfsRecipe = {
  suite: "trixie",
  snapshot: "20261201T000000Z",
  packages: {
    bash: "5.2.37-2+b10",
    python3: "3.13.5-1",
    nodejs: "20.19.2+dfsg-1+deb13u3",
  },
};

export const SNAPSHOT_MIRROR = (recipe: RootfsRecipe): string =>
  `http://snapshot.debian.org/archive/debian/${recipe.snapshot}/`;

/** The file beside the tree that says what it holds (written last: its presence means "complete"). */
export const ROOTFS_MANIFEST = "manifest.json";
/** The tree itself, under the build directory. */
export const ROOTFS_TREE = "rootfs";

export interface RootfsManifest {
  readonly suite: string;
  readonly mirror: string;
  readonly packages: Readonly<Record<string, string>>;
  /** Pinned packages whose installed version differs (only ever non-empty in "warn" mode). */
  readonly drift: readonly string[];
  readonly builtAt: string;
}

export interface RootfsBuildOptions {
  /** Directory that will hold `rootfs/` and `manifest.json` (built beside it, then renamed into place). */
  readonly dir: string;
  /** @default - snapshot.debian.org at the recipe's timestamp */
  readonly mirror?: string;
  /** "strict" refuses a tree whose pinned packages differ; "warn" records the drift. @default "strict" */
  readonly versions?: "strict" | "warn";
}

const sq = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * Bash that builds the tree (as root, with debootstrap): minbase plus the language packages, no
 * apt lists or caches, /work as the scratch mount point, then the manifest. Idempotent: a complete
 * tree with a manifest is left alone; a half-built one is started again.
 */
export function rootfsBuildScript(options: RootfsBuildOptions, recipe: RootfsRecipe = ROOTFS_RECIPE): string {
  const mirror = options.mirror ?? SNAPSHOT_MIRROR(recipe);
  const packages = Object.keys(recipe.packages);
  const pins = Object.entries(recipe.packages).map(([name, version]) => `${name}=${version}`);
  return [
    "#!/bin/bash",
    "# Builds the sandbox languages' root file system (programs/sandbox/rootfs.ts).",
    "set -euo pipefail",
    'export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin" LC_ALL=C DEBIAN_FRONTEND=noninteractive',
    `dir=${sq(options.dir)}`,
    `[ -f "$dir/${ROOTFS_MANIFEST}" ] && [ -d "$dir/${ROOTFS_TREE}/usr" ] && { echo "sandbox rootfs: $dir is built"; exit 0; }`,
    'work="$dir.partial"',
    // A half-built tree from a crash is started again; debootstrap leaves no mounts behind on exit.
    'rm -rf "$work" && mkdir -p "$work"',
    `debootstrap --variant=minbase --include=${packages.join(",")} ${sq(recipe.suite)} "$work/${ROOTFS_TREE}" ${sq(mirror)} >"$work/debootstrap.log" 2>&1 || { tail -n 30 "$work/debootstrap.log" >&2; echo "sandbox rootfs: debootstrap from ${mirror} failed" >&2; exit 1; }`,
    `tree="$work/${ROOTFS_TREE}"`,
    "drift=()",
    `for pin in ${pins.map(sq).join(" ")}; do`,
    '  name="${pin%%=*}"; want="${pin#*=}"',
    '  got=$(chroot "$tree" dpkg-query -W -f=\'${Version}\' "$name" 2>/dev/null || echo missing)',
    '  [ "$got" = "$want" ] || drift+=("$name $got (pinned $want)")',
    "done",
    options.versions === "warn"
      ? 'for d in "${drift[@]}"; do echo "sandbox rootfs: WARNING $d" >&2; done'
      : 'if [ ${#drift[@]} -gt 0 ]; then printf \'sandbox rootfs: %s\\n\' "${drift[@]}" >&2; echo "sandbox rootfs: refusing a tree that differs from the pinned recipe" >&2; exit 1; fi',
    "# Nothing in the tree a program could use to fetch more: no apt lists, caches or logs.",
    'rm -rf "$tree"/var/lib/apt/lists/* "$tree"/var/cache/apt/* "$tree"/var/log/* "$tree"/tmp/* "$tree"/root/.[!.]* 2>/dev/null || true',
    'install -d -m 0755 "$tree/work"',
    // The manifest, last: its presence marks the tree complete.
    `versions=$(for p in ${packages.join(" ")}; do printf '"%s":"%s",' "$p" "$(chroot "$tree" dpkg-query -W -f='\${Version}' "$p")"; done)`,
    'drift_json=$(for d in "${drift[@]}"; do printf \'"%s",\' "$d"; done)',
    `printf '{"suite":"%s","mirror":"%s","packages":{%s},"drift":[%s],"builtAt":"%s"}\\n' ${sq(recipe.suite)} ${sq(mirror)} "\${versions%,}" "\${drift_json%,}" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$work/${ROOTFS_MANIFEST}"`,
    'rm -f "$work/debootstrap.log"',
    'rm -rf "$dir" && mv "$work" "$dir"',
    'echo "sandbox rootfs: built $dir"',
    "",
  ].join("\n");
}
