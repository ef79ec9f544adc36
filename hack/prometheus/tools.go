//go:build tools

// Package tools pins Prometheus in go.mod: build.sh builds its
// cmd/prometheus with only the Kubernetes service discovery compiled in.
package tools

import _ "github.com/prometheus/prometheus/cmd/prometheus"
