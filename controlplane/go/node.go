package main

import (
	"context"

	"k8s.io/component-base/cli"
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
)

// runKubelet runs the kubelet exactly like k8s.io/kubernetes/cmd/kubelet: it talks to a CRI runtime
// (containerd) over the socket given by --container-runtime-endpoint and needs root to manage pods.
func runKubelet(args []string) int {
	setArgs(args)
	return cli.Run(kubelet.NewKubeletCommand(context.Background()))
}

// runKubeProxy runs kube-proxy exactly like k8s.io/kubernetes/cmd/kube-proxy (iptables, ipvs or
// nftables mode, chosen by its configuration); it needs root to program the host's packet filter.
func runKubeProxy(args []string) int {
	setArgs(args)
	return cli.Run(proxy.NewProxyCommand())
}
