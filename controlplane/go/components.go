package main

import (
	"fmt"
	"io"
	"os"
	"sort"
)

// component is one program of the control plane. run receives the argument vector the upstream binary
// would receive (args[0] is the component's name) and returns its exit status; it may also exit the
// process itself, as the upstream mains do.
type component struct {
	summary string
	run     func(args []string) int
}

// components lists every program this binary can become, keyed by its upstream binary name.
var components = map[string]component{
	"etcd":                    {"etcd key-value store (go.etcd.io/etcd/server/v3)", runEtcd},
	"kube-apiserver":          {"Kubernetes API server", runAPIServer},
	"kube-controller-manager": {"Kubernetes controller manager", runControllerManager},
	"kube-scheduler":          {"Kubernetes scheduler", runScheduler},
	"kubectl":                 {"Kubernetes command-line client", runKubectl},
	"kubelet":                 {"Kubernetes node agent (needs a CRI runtime such as containerd)", runKubelet},
	"kube-proxy":              {"Kubernetes Service proxy (iptables/nftables/ipvs)", runKubeProxy},
	"cri-reset":               {"stop and remove every pod sandbox of a CRI runtime (localkube's node teardown)", runCRIReset},
}

func lookupComponent(name string) (component, bool) {
	c, ok := components[name]
	return c, ok
}

// usage writes the list of components to w.
func usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: %s COMPONENT [ARGS...]   (or invoke through a symlink named COMPONENT)\n", selfName)
	fmt.Fprintf(w, "       %s --version\n\nComponents:\n", selfName)
	names := make([]string, 0, len(components))
	for name := range components {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Fprintf(w, "  %-25s %s\n", name, components[name].summary)
	}
}

// setArgs makes os.Args look like the upstream binary's, for code that reads it directly (cobra's
// Execute, kubectl's plugin handling and verbosity pre-parsing, etcd's grpc-proxy subcommands).
func setArgs(args []string) {
	os.Args = args
}
