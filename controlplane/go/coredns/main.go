// Command coredns is the real node's cluster DNS: CoreDNS, built from its Go module at a pinned
// version (go.mod), with only the plugins a local cluster needs. It answers *.svc.cluster.local (and
// pod and reverse names) from the API server, and nothing else: there is no forward plugin, so it
// never sends a query off this machine; any other name gets SERVFAIL.
//
// Plugins, in CoreDNS's own execution order (plugin.cfg): ready, health, errors, loadbalance, cache,
// kubernetes. localkube runs it as a Deployment in kube-system behind the kube-dns Service.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/ready"
)

// directives is the plugin chain in the order CoreDNS's plugin.cfg gives these plugins.
var directives = []string{"ready", "health", "errors", "loadbalance", "cache", "kubernetes"}

func init() {
	dnsserver.Directives = directives
}

func main() {
	coremain.Run()
}
