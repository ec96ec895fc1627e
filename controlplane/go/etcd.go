package main

import (
	"go.etcd.io/etcd/server/v3/etcdmain"
)

// runEtcd runs the etcd server (or its gateway/grpc-proxy subcommands) exactly like the upstream etcd
// binary, at the go.etcd.io/etcd/server/v3 version that k8s.io/kubernetes pins. etcdmain.Main returns
// only when the server has stopped cleanly; fatal errors exit the process with etcd's own status.
func runEtcd(args []string) int {
	setArgs(args)
	etcdmain.Main(args)
	return 0
}
