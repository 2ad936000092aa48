// Command mcias-plugin-webhook serves the builtin webhook audit sink
// (webhook+https:// and webhook+http:// URIs) as an MCIAS plugin
// subprocess. It holds no logic: the backend is the one the server runs
// in-process, behind sdk/plugin's shims. mciassrv starts it for a
// plugin:NAME URI; run by hand it only says that it is a plugin.
package main

import (
	"github.com/metacircular/mcias/backends/audit/webhook"
	"github.com/metacircular/mcias/sdk/plugin"
)

func main() { plugin.ServeAudit(webhook.Open) }
