// Command spool-plugin serves the spool example audit sink as an MCIAS
// audit sink plugin. See README.md.
package main

import (
	"github.com/metacircular/mcias/examples/spool/spool"
	"github.com/metacircular/mcias/sdk/plugin"
)

func main() { plugin.ServeAudit(spool.Open) }
