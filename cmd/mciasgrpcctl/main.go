// Command mciasgrpcctl is the administration CLI of MCIAS over the gRPC
// API (proto/mcias/v1): the commands, flags, prompts, output and exit
// codes of mciasctl (both are cmd/internal/ctl), with -server host:port
// ($MCIAS_GRPC_SERVER, default 127.0.0.1:9443).
//
// Run `mciasgrpcctl help` for commands, flags, environment and exit codes.
package main

import "github.com/metacircular/mcias/cmd/internal/ctl"

func main() { ctl.Main(ctl.GRPC) }
