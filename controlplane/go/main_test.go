package main

import (
	"bytes"
	"strings"
	"testing"
)

// Every upstream binary name must be dispatchable, by argv[0] and as a subcommand.
func TestComponentsAreRegistered(t *testing.T) {
	for _, name := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kubelet", "kube-proxy"} {
		if _, ok := lookupComponent(name); !ok {
			t.Errorf("component %q is not registered", name)
		}
	}
	if _, ok := lookupComponent(selfName); ok {
		t.Errorf("%q must not be a component (it is the dispatcher)", selfName)
	}
}

func TestUnknownComponentIsAUsageError(t *testing.T) {
	if got := run([]string{"/x/kube-local", "no-such-component"}); got != 2 {
		t.Errorf("run(unknown) = %d, want 2", got)
	}
	if got := run([]string{"kube-local"}); got != 2 {
		t.Errorf("run(no args) = %d, want 2", got)
	}
}

func TestUsageListsEveryComponent(t *testing.T) {
	var buf bytes.Buffer
	usage(&buf)
	for name := range components {
		if !strings.Contains(buf.String(), name) {
			t.Errorf("usage does not mention %q:\n%s", name, buf.String())
		}
	}
}

func TestVersionNamesKubernetesAndEtcd(t *testing.T) {
	var buf bytes.Buffer
	printVersion(&buf)
	first, _, _ := strings.Cut(buf.String(), "\n")
	fields := strings.Fields(first)
	if len(fields) != 4 || fields[0] != selfName || fields[2] != "etcd" {
		t.Errorf("first version line = %q, want %q", first, "kube-local <k8s version> etcd <etcd version>")
	}
}

func TestCRIResetNeedsAnEndpoint(t *testing.T) {
	var out, errs bytes.Buffer
	if got := criReset([]string{"cri-reset"}, &out, &errs); got != 2 {
		t.Errorf("cri-reset without --endpoint = %d, want 2", got)
	}
	if !strings.Contains(errs.String(), "--endpoint") {
		t.Errorf("usage does not name --endpoint: %q", errs.String())
	}
}
