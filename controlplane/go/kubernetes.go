package main

import (
	_ "time/tzdata" // CronJob time-zone support, as in the upstream kube-apiserver and controller-manager

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // JSON log format, as upstream
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics, as upstream
	_ "k8s.io/component-base/metrics/prometheus/version"  // version metric, as upstream
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
)

// runAPIServer runs kube-apiserver exactly like k8s.io/kubernetes/cmd/kube-apiserver.
func runAPIServer(args []string) int {
	setArgs(args)
	return cli.Run(apiserver.NewAPIServerCommand())
}

// runControllerManager runs kube-controller-manager exactly like k8s.io/kubernetes/cmd/kube-controller-manager.
func runControllerManager(args []string) int {
	setArgs(args)
	return cli.Run(controllermanager.NewControllerManagerCommand())
}

// runScheduler runs kube-scheduler exactly like k8s.io/kubernetes/cmd/kube-scheduler.
func runScheduler(args []string) int {
	setArgs(args)
	return cli.Run(scheduler.NewSchedulerCommand())
}
