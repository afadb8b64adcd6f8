/**
 * The gVisor `runsc` the sandbox node installs and the tests run: one pin, two consumers
 * (tools/runsc.ts builds it for the tests; the node's setup builds the same).
 *
 * Source: the Go module proxy (proxy.golang.org) serves gVisor's `go` branch (the generated
 * Go-tool-compatible tree of each commit) as pseudo-versions; this one is commit 69c2d17aea96,
 * committed 2026-07-01T20:41:57Z (proxy .info Time 2026-07-01T20:47:40Z). Newer pseudo-versions
 * were refused by the proxy when checked (2026-12-07, /work/shared/FACTS.md "Sandbox").
 */
export const RUNSC_MODULE = "gvisor.dev/gvisor";
export const RUNSC_VERSION = "v0.0.0-20260701204157-69c2d17aea96";

/** The link flag that makes `runsc --version` name the pseudo-version (`go install` alone leaves "VERSION_MISSING"). */
export const RUNSC_LDFLAGS = `-X gvisor.dev/gvisor/runsc/version.version=${RUNSC_VERSION}`;
/** The package `go install` builds. */
export const RUNSC_PACKAGE = `${RUNSC_MODULE}/runsc@${RUNSC_VERSION}`;
/**
 * The Go toolchain the node builds runsc with: the one the tests' runsc is built with here
 * (/usr/local/go, go1.26.8; gvisor's go.mod asks for go 1.26.3 or newer). Debian's golang-go
 * fetches it as the golang.org/toolchain module, checked against the Go checksum database.
 */
export const RUNSC_GO_TOOLCHAIN = "go1.26.8";
