// Command pause holds a pod sandbox's namespaces for the node tier's containerd, as
// registry.k8s.io/pause does (there is no registry to pull it from): it sleeps until
// SIGTERM or SIGINT and exits 0.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}
