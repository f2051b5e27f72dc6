package gateway

import gossh "golang.org/x/crypto/ssh"

// startRequest is the shell or exec request that starts the session.
type startRequest struct {
	exec      bool
	command   string
	subsystem string // "sftp"
}

// serveRequests answers the channel's requests until the channel closes;
// it always replies to a request that wants a reply.
func (ss *session) serveRequests(reqs <-chan *gossh.Request, starts chan<- startRequest) {
	for req := range reqs {
		ok, start := ss.request(req)
		if req.WantReply {
			req.Reply(ok, nil)
		}
		if start != nil {
			starts <- *start // buffered, and sent at most once
		}
	}
}

// request handles one channel request. A start request is returned so that
// it is started only after its reply went out.
func (ss *session) request(req *gossh.Request) (bool, *startRequest) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	switch req.Type {
	case "pty-req":
		if ss.pty != nil || ss.started || ss.keyOpts.NoPTY {
			return false, nil // a second pty-req, or one after the command started
		}
		tty, err := parsePtyReq(req.Payload)
		if err != nil {
			return false, nil
		}
		ss.pty = tty
		return true, nil
	case "window-change":
		rows, cols, err := parseWindowChange(req.Payload)
		if err != nil || ss.pty == nil {
			return false, nil
		}
		ss.pty.Rows, ss.pty.Cols = rows, cols
		if ss.rec != nil {
			ss.rec.resize(cols, rows)
		}
		if ss.proc != nil {
			return ss.proc.Resize(rows, cols) == nil, nil
		}
		return true, nil
	case "env":
		var kv struct{ Name, Value string }
		if ss.started || gossh.Unmarshal(req.Payload, &kv) != nil {
			return false, nil
		}
		if !ss.env.set(kv.Name, kv.Value) {
			ss.srv.log.Debug("env refused", "session", ss.id, "name", kv.Name)
			return false, nil
		}
		return true, nil
	case "shell", "exec":
		sr := &startRequest{exec: req.Type == "exec"}
		if sr.exec {
			var cmd struct{ Command string }
			if gossh.Unmarshal(req.Payload, &cmd) != nil {
				return false, nil
			}
			sr.command = cmd.Command
		}
		if ss.started {
			return false, nil
		}
		ss.started = true
		return true, sr
	case "subsystem":
		var sub struct{ Name string }
		if gossh.Unmarshal(req.Payload, &sub) != nil || ss.started {
			return false, nil
		}
		if sub.Name != "sftp" {
			ss.srv.log.Info("subsystem refused", "user", ss.user, "session", ss.id, "subsystem", sub.Name)
			return false, nil
		}
		ss.started = true
		return true, &startRequest{subsystem: sub.Name}
	case "auth-agent-req@openssh.com":
		if why := ss.agentRefusal(); why != "" {
			ss.srv.log.Info("forward refused", "tenant", ss.tenant.Name, "remote", ss.remote, "session", ss.id,
				"kind", "agent", "reason", why)
			return false, nil
		}
		ss.agent = true // set up with the command, in its environment
		return true, nil
	case "x11-req":
		ss.srv.log.Info("request refused", "user", ss.user, "session", ss.id, "request", req.Type,
			"reason", "X11 forwarding is not supported")
		return false, nil
	case "signal":
		var sig struct{ Name string }
		if gossh.Unmarshal(req.Payload, &sig) != nil || ss.proc == nil {
			return false, nil
		}
		n, ok := signalByName(sig.Name)
		if !ok {
			return false, nil
		}
		return ss.proc.Signal(n) == nil, nil
	}
	return false, nil
}
