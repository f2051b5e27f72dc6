package gateway

import (
	"strings"

	"golang.org/x/sys/unix"
)

// clientSignals are the signals a client may send with a "signal" request,
// by their RFC 4254 section 6.10 names (no SIG prefix). Signal names are
// fine in the gateway; sending them is the jail's business.
var clientSignals = map[string]unix.Signal{
	"TERM": unix.SIGTERM,
	"INT":  unix.SIGINT,
	"HUP":  unix.SIGHUP,
	"KILL": unix.SIGKILL,
	"QUIT": unix.SIGQUIT,
	"USR1": unix.SIGUSR1,
	"USR2": unix.SIGUSR2,
	"ALRM": unix.SIGALRM,
	"PIPE": unix.SIGPIPE,
}

// signalByName maps a client's signal name to the signal it may send.
func signalByName(name string) (unix.Signal, bool) {
	sig, ok := clientSignals[name]
	return sig, ok
}

// signalName is the exit-signal name of sig: its name without "SIG"
// ("TERM", "SEGV" …), or "SIG@openssh.com" for a signal without a
// standard name, as OpenSSH's sig2name does.
func signalName(sig unix.Signal) string {
	if n := unix.SignalName(sig); strings.HasPrefix(n, "SIG") {
		return strings.TrimPrefix(n, "SIG")
	}
	return "SIG@openssh.com"
}
