//go:build tools

// Package tools pins the command setup.sh builds, so go.mod and go.sum list what it needs.
package tools

import _ "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router"
