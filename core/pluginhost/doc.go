// Package pluginhost runs MCIAS backends as hashicorp/go-plugin
// subprocesses and supervises them, so that the core sees an ordinary
// storage.Store, custody.Custodian or audit.Sink whether the backend runs
// in-process or not.
//
// What an operator can rely on:
//
//   - The binary executed is exactly the one whose SHA-256 the catalog
//     names: the file is copied into a sealed memfd while it is hashed,
//     and the child executes the memfd, so nothing can swap the file
//     between the check and the exec. The connection uses AutoMTLS.
//   - The plugin gets a clean environment: only the variables its catalog
//     entry names are passed through (never the bootstrap password).
//   - A crash is noticed within HealthInterval, a hang within
//     FailThreshold×HealthInterval (each probe bounded by HealthTimeout),
//     and every call is bounded by CallTimeout. While a plugin is down its
//     calls fail at once with sdk.ErrUnavailable (HTTP 503), never with a
//     guessed answer, and it is restarted with exponential backoff.
//   - Every start and crash is logged and recorded as an audit event
//     (plugin_start, plugin_crash); events raised while storage itself is
//     down are kept and stored once it is back.
//   - No plugin outlives the server: Close stops them, the kernel kills
//     them if the server dies (Pdeathsig), and the plugin side exits when
//     its parent disappears (sdk/plugin).
package pluginhost
