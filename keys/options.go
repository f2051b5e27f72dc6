package keys

import (
	"errors"
	"fmt"
	"net"
	"path"
	"strings"
	"time"
)

// Options are the authorized_keys options jailgate honours (sshd(8)
// AUTHORIZED_KEYS FILE FORMAT). X11 forwarding is never allowed, so its
// options change nothing.
type Options struct {
	Command           string    // command="…": forced command; the client's goes to SSH_ORIGINAL_COMMAND
	From              []string  // from="…": patterns the client address must match
	NoPTY             bool      // no-pty (or restrict without pty)
	NoPortForwarding  bool      // no-port-forwarding (or restrict without port-forwarding): -L and -R
	NoAgentForwarding bool      // no-agent-forwarding (or restrict without agent-forwarding)
	Expiry            time.Time // expiry-time="YYYYMMDD[HHMM[SS]]" (local time); zero: none
}

// ParseOptions interprets the options of one key line. Options jailgate
// has no use for (no-X11-forwarding, no-user-rc, environment=…) are
// accepted and ignored; an unknown one is an error.
func ParseOptions(opts []string) (Options, error) {
	var o Options
	pty, fwd, agent := false, false, false
	for _, opt := range opts {
		name, value, hasValue := strings.Cut(opt, "=")
		name = strings.ToLower(name)
		if hasValue {
			value = strings.Trim(value, `"`)
		}
		switch name {
		case "command":
			o.Command = value
		case "from":
			o.From = strings.Split(value, ",")
		case "no-pty":
			o.NoPTY = true
		case "no-port-forwarding":
			o.NoPortForwarding = true
		case "restrict":
			o.NoPTY, o.NoPortForwarding, o.NoAgentForwarding = true, true, true
		case "no-agent-forwarding":
			o.NoAgentForwarding = true
		case "pty":
			pty = true
		case "port-forwarding":
			fwd = true
		case "agent-forwarding":
			agent = true
		case "expiry-time":
			t, err := parseExpiry(value)
			if err != nil {
				return o, fmt.Errorf("expiry-time=%q: want YYYYMMDD[HHMM[SS]]", value)
			}
			o.Expiry = t
		case "no-x11-forwarding", "no-user-rc", "x11-forwarding", "user-rc", "environment", "cert-authority", "principals",
			"permitopen", "permitlisten", "tunnel", "no-touch-required", "verify-required":
		default:
			return o, fmt.Errorf("unknown key option %q", name)
		}
	}
	// restrict first, then the explicit re-enables, in any order.
	if pty {
		o.NoPTY = false
	}
	if fwd {
		o.NoPortForwarding = false
	}
	if agent {
		o.NoAgentForwarding = false
	}
	return o, nil
}

// parseExpiry reads sshd's expiry-time format.
func parseExpiry(v string) (time.Time, error) {
	for _, layout := range []string{"20060102150405", "200601021504", "20060102"} {
		if len(v) == len(layout) {
			return time.ParseInLocation(layout, v, time.Local)
		}
	}
	return time.Time{}, errors.New("bad length")
}

// Expired reports whether the key's expiry-time has passed.
func (o Options) Expired(now time.Time) bool { return !o.Expiry.IsZero() && !now.Before(o.Expiry) }

// FromAllowed reports whether addr (an IP) matches the from= patterns:
// sshd's pattern-list, with * and ? wildcards, CIDR blocks, and ! negation
// (a matching negated pattern refuses outright).
func (o Options) FromAllowed(addr string) bool {
	if len(o.From) == 0 {
		return true
	}
	ip := net.ParseIP(addr)
	ok := false
	for _, p := range o.From {
		neg := strings.HasPrefix(p, "!")
		p = strings.TrimPrefix(p, "!")
		var match bool
		if _, n, err := net.ParseCIDR(p); err == nil {
			match = ip != nil && n.Contains(ip)
		} else {
			match, _ = path.Match(p, addr)
		}
		if match && neg {
			return false
		}
		ok = ok || match
	}
	return ok
}
