#!/usr/bin/env bash
# Build, or reuse, the multi-call binary `kube-local` (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, kubelet, kube-proxy, cri-reset) and the pod sandbox program `pause` (the
# real node's sandbox image) from the Go module in controlplane/go, and the real node's cluster DNS
# `coredns` from its own module in controlplane/go/coredns (CoreDNS pinned there).
#
#   bash controlplane/build.sh          # what `make controlplane` runs
#   bash controlplane/build.sh --check  # go vet + go test of controlplane/go (no network needed once
#                                       # the module cache is filled; shares the build's cache)
#
# Guarantees:
#   * The binary lives at $BUILD_DIR/controlplane/<hash>/kube-local (default BUILD_DIR: <repo>/.build),
#     where <hash> covers every build input: go.mod, go.sum, the *.go files, `go version`, GOOS/GOARCH
#     and the exact build flags (including the version ldflags). Unchanged inputs => the binary is reused
#     and one line says so; nothing is compiled.
#   * $BUILD_DIR/bin/kube-local and $BUILD_DIR/bin/kubectl are symlinks to that binary (kubectl works
#     through argv[0] dispatch), $BUILD_DIR/bin/localkube-pause and localkube-coredns to the pause and
#     coredns programs next to it. They are switched only after a successful build (atomic rename).
#   * A cold build prints progress (packages compiled out of the total, elapsed time) at least every
#     30 seconds; the full `go build -v` log is kept in $BUILD_DIR/controlplane/build.log.
#   * Fails loudly, with the reason, when `go` is missing or the build fails.
#   * Static (CGO_ENABLED=0), -trimpath, stripped; `--version` prints the real Kubernetes release.
#     Only the Go module proxy is needed (go.sum is committed, -mod=readonly).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="$ROOT/controlplane/go"
BUILD_DIR="${BUILD_DIR:-$ROOT/.build}"
case "$BUILD_DIR" in /*) ;; *) BUILD_DIR="$ROOT/$BUILD_DIR" ;; esac
KEEP_BUILDS=2 # older binaries beyond this many are pruned

say() { printf '==> %s\n' "$*"; }
die() {
	printf 'ERROR (controlplane/build.sh): %s\n' "$*" >&2
	exit 1
}

command -v go >/dev/null 2>&1 ||
	die "the 'go' command is not on PATH. Install Go (https://go.dev/dl/; go.mod asks for 1.25, any Go >= 1.21 fetches that toolchain itself) to build the local control plane."
command -v sha256sum >/dev/null 2>&1 || die "sha256sum (coreutils) is required"

go_version="$(go env GOVERSION 2>/dev/null || true)"
[[ "$go_version" =~ ^go1\.([0-9]+) ]] && ((BASH_REMATCH[1] >= 21)) ||
	die "found '${go_version:-an unknown Go}' at $(command -v go); Go >= 1.21 is required (it fetches the toolchain go.mod asks for)."

cd "$SRC"
export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -mod=readonly"

case "${1:-}" in
"") ;;
--check)
	# Same CGO_ENABLED and -trimpath as the build, so vet and test reuse its compiled packages.
	say "go vet + go test in controlplane/go and controlplane/go/coredns"
	go vet -trimpath ./... || die "go vet failed"
	go test -trimpath ./... || die "go test failed"
	(cd coredns && go vet -trimpath ./... && go test -trimpath ./...) || die "go vet/test of coredns failed"
	exit 0
	;;
*) die "unknown argument '$1' (usage: build.sh [--check])" ;;
esac

# --- version metadata: the pinned k8s.io/kubernetes release and its release date --------------------------
# `go list -m` reads go.mod/go.sum and the module's .info (downloaded through the proxy if needed).
read -r KUBE_VERSION KUBE_DATE < <(
	go list -m -f '{{.Version}} {{with .Time}}{{.UTC.Format "2006-01-02T15:04:05Z"}}{{end}}' k8s.io/kubernetes
) || die "cannot resolve k8s.io/kubernetes from $SRC/go.mod (is the Go module proxy reachable?)"
[[ "$KUBE_VERSION" =~ ^v([0-9]+)\.([0-9]+)\.[0-9]+$ ]] || die "unexpected k8s.io/kubernetes version '$KUBE_VERSION'"
KUBE_MAJOR="${BASH_REMATCH[1]}"
KUBE_MINOR="${BASH_REMATCH[2]}"

ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=$KUBE_MAJOR -X $pkg.gitMinor=$KUBE_MINOR"
	# buildDate is the release's date (not now), so identical inputs give an identical binary. The module
	# zip carries no git commit: gitCommit is left empty (not "$Format:%H$") and the tree state is "archive",
	# as Kubernetes' own hack/lib/version.sh reports builds from a source archive.
	ldflags+=" -X $pkg.buildDate=${KUBE_DATE:-1970-01-01T00:00:00Z} -X $pkg.gitCommit="
	ldflags+=" -X $pkg.gitTreeState=archive"
done
build_flags=(-trimpath -buildvcs=false -ldflags "$ldflags")

# --- the cache key ------------------------------------------------------------------------------------------
mapfile -t go_files < <(find . -name '*.go' -type f | LC_ALL=C sort)
hash="$(
	{
		go version
		go env GOOS GOARCH GOEXPERIMENT CGO_ENABLED
		printf '%s\n' "${build_flags[@]}"
		sha256sum go.mod go.sum coredns/go.mod coredns/go.sum "${go_files[@]}"
	} | sha256sum | cut -c1-16
)"
out_dir="$BUILD_DIR/controlplane/$hash"
binary="$out_dir/kube-local"
pause="$out_dir/pause"
coredns="$out_dir/coredns"

link_bin() {
	mkdir -p "$BUILD_DIR/bin"
	local name target
	for name in kube-local kubectl localkube-pause localkube-coredns; do
		case "$name" in
		localkube-pause) target=pause ;;
		localkube-coredns) target=coredns ;;
		*) target=kube-local ;;
		esac
		ln -sfn "../controlplane/$hash/$target" "$BUILD_DIR/bin/.$name.tmp"
		mv -fT "$BUILD_DIR/bin/.$name.tmp" "$BUILD_DIR/bin/$name"
	done
}

if [[ -x "$binary" && -x "$pause" && -x "$coredns" ]]; then
	link_bin
	say "kube-local $KUBE_VERSION is up to date (inputs unchanged, hash $hash): reusing ${binary#"$ROOT/"}"
	exit 0
fi

# --- the build, with progress ---------------------------------------------------------------------------------
mkdir -p "$out_dir"
log="$BUILD_DIR/controlplane/build.log"
total="$(go list -deps . | wc -l)" || die "cannot list the packages of $SRC (see the error above)"
say "building kube-local $KUBE_VERSION ($total packages incl. the standard library; cached ones are skipped)"
say "  $(go version); log: ${log#"$ROOT/"}"

start=$SECONDS
tmp="$out_dir/.kube-local.tmp.$$"
trap 'rm -f "$tmp" "$pause.tmp.$$" "$coredns.tmp.$$"' EXIT

# go build -v names each package as it is compiled (not those taken from the build cache). Show a count
# every 100 packages or every 30 s, whichever comes first; anything else (errors) is shown verbatim.
progress() { # $1: packages in total, $2: the log file
	local total="$1" log="$2" n=0 last=$SECONDS line
	: >"$log"
	while true; do
		if IFS= read -r -t 30 line; then
			printf '%s\n' "$line" >>"$log"
			if [[ ! "$line" =~ ^[A-Za-z0-9._~/+-]+$ ]]; then
				printf '    %s\n' "$line" # not a package name: an error or a warning
				continue
			fi
			n=$((n + 1))
			((n % 100 == 0 || SECONDS - last >= 30)) || continue
		elif (($? <= 128)); then
			break # end of input (a status above 128 is the 30 s timeout)
		fi
		printf '    ... %d/%d packages compiled, %ds elapsed\n' "$n" "$total" $((SECONDS - start))
		last=$SECONDS
	done
	printf '    ... %d packages compiled (the rest came from the Go build cache), %ds elapsed\n' \
		"$n" $((SECONDS - start))
}

set +e
go build -v "${build_flags[@]}" -o "$tmp" . 2>&1 | progress "$total" "$log"
status=${PIPESTATUS[0]}
set -e
((status == 0)) || die "go build failed (exit $status); the full log is ${log#"$ROOT/"}"
# The pause program imports only the standard library: a second or two.
go build "${build_flags[@]}" -o "$pause.tmp.$$" ./pause || die "go build ./pause failed"

# CoreDNS, a module of its own (its dependency versions must not move kube-local's).
dns_log="$BUILD_DIR/controlplane/build-coredns.log"
dns_version="$(cd coredns && go list -m -f '{{.Version}}' github.com/coredns/coredns)" ||
	die "cannot resolve github.com/coredns/coredns from $SRC/coredns/go.mod"
dns_total="$(cd coredns && go list -deps . | wc -l)" || die "cannot list the packages of $SRC/coredns"
say "building coredns $dns_version ($dns_total packages; log: ${dns_log#"$ROOT/"})"
set +e
(cd coredns && go build -v "${build_flags[@]}" -o "$coredns.tmp.$$" .) 2>&1 | progress "$dns_total" "$dns_log"
status=${PIPESTATUS[0]}
set -e
((status == 0)) || die "go build of coredns failed (exit $status); the full log is ${dns_log#"$ROOT/"}"

mv -f "$coredns.tmp.$$" "$coredns"
mv -f "$pause.tmp.$$" "$pause"
mv -f "$tmp" "$binary"
link_bin
size="$(du -m "$binary" | cut -f1)"
say "built ${binary#"$ROOT/"} (${size} MiB), pause and coredns ($(du -m "$coredns" | cut -f1) MiB) in $((SECONDS - start))s"
"$binary" --version | sed -n '1s/^/    /p'   # sed reads all: no SIGPIPE under pipefail

# Prune older builds, keeping the newest $KEEP_BUILDS (the one just built included).
mapfile -t old < <(ls -1dt "$BUILD_DIR"/controlplane/*/ 2>/dev/null | tail -n +$((KEEP_BUILDS + 1)))
((${#old[@]} == 0)) || rm -rf "${old[@]}"
