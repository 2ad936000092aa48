// Package sdk holds what every MCIAS backend and plugin author shares: the
// error kinds that cross every boundary (in-process, gRPC plugin, REST and
// gRPC frontends). The backend contracts live in the sub-packages storage,
// custody and audit.
//
// The sdk module imports nothing else of MCIAS, so a plugin author depends
// on it alone.
package sdk
