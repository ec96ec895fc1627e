package main

import (
	"testing"

	"github.com/coredns/caddy"
)

// Every directive must belong to a plugin that is compiled in, or CoreDNS rejects the Corefile.
func TestEveryDirectiveHasItsPlugin(t *testing.T) {
	registered := map[string]bool{}
	for _, names := range caddy.ListPlugins() {
		for _, name := range names {
			registered[name] = true
		}
	}
	for _, d := range directives {
		if !registered["dns."+d] && !registered[d] {
			t.Errorf("directive %q has no registered plugin (have %v)", d, caddy.ListPlugins())
		}
	}
}
