package main

import (
	_ "k8s.io/client-go/plugin/pkg/client/auth" // client auth plugins, as in upstream kubectl
	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	kubectl "k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"
)

// runKubectl runs kubectl exactly like k8s.io/kubernetes/cmd/kubectl: errors are printed in kubectl's
// own format and util.CheckErr exits with kubectl's exit status.
func runKubectl(args []string) int {
	setArgs(args)
	// As upstream: apply -v early so klog works while the command tree (plugins, kuberc) is built.
	logs.GlogSetter(kubectl.GetLogVerbosity(args)) //nolint:errcheck // upstream ignores it too
	if err := cli.RunNoErrOutput(kubectl.NewDefaultKubectlCommand()); err != nil {
		util.CheckErr(err)
		return 1
	}
	return 0
}
