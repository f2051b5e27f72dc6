package gateway

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"runtime/debug"
	"strconv"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/jailgate/jailgate/jail"
)

// The log uses fixed keys: tenant, user, remote, session, step, err, exit,
// duration and fingerprint, plus conn (connection id), ref (the reference
// a tenant was shown) and reason (why an authentication was refused).
// Env values, commands and key material are never logged.

// logLayer logs one line when a session channel opens and one when it
// ends, with how it ended and how long it took (wish's logging middleware).
func (s *Server) logLayer(next sessionHandler) sessionHandler {
	return func(ss *session) {
		// The connection authenticated as this tenant; authorizeLayer
		// re-checks it next, and the end line says if it refused.
		s.log.Info("session start", "tenant", ss.user, "user", ss.user, "remote", ss.remote, "session", ss.id)
		defer func() {
			tenant := ""
			if ss.auth.tenant != nil {
				tenant = ss.auth.tenant.Name
			}
			var in, out int64
			if ss.act != nil {
				in, out = ss.act.in.Load(), ss.act.out.Load()
			}
			s.log.Info("session end", "tenant", tenant, "user", ss.user, "remote", ss.remote,
				"session", ss.id, "exit", ss.exit, "duration", time.Since(ss.begin).Round(time.Millisecond),
				"bytes_in", in, "bytes_out", out)
		}()
		next(ss)
	}
}

// recoverLayer is the outermost layer: a panic in a session is logged with
// its stack and ends that session only. The tenant sees the usual short
// line with a reference if her command had not ended yet.
func (s *Server) recoverLayer(next sessionHandler) sessionHandler {
	return func(ss *session) {
		defer func() {
			r := recover()
			if r == nil {
				return
			}
			ref := newRef()
			s.log.Error("panic in session", "user", ss.user, "remote", ss.remote, "session", ss.id,
				"ref", ref, "err", fmt.Sprint(r), "stack", stack())
			switch {
			case ss.ch == nil:
				ss.nc.Reject(gossh.ConnectionFailed, "internal error")
			case !ss.exited:
				ss.tenantError(ss.hasPTY(), couldNotStart(ref))
			}
		}()
		next(ss)
	}
}

// goSafe runs fn in a goroutine of session ss; a panic in it is logged and
// closes the session's channel instead of ending the server.
func (s *Server) goSafe(ss *session, fn func()) {
	go func() {
		defer func() {
			if r := recover(); r != nil {
				s.log.Error("panic in session goroutine", "user", ss.user, "session", ss.id,
					"err", fmt.Sprint(r), "stack", stack())
				if ss.ch != nil {
					ss.ch.Close()
				}
			}
		}()
		fn()
	}()
}

// describeExit formats how a process ended for the log: its exit code, or
// the name of the signal that ended it.
func describeExit(st jail.ExitStatus) string {
	if st.Signal != 0 {
		return "SIG" + signalName(st.Signal)
	}
	return strconv.Itoa(st.Code)
}

// newID returns a random connection id (12 hex digits).
func newID() string { return randHex(6) }

// newRef returns a random reference for a tenant-visible error (6 hex
// digits), logged with the full error.
func newRef() string { return randHex(3) }

// randHex returns n random bytes in hex.
func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand, Go 1.24+)
	return hex.EncodeToString(b)
}

// stack returns the current goroutine's stack for a panic log line.
func stack() string { return string(debug.Stack()) }
