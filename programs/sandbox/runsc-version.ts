/**
 * The gVisor `runsc` the sandbox node installs and the tests run: one pin, two consumers
 * (scripts/tools/runsc.ts builds it for the tests; the node's setup builds the same).
 *
 * Source: the Go module proxy (proxy.golang.org) serves gVisor's `go` branch (the generated
 * Go-tool-compatible tree of each commit) as pseudo-versions; this one is commit 69c2d17aea96,
 * committed 2026-07-01T20:41:57Z (proxy .info Time 2026-07-01T20:47:40Z). Newer pseudo-versions
 * were refused by the proxy when checked (2026-12-07, /work/shared/FACTS.md "Sandbox").
 */
export const RUNSC_MODULE = "gvisor.dev/gvisor";
export const RUNSC_VERSION = "v0.0.0-20260701204157-69c2d17aea96";
