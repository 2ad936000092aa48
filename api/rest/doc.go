// Package rest is the HTTPS/JSON frontend of MCIAS, built on Gin. It owns
// transport concerns only: strict JSON decoding, body caps, request IDs,
// access logs without secrets, bearer authentication, the per-IP login
// rate limit, and the one table that maps error kinds to HTTP statuses.
// Every decision about identity lives in package core.
package rest
