// Command mcias-plugin-pkcs11 serves the PKCS#11 key custodian (pkcs11:
// URIs) as an MCIAS custody plugin. See README.md.
package main

import (
	"github.com/metacircular/mcias/examples/pkcs11/hsm"
	"github.com/metacircular/mcias/sdk/plugin"
)

func main() { plugin.ServeCustody(hsm.Open) }
