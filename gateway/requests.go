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
		ok, start, deliver := ss.request(req)
		if req.WantReply {
			req.Reply(ok, nil)
		}
		if start != nil {
			starts <- *start // buffered, and sent at most once
		}
		if deliver != nil {
			deliver()
		}
	}
}

// request handles one channel request. What must happen only after its
// reply went out is returned: a start request (the command's output must
// not overtake the reply), or a signal's delivery (a KILL ends the command
// and may close the channel before a late reply could be sent). Requests
// of unknown types are refused.
func (ss *session) request(req *gossh.Request) (ok bool, start *startRequest, deliver func()) {
	if req.Type == "signal" {
		ok, deliver = ss.signalReq(req.Payload)
		return ok, nil, deliver
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	switch req.Type {
	case "pty-req":
		return ss.ptyReq(req.Payload), nil, nil
	case "window-change":
		return ss.windowChange(req.Payload), nil, nil
	case "env":
		return ss.envReq(req.Payload), nil, nil
	case "shell", "exec":
		ok, start = ss.startReq(req.Type == "exec", req.Payload)
		return ok, start, nil
	case "subsystem":
		ok, start = ss.subsystemReq(req.Payload)
		return ok, start, nil
	case "auth-agent-req@openssh.com":
		return ss.agentReq(), nil, nil
	case "x11-req":
		ss.srv.log.Info("request refused", "user", ss.user, "session", ss.id, "request", req.Type,
			"reason", "X11 forwarding is not supported")
	}
	return false, nil, nil
}

// The request handlers below run with ss.mu held, but for signalReq, which
// takes it itself.

// ptyReq takes the session's one terminal request, before the command
// starts and unless the key says no-pty.
func (ss *session) ptyReq(payload []byte) bool {
	if ss.pty != nil || ss.started || ss.auth.opts.NoPTY {
		return false // a second pty-req, or one after the command started
	}
	tty, err := parsePtyReq(payload)
	if err != nil {
		return false
	}
	ss.pty = tty
	return true
}

// windowChange resizes the terminal, its recording and the running
// command's terminal.
func (ss *session) windowChange(payload []byte) bool {
	rows, cols, err := parseWindowChange(payload)
	if err != nil || ss.pty == nil {
		return false
	}
	ss.pty.Rows, ss.pty.Cols = rows, cols
	if ss.rec != nil {
		ss.rec.resize(cols, rows)
	}
	if ss.proc != nil {
		return ss.proc.Resize(rows, cols) == nil
	}
	return true
}

// envReq sets an environment variable for the command, before it starts
// and if envAllowed lets it through.
func (ss *session) envReq(payload []byte) bool {
	var kv struct{ Name, Value string }
	if ss.started || gossh.Unmarshal(payload, &kv) != nil {
		return false
	}
	if !ss.env.set(kv.Name, kv.Value) {
		ss.srv.log.Debug("env refused", "session", ss.id, "name", kv.Name)
		return false
	}
	return true
}

// startReq accepts the session's one shell or exec request.
func (ss *session) startReq(exec bool, payload []byte) (bool, *startRequest) {
	sr := &startRequest{exec: exec}
	if exec {
		var cmd struct{ Command string }
		if gossh.Unmarshal(payload, &cmd) != nil {
			return false, nil
		}
		sr.command = cmd.Command
	}
	if ss.started {
		return false, nil
	}
	ss.started = true
	return true, sr
}

// subsystemReq accepts the sftp subsystem as the session's start request;
// there is no other.
func (ss *session) subsystemReq(payload []byte) (bool, *startRequest) {
	var sub struct{ Name string }
	if gossh.Unmarshal(payload, &sub) != nil || ss.started {
		return false, nil
	}
	if sub.Name != "sftp" {
		ss.srv.log.Info("subsystem refused", "user", ss.user, "session", ss.id, "subsystem", sub.Name)
		return false, nil
	}
	ss.started = true
	return true, &startRequest{subsystem: sub.Name}
}

// agentReq accepts ssh -A unless agentRefusal says why not; the socket is
// made with the command, in its environment.
func (ss *session) agentReq() bool {
	if why := ss.agentRefusal(); why != "" {
		ss.srv.log.Info("forward refused", "tenant", ss.auth.tenant.Name, "remote", ss.remote, "session", ss.id,
			"kind", "agent", "reason", why)
		return false
	}
	ss.agent = true
	return true
}

// signalReq accepts a signal the client names for the running command and
// returns its delivery, to run once the reply went out.
func (ss *session) signalReq(payload []byte) (bool, func()) {
	var sig struct{ Name string }
	if gossh.Unmarshal(payload, &sig) != nil {
		return false, nil
	}
	n, ok := signalByName(sig.Name)
	ss.mu.Lock()
	proc := ss.proc
	ss.mu.Unlock()
	if !ok || proc == nil {
		return false, nil
	}
	return true, func() { proc.Signal(n) }
}
