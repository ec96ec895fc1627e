// Command pause is the sandbox ("infrastructure") container of every pod on localkube's real node: it
// holds the pod's namespaces open and does nothing else. containerd's CRI plugin starts it first in each
// pod (sandbox_image) and the pod's containers join its namespaces.
//
// Guarantees: it never exits on its own; SIGTERM or SIGINT end it with status 0 (it runs as PID 1 of
// its PID namespace, where signals without a handler are ignored); when it is the init of a shared PID
// namespace it reaps every orphaned child on SIGCHLD, so no zombies accumulate. `pause -v` prints its
// name and exits. Built static (CGO_ENABLED=0), so the image needs no other file.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-v" {
		fmt.Println("localkube-pause")
		return
	}
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range signals {
		if sig == syscall.SIGCHLD {
			reapChildren()
			continue
		}
		os.Exit(0)
	}
}

// reapChildren collects the exit status of every child that has terminated, without blocking.
func reapChildren() {
	for {
		var status syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
