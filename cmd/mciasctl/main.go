// Command mciasctl is the administration CLI of MCIAS over the REST API
// (api/openapi.yaml). Its commands are those of mciasgrpcctl; both are
// cmd/internal/ctl.
//
// Run `mciasctl help` for commands, flags, environment and exit codes.
package main

import "github.com/metacircular/mcias/cmd/internal/ctl"

func main() { ctl.Main(ctl.REST) }
