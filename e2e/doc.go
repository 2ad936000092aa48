// Package e2e holds end-to-end tests: they build mciassrv and mciasctl,
// start the server on a free loopback port with a fresh data directory,
// and drive it the way a newcomer and an operator would (the README quick
// start verbatim, curl, raw HTTPS, signals, restarts).
package e2e
