// Package loadkit is what the load drivers under bench/ share: child
// processes that are always stopped, a closed-loop load round with its
// latencies and percentiles, and the machine line of a report.
package loadkit
