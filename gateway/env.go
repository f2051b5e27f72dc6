package gateway

import (
	"net"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/jailgate/jailgate/jail"
)

// Limits of the variables a client may set with env requests.
const (
	maxEnvVars = 64   // distinct names per session
	maxEnvSize = 4096 // bytes of NAME=value
)

// defaultPath is the PATH of every tenant process.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// envNameRE is what a variable name must look like; anything else (=,
// spaces, control bytes) is refused, as tailssh's forbiddenEnvKey does.
var envNameRE = regexp.MustCompile(`^[A-Za-z0-9_]+$`)

// envAllowed reports whether a client may set the variable name: TERM,
// LANG and LC_*, as OpenSSH's stock AcceptEnv. Never LD_* (LD_PRELOAD runs
// the client's code in whatever starts next), never the variables the
// gateway sets (HOME, PATH, SHELL, SSH_*), never anything else.
func envAllowed(name string) bool {
	if !envNameRE.MatchString(name) || strings.HasPrefix(name, "LD_") {
		return false
	}
	return name == "TERM" || name == "LANG" || strings.HasPrefix(name, "LC_")
}

// envVars are the variables a session's env requests set, by name.
type envVars map[string]string

// set records name=value if the policy allows it: an allowed name, at most
// maxEnvVars names, at most maxEnvSize bytes, no NUL byte.
func (e envVars) set(name, value string) bool {
	if !envAllowed(name) || len(name)+1+len(value) > maxEnvSize || strings.IndexByte(value, 0) >= 0 {
		return false
	}
	if _, ok := e[name]; !ok && len(e) >= maxEnvVars {
		return false
	}
	e[name] = value
	return true
}

// processEnv is the complete environment of a tenant process. Nothing of
// the gateway's own environment is passed. TERM comes from the pty-req if
// there is one, else from an env request; the other allowed variables
// follow in name order.
func processEnv(shell string, tty *jail.TTY, vars envVars, local, remote net.Addr) []string {
	env := []string{
		"HOME=/root",
		"USER=root",
		"LOGNAME=root",
		"SHELL=" + shell,
		"PATH=" + defaultPath,
	}
	cip, cport := hostPort(remote)
	sip, sport := hostPort(local)
	env = append(env,
		"SSH_CONNECTION="+cip+" "+cport+" "+sip+" "+sport,
		"SSH_CLIENT="+cip+" "+cport+" "+sport,
	)
	term := vars["TERM"]
	if tty != nil && tty.Term != "" {
		term = tty.Term
	}
	if term != "" {
		env = append(env, "TERM="+term)
	}
	names := make([]string, 0, len(vars))
	for n := range vars {
		if n != "TERM" {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		env = append(env, n+"="+vars[n])
	}
	return env
}

// hostPort splits an address into IP and port; "" when it has none.
func hostPort(a net.Addr) (string, string) {
	if a == nil {
		return "", ""
	}
	if t, ok := a.(*net.TCPAddr); ok {
		return t.IP.String(), strconv.Itoa(t.Port)
	}
	h, p, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String(), ""
	}
	return h, p
}
