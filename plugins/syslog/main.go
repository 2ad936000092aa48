// Command mcias-plugin-syslog serves the builtin syslog audit sink
// (syslog+tcp:// and syslog+unix:// URIs) as an MCIAS plugin subprocess.
// It holds no logic: the backend is the one the server runs in-process,
// behind sdk/plugin's shims. mciassrv starts it for a plugin:NAME URI; run
// by hand it only says that it is a plugin.
package main

import (
	"github.com/metacircular/mcias/backends/audit/syslog"
	"github.com/metacircular/mcias/sdk/plugin"
)

func main() { plugin.ServeAudit(syslog.Open) }
