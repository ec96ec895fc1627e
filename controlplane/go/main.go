// Command kube-local is one multi-call binary holding a whole local Kubernetes control plane, built from
// the official Go modules: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl and the
// node components kubelet and kube-proxy.
//
// It dispatches on the base name of argv[0] (so a symlink named "kubectl" behaves as kubectl) or, when
// invoked as kube-local, on its first argument:
//
//	kube-local etcd --data-dir ... --listen-client-urls ...
//	kube-local kube-apiserver --etcd-servers ...
//	kube-local kubectl get pods
//	kube-local --version
//
// Each component sees os.Args exactly as its own binary would ([name, args...]), so flag parsing, help
// texts and kubectl plugins behave as in the upstream binaries.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// selfName is the name under which the binary offers its subcommands.
const selfName = "kube-local"

func main() {
	os.Exit(run(os.Args))
}

// run dispatches argv to a component and returns the process exit status.
func run(argv []string) int {
	name := ""
	if len(argv) > 0 {
		name = strings.TrimSuffix(filepath.Base(argv[0]), ".exe")
	}
	if c, ok := lookupComponent(name); ok {
		return c.run(append([]string{name}, argv[1:]...))
	}
	if len(argv) < 2 {
		usage(os.Stderr)
		return 2
	}
	switch sub := argv[1]; sub {
	case "--version", "-version", "version":
		printVersion(os.Stdout)
		return 0
	case "-h", "--help", "help":
		usage(os.Stdout)
		return 0
	default:
		c, ok := lookupComponent(sub)
		if !ok {
			fmt.Fprintf(os.Stderr, "%s: unknown component %q\n\n", selfName, sub)
			usage(os.Stderr)
			return 2
		}
		return c.run(append([]string{sub}, argv[2:]...))
	}
}
