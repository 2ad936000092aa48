// Command jsonstore-plugin serves the jsonstore example storage backend as
// an MCIAS storage plugin. See README.md.
package main

import (
	"github.com/metacircular/mcias/examples/jsonstore/jsonstore"
	"github.com/metacircular/mcias/sdk/plugin"
)

func main() { plugin.ServeStorage(jsonstore.Open) }
