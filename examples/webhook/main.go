// Command webhook-plugin serves the webhook example audit sink as an MCIAS
// audit sink plugin. See README.md.
package main

import (
	"github.com/metacircular/mcias/examples/webhook/webhook"
	"github.com/metacircular/mcias/sdk/plugin"
)

func main() { plugin.ServeAudit(webhook.Open) }
