// Command etcd is the etcd server, built from the go.etcd.io/etcd/server/v3
// module for kmm's test environment (the upstream main package lives in a
// module that is not needed for anything else).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
