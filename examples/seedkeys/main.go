// Command seedkeys-plugin serves the seedkeys example custodian as an
// MCIAS custody plugin. See README.md.
package main

import (
	"github.com/metacircular/mcias/examples/seedkeys/seedkeys"
	"github.com/metacircular/mcias/sdk/plugin"
)

func main() { plugin.ServeCustody(seedkeys.Open) }
