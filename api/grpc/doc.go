// Package grpc is the gRPC frontend of MCIAS: the services of
// proto/mcias/v1 over the same core as the REST frontend, plus standard
// health checking (grpc.health.v1) and server reflection.
//
// Every call passes one chain of interceptors: request ID, access log,
// panic recovery, the per-method access rule (public, any valid token,
// admin), the shared per-IP limit on password checks, and the error
// table of api/frontend, which turns core error kinds into gRPC codes
// with a google.rpc.ErrorInfo whose reason is the REST error code.
package grpc
