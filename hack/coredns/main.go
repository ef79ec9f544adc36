// Command coredns is CoreDNS with only the plugins the local node's cluster DNS
// needs. CoreDNS's own main (github.com/coredns/coredns/coredns.go) imports
// core/plugin, which pulls in every plugin; this one imports a chosen few.
//
// Deliberately left out: forward (and grpc, etcd, route53, ...): pods must get
// no upstream DNS, so names outside the cluster are answered from here or not
// at all. loop and reload are not needed.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
	// Registered anyway by the imports above (kubernetes imports metadata and
	// transfer, cache imports metrics = "prometheus"); listed so the set is
	// explicit and each one has its place in Directives.
	_ "github.com/coredns/coredns/plugin/metadata"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/transfer"
)

// Directives is the subset of CoreDNS v1.13.2's core/dnsserver/zdirectives.go,
// in the same relative order (the order in which plugins see a query). Keep it
// in step with the imports above when bumping CoreDNS.
func init() {
	dnsserver.Directives = []string{
		"metadata",
		"bind",
		"ready",
		"health",
		"prometheus",
		"errors",
		"log",
		"cache",
		"transfer",
		"kubernetes",
	}
}

func main() {
	coremain.Run()
}
