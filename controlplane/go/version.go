package main

import (
	"fmt"
	"io"
	"runtime"

	etcdversion "go.etcd.io/etcd/api/v3/version"
	"k8s.io/component-base/version"
)

// printVersion writes the Kubernetes release (from the build's version ldflags) and the embedded etcd
// version. The first line is stable for scripts: "kube-local <kubernetes version> etcd <etcd version>".
func printVersion(w io.Writer) {
	info := version.Get()
	fmt.Fprintf(w, "%s %s etcd %s\n", selfName, info.GitVersion, etcdversion.Version)
	fmt.Fprintf(w, "  kubernetes: %s (commit %s, tree %s, built %s)\n",
		info.GitVersion, orUnknown(info.GitCommit), orUnknown(info.GitTreeState), orUnknown(info.BuildDate))
	fmt.Fprintf(w, "  etcd:       %s (cluster API %s)\n", etcdversion.Version, etcdversion.APIVersion)
	fmt.Fprintf(w, "  go:         %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
