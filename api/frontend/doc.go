// Package frontend holds what the REST and gRPC frontends share, so that
// both transports behave alike by construction rather than by copy: the
// table that turns error kinds into statuses and contract codes, the
// per-IP limiter on password checks, request IDs, and the client-IP rule
// for trusted proxies.
package frontend
