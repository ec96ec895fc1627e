package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	criclient "k8s.io/cri-client/pkg"
)

// runCRIReset stops and removes every pod sandbox of a CRI runtime (and with them their containers),
// through the CRI API itself, so the runtime releases what it set up for them: network namespaces, CNI
// attachments (veths, IP leases), mounts. localkube runs it after the kubelet has stopped and before it
// stops containerd, so that tearing down a real node leaves nothing behind.
//
//	kube-local cri-reset --endpoint unix:///path/to/containerd.sock [--timeout 60s]
//
// Exit status 0 when no sandbox is left, 1 when one could not be removed (each failure is printed).
func runCRIReset(args []string) int {
	return criReset(args, os.Stdout, os.Stderr)
}

func criReset(args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet(args[0], flag.ContinueOnError)
	flags.SetOutput(stderr)
	endpoint := flags.String("endpoint", "", "CRI endpoint, e.g. unix:///run/containerd/containerd.sock (required)")
	timeout := flags.Duration("timeout", time.Minute, "overall time limit")
	if err := flags.Parse(args[1:]); err != nil {
		return 2
	}
	if *endpoint == "" || flags.NArg() != 0 {
		fmt.Fprintln(stderr, "usage: cri-reset --endpoint unix:///path/to/socket [--timeout 60s]")
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	runtime, err := criclient.NewRemoteRuntimeService(*endpoint, *timeout, nil, nil)
	if err != nil {
		fmt.Fprintf(stderr, "cri-reset: cannot connect to %s: %v\n", *endpoint, err)
		return 1
	}
	sandboxes, err := runtime.ListPodSandbox(ctx, nil)
	if err != nil {
		fmt.Fprintf(stderr, "cri-reset: listing pod sandboxes: %v\n", err)
		return 1
	}
	failed := 0
	for _, sandbox := range sandboxes {
		name := sandbox.GetId()
		if meta := sandbox.GetMetadata(); meta != nil {
			name = meta.GetNamespace() + "/" + meta.GetName()
		}
		if err := runtime.StopPodSandbox(ctx, sandbox.GetId()); err != nil {
			fmt.Fprintf(stderr, "cri-reset: stopping %s: %v\n", name, err)
			failed++
			continue
		}
		if err := runtime.RemovePodSandbox(ctx, sandbox.GetId()); err != nil {
			fmt.Fprintf(stderr, "cri-reset: removing %s: %v\n", name, err)
			failed++
			continue
		}
		fmt.Fprintf(stdout, "cri-reset: removed pod sandbox %s\n", name)
	}
	if failed > 0 {
		return 1
	}
	return 0
}
